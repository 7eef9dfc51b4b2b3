/* SPDX-License-Identifier: MIT */
/*
 * What the files of sim/ share and no caller may see: the model's layout,
 * the lazy-potentiation bookkeeping (step.c explains it) and the helpers
 * that read it.
 *
 *   model.c     presets, parameter checks, construction, free
 *   step.c      input, the step, state reset, normalisation, learning switch
 *   access.c    accessors, weights one at a time
 *   state.c     weights to a file and back, snapshots in memory
 *   kernel.h    the row kernels, one set per instruction set: kernel_generic.c,
 *               kernel_avx2.c and kernel_avx512.c (both kernel_simd.h), and
 *               dispatch.c, which picks one
 */
#pragma once

#include "sim/kernel.h"
#include "sim/mead_sim.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An anchor (last spike) for a row that has not spiked since the last
 * state reset: it has nothing pending. */
#define ANCHOR_NONE INT64_MIN
/* Steps between rebases; bounds r^(E - a) and so the float32 rounding of
 * the summed potentiation (step.c), and sizes the history. */
#define REBASE_STEPS 64u

struct mead_sim {
	struct mead_sim_params p;
	uint32_t n, np, ne;     /* neurons, neurons padded to 16, electrodes */

	float rest, reset, th, lb, dm, r, ap, am;
	bool has_lb;
	uint32_t refr;
	double rd;

	/* neuron state, np entries (padding stays 0) */
	float *v, *in, *x, *spk;
	float *rc;              /* refractory steps left (small integers) */
	int64_t *ae;            /* electrode trace anchors (last input spike) */
	uint32_t *se;
	uint8_t *in_pending;
	uint32_t *spikes, *relay, nspikes, nrelay;
	uint64_t t;
	bool learning;

	float *px, *py;
	uint32_t *cell, *cell_count;

	/* Excitatory and input weights are >= +0 when alive and -0.0f when
	 * pruned, so one sign-bit blend keeps pruned ones out of every update
	 * and adding them into the input changes nothing: no branch per entry.
	 * Inhibitory weights are sparse (~5%): CSR by presynaptic neuron, with
	 * the magnitudes stored. */
	float *win;             /* ne rows of np */
	float *wex;             /* n rows of np */
	uint32_t *irow, *icol;  /* CSR, n + 1 and n_inh */
	float *ival;
	uint64_t nsyn[3];

	float *d;               /* (REBASE_STEPS + 1) rows of np */
	float gtab[2 * REBASE_STEPS + 2], rtab[REBASE_STEPS + 1];
	uint64_t epoch;
	uint32_t k;
	int64_t *ax, *ai;
	uint32_t *sx, *si;
	float *colsum, *scale;

	/* weight snapshots (best-checkpoint selection) */
	uint32_t nsnap;
	float **snap;
	bool *snap_full;

	/* a copy, not a pointer to the set: one load less per kernel call */
	struct sim_kernels kern;
};

/* A+ r^(E - a): a row anchored at a, against history with epoch E.  Anchors
 * lie in [E - REBASE_STEPS - 1, E + REBASE_STEPS] except for rows idle since
 * before the previous epoch, which take the slow path. */
static inline float sim_gain_at(const struct mead_sim *s, int64_t off)
{
	if (off >= -(int64_t)REBASE_STEPS - 1 && off <= (int64_t)REBASE_STEPS)
		return s->gtab[off + REBASE_STEPS + 1];
	return (float)((double)s->ap * exp((double)off * s->p.dt_ms / s->p.tau_stdp_ms));
}

static inline float sim_gain_exc(const struct mead_sim *s, int64_t a)
{
	return sim_gain_at(s, a - (int64_t)s->epoch);
}

/* The relay's trace is the neuron's one step late. */
static inline float sim_gain_inh(const struct mead_sim *s, int64_t a)
{
	return sim_gain_at(s, a + 1 - (int64_t)s->epoch);
}

static inline const float *sim_drow(const struct mead_sim *s, uint32_t k)
{
	return s->d + (size_t)k * s->np;
}

/* Zeroed and 64-byte aligned (rows start on a cache line); the size is
 * rounded up to 64 because aligned_alloc() wants a multiple of the alignment. */
void *sim_zalloc(size_t n);

/* Applies every pending potentiation (all post spikes before the current
 * step), adding the excitatory columns into colsum on the way unless NULL. */
void sim_sync_all(struct mead_sim *s, float *colsum);
/* Starts a new history epoch at the current step.  What was pending is
 * dropped: callers sync first, unless the weights were just replaced. */
void sim_rebase(struct mead_sim *s);
