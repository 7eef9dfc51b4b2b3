/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "daemon/safety.h"

static struct mead_electrode electrodes[8];
static const struct mead_layout_view layout = { 2, 4, 8, 100.0f, electrodes };
static const struct mead_safety_limits limits = {
	.max_amplitude_ua = 20, .max_phase_us = 400, .max_interphase_us = 100,
	.max_charge_nc = 4, .max_rate_hz = 100, .rate_window_ms = 100, .min_interval_us = 5000,
	.max_duty_cycle = 0.5, .max_train_pulses = 50,
};

static struct mead_safety *make(float caps_max_ua, uint32_t flags)
{
	struct mead_driver_caps caps = { .electrode_count = 8, .sample_rate_hz = 1000, .flags = flags,
					 .max_amplitude_ua = caps_max_ua, .max_phase_us = 0 };
	struct mead_safety *s = NULL;

	electrodes[7].excluded = true;
	assert_int_equal(mead_safety_new(&limits, &layout, &caps, 1000, &s), 0);
	return s;
}

static void test_pulse_limits(void **state)
{
	struct mead_safety *s = make(0, MEAD_CAP_STIMULATE);
	struct mead_stim_pulse p = { .sample = 0, .electrode = 1, .amplitude_ua = -10, .phase_us = 200, .interphase_us = 50 };

	assert_int_equal(mead_safety_check_pulse(s, &p), MEAD_SAFE);
	p.electrode = 7;
	assert_int_equal(mead_safety_check_pulse(s, &p), MEAD_UNSAFE_ELECTRODE);
	p.electrode = 8;
	assert_int_equal(mead_safety_check_pulse(s, &p), MEAD_UNSAFE_ELECTRODE);
	p.electrode = 2;
	p.amplitude_ua = 20.5f;
	assert_int_equal(mead_safety_check_pulse(s, &p), MEAD_UNSAFE_AMPLITUDE);
	p.amplitude_ua = -20;
	p.phase_us = 401;
	assert_int_equal(mead_safety_check_pulse(s, &p), MEAD_UNSAFE_PHASE);
	p.phase_us = 0;
	assert_int_equal(mead_safety_check_pulse(s, &p), MEAD_UNSAFE_PHASE);
	p.phase_us = 300;   /* 20 µA x 300 µs = 6 nC > 4 nC */
	assert_int_equal(mead_safety_check_pulse(s, &p), MEAD_UNSAFE_CHARGE);
	p.phase_us = 200;   /* 4 nC: at the limit */
	p.interphase_us = 101;
	assert_int_equal(mead_safety_check_pulse(s, &p), MEAD_UNSAFE_INTERPHASE);
	p.interphase_us = 100;
	assert_int_equal(mead_safety_check_pulse(s, &p), MEAD_SAFE);
	mead_safety_free(s);
}

/* One stimulator for every electrode (a routed rig): a pulse keeps it busy
 * for its two phases, gap and guard, and switching to another electrode
 * takes longer still; overlap is refused here, before any driver call. */
static void test_stimulator_busy_time(void **state)
{
	static const struct mead_safety_limits open_limits = {
		.max_amplitude_ua = 20, .max_phase_us = 400, .max_interphase_us = 100, .max_charge_nc = 10,
		.max_rate_hz = 10000, .rate_window_ms = 100, .min_interval_us = 0, .max_duty_cycle = 1,
		.max_train_pulses = 50,
	};
	/* 25 kHz: a 200+50+200 us pulse is 12 samples (11.25 rounded up), the
	 * 40 us guard 1 more, the 2 ms switch 50 more */
	struct mead_driver_caps caps = { .electrode_count = 8, .sample_rate_hz = 25000, .flags = MEAD_CAP_STIMULATE,
					 .stimulators = 1, .stim_guard_us = 40, .stim_switch_us = 2000 };
	struct mead_safety *s = NULL;
	electrodes[7].excluded = true;
	assert_int_equal(mead_safety_new(&open_limits, &layout, &caps, 25000, &s), 0);
	struct mead_stim_pulse p = { .sample = 100, .electrode = 1, .amplitude_ua = -10, .phase_us = 200,
				     .interphase_us = 50 };
	assert_int_equal(mead_safety_check_pulse(s, &p), MEAD_SAFE);
	p.sample = 112;       /* same electrode, inside the pulse and its guard */
	assert_int_equal(mead_safety_check_pulse(s, &p), MEAD_UNSAFE_BUSY);
	p.sample = 113;       /* same electrode, right after */
	assert_int_equal(mead_safety_check_pulse(s, &p), MEAD_SAFE);
	p.electrode = 2;      /* another electrode: the routing must settle first */
	p.sample = 113 + 13 + 49;
	assert_int_equal(mead_safety_check_pulse(s, &p), MEAD_UNSAFE_BUSY);
	p.sample = 113 + 13 + 50;
	assert_int_equal(mead_safety_check_pulse(s, &p), MEAD_SAFE);
	/* a refused pulse spent nothing: the next one is judged on the accepted */
	p.electrode = 3;
	p.sample = 176 + 13 + 50;
	assert_int_equal(mead_safety_check_pulse(s, &p), MEAD_SAFE);

	/* a train fires its electrodes together: two on the one stimulator is refused up front */
	char why[256];
	uint16_t two[2] = { 1, 2 };
	assert_int_equal(mead_safety_check_train(s, two, 2, -10, 200, 50, 5, 20, why, sizeof(why)), MEAD_UNSAFE_BUSY);
	assert_non_null(strstr(why, "share stimulator"));
	assert_int_equal(mead_safety_check_train(s, two, 1, -10, 200, 50, 5, 20, why, sizeof(why)), MEAD_SAFE);
	/* a rate whose pulses would overlap their own guard */
	assert_int_equal(mead_safety_check_train(s, two, 1, -10, 400, 100, 5, 1100, why, sizeof(why)), MEAD_UNSAFE_BUSY);
	mead_safety_free(s);

	/* one stimulator per electrode (0): simultaneous pulses on two electrodes are fine */
	caps.stimulators = 0;
	assert_int_equal(mead_safety_new(&open_limits, &layout, &caps, 25000, &s), 0);
	p = (struct mead_stim_pulse){ .sample = 100, .electrode = 1, .amplitude_ua = -10, .phase_us = 200 };
	assert_int_equal(mead_safety_check_pulse(s, &p), MEAD_SAFE);
	p.electrode = 2;
	assert_int_equal(mead_safety_check_pulse(s, &p), MEAD_SAFE);
	assert_int_equal(mead_safety_check_train(s, two, 2, -10, 200, 50, 5, 20, why, sizeof(why)), MEAD_SAFE);
	mead_safety_free(s);
}

static void test_interval_rate_and_duty(void **state)
{
	struct mead_safety *s = make(0, MEAD_CAP_STIMULATE);
	struct mead_stim_pulse p = { .sample = 100, .electrode = 3, .amplitude_ua = 5, .phase_us = 100 };
	int accepted = 0;

	/* min_interval 5 ms at 1 kHz: 5 samples apart at least */
	assert_int_equal(mead_safety_check_pulse(s, &p), MEAD_SAFE);
	p.sample = 104;
	assert_int_equal(mead_safety_check_pulse(s, &p), MEAD_UNSAFE_INTERVAL);
	p.electrode = 4;   /* per electrode */
	assert_int_equal(mead_safety_check_pulse(s, &p), MEAD_SAFE);
	mead_safety_free(s);

	/* 100 Hz over a 100 ms window: a burst of 10, then one per 10 ms.  Pulses
	 * every 5 ms (200 Hz) for a second pass about 10 + 100 of 200. */
	s = make(0, MEAD_CAP_STIMULATE);
	p.electrode = 3;
	for (int i = 0; i < 200; i++) {
		p.sample = 1000 + (uint64_t)i * 5;
		enum mead_safety_verdict v = mead_safety_check_pulse(s, &p);
		assert_true(v == MEAD_SAFE || v == MEAD_UNSAFE_RATE);
		accepted += v == MEAD_SAFE;
	}
	assert_true(accepted >= 105 && accepted <= 112);
	mead_safety_free(s);

	/* duty cycle 0.5 over 100 ms = 50 ms inside pulses; 400 µs phases with a
	 * 100 µs gap make 0.9 ms pulses: every 5 ms that is 18%, always fine */
	s = make(0, MEAD_CAP_STIMULATE);
	p.phase_us = 10;
	p.amplitude_ua = 1;
	assert_int_equal(mead_safety_check_pulse(s, &p), MEAD_SAFE);
	mead_safety_free(s);
}

static void test_bounds_of_a_whole_protocol(void **state)
{
	struct mead_safety *s = make(0, MEAD_CAP_STIMULATE);
	struct mead_safety_bounds b = { .max_abs_amplitude_ua = 10, .max_phase_us = 200, .max_interphase_us = 50,
					.max_rate_hz = 80, .min_interval_us = 5000, .electrode_mask = { 0x3f } };
	char why[256];

	assert_int_equal(mead_safety_check_bounds(s, &b, why, sizeof(why)), MEAD_SAFE);
	b.max_rate_hz = 150;
	assert_int_equal(mead_safety_check_bounds(s, &b, why, sizeof(why)), MEAD_UNSAFE_RATE);
	assert_non_null(strstr(why, "safety.max_rate_hz"));
	assert_non_null(strstr(why, "150"));
	b.max_rate_hz = 80;
	b.min_interval_us = 1000;
	assert_int_equal(mead_safety_check_bounds(s, &b, why, sizeof(why)), MEAD_UNSAFE_INTERVAL);
	assert_non_null(strstr(why, "1000 us"));
	b.min_interval_us = 5000;
	b.electrode_mask[0] |= 1u << 7;    /* the excluded one */
	assert_int_equal(mead_safety_check_bounds(s, &b, why, sizeof(why)), MEAD_UNSAFE_ELECTRODE);
	assert_non_null(strstr(why, "electrode 7"));
	b.electrode_mask[0] = 1;
	b.max_abs_amplitude_ua = 25;
	assert_int_equal(mead_safety_check_bounds(s, &b, why, sizeof(why)), MEAD_UNSAFE_AMPLITUDE);
	b.max_abs_amplitude_ua = 10;
	b.max_phase_us = 400;   /* 10 µA x 400 µs = 4 nC: at the limit */
	assert_int_equal(mead_safety_check_bounds(s, &b, why, sizeof(why)), MEAD_SAFE);
	b.max_abs_amplitude_ua = 11;
	assert_int_equal(mead_safety_check_bounds(s, &b, why, sizeof(why)), MEAD_UNSAFE_CHARGE);
	/* a protocol that stimulates nothing is always safe */
	memset(b.electrode_mask, 0, sizeof(b.electrode_mask));
	assert_int_equal(mead_safety_check_bounds(s, &b, why, sizeof(why)), MEAD_SAFE);
	mead_safety_free(s);
}

static void test_driver_caps_are_stricter(void **state)
{
	struct mead_safety *s = make(8, MEAD_CAP_STIMULATE);
	struct mead_stim_pulse p = { .electrode = 0, .amplitude_ua = 10, .phase_us = 100 };

	assert_true(mead_safety_effective(s)->max_amplitude_ua == 8);
	assert_int_equal(mead_safety_check_pulse(s, &p), MEAD_UNSAFE_AMPLITUDE);
	mead_safety_free(s);

	s = make(0, 0);
	p.amplitude_ua = 1;
	assert_int_equal(mead_safety_check_pulse(s, &p), MEAD_UNSAFE_NO_STIMULATION);
	mead_safety_free(s);
}

static void test_train_check_names_limit_and_value(void **state)
{
	struct mead_safety *s = make(0, MEAD_CAP_STIMULATE);
	uint16_t el[2] = { 1, 2 };
	char why[256];

	assert_int_equal(mead_safety_check_train(s, el, 2, -10, 200, 50, 5, 20, why, sizeof(why)), MEAD_SAFE);
	assert_int_equal(mead_safety_check_train(s, el, 2, -30, 200, 50, 5, 20, why, sizeof(why)), MEAD_UNSAFE_AMPLITUDE);
	assert_non_null(strstr(why, "max_amplitude_ua"));
	assert_non_null(strstr(why, "30"));
	assert_int_equal(mead_safety_check_train(s, el, 2, -10, 200, 50, 51, 20, why, sizeof(why)), MEAD_UNSAFE_TRAIN);
	assert_non_null(strstr(why, "51"));
	assert_int_equal(mead_safety_check_train(s, el, 2, -10, 200, 50, 5, 150, why, sizeof(why)), MEAD_UNSAFE_RATE);
	assert_non_null(strstr(why, "150"));
	/* 100 Hz is within the rate but 10 ms spacing... is fine; 5 ms limit */
	assert_int_equal(mead_safety_check_train(s, el, 2, -10, 200, 50, 5, 100, why, sizeof(why)), MEAD_SAFE);
	el[1] = 7;
	assert_int_equal(mead_safety_check_train(s, el, 2, -10, 200, 50, 5, 20, why, sizeof(why)), MEAD_UNSAFE_ELECTRODE);
	assert_non_null(strstr(why, "reference"));
	assert_int_equal(mead_safety_check_train(s, el, 0, -10, 200, 50, 5, 20, why, sizeof(why)), MEAD_UNSAFE_ELECTRODE);
	mead_safety_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pulse_limits),
		cmocka_unit_test(test_interval_rate_and_duty),
		cmocka_unit_test(test_stimulator_busy_time),
		cmocka_unit_test(test_bounds_of_a_whole_protocol),
		cmocka_unit_test(test_driver_caps_are_stricter),
		cmocka_unit_test(test_train_check_names_limit_and_value),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
