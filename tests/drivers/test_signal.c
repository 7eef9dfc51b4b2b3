/* SPDX-License-Identifier: MIT */
/* The shared signal path on its own: false positives on recorded-like
 * noise, a noise estimate that bursts do not inflate, blanking, dead time
 * and polarity. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/signal/signal.h"
#include "tests/lib/siggen.h"

#define RATE 25000u
#define BLOCK 25u

struct run {
	uint64_t spikes;
	uint64_t per_channel[64];
	struct mead_spike *log;
	uint32_t n_log, cap_log;
};

/* Feeds seconds of generated signal through the detector in 1 ms blocks. */
static void feed(struct mead_sig *s, struct siggen *g, uint32_t channels, double seconds, struct run *r,
		 void (*each)(struct mead_sig *, uint64_t, void *), void *user)
{
	float *uv = calloc((size_t)BLOCK * channels, sizeof(float));
	struct mead_spike out[512];
	uint64_t blocks = (uint64_t)(seconds * RATE / BLOCK);
	for (uint64_t b = 0; b < blocks; b++) {
		uint64_t first = siggen_position(g);
		if (each)
			each(s, first, user);
		siggen_fill(g, uv, BLOCK);
		struct mead_event ev[64];
		struct mead_frame f = { .spikes = out, .spike_capacity = 512, .events = ev, .event_capacity = 64 };
		mead_sig_process(s, first, uv, BLOCK, &f);
		uint32_t n = f.n_spikes;
		assert_int_equal(f.spikes_dropped, 0);
		for (uint32_t i = 0; i < n; i++) {
			if (i)
				assert_true(out[i].sample >= out[i - 1].sample);
			r->spikes++;
			r->per_channel[out[i].electrode]++;
			if (r->log && r->n_log < r->cap_log)
				r->log[r->n_log++] = out[i];
		}
	}
	free(uv);
}

static struct mead_sig *detector(uint32_t channels, double k, enum mead_sig_polarity pol, uint32_t dead_us)
{
	struct mead_sig_config c;
	mead_sig_config_defaults(&c, channels, RATE);
	c.threshold_k = k;
	c.polarity = pol;
	c.dead_time_us = dead_us;
	struct mead_sig *s = mead_sig_new(&c);
	assert_non_null(s);
	return s;
}

/* Coloured noise with mains pickup and no spikes: every detection is a
 * false positive. */
static void test_false_positives_per_minute(void **unused)
{
	const uint32_t C = 60;
	const double seconds = 20.0;
	double ks[] = { 4.5, 5.0, 6.0 };
	double fp_at_5 = 0;
	for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++) {
		struct siggen *g = siggen_new(C, RATE, 6.0f, 1234);
		struct mead_sig *s = detector(C, ks[i], MEAD_SIG_NEG, 1000);
		struct run r = { 0 };
		feed(s, g, C, seconds, &r, NULL, NULL);
		double per_min = r.spikes / (C * seconds / 60.0);
		print_message("signal: k=%.1f on %u channels x %.0f s of 6 uV noise: %llu false positives, "
			      "%.3f per channel-minute (noise estimate ch0 %.2f uV)\n",
			      ks[i], C, seconds, (unsigned long long)r.spikes, per_min, mead_sig_noise_uv(s, 0));
		if (ks[i] == 5.0)
			fp_at_5 = per_min;
		/* the estimate sits near the true RMS (noise plus hum) */
		assert_true(mead_sig_noise_uv(s, 0) > 5.0f && mead_sig_noise_uv(s, 0) < 7.5f);
		if (ks[i] == 6.0)
			assert_true(per_min < 0.05);
		mead_sig_free(s);
		siggen_free(g);
	}
	/* at the default threshold well under one a minute per channel,
	 * against tens of spikes a minute on an active electrode */
	assert_true(fp_at_5 < 1.0);
}

/* A long high-activity stretch on one channel: a percentile of window
 * RMS values hardly moves, where the RMS over the same span would. */
static void test_burst_does_not_inflate_estimate(void **unused)
{
	const uint32_t C = 4;
	struct siggen *g = siggen_new(C, RATE, 6.0f, 99);
	/* 1.5 s of multi-unit bursting at 5x the noise, starting at 4 s */
	siggen_burst(g, 0, 4 * RATE, (uint64_t)(5.5 * RATE), 30.0f);
	struct mead_sig *s = detector(C, 5.0, MEAD_SIG_NEG, 1000);
	struct run r = { 0 };
	feed(s, g, C, 4.0, &r, NULL, NULL);
	float before = mead_sig_threshold_uv(s, 0);
	feed(s, g, C, 1.5, &r, NULL, NULL);
	float during = mead_sig_threshold_uv(s, 0);
	float other = mead_sig_threshold_uv(s, 1);
	print_message("signal: threshold ch0 before a 1.5 s burst %.1f uV, at its end %.1f uV (ch1 %.1f uV)\n", before,
		      during, other);
	assert_true(before > 0);
	assert_true(during < before * 1.25f);
	mead_sig_free(s);
	siggen_free(g);
}

struct blank_plan {
	uint64_t pulses[16];
	uint32_t n;
	bool blank;
};

static void blank_each(struct mead_sig *s, uint64_t first, void *user)
{
	struct blank_plan *p = user;
	for (uint32_t i = 0; i < p->n; i++)
		if (p->blank && p->pulses[i] >= first && p->pulses[i] < first + BLOCK)
			mead_sig_blank_pulse(s, UINT32_MAX, p->pulses[i]);
}

/* Stimulation artifacts: large, on every channel, right after each pulse.
 * Blanked, they produce no spike; a spike just after the window still
 * counts. */
static void test_blanking(void **unused)
{
	const uint32_t C = 8;
	for (int with = 0; with < 2; with++) {
		struct siggen *g = siggen_new(C, RATE, 6.0f, 5);
		struct blank_plan plan = { .n = 0, .blank = with };
		for (uint32_t i = 0; i < 8; i++) {
			uint64_t at = RATE + i * 5000u;
			plan.pulses[plan.n++] = at;
			/* the artifact: a deep, decaying deflection on all channels */
			for (uint16_t c = 0; c < C; c++)
				for (int d = 0; d < 40; d += 5) {
					struct siggen_spike a = { at + (uint64_t)d + 2, c, 800.0f * expf(-d / 15.0f) };
					siggen_plant(g, &a, 1);
				}
			/* a real spike 3 ms after the pulse (blanking is 2 ms) */
			struct siggen_spike sp = { at + 75, 2, 80.0f };
			siggen_plant(g, &sp, 1);
		}
		struct mead_sig *s = detector(C, 5.0, MEAD_SIG_NEG, 1000);
		struct mead_spike log[4096];
		struct run r = { .log = log, .cap_log = 4096 };
		feed(s, g, C, 3.0, &r, blank_each, &plan);
		uint32_t in_window = 0, after = 0;
		for (uint32_t i = 0; i < r.n_log; i++)
			for (uint32_t k = 0; k < plan.n; k++) {
				if (log[i].sample >= plan.pulses[k] && log[i].sample < plan.pulses[k] + 50)
					in_window++;
				if (log[i].electrode == 2 && log[i].sample + 1 >= plan.pulses[k] + 75 &&
				    log[i].sample <= plan.pulses[k] + 76)
					after++;
			}
		print_message("signal: %s blanking: %u detections inside the artifact windows, %u/8 spikes after them, "
			      "%llu samples blanked\n", with ? "with" : "without", in_window, after,
			      (unsigned long long)mead_sig_blanked_samples(s));
		if (with) {
			assert_int_equal(in_window, 0);
			assert_int_equal(after, 8);
			assert_int_equal(mead_sig_blanked_samples(s), 8ull * 50 * C);
		} else {
			assert_true(in_window >= 8 * C);
		}
		mead_sig_free(s);
		siggen_free(g);
	}
}

static void test_dead_time_and_polarity(void **unused)
{
	const uint32_t C = 2;
	struct {
		double amp;           /* sign: polarity of the planted spike */
		enum mead_sig_polarity pol;
		uint32_t dead_us;
		uint32_t want_per_pair;
	} cases[] = {
		{ 80, MEAD_SIG_NEG, 1000, 1 },   /* 0.6 ms apart, 1 ms dead time */
		{ 80, MEAD_SIG_NEG, 200, 2 },
		{ -80, MEAD_SIG_NEG, 200, 0 },   /* positive spikes, negative detector */
		{ -80, MEAD_SIG_POS, 200, 2 },
		{ -80, MEAD_SIG_BOTH, 200, 2 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct siggen *g = siggen_new(C, RATE, 5.0f, 11);
		uint64_t peaks[40];
		for (uint32_t k = 0; k < 20; k++) {
			uint64_t at = RATE / 2 + k * 2500u;
			struct siggen_spike a = { at, 0, (float)cases[i].amp }, b = { at + 15, 0, (float)cases[i].amp };
			siggen_plant(g, &a, 1);
			siggen_plant(g, &b, 1);
			peaks[2 * k] = at;
			peaks[2 * k + 1] = at + 15;
		}
		struct mead_sig *s = detector(C, 5.0, cases[i].pol, cases[i].dead_us);
		struct mead_spike log[1024];
		struct run r = { .log = log, .cap_log = 1024 };
		feed(s, g, C, 2.6, &r, NULL, NULL);
		/* Only detections at a planted peak count here: the after-
		 * hyperpolarisation of a positive spike is a genuine negative
		 * deflection that a negative detector may report. */
		uint32_t at_peaks = 0;
		for (uint32_t j = 0; j < r.n_log; j++)
			for (int k = 0; k < 40; k++)
				if (log[j].electrode == 0 && log[j].sample + 1 >= peaks[k] && log[j].sample <= peaks[k] + 1)
					at_peaks++;
		print_message("signal: case %zu: %u detections at the 40 planted peaks (%llu on ch0 in all)\n", i, at_peaks,
			      (unsigned long long)r.per_channel[0]);
		assert_int_equal(at_peaks, 20 * cases[i].want_per_pair);
		assert_true(r.per_channel[1] <= 1);
		mead_sig_free(s);
		siggen_free(g);
	}
}

static void test_bad_config(void **unused)
{
	struct mead_sig_config c;
	mead_sig_config_defaults(&c, 0, RATE);
	assert_null(mead_sig_new(&c));
	mead_sig_config_defaults(&c, 4, RATE);
	c.threshold_k = 0;
	assert_null(mead_sig_new(&c));
	enum mead_sig_polarity p;
	assert_int_equal(mead_sig_parse_polarity("sideways", &p), -EINVAL);
	assert_int_equal(mead_sig_parse_polarity("both", &p), 0);
	assert_int_equal(p, MEAD_SIG_BOTH);
	mead_sig_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_config),
		cmocka_unit_test(test_dead_time_and_polarity),
		cmocka_unit_test(test_blanking),
		cmocka_unit_test(test_burst_does_not_inflate_estimate),
		cmocka_unit_test(test_false_positives_per_minute),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
