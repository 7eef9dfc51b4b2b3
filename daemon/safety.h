/* SPDX-License-Identifier: MIT */
/*
 * The one layer every stimulation passes through before a driver sees it.
 * Limits come from the configuration and from the driver's capabilities;
 * the stricter of the two applies.  mead_safety_check_pulse runs on the rt
 * thread (no allocation, no locks); the request checks run on the control
 * thread and name the limit and the value they rejected.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mead/driver.h"

struct mead_safety_limits {
	double max_amplitude_ua;
	uint32_t max_phase_us;
	uint32_t max_interphase_us;
	double max_charge_nc;          /* per phase: |amplitude| x phase duration */
	double max_rate_hz;            /* per electrode, mean over rate_window_ms (token bucket) */
	uint32_t rate_window_ms;       /* burst allowance: max_rate_hz x this window */
	uint32_t min_interval_us;      /* per electrode, between pulse starts */
	double max_duty_cycle;         /* per electrode, fraction of time inside pulses over the window */
	uint32_t max_train_pulses;
};

enum mead_safety_verdict {
	MEAD_SAFE = 0,
	MEAD_UNSAFE_ELECTRODE,         /* out of range or excluded */
	MEAD_UNSAFE_AMPLITUDE,
	MEAD_UNSAFE_PHASE,
	MEAD_UNSAFE_INTERPHASE,
	MEAD_UNSAFE_CHARGE,
	MEAD_UNSAFE_RATE,
	MEAD_UNSAFE_INTERVAL,
	MEAD_UNSAFE_DUTY,
	MEAD_UNSAFE_TRAIN,
	MEAD_UNSAFE_NO_STIMULATION,    /* the driver cannot stimulate */
	MEAD_UNSAFE_BUSY,              /* its stimulator is still playing (or switching from) an earlier pulse */
};

struct mead_safety;

int mead_safety_new(const struct mead_safety_limits *limits, const struct mead_layout_view *layout,
		    const struct mead_driver_caps *caps, uint32_t sample_rate_hz, struct mead_safety **ret);
void mead_safety_free(struct mead_safety *s);

const struct mead_safety_limits *mead_safety_effective(const struct mead_safety *s);

/* rt: check one pulse against the limits, the per-electrode rate and its
 * stimulator's busy time (caps.stimulators); a pulse that passes is
 * remembered for the next checks. */
enum mead_safety_verdict mead_safety_check_pulse(struct mead_safety *s, const struct mead_stim_pulse *p);

/* control thread: check a whole train before it is queued.  On rejection,
 * why gets "LIMIT: value V exceeds L" for a person. */
enum mead_safety_verdict mead_safety_check_train(const struct mead_safety *s, const uint16_t *electrodes,
						 uint32_t n_electrodes, float amplitude_ua, uint32_t phase_us,
						 uint32_t interphase_us, uint32_t pulses, double rate_hz,
						 char *why, size_t why_len);

/* main/control thread: check everything a protocol can ever emit before it
 * runs.  The caller copies the protocol's bounds into these plain values so
 * this layer knows nothing of protocols. */
struct mead_safety_bounds {
	double max_abs_amplitude_ua;
	uint32_t max_phase_us;
	uint32_t max_interphase_us;
	double max_rate_hz;            /* mean, per electrode */
	uint32_t min_interval_us;      /* shortest spacing it can produce on one electrode */
	uint64_t electrode_mask[4];    /* electrodes it may stimulate (0..255) */
};
enum mead_safety_verdict mead_safety_check_bounds(const struct mead_safety *s, const struct mead_safety_bounds *b,
						  char *why, size_t why_len);

const char *mead_safety_verdict_name(enum mead_safety_verdict v);
