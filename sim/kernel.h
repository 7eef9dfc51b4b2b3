/* SPDX-License-Identifier: MIT */
/*
 * The row kernels of the culture model, private to sim/.  Each instruction
 * set has its own file and is built into its own small library with its
 * own flags (sim/meson.build), so that only that file may use the wider
 * instructions; dispatch.c picks one set at run time.  The SIMD sets share
 * one source, kernel_simd.h, which kernel_avx2.c and kernel_avx512.c
 * instantiate with their vector width and intrinsics.
 *
 * Every set performs the same float operations in the same order as
 * kernel_generic.c and none uses FMA (the library is built with
 * -ffp-contract=off), so all sets give the same bits: runs do not depend
 * on the CPU they ran on.  tests/sim/test_sim_model.c checks it.
 *
 * Rows are padded to 16 floats and the padding holds zeros, so the SIMD
 * sets need no tail loops.
 */
#pragma once

#include <stdint.h>

/* A presynaptic row: pending potentiation g (dk - ds), + ap for this step's
 * post spikes, - am x, clamp at 0, pruned (-0.0) entries kept, add into in. */
typedef void (*sim_pre_full_fn)(float *restrict w, float *restrict in, const float *restrict x,
				const float *restrict spk, const float *restrict dk, const float *restrict ds,
				float g, float ap, float am, uint32_t n);
/* The same without pending potentiation. */
typedef void (*sim_pre_nod_fn)(float *restrict w, float *restrict in, const float *restrict x,
			       const float *restrict spk, float ap, float am, uint32_t n);
/* Four rows of pre_full; each input element receives row 0, 1, 2, 3 in
 * that order, as four pre_full calls would give it. */
typedef void (*sim_pre_full4_fn)(float *const *w, float *restrict in, const float *restrict x,
				 const float *restrict spk, const float *restrict dk, const float *const *ds,
				 const float *g, float ap, float am, uint32_t n);
/* Pending potentiation only; adds the result into colsum unless NULL. */
typedef void (*sim_sync_fn)(float *restrict w, float *restrict colsum, const float *restrict dk,
			    const float *restrict ds, float g, uint32_t n);
/* The neuron update that opens a step (mead_sim_step). */
typedef void (*sim_groups_fn)(float *restrict v, float *restrict in, float *restrict x, float *restrict rc,
			      float rest, float dm, float r, float lbv, uint32_t n);
/* Indices of v >= th, ascending; returns their count. */
typedef uint32_t (*sim_threshold_fn)(const float *restrict v, float th, uint32_t n, uint32_t *restrict out);
typedef void (*sim_acc_fn)(float *restrict acc, const float *restrict w, uint32_t n);
typedef void (*sim_scale_fn)(float *restrict w, const float *restrict s, uint32_t n);

struct sim_kernels {
	sim_pre_full_fn pre_full;
	sim_pre_nod_fn pre_nod;
	sim_pre_full4_fn pre_full4;
	sim_groups_fn groups;
	sim_threshold_fn threshold;
	sim_sync_fn sync;
	sim_acc_fn acc;
	sim_scale_fn scale_rows;
};

extern const struct sim_kernels sim_kernels_generic;
#ifdef MEAD_SIM_HAVE_AVX2
extern const struct sim_kernels sim_kernels_avx2;
#endif
#ifdef MEAD_SIM_HAVE_AVX512
extern const struct sim_kernels sim_kernels_avx512;
#endif

/* The widest set this CPU runs, unless MEAD_SIM_NO_AVX512 or
 * MEAD_SIM_NO_AVX2 is set in the environment (the tests compare the sets). */
const struct sim_kernels *sim_kernels_pick(void);

/* One firing relay's row of the inhibitory CSR (len entries, distinct
 * columns): pending potentiation of the magnitude (ds == NULL when none),
 * this step's post spikes, depression, clamp, subtract from the input.
 * Scalar in every set: its reads go through the CSR columns, and an
 * AVX-512 version with gathers and a scatter ran slower (docs/BENCHMARKS.md). */
void sim_inh_pre(const uint32_t *restrict col, float *restrict m, uint32_t len, float *restrict in,
		 const float *restrict x, const float *restrict spk, const float *restrict dk,
		 const float *restrict ds, float g, float ap, float am);
