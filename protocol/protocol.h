/* SPDX-License-Identifier: MIT */
/*
 * Stimulus protocols: what to stimulate, tick by tick.  A protocol knows no
 * hardware: it sees the tick's sample range, the previous tick's frame
 * (closed loop) and writes pulses, events and between-tick driver commands
 * into buffers the loop owns.  mead_protocol_tick() runs on the real-time
 * thread: no allocation, no locks, no I/O.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mead/driver.h"
#include "mead/wire.h"
#include "protocol/protocol_config.h"

#define MEAD_PROTOCOL_MAX_CTL 8

/* Value of a MEAD_EVENT_PHASE event for validation trials (label and
 * learning off, scored by the protocol itself); next after enum mead_phase. */
#define MEAD_PROTOCOL_PHASE_VALIDATION 3
/* The readout pass (protocol.mnist.readout_pass): the training digits again,
 * label and learning off, on the test's weights, not scored; sent as a test
 * phase on the wire. */
#define MEAD_PROTOCOL_PHASE_READOUT 4

struct mead_protocol;

/* What the protocol knows of the rig it runs on. */
struct mead_protocol_env {
	const struct mead_layout_view *layout;
	uint32_t sample_rate_hz;
	uint32_t period_ns;
	uint32_t cap_flags;                    /* enum mead_cap_flags of the driver */
	const uint32_t *units_per_electrode;   /* NULL on hardware */
	const char *data_dir;                  /* where relative dataset paths resolve */
};

struct mead_protocol_ctl {
	uint32_t op;                           /* enum mead_driver_control */
	int64_t value;
};

/*
 * One call per tick, for the window the pulses go into: the loop has just
 * read tick (window - 1) and asks for tick window's stimulation, which it
 * writes at once, so the window is still ahead of the device.
 */
struct mead_tick_io {
	/* in */
	uint64_t tick;                         /* the window's tick */
	uint64_t first_sample;                 /* the window: [first_sample, first_sample + n_samples) */
	uint32_t n_samples;
	const struct mead_frame *frame;        /* what the tick before the window read; NULL for window 0 */

	/* out: the loop applies ctl (in order) before write_stim of the window */
	struct mead_protocol_ctl ctl[MEAD_PROTOCOL_MAX_CTL];
	uint32_t n_ctl;
	struct mead_stim_pulse *stim;          /* pulses starting within this tick, sample-ordered */
	uint32_t stim_capacity;
	uint32_t n_stim;
	struct mead_event *events;
	uint32_t event_capacity;
	uint32_t n_events;
	bool finished;                         /* set once the protocol has nothing more to do */
};

/* main thread: builds everything the protocol needs (datasets loaded, trains
 * pre-drawn or generators seeded).  name selects the configured protocol. */
int mead_protocol_new(const struct mead_protocol_config *cfg, const char *name,
		      const struct mead_protocol_env *env, struct mead_protocol **ret,
		      char *err, size_t err_len);
void mead_protocol_free(struct mead_protocol *p);

/* rt thread. */
int mead_protocol_tick(struct mead_protocol *p, struct mead_tick_io *io);

/* Largest number of pulses / events one tick can produce (the loop sizes
 * its buffers with these before it starts). */
uint32_t mead_protocol_max_stim_per_tick(const struct mead_protocol *p);
uint32_t mead_protocol_max_events_per_tick(const struct mead_protocol *p);

/* Every pulse the protocol can ever emit has these bounds (for the safety
 * layer's whole-protocol check before start). */
struct mead_protocol_bounds {
	float max_abs_amplitude_ua;
	uint32_t max_phase_us;
	uint32_t max_interphase_us;
	double max_rate_hz;                    /* per electrode, mean */
	uint32_t min_interval_us;              /* shortest spacing of two pulses on one electrode */
	uint64_t electrode_mask_lo, electrode_mask_hi; /* electrodes it may stimulate (0..127) */
};
int mead_protocol_bounds(const struct mead_protocol *p, struct mead_protocol_bounds *ret);

/* JSON object with progress (phase, trial, of how many), for status.
 * Returns the length written (as snprintf) or -errno. */
int mead_protocol_describe(const struct mead_protocol *p, char *buf, size_t len);

/* What the protocol scored itself with the culture's decision rule (label
 * cells' spike count per unit, argmax); any thread between ticks, or after
 * the run. */
struct mead_protocol_results {
	uint64_t trial;                        /* trials begun so far */
	uint64_t n_trials;                     /* planned, at most (screened passes end early);
						  UINT64_MAX when unbounded */
	uint32_t evaluations;                  /* validation passes completed */
	uint32_t screened_out;                 /* passes cut short by their screen */
	double last_validation_accuracy;       /* -1 when none */
	double best_validation_accuracy;       /* -1 when none */
	bool snapshot_saved;                   /* SNAPSHOT_SAVE 0 was sent */
	uint32_t test_trials, test_correct;    /* scored test trials so far */
};
int mead_protocol_results(const struct mead_protocol *p, struct mead_protocol_results *ret);
