/* SPDX-License-Identifier: MIT */
/*
 * The live view's aggregation: counts per electrode exact whatever is
 * listed, seq gaps, records decoded by record_size (wire 1.0 and 1.1),
 * spikes listed up to the frame's limit and not at all while behind, raw
 * binned to min/max with the page's binary layout, thresholds from the
 * driver or recomputed from raw, malformed messages refused.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/core/json.h"
#include "view/agg.h"

static struct mead_wire_header hdr(uint16_t kind, uint64_t seq, uint64_t sample, uint32_t count, uint32_t rsize)
{
	return (struct mead_wire_header){ .kind = kind, .seq = seq, .sample = sample, .count = count, .record_size = rsize };
}

static void status(struct mv_agg *a, const char *json)
{
	struct mead_wire_header h = hdr(MEAD_KIND_STATUS, 0, 0, 1, (uint32_t)strlen(json));
	assert_int_equal(mv_agg_message(a, &h, json, strlen(json)), 0);
}

static void spikes(struct mv_agg *a, uint64_t seq, uint64_t sample, const uint16_t *el, uint32_t n)
{
	struct mead_spike s[64];
	for (uint32_t i = 0; i < n; i++)
		s[i] = (struct mead_spike){ .sample = sample + i, .electrode = el[i], .amplitude_uv = -50 };
	struct mead_wire_header h = hdr(MEAD_KIND_SPIKES, seq, sample, n, 16);
	assert_int_equal(mv_agg_message(a, &h, s, (size_t)n * 16), 0);
}

static struct mead_json *frame(struct mv_agg *a)
{
	size_t need = mv_agg_frame_size(a);
	char *buf = malloc(need);
	int n = mv_agg_frame_json(a, buf, need);
	assert_true(n > 0);
	struct mead_json *doc;
	char err[200];
	if (mead_json_parse(buf, (size_t)n, &MEAD_JSON_DOCUMENT_LIMITS, &doc, err, sizeof(err)) < 0)
		fail_msg("%s: %s", err, buf);
	free(buf);
	return doc;
}

static const char layout4[] = "{\"sample_rate_hz\":1000,\"uv_per_count\":0.5,\"raw_channels\":0,"
			      "\"layout\":{\"rows\":2,\"cols\":2,\"count\":4,\"labels\":[\"a\",\"b\",\"c\",\"d\"],\"excluded\":[]}}";

static void test_counts_and_gaps(void **state)
{
	struct mv_agg *a;
	struct mv_agg_params p = { .max_frame_spikes = 3 };
	assert_int_equal(mv_agg_new(&p, &a), 0);
	status(a, layout4);
	uint16_t e1[] = { 0, 1, 1, 3 }, e2[] = { 2, 7 }, e3[] = { 3 };
	spikes(a, 10, 100, e1, 4);
	spikes(a, 11, 101, e2, 2);   /* 7: not an electrode of the layout */
	spikes(a, 13, 103, e3, 1);   /* 12 was lost */
	assert_int_equal(mv_agg_count(a, 0), 1);
	assert_int_equal(mv_agg_count(a, 1), 2);
	assert_int_equal(mv_agg_count(a, 2), 1);
	assert_int_equal(mv_agg_count(a, 3), 2);
	assert_int_equal(mv_agg_seq(a, MEAD_KIND_SPIKES)->gaps, 1);
	assert_int_equal(mv_agg_seq(a, MEAD_KIND_SPIKES)->messages, 3);

	struct mead_json *d = frame(a);
	const struct mead_json_value *r = mead_json_root(d);
	assert_int_equal(mead_json_get(d, r, "spikes_seq")->i, 13);
	const struct mead_json_value *c = mead_json_get(d, r, "counts");
	assert_int_equal(c->n, 4);
	assert_int_equal(mead_json_at(d, c, 3)->i, 2);
	/* three listed (the limit), the rest counted */
	const struct mead_json_value *sp = mead_json_get(d, r, "spikes");
	assert_int_equal(mead_json_get(d, sp, "t0")->i, 100);
	assert_int_equal(mead_json_get(d, sp, "d")->n, 6);
	assert_int_equal(mead_json_at(d, mead_json_get(d, sp, "d"), 2)->i, 1);   /* second spike: +1 sample */
	assert_int_equal(mead_json_get(d, sp, "unlisted")->i, 3);
	assert_int_equal(mead_json_number_at(d, r, "gaps.spikes", -1), 1);
	mead_json_free(d);

	/* a new frame lists only what came since; counts stay cumulative */
	spikes(a, 14, 200, e3, 1);
	d = frame(a);
	r = mead_json_root(d);
	assert_int_equal(mead_json_get(d, mead_json_get(d, r, "spikes"), "d")->n, 2);
	assert_int_equal(mead_json_at(d, mead_json_get(d, r, "counts"), 3)->i, 3);
	assert_int_equal(mead_json_get(d, r, "n")->i, 1);
	mead_json_free(d);

	/* behind: counted, not listed */
	mv_agg_set_behind(a, true);
	spikes(a, 15, 300, e1, 4);
	d = frame(a);
	r = mead_json_root(d);
	assert_int_equal(mead_json_get(d, mead_json_get(d, r, "spikes"), "d")->n, 0);
	assert_int_equal(mead_json_get(d, mead_json_get(d, r, "spikes"), "unlisted")->i, 4);
	assert_true(mead_json_get(d, r, "behind")->b);
	assert_int_equal(mead_json_at(d, mead_json_get(d, r, "counts"), 1)->i, 4);
	mead_json_free(d);
	mv_agg_free(a);
}

static void test_records_by_size(void **state)
{
	struct mv_agg *a;
	assert_int_equal(mv_agg_new(NULL, &a), 0);
	status(a, layout4);
	/* stim: 1.1 (32 bytes, requested sample) and 1.0 (24 bytes) */
	struct mead_wire_stim s11 = { .pulse = { .sample = 50, .electrode = 2, .flags = 1, .amplitude_ua = -1.5f,
						 .phase_us = 200, .interphase_us = 50 },
				      .requested_sample = 48 };
	struct mead_wire_header h = hdr(MEAD_KIND_STIM, 0, 50, 1, 32);
	assert_int_equal(mv_agg_message(a, &h, &s11, 32), 0);
	h = hdr(MEAD_KIND_STIM, 1, 60, 1, 24);
	struct mead_stim_pulse s10 = { .sample = 60, .electrode = 3, .amplitude_ua = 2.0f, .phase_us = 100 };
	assert_int_equal(mv_agg_message(a, &h, &s10, 24), 0);
	/* events: 1.1 (24 bytes) and 1.0 (16), and a longer record of a later minor version */
	struct mead_event e11 = { .sample = 70, .type = MEAD_EVENT_BLANK, .value = 0, .samples = 40,
				  .electrode = MEAD_EVENT_ALL_ELECTRODES };
	h = hdr(MEAD_KIND_EVENTS, 0, 70, 1, 24);
	assert_int_equal(mv_agg_message(a, &h, &e11, 24), 0);
	uint8_t e10[16] = { 0 };
	uint64_t smp = 80;
	uint32_t type = MEAD_EVENT_LABEL;
	int32_t val = 1;
	memcpy(e10, &smp, 8);
	memcpy(e10 + 8, &type, 4);
	memcpy(e10 + 12, &val, 4);
	h = hdr(MEAD_KIND_EVENTS, 1, 80, 1, 16);
	assert_int_equal(mv_agg_message(a, &h, e10, 16), 0);
	uint8_t e12[40] = { 0 };
	memcpy(e12, &e11, 24);
	h = hdr(MEAD_KIND_EVENTS, 2, 90, 1, 40);
	assert_int_equal(mv_agg_message(a, &h, e12, 40), 0);
	/* malformed: a payload that is not count x record_size, a record too short */
	h = hdr(MEAD_KIND_SPIKES, 0, 0, 2, 16);
	assert_int_equal(mv_agg_message(a, &h, e12, 20), -EBADMSG);
	h = hdr(MEAD_KIND_SPIKES, 0, 0, 1, 8);
	assert_int_equal(mv_agg_message(a, &h, e12, 8), -EBADMSG);
	assert_int_equal(mv_agg_bad_messages(a), 2);

	struct mead_json *d = frame(a);
	const struct mead_json_value *r = mead_json_root(d), *st = mead_json_get(d, r, "stim"),
				     *ev = mead_json_get(d, r, "events");
	assert_int_equal(st->n, 2);
	const struct mead_json_value *p0 = mead_json_at(d, st, 0), *p1 = mead_json_at(d, st, 1);
	assert_int_equal(mead_json_at(d, p0, 0)->i, 50);
	assert_int_equal(mead_json_at(d, p0, 1)->i, 2);
	assert_true(mead_json_at(d, p0, 2)->num == -1.5);
	assert_int_equal(mead_json_at(d, p0, 5)->i, 48);   /* requested */
	assert_int_equal(mead_json_at(d, p0, 6)->i, 1);    /* late */
	assert_int_equal(mead_json_at(d, p1, 5)->i, 60);   /* 1.0: requested = delivered */
	assert_int_equal(ev->n, 3);
	const struct mead_json_value *b = mead_json_at(d, ev, 0), *l = mead_json_at(d, ev, 1);
	assert_int_equal(mead_json_at(d, b, 1)->i, MEAD_EVENT_BLANK);
	assert_int_equal(mead_json_at(d, b, 3)->i, 40);
	assert_int_equal(mead_json_at(d, b, 4)->i, 65535);
	assert_int_equal(mead_json_at(d, l, 1)->i, MEAD_EVENT_LABEL);
	assert_int_equal(mead_json_at(d, l, 2)->i, 1);
	assert_int_equal(mead_json_at(d, l, 3)->i, 0);     /* 1.0: no range */
	assert_int_equal(mead_json_at(d, mead_json_at(d, ev, 2), 3)->i, 40);
	mead_json_free(d);

	/* the hello carries the status as it came */
	char buf[4096];
	int n = mv_agg_hello_json(a, buf, sizeof(buf));
	assert_true(n > 0);
	assert_non_null(strstr(buf, "\"labels\":[\"a\",\"b\",\"c\",\"d\"]"));
	mv_agg_free(a);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int16_t get16(const uint8_t *p)
{
	return (int16_t)(p[0] | p[1] << 8);
}

static void test_raw_bins_and_thresholds(void **state)
{
	struct mv_agg *a;
	struct mv_agg_params p = { .threshold_k = 5 };
	assert_int_equal(mv_agg_new(&p, &a), 0);
	status(a, "{\"sample_rate_hz\":25000,\"uv_per_count\":0.5,\"raw_channels\":2,"
		  "\"layout\":{\"rows\":1,\"cols\":2,\"count\":2,\"labels\":[\"a\",\"b\"],\"excluded\":[]}}");
	/* 60 samples: channel 0 counts up, channel 1 down; bins of 25 */
	int16_t raw[60][2];
	for (int i = 0; i < 60; i++) {
		raw[i][0] = (int16_t)i;
		raw[i][1] = (int16_t)-i;
	}
	struct mead_wire_header h = hdr(MEAD_KIND_RAW, 0, 1000, 60, 4);
	assert_int_equal(mv_agg_message(a, &h, raw, sizeof(raw)), 0);
	struct mead_json *d = frame(a);
	const struct mead_json_value *r = mead_json_root(d);
	assert_int_equal(mead_json_number_at(d, r, "raw.bins", 0), 2);   /* the third is still open */
	assert_int_equal(mead_json_number_at(d, r, "raw.bin_samples", 0), 25);
	assert_string_equal(mead_json_path(d, r, "raw.threshold_source")->s, "recomputed");
	mead_json_free(d);
	uint16_t ch[1] = { 1 };
	uint8_t out[256];
	size_t n = mv_agg_raw_binary(a, ch, 1, out, sizeof(out));
	assert_int_equal(n, mv_agg_raw_binary_size(a, 1));
	assert_memory_equal(out, "MVRW", 4);
	assert_int_equal(get32(out + 4), 1);
	assert_int_equal(get32(out + 8), 25);
	assert_int_equal(get32(out + 12), 2);
	assert_int_equal(out[16] | out[17] << 8, 1);
	double s0, s1;
	memcpy(&s0, out + 20, 8);
	memcpy(&s1, out + 28, 8);
	assert_true(s0 == 1000.0 && s1 == 1025.0);
	assert_int_equal(get16(out + 36), -24);   /* bin 0 of channel 1: min, max */
	assert_int_equal(get16(out + 38), 0);
	assert_int_equal(get16(out + 40), -49);
	assert_int_equal(get16(out + 42), -25);
	mv_agg_raw_done(a);
	assert_int_equal(mv_agg_raw_binary(a, ch, 1, out, sizeof(out)), 0);

	/* a second of noise: the estimator warms up and gives a threshold */
	static int16_t noise[25000][2];
	uint64_t x = 12345;
	for (int i = 0; i < 25000; i++)
		for (int c = 0; c < 2; c++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			noise[i][c] = (int16_t)((int)(x >> 58) - 32);   /* uniform -32..31 counts: rms 18.5 = 9.2 uV */
		}
	h = hdr(MEAD_KIND_RAW, 1, 1060, 25000, 4);
	assert_int_equal(mv_agg_message(a, &h, noise, sizeof(noise)), 0);
	d = frame(a);
	r = mead_json_root(d);
	const struct mead_json_value *t = mead_json_path(d, r, "raw.thresholds_uv");
	assert_int_equal(t->n, 2);
	for (uint32_t c = 0; c < 2; c++) {
		double v = mead_json_at(d, t, c)->num;
		if (v < 5 * 9.2 * 0.8 || v > 5 * 9.2 * 1.2)
			fail_msg("threshold of channel %u: %g uV, want about 5 x 9.2", c, v);
	}
	assert_true(mead_json_number_at(d, r, "raw.bins", 0) >= 999);
	mead_json_free(d);
	mv_agg_raw_done(a);

	/* thresholds the driver reports win */
	status(a, "{\"sample_rate_hz\":25000,\"uv_per_count\":0.5,\"raw_channels\":2,\"driver\":{\"thresholds_uv\":[30,40]},"
		  "\"layout\":{\"rows\":1,\"cols\":2,\"count\":2,\"labels\":[\"a\",\"b\"],\"excluded\":[]}}");
	d = frame(a);
	r = mead_json_root(d);
	assert_string_equal(mead_json_path(d, r, "raw.threshold_source")->s, "driver");
	assert_true(mead_json_at(d, mead_json_path(d, r, "raw.thresholds_uv"), 1)->num == 40.0);
	mead_json_free(d);
	mv_agg_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counts_and_gaps),
		cmocka_unit_test(test_records_by_size),
		cmocka_unit_test(test_raw_bins_and_thresholds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
