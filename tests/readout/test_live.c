/* SPDX-License-Identifier: MIT */
/*
 * mead-readout against a tiny in-test publisher speaking wire v1: the
 * publisher (an XPUB, so it knows when the readout has subscribed) plays a
 * 0/1 digit experiment whose spikes follow the digit's pixels and whose
 * label cells answer correctly on all test trials but one.  The readout
 * must report that exact culture-rule accuracy, learn the digits from the
 * spikes and from the pixels, count the seq gap, publish per-trial JSON,
 * and restore the same predictions from its saved state.
 * argv[1]: the mead-readout binary.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zmq.h>
#include <cmocka.h>

#include "mead/wire.h"
#include "lib/core/idx.h"
#include "lib/core/resize.h"
#include "readout/trials.h"

#define N_TRAIN 80
#define N_TEST 40
#define N_VAL 10
#define WRONG_TEST 7 /* the test trial whose label cells answer wrongly */

static const char *binary;
static char images_path[4096], labels_path[4096];
static struct mead_digits *digits;
static uint32_t items[N_TRAIN + N_TEST + N_VAL];

static int setup(void **state)
{
	(void)state;
	const char *root = getenv("MEAD_SOURCE_ROOT");
	if (!root)
		root = ".";
	snprintf(images_path, sizeof(images_path), "%s/data/mnist/mnist8k-images-idx3-ubyte.gz", root);
	snprintf(labels_path, sizeof(labels_path), "%s/data/mnist/mnist8k-labels-idx1-ubyte.gz", root);
	char err[512];
	if (mead_digits_new(images_path, labels_path, &digits, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	uint32_t n = 0;
	for (uint32_t i = 0; i < mead_digits_count(digits) && n < N_TRAIN + N_TEST + N_VAL; i++)
		if (mead_digits_label(digits, i) <= 1)
			items[n++] = i;
	return n == N_TRAIN + N_TEST + N_VAL ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	mead_digits_free(digits);
	return 0;
}

struct pub {
	void *ctx, *sock;
	FILE *rec;              /* write a recording instead of publishing */
	uint32_t n_records;
	int32_t corrupt_record; /* flip a byte in this record's body (-1: none) */
	uint64_t seq[MEAD_KIND_COUNT + 1];
};

static void put32(FILE *f, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
	assert_int_equal(fwrite(b, 1, 4, f), 4);
}

/* docs/recording.md: "MERC" | u32 body_len | body | u32 crc32(body_len, body),
 * body = u8 topic_len | topic | wire header | payload. */
static void record(struct pub *p, const char *topic, const struct mead_wire_header *h, const void *payload,
		   size_t len)
{
	size_t tl = strlen(topic), body_len = 1 + tl + sizeof(*h) + len;
	uint8_t *buf = malloc(4 + body_len);
	assert_non_null(buf);
	uint32_t bl = htole32((uint32_t)body_len);
	memcpy(buf, &bl, 4);
	buf[4] = (uint8_t)tl;
	memcpy(buf + 5, topic, tl);
	memcpy(buf + 5 + tl, h, sizeof(*h));
	if (len)
		memcpy(buf + 5 + tl + sizeof(*h), payload, len);
	uint32_t c = (uint32_t)crc32(crc32(0L, Z_NULL, 0), buf, (uInt)(4 + body_len));
	if ((int32_t)p->n_records == p->corrupt_record)
		buf[4 + body_len - 1] ^= 0x55;
	p->n_records++;
	assert_int_equal(fwrite("MERC", 1, 4, p->rec), 4);
	assert_int_equal(fwrite(buf, 1, 4 + body_len, p->rec), 4 + body_len);
	put32(p->rec, c);
	free(buf);
}

static void write_rec_header(FILE *f)
{
	static const char cfg[] = "rig: {name: test}\n";
	static const char meta[] = "{\"sample_rate_hz\":1000,\"electrode_count\":60}";
	size_t cl = strlen(cfg), ml = strlen(meta), hl = 24 + cl + ml + 4;
	uint8_t *h = malloc(hl);
	assert_non_null(h);
	memcpy(h, "MEADREC", 8);
	uint32_t v[4] = {htole32(1), htole32((uint32_t)hl), htole32((uint32_t)cl), htole32((uint32_t)ml)};
	memcpy(h + 8, v, 16);
	memcpy(h + 24, cfg, cl);
	memcpy(h + 24 + cl, meta, ml);
	uint32_t c = htole32((uint32_t)crc32(crc32(0L, Z_NULL, 0), h, (uInt)(hl - 4)));
	memcpy(h + hl - 4, &c, 4);
	assert_int_equal(fwrite(h, 1, hl, f), hl);
	free(h);
}

static void send3(struct pub *p, uint16_t kind, uint64_t sample, const void *rec, uint32_t count,
		  uint32_t size)
{
	struct mead_wire_header h;
	mead_wire_header_encode(&h, kind, p->seq[kind]++, sample, count, size);
	const char *topic = mead_wire_topic((enum mead_wire_kind)kind);
	if (p->rec) {
		record(p, topic, &h, rec, (size_t)count * size);
		return;
	}
	assert_int_equal(zmq_send(p->sock, topic, strlen(topic), ZMQ_SNDMORE), (int)strlen(topic));
	assert_int_equal(zmq_send(p->sock, &h, sizeof(h), ZMQ_SNDMORE), (int)sizeof(h));
	assert_int_equal(zmq_send(p->sock, rec, (size_t)count * size, 0), (int)(count * size));
}

static void event(struct pub *p, uint64_t sample, uint32_t type, int32_t value)
{
	struct mead_event e = {.sample = sample, .type = type, .value = value};
	send3(p, MEAD_KIND_EVENTS, sample, &e, 1, sizeof(e));
}

static void status(struct pub *p, uint64_t sample)
{
	/* Two neurons under every label cell, one elsewhere. */
	char js[1024];
	int n = snprintf(js, sizeof(js), "{\"state\":\"running\",\"driver\":{\"name\":\"test\","
			 "\"neurons_per_electrode\":[");
	for (int e = 0; e < 60; e++)
		n += snprintf(js + n, sizeof(js) - (size_t)n, "%s%d", e ? "," : "", e % 10 == 9 ? 2 : 1);
	n += snprintf(js + n, sizeof(js) - (size_t)n, "]},\"layout\":{\"rows\":6,\"cols\":10}}");
	send3(p, MEAD_KIND_STATUS, sample, js, 1, (uint32_t)n);
}

/* One trial's spikes: each of the left 6x6 electrodes fires pixel/40 times
 * (the digit's resized image), label cells of class `cls` fire 3 times per
 * neuron. */
static uint32_t trial_spikes(uint32_t item, int cls, uint64_t s0, struct mead_spike *out)
{
	uint8_t px[36];
	mead_resize_u8(mead_digits_image(digits, item), 28, 28, px, 6, 6);
	uint32_t n = 0;
	for (uint32_t t = 0; t < 100; t++) {
		for (uint16_t r = 0; r < 6; r++) {
			for (uint16_t c = 0; c < 6; c++)
				if (t < px[r * 6 + c] / 40u * 10u && t % 10 == 0)
					out[n++] = (struct mead_spike){.sample = s0 + t, .electrode = (uint16_t)(r * 10 + c)};
			if (cls >= 0 && (r / 3) == cls && t % 20 == 5)
				out[n++] = (struct mead_spike){.sample = s0 + t, .electrode = (uint16_t)(r * 10 + 9)};
		}
	}
	return n;
}

static void play(struct pub *p, bool train)
{
	static struct mead_spike sp[100 * 60];
	uint64_t s = 1000;
	event(p, 0, MEAD_EVENT_RUN_START, 1000);
	status(p, 0);
	if (train) {
		event(p, s, MEAD_EVENT_PHASE, MEAD_PHASE_TRAIN);
		for (int k = 0; k < N_TRAIN; k++, s += 150) {
			int label = mead_digits_label(digits, items[k]);
			uint32_t n = trial_spikes(items[k], label, s, sp);
			/* Odd trials: spikes before the events that frame them. */
			if (k % 2)
				send3(p, MEAD_KIND_SPIKES, s, sp, n, sizeof(sp[0]));
			event(p, s, MEAD_EVENT_TRIAL_START, k);
			event(p, s, MEAD_EVENT_ITEM, (int32_t)items[k]);
			event(p, s, MEAD_EVENT_LABEL, label);
			if (!(k % 2))
				send3(p, MEAD_KIND_SPIKES, s, sp, n, sizeof(sp[0]));
			event(p, s + 100, MEAD_EVENT_TRIAL_END, k);
			if (k == 40) {
				p->seq[MEAD_KIND_STATUS]++; /* one status message lost */
				status(p, s + 100);
			}
			if (k == N_TRAIN / 2) {
				/* A validation pass: label cells answer right on
				 * all but two; it must not count as test. */
				s += 150;
				event(p, s, MEAD_EVENT_PHASE, MEAD_TRIAL_PHASE_VALIDATION);
				for (int v = 0; v < N_VAL; v++, s += 150) {
					uint32_t item = items[N_TRAIN + N_TEST + v];
					int vl = mead_digits_label(digits, item);
					n = trial_spikes(item, v < 2 ? 1 - vl : vl, s, sp);
					event(p, s, MEAD_EVENT_TRIAL_START, 1000 + v);
					event(p, s, MEAD_EVENT_ITEM, (int32_t)item);
					event(p, s, MEAD_EVENT_LABEL, vl);
					send3(p, MEAD_KIND_SPIKES, s, sp, n, sizeof(sp[0]));
					event(p, s + 100, MEAD_EVENT_TRIAL_END, 1000 + v);
				}
				event(p, s, MEAD_EVENT_PHASE, MEAD_PHASE_TRAIN);
			}
		}
	}
	event(p, s, MEAD_EVENT_PHASE, MEAD_PHASE_TEST);
	for (int k = 0; k < N_TEST; k++, s += 150) {
		uint32_t item = items[N_TRAIN + k];
		int label = mead_digits_label(digits, item);
		int shown = k == WRONG_TEST ? 1 - label : label;
		uint32_t n = trial_spikes(item, shown, s, sp);
		event(p, s, MEAD_EVENT_TRIAL_START, N_TRAIN + k);
		event(p, s, MEAD_EVENT_ITEM, (int32_t)item);
		event(p, s, MEAD_EVENT_LABEL, label);
		send3(p, MEAD_KIND_SPIKES, s, sp, n, sizeof(sp[0]));
		event(p, s + 100, MEAD_EVENT_TRIAL_END, N_TRAIN + k);
	}
	send3(p, MEAD_KIND_SPIKES, s, NULL, 0, sizeof(sp[0]));
	event(p, s, MEAD_EVENT_RUN_END, 0);
}

/* Runs mead-readout against the in-test publisher; returns its stdout. */
static char *run_readout(bool train, const char *save, const char *load, int *per_trial_test)
{
	struct pub p = {.corrupt_record = -1};
	p.ctx = zmq_ctx_new();
	p.sock = zmq_socket(p.ctx, ZMQ_XPUB);
	int hwm = 0;
	zmq_setsockopt(p.sock, ZMQ_SNDHWM, &hwm, sizeof(hwm));
	assert_int_equal(zmq_bind(p.sock, "tcp://127.0.0.1:*"), 0);
	char ep[256];
	size_t epl = sizeof(ep);
	assert_int_equal(zmq_getsockopt(p.sock, ZMQ_LAST_ENDPOINT, ep, &epl), 0);
	char out_ep[256];
	snprintf(out_ep, sizeof(out_ep), "ipc:///tmp/mead-readout-live-%d", (int)getpid());

	void *sub = zmq_socket(p.ctx, ZMQ_SUB);
	zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "readout", 7);
	zmq_setsockopt(sub, ZMQ_RCVHWM, &hwm, sizeof(hwm));
	assert_int_equal(zmq_connect(sub, out_ep), 0);

	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		const char *argv[32];
		int a = 0;
		argv[a++] = binary;
		argv[a++] = "--connect";
		argv[a++] = ep;
		argv[a++] = "--publish";
		argv[a++] = out_ep;
		argv[a++] = "--images";
		argv[a++] = images_path;
		argv[a++] = "--units";
		argv[a++] = "16";
		argv[a++] = "--idle-timeout";
		argv[a++] = "20";
		argv[a++] = "--json";
		if (save) {
			argv[a++] = "--save";
			argv[a++] = save;
		}
		if (load) {
			argv[a++] = "--load";
			argv[a++] = load;
		}
		argv[a] = NULL;
		execv(binary, (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);

	/* spikes, events, status: three subscriptions, then play. */
	int subs = 0, rcvto = 15000;
	zmq_setsockopt(p.sock, ZMQ_RCVTIMEO, &rcvto, sizeof(rcvto));
	while (subs < 3) {
		char buf[64];
		int n = zmq_recv(p.sock, buf, sizeof(buf), 0);
		assert_true(n > 0);
		if (buf[0] == 1)
			subs++;
	}
	/* Let the test's own SUB reach the readout's freshly bound PUB. */
	usleep(300 * 1000);
	play(&p, train);

	static char out[16384];
	size_t len = 0;
	ssize_t r;
	while ((r = read(fds[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += (size_t)r;
	out[len] = 0;
	close(fds[0]);
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);

	*per_trial_test = 0;
	int rcv0 = 200;
	zmq_setsockopt(sub, ZMQ_RCVTIMEO, &rcv0, sizeof(rcv0));
	char msg[4096];
	for (;;) {
		int n = zmq_recv(sub, msg, sizeof(msg) - 1, 0);
		if (n < 0)
			break;
		msg[n < (int)sizeof(msg) - 1 ? n : (int)sizeof(msg) - 1] = 0;
		if (strstr(msg, "\"phase\":\"test\"") && strstr(msg, "\"culture\":"))
			(*per_trial_test)++;
	}
	zmq_close(sub);
	zmq_close(p.sock);
	zmq_ctx_term(p.ctx);
	return out;
}

static double field(const char *js, const char *key)
{
	char k[64];
	snprintf(k, sizeof(k), "\"%s\":", key);
	const char *p = strstr(js, k);
	assert_non_null(p);
	return strtod(p + strlen(k), NULL);
}

static void test_live_classification(void **state)
{
	(void)state;
	char save[256];
	snprintf(save, sizeof(save), "/tmp/mead-readout-live-%d.state", (int)getpid());
	int per_trial = 0;
	char *out = run_readout(true, save, NULL, &per_trial);
	fprintf(stderr, "%s", out);
	/* Exactly one test trial's label cells answered wrongly. */
	assert_true(fabs(field(out, "accuracy") - (N_TEST - 1.0) / N_TEST) < 1e-9);
	assert_int_equal((int)field(out, "n"), N_TEST);
	assert_int_equal((int)field(out, "train_trials"), N_TRAIN);
	assert_int_equal((int)field(out, "culture_ties"), 0);
	double ro = field(out, "readout_accuracy"), px = field(out, "pixel_baseline");
	assert_true(ro >= 0.9);
	assert_true(px >= 0.9);
	assert_non_null(strstr(out, "\"lost_messages\":{\"spikes\":0,\"events\":0,\"status\":1}"));
	assert_non_null(strstr(out, "\"run_ended\":true"));
	assert_int_equal((int)field(out, "lossy_trials"), 0);
	const char *val = strstr(out, "\"validation\":[{");
	assert_non_null(val);
	assert_int_equal((int)field(val, "n"), N_VAL);
	assert_true(fabs(field(val, "accuracy") - (N_VAL - 2.0) / N_VAL) < 1e-9);
	/* Per-trial JSON on the readout's own socket. */
	assert_true(per_trial >= N_TEST / 2);

	/* The saved state alone, on the same test trials: same figures. */
	char *out2 = run_readout(false, NULL, save, &per_trial);
	fprintf(stderr, "%s", out2);
	assert_int_equal((int)field(out2, "train_trials"), 0);
	assert_true(fabs(field(out2, "readout_accuracy") - ro) < 1e-9);
	assert_true(fabs(field(out2, "pixel_baseline") - px) < 1e-9);
	unlink(save);
}

/* The same run from a recording file, one status record damaged: the
 * readout skips it (a bad message and a seq gap) and gets the same figures. */
static void test_recording(void **state)
{
	(void)state;
	char path[256];
	snprintf(path, sizeof(path), "/tmp/mead-readout-live-%d.rec", (int)getpid());
	struct pub p = {.corrupt_record = 1}; /* run_start, then the first status */
	p.rec = fopen(path, "wb");
	assert_non_null(p.rec);
	write_rec_header(p.rec);
	play(&p, true);
	/* A torn tail: the writer was cut off inside a record. */
	assert_int_equal(fwrite("MERC\x40\0\0\0abc", 1, 11, p.rec), 11);
	fclose(p.rec);

	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execl(binary, binary, "--recording", path, "--publish", "none", "--images", images_path, "--units",
		      "16", "--json", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	static char out[16384];
	size_t len = 0;
	ssize_t r;
	while ((r = read(fds[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += (size_t)r;
	out[len] = 0;
	close(fds[0]);
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	fprintf(stderr, "%s", out);
	assert_true(fabs(field(out, "accuracy") - (N_TEST - 1.0) / N_TEST) < 1e-9);
	assert_int_equal((int)field(out, "n"), N_TEST);
	assert_true(field(out, "readout_accuracy") >= 0.9);
	assert_int_equal((int)field(out, "bad_messages"), 1);
	/* The damaged record was the first status message: the second is
	 * the first seen, so no gap is measurable, and no trial suffered. */
	assert_non_null(strstr(out, "\"messages\":{\"spikes\":131,\"events\":526,\"status\":1}"));
	assert_int_equal((int)field(out, "lossy_trials"), 0);
	assert_int_equal((int)field(out, "trials_dropped"), 0);
	unlink(path);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s path/to/mead-readout\n", argv[0]);
		return 2;
	}
	binary = argv[1];
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_live_classification),
		cmocka_unit_test(test_recording),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
