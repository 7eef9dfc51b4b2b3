/* SPDX-License-Identifier: MIT */
#include "daemon/safety.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ELECTRODES 256

/* Per-electrode budgets as token buckets that refill with time: a pulse
 * spends one rate token and its duration in duty tokens.  Both refill
 * continuously, so a window's average is bounded without keeping history. */
struct electrode_budget {
	uint64_t last_sample;      /* start of the last accepted pulse */
	bool any;
	double rate_tokens;
	double duty_tokens_us;
};

/* One stimulator: when it is free again, and for which electrode it is
 * routed. */
struct stimulator {
	uint64_t free_at;          /* first sample after the last accepted pulse and its guard */
	uint16_t electrode;
	bool any;
};

struct mead_safety {
	struct mead_safety_limits limits;    /* effective: config and driver, stricter wins */
	uint32_t stimulators;                /* 0: one per electrode */
	uint16_t stimulator_of[MAX_ELECTRODES];
	uint32_t guard_us, switch_us;
	struct stimulator stim[MAX_ELECTRODES];
	uint32_t electrode_count;
	double sample_rate_hz;
	double rate_capacity;                /* tokens */
	double duty_capacity_us;
	bool can_stimulate;
	bool excluded[MAX_ELECTRODES];
	struct electrode_budget budget[MAX_ELECTRODES];
};

int mead_safety_new(const struct mead_safety_limits *limits, const struct mead_layout_view *layout,
		    const struct mead_driver_caps *caps, uint32_t sample_rate_hz, struct mead_safety **ret)
{
	struct mead_safety *s;

	if (!limits || !layout || !caps || !ret || layout->count > MAX_ELECTRODES || sample_rate_hz == 0)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->limits = *limits;
	if (s->limits.rate_window_ms == 0)
		s->limits.rate_window_ms = 1000;
	if (!(s->limits.max_duty_cycle > 0))
		s->limits.max_duty_cycle = 1.0;
	s->can_stimulate = (caps->flags & MEAD_CAP_STIMULATE) != 0;
	if (caps->max_amplitude_ua > 0 && caps->max_amplitude_ua < s->limits.max_amplitude_ua)
		s->limits.max_amplitude_ua = caps->max_amplitude_ua;
	if (caps->max_phase_us > 0 && caps->max_phase_us < s->limits.max_phase_us)
		s->limits.max_phase_us = caps->max_phase_us;
	s->electrode_count = caps->electrode_count && caps->electrode_count < layout->count ?
		caps->electrode_count : layout->count;
	for (uint32_t i = 0; i < layout->count; i++)
		s->excluded[i] = layout->electrodes[i].excluded;
	s->sample_rate_hz = sample_rate_hz;
	s->stimulators = caps->stimulators > MAX_ELECTRODES ? MAX_ELECTRODES : caps->stimulators;
	for (uint32_t i = 0; i < MAX_ELECTRODES; i++) {
		uint16_t k = caps->stimulator_of_electrode && i < layout->count ? caps->stimulator_of_electrode[i] : 0;
		s->stimulator_of[i] = s->stimulators && k < s->stimulators ? k : 0;
	}
	s->guard_us = caps->stim_guard_us;
	s->switch_us = caps->stim_switch_us;
	double window_s = s->limits.rate_window_ms / 1000.0;
	s->rate_capacity = fmax(1.0, s->limits.max_rate_hz * window_s);
	s->duty_capacity_us = s->limits.max_duty_cycle * window_s * 1e6;
	for (uint32_t i = 0; i < MAX_ELECTRODES; i++) {
		s->budget[i].rate_tokens = s->rate_capacity;
		s->budget[i].duty_tokens_us = s->duty_capacity_us;
	}
	*ret = s;
	return 0;
}

void mead_safety_free(struct mead_safety *s)
{
	free(s);
}

const struct mead_safety_limits *mead_safety_effective(const struct mead_safety *s)
{
	return &s->limits;
}

static enum mead_safety_verdict check_shape(const struct mead_safety *s, double amplitude_ua, uint32_t phase_us,
					    uint32_t interphase_us)
{
	double a = fabs(amplitude_ua);

	if (!isfinite(a) || a > s->limits.max_amplitude_ua)
		return MEAD_UNSAFE_AMPLITUDE;
	if (phase_us == 0 || phase_us > s->limits.max_phase_us)
		return MEAD_UNSAFE_PHASE;
	if (interphase_us > s->limits.max_interphase_us)
		return MEAD_UNSAFE_INTERPHASE;
	/* µA x µs = pC; the limit is in nC. */
	if (a * phase_us / 1000.0 > s->limits.max_charge_nc)
		return MEAD_UNSAFE_CHARGE;
	return MEAD_SAFE;
}

static uint64_t us_to_samples_up(const struct mead_safety *s, double us)
{
	return (uint64_t)ceil(us * s->sample_rate_hz / 1e6 - 1e-9);
}

/* The stimulator a pulse needs, and whether it is free at the pulse's start. */
static struct stimulator *stimulator_for(struct mead_safety *s, const struct mead_stim_pulse *p, bool *free_now)
{
	struct stimulator *st = &s->stim[s->stimulator_of[p->electrode]];
	uint64_t ready = st->free_at;
	if (st->any && st->electrode != p->electrode)
		ready += us_to_samples_up(s, s->switch_us);
	*free_now = !st->any || p->sample >= ready;
	return st;
}

enum mead_safety_verdict mead_safety_check_pulse(struct mead_safety *s, const struct mead_stim_pulse *p)
{
	enum mead_safety_verdict v;

	if (!s->can_stimulate)
		return MEAD_UNSAFE_NO_STIMULATION;
	if (p->electrode >= s->electrode_count || s->excluded[p->electrode])
		return MEAD_UNSAFE_ELECTRODE;
	v = check_shape(s, p->amplitude_ua, p->phase_us, p->interphase_us);
	if (v != MEAD_SAFE)
		return v;

	struct electrode_budget *b = &s->budget[p->electrode];
	double rate_tokens = b->rate_tokens, duty_tokens = b->duty_tokens_us;
	if (b->any) {
		if (p->sample < b->last_sample)
			return MEAD_UNSAFE_INTERVAL;
		double dt_us = (double)(p->sample - b->last_sample) * 1e6 / s->sample_rate_hz;
		if (dt_us + 1e-6 < s->limits.min_interval_us)
			return MEAD_UNSAFE_INTERVAL;
		rate_tokens = fmin(s->rate_capacity, rate_tokens + dt_us * 1e-6 * s->limits.max_rate_hz);
		duty_tokens = fmin(s->duty_capacity_us, duty_tokens + dt_us * s->limits.max_duty_cycle);
	}
	double pulse_us = 2.0 * p->phase_us + p->interphase_us;
	if (rate_tokens < 1.0 - 1e-9)
		return MEAD_UNSAFE_RATE;
	if (duty_tokens < pulse_us - 1e-9)
		return MEAD_UNSAFE_DUTY;
	struct stimulator *st = NULL;
	if (s->stimulators) {
		bool free_now;
		st = stimulator_for(s, p, &free_now);
		if (!free_now)
			return MEAD_UNSAFE_BUSY;
	}
	if (st) {
		st->free_at = p->sample + us_to_samples_up(s, pulse_us + s->guard_us);
		st->electrode = p->electrode;
		st->any = true;
	}
	b->rate_tokens = rate_tokens - 1.0;
	b->duty_tokens_us = duty_tokens - pulse_us;
	b->last_sample = p->sample;
	b->any = true;
	return MEAD_SAFE;
}

static enum mead_safety_verdict shape_why(const struct mead_safety *s, double amplitude_ua, uint32_t phase_us,
					  uint32_t interphase_us, char *why, size_t why_len)
{
	enum mead_safety_verdict v = check_shape(s, amplitude_ua, phase_us, interphase_us);

	switch (v) {
	case MEAD_UNSAFE_AMPLITUDE:
		snprintf(why, why_len, "safety.max_amplitude_ua: |%g| uA exceeds %g uA", amplitude_ua,
			 s->limits.max_amplitude_ua);
		break;
	case MEAD_UNSAFE_PHASE:
		snprintf(why, why_len, "safety.max_phase_us: phase %u us is outside 1..%u us", phase_us,
			 s->limits.max_phase_us);
		break;
	case MEAD_UNSAFE_INTERPHASE:
		snprintf(why, why_len, "safety.max_interphase_us: %u us exceeds %u us", interphase_us,
			 s->limits.max_interphase_us);
		break;
	case MEAD_UNSAFE_CHARGE:
		snprintf(why, why_len, "safety.max_charge_nc: %g nC per phase exceeds %g nC",
			 fabs(amplitude_ua) * phase_us / 1000.0, s->limits.max_charge_nc);
		break;
	default:
		break;
	}
	return v;
}

static enum mead_safety_verdict electrode_why(const struct mead_safety *s, uint32_t e, char *why, size_t why_len)
{
	if (e >= s->electrode_count) {
		snprintf(why, why_len, "electrodes: electrode %u does not exist (the layout has %u)", e,
			 s->electrode_count);
		return MEAD_UNSAFE_ELECTRODE;
	}
	if (s->excluded[e]) {
		snprintf(why, why_len, "layout.excluded: electrode %u is a reference/ground electrode", e);
		return MEAD_UNSAFE_ELECTRODE;
	}
	return MEAD_SAFE;
}

enum mead_safety_verdict mead_safety_check_train(const struct mead_safety *s, const uint16_t *electrodes,
						 uint32_t n_electrodes, float amplitude_ua, uint32_t phase_us,
						 uint32_t interphase_us, uint32_t pulses, double rate_hz,
						 char *why, size_t why_len)
{
	enum mead_safety_verdict v;

	if (!s->can_stimulate) {
		snprintf(why, why_len, "the driver cannot stimulate");
		return MEAD_UNSAFE_NO_STIMULATION;
	}
	if (n_electrodes == 0) {
		snprintf(why, why_len, "electrodes: at least one electrode is needed");
		return MEAD_UNSAFE_ELECTRODE;
	}
	for (uint32_t i = 0; i < n_electrodes; i++)
		if ((v = electrode_why(s, electrodes[i], why, why_len)) != MEAD_SAFE)
			return v;
	if ((v = shape_why(s, amplitude_ua, phase_us, interphase_us, why, why_len)) != MEAD_SAFE)
		return v;
	if (pulses == 0 || pulses > s->limits.max_train_pulses) {
		snprintf(why, why_len, "safety.max_train_pulses: %u pulses is outside 1..%u", pulses,
			 s->limits.max_train_pulses);
		return MEAD_UNSAFE_TRAIN;
	}
	if (!(rate_hz > 0) || !isfinite(rate_hz) || rate_hz > s->limits.max_rate_hz) {
		snprintf(why, why_len, "safety.max_rate_hz: %g Hz is outside (0, %g] Hz", rate_hz, s->limits.max_rate_hz);
		return MEAD_UNSAFE_RATE;
	}
	if (pulses > 1 && 1e6 / rate_hz + 1e-6 < s->limits.min_interval_us) {
		snprintf(why, why_len, "safety.min_interval_us: %g us between pulses is below %u us", 1e6 / rate_hz,
			 s->limits.min_interval_us);
		return MEAD_UNSAFE_INTERVAL;
	}
	double pulse_us = 2.0 * phase_us + interphase_us;
	if (pulse_us * rate_hz / 1e6 > s->limits.max_duty_cycle) {
		snprintf(why, why_len, "safety.max_duty_cycle: %g of the time inside pulses exceeds %g",
			 pulse_us * rate_hz / 1e6, s->limits.max_duty_cycle);
		return MEAD_UNSAFE_DUTY;
	}
	/* A train fires its electrodes together: two on one stimulator would
	 * overlap on every pulse. */
	for (uint32_t i = 0; s->stimulators && i < n_electrodes; i++)
		for (uint32_t j = i + 1; j < n_electrodes; j++)
			if (s->stimulator_of[electrodes[i]] == s->stimulator_of[electrodes[j]]) {
				snprintf(why, why_len, "stimulator: electrodes %u and %u share stimulator %u, and a train "
					 "fires its electrodes together; send one train per electrode",
					 electrodes[i], electrodes[j], s->stimulator_of[electrodes[i]]);
				return MEAD_UNSAFE_BUSY;
			}
	if (s->stimulators && pulses > 1 && 1e6 / rate_hz < pulse_us + s->guard_us) {
		snprintf(why, why_len, "stimulator: at %g Hz a pulse of %g us (and its %u us guard) is still playing "
			 "when the next one starts", rate_hz, pulse_us, s->guard_us);
		return MEAD_UNSAFE_BUSY;
	}
	return MEAD_SAFE;
}

enum mead_safety_verdict mead_safety_check_bounds(const struct mead_safety *s, const struct mead_safety_bounds *b,
						  char *why, size_t why_len)
{
	enum mead_safety_verdict v;
	bool any = false;

	for (uint32_t e = 0; e < MAX_ELECTRODES; e++) {
		if (!(b->electrode_mask[e / 64] >> (e % 64) & 1))
			continue;
		any = true;
		if ((v = electrode_why(s, e, why, why_len)) != MEAD_SAFE)
			return v;
	}
	if (!any)
		return MEAD_SAFE;   /* stimulates nothing */
	if (!s->can_stimulate) {
		snprintf(why, why_len, "the driver cannot stimulate");
		return MEAD_UNSAFE_NO_STIMULATION;
	}
	if ((v = shape_why(s, b->max_abs_amplitude_ua, b->max_phase_us, b->max_interphase_us, why, why_len)) != MEAD_SAFE)
		return v;
	if (b->max_rate_hz > s->limits.max_rate_hz) {
		snprintf(why, why_len, "safety.max_rate_hz: the protocol drives electrodes at %g Hz, above %g Hz",
			 b->max_rate_hz, s->limits.max_rate_hz);
		return MEAD_UNSAFE_RATE;
	}
	if (b->min_interval_us < s->limits.min_interval_us) {
		snprintf(why, why_len, "safety.min_interval_us: the protocol can space pulses %u us apart, below %u us",
			 b->min_interval_us, s->limits.min_interval_us);
		return MEAD_UNSAFE_INTERVAL;
	}
	double pulse_us = 2.0 * b->max_phase_us + b->max_interphase_us;
	if (pulse_us * b->max_rate_hz / 1e6 > s->limits.max_duty_cycle) {
		snprintf(why, why_len, "safety.max_duty_cycle: %g of the time inside pulses exceeds %g",
			 pulse_us * b->max_rate_hz / 1e6, s->limits.max_duty_cycle);
		return MEAD_UNSAFE_DUTY;
	}
	return MEAD_SAFE;
}

const char *mead_safety_verdict_name(enum mead_safety_verdict v)
{
	switch (v) {
	case MEAD_SAFE: return "safe";
	case MEAD_UNSAFE_ELECTRODE: return "electrode";
	case MEAD_UNSAFE_AMPLITUDE: return "max_amplitude_ua";
	case MEAD_UNSAFE_PHASE: return "max_phase_us";
	case MEAD_UNSAFE_INTERPHASE: return "max_interphase_us";
	case MEAD_UNSAFE_CHARGE: return "max_charge_nc";
	case MEAD_UNSAFE_RATE: return "max_rate_hz";
	case MEAD_UNSAFE_INTERVAL: return "min_interval_us";
	case MEAD_UNSAFE_DUTY: return "max_duty_cycle";
	case MEAD_UNSAFE_TRAIN: return "max_train_pulses";
	case MEAD_UNSAFE_NO_STIMULATION: return "no_stimulation";
	case MEAD_UNSAFE_BUSY: return "stimulator_busy";
	}
	return "unknown";
}
