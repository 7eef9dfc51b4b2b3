/* SPDX-License-Identifier: MIT */
/*
 * The trial engine shared by every protocol kind.  A kind describes its
 * trials one at a time (phase, item, label, length, rest) and fills a
 * trial's spikes as (ms, electrode) pairs; the engine turns them into
 * pulses at sample positions, emits events and driver commands at trial
 * boundaries and scores trials with the culture's decision rule.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/core/labels.h"
#include "lib/core/resize.h"
#include "protocol/encode.h"
#include "lib/core/err.h"
#include "protocol/protocol.h"

#define NO_ELECTRODE UINT16_MAX
#define PHASE_NONE (-1)

enum trial_flags {
	TRIAL_SCORED    = 1u << 0,   /* decision rule applied at its end */
	TRIAL_LABEL     = 1u << 1,   /* label cells driven */
	TRIAL_LEARNING  = 1u << 2,   /* plasticity on */
	TRIAL_BLOCK_END = 1u << 3,   /* last trial of a validation pass */
	TRIAL_SCREEN_END = 1u << 4,  /* last trial of a validation pass's screen */
};

struct trial_desc {
	int32_t phase;          /* enum mead_phase, MEAD_PROTOCOL_PHASE_VALIDATION or PHASE_NONE */
	uint32_t flags;
	int32_t item;           /* ITEM event value; -1: none */
	int32_t label;          /* LABEL event value; -1: none */
	int32_t class_pos;      /* position in the class list (scoring); -1: none */
	uint32_t duration_ms;
	uint32_t rest_ms;       /* silence after it */
	uint32_t content;       /* kind-specific */
	bool learning_ctl;      /* send LEARNING for this trial's phase */
	uint64_t skip_to;       /* TRIAL_SCREEN_END: plan position after the pass */
};

struct spike_ms {
	uint16_t ms;
	uint16_t electrode;
};

struct mead_protocol;

struct protocol_kind {
	const char *name;
	/* The descriptor at plan position i; false when the plan has no
	 * position i.  Positions count planned trials: a pass cut short by its
	 * screen skips some, so they run ahead of the trial index on the wire.
	 * rt. */
	bool (*trial)(const struct mead_protocol *p, uint64_t i, struct trial_desc *ret);
	/* Append the spikes of plan position i with proto_add_spike().  rt,
	 * bounded. */
	void (*fill)(struct mead_protocol *p, uint64_t i, const struct trial_desc *t);
	void (*free)(void *state);
	/* Pulses decided from what the tick before the window read, added to
	 * the window after the trial's own; NULL for kinds that only play
	 * what they drew.  rt, bounded. */
	void (*react)(struct mead_protocol *p, struct mead_tick_io *io);
	/* Extra JSON members for describe (", \"key\": ..."), may be NULL. */
	int (*describe)(const struct mead_protocol *p, char *buf, size_t len);
};

struct mead_protocol {
	const struct protocol_kind *kind;
	void *state;

	/* environment */
	const struct mead_layout_view *layout;
	uint32_t sample_rate_hz;
	uint32_t period_ns;
	uint32_t cap_flags;
	const uint32_t *units_per_electrode;
	uint64_t seed;

	/* set by the kind */
	struct mead_protocol_stim_config stim;
	bool reset_between;
	uint32_t reset_rest_ms;
	bool sample_end;
	uint64_t n_trials;              /* plan length; UINT64_MAX: unbounded */
	uint32_t max_cells;             /* electrodes one trial may drive */
	uint32_t max_duration_ms;       /* longest trial */
	uint32_t min_duration_ms;       /* shortest trial */
	double max_rate_hz;
	uint64_t mask_lo, mask_hi;

	/* scoring: label electrodes per class position */
	uint32_t n_classes;
	uint32_t n_label_el[MEAD_LABEL_MAX_CLASSES];
	uint16_t label_el[MEAD_LABEL_MAX_CLASSES][MEAD_LABEL_MAX_CELLS];
	double label_units[MEAD_LABEL_MAX_CLASSES];
	bool can_score;
	uint8_t *electrode_class;       /* electrode -> class position + 1, 0: none; layout->count entries */

	/* trial buffers */
	struct spike_ms *spikes, *sorted;
	uint32_t n_spikes, spike_capacity, cursor;
	uint32_t *bucket;               /* max_duration_ms + 1 */
	uint16_t *scratch;              /* max_duration_ms: one cell's spike times */

	/* run state */
	bool started, in_trial, finished;
	int32_t cur_phase;
	int learning;                   /* -1 unknown, 0, 1 */
	uint64_t trial;                 /* current (or next) trial index on the wire */
	uint64_t plan_pos;              /* its position in the kind's plan */
	struct trial_desc td;
	uint64_t start_sample, end_sample, next_start;
	uint64_t counts[MEAD_LABEL_MAX_CLASSES];
	bool restored;

	/* results */
	uint32_t val_n, val_correct;
	uint32_t evaluations;
	uint32_t screened_out;          /* passes cut short by their screen */
	double last_val, best_val;
	bool snapshot_saved;
	uint32_t test_n, test_correct;
};


/* Electrode index at a layout position; NO_ELECTRODE when absent.
 * excluded electrodes are reported as NO_ELECTRODE when skip_excluded. */
uint16_t proto_electrode_at(const struct mead_layout_view *l, uint32_t row, uint32_t col, bool skip_excluded);

static inline void proto_add_spike(struct mead_protocol *p, uint16_t ms, uint16_t electrode)
{
	if (p->n_spikes < p->spike_capacity && electrode != NO_ELECTRODE) {
		p->spikes[p->n_spikes].ms = ms;
		p->spikes[p->n_spikes].electrode = electrode;
		p->n_spikes++;
	}
}

static inline void proto_mask_add(struct mead_protocol *p, uint16_t e)
{
	if (e < 64)
		p->mask_lo |= 1ull << e;
	else if (e < 128)
		p->mask_hi |= 1ull << (e - 64);
}

/* Allocate the trial buffers once the kind set max_cells / max_duration_ms. */
int proto_alloc_buffers(struct mead_protocol *p, char *err, size_t err_len);

/* Kind constructors: fill p (kind, state, stim, n_trials, sizes). */
int proto_mnist_init(struct mead_protocol *p, const struct mead_protocol_config *cfg,
		     const struct mead_protocol_env *env, char *err, size_t err_len);
int proto_random_init(struct mead_protocol *p, const struct mead_protocol_config *cfg,
		      const struct mead_protocol_env *env, char *err, size_t err_len);
int proto_respond_init(struct mead_protocol *p, const struct mead_protocol_config *cfg,
		       const struct mead_protocol_env *env, char *err, size_t err_len);
int proto_ruaro_init(struct mead_protocol *p, const struct mead_protocol_config *cfg,
		     const struct mead_protocol_env *env, char *err, size_t err_len);
