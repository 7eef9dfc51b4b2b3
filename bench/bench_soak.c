/* SPDX-License-Identifier: MIT */
/*
 * mead-bench soak: the daemon as a process (twin at the configured clock)
 * for M minutes while one subscriber stays connected and checks every
 * message, others connect and disconnect, and control requests (status,
 * stim) keep coming.  Prints overruns, losses and the daemon's resident
 * memory at start and end.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "mead-build-config.h"
#include "mead/wire.h"
#include "bench/bench.h"
#include "lib/core/json.h"
#include "lib/core/time.h"

static long rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* One request on a fresh REQ socket: a lost reply never wedges the bench. */
static int request(void *ctx, const char *ep, const char *req, char *reply, size_t len)
{
	void *s = zmq_socket(ctx, ZMQ_REQ);
	int linger = 0, timeout = 2000, n = -1;

	zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof(timeout));
	zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeout, sizeof(timeout));
	if (zmq_connect(s, ep) == 0 && zmq_send(s, req, strlen(req), 0) >= 0)
		n = zmq_recv(s, reply, len - 1, 0);
	if (n >= 0)
		reply[n < (int)len - 1 ? n : (int)len - 1] = '\0';
	zmq_close(s);
	return n;
}

/* A control request answered with "ok": true. */
static bool reply_ok(void *ctx, const char *ctl, const char *req, char *reply, size_t cap)
{
	struct mead_json *doc;
	int n = request(ctx, ctl, req, reply, cap);
	bool ok = false;

	if (n <= 0 || mead_json_parse(reply, strlen(reply), &MEAD_JSON_DOCUMENT_LIMITS, &doc, NULL, 0) < 0)
		return false;
	const struct mead_json_value *v = mead_json_get(doc, mead_json_root(doc), "ok");
	ok = v && v->type == MEAD_JSON_BOOL && v->b;
	mead_json_free(doc);
	return ok;
}

/* A counter of the status reply: a number, or a per-topic object whose
 * members are added up. */
static uint64_t status_count(const struct mead_json *doc, const char *path)
{
	const struct mead_json_value *v = mead_json_path(doc, mead_json_root(doc), path);
	uint64_t sum = 0;

	if (v && v->type == MEAD_JSON_NUMBER)
		return (uint64_t)v->num;
	if (v && v->type == MEAD_JSON_OBJECT)
		for (const struct mead_json_value *m = mead_json_first(doc, v); m; m = mead_json_next(doc, m))
			if (m->type == MEAD_JSON_NUMBER)
				sum += (uint64_t)m->num;
	return sum;
}

struct checker {
	uint64_t next_seq[MEAD_KIND_COUNT + 1];
	bool seen[MEAD_KIND_COUNT + 1];
	uint64_t gaps, messages, spikes, decode_errors;
};

static void check_message(struct checker *c, void *sub)
{
	zmq_msg_t fr[3];
	int nf = 0, more = 1;
	struct mead_wire_header h;

	while (more && nf < 3) {
		zmq_msg_init(&fr[nf]);
		if (zmq_msg_recv(&fr[nf], sub, ZMQ_DONTWAIT) < 0)
			break;
		more = zmq_msg_more(&fr[nf]);
		nf++;
	}
	if (nf == 0) {
		zmq_msg_close(&fr[0]);
		return;
	}
	if (nf != 3 || more || mead_wire_header_decode(zmq_msg_data(&fr[1]), zmq_msg_size(&fr[1]), &h) < 0 ||
	    h.kind < 1 || h.kind > MEAD_KIND_COUNT ||
	    zmq_msg_size(&fr[2]) != (size_t)h.count * h.record_size) {
		c->decode_errors++;
	} else {
		if (c->seen[h.kind] && h.seq != c->next_seq[h.kind])
			c->gaps += h.seq > c->next_seq[h.kind] ? h.seq - c->next_seq[h.kind] : 1;
		c->seen[h.kind] = true;
		c->next_seq[h.kind] = h.seq + 1;
		c->messages++;
		if (h.kind == MEAD_KIND_SPIKES)
			c->spikes += h.count;
	}
	for (int i = 0; i < nf; i++)
		zmq_msg_close(&fr[i]);
}

int mead_bench_soak(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "minutes", required_argument, NULL, 'm' }, { "config", required_argument, NULL, 'c' },
		{ "clock", required_argument, NULL, 'k' }, { "set", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' }, { 0 },
	};
	double minutes = 1;
	const char *config = MEAD_SOURCE_ROOT "/config/twin-live.yaml", *clock = "virtual";
	char *extra[32];
	int n_extra = 0, c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
		switch (c) {
		case 'm': minutes = strtod(optarg, NULL); break;
		case 'c': config = optarg; break;
		case 'k': clock = optarg; break;
		case 'o':
			if (n_extra < 32)
				extra[n_extra++] = optarg;
			break;
		case 'h':
			printf("usage: mead-bench soak [--minutes M] [--clock virtual|realtime] [--config FILE]"
			       " [-o KEY=VALUE ...]\n");
			return 0;
		default: return 1;
		}
	}
	if (!(minutes > 0) || (strcmp(clock, "virtual") && strcmp(clock, "realtime")))
		return 1;

	char dir[] = "/tmp/mead-soak-XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	char pub[128], ctl[128], o_pub[160], o_ctl[160], o_clock[64], o_rec[160];
	snprintf(pub, sizeof(pub), "ipc://%s/pub", dir);
	snprintf(ctl, sizeof(ctl), "ipc://%s/control", dir);
	snprintf(o_pub, sizeof(o_pub), "streams.pub=%s", pub);
	snprintf(o_ctl, sizeof(o_ctl), "streams.control=%s", ctl);
	snprintf(o_clock, sizeof(o_clock), "loop.clock=%s", clock);
	snprintf(o_rec, sizeof(o_rec), "recording.path=%s/soak.mrec", dir);
	char mead[4096];
	snprintf(mead, sizeof(mead), "%s/daemon/mead", MEAD_BUILD_ROOT);
	if (access(mead, X_OK) != 0)
		snprintf(mead, sizeof(mead), "%s/mead", MEAD_SBINDIR);
	if (getenv("MEAD_BIN"))
		snprintf(mead, sizeof(mead), "%s", getenv("MEAD_BIN"));
	char *argv_d[32 + 2 * 32] = { mead, "-c", (char *)config, "-o", o_pub, "-o", o_ctl, "-o", o_clock, "-o", o_rec,
				      "-o", "streams.wait_subscribers=1", "-o", "loop.duration_s=0" };
	int na = 15;
	for (int i = 0; i < n_extra; i++) {
		argv_d[na++] = "-o";
		argv_d[na++] = extra[i];
	}
	argv_d[na] = NULL;

	void *ctx = zmq_ctx_new();
	void *sub = zmq_socket(ctx, ZMQ_SUB);
	int zero = 0;
	zmq_setsockopt(sub, ZMQ_RCVHWM, &zero, sizeof(zero));
	zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
	zmq_connect(sub, pub);

	pid_t pid = fork();
	if (pid == 0) {
		execv(mead, argv_d);
		_exit(127);
	}
	struct checker chk = { 0 };
	double t0 = mead_now_s(), end = t0 + minutes * 60, next_ctl = t0, next_churn = t0 + 1;
	long rss_start = -1, rss_end = -1;
	uint64_t requests = 0, request_errors = 0, churn = 0;
	void *churners[4] = { 0 };
	char reply[1 << 18];

	while (mead_now_s() < end) {
		zmq_pollitem_t it = { sub, 0, ZMQ_POLLIN, 0 };
		if (zmq_poll(&it, 1, 20) > 0)
			for (int i = 0; i < 256; i++)
				check_message(&chk, sub);
		double t = mead_now_s();
		if (rss_start < 0 && t - t0 > 2)
			rss_start = rss_kib(pid);
		if (t >= next_ctl) {
			const char *req = requests % 5 == 4 ?
				"{\"cmd\":\"stim\",\"electrodes\":[3,17],\"amplitude_ua\":-1.0,\"phase_us\":200,"
				"\"interphase_us\":50,\"pulses\":5,\"rate_hz\":20}" : "{\"cmd\":\"status\"}";
			if (!reply_ok(ctx, ctl, req, reply, sizeof(reply)))
				request_errors++;
			requests++;
			next_ctl = t + 0.1;
		}
		if (t >= next_churn) {
			/* subscribers that come and go: connect, subscribe, read a little, leave */
			int k = (int)(churn % 4);
			if (churners[k]) {
				zmq_close(churners[k]);
				churners[k] = NULL;
			} else {
				churners[k] = zmq_socket(ctx, ZMQ_SUB);
				zmq_setsockopt(churners[k], ZMQ_LINGER, &zero, sizeof(zero));
				zmq_setsockopt(churners[k], ZMQ_SUBSCRIBE, k % 2 ? "spikes" : "", k % 2 ? 6 : 0);
				zmq_connect(churners[k], pub);
			}
			churn++;
			next_churn = t + 0.5;
		}
		for (int k = 0; k < 4; k++)
			if (churners[k]) {
				char b[64];
				while (zmq_recv(churners[k], b, sizeof(b), ZMQ_DONTWAIT) >= 0)
					;
			}
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			fprintf(stderr, "mead-bench soak: the daemon ended early\n");
			return 1;
		}
	}
	rss_end = rss_kib(pid);
	int n = request(ctx, ctl, "{\"cmd\":\"status\"}", reply, sizeof(reply));
	uint64_t overruns = 0, ring_dropped = 0, hwm_dropped = 0, ticks = 0;
	struct mead_json *doc = NULL;
	char jerr[128];
	if (n > 0 && mead_json_parse(reply, strlen(reply), &MEAD_JSON_DOCUMENT_LIMITS, &doc, jerr, sizeof(jerr)) == 0) {
		overruns = status_count(doc, "loop.overruns");
		ticks = status_count(doc, "loop.ticks");
		ring_dropped = status_count(doc, "streams.ring_dropped");
		hwm_dropped = status_count(doc, "streams.hwm_dropped");
		mead_json_free(doc);
	} else if (n > 0) {
		fprintf(stderr, "mead-bench soak: the final status reply is not JSON: %s\n", jerr);
	}
	request(ctx, ctl, "{\"cmd\":\"shutdown\"}", reply, sizeof(reply));
	for (int k = 0; k < 4; k++)
		if (churners[k])
			zmq_close(churners[k]);
	int st = 0;
	double dl = mead_now_s() + 30;
	/* drain what the daemon flushes on its way out */
	while (waitpid(pid, &st, WNOHANG) != pid && mead_now_s() < dl) {
		zmq_pollitem_t it = { sub, 0, ZMQ_POLLIN, 0 };
		if (zmq_poll(&it, 1, 20) > 0)
			for (int i = 0; i < 256; i++)
				check_message(&chk, sub);
	}
	zmq_close(sub);
	zmq_ctx_term(ctx);
	char path[200];
	snprintf(path, sizeof(path), "%s/soak.mrec", dir);
	unlink(path);
	rmdir(dir);

	printf("minutes=%g clock=%s ticks=%" PRIu64 " overruns=%" PRIu64 " seq_gaps=%" PRIu64
	       " ring_dropped=%" PRIu64 " hwm_dropped=%" PRIu64 " decode_errors=%" PRIu64 " messages=%" PRIu64
	       " spikes=%" PRIu64 " requests=%" PRIu64 " request_errors=%" PRIu64 " subscriber_churn=%" PRIu64
	       " rss_start_kib=%ld rss_end_kib=%ld exit=%d\n",
	       minutes, clock, ticks, overruns, chk.gaps, ring_dropped, hwm_dropped, chk.decode_errors, chk.messages,
	       chk.spikes, requests, request_errors, churn, rss_start, rss_end,
	       WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	return 0;
}
