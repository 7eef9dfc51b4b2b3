/* SPDX-License-Identifier: MIT */
/*
 * mead-readout --fit-on / --fit-blocks on synthetic recordings in which the
 * label input reshapes the culture's response while training: every
 * training trial answers with the pattern of the other class, while the
 * held-out test block answers with its own class's.  As the mnist protocol
 * runs: training, validation pass 1 (true answers, label cells right: the
 * culture rule scores it best), training, validation pass 2 (the other
 * class's answers and label cells), then, in the second recording only, a
 * readout pass over the training digits (true answers), then the test.
 *   - train: fitted on the shifted training trials, wrong on the test;
 *   - unlabelled, best: pass 1 (and the readout pass), right on the test;
 *   - unlabelled, last: pass 2 (or the readout pass);
 *   - the first pass is predicted from training trials only (no block is
 *     fitted on itself).
 * argv[1]: the mead-readout binary.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>
#include <cmocka.h>

#include "mead/wire.h"
#include "lib/core/idx.h"
#include "lib/core/resize.h"

#define N_TRAIN 80 /* in two halves, each followed by a validation pass */
#define N_BLOCK 40 /* each validation pass */
#define N_TEST 40
#define N_ITEMS (N_TRAIN + 2 * N_BLOCK + N_TEST)

static const char *binary;
static char images_path[4096];
static struct mead_digits *digits;
static uint32_t items[N_ITEMS];
static uint32_t other[2][N_ITEMS]; /* digits of each class, to answer "as the other class" */
static uint32_t n_other[2];
static char rec_path[3][256]; /* without, with the readout pass; with it and a separate test file */
static char test_images_path[256]; /* the test digits, in reverse order */
static int32_t test_item_base = -1; /* >= 0: ITEM of trial k is its index in the test file */

static void put32(FILE *f, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
	assert_int_equal(fwrite(b, 1, 4, f), 4);
}

/* docs/recording.md: "MERC" | u32 body_len | body | u32 crc32(body_len, body). */
static void record(FILE *f, const char *topic, const struct mead_wire_header *h, const void *payload, size_t len)
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
	assert_int_equal(fwrite("MERC", 1, 4, f), 4);
	assert_int_equal(fwrite(buf, 1, 4 + body_len, f), 4 + body_len);
	put32(f, c);
	free(buf);
}

static void write_header(FILE *f)
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

static uint64_t seq[MEAD_KIND_COUNT + 1];

static void send3(FILE *f, uint16_t kind, uint64_t sample, const void *rec, uint32_t count, uint32_t size)
{
	struct mead_wire_header h;
	mead_wire_header_encode(&h, kind, seq[kind]++, sample, count, size);
	record(f, mead_wire_topic((enum mead_wire_kind)kind), &h, rec, (size_t)count * size);
}

static void event(FILE *f, uint64_t sample, uint32_t type, int32_t value)
{
	struct mead_event e = {.sample = sample, .type = type, .value = value};
	send3(f, MEAD_KIND_EVENTS, sample, &e, 1, sizeof(e));
}

/* The left 6x6 electrodes fire after the resized image of `item`; the
 * label cells of class `cls` (rows 0..2 or 3..5 of column 9) fire too. */
static uint32_t trial_spikes(uint32_t item, int cls, uint64_t s0, struct mead_spike *out)
{
	uint8_t px[36];
	mead_resize_u8(mead_digits_image(digits, item), 28, 28, px, 6, 6);
	uint32_t n = 0;
	for (uint32_t t = 0; t < 100; t++)
		for (uint16_t r = 0; r < 6; r++) {
			for (uint16_t c = 0; c < 6; c++)
				if (t < px[r * 6 + c] / 40u * 10u && t % 10 == 0)
					out[n++] = (struct mead_spike){.sample = s0 + t, .electrode = (uint16_t)(r * 10 + c)};
			if ((r / 3) == cls && t % 20 == 5)
				out[n++] = (struct mead_spike){.sample = s0 + t, .electrode = (uint16_t)(r * 10 + 9)};
		}
	return n;
}

/* One trial of digit items[k]; `swap`: the response is that of a digit of
 * the other class, and so are the label cells. */
static uint64_t trial(FILE *f, uint64_t s, int k, bool swap)
{
	static struct mead_spike sp[100 * 60];
	uint32_t item = items[k % N_ITEMS];
	int label = mead_digits_label(digits, item);
	uint32_t shown = swap ? other[1 - label][(uint32_t)k % n_other[1 - label]] : item;
	uint32_t n = trial_spikes(shown, swap ? 1 - label : label, s, sp);
	event(f, s, MEAD_EVENT_TRIAL_START, k);
	event(f, s, MEAD_EVENT_ITEM, test_item_base >= 0 ? N_TEST - 1 - (k - test_item_base) : (int32_t)item);
	event(f, s, MEAD_EVENT_LABEL, label);
	send3(f, MEAD_KIND_SPIKES, s, sp, n, sizeof(sp[0]));
	event(f, s + 100, MEAD_EVENT_TRIAL_END, k);
	return s + 150;
}

static int setup(void **state)
{
	(void)state;
	const char *root = getenv("MEAD_SOURCE_ROOT");
	if (!root)
		root = ".";
	char labels_path[4096], err[512];
	snprintf(images_path, sizeof(images_path), "%s/data/mnist/mnist8k-images-idx3-ubyte.gz", root);
	snprintf(labels_path, sizeof(labels_path), "%s/data/mnist/mnist8k-labels-idx1-ubyte.gz", root);
	if (mead_digits_new(images_path, labels_path, &digits, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	uint32_t n = 0;
	for (uint32_t i = 0; i < mead_digits_count(digits) && n < N_ITEMS; i++)
		if (mead_digits_label(digits, i) <= 1) {
			uint8_t l = mead_digits_label(digits, i);
			items[n++] = i;
			other[l][n_other[l]++] = i;
		}
	if (n != N_ITEMS || !n_other[0] || !n_other[1])
		return -1;

	/* The test digits in a file of their own, reversed: looked up in the
	 * training file, their indices name other digits. */
	snprintf(test_images_path, sizeof(test_images_path), "/tmp/mead-readout-fit-%d-test.idx", (int)getpid());
	FILE *tf = fopen(test_images_path, "wb");
	if (!tf)
		return -1;
	uint8_t hdr[16] = {0, 0, 8, 3, 0, 0, 0, N_TEST, 0, 0, 0, 28, 0, 0, 0, 28};
	fwrite(hdr, 1, sizeof(hdr), tf);
	for (int j = 0; j < N_TEST; j++)
		fwrite(mead_digits_image(digits, items[N_TRAIN + 2 * N_BLOCK + N_TEST - 1 - j]), 1, 784, tf);
	if (fclose(tf) != 0)
		return -1;

	for (int r = 0; r < 3; r++) {
		snprintf(rec_path[r], sizeof(rec_path[r]), "/tmp/mead-readout-fit-%d-%d.rec", (int)getpid(), r);
		FILE *f = fopen(rec_path[r], "wb");
		if (!f)
			return -1;
		write_header(f);
		uint64_t s = 1000;
		event(f, 0, MEAD_EVENT_RUN_START, 1000);
		event(f, s, MEAD_EVENT_PHASE, MEAD_PHASE_TRAIN);                 /* block 1 */
		for (int k = 0; k < N_TRAIN / 2; k++)
			s = trial(f, s, k, true);
		event(f, s, MEAD_EVENT_PHASE, MEAD_PHASE_TEST);                  /* block 2: pass 1 */
		for (int k = N_TRAIN; k < N_TRAIN + N_BLOCK; k++)
			s = trial(f, s, k, false);
		event(f, s, MEAD_EVENT_PHASE, MEAD_PHASE_TRAIN);                 /* block 3 */
		for (int k = N_TRAIN / 2; k < N_TRAIN; k++)
			s = trial(f, s, k, true);
		event(f, s, MEAD_EVENT_PHASE, MEAD_PHASE_TEST);                  /* block 4: pass 2 */
		for (int k = N_TRAIN + N_BLOCK; k < N_TRAIN + 2 * N_BLOCK; k++)
			s = trial(f, s, k, true);
		if (r >= 1) {
			event(f, s, MEAD_EVENT_PHASE, MEAD_PHASE_TEST);          /* block 5: readout pass */
			for (int k = 0; k < N_TRAIN; k++)
				s = trial(f, s, k, false);
		}
		event(f, s, MEAD_EVENT_PHASE, MEAD_PHASE_TEST);                  /* the held-out test */
		if (r == 2)
			test_item_base = N_TRAIN + 2 * N_BLOCK;
		for (int k = N_TRAIN + 2 * N_BLOCK; k < N_ITEMS; k++)
			s = trial(f, s, k, false);
		test_item_base = -1;
		send3(f, MEAD_KIND_SPIKES, s, NULL, 0, sizeof(struct mead_spike));
		event(f, s, MEAD_EVENT_RUN_END, 0);
		if (fclose(f) != 0)
			return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(rec_path[0]);
	unlink(rec_path[1]);
	unlink(rec_path[2]);
	unlink(test_images_path);
	mead_digits_free(digits);
	return 0;
}

static const char *label_fraction; /* --label-fraction for the next run, or NULL */

static char *run(int rec, const char *fit_on, const char *fit_blocks)
{
	/* the third recording's test items index the test file */
	const char *test_images = rec == 2 ? test_images_path : NULL;
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
		argv[a++] = "--recording";
		argv[a++] = rec_path[rec];
		argv[a++] = "--publish";
		argv[a++] = "none";
		argv[a++] = "--images";
		argv[a++] = images_path;
		argv[a++] = "--units";
		argv[a++] = "16";
		argv[a++] = "--json";
		if (fit_on) {
			argv[a++] = "--fit-on";
			argv[a++] = fit_on;
		}
		if (fit_blocks) {
			argv[a++] = "--fit-blocks";
			argv[a++] = fit_blocks;
		}
		if (test_images) {
			argv[a++] = "--test-images";
			argv[a++] = test_images;
		}
		if (label_fraction) {
			argv[a++] = "--label-fraction";
			argv[a++] = label_fraction;
		}
		argv[a] = NULL;
		execv(binary, (char *const *)argv);
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

/* The figures of test-phase block `id` in the summary's test_blocks. */
static const char *block(const char *js, int id)
{
	char k[64];
	snprintf(k, sizeof(k), "{\"block\":%d,", id);
	const char *p = strstr(js, k);
	assert_non_null(p);
	return p;
}

static void test_fit_on_train(void **state)
{
	(void)state;
	const char *out = run(0, "train", NULL);
	assert_int_equal((int)field(out, "n"), N_TEST);
	/* The culture rule is untouched by the readout's choices. */
	assert_true(fabs(field(out, "accuracy") - 1.0) < 1e-9);
	assert_true(field(out, "readout_accuracy") <= 0.2);
	assert_int_equal((int)field(out, "fit_train_trials"), N_TRAIN);
	assert_int_equal((int)field(out, "fit_label_off_trials"), 0);
	/* Pixels do not shift: the baseline learns them from the training
	 * trials' images. */
	assert_true(field(out, "pixel_baseline") >= 0.9);
}

static void test_fit_on_unlabelled_best(void **state)
{
	(void)state;
	/* The default: the best-scored validation pass. */
	const char *out = run(0, NULL, NULL);
	assert_non_null(strstr(out, "\"fit_on\":\"unlabelled\",\"fit_blocks\":\"best\""));
	assert_int_equal((int)field(out, "n"), N_TEST);
	assert_true(field(out, "readout_accuracy") >= 0.9);
	assert_int_equal((int)field(out, "fit_train_trials"), 0);
	assert_int_equal((int)field(out, "fit_label_off_trials"), N_BLOCK);
	assert_int_equal((int)field(out, "fit_label_off_blocks"), 1);
	/* Pass 1 had no earlier label-off block: fitted on the training
	 * trials, never on itself. */
	assert_true(field(block(out, 2), "readout_accuracy") <= 0.2);
	/* Pass 2 was predicted from pass 1 (its swapped answers fool it), and
	 * its label cells are wrong. */
	assert_true(field(block(out, 4), "readout_accuracy") <= 0.2);
	assert_true(fabs(field(block(out, 4), "accuracy") - 0.0) < 1e-9);
	const char *same = run(0, "unlabelled", "best");
	assert_true(fabs(field(same, "readout_accuracy") - field(out, "readout_accuracy")) < 1e-9);
}

static void test_fit_on_unlabelled_last(void **state)
{
	(void)state;
	const char *out = run(0, "unlabelled", "last");
	assert_true(field(out, "readout_accuracy") <= 0.2);
	assert_int_equal((int)field(out, "fit_label_off_trials"), N_BLOCK);
	const char *two = run(0, "unlabelled", "2");
	assert_int_equal((int)field(two, "fit_label_off_trials"), 2 * N_BLOCK);
	assert_int_equal((int)field(two, "fit_label_off_blocks"), 2);
}

static void test_readout_pass(void **state)
{
	(void)state;
	/* best: pass 1 and the readout pass after the last validation pass. */
	const char *out = run(1, NULL, NULL);
	assert_int_equal((int)field(out, "n"), N_TEST);
	assert_int_equal((int)field(out, "fit_label_off_blocks"), 2);
	assert_int_equal((int)field(out, "fit_label_off_trials"), N_BLOCK + N_TRAIN);
	assert_true(field(out, "readout_accuracy") >= 0.9);
	/* last: the readout pass alone. */
	const char *last = run(1, "unlabelled", "last");
	assert_int_equal((int)field(last, "fit_label_off_trials"), N_TRAIN);
	assert_true(field(last, "readout_accuracy") >= 0.9);
}

static void test_fit_on_both(void **state)
{
	(void)state;
	/* Training trials and the label-off blocks together. */
	const char *out = run(1, "both", "all");
	assert_int_equal((int)field(out, "n"), N_TEST);
	assert_int_equal((int)field(out, "fit_train_trials"), N_TRAIN);
	assert_int_equal((int)field(out, "fit_label_off_trials"), 2 * N_BLOCK + N_TRAIN);
	assert_int_equal((int)field(out, "fit_label_off_blocks"), 3);
	double ro = field(out, "readout_accuracy");
	assert_true(ro >= 0 && ro <= 1);
}

/* --label-fraction applies to whatever the fit learns from: of the 120
 * label-off trials (pass 1 and the readout pass) exactly floor(120 f) keep
 * their label, as floor(80 f) of the training trials do; the others still
 * train the feature layer.  The blocks that follow training are marked. */
static void test_label_fraction(void **state)
{
	(void)state;
	label_fraction = "0.25";
	const char *out = run(1, NULL, NULL);
	label_fraction = NULL;
	assert_int_equal((int)field(out, "fit_label_off_trials"), N_BLOCK + N_TRAIN);
	assert_int_equal((int)field(out, "fit_labelled_trials"), (N_BLOCK + N_TRAIN) / 4);
	assert_int_equal((int)field(out, "labelled_trials"), N_TRAIN / 4);
	assert_true(field(out, "readout_accuracy") >= 0.9);
	const char *all = run(1, NULL, NULL);
	assert_int_equal((int)field(all, "fit_labelled_trials"), N_BLOCK + N_TRAIN);
	assert_non_null(strstr(block(out, 2), "\"after_training\":true"));
	assert_non_null(strstr(block(out, 4), "\"after_training\":true"));
	assert_non_null(strstr(block(out, 5), "\"after_training\":false"));
	assert_non_null(strstr(block(out, 6), "\"after_training\":false"));
}

/* --test-images: validation and readout passes are training-file digits,
 * only the last block's items index the test file; the pixel baseline
 * learns from the passes and scores the test on the test file's images. */
static void test_separate_test_images(void **state)
{
	(void)state;
	const char *out = run(2, NULL, NULL);
	assert_int_equal((int)field(out, "n"), N_TEST);
	assert_int_equal((int)field(out, "pixel_n"), N_TEST);
	assert_true(field(out, "pixel_baseline") >= 0.9);
	assert_true(field(out, "readout_accuracy") >= 0.9);
	assert_int_equal((int)field(out, "pixel_missing"), 0);
	/* the validation passes' pixels came from the training file */
	assert_true(field(block(out, 4), "pixel_baseline") >= 0.9);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s path/to/mead-readout\n", argv[0]);
		return 2;
	}
	binary = argv[1];
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fit_on_train),
		cmocka_unit_test(test_fit_on_unlabelled_best),
		cmocka_unit_test(test_fit_on_unlabelled_last),
		cmocka_unit_test(test_readout_pass),
		cmocka_unit_test(test_fit_on_both),
		cmocka_unit_test(test_separate_test_images),
		cmocka_unit_test(test_label_fraction),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
