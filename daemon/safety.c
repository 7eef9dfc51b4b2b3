/* SPDX-License-Identifier: MIT */
#include "daemon/safety.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mead_safety {
	struct mead_safety_limits limits;    /* effective: config and driver, stricter wins */
	uint32_t electrode_count;
	uint32_t sample_rate_hz;
	uint64_t min_interval_samples;
	bool can_stimulate;
	bool excluded[256];
	uint64_t last_pulse[256];            /* sample of the last accepted pulse + 1; 0 = none */
};

int mead_safety_new(const struct mead_safety_limits *limits, const struct mead_layout_view *layout,
		    const struct mead_driver_caps *caps, uint32_t sample_rate_hz, struct mead_safety **ret)
{
	struct mead_safety *s;

	if (!limits || !layout || !caps || !ret || layout->count > 256 || sample_rate_hz == 0)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->limits = *limits;
	s->can_stimulate = (caps->flags & MEAD_CAP_STIMULATE) != 0;
	if (caps->max_amplitude_ua > 0 && caps->max_amplitude_ua < s->limits.max_amplitude_ua)
		s->limits.max_amplitude_ua = caps->max_amplitude_ua;
	if (caps->max_phase_us > 0 && caps->max_phase_us < s->limits.max_phase_us)
		s->limits.max_phase_us = caps->max_phase_us;
	s->electrode_count = layout->count < caps->electrode_count || caps->electrode_count == 0 ?
		layout->count : caps->electrode_count;
	for (uint32_t i = 0; i < layout->count; i++)
		s->excluded[i] = layout->electrodes[i].excluded;
	s->sample_rate_hz = sample_rate_hz;
	/* The rate limit is enforced as a minimum spacing between pulses on one
	 * electrode, in whole samples, rounded so the limit is never exceeded. */
	s->min_interval_samples = s->limits.max_rate_hz > 0 ?
		(uint64_t)ceil((double)sample_rate_hz / s->limits.max_rate_hz - 1e-9) : UINT64_MAX;
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

static enum mead_safety_verdict check_shape(const struct mead_safety *s, float amplitude_ua, uint32_t phase_us,
					    uint32_t interphase_us)
{
	double a = fabs((double)amplitude_ua);

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
	uint64_t last = s->last_pulse[p->electrode];
	if (last != 0 && p->sample < last - 1 + s->min_interval_samples)
		return MEAD_UNSAFE_RATE;
	s->last_pulse[p->electrode] = p->sample + 1;
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
	for (uint32_t i = 0; i < n_electrodes; i++) {
		if (electrodes[i] >= s->electrode_count) {
			snprintf(why, why_len, "electrodes: electrode %u does not exist (the layout has %u)",
				 electrodes[i], s->electrode_count);
			return MEAD_UNSAFE_ELECTRODE;
		}
		if (s->excluded[electrodes[i]]) {
			snprintf(why, why_len, "electrodes: electrode %u is a reference/ground electrode", electrodes[i]);
			return MEAD_UNSAFE_ELECTRODE;
		}
	}
	v = check_shape(s, amplitude_ua, phase_us, interphase_us);
	switch (v) {
	case MEAD_UNSAFE_AMPLITUDE:
		snprintf(why, why_len, "max_amplitude_ua: |%g| uA exceeds %g uA", (double)amplitude_ua,
			 s->limits.max_amplitude_ua);
		return v;
	case MEAD_UNSAFE_PHASE:
		snprintf(why, why_len, "max_phase_us: phase %u us is outside 1..%u us", phase_us, s->limits.max_phase_us);
		return v;
	case MEAD_UNSAFE_INTERPHASE:
		snprintf(why, why_len, "max_interphase_us: %u us exceeds %u us", interphase_us, s->limits.max_interphase_us);
		return v;
	case MEAD_UNSAFE_CHARGE:
		snprintf(why, why_len, "max_charge_nc: %g nC per phase exceeds %g nC",
			 fabs((double)amplitude_ua) * phase_us / 1000.0, s->limits.max_charge_nc);
		return v;
	default:
		break;
	}
	if (pulses == 0 || pulses > s->limits.max_train_pulses) {
		snprintf(why, why_len, "max_train_pulses: %u pulses is outside 1..%u", pulses, s->limits.max_train_pulses);
		return MEAD_UNSAFE_TRAIN;
	}
	if (!(rate_hz > 0) || rate_hz > s->limits.max_rate_hz || !isfinite(rate_hz)) {
		snprintf(why, why_len, "max_rate_hz: %g Hz is outside (0, %g] Hz", rate_hz, s->limits.max_rate_hz);
		return MEAD_UNSAFE_RATE;
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
	case MEAD_UNSAFE_TRAIN: return "max_train_pulses";
	case MEAD_UNSAFE_NO_STIMULATION: return "no_stimulation";
	}
	return "unknown";
}
