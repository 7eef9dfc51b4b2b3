/* SPDX-License-Identifier: MIT */
/*
 * mead-experiment mnist: the headline experiment as a person runs it.  For
 * each seed it starts the daemon (twin, virtual clock, the mnist protocol)
 * and mead-readout as two processes talking over ZeroMQ, follows the run's
 * events itself as a third subscriber for the progress display, and reads
 * the readout's summary.  The same configuration with a hardware driver and
 * the real-time clock runs it on a rig.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "mead-build-config.h"
#include "config/config.h"
#include "mead/wire.h"
#include "tools/experiment.h"
#include "lib/core/json.h"
#include "lib/core/time.h"

#define MAX_SEEDS 64
#define MAX_ARGS 256

struct seed_result {
	double accuracy, readout_accuracy, pixel_baseline;
	double best_validation;   /* the culture rule's best whole validation pass; NaN without one */
	int seed;
	unsigned n;
	double wall_s;
};

const char *mead_experiment_program(const char *env, const char *build_rel, const char *installed)
{
	static char buf[3][4096];
	static int next;
	char *out = buf[next++ % 3];

	if (getenv(env))
		return getenv(env);
	snprintf(out, 4096, "%s/%s", MEAD_BUILD_ROOT, build_rel);
	if (access(out, X_OK) == 0)
		return out;
	return installed;
}

/* The readout's result object: the last line of its standard output. */
static int read_results(const char *out, size_t len, struct seed_result *res, int seed)
{
	const char *line = out;
	struct mead_json *doc;
	char err[256];

	while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == ' '))
		len--;
	for (const char *p = out; p < out + len; p++)
		if (*p == '\n')
			line = p + 1;
	if (mead_json_parse(line, (size_t)(out + len - line), &MEAD_JSON_DOCUMENT_LIMITS, &doc, err, sizeof(err)) < 0) {
		fprintf(stderr, "mead-experiment: seed %d: mead-readout's result is not JSON: %s\n", seed, err);
		return -EBADMSG;
	}
	const struct mead_json_value *root = mead_json_root(doc);
	res->accuracy = mead_json_number_at(doc, root, "accuracy", NAN);
	res->readout_accuracy = mead_json_number_at(doc, root, "readout_accuracy", NAN);
	res->pixel_baseline = mead_json_number_at(doc, root, "pixel_baseline", NAN);
	res->n = (unsigned)mead_json_number_at(doc, root, "n", 0);
	/* The reference's headline figure ("Top accuracy so far"): wire v1 sends
	 * a validation pass as a test-phase block, the one that follows training
	 * trials; the run's last block is the test itself, and a readout pass
	 * follows a validation pass, not training. */
	res->best_validation = NAN;
	const struct mead_json_value *blocks = mead_json_get(doc, root, "test_blocks");
	uint32_t nb = blocks && blocks->type == MEAD_JSON_ARRAY ? blocks->n : 0;
	for (uint32_t i = 0; i + 1 < nb; i++) {
		const struct mead_json_value *b = mead_json_at(doc, blocks, i);
		const struct mead_json_value *after = mead_json_get(doc, b, "after_training");
		double a = mead_json_number_at(doc, b, "accuracy", NAN);
		if (after && after->type == MEAD_JSON_BOOL && after->b && isfinite(a) && !(a <= res->best_validation))
			res->best_validation = a;
	}
	mead_json_free(doc);
	return 0;
}

static pid_t spawn(char *const argv[], int stdout_fd)
{
	pid_t pid = fork();

	if (pid == 0) {
		if (stdout_fd >= 0) {
			dup2(stdout_fd, STDOUT_FILENO);
			close(stdout_fd);
		}
		execv(argv[0], argv);
		fprintf(stderr, "mead-experiment: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mead-experiment mnist -c CONFIG [-o key=value ...] [--seeds K] [--first-seed F]\n"
		"                             [--json] [--readout-arg ARG ...] [--timeout S]\n"
		"  runs the daemon (the configuration's driver; mnist protocol) and mead-readout for\n"
		"  seeds F..F+K-1 (1..K by default) and prints: accuracy=<culture rule> readout_accuracy=<Hebbian readout>\n"
		"  pixel_baseline=<readout on pixels> n=<test trials> seeds=<K>  (means over seeds)\n");
}

/* What the readout writes to its pipe, kept whole however long. */
struct outbuf {
	char *p;
	size_t n, cap;
	bool closed;
};

/* Takes what the pipe holds now.  Read while the children run: a readout
 * whose result is longer than a pipe holds would otherwise block writing
 * it, and never end. */
static void drain(int fd, struct outbuf *o)
{
	for (;;) {
		if (o->cap - o->n < 4096) {
			size_t cap = o->cap ? 2 * o->cap : 65536;
			char *q = realloc(o->p, cap);
			if (!q) {
				o->closed = true;   /* out of memory: stop reading, the result is short */
				return;
			}
			o->p = q;
			o->cap = cap;
		}
		ssize_t k = read(fd, o->p + o->n, o->cap - o->n - 1);
		if (k > 0) {
			o->n += (size_t)k;
			continue;
		}
		if (k == 0)
			o->closed = true;
		if (k == 0 || errno != EINTR)
			break;
	}
	if (o->p)
		o->p[o->n] = '\0';
}

/* Follow the run's events on a SUB socket for the progress line, and the
 * readout's output on its pipe; returns when both children have ended and
 * the pipe is closed. */
static int follow(void *sub, int out_fd, struct outbuf *out, pid_t daemon, pid_t readout, int *daemon_status,
		  int *readout_status, int seed, int seeds, double timeout_s, bool show)
{
	uint64_t trials[3] = { 0 }, spikes = 0;
	int phase = -1;
	double t0 = mead_now_s(), last_draw = 0;
	bool daemon_done = false, readout_done = false;

	fcntl(out_fd, F_SETFL, fcntl(out_fd, F_GETFL) | O_NONBLOCK);
	while (!daemon_done || !readout_done || !out->closed) {
		zmq_pollitem_t it[2] = { { sub, 0, ZMQ_POLLIN, 0 }, { NULL, out_fd, ZMQ_POLLIN, 0 } };
		int np = zmq_poll(it, out->closed ? 1 : 2, 100);
		if (np > 0 && !out->closed && (it[1].revents & (ZMQ_POLLIN | ZMQ_POLLERR)))
			drain(out_fd, out);
		if (np > 0 && (it[0].revents & ZMQ_POLLIN)) {
			zmq_msg_t fr[3];
			int nf = 0, more = 1;
			while (more && nf < 3) {
				zmq_msg_init(&fr[nf]);
				if (zmq_msg_recv(&fr[nf], sub, 0) < 0)
					break;
				more = zmq_msg_more(&fr[nf]);
				nf++;
			}
			struct mead_wire_header h;
			if (nf == 3 && mead_wire_header_decode(zmq_msg_data(&fr[1]), zmq_msg_size(&fr[1]), &h) == 0) {
				if (h.kind == MEAD_KIND_EVENTS && h.record_size >= sizeof(struct mead_event)) {
					const uint8_t *p = zmq_msg_data(&fr[2]);
					for (uint32_t i = 0; i < h.count; i++) {
						struct mead_event e;
						memcpy(&e, p + (size_t)i * h.record_size, sizeof(e));
						if (e.type == MEAD_EVENT_PHASE)
							phase = e.value;
						if (e.type == MEAD_EVENT_TRIAL_END && phase >= 0 && phase < 3)
							trials[phase]++;
					}
				} else if (h.kind == MEAD_KIND_SPIKES) {
					spikes += h.count;
				}
			}
			for (int i = 0; i < nf; i++)
				zmq_msg_close(&fr[i]);
		}
		if (!daemon_done && waitpid(daemon, daemon_status, WNOHANG) == daemon) {
			daemon_done = true;
			/* a daemon that failed (a driver option refused at open, say)
			 * publishes no run: the readout would wait for one forever */
			if (!readout_done && (!WIFEXITED(*daemon_status) || WEXITSTATUS(*daemon_status) != 0))
				kill(readout, SIGTERM);
		}
		if (!readout_done && waitpid(readout, readout_status, WNOHANG) == readout)
			readout_done = true;
		double t = mead_now_s() - t0;
		if (show && t - last_draw > 0.2) {
			fprintf(stderr, "\rseed %d/%d  %-5s  train %" PRIu64 "  test %" PRIu64 "  spikes %" PRIu64
				"  %.1f s   ", seed, seeds, phase == 0 ? "train" : phase == 1 ? "test" : phase == 2 ? "rest" : "-",
				trials[0], trials[1], spikes, t);
			last_draw = t;
		}
		if (timeout_s > 0 && t > timeout_s) {
			fprintf(stderr, "\nmead-experiment: seed %d took longer than %.0f s: stopping it\n", seed, timeout_s);
			if (!daemon_done)
				kill(daemon, SIGTERM);
			if (!readout_done)
				kill(readout, SIGTERM);
			timeout_s = 0;
		}
	}
	if (show)
		fprintf(stderr, "\n");
	return 0;
}

static int run_seed(const char *config, char **overrides, int n_overrides, char **readout_args, int n_readout_args,
		    unsigned classes, int seed, int seeds, double timeout_s, bool show, struct seed_result *res)
{
	char dir[] = "/tmp/mead-experiment-XXXXXX";
	char pub[128], ctl[128], o_pub[160], o_ctl[160], o_seed[64], o_pseed[64], seed_s[16], classes_s[16];
	char *dargv[MAX_ARGS], *rargv[MAX_ARGS];
	int dn = 0, rn = 0, pipefd[2], ds = 0, rs = 0, rc = -1;
	void *ctx = NULL, *sub = NULL;
	struct outbuf out = { 0 };
	double t0 = mead_now_s();

	if (!mkdtemp(dir))
		return -errno;
	snprintf(pub, sizeof(pub), "ipc://%s/pub", dir);
	snprintf(ctl, sizeof(ctl), "ipc://%s/control", dir);
	snprintf(o_pub, sizeof(o_pub), "streams.pub=%s", pub);
	snprintf(o_ctl, sizeof(o_ctl), "streams.control=%s", ctl);
	snprintf(o_seed, sizeof(o_seed), "driver.seed=%d", seed);
	snprintf(o_pseed, sizeof(o_pseed), "protocol.seed=%d", seed);
	snprintf(seed_s, sizeof(seed_s), "%d", seed);
	snprintf(classes_s, sizeof(classes_s), "%u", classes);

	dargv[dn++] = (char *)mead_experiment_program("MEAD_BIN", "daemon/mead", MEAD_SBINDIR "/mead");
	dargv[dn++] = "-c";
	dargv[dn++] = (char *)config;
	for (int i = 0; i < n_overrides && dn < MAX_ARGS - 20; i++) {
		dargv[dn++] = "-o";
		dargv[dn++] = overrides[i];
	}
	char *fixed[] = { o_pub, o_ctl, o_seed, o_pseed, "streams.wait_subscribers=2", "loop.exit_when_done=true",
			  "protocol.autostart=mnist" };
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		dargv[dn++] = "-o";
		dargv[dn++] = fixed[i];
	}
	dargv[dn] = NULL;

	rargv[rn++] = (char *)mead_experiment_program("MEAD_READOUT_BIN", "readout/mead-readout", MEAD_BINDIR "/mead-readout");
	char *rfixed[] = { "-c", pub, "-p", "none", "--json", "--seed", seed_s, "--classes", classes_s };
	for (size_t i = 0; i < sizeof(rfixed) / sizeof(rfixed[0]); i++)
		rargv[rn++] = rfixed[i];
	for (int i = 0; i < n_readout_args && rn < MAX_ARGS - 1; i++)
		rargv[rn++] = readout_args[i];
	rargv[rn] = NULL;

	ctx = zmq_ctx_new();
	sub = zmq_socket(ctx, ZMQ_SUB);
	int linger = 0, hwm = 0;
	zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_setsockopt(sub, ZMQ_RCVHWM, &hwm, sizeof(hwm));
	zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "events", 6);
	zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "spikes", 6);
	/* connect before the daemon binds: ZeroMQ reconnects until it appears */
	zmq_connect(sub, pub);

	if (pipe(pipefd) < 0)
		goto out;
	pid_t readout = spawn(rargv, pipefd[1]);
	close(pipefd[1]);
	pid_t daemon = spawn(dargv, -1);
	if (readout < 0 || daemon < 0) {
		close(pipefd[0]);
		goto out;
	}
	follow(sub, pipefd[0], &out, daemon, readout, &ds, &rs, seed, seeds, timeout_s, show);
	close(pipefd[0]);
	if (!WIFEXITED(ds) || WEXITSTATUS(ds) != 0) {
		fprintf(stderr, "mead-experiment: seed %d: the daemon ended with %s %d\n", seed,
			WIFEXITED(ds) ? "status" : "signal", WIFEXITED(ds) ? WEXITSTATUS(ds) : WTERMSIG(ds));
		goto out;
	}
	if (!WIFEXITED(rs) || WEXITSTATUS(rs) != 0) {
		fprintf(stderr, "mead-experiment: seed %d: mead-readout ended with %s %d\n", seed,
			WIFEXITED(rs) ? "status" : "signal", WIFEXITED(rs) ? WEXITSTATUS(rs) : WTERMSIG(rs));
		goto out;
	}
	if (!out.p || read_results(out.p, out.n, res, seed) < 0)
		goto out;
	res->wall_s = mead_now_s() - t0;
	rc = 0;
out:
	free(out.p);
	if (sub)
		zmq_close(sub);
	if (ctx)
		zmq_ctx_term(ctx);
	char path[160];
	snprintf(path, sizeof(path), "%s/pub", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/control", dir);
	unlink(path);
	rmdir(dir);
	return rc;
}

/* A protocol data path as the daemon resolves it (protocol/mnist.c):
 * absolute as given, else under mead_config_data_dir(). */
static int resolve_data(const char *path, char *out, size_t len)
{
	const char *dir = mead_config_data_dir();
	int n = path[0] == '/' ? snprintf(out, len, "%s", path) : snprintf(out, len, "%s/%s", dir, path);
	return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

static void print_json_num(const char *name, const char *suffix, double v)
{
	if (isfinite(v))
		printf("\"%s%s\":%.4f,", name, suffix, v);
	else
		printf("\"%s%s\":null,", name, suffix);
}

void mead_experiment_stats(const double *v, int n, double *mean, double *sd, double *lo, double *hi)
{
	double s = 0, s2 = 0;
	int k = 0;

	*lo = INFINITY;
	*hi = -INFINITY;
	for (int i = 0; i < n; i++) {
		if (isnan(v[i]))
			continue;
		s += v[i];
		s2 += v[i] * v[i];
		k++;
		*lo = fmin(*lo, v[i]);
		*hi = fmax(*hi, v[i]);
	}
	*mean = k ? s / k : NAN;
	*sd = k > 1 ? sqrt(fmax(0, (s2 - s * s / k) / (k - 1))) : 0;
	if (!k)
		*lo = *hi = NAN;
}

int mead_experiment_mnist(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' }, { "set", required_argument, NULL, 'o' },
		{ "seeds", required_argument, NULL, 's' }, { "json", no_argument, NULL, 'j' },
		{ "readout-arg", required_argument, NULL, 'r' }, { "timeout", required_argument, NULL, 't' },
		{ "first-seed", required_argument, NULL, 'f' }, { "help", no_argument, NULL, 'h' }, { 0 },
	};
	const char *config = NULL;
	int first_seed = 1;
	char *overrides[MAX_ARGS / 4], *readout_args[MAX_ARGS / 4];
	int n_over = 0, n_rargs = 0, seeds = 1, c;
	double timeout_s = 0;
	bool json = false;
	static struct seed_result res[MAX_SEEDS];

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': config = optarg; break;
		case 'o':
			if (n_over < MAX_ARGS / 4)
				overrides[n_over++] = optarg;
			break;
		case 's': seeds = atoi(optarg); break;
		case 'f': first_seed = atoi(optarg); break;
		case 'j': json = true; break;
		case 'r':
			if (n_rargs < MAX_ARGS / 4)
				readout_args[n_rargs++] = optarg;
			break;
		case 't': timeout_s = strtod(optarg, NULL); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (!config || seeds < 1 || seeds > MAX_SEEDS || first_seed < 1 || first_seed > INT_MAX - seeds ||
	    optind != argc) {
		usage(stderr);
		return 1;
	}

	/* Validate up front so a typo fails in a second, not after a run. */
	struct mead_config cfg;
	char err[MEAD_CFG_ERR_MAX];
	if (mead_config_load(&cfg, config, overrides, (size_t)n_over, err, sizeof(err)) < 0) {
		fprintf(stderr, "mead-experiment: %s\n", err);
		return 2;
	}
	unsigned classes = cfg.protocol.mnist.classes.n ? cfg.protocol.mnist.classes.n : 2;
	/* The readout's pixel baseline looks the ITEM events up in the
	 * protocol's own image files, found where the daemon finds them: the
	 * training file for training, validation and readout passes, the test
	 * file for the held-out test block.  --readout-arg options come later
	 * and win. */
	static char images[PATH_MAX], test_images[PATH_MAX], grid[16];
	char *rargs[MAX_ARGS / 4 + 6];
	int n_r = 0;
	const struct mead_protocol_mnist_config *mc = &cfg.protocol.mnist;
	if (mc->train_images && resolve_data(mc->train_images, images, sizeof(images)) == 0) {
		rargs[n_r++] = "--images";
		rargs[n_r++] = images;
		if (mc->test_images && resolve_data(mc->test_images, test_images, sizeof(test_images)) == 0 &&
		    strcmp(images, test_images) != 0) {
			rargs[n_r++] = "--test-images";
			rargs[n_r++] = test_images;
		}
	}
	if (mc->grid_rows == mc->grid_cols) {
		snprintf(grid, sizeof(grid), "%u", mc->grid_rows);
		rargs[n_r++] = "--pixel-grid";
		rargs[n_r++] = grid;
	}
	for (int i = 0; i < n_rargs; i++)
		rargs[n_r++] = readout_args[i];
	mead_config_release(&cfg);

	signal(SIGPIPE, SIG_IGN);
	bool show = isatty(STDERR_FILENO);
	double t0 = mead_now_s();
	int ok = 0;
	for (int s = first_seed; s < first_seed + seeds; s++) {
		if (run_seed(config, overrides, n_over, rargs, n_r, classes, s, first_seed + seeds - 1,
			     timeout_s, show,
			     &res[ok]) == 0) {
			res[ok].seed = s;
			if (!json)
				fprintf(stderr, "seed %d: accuracy=%.4f readout_accuracy=%.4f pixel_baseline=%.4f "
					"best_validation=%.4f n=%u wall=%.2fs\n", s, res[ok].accuracy,
					res[ok].readout_accuracy, res[ok].pixel_baseline, res[ok].best_validation,
					res[ok].n, res[ok].wall_s);
			ok++;
		}
	}
	if (ok == 0)
		return 3;

	enum { N_FIG = 4 };
	double m[N_FIG], sd[N_FIG], lo[N_FIG], hi[N_FIG];
	size_t offs[N_FIG] = { offsetof(struct seed_result, accuracy), offsetof(struct seed_result, readout_accuracy),
			       offsetof(struct seed_result, pixel_baseline),
			       offsetof(struct seed_result, best_validation) };
	for (int i = 0; i < N_FIG; i++) {
		double v[MAX_SEEDS];
		for (int k = 0; k < ok; k++)
			v[k] = *(const double *)((const char *)&res[k] + offs[i]);
		mead_experiment_stats(v, ok, &m[i], &sd[i], &lo[i], &hi[i]);
	}
	double wall = mead_now_s() - t0;
	if (json) {
		const char *names[N_FIG] = { "accuracy", "readout_accuracy", "pixel_baseline", "best_validation" };
		printf("{");
		for (int i = 0; i < N_FIG; i++) {
			/* no culture rule (10 classes) or no pixels: null, never a bare nan */
			print_json_num(names[i], "", m[i]);
			print_json_num(names[i], "_sd", isfinite(m[i]) ? sd[i] : NAN);
			print_json_num(names[i], "_min", lo[i]);
			print_json_num(names[i], "_max", hi[i]);
		}
		printf("\"n\":%u,\"seeds\":%d,\"seeds_failed\":%d,\"wall_seconds\":%.2f,\"per_seed\":[", res[0].n, ok,
		       seeds - ok, wall);
		for (int i = 0; i < ok; i++) {
			printf("%s{\"seed\":%d,", i ? "," : "", res[i].seed);
			print_json_num("accuracy", "", res[i].accuracy);
			print_json_num("readout_accuracy", "", res[i].readout_accuracy);
			print_json_num("pixel_baseline", "", res[i].pixel_baseline);
			print_json_num("best_validation", "", res[i].best_validation);
			printf("\"n\":%u,\"wall_seconds\":%.2f}", res[i].n, res[i].wall_s);
		}
		printf("]}\n");
	} else {
		printf("accuracy=%.4f readout_accuracy=%.4f pixel_baseline=%.4f n=%u seeds=%d\n", m[0], m[1], m[2],
		       res[0].n, ok);
		if (ok > 1)
			printf("spread: accuracy sd=%.4f [%.4f, %.4f]  readout sd=%.4f [%.4f, %.4f]  pixels sd=%.4f "
			       "[%.4f, %.4f]\n", sd[0], lo[0], hi[0], sd[1], lo[1], hi[1], sd[2], lo[2], hi[2]);
		if (isfinite(m[3]))
			printf("best_validation=%.4f sd=%.4f [%.4f, %.4f]\n", m[3], sd[3], lo[3], hi[3]);
		printf("wall=%.2fs\n", wall);
	}
	return ok == seeds ? 0 : 3;
}
