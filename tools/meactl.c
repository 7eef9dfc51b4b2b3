/* SPDX-License-Identifier: MIT */
/*
 * meactl: command-line client of the daemon's control socket.
 * Exit status: 0 ok reply, 1 error reply (or bad usage), 2 no answer.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "lib/core/keys.h"
#include "lib/core/json.h"

#define DEFAULT_ENDPOINT "tcp://127.0.0.1:5556"
#define REPLY_MAX (1u << 20)

static void usage(FILE *f)
{
	fprintf(f,
		"usage: meactl [-e ENDPOINT] [-t TIMEOUT_MS] [--json] [--server-key FILE|Z85 --client-key FILE] COMMAND\n"
		"       meactl keygen [--out PREFIX]\n"
		"commands:\n"
		"  status                       state, driver, loop statistics, stream counters\n"
		"  start NAME                   run the configured protocol NAME\n"
		"  stop                         stop the running protocol\n"
		"  halt                         stop protocol and trains, zero every output\n"
		"  stim --electrodes 3,17 --amplitude-ua -1 --phase-us 200 [--interphase-us 50]\n"
		"       --pulses 5 --rate-hz 20  charge-balanced biphasic train\n"
		"  threshold ELECTRODE|all VALUE  spike threshold from the next tick: VALUE 6x (times the\n"
		"                               electrode's noise) or -40uV (a fixed magnitude)\n"
		"  ping | help | shutdown\n"
		"  keygen [--out PREFIX]        new CURVE key pair: PREFIX.key (secret, mode 0600) and\n"
		"                               PREFIX.pub (default PREFIX: mead); existing files are kept\n"
		"  -e, --endpoint   control socket (default %s)\n"
		"  -t, --timeout    milliseconds to wait for the answer (default 3000)\n"
		"  --json           print the raw JSON reply\n"
		"  --server-key     the daemon's public key (a .pub file or 40 Z85 characters): CURVE\n"
		"  --client-key     this client's secret key file (its .key), authorised on the daemon\n"
		"exit status: 0 ok, 1 error reply or usage, 2 no answer\n",
		DEFAULT_ENDPOINT);
}

/* Appends a JSON number from text after checking it is one. */
static int add_number(struct mead_jw *w, const char *key, const char *text, bool integer)
{
	char *end;
	errno = 0;
	if (integer) {
		long long v = strtoll(text, &end, 10);
		if (errno || end == text || *end)
			return -1;
		mead_jw_key(w, key);
		mead_jw_i64(w, v);
	} else {
		double v = strtod(text, &end);
		if (errno || end == text || *end || !isfinite(v))
			return -1;
		mead_jw_key(w, key);
		mead_jw_double(w, v);
	}
	return 0;
}

static int build_stim(int argc, char **argv, struct mead_jw *w)
{
	static const struct option opts[] = {
		{ "electrodes", required_argument, NULL, 'E' },
		{ "amplitude-ua", required_argument, NULL, 'a' },
		{ "phase-us", required_argument, NULL, 'p' },
		{ "interphase-us", required_argument, NULL, 'i' },
		{ "pulses", required_argument, NULL, 'n' },
		{ "rate-hz", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	mead_jw_obj_begin(w);
	mead_jw_key(w, "cmd");
	mead_jw_str(w, "stim");
	optind = 0; /* 0: glibc starts over after the main parse */
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		int rc = 0;
		switch (c) {
		case 'E': {
			char *s = optarg, *end;
			mead_jw_key(w, "electrodes");
			mead_jw_arr_begin(w);
			for (;;) {
				errno = 0;
				long long v = strtoll(s, &end, 10);
				if (errno || end == s || (*end && *end != ',')) {
					fprintf(stderr, "meactl: --electrodes wants a comma-separated list of indexes\n");
					return -1;
				}
				mead_jw_i64(w, v);
				if (!*end)
					break;
				s = end + 1;
			}
			mead_jw_arr_end(w);
			break;
		}
		case 'a': rc = add_number(w, "amplitude_ua", optarg, false); break;
		case 'p': rc = add_number(w, "phase_us", optarg, true); break;
		case 'i': rc = add_number(w, "interphase_us", optarg, true); break;
		case 'n': rc = add_number(w, "pulses", optarg, true); break;
		case 'r': rc = add_number(w, "rate_hz", optarg, false); break;
		default:
			usage(stderr);
			return -1;
		}
		if (rc < 0) {
			fprintf(stderr, "meactl: %s: not a number: %s\n", argv[optind - 1], optarg);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "meactl: stim: unexpected argument %s\n", argv[optind]);
		return -1;
	}
	mead_jw_obj_end(w);
	return 0;
}

static int write_key_file(const char *path, mode_t mode, const char *what, const char *z85)
{
	char text[256];
	int fd, n;

	n = snprintf(text, sizeof(text), "# mead CURVE %s key (meactl keygen)\n%s\n", what, z85);
	/* O_EXCL: a key pair in use is never replaced by accident. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0) {
		fprintf(stderr, "meactl: keygen: %s: %s\n", path, strerror(errno));
		return -1;
	}
	/* The umask may only have narrowed the mode; make it exact. */
	if (fchmod(fd, mode) < 0 || write(fd, text, (size_t)n) != n || fsync(fd) < 0) {
		fprintf(stderr, "meactl: keygen: %s: %s\n", path, strerror(errno));
		close(fd);
		unlink(path);
		explicit_bzero(text, sizeof(text));
		return -1;
	}
	explicit_bzero(text, sizeof(text));
	return close(fd);
}

static int keygen(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "out", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	const char *prefix = "mead";
	char pub[MEAD_KEY_Z85_LEN + 1], sec[MEAD_KEY_Z85_LEN + 1], pub_path[4096], sec_path[4096];
	int c, rc = 1;

	optind = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c != 'o') {
			usage(stderr);
			return 1;
		}
		prefix = optarg;
	}
	if (optind < argc || !*prefix) {
		fprintf(stderr, "meactl: keygen [--out PREFIX]\n");
		return 1;
	}
	if ((size_t)snprintf(sec_path, sizeof(sec_path), "%s.key", prefix) >= sizeof(sec_path) ||
	    (size_t)snprintf(pub_path, sizeof(pub_path), "%s.pub", prefix) >= sizeof(pub_path)) {
		fprintf(stderr, "meactl: keygen: prefix too long\n");
		return 1;
	}
	if (zmq_curve_keypair(pub, sec) < 0) {
		fprintf(stderr, "meactl: keygen: %s\n",
			errno == ENOTSUP ? "this libzmq was built without CURVE" : zmq_strerror(errno));
		return 1;
	}
	if (write_key_file(sec_path, 0600, "secret", sec) == 0) {
		if (write_key_file(pub_path, 0644, "public", pub) == 0) {
			printf("%s\n", pub);
			fprintf(stderr, "meactl: secret key %s (keep it private), public key %s\n", sec_path, pub_path);
			rc = 0;
		} else {
			unlink(sec_path);
		}
	}
	explicit_bzero(sec, sizeof(sec));
	return rc;
}

/* CURVE client: the daemon's public key, this client's key pair. */
static int setup_curve(void *sock, const char *server_key, const char *client_key)
{
	uint8_t server[MEAD_KEY_BYTES], secret[MEAD_KEY_BYTES];
	char secret_z85[MEAD_KEY_Z85_LEN + 1], public_z85[MEAD_KEY_Z85_LEN + 1], err[600];
	int rc = -1;

	if (mead_keys_client(server_key, client_key, server, secret, err, sizeof(err)) < 0) {
		fprintf(stderr, "meactl: %s\n", err);
		return -1;
	}
	zmq_z85_encode(secret_z85, secret, MEAD_KEY_BYTES);
	if (zmq_curve_public(public_z85, secret_z85) < 0) {
		fprintf(stderr, "meactl: --client-key: %s\n",
			errno == ENOTSUP ? "this libzmq was built without CURVE" : zmq_strerror(errno));
	} else if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server, sizeof(server)) < 0 ||
		   zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, public_z85, MEAD_KEY_Z85_LEN) < 0 ||
		   zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret, MEAD_KEY_BYTES) < 0) {
		fprintf(stderr, "meactl: CURVE: %s\n", zmq_strerror(errno));
	} else {
		rc = 0;
	}
	explicit_bzero(secret_z85, sizeof(secret_z85));
	explicit_bzero(secret, sizeof(secret));
	return rc;
}

static const struct mead_json_value *path(const struct mead_json *d, const struct mead_json_value *v, const char *a,
					  const char *b)
{
	v = mead_json_get(d, v, a);
	return b ? mead_json_get(d, v, b) : v;
}

static void print_value(const struct mead_json_value *v)
{
	if (!v) {
		printf("-");
		return;
	}
	switch (v->type) {
	case MEAD_JSON_NUMBER:
		if (v->is_int)
			printf("%" PRId64, v->i);
		else
			printf("%g", v->num);
		break;
	case MEAD_JSON_STRING: printf("%s", v->s); break;
	case MEAD_JSON_BOOL: printf("%s", v->b ? "yes" : "no"); break;
	case MEAD_JSON_NULL: printf("-"); break;
	default: printf("..."); break;
	}
}

static void print_kv(const char *label, const struct mead_json_value *v, const char *unit)
{
	printf("%-22s ", label);
	print_value(v);
	printf("%s\n", v && unit ? unit : "");
}

static void print_status(const struct mead_json *d, const struct mead_json_value *r)
{
	static const char *const topics[] = { "spikes", "stim", "events", "raw", "status" };
	static const char *const cols[] = { "produced", "ring_dropped", "published", "hwm_dropped" };
	const struct mead_json_value *streams = mead_json_get(d, r, "streams");
	const struct mead_json_value *rec = mead_json_get(d, r, "recording");

	print_kv("state", mead_json_get(d, r, "state"), NULL);
	print_kv("driver", mead_json_get(d, r, "driver_name"), NULL);
	print_kv("sample rate", mead_json_get(d, r, "sample_rate_hz"), " Hz");
	print_kv("electrodes", path(d, r, "layout", "count"), NULL);
	print_kv("uv per count", mead_json_get(d, r, "uv_per_count"), NULL);
	print_kv("uptime", mead_json_get(d, r, "uptime_s"), " s");
	print_kv("ticks", path(d, r, "loop", "ticks"), NULL);
	print_kv("overruns", path(d, r, "loop", "overruns"), NULL);
	const struct mead_json_value *lat = path(d, r, "loop", "latency_us");
	printf("%-22s p50 ", "wake-up latency");
	print_value(mead_json_get(d, lat, "p50"));
	printf("  p99 ");
	print_value(mead_json_get(d, lat, "p99"));
	printf("  p99.9 ");
	print_value(mead_json_get(d, lat, "p999"));
	printf("  max ");
	print_value(mead_json_get(d, lat, "max"));
	printf(" us\n");
	print_kv("protocol", path(d, r, "protocol", "active"), NULL);
	const struct mead_json_value *pr = mead_json_get(d, r, "protocol");
	if (mead_json_get(d, pr, "trial")) {
		printf("%-22s ", "protocol trial");
		print_value(mead_json_get(d, pr, "trial"));
		printf(" of at most ");
		print_value(mead_json_get(d, pr, "trials"));
		printf("\n");
		printf("%-22s ", "validation");
		print_value(path(d, pr, "validation", "evaluations"));
		printf(" passes, best ");
		print_value(path(d, pr, "validation", "best"));
		printf(", last ");
		print_value(path(d, pr, "validation", "last"));
		printf("\n");
		printf("%-22s ", "test");
		print_value(path(d, pr, "test", "correct"));
		printf(" of ");
		print_value(path(d, pr, "test", "trials"));
		printf(" right, accuracy ");
		print_value(path(d, pr, "test", "accuracy"));
		printf("\n");
	}
	print_kv("subscribers", mead_json_get(d, streams, "subscribers"), NULL);
	print_kv("subscriptions", mead_json_get(d, streams, "subscriptions"), NULL);
	printf("%-8s", "topic");
	for (size_t c = 0; c < 4; c++)
		printf(" %14s", cols[c]);
	if (rec && rec->type == MEAD_JSON_OBJECT)
		printf(" %14s %14s", "recorded", "rec_lost");
	printf("\n");
	for (size_t t = 0; t < 5; t++) {
		printf("%-8s", topics[t]);
		for (size_t c = 0; c < 4; c++) {
			const struct mead_json_value *v = path(d, streams, cols[c], topics[t]);
			if (v && v->is_int)
				printf(" %14" PRId64, v->i);
			else
				printf(" %14s", "-");
		}
		if (rec && rec->type == MEAD_JSON_OBJECT) {
			const struct mead_json_value *a = path(d, rec, "recorded", topics[t]);
			const struct mead_json_value *b = path(d, rec, "lost", topics[t]);
			printf(" %14" PRId64 " %14" PRId64, a && a->is_int ? a->i : 0, b && b->is_int ? b->i : 0);
		}
		printf("\n");
	}
	/* one line per subscriber: whose queue is losing messages, how many */
	const struct mead_json_value *cl = mead_json_get(d, streams, "clients");
	for (const struct mead_json_value *c = mead_json_first(d, cl); c; c = mead_json_next(d, c)) {
		int64_t sent = 0, lost = 0;
		for (size_t t = 0; t < 5; t++) {
			const struct mead_json_value *a = path(d, c, "sent", topics[t]), *b = path(d, c, "dropped", topics[t]);
			sent += a && a->is_int ? a->i : 0;
			lost += b && b->is_int ? b->i : 0;
		}
		const struct mead_json_value *id = mead_json_get(d, c, "id"), *peer = mead_json_get(d, c, "peer");
		const struct mead_json_value *losing = mead_json_get(d, c, "losing");
		printf("subscriber %-11" PRId64 " %-22s sent %" PRId64 ", lost %" PRId64 "%s\n", id && id->is_int ? id->i : 0,
		       peer && peer->type == MEAD_JSON_STRING ? peer->s : "?", sent, lost,
		       losing && losing->type == MEAD_JSON_BOOL && losing->b ? " (losing now: its queue is full)" : "");
	}
	if (rec && rec->type == MEAD_JSON_OBJECT) {
		print_kv("recording", mead_json_get(d, rec, "path"), NULL);
		print_kv("recording state", mead_json_get(d, rec, "state"), NULL);
		print_kv("recording bytes", mead_json_get(d, rec, "bytes"), NULL);
		const struct mead_json_value *e = mead_json_get(d, rec, "error");
		if (e && e->type == MEAD_JSON_STRING)
			print_kv("recording error", e, NULL);
	} else {
		printf("%-22s off\n", "recording");
	}
}

static void print_reply(const char *cmd, const struct mead_json *d, const struct mead_json_value *r)
{
	if (strcmp(cmd, "status") == 0) {
		print_status(d, r);
		return;
	}
	if (strcmp(cmd, "help") == 0) {
		const struct mead_json_value *c = mead_json_get(d, r, "commands");
		for (const struct mead_json_value *v = mead_json_first(d, c); v; v = mead_json_next(d, v))
			if (v->type == MEAD_JSON_STRING)
				printf("%s\n", v->s);
		return;
	}
	/* Other replies are short: print their fields. */
	printf("ok");
	for (const struct mead_json_value *v = mead_json_first(d, r); v; v = mead_json_next(d, v)) {
		if (strcmp(v->key, "ok") == 0)
			continue;
		printf(" %s=", v->key);
		if (v->type == MEAD_JSON_ARRAY) {
			printf("[");
			for (const struct mead_json_value *e = mead_json_first(d, v); e; e = mead_json_next(d, e)) {
				print_value(e);
				if (e->next >= 0)
					printf(",");
			}
			printf("]");
		} else {
			print_value(v);
		}
	}
	printf("\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "endpoint", required_argument, NULL, 'e' },
		{ "timeout", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ "server-key", required_argument, NULL, 'S' },
		{ "client-key", required_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *endpoint = DEFAULT_ENDPOINT, *cmd, *server_key = NULL, *client_key = NULL;
	bool json = false;
	int timeout = 3000, c, rc = 2, zero = 0;
	char req[4096];
	struct mead_jw w;
	void *ctx = NULL, *sock = NULL;
	char *reply = NULL;

	/* '+': stop at the command so its own options are left for it. */
	while ((c = getopt_long(argc, argv, "+e:t:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'e': endpoint = optarg; break;
		case 't': timeout = atoi(optarg); break;
		case 'j': json = true; break;
		case 'S': server_key = optarg; break;
		case 'C': client_key = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (optind >= argc || timeout <= 0) {
		usage(stderr);
		return 1;
	}
	cmd = argv[optind];
	if (strcmp(cmd, "keygen") == 0)
		return keygen(argc - optind, argv + optind);
	if (!server_key != !client_key) {
		fprintf(stderr, "meactl: --server-key and --client-key go together\n");
		return 1;
	}
	mead_jw_init(&w, req, sizeof(req));
	if (strcmp(cmd, "stim") == 0) {
		if (build_stim(argc - optind, argv + optind, &w) < 0)
			return 1;
	} else if (strcmp(cmd, "start") == 0) {
		if (argc - optind != 2) {
			fprintf(stderr, "meactl: start NAME\n");
			return 1;
		}
		mead_jw_obj_begin(&w);
		mead_jw_key(&w, "cmd");
		mead_jw_str(&w, "start");
		mead_jw_key(&w, "protocol");
		mead_jw_str(&w, argv[optind + 1]);
		mead_jw_obj_end(&w);
	} else if (strcmp(cmd, "threshold") == 0) {
		if (argc - optind != 3) {
			fprintf(stderr, "meactl: threshold ELECTRODE|all VALUE (e.g. threshold 12 6x, threshold all -40uV)\n");
			return 1;
		}
		mead_jw_obj_begin(&w);
		mead_jw_key(&w, "cmd");
		mead_jw_str(&w, "threshold");
		if (strcmp(argv[optind + 1], "all") == 0) {
			mead_jw_key(&w, "electrode");
			mead_jw_str(&w, "all");
		} else if (add_number(&w, "electrode", argv[optind + 1], true) < 0) {
			fprintf(stderr, "meactl: threshold: electrode '%s' is not an index or all\n", argv[optind + 1]);
			return 1;
		}
		mead_jw_key(&w, "value");
		mead_jw_str(&w, argv[optind + 2]);
		mead_jw_obj_end(&w);
	} else if (strcmp(cmd, "status") == 0 || strcmp(cmd, "stop") == 0 || strcmp(cmd, "halt") == 0 ||
		   strcmp(cmd, "ping") == 0 || strcmp(cmd, "help") == 0 || strcmp(cmd, "shutdown") == 0) {
		if (argc - optind != 1) {
			fprintf(stderr, "meactl: %s takes no arguments\n", cmd);
			return 1;
		}
		mead_jw_obj_begin(&w);
		mead_jw_key(&w, "cmd");
		mead_jw_str(&w, cmd);
		mead_jw_obj_end(&w);
	} else {
		fprintf(stderr, "meactl: unknown command %s\n", cmd);
		usage(stderr);
		return 1;
	}
	int req_len = mead_jw_finish(&w);
	if (req_len < 0) {
		fprintf(stderr, "meactl: request too long\n");
		return 1;
	}

	reply = malloc(REPLY_MAX + 1);
	ctx = zmq_ctx_new();
	sock = ctx ? zmq_socket(ctx, ZMQ_REQ) : NULL;
	if (!reply || !sock) {
		fprintf(stderr, "meactl: cannot create a socket\n");
		goto out;
	}
	zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout, sizeof(timeout));
	zmq_setsockopt(sock, ZMQ_SNDTIMEO, &timeout, sizeof(timeout));
	if (server_key && setup_curve(sock, server_key, client_key) < 0) {
		rc = 1;
		goto out;
	}
	if (zmq_connect(sock, endpoint) < 0) {
		fprintf(stderr, "meactl: %s: %s\n", endpoint, zmq_strerror(errno));
		rc = 1;
		goto out;
	}
	if (zmq_send(sock, req, (size_t)req_len, 0) < 0) {
		fprintf(stderr, "meactl: no answer from %s (send: %s)\n", endpoint, zmq_strerror(errno));
		goto out;
	}
	int n = zmq_recv(sock, reply, REPLY_MAX, 0);
	if (n < 0) {
		fprintf(stderr, "meactl: no answer from %s within %d ms\n", endpoint, timeout);
		goto out;
	}
	if ((size_t)n > REPLY_MAX) {
		fprintf(stderr, "meactl: reply larger than %u bytes\n", REPLY_MAX);
		goto out;
	}
	reply[n] = '\0';

	struct mead_json_limits lim = { REPLY_MAX, 32, 1u << 18, REPLY_MAX };
	struct mead_json *doc = NULL;
	char err[200];
	if (mead_json_parse(reply, (size_t)n, &lim, &doc, err, sizeof(err)) < 0 ||
	    mead_json_root(doc)->type != MEAD_JSON_OBJECT) {
		fprintf(stderr, "meactl: the daemon's reply is not a JSON object: %s\n", doc ? "" : err);
		mead_json_free(doc);
		goto out;
	}
	const struct mead_json_value *root = mead_json_root(doc), *ok = mead_json_get(doc, root, "ok");
	bool is_ok = ok && ok->type == MEAD_JSON_BOOL && ok->b;
	if (json) {
		printf("%s\n", reply);
	} else if (is_ok) {
		print_reply(cmd, doc, root);
	} else {
		const struct mead_json_value *e = mead_json_get(doc, root, "error");
		fprintf(stderr, "meactl: %s: %s\n", cmd, e && e->type == MEAD_JSON_STRING ? e->s : "error");
	}
	mead_json_free(doc);
	rc = is_ok ? 0 : 1;
out:
	if (sock)
		zmq_close(sock);
	if (ctx)
		zmq_ctx_term(ctx);
	free(reply);
	return rc;
}
