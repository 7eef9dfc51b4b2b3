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

#include "lib/core/parse.h"
#include "lib/signal/signal.h"
#include "tests/lib/siggen.h"
#include "tests/drivers/sig_artifact.h"

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


/* Every BLANK event of a frame, checked against what the window must be. */
struct ev_log {
	struct mead_event ev[512];
	uint32_t n;
};

static void process_block(struct mead_sig *s, uint64_t first, const float *uv, uint32_t n, struct ev_log *log,
			  struct mead_spike *spikes, uint32_t *n_spikes)
{
	struct mead_spike out[256];
	struct mead_event ev[64];
	struct mead_frame f = { .spikes = out, .spike_capacity = 256, .events = ev, .event_capacity = 64 };
	mead_sig_process(s, first, uv, n, &f);
	assert_int_equal(f.spikes_dropped, 0);
	for (uint32_t i = 0; i < f.n_events && log; i++) {
		assert_true(log->n < 512);
		log->ev[log->n++] = ev[i];
	}
	for (uint32_t i = 0; i < f.n_spikes && spikes; i++)
		spikes[(*n_spikes)++] = out[i];
}

/* The samples handed in are only read, in both modes, blanked or
 * subtracted: raw is copied from them after mead_sig_process(). */
static void test_raw_keeps_the_data(void **unused)
{
	const uint32_t C = 4;
	for (int mode = 0; mode < 2; mode++) {
		struct mead_sig_config cfg;
		mead_sig_config_defaults(&cfg, C, RATE);
		cfg.artifact = mode ? MEAD_SIG_ARTIFACT_SALPA : MEAD_SIG_ARTIFACT_BLANK;
		cfg.blank_us = 400;
		struct mead_sig *s = mead_sig_new(&cfg);
		assert_non_null(s);
		struct siggen *g = siggen_new(C, RATE, 6.0f, 3);
		float uv[BLOCK * 4], copy[BLOCK * 4];
		uint32_t changed = 0;
		for (uint64_t first = 0; first < RATE; first += BLOCK) {
			if (first % 2500 == 1250)
				mead_sig_blank_pulse(s, first % 5000 ? 1 : UINT32_MAX, first + 10);
			siggen_fill(g, uv, BLOCK);
			for (uint32_t i = 0; i < BLOCK * C; i++)
				uv[i] += (first % 2500 >= 1250 && first % 2500 < 1400) ? 900.0f : 0.0f;
			memcpy(copy, uv, sizeof(uv));
			process_block(s, first, uv, BLOCK, NULL, NULL, NULL);
			changed += memcmp(copy, uv, sizeof(uv)) != 0;
		}
		struct mead_sig_counts n;
		mead_sig_get_counts(s, &n);
		print_message("signal: %s: %llu channel-samples blanked, %llu subtracted, input blocks changed: %u\n",
			      mode ? "salpa" : "blank", (unsigned long long)n.blanked, (unsigned long long)n.subtracted,
			      changed);
		assert_true(n.blanked > 0);
		assert_int_equal(changed, 0);
		mead_sig_free(s);
		siggen_free(g);
	}
}

/* One BLANK event per blank_pulse() call with the window's range and
 * electrode (all electrodes: 0xffff); overlapping windows each keep their
 * own event while the detector blanks their union; a duplicate call (a
 * driver blanking two channels of one electrode) is reported once; a
 * window reaching back before the first unprocessed sample is cut there
 * and counted; nothing is detected inside a window, even a spike that
 * crossed just before it. */
static void test_blank_events(void **unused)
{
	const uint32_t C = 4;
	const uint16_t map[4] = { 10, 11, 12, 13 };
	struct mead_sig_config cfg;
	mead_sig_config_defaults(&cfg, C, RATE);
	cfg.electrode_of_channel = map;
	cfg.blank_pre_us = 400;              /* 10 samples */
	struct mead_sig *s = mead_sig_new(&cfg);
	assert_non_null(s);
	struct siggen *g = siggen_new(C, RATE, 5.0f, 21);
	/* spikes the detector must not see (inside windows), and some it must */
	const struct siggen_spike plant[] = {
		{ 12020, 0, 150 }, { 12030, 3, 150 },              /* all-electrode window */
		{ 12059, 2, 150 },                                 /* peaks in it, still beyond the threshold after it */
		{ 15030, 2, 150 }, { 15052, 2, 150 },              /* the union of two windows on ch 2 */
		{ 15030, 0, 90 },                                  /* ch 0 is not blanked there */
		{ 15080, 2, 90 },                                  /* after the union */
		{ 17977, 1, 150 },                                 /* crosses before a window, peaks in it */
	};
	siggen_plant(g, plant, sizeof(plant) / sizeof(plant[0]));
	struct ev_log log = { .n = 0 };
	struct mead_spike sp[256];
	uint32_t nsp = 0;
	float uv[BLOCK * 4];
	for (uint64_t first = 0; first < 20000; first += BLOCK) {
		if (first == 11975)
			mead_sig_blank_pulse(s, UINT32_MAX, 12010);
		if (first == 14975) {
			mead_sig_blank_pulse(s, 2, 15010);
			mead_sig_blank_pulse(s, 2, 15020);  /* overlaps: union [15000, 15070) */
		}
		if (first == 16975) {
			mead_sig_blank_pulse(s, 1, 17010);
			mead_sig_blank_pulse(s, 1, 17010);  /* the same again */
		}
		if (first == 17975)
			mead_sig_blank_pulse(s, 1, 17980);  /* reaches back before 17975, the first unprocessed */
		if (first == 18500)
			mead_sig_blank_pulse(s, 3, 18000);  /* wholly in the past */
		siggen_fill(g, uv, BLOCK);
		process_block(s, first, uv, BLOCK, &log, sp, &nsp);
	}
	const struct { uint64_t sample; uint32_t samples; uint16_t electrode; } want[] = {
		{ 12000, 60, MEAD_EVENT_ALL_ELECTRODES },
		{ 15000, 60, 12 },
		{ 15010, 60, 12 },
		{ 17000, 60, 11 },
		{ 17975, 55, 11 },
	};
	for (uint32_t i = 0; i < log.n; i++)
		print_message("signal: BLANK [%llu, +%u) electrode %u value %d\n", (unsigned long long)log.ev[i].sample,
			      log.ev[i].samples, log.ev[i].electrode, log.ev[i].value);
	assert_int_equal(log.n, sizeof(want) / sizeof(want[0]));
	for (uint32_t i = 0; i < log.n; i++) {
		assert_int_equal(log.ev[i].type, MEAD_EVENT_BLANK);
		assert_int_equal(log.ev[i].sample, want[i].sample);
		assert_int_equal(log.ev[i].samples, want[i].samples);
		assert_int_equal(log.ev[i].electrode, want[i].electrode);
		assert_int_equal(log.ev[i].value, 0);
	}
	struct mead_sig_counts n;
	mead_sig_get_counts(s, &n);
	/* 4 x 60 + 70 (the union) + 60 + 55 */
	assert_int_equal(n.blanked, 4 * 60 + 70 + 60 + 55);
	assert_int_equal(n.windows_late, 2);
	assert_int_equal(n.events_lost, 0);
	uint32_t at_15030_ch0 = 0, at_15080 = 0;
	for (uint32_t i = 0; i < nsp; i++) {
		print_message("signal: spike at %llu on electrode %u\n", (unsigned long long)sp[i].sample, sp[i].electrode);
		const uint64_t t = sp[i].sample;
		const uint16_t e = sp[i].electrode;
		assert_false(t >= 12000 && t < 12060);
		/* the peak was blanked: the sample after the window is no crossing */
		assert_false(e == 12 && t >= 12060 && t < 12063);
		assert_false(e == 12 && t >= 15000 && t < 15070);
		assert_false(e == 11 && t >= 17970 && t < 18030);
		at_15030_ch0 += e == 10 && t + 1 >= 15030 && t <= 15031;
		at_15080 += e == 12 && t + 1 >= 15080 && t <= 15081;
	}
	assert_int_equal(at_15030_ch0, 1);
	assert_int_equal(at_15080, 1);
	mead_sig_free(s);
	siggen_free(g);
}

/* BLANK events that do not fit a frame's buffer come with a later frame
 * (n = 0 hands them over without samples); only an overflow of the
 * detector's own queue loses them, and that is counted. */
static void test_events_wait_for_room(void **unused)
{
	struct mead_sig_config cfg;
	mead_sig_config_defaults(&cfg, 2, RATE);
	struct mead_sig *s = mead_sig_new(&cfg);
	assert_non_null(s);
	float uv[BLOCK * 2] = { 0 };
	struct mead_event ev[8];
	for (uint32_t i = 0; i < 3; i++)
		mead_sig_blank_pulse(s, i % 2, 100 + 100 * i);
	uint32_t got = 0;
	for (int call = 0; call < 5; call++) {
		struct mead_frame f = { .events = ev, .event_capacity = 1 };
		mead_sig_process(s, call == 0 ? 0 : BLOCK, uv, call == 0 ? BLOCK : 0, &f);
		assert_true(f.n_events <= 1);
		if (f.n_events)
			assert_int_equal(ev[0].sample, 100 + 100 * got);
		got += f.n_events;
	}
	assert_int_equal(got, 3);
	struct mead_sig_counts n;
	mead_sig_get_counts(s, &n);
	assert_true(n.events_deferred >= 2);
	assert_int_equal(mead_sig_events_lost(s), 0);

	/* no room at all for 300 windows */
	for (uint32_t i = 0; i < 300; i++)
		mead_sig_blank_pulse(s, 0, 1000 + 100 * i);
	struct mead_frame none = { .events = NULL };
	mead_sig_process(s, BLOCK, uv, 0, &none);
	print_message("signal: 300 windows with no room for events: %llu lost\n",
		      (unsigned long long)mead_sig_events_lost(s));
	assert_int_equal(mead_sig_events_lost(s), 300 - 256);
	struct mead_event big[300];
	struct mead_frame room = { .events = big, .event_capacity = 300 };
	mead_sig_process(s, BLOCK, uv, 0, &room);
	assert_int_equal(room.n_events, 256);
	assert_int_equal(big[0].sample, 1000);
	mead_sig_free(s);
}

/* ---- artifacts with spikes on their tails ---- */

#define ART_C 8u
#define ART_FIRST (RATE / 2)
#define ART_RAIL 3000.0f
#define ART_MAX_PULSES 200u

struct art_result {
	uint32_t planted, found, missed, false_window, false_elsewhere;
	uint32_t planted_at[9], found_at[9];  /* by ms after the pulse */
	uint32_t blank0, blank1;              /* BLANK events, value 0 and 1 */
	uint32_t blank0_bad, blank1_bad;      /* of which not where they belong */
	uint64_t blank1_samples;
	struct mead_sig_counts counts;
	float worst_amp_err;                  /* |found - planted| / planted */
};

struct art_setup {
	enum mead_sig_artifact mode;
	uint32_t blank_us;
	uint32_t max_us;
	float rail_uv;                        /* 0: no rail given to the detector */
	float noise_uv;
	uint32_t pulses, period;
	struct sig_artifact art;
	uint32_t cubic_len;                   /* > 0: a cubic artifact this long instead */
	uint64_t rail_at;                     /* > 0: channels pegged again this long after the pulse ... */
	uint32_t rail_len;                    /* ... for this many samples */
};

/* The spike of pulse p on channel c, m ms after the pulse, m = 1..8, each
 * channel at another m for each pulse; 80 µV, the artifact's tail up to
 * tens of times that. */
static uint32_t art_offset_ms(uint32_t p, uint32_t c)
{
	return 1 + (p + c) % 8;
}

static void run_artifact(const struct art_setup *su, struct art_result *r)
{
	const uint32_t C = ART_C;
	memset(r, 0, sizeof(*r));
	struct mead_sig_config cfg;
	mead_sig_config_defaults(&cfg, C, RATE);
	cfg.artifact = su->mode;
	cfg.blank_us = su->blank_us;
	if (su->max_us)
		cfg.salpa_max_us = su->max_us;
	struct mead_sig *s = mead_sig_new(&cfg);
	assert_non_null(s);
	if (su->rail_uv > 0)
		mead_sig_set_rail(s, UINT32_MAX, -su->rail_uv, su->rail_uv);

	uint64_t pulses[ART_MAX_PULSES];
	assert_true(su->pulses <= ART_MAX_PULSES);
	for (uint32_t p = 0; p < su->pulses; p++)
		pulses[p] = ART_FIRST + (uint64_t)p * su->period;
	struct sig_artifact art = su->art;
	art.channels = C;
	art.pulses = pulses;
	art.n_pulses = su->pulses;

	struct siggen *g = siggen_new(C, RATE, su->noise_uv, 77);
	struct siggen_spike *planted = calloc((size_t)su->pulses * C, sizeof(*planted));
	uint32_t np = 0;
	for (uint32_t p = 0; p < su->pulses; p++)
		for (uint32_t c = 0; c < C; c++) {
			uint32_t ms = art_offset_ms(p, c);
			if (su->cubic_len)
				ms *= su->cubic_len / (9 * RATE / 1000); /* spread over the cubic */
			planted[np++] = (struct siggen_spike){ pulses[p] + ms * (RATE / 1000), (uint16_t)c, 80.0f };
		}
	siggen_plant(g, planted, np);
	r->planted = np;
	uint8_t *hit = calloc(np, 1);

	const uint64_t hard = su->mode == MEAD_SIG_ARTIFACT_SALPA && cfg.blank_us * RATE / 1000000u == 0
				      ? 1 : (uint64_t)cfg.blank_us * RATE / 1000000u;
	const uint64_t reach = su->mode == MEAD_SIG_ARTIFACT_SALPA ? (uint64_t)cfg.salpa_max_us * RATE / 1000000u
								    : 20 * (RATE / 1000);
	const uint64_t end = pulses[su->pulses - 1] + su->period;
	float uv[BLOCK * ART_C];
	struct mead_spike out[512];
	struct mead_event ev[64];
	uint32_t next_pulse = 0;
	for (uint64_t first = 0; first < end; first += BLOCK) {
		/* the driver registers a pulse when it writes it, a tick ahead */
		while (next_pulse < su->pulses && pulses[next_pulse] < first + 2 * BLOCK)
			mead_sig_blank_pulse(s, UINT32_MAX, pulses[next_pulse++]);
		siggen_fill(g, uv, BLOCK);
		for (uint32_t p = 0; p < su->pulses && su->cubic_len; p++)
			for (uint32_t i = 0; i < BLOCK; i++) {
				uint64_t t = first + i;
				if (t < pulses[p] || t >= pulses[p] + su->cubic_len)
					continue;
				double u = (double)(su->cubic_len - (t - pulses[p])) / su->cubic_len;
				for (uint32_t c = 0; c < C; c++)
					uv[i * C + c] += (float)(((c & 1) ? -1 : 1) * art.amp_uv * u * u * u);
			}
		if (!su->cubic_len)
			sig_artifact_add(&art, uv, first, BLOCK);
		for (uint32_t p = 0; p < su->pulses && su->rail_len; p++)
			for (uint32_t i = 0; i < BLOCK; i++)
				if (first + i >= pulses[p] + su->rail_at && first + i < pulses[p] + su->rail_at + su->rail_len)
					for (uint32_t c = 0; c < C; c++)
						uv[i * C + c] = (c & 1) ? ART_RAIL : -ART_RAIL;
		struct mead_frame f = { .spikes = out, .spike_capacity = 512, .events = ev, .event_capacity = 64 };
		mead_sig_process(s, first, uv, BLOCK, &f);
		assert_int_equal(f.spikes_dropped, 0);
		for (uint32_t i = 0; i < f.n_spikes; i++) {
			const struct mead_spike *sp = &out[i];
			bool matched = false;
			for (uint32_t k = 0; k < np && !matched; k++) {
				if (planted[k].channel != sp->electrode || hit[k] ||
				    sp->sample + 1 < planted[k].sample || sp->sample > planted[k].sample + 1)
					continue;
				hit[k] = 1;
				matched = true;
				float err = fabsf(-sp->amplitude_uv - planted[k].amp_uv) / planted[k].amp_uv;
				if (getenv("MEAD_SIG_DEBUG") && err > 0.1f)
					print_message("signal: spike on %u, %llu samples after a pulse, %.0f uV\n", sp->electrode,
						      (unsigned long long)((sp->sample - ART_FIRST) % su->period), sp->amplitude_uv);
				if (err > r->worst_amp_err)
					r->worst_amp_err = err;
			}
			if (matched)
				continue;
			uint64_t since = sp->sample < ART_FIRST ? UINT64_MAX : (sp->sample - ART_FIRST) % su->period;
			if (since < reach)
				r->false_window++;
			else
				r->false_elsewhere++;
			if (getenv("MEAD_SIG_DEBUG"))
				print_message("signal: false spike on %u, %llu samples after a pulse, %.0f uV\n",
					      sp->electrode, (unsigned long long)since, sp->amplitude_uv);
		}
		for (uint32_t i = 0; i < f.n_events; i++) {
			const struct mead_event *e = &ev[i];
			assert_int_equal(e->type, MEAD_EVENT_BLANK);
			/* the pulse whose window this is */
			uint64_t at = ART_FIRST + (e->sample - ART_FIRST) / su->period * su->period;
			if (e->value == 0) {
				r->blank0++;
				r->blank0_bad += e->sample != at || e->samples != hard ||
						 e->electrode != MEAD_EVENT_ALL_ELECTRODES;
			} else {
				r->blank1++;
				r->blank1_samples += e->samples;
				r->blank1_bad += e->value != 1 || e->sample != at + hard || e->samples > reach - hard ||
						 e->electrode != MEAD_EVENT_ALL_ELECTRODES;
			}
		}
	}
	for (uint32_t k = 0; k < np; k++) {
		uint32_t m = art_offset_ms(k / C, k % C);
		r->planted_at[m]++;
		r->found_at[m] += hit[k];
		r->found += hit[k];
	}
	r->missed = np - r->found;
	mead_sig_get_counts(s, &r->counts);
	free(hit);
	free(planted);
	mead_sig_free(s);
	siggen_free(g);
}

static void print_art(const char *what, const struct art_result *r)
{
	char by[160];
	int o = 0;
	for (int m = 1; m <= 8; m++)
		o += snprintf(by + o, sizeof(by) - (size_t)o, " %d:%u/%u", m, r->found_at[m], r->planted_at[m]);
	print_message("signal: %s: %u planted, %u found, %u missed, %u false (%u within 20 ms of a pulse); "
		      "found by ms after the pulse%s; BLANK events %u (value 0) + %u (value 1, mean %.1f ms); "
		      "%llu salpa windows, %llu ended by salpa_max_us; worst amplitude error %.0f%%\n",
		      what, r->planted, r->found, r->missed, r->false_window + r->false_elsewhere, r->false_window, by,
		      r->blank0, r->blank1, r->blank1 ? r->blank1_samples / (double)r->blank1 / (RATE / 1000) : 0.0,
		      (unsigned long long)r->counts.salpa_runs, (unsigned long long)r->counts.salpa_forced,
		      100.0 * r->worst_amp_err);
}

/* 0.7..1.3 mV after 0.3-0.45 ms at the rail, back to the noise within
 * about 10 ms */
static const struct sig_artifact tail_artifact = {
	.rail_uv = ART_RAIL, .pegged = 8, .pegged_extra = 3, .amp_uv = 1000.0f,
	.tau_fast = 50.0f, .tau_slow = 75.0f, .slow_frac = 0.15f,
};

/*
 * 150 pulses, every 40 ms, each with a large artifact on all 8 channels
 * and one 80 µV spike per channel 1..8 ms after it.  Blanking 2 ms loses
 * the spikes inside the window and leaves the tail to the detector: false
 * spikes where it falls, missed ones where it rises.  SALPA with a hard
 * blank of 0.4 ms finds the spikes on the tail at their samples and
 * reports nothing the artifact made.
 */
static void test_artifact_blank_vs_salpa(void **unused)
{
	struct art_setup b = { .mode = MEAD_SIG_ARTIFACT_BLANK, .blank_us = 2000, .noise_uv = 6.0f,
			       .pulses = 150, .period = 1000, .art = tail_artifact };
	struct art_result rb, rs;
	run_artifact(&b, &rb);
	print_art("blank 2 ms", &rb);
	struct art_setup sa = b;
	sa.mode = MEAD_SIG_ARTIFACT_SALPA;
	sa.blank_us = 400;
	sa.rail_uv = ART_RAIL;
	run_artifact(&sa, &rs);
	print_art("salpa, hard blank 0.4 ms, N = 3 ms", &rs);

	/* blanking: nothing inside the window; the tail spoils the rest */
	assert_int_equal(rb.found_at[1], 0);
	assert_true(rb.false_window > 0);
	assert_int_equal(rb.blank0, 150);
	assert_int_equal(rb.blank0_bad, 0);
	assert_int_equal(rb.blank1, 0);

	/* SALPA: every spike after the hard blank, each within one sample */
	uint32_t tail = 0, tail_found = 0;
	for (int m = 1; m <= 8; m++) {
		tail += rs.planted_at[m];
		tail_found += rs.found_at[m];
		assert_true(rs.found_at[m] * 10 >= rs.planted_at[m] * 9);
	}
	assert_true(tail_found * 100 >= tail * 98);
	assert_int_equal(rs.false_window, 0);
	/* the noise alone makes about one in 8 channel-minutes at k = 5 */
	assert_true(rs.false_elsewhere <= 2);
	assert_true(rs.found > rb.found + 300);
	/* one hard window and one subtraction window per pulse, where they
	 * belong, and the artifact decayed before salpa_max_us */
	assert_int_equal(rs.blank0, 150);
	assert_int_equal(rs.blank0_bad, 0);
	assert_int_equal(rs.blank1, 150);
	assert_int_equal(rs.blank1_bad, 0);
	assert_int_equal(rs.counts.salpa_runs, 150 * ART_C);
	assert_int_equal(rs.counts.salpa_forced, 0);
}

/* A cubic artifact of 3 mV over 200 ms is fitted exactly by the local
 * cubic: after 5000 recursive updates of the moments the spikes on it come
 * out at their samples with their amplitudes, which a drifting update
 * would not give. */
static void test_salpa_exact_on_cubic(void **unused)
{
	struct art_setup c = { .mode = MEAD_SIG_ARTIFACT_SALPA, .blank_us = 0, .max_us = 250000, .noise_uv = 3.0f,
			       .pulses = 12, .period = 7500, .cubic_len = 5000,
			       .art = { .amp_uv = 3000.0f } };
	struct art_result r;
	run_artifact(&c, &r);
	print_art("salpa on a 3 mV cubic, 200 ms", &r);
	assert_int_equal(r.missed, 0);
	assert_int_equal(r.false_window + r.false_elsewhere, 0);
	assert_true(r.worst_amp_err < 0.2f);
	assert_int_equal(r.blank1, 12);
	assert_int_equal(r.counts.salpa_forced, 0);
	assert_true(r.blank1_samples / r.blank1 > 4000);
}

/* Late in the window the amplifier saturates again for 0.8 ms: given the rail,
 * those samples are blanked, the fit before them runs up to them and a new
 * one starts after them; without it the fit swallows the rail and the
 * detector reports what is not there or loses what is. */
static void test_salpa_pegged_inside_window(void **unused)
{
	struct art_setup sa = { .mode = MEAD_SIG_ARTIFACT_SALPA, .blank_us = 400, .noise_uv = 6.0f,
				.pulses = 100, .period = 1000, .art = tail_artifact, .rail_uv = ART_RAIL,
				.rail_at = 200, .rail_len = 20 };
	struct art_result with, without;
	run_artifact(&sa, &with);
	print_art("salpa, pegged again 8-8.8 ms, rail known", &with);
	sa.rail_uv = 0;
	run_artifact(&sa, &without);
	print_art("salpa, pegged again 8-8.8 ms, rail unknown", &without);
	/* spikes 8 ms after the pulse sit on the blanked stretch */
	uint32_t tail = 0, found = 0;
	for (int m = 1; m <= 7; m++)
		{
			tail += with.planted_at[m];
			found += with.found_at[m];
		}
	assert_true(found * 100 >= tail * 95);
	assert_int_equal(with.false_window, 0);
	assert_true(with.counts.blanked >= 100ull * ART_C * (20 + 10));
	assert_true(without.false_window + without.missed > with.false_window + with.missed + 50);
}

/* Subtraction on the stimulated electrode only: its window is reported on
 * that electrode; a jump in the stream ends a window at the jump. */
static void test_salpa_per_electrode_and_gap(void **unused)
{
	const uint32_t C = 4;
	struct mead_sig_config cfg;
	mead_sig_config_defaults(&cfg, C, RATE);
	const uint16_t map[4] = { 5, 6, 7, 8 };
	cfg.electrode_of_channel = map;
	cfg.artifact = MEAD_SIG_ARTIFACT_SALPA;
	cfg.blank_us = 400;
	struct mead_sig *s = mead_sig_new(&cfg);
	assert_non_null(s);
	struct siggen *g = siggen_new(C, RATE, 6.0f, 8);
	uint64_t pulses[2] = { 10000, 20000 };
	struct sig_artifact art = tail_artifact;
	art.channels = C;
	art.pulses = pulses;
	art.n_pulses = 2;
	struct ev_log log = { .n = 0 };
	float uv[BLOCK * 4];
	uint64_t first = 0;
	while (first < 30000) {
		if (first == 9975)
			mead_sig_blank_pulse(s, 2, 10000);
		if (first == 19975)
			mead_sig_blank_pulse(s, 1, 20000);
		siggen_fill(g, uv, BLOCK);
		sig_artifact_add(&art, uv, first, BLOCK);
		process_block(s, first, uv, BLOCK, &log, NULL, NULL);
		first += BLOCK;
		if (first == 20100) {
			/* 5 ms of samples never arrive */
			siggen_skip(g, 125);
			first += 125;
		}
	}
	for (uint32_t i = 0; i < log.n; i++)
		print_message("signal: BLANK [%llu, +%u) electrode %u value %d\n", (unsigned long long)log.ev[i].sample,
			      log.ev[i].samples, log.ev[i].electrode, log.ev[i].value);
	assert_int_equal(log.n, 4);
	assert_int_equal(log.ev[0].sample, 10000);
	assert_int_equal(log.ev[0].samples, 10);
	assert_int_equal(log.ev[0].electrode, 7);
	assert_int_equal(log.ev[0].value, 0);
	assert_int_equal(log.ev[1].sample, 10010);
	assert_int_equal(log.ev[1].electrode, 7);
	assert_int_equal(log.ev[1].value, 1);
	assert_true(log.ev[1].samples > 150 && log.ev[1].samples < 490);
	assert_int_equal(log.ev[2].sample, 20000);
	assert_int_equal(log.ev[2].electrode, 6);
	assert_int_equal(log.ev[2].value, 0);
	assert_int_equal(log.ev[3].sample, 20010);
	assert_int_equal(log.ev[3].samples, 20100 - 20010);
	assert_int_equal(log.ev[3].electrode, 6);
	assert_int_equal(log.ev[3].value, 1);
	mead_sig_free(s);
	siggen_free(g);
}

static void test_options(void **unused)
{
	struct {
		const char *key, *value, *err;
	} cases[] = {
		{ "artifact", "scrub", "artifact: 'scrub'" },
		{ "salpa_max_us", "1500", "salpa_max_us (1500) must be longer than blank_us (2000)" },
		{ "salpa_half_width_us", "50", "salpa_half_width_us: 50 us at 10000 Hz gives a half window of 1 samples" },
		{ "artifact", "salpa", NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mead_driver_param params[2] = { { cases[i].key, cases[i].value }, { "artifact", "salpa" } };
		struct mead_driver_config dc = { .params = params, .n_params = 2 };
		struct mead_sig_config sc;
		mead_sig_config_defaults(&sc, 4, i == 2 ? 10000 : RATE);
		bool all = false;
		char err[200] = "";
		int r = mead_sig_config_from_params(&sc, &dc, &all, err, sizeof(err));
		print_message("signal: %s=%s: %d %s\n", cases[i].key, cases[i].value, r, err);
		if (cases[i].err) {
			assert_int_equal(r, -EINVAL);
			assert_non_null(strstr(err, cases[i].err));
		} else {
			assert_int_equal(r, 0);
			assert_int_equal(sc.artifact, MEAD_SIG_ARTIFACT_SALPA);
			struct mead_sig *s = mead_sig_new(&sc);
			assert_non_null(s);
			mead_sig_free(s);
		}
	}
	struct mead_sig_config sc;
	mead_sig_config_defaults(&sc, 4, 1000);
	sc.artifact = MEAD_SIG_ARTIFACT_SALPA;
	sc.salpa_half_width_us = 1000;
	assert_null(mead_sig_new(&sc));
	enum mead_sig_artifact a;
	assert_int_equal(mead_sig_parse_artifact("blank", &a), 0);
	assert_int_equal(a, MEAD_SIG_ARTIFACT_BLANK);
	assert_int_equal(mead_sig_parse_artifact("Salpa", &a), -EINVAL);
}

/* Per-electrode thresholds: a multiple of the electrode's own noise or a
 * fixed magnitude, from the options or changed while running (the control
 * op), kept across a reset; the estimates are published for status. */
struct thr_change {
	uint64_t at;
	int64_t packed;
	bool done;
};

static void change_threshold(struct mead_sig *s, uint64_t first, void *user)
{
	struct thr_change *c = user;
	if (!c->done && first >= c->at) {
		assert_int_equal(mead_sig_control(s, MEAD_CTL_THRESHOLD, c->packed), 0);
		c->done = true;
	}
}

static uint32_t detections_at(const struct run *r, uint16_t ch, const uint64_t *peaks, uint32_t n_peaks)
{
	uint32_t n = 0;
	for (uint32_t j = 0; j < r->n_log; j++)
		for (uint32_t k = 0; k < n_peaks; k++)
			if (r->log[j].electrode == ch && r->log[j].sample + 2 >= peaks[k] && r->log[j].sample <= peaks[k] + 2)
				n++;
	return n;
}

static void test_per_electrode_thresholds(void **unused)
{
	const uint32_t C = 4;
	char err[256] = "";
	struct siggen *g = siggen_new(C, RATE, 5.0f, 23);
	uint64_t peaks[21];
	/* 40 µV spikes: 8 noise RMS, over a 5x threshold, under a 10x one */
	for (uint32_t k = 0; k < 20; k++) {
		peaks[k] = RATE / 2 + k * 2500u;
		for (uint16_t ch = 0; ch < C; ch++) {
			struct siggen_spike sp = { peaks[k], ch, 40.0f };
			siggen_plant(g, &sp, 1);
		}
	}
	/* one in the warm-up, on channel 3 only: a fixed threshold needs no estimate */
	peaks[20] = RATE / 20;
	struct siggen_spike early = { peaks[20], 3, 40.0f };
	siggen_plant(g, &early, 1);

	struct mead_sig *s = detector(C, 5.0, MEAD_SIG_NEG, 1000);
	assert_int_equal(mead_sig_set_thresholds(s, "1=10x, 2=-60uV,3=30 uV", err, sizeof(err)), 0);
	/* channel 2 goes down to 30 µV at 1.5 s, between the 10th and 11th spike */
	struct thr_change ch2 = { .at = RATE * 3 / 2,
				  .packed = mead_ctl_threshold_pack(2, MEAD_THRESHOLD_UV, 30.0f) };
	struct mead_spike log[2048];
	struct run r = { .log = log, .cap_log = 2048 };
	feed(s, g, C, 2.6, &r, change_threshold, &ch2);
	uint32_t n0 = detections_at(&r, 0, peaks, 20), n1 = detections_at(&r, 1, peaks, 20);
	uint32_t n2_before = detections_at(&r, 2, peaks, 10), n2_after = detections_at(&r, 2, peaks + 10, 10);
	uint32_t n3 = detections_at(&r, 3, peaks, 21), n0_early = detections_at(&r, 0, peaks + 20, 1);
	print_message("signal: thresholds: ch0 5x %u/20, ch1 10x %u/20, ch2 60 uV %u/10 then 30 uV %u/10, "
		      "ch3 30 uV %u/21 (one in the warm-up); noise %.2f %.2f uV, thresholds %.1f %.1f %.1f %.1f uV\n",
		      n0, n1, n2_before, n2_after, n3, mead_sig_noise_uv(s, 0), mead_sig_noise_uv(s, 1),
		      mead_sig_threshold_uv(s, 0), mead_sig_threshold_uv(s, 1), mead_sig_threshold_uv(s, 2),
		      mead_sig_threshold_uv(s, 3));
	assert_int_equal(n0, 20);
	assert_int_equal(n1, 0);
	assert_int_equal(n2_before, 0);
	assert_int_equal(n2_after, 10);
	assert_int_equal(n3, 21);
	assert_int_equal(n0_early, 0);
	/* published: each channel its own estimate, thresholds as set */
	for (uint32_t ch = 0; ch < C; ch++)
		assert_true(fabs(mead_sig_noise_uv(s, ch) - 5.0) < 1.0);
	assert_true(fabs(mead_sig_threshold_uv(s, 0) - 5.0 * mead_sig_noise_uv(s, 0)) < 1e-3);
	assert_true(fabs(mead_sig_threshold_uv(s, 1) - 10.0 * mead_sig_noise_uv(s, 1)) < 1e-3);
	assert_true(mead_sig_threshold_uv(s, 2) == 30.0f);
	char desc[2048] = "{\"driver\":\"x\"}";
	int n = mead_sig_describe(s, desc, sizeof(desc), (int)strlen(desc));
	assert_true(n > 0 && (size_t)n == strlen(desc));
	print_message("signal: %s\n", desc);
	assert_non_null(strstr(desc, "\"electrodes\":[0,1,2,3]"));
	assert_non_null(strstr(desc, "\"threshold\":[\"5x\",\"10x\",\"30uV\",\"30uV\"]}}"));
	char tiny[40] = "{\"driver\":\"x\"}";
	assert_int_equal(mead_sig_describe(s, tiny, sizeof(tiny), (int)strlen(tiny)), -ENOSPC);
	assert_string_equal(tiny, "{\"driver\":\"x\"}");

	/* kept across a reset; the estimate is not */
	mead_sig_reset(s);
	int mode;
	double v;
	assert_int_equal(mead_sig_get_threshold(s, 1, &mode, &v), 0);
	assert_int_equal(mode, MEAD_THRESHOLD_NOISE);
	assert_true(v == 10.0);
	assert_true(mead_sig_noise_uv(s, 1) == 0.0f);
	assert_true(mead_sig_threshold_uv(s, 3) == 30.0f);

	/* every electrode at once; refusals */
	assert_int_equal(mead_sig_set_threshold(s, MEAD_EVENT_ALL_ELECTRODES, MEAD_THRESHOLD_NOISE, 6.0), (int)C);
	assert_int_equal(mead_sig_set_threshold(s, 7, MEAD_THRESHOLD_NOISE, 6.0), -ENOENT);
	assert_int_equal(mead_sig_set_threshold(s, 1, MEAD_THRESHOLD_NOISE, 1.0), -EINVAL);
	assert_int_equal(mead_sig_set_threshold(s, 1, MEAD_THRESHOLD_UV, 0.0), -EINVAL);
	assert_int_equal(mead_sig_set_threshold(s, 1, 9, 6.0), -EINVAL);
	assert_int_equal(mead_sig_control(s, MEAD_CTL_LEARNING, 1), -EOPNOTSUPP);
	static const char *const bad[][2] = {
		{ "7=6x", "electrode 7 is not recorded by any channel" },
		{ "1=1x", "electrode 1: '1x' is not a threshold" },
		{ "1=6", "electrode 1: '6' is not a threshold" },
		{ "a=6x", "'a' is not an electrode index or all" },
		{ "1:6x", "'1:6x' is not ELECTRODE=VALUE" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(mead_sig_set_thresholds(s, bad[i][0], err, sizeof(err)), -EINVAL);
		print_message("signal: thresholds '%s': %s\n", bad[i][0], err);
		assert_non_null(strstr(err, bad[i][1]));
	}
	/* the one parser: what the option, the control socket and meactl take */
	assert_int_equal(mead_parse_threshold("40\u00b5V", &mode, &v), 0);
	assert_true(mode == MEAD_THRESHOLD_UV && v == 40.0);
	assert_int_equal(mead_parse_threshold("-12.5 uv", &mode, &v), 0);
	assert_true(mode == MEAD_THRESHOLD_UV && v == 12.5);
	assert_int_equal(mead_parse_threshold("4.5X", &mode, &v), 0);
	assert_true(mode == MEAD_THRESHOLD_NOISE && v == 4.5);
	mode = -1;
	assert_int_equal(mead_parse_threshold("21x", &mode, &v), -EINVAL);
	assert_int_equal(mead_parse_threshold("0uV", &mode, &v), -EINVAL);
	assert_int_equal(mead_parse_threshold("nanx", &mode, &v), -EINVAL);
	assert_int_equal(mead_parse_threshold("40 mV", &mode, &v), -EINVAL);
	assert_int_equal(mode, -1);
	assert_int_equal(mead_sig_set_thresholds(s, "all=8x", err, sizeof(err)), 0);
	assert_int_equal(mead_sig_get_threshold(s, 3, &mode, &v), 0);
	assert_true(mode == MEAD_THRESHOLD_NOISE && v == 8.0);
	mead_sig_free(s);
	siggen_free(g);
}

/* Waveforms: the cut is the detector's signal (the input less the slow
 * baseline, replayed here) at the right offsets, its pre samples taken
 * from the block before, complete once its post samples are in; a spike
 * whose post samples never come is counted, not cut; a gap flags it. */
#define WF_PRE 25u
#define WF_POST 50u
#define WF_N (WF_PRE + 1 + WF_POST)
#define WF_LEN 4000u

static const float wf_shape[5] = { -20, -80, -120, -60, -10 };

static float wf_input(uint32_t ch, uint64_t t, const uint64_t *starts, uint32_t n_starts)
{
	float x = 3.0f * (float)sin(0.37 * (double)t + ch) + 7.0f;
	for (uint32_t k = 0; k < n_starts; k++)
		if ((k & 1) == ch && t >= starts[k] && t < starts[k] + 5)
			x += wf_shape[t - starts[k]];
	return x;
}

struct wf_got {
	uint8_t rec[64][sizeof(struct mead_waveform) + 4 * WF_N];
	uint64_t block_end[64];
	uint32_t n;
};

static void wf_feed(struct mead_sig *s, uint64_t from, uint64_t to, const uint64_t *starts, uint32_t n_starts,
		    struct wf_got *got)
{
	float uv[BLOCK * 2];
	for (uint64_t b = from; b < to; b += BLOCK) {
		for (uint32_t i = 0; i < BLOCK; i++)
			for (uint32_t ch = 0; ch < 2; ch++)
				uv[i * 2 + ch] = wf_input(ch, b + i, starts, n_starts);
		struct mead_spike out[16];
		uint8_t buf[4][sizeof(struct mead_waveform) + 4 * WF_N];
		struct mead_frame f = { .spikes = out, .spike_capacity = 16, .waveforms = buf,
					.waveform_size = sizeof(buf[0]), .waveform_capacity = 4 };
		mead_sig_process(s, b, uv, BLOCK, &f);
		assert_int_equal(f.waveforms_dropped, 0);
		for (uint32_t i = 0; i < f.n_waveforms && got->n < 64; i++) {
			memcpy(got->rec[got->n], buf[i], sizeof(buf[i]));
			got->block_end[got->n++] = b + BLOCK;
		}
	}
}

static struct mead_sig *wf_new(uint32_t pre_us, uint32_t post_us)
{
	struct mead_sig_config sc;
	mead_sig_config_defaults(&sc, 2, RATE);
	sc.waveforms = true;
	sc.waveform_pre_us = pre_us;
	sc.waveform_post_us = post_us;
	sc.dead_time_us = 0;
	struct mead_sig *s = mead_sig_new(&sc);
	assert_non_null(s);
	assert_int_equal(mead_sig_set_threshold(s, MEAD_EVENT_ALL_ELECTRODES, MEAD_THRESHOLD_UV, 50), 2);
	return s;
}

static void test_waveforms(void **unused)
{
	/* channel 0: a spike at 1012 (peak 1014: its pre samples reach back
	 * into the block of 975..999), channel 1: at 2000; then one on
	 * channel 0 too close to the end for its post samples */
	const uint64_t starts[] = { 1012, 2000, WF_LEN - 20 };
	struct mead_sig *s = wf_new(1000, 2000);
	uint32_t pre, post;
	mead_sig_waveform_window(s, &pre, &post);
	assert_int_equal(pre, WF_PRE);
	assert_int_equal(post, WF_POST);
	static struct wf_got got;
	memset(&got, 0, sizeof(got));
	wf_feed(s, 0, WF_LEN, starts, 3, &got);
	assert_int_equal(got.n, 2);

	/* the detector's signal, replayed: input less a baseline that
	 * starts at the first sample and follows with a 50 ms time constant */
	const float alpha = (float)(1.0 / (0.05 * RATE));
	static float y[2][WF_LEN];
	for (uint32_t ch = 0; ch < 2; ch++) {
		float dc = wf_input(ch, 0, starts, 3);
		for (uint64_t t = 0; t < WF_LEN; t++) {
			const float x = wf_input(ch, t, starts, 3);
			y[ch][t] = x - dc;
			dc += alpha * (x - dc);
		}
	}
	for (uint32_t k = 0; k < 2; k++) {
		struct mead_waveform w;
		memcpy(&w, got.rec[k], sizeof(w));
		const float *v = (const float *)(got.rec[k] + sizeof(w));
		const uint64_t peak = starts[k] + 2;
		print_message("waveform %u: electrode %u sample %llu flags %u amplitude %.2f, in the block ending %llu\n", k,
			      w.electrode, (unsigned long long)w.sample, w.flags, (double)w.amplitude_uv,
			      (unsigned long long)got.block_end[k]);
		assert_int_equal(w.electrode, k);
		assert_int_equal(w.sample, peak);
		assert_int_equal(w.pre, WF_PRE);
		assert_int_equal(w.post, WF_POST);
		assert_int_equal(w.flags, 0);
		assert_int_equal(w.reserved, 0);
		assert_float_equal(w.amplitude_uv, y[k][peak], 1e-3);
		/* out with the block holding its last sample */
		assert_true(got.block_end[k] > peak + WF_POST && got.block_end[k] <= peak + WF_POST + BLOCK);
		for (uint32_t i = 0; i < WF_N; i++)
			assert_float_equal(v[i], y[k][peak - WF_PRE + i], 1e-3);
		assert_float_equal(v[WF_PRE], y[k][peak], 1e-3);
		assert_true(v[WF_PRE] < -100);
	}
	struct mead_sig_counts c;
	mead_sig_get_counts(s, &c);
	assert_int_equal(c.spikes, 3);
	assert_int_equal(c.waveforms, 2);
	assert_int_equal(c.waveforms_dropped, 0);
	assert_int_equal(c.waveforms_pending, 1);
	assert_int_equal(c.waveforms_unfinished, 0);
	char js[2048] = "{}";
	assert_true(mead_sig_describe(s, js, sizeof(js), 2) > 0);
	assert_non_null(strstr(js, "\"waveforms\":{\"pre\":25,\"post\":50,\"cut\":2,\"dropped\":0,\"unfinished\":0,\"pending\":1}"));
	/* a new run: the one left waiting never gets its waveform, counted */
	mead_sig_reset(s);
	mead_sig_get_counts(s, &c);
	assert_int_equal(c.waveforms_pending, 0);
	assert_int_equal(c.waveforms_unfinished, 1);
	mead_sig_free(s);

	/* a frame without room: dropped and counted, never silent */
	s = wf_new(1000, 2000);
	float uv[2 * 200];
	for (uint32_t i = 0; i < 200; i++)
		for (uint32_t ch = 0; ch < 2; ch++)
			uv[i * 2 + ch] = wf_input(ch, 900 + i, starts, 1);
	struct mead_spike out[16];
	struct mead_frame f = { .spikes = out, .spike_capacity = 16 };
	mead_sig_process(s, 900, uv, 200, &f);
	assert_int_equal(f.n_spikes, 1);
	assert_int_equal(f.n_waveforms, 0);
	assert_int_equal(f.waveforms_dropped, 1);
	mead_sig_get_counts(s, &c);
	assert_int_equal(c.waveforms_dropped, 1);
	mead_sig_free(s);
}

/* A gap inside a waveform's post window: cut with what there is, the
 * missing samples 0 and flagged; so are pre samples before the run. */
static void test_waveform_gap_and_start(void **unused)
{
	const uint64_t starts[] = { 1012 };
	struct mead_sig *s = wf_new(1000, 2000);
	static struct wf_got got;
	memset(&got, 0, sizeof(got));
	wf_feed(s, 0, 1025, starts, 1, &got);
	assert_int_equal(got.n, 0);
	wf_feed(s, 5000, 5100, starts, 1, &got);
	assert_int_equal(got.n, 1);
	struct mead_waveform w;
	memcpy(&w, got.rec[0], sizeof(w));
	const float *v = (const float *)(got.rec[0] + sizeof(w));
	assert_int_equal(w.sample, 1014);
	assert_int_equal(w.flags, MEAD_WAVEFORM_MISSING);
	/* 1014 - 25 .. 1024 came, 1025 .. 1064 did not */
	assert_true(v[WF_PRE] < -100);
	assert_true(v[1024 - 1014 + WF_PRE] != 0.0f);
	for (uint32_t i = 1025 - 1014 + WF_PRE; i < WF_N; i++)
		assert_float_equal(v[i], 0, 0);
	mead_sig_free(s);

	/* a spike 3 samples into the run: 22 of its pre samples never were */
	const uint64_t early[] = { 1 };
	s = wf_new(1000, 2000);
	memset(&got, 0, sizeof(got));
	wf_feed(s, 0, 100, early, 1, &got);
	assert_int_equal(got.n, 1);
	memcpy(&w, got.rec[0], sizeof(w));
	v = (const float *)(got.rec[0] + sizeof(w));
	assert_int_equal(w.sample, 3);
	assert_int_equal(w.flags, MEAD_WAVEFORM_MISSING);
	for (uint32_t i = 0; i < WF_PRE - 3; i++)
		assert_float_equal(v[i], 0, 0);
	assert_true(v[WF_PRE] < -100);
	mead_sig_free(s);

	/* a blank over its post window: flagged, those samples 0 */
	s = wf_new(1000, 2000);
	memset(&got, 0, sizeof(got));
	mead_sig_blank_pulse(s, UINT32_MAX, 1030);
	wf_feed(s, 0, 1200, starts, 1, &got);
	assert_int_equal(got.n, 1);
	memcpy(&w, got.rec[0], sizeof(w));
	v = (const float *)(got.rec[0] + sizeof(w));
	assert_int_equal(w.flags, MEAD_WAVEFORM_BLANKED);
	assert_float_equal(v[1030 - 1014 + WF_PRE], 0, 0);
	mead_sig_free(s);
}

static void test_waveform_options(void **unused)
{
	struct {
		const char *pre, *post;
		uint32_t rate;
		const char *err;
	} cases[] = {
		{ "1010", "2000", RATE, "waveform_pre_us: 1010 us is not a whole number of samples at 25000 Hz (40 us each): 1000 or 1040 us" },
		{ "1000", "2001", RATE, "waveform_post_us: 2001 us is not a whole number of samples" },
		{ "20000", "40000", RATE, "a waveform holds at most 1024" },
		{ "1000", "2000", 30000, NULL },
		{ "0", "2000", RATE, NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mead_driver_param params[3] = { { "waveforms", "true" }, { "waveform_pre_us", cases[i].pre },
						       { "waveform_post_us", cases[i].post } };
		struct mead_driver_config dc = { .params = params, .n_params = 3 };
		struct mead_sig_config sc;
		mead_sig_config_defaults(&sc, 4, cases[i].rate);
		bool all = false;
		char err[300] = "";
		int r = mead_sig_config_from_params(&sc, &dc, &all, err, sizeof(err));
		print_message("signal: waveform %s/%s us at %u Hz: %d %s\n", cases[i].pre, cases[i].post, cases[i].rate, r, err);
		if (cases[i].err) {
			assert_int_equal(r, -EINVAL);
			assert_non_null(strstr(err, cases[i].err));
			continue;
		}
		assert_int_equal(r, 0);
		assert_true(sc.waveforms);
		struct mead_sig *s = mead_sig_new(&sc);
		assert_non_null(s);
		assert_true(mead_sig_waveforms(s));
		mead_sig_free(s);
	}
	/* mead_sig_new() checks them too */
	struct mead_sig_config sc;
	mead_sig_config_defaults(&sc, 4, RATE);
	sc.waveforms = true;
	sc.waveform_pre_us = 1001;
	assert_null(mead_sig_new(&sc));
	/* off by default */
	mead_sig_config_defaults(&sc, 4, RATE);
	struct mead_sig *s = mead_sig_new(&sc);
	uint32_t pre = 9, post = 9;
	mead_sig_waveform_window(s, &pre, &post);
	assert_false(mead_sig_waveforms(s));
	assert_int_equal(pre + post, 0);
	mead_sig_free(s);
	/* a driver with no signal */
	struct mead_driver_param yes = { "waveforms", "true" }, no = { "waveforms", "false" };
	struct mead_driver_config dy = { .params = &yes, .n_params = 1 }, dn = { .params = &no, .n_params = 1 };
	char err[200] = "";
	assert_int_equal(mead_driver_no_waveforms(&dn, "twin", err, sizeof(err)), 0);
	assert_int_equal(mead_driver_no_waveforms(&dy, "twin", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "driver twin has no raw signal, so no spike waveforms"));
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
		cmocka_unit_test(test_waveforms),
		cmocka_unit_test(test_waveform_gap_and_start),
		cmocka_unit_test(test_waveform_options),
		cmocka_unit_test(test_per_electrode_thresholds),
		cmocka_unit_test(test_options),
		cmocka_unit_test(test_raw_keeps_the_data),
		cmocka_unit_test(test_blank_events),
		cmocka_unit_test(test_events_wait_for_room),
		cmocka_unit_test(test_artifact_blank_vs_salpa),
		cmocka_unit_test(test_salpa_exact_on_cubic),
		cmocka_unit_test(test_salpa_pegged_inside_window),
		cmocka_unit_test(test_salpa_per_electrode_and_gap),
		cmocka_unit_test(test_dead_time_and_polarity),
		cmocka_unit_test(test_blanking),
		cmocka_unit_test(test_burst_does_not_inflate_estimate),
		cmocka_unit_test(test_false_positives_per_minute),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
