/* SPDX-License-Identifier: MIT */
/* The culture model against closed forms, the spec's statistics and a
 * plain per-step reference implementation. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sim/mead_sim.h"

static struct mead_sim_params preset(const char *name, uint64_t seed)
{
	struct mead_sim_params p = { .seed = seed };
	assert_int_equal(mead_sim_params_preset(name, &p), 0);
	p.seed = seed;
	return p;
}

static struct mead_sim *make(const struct mead_sim_params *p)
{
	struct mead_sim *s = NULL;
	assert_int_equal(mead_sim_new(p, &s), 0);
	assert_non_null(s);
	return s;
}

static uint32_t step(struct mead_sim *s, const uint32_t **sp)
{
	uint32_t n;
	const uint32_t *tmp;
	mead_sim_step(s, sp ? sp : &tmp, &n);
	return n;
}

static float weight(struct mead_sim *s, enum mead_sim_pathway p, uint32_t pre, uint32_t post)
{
	float w = NAN;
	assert_int_equal(mead_sim_weight(s, p, pre, post, &w), 0);
	return w;
}

/* ------------------------------------------------------------ API basics */

static void test_params_and_errors(void **state)
{
	(void)state;
	struct mead_sim_params p = { 0 };
	assert_int_equal(mead_sim_params_preset("nope", &p), -EINVAL);
	assert_int_equal(mead_sim_params_preset("tsk-10140", &p), 0);
	assert_int_equal(p.neurons, 10140);
	assert_false(p.has_lower_bound);
	assert_true(p.v_rest_mv == -90.0 && p.exc_strength == 8.0 && p.inh_strength == 800.0);
	assert_int_equal(mead_sim_params_preset("tsk-240", &p), 0);
	assert_true(p.v_rest_mv == -90.0 && p.exc_strength == 3.0 && p.inh_strength == 300.0);
	assert_int_equal(mead_sim_params_preset("bio-240", &p), 0);
	assert_true(p.has_lower_bound && p.v_rest_mv == -70.0 && p.exc_strength == 1.0 && p.inh_strength == 10.0);
	assert_true(p.sigma_e_mm == 1.2 && p.sigma_i_mm == 0.15 && p.electrode_reach_mm == 0.3);

	struct mead_sim *s = (struct mead_sim *)0x1;
	p.neurons = 0;
	assert_int_equal(mead_sim_new(&p, &s), -EINVAL);
	assert_ptr_equal(s, (struct mead_sim *)0x1); /* untouched on failure */
	p.neurons = 240;
	p.dt_ms = 0;
	assert_int_equal(mead_sim_new(&p, &s), -EINVAL);
	mead_sim_free(NULL);
}

/* ------------------------------------------------- single-neuron dynamics */

/* Two neurons, no recurrent synapses (reach ~0), every electrode reaching. */
static struct mead_sim *isolated(const char *cfg)
{
	struct mead_sim_params p = preset(cfg, 3);
	p.neurons = 2;
	p.sigma_e_mm = 1e-6;
	p.sigma_i_mm = 1e-6;
	p.electrode_reach_mm = 30;
	p.input_strength = 6;
	p.stdp = false;
	struct mead_sim *s = make(&p);
	assert_int_equal(mead_sim_pathway_synapses(s, MEAD_SIM_EXC), 0);
	assert_int_equal(mead_sim_pathway_synapses(s, MEAD_SIM_INH), 0);
	assert_true(mead_sim_pathway_synapses(s, MEAD_SIM_INPUT) > 100);
	return s;
}

static float vof(struct mead_sim *s, uint32_t i)
{
	float v;
	assert_int_equal(mead_sim_neuron_state(s, i, &v, NULL, NULL), 0);
	return v;
}

static void test_neuron_decay_threshold(void **state)
{
	(void)state;
	struct mead_sim *s = isolated("bio");
	const double rest = 0.5, dm = exp(-1.0 / 50.0);
	/* decay towards rest: v_k = rest + (v0 - rest) dm^k */
	assert_int_equal(mead_sim_set_potential(s, 0, 0.9f), 0);
	for (int k = 1; k <= 30; k++) {
		assert_int_equal(step(s, NULL), 0);
		assert_float_equal(vof(s, 0), rest + (0.9 - rest) * pow(dm, k), 2e-6);
	}
	/* just under threshold after the decay: no spike */
	float under = (float)(rest + (0.999 - rest) / dm);
	mead_sim_set_potential(s, 0, under);
	assert_int_equal(step(s, NULL), 0);
	assert_true(vof(s, 0) < 1.0f && vof(s, 0) > 0.998f);
	/* over threshold: spike, reset, refractory 5, trace 1 */
	mead_sim_set_potential(s, 0, 1.6f);
	const uint32_t *sp;
	assert_int_equal(step(s, &sp), 1);
	assert_int_equal(sp[0], 0);
	float v, x;
	uint32_t rc;
	mead_sim_neuron_state(s, 0, &v, &x, &rc);
	assert_float_equal(v, 0.5, 0);
	assert_float_equal(x, 1.0, 0);
	assert_int_equal(rc, 5);
	mead_sim_free(s);
}

static void test_neuron_refractory(void **state)
{
	(void)state;
	struct mead_sim *s = isolated("bio");
	/* the strongest electrode onto neuron 0 */
	uint32_t best = 0;
	float wb = 0;
	for (uint32_t e = 0; e < 60; e++) {
		float w;
		if (mead_sim_weight(s, MEAD_SIM_INPUT, e, 0, &w) == 0 && w > wb) {
			wb = w;
			best = e;
		}
	}
	assert_true(wb > 0.05f && wb < 0.5f);
	/* input of step t lands at t + 1 */
	assert_int_equal(mead_sim_input(s, best), 0);
	step(s, NULL);
	assert_float_equal(vof(s, 0), 0.5, 0);
	step(s, NULL);
	assert_float_equal(vof(s, 0), 0.5f + wb, 1e-7);
	mead_sim_reset_state(s);

	mead_sim_set_potential(s, 0, 1.6f);
	assert_int_equal(step(s, NULL), 1); /* spike at t0 */
	/* inputs at t0+1..t0+5 land at t0+2..t0+6: the first four are lost to
	 * the refractory period (5 steps: t0+1..t0+5), the last one counts */
	for (int m = 1; m <= 5; m++) {
		mead_sim_input(s, best);
		step(s, NULL);
		assert_float_equal(vof(s, 0), 0.5, 0); /* rest = reset: decay keeps it */
	}
	step(s, NULL);
	assert_float_equal(vof(s, 0), 0.5f + wb, 1e-7);
	assert_int_equal(mead_sim_input(s, 60), -ERANGE);
	mead_sim_free(s);
}

static void test_neuron_clamp(void **state)
{
	(void)state;
	const double dm = exp(-1.0 / 50.0);
	struct mead_sim *s = isolated("bio");
	mead_sim_set_potential(s, 0, -1.0f);
	step(s, NULL);
	assert_float_equal(vof(s, 0), 0.0, 0); /* clamped at -90 mV */
	mead_sim_free(s);
	s = isolated("tsk"); /* no lower bound, rest -90 mV = 0 */
	mead_sim_set_potential(s, 0, -1.0f);
	step(s, NULL);
	assert_float_equal(vof(s, 0), -dm, 1e-6);
	step(s, NULL);
	assert_float_equal(vof(s, 0), -dm * dm, 1e-6);
	mead_sim_free(s);
}

/* ------------------------------------------------------------ connectivity */

static void check_sums(struct mead_sim *s, double in_str, double exc_str, double inh_str)
{
	uint32_t n = mead_sim_neurons(s);
	for (uint32_t j = 0; j < n; j++) {
		double si = 0, se = 0, sh = 0;
		float w;
		for (uint32_t e = 0; e < 60; e++)
			if (mead_sim_weight(s, MEAD_SIM_INPUT, e, j, &w) == 0)
				si += fabs(w);
		for (uint32_t i = 0; i < n; i++) {
			if (mead_sim_weight(s, MEAD_SIM_EXC, i, j, &w) == 0)
				se += fabs(w);
			if (mead_sim_weight(s, MEAD_SIM_INH, i, j, &w) == 0) {
				assert_true(w <= 0.0f);
				sh += fabs(w);
			}
		}
		assert_float_equal(si, in_str, 1e-4 * in_str);
		assert_float_equal(se, exc_str, 1e-4 * exc_str);
		if (sh > 0)
			assert_float_equal(sh, inh_str, 1e-4 * inh_str);
	}
}

static void test_connectivity_statistics(void **state)
{
	(void)state;
	struct mead_sim_params p = preset("bio", 11);
	p.neurons = 1000;
	struct mead_sim *s = make(&p);
	uint32_t n = 1000;
	double reach = (double)mead_sim_pathway_synapses(s, MEAD_SIM_INPUT) / n;
	double exc = (double)mead_sim_pathway_synapses(s, MEAD_SIM_EXC) / ((double)n * (n - 1));
	double inh = (double)mead_sim_pathway_synapses(s, MEAD_SIM_INH) / ((double)n * (n - 1));
	print_message("electrodes reaching a neuron %.2f, excitatory density %.3f, inhibitory %.4f\n", reach, exc,
		      inh);
	assert_true(reach > 9.0 && reach < 13.0);      /* spec: ~11 of 60 */
	assert_true(exc > 0.92 && exc < 0.98);         /* spec: ~95% */
	assert_true(inh > 0.035 && inh < 0.065);       /* spec: ~5% */
	/* every neuron lies in exactly one cell; counts add up */
	uint32_t tot = 0;
	for (uint32_t e = 0; e < 60; e++)
		tot += mead_sim_electrode_neurons(s, e);
	assert_int_equal(tot, n);
	for (uint32_t i = 0; i < n; i += 37) {
		double x, y;
		mead_sim_neuron_position(s, i, &x, &y);
		assert_true(x >= 0 && x < 5.0 && y >= 0 && y < 3.0);
		uint32_t e = mead_sim_neuron_electrode(s, i);
		assert_int_equal(e, (uint32_t)(y / 0.5) * 10 + (uint32_t)(x / 0.5));
	}
	check_sums(s, 1.0, 1.0, 10.0);
	assert_int_equal(mead_sim_weight(s, MEAD_SIM_EXC, 5, 5, &(float){ 0 }), -ENOENT); /* no self */
	mead_sim_free(s);
}

static void drive(struct mead_sim *s, uint32_t steps, uint64_t *lcg, bool sample_boundaries, uint64_t *hash)
{
	for (uint32_t t = 0; t < steps; t++) {
		if (sample_boundaries && mead_sim_time(s) % 100 == 0) {
			mead_sim_normalise(s);
			mead_sim_reset_state(s);
		}
		for (uint32_t e = 0; e < 60; e++) {
			*lcg = *lcg * 6364136223846793005ull + 1442695040888963407ull;
			uint32_t col = e % 10;
			uint32_t thresh = col < 6 ? (uint32_t)(e * 3 % 20) : (col == 9 && e < 30 ? 20 : 0);
			if ((*lcg >> 33) % 100 < thresh)
				mead_sim_input(s, e);
		}
		const uint32_t *sp;
		uint32_t ns = step(s, &sp);
		if (hash)
			for (uint32_t q = 0; q < ns; q++)
				*hash = (*hash ^ ((uint64_t)t << 20 ^ sp[q])) * 0x100000001b3ull;
	}
}

static void test_pruned_stay_zero_and_scaling(void **state)
{
	(void)state;
	struct mead_sim_params p = preset("bio-240", 21);
	struct mead_sim *s = make(&p);
	uint32_t n = 240;
	uint8_t *mask = calloc((size_t)n * n + 60 * n, 1);
	float w;
	for (uint32_t i = 0; i < n; i++)
		for (uint32_t j = 0; j < n; j++)
			mask[i * n + j] = (uint8_t)(mead_sim_weight(s, MEAD_SIM_EXC, i, j, &w) == 0) |
					  (uint8_t)((mead_sim_weight(s, MEAD_SIM_INH, i, j, &w) == 0) << 1);
	for (uint32_t e = 0; e < 60; e++)
		for (uint32_t j = 0; j < n; j++)
			mask[n * n + e * n + j] = mead_sim_weight(s, MEAD_SIM_INPUT, e, j, &w) == 0;
	uint64_t lcg = 1;
	drive(s, 1000, &lcg, true, NULL);
	uint64_t changed = 0;
	for (uint32_t i = 0; i < n; i++)
		for (uint32_t j = 0; j < n; j++) {
			int le = mead_sim_weight(s, MEAD_SIM_EXC, i, j, &w) == 0;
			int li = mead_sim_weight(s, MEAD_SIM_INH, i, j, &w) == 0;
			assert_int_equal(le | li << 1, mask[i * n + j]);
		}
	for (uint32_t e = 0; e < 60; e++)
		for (uint32_t j = 0; j < n; j++)
			assert_int_equal(mead_sim_weight(s, MEAD_SIM_INPUT, e, j, &w) == 0, mask[n * n + e * n + j]);
	/* learning did happen, and scaling restores the budgets */
	struct mead_sim *fresh = make(&p);
	for (uint32_t i = 0; i < n; i++)
		for (uint32_t j = 0; j < n; j++)
			if (mask[i * n + j] & 1) {
				float a = weight(s, MEAD_SIM_EXC, i, j), b = weight(fresh, MEAD_SIM_EXC, i, j);
				changed += a != b;
			}
	assert_true(changed > 1000);
	mead_sim_normalise(s);
	check_sums(s, 1.0, 1.0, 10.0);
	mead_sim_free(fresh);
	mead_sim_free(s);
	free(mask);
}

/* ------------------------------------------------------------------- STDP */

/* Two neurons wired both ways on every pathway, with budgets too small to
 * make anything spike by itself. */
static struct mead_sim *pair(void)
{
	struct mead_sim_params p = preset("bio", 5);
	p.neurons = 2;
	p.sigma_e_mm = 300;
	p.sigma_i_mm = 300;
	p.electrode_reach_mm = 300;
	p.exc_strength = 0.01;
	p.inh_strength = 0.01;
	p.input_strength = 0.01;
	p.prune_threshold = 0;
	struct mead_sim *s = make(&p);
	assert_int_equal(mead_sim_pathway_synapses(s, MEAD_SIM_EXC), 2);
	assert_int_equal(mead_sim_pathway_synapses(s, MEAD_SIM_INH), 2);
	assert_true(mead_sim_learning(s));
	return s;
}

static void force(struct mead_sim *s, uint32_t i) { mead_sim_set_potential(s, i, 2.0f); }

static void test_stdp_exc_and_inh(void **state)
{
	(void)state;
	const double ap = 1e-2, am = 1e-4;
	for (int d = 1; d <= 12; d += 11) {
		struct mead_sim *s = pair();
		double r = exp(-1.0 / 20.0);
		float e01 = weight(s, MEAD_SIM_EXC, 0, 1), e10 = weight(s, MEAD_SIM_EXC, 1, 0);
		float h01 = weight(s, MEAD_SIM_INH, 0, 1), h10 = weight(s, MEAD_SIM_INH, 1, 0);
		assert_float_equal(e01, 0.01, 1e-8);
		assert_float_equal(h01, -0.01, 1e-8);
		force(s, 0);
		assert_int_equal(step(s, NULL), 1); /* 0 fires at t0 */
		for (int k = 1; k < d; k++)
			assert_int_equal(step(s, NULL), 0);
		force(s, 1);
		const uint32_t *sp;
		assert_int_equal(step(s, &sp), 1); /* 1 fires at t0 + d */
		assert_int_equal(sp[0], 1);
		assert_int_equal(step(s, NULL), 0); /* 1's relay fires at t0 + d + 1 */
		/* pre before post potentiates by A+ x_pre */
		assert_float_equal(weight(s, MEAD_SIM_EXC, 0, 1), e01 + ap * pow(r, d), 1e-8);
		/* post before pre depresses by A- x_post */
		assert_float_equal(weight(s, MEAD_SIM_EXC, 1, 0), e10 - am * pow(r, d), 1e-8);
		/* inhibitory: signs reversed, the relay's trace is one step old */
		/* (for d = 1 the relay of 0 and the spike of 1 share a step: the post
		 * update comes first, then the relay's pre update adds A- x_1 = A-) */
		assert_float_equal(weight(s, MEAD_SIM_INH, 0, 1), h01 - ap * pow(r, d - 1) + (d == 1 ? am : 0), 1e-8);
		assert_float_equal(weight(s, MEAD_SIM_INH, 1, 0), h10 + am * pow(r, d + 1), 1e-8);
		mead_sim_free(s);
	}
}

static void test_stdp_same_step_and_clamps(void **state)
{
	(void)state;
	const double ap = 1e-2, am = 1e-4, r = exp(-1.0 / 20.0);
	struct mead_sim *s = pair();
	float e01 = weight(s, MEAD_SIM_EXC, 0, 1);
	force(s, 0);
	force(s, 1);
	assert_int_equal(step(s, NULL), 2);
	/* post runs before pre: +A+ * 1, then -A- * 1 */
	assert_float_equal(weight(s, MEAD_SIM_EXC, 0, 1), e01 + ap - am, 1e-8);
	mead_sim_free(s);

	/* clamps: w >= 0 excitatory, w <= 0 inhibitory; the synapse stays alive */
	s = pair();
	assert_int_equal(mead_sim_set_weight(s, MEAD_SIM_EXC, 1, 0, 5e-5f), 0);
	assert_int_equal(mead_sim_set_weight(s, MEAD_SIM_INH, 1, 0, -5e-5f), 0);
	assert_int_equal(mead_sim_set_weight(s, MEAD_SIM_INH, 1, 0, 1.0f), -EINVAL);
	force(s, 0);
	step(s, NULL);
	force(s, 1); /* d = 1: depression A- r = 9.5e-5 > 5e-5 */
	step(s, NULL);
	step(s, NULL);
	float w = weight(s, MEAD_SIM_EXC, 1, 0);
	assert_true(w == 0.0f);
	w = weight(s, MEAD_SIM_INH, 1, 0);
	assert_true(w == 0.0f); /* -5e-5 + A- r^2 > 0, clamped */
	/* a clamped synapse can be potentiated again */
	force(s, 1);
	step(s, NULL);
	force(s, 0);
	step(s, NULL);
	assert_float_equal(weight(s, MEAD_SIM_EXC, 1, 0), ap * r, 1e-8);
	mead_sim_free(s);
}

static void test_stdp_input_pathway(void **state)
{
	(void)state;
	const double ap = 1e-2, am = 1e-4, r = exp(-1.0 / 20.0);
	struct mead_sim *s = pair();
	float w0 = weight(s, MEAD_SIM_INPUT, 7, 1);
	mead_sim_input(s, 7); /* electrode at s0 */
	step(s, NULL);
	step(s, NULL);
	force(s, 1); /* neuron at s0 + 2 */
	step(s, NULL);
	assert_float_equal(weight(s, MEAD_SIM_INPUT, 7, 1), w0 + ap * r * r, 1e-8);
	mead_sim_reset_state(s);
	float w1 = weight(s, MEAD_SIM_INPUT, 7, 1);
	force(s, 1); /* neuron first */
	step(s, NULL);
	step(s, NULL);
	step(s, NULL);
	mead_sim_input(s, 7); /* electrode 3 steps later */
	step(s, NULL);
	assert_float_equal(weight(s, MEAD_SIM_INPUT, 7, 1), w1 - am * r * r * r, 1e-8);
	/* electrode and neuron in the same step: the electrode's trace already
	 * holds its spike, as in the reference, so A+ * 1 as well as A- * 1 */
	mead_sim_reset_state(s);
	float wc = weight(s, MEAD_SIM_INPUT, 7, 1);
	mead_sim_input(s, 7);
	force(s, 1);
	step(s, NULL);
	assert_float_equal(weight(s, MEAD_SIM_INPUT, 7, 1), wc + ap - am, 1e-8);
	/* and a later post spike sees that trace decayed from 1 */
	float wd = weight(s, MEAD_SIM_INPUT, 7, 1);
	for (int k = 0; k < 6; k++)
		step(s, NULL);
	force(s, 1);
	step(s, NULL);
	assert_float_equal(weight(s, MEAD_SIM_INPUT, 7, 1), wd + ap * pow(r, 7), 1e-8);
	/* learning off: nothing moves */
	mead_sim_set_learning(s, false);
	float w2 = weight(s, MEAD_SIM_INPUT, 7, 1), e2 = weight(s, MEAD_SIM_EXC, 0, 1);
	force(s, 0);
	mead_sim_input(s, 7);
	step(s, NULL);
	force(s, 1);
	step(s, NULL);
	assert_true(weight(s, MEAD_SIM_INPUT, 7, 1) == w2);
	assert_true(weight(s, MEAD_SIM_EXC, 0, 1) == e2);
	mead_sim_free(s);
}

/* ------------------------------------------------- per-step reference model */

/* The reference's semantics written out directly: dense matrices, every
 * post-spike update applied at once over the whole column. */
struct ref {
	uint32_t n;
	float *win, *wex, *wih; /* wih: magnitudes; NAN = pruned */
	float *v, *in, *x, *xz, *xe;
	uint32_t *rc;
	uint8_t *prev, *cur, *pend;
	float rest, reset, th, lb, dm, r, ap, am;
	double exc_str, inh_str;
};

static void ref_init(struct ref *f, struct mead_sim *s)
{
	uint32_t n = f->n = mead_sim_neurons(s);
	f->win = calloc(60 * n, sizeof(float));
	f->wex = calloc((size_t)n * n, sizeof(float));
	f->wih = calloc((size_t)n * n, sizeof(float));
	f->v = calloc(n, 4); f->in = calloc(n, 4); f->x = calloc(n, 4); f->xz = calloc(n, 4);
	f->xe = calloc(60, 4); f->rc = calloc(n, 4); f->prev = calloc(n, 1); f->cur = calloc(n, 1);
	f->pend = calloc(60, 1);
	for (uint32_t e = 0; e < 60; e++)
		for (uint32_t j = 0; j < n; j++)
			if (mead_sim_weight(s, MEAD_SIM_INPUT, e, j, &f->win[e * n + j]) != 0)
				f->win[e * n + j] = NAN;
	for (uint32_t i = 0; i < n; i++)
		for (uint32_t j = 0; j < n; j++) {
			if (mead_sim_weight(s, MEAD_SIM_EXC, i, j, &f->wex[i * n + j]) != 0)
				f->wex[i * n + j] = NAN;
			float w;
			f->wih[i * n + j] = mead_sim_weight(s, MEAD_SIM_INH, i, j, &w) == 0 ? -w : NAN;
		}
	const struct mead_sim_params *p = mead_sim_get_params(s);
	f->rest = (float)((p->v_rest_mv + 90.0) / 40.0);
	f->reset = (float)((p->v_reset_mv + 90.0) / 40.0);
	f->th = 1.0f;
	f->lb = p->has_lower_bound ? (float)((p->v_lower_bound_mv + 90.0) / 40.0) : -INFINITY;
	f->exc_str = p->exc_strength;
	f->inh_str = p->inh_strength;
	f->dm = (float)exp(-1.0 / 50.0); f->r = (float)exp(-1.0 / 20.0); f->ap = 1e-2f; f->am = 1e-4f;
	for (uint32_t j = 0; j < n; j++)
		f->v[j] = f->rest;
}

static void ref_free(struct ref *f)
{
	free(f->win); free(f->wex); free(f->wih); free(f->v); free(f->in); free(f->x); free(f->xz);
	free(f->xe); free(f->rc); free(f->prev); free(f->cur); free(f->pend);
}

static void ref_reset(struct ref *f)
{
	for (uint32_t j = 0; j < f->n; j++) {
		f->v[j] = f->rest; f->in[j] = 0; f->x[j] = 0; f->xz[j] = 0; f->rc[j] = 0; f->prev[j] = 0;
	}
	memset(f->xe, 0, 60 * 4);
	memset(f->pend, 0, 60);
}

static void ref_norm_one(float *w, uint32_t rows, uint32_t n, double strength)
{
	for (uint32_t j = 0; j < n; j++) {
		float sum = 0.0f;
		for (uint32_t i = 0; i < rows; i++)
			if (!isnan(w[i * n + j]))
				sum += w[i * n + j];
		float sc = (float)(strength / (sum != 0.0f ? (double)sum : 1.0));
		for (uint32_t i = 0; i < rows; i++)
			if (!isnan(w[i * n + j]))
				w[i * n + j] *= sc;
	}
}

static void ref_normalise(struct ref *f)
{
	ref_norm_one(f->win, 60, f->n, 1.0);
	ref_norm_one(f->wex, f->n, f->n, f->exc_str);
	ref_norm_one(f->wih, f->n, f->n, f->inh_str);
}

static uint32_t ref_step(struct ref *f, uint32_t *out)
{
	uint32_t n = f->n, ns = 0;
	for (uint32_t j = 0; j < n; j++) {
		f->xz[j] = f->x[j];
		f->x[j] = f->x[j] * f->r;
		float vv = f->rest + (f->v[j] - f->rest) * f->dm;
		if (f->rc[j] == 0)
			vv = vv + f->in[j];
		f->in[j] = 0;
		if (f->rc[j])
			f->rc[j]--;
		f->v[j] = vv < f->lb ? f->lb : vv;
	}
	for (uint32_t e = 0; e < 60; e++)
		f->xe[e] = f->xe[e] * f->r;
	for (uint32_t j = 0; j < n; j++) {
		f->cur[j] = f->v[j] >= f->th;
		if (f->cur[j]) {
			f->v[j] = f->reset; f->rc[j] = 5; f->x[j] = 1; out[ns++] = j;
		}
	}
	/* exc post, exc pre */
	for (uint32_t q = 0; q < ns; q++)
		for (uint32_t i = 0; i < n; i++)
			if (!isnan(f->wex[i * n + out[q]]))
				f->wex[i * n + out[q]] = f->wex[i * n + out[q]] + f->ap * f->x[i];
	for (uint32_t q = 0; q < ns; q++)
		for (uint32_t j = 0; j < n; j++) {
			float *w = &f->wex[out[q] * n + j];
			if (isnan(*w))
				continue;
			float t = *w - f->am * f->x[j];
			*w = t > 0 ? t : 0.0f;
			f->in[j] += *w;
		}
	/* input post, input pre: this step's input spikes are already in the
	 * electrode traces (the reference updates its input layer first) */
	for (uint32_t e = 0; e < 60; e++)
		if (f->pend[e])
			f->xe[e] = 1;
	for (uint32_t q = 0; q < ns; q++)
		for (uint32_t e = 0; e < 60; e++)
			if (!isnan(f->win[e * n + out[q]]))
				f->win[e * n + out[q]] += f->ap * f->xe[e];
	for (uint32_t e = 0; e < 60; e++) {
		if (!f->pend[e])
			continue;
		f->pend[e] = 0;
		for (uint32_t j = 0; j < n; j++) {
			float *w = &f->win[e * n + j];
			if (isnan(*w))
				continue;
			float t = *w - f->am * f->x[j];
			*w = t > 0 ? t : 0.0f;
			f->in[j] += *w;
		}
	}
	/* inh post, inh pre (relay of the previous step's spikes) */
	for (uint32_t q = 0; q < ns; q++)
		for (uint32_t i = 0; i < n; i++)
			if (!isnan(f->wih[i * n + out[q]]))
				f->wih[i * n + out[q]] += f->ap * f->xz[i];
	for (uint32_t i = 0; i < n; i++) {
		if (!f->prev[i])
			continue;
		for (uint32_t j = 0; j < n; j++) {
			float *m = &f->wih[i * n + j];
			if (isnan(*m))
				continue;
			float t = *m - f->am * f->x[j];
			*m = t > 0 ? t : 0.0f;
			f->in[j] -= *m;
		}
	}
	memcpy(f->prev, f->cur, n);
	return ns;
}

static void matches_reference(const char *cfg, uint32_t steps)
{
	struct mead_sim_params p = preset(cfg, 42);
	struct mead_sim *s = make(&p);
	struct ref f;
	ref_init(&f, s);
	uint32_t n = f.n, *out = calloc(n, 4);
	uint64_t lcg = 9, spikes = 0;
	uint32_t same = 0;
	for (uint32_t t = 0; t < steps; t++) {
		if (t % 100 == 0) {
			mead_sim_normalise(s);
			mead_sim_reset_state(s);
			ref_normalise(&f);
			ref_reset(&f);
		}
		for (uint32_t e = 0; e < 60; e++) {
			lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
			if ((lcg >> 33) % 100 < (e % 10 < 6 ? 12u : 0u)) {
				mead_sim_input(s, e);
				f.pend[e] = 1;
			}
		}
		const uint32_t *sp;
		uint32_t ns = step(s, &sp);
		uint32_t nr = ref_step(&f, out);
		if (ns == nr && !memcmp(sp, out, ns * 4))
			same++;
		else
			break;
		spikes += ns;
	}
	print_message("%s: identical spike steps: %u of %u, spikes %llu\n", cfg, same, steps,
		      (unsigned long long)spikes);
	assert_int_equal(same, steps);
	assert_true(spikes > 1000);
	double maxd = 0;
	for (uint32_t i = 0; i < n; i++)
		for (uint32_t j = 0; j < n; j++) {
			float w;
			if (mead_sim_weight(s, MEAD_SIM_EXC, i, j, &w) == 0)
				maxd = fmax(maxd, fabs(w - f.wex[i * n + j]) / (fabs(f.wex[i * n + j]) + 1e-3));
			else
				assert_true(isnan(f.wex[i * n + j]));
			if (mead_sim_weight(s, MEAD_SIM_INH, i, j, &w) == 0)
				maxd = fmax(maxd, fabs(-w - f.wih[i * n + j]) / (fabs(f.wih[i * n + j]) + 1e-3));
		}
	for (uint32_t e = 0; e < 60; e++)
		for (uint32_t j = 0; j < n; j++) {
			float w;
			if (mead_sim_weight(s, MEAD_SIM_INPUT, e, j, &w) == 0)
				maxd = fmax(maxd, fabs(w - f.win[e * n + j]) / (fabs(f.win[e * n + j]) + 1e-3));
		}
	print_message("largest weight difference %.3g (relative to |w| + 1e-3)\n", maxd);
	assert_true(maxd < 1e-4);
	free(out);
	ref_free(&f);
	mead_sim_free(s);
}

static void test_matches_per_step_reference(void **state)
{
	(void)state;
	matches_reference("bio-240", 1000); /* lower bound, rest = reset */
	matches_reference("tsk-240", 1000); /* no lower bound, rest 0, strong inhibition */
}

/* ------------------------------------------------------------ determinism */

static uint64_t run_hash(uint64_t seed, uint32_t steps)
{
	struct mead_sim_params p = preset("bio-240", seed);
	struct mead_sim *s = make(&p);
	uint64_t lcg = 77, h = 0xcbf29ce484222325ull;
	drive(s, steps, &lcg, true, &h);
	mead_sim_free(s);
	return h;
}

static void test_determinism(void **state)
{
	(void)state;
	uint64_t a = run_hash(5, 1500), b = run_hash(5, 1500), c = run_hash(6, 1500);
	assert_true(a == b);
	assert_true(a != c);
	/* the portable kernels give the same bits as the SIMD ones (AVX-512
	 * where the CPU has it, AVX2) */
	setenv("MEAD_SIM_NO_AVX2", "1", 1);
	uint64_t d = run_hash(5, 1500);
	unsetenv("MEAD_SIM_NO_AVX2");
	assert_true(a == d);
	setenv("MEAD_SIM_NO_AVX512", "1", 1);
	uint64_t e = run_hash(5, 1500);
	unsetenv("MEAD_SIM_NO_AVX512");
	assert_true(a == e);
}

/* Even placement: every electrode cell holds n / 60 neurons, the remainder
 * one more in distinct cells; each neuron lies inside the cell it is
 * counted in; the default stays the reference's uniform draw. */
static void test_placement(void **state)
{
	(void)state;
	struct mead_sim_params p = preset("tsk-240", 7);
	struct mead_sim *u = make(&p);
	uint32_t lo = UINT32_MAX, hi = 0;
	for (uint32_t e = 0; e < 60; e++) {
		uint32_t c = mead_sim_electrode_neurons(u, e);
		lo = c < lo ? c : lo;
		hi = c > hi ? c : hi;
	}
	assert_true(hi - lo >= 3); /* uniform: 240 over 60 cells is far from even */
	mead_sim_free(u);

	for (uint32_t n = 240; n <= 250; n += 10) {
		p = preset("tsk-240", 7);
		p.neurons = n;
		p.placement = MEAD_SIM_PLACE_EVEN;
		struct mead_sim *s = make(&p);
		uint32_t total = 0, plus = 0;
		for (uint32_t e = 0; e < 60; e++) {
			uint32_t c = mead_sim_electrode_neurons(s, e);
			assert_true(c == n / 60 || c == n / 60 + 1);
			plus += c == n / 60 + 1;
			total += c;
		}
		assert_int_equal(total, n);
		assert_int_equal(plus, n % 60);
		uint32_t per[60] = { 0 };
		for (uint32_t i = 0; i < n; i++) {
			double x, y;
			mead_sim_neuron_position(s, i, &x, &y);
			assert_true(x > 0 && x < 5.0 && y > 0 && y < 3.0);
			per[(uint32_t)(y / 0.5) * 10 + (uint32_t)(x / 0.5)]++;
		}
		for (uint32_t e = 0; e < 60; e++)
			assert_int_equal(per[e], mead_sim_electrode_neurons(s, e));
		mead_sim_free(s);
	}
	p.placement = (enum mead_sim_placement)2;
	struct mead_sim *bad = (struct mead_sim *)0x1;
	assert_int_equal(mead_sim_new(&p, &bad), -EINVAL);
	assert_ptr_equal(bad, (struct mead_sim *)0x1);
}

/* ------------------------------------------------------------- save/load */

static char *tmpname(const char *tag)
{
	static char buf[4][256];
	static int k;
	char *b = buf[k++ % 4];
	snprintf(b, 256, "%s/mead-sim-test-%d-%s.w", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid(),
		 tag);
	return b;
}

static void copy_file(const char *from, const char *to, long cut, long flip)
{
	FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
	assert_non_null(a);
	assert_non_null(b);
	int c;
	long i = 0;
	while ((c = fgetc(a)) != EOF && (cut < 0 || i < cut)) {
		if (i == flip)
			c ^= 0x10;
		fputc(c, b);
		i++;
	}
	fclose(a);
	fclose(b);
}

static void test_save_load(void **state)
{
	(void)state;
	struct mead_sim_params p = preset("bio-240", 8);
	struct mead_sim *s = make(&p), *t = make(&p);
	uint64_t lcg = 3;
	drive(s, 700, &lcg, true, NULL);
	const char *path = tmpname("ok");
	assert_int_equal(mead_sim_save(s, path), 0);
	assert_int_equal(mead_sim_load(t, path), 0);
	for (uint32_t i = 0; i < 240; i++)
		for (uint32_t j = 0; j < 240; j++) {
			float a, b;
			int ra = mead_sim_weight(s, MEAD_SIM_EXC, i, j, &a), rb = mead_sim_weight(t, MEAD_SIM_EXC, i, j, &b);
			assert_int_equal(ra, rb);
			if (ra == 0)
				assert_true(a == b);
			ra = mead_sim_weight(s, MEAD_SIM_INH, i, j, &a);
			rb = mead_sim_weight(t, MEAD_SIM_INH, i, j, &b);
			assert_int_equal(ra, rb);
			if (ra == 0)
				assert_true(a == b);
		}
	/* the loaded culture behaves as the trained one */
	mead_sim_reset_state(s);
	mead_sim_reset_state(t);
	uint64_t l1 = 5, l2 = 5, h1 = 1, h2 = 1;
	drive(s, 300, &l1, false, &h1);
	drive(t, 300, &l2, false, &h2);
	assert_true(h1 == h2);

	/* bad files: the model is left as it was */
	struct mead_sim *u = make(&p);
	float before = weight(u, MEAD_SIM_EXC, 0, 1);
	assert_int_equal(mead_sim_load(u, "/nonexistent/dir/w"), -ENOENT);
	const char *bad = tmpname("bad");
	FILE *f = fopen(bad, "wb");
	fputs("this is not a weights file at all, not even close to one....................", f);
	fclose(f);
	assert_int_equal(mead_sim_load(u, bad), -EBADMSG);
	copy_file(path, bad, 64 + 1000, -1); /* truncated */
	assert_int_equal(mead_sim_load(u, bad), -EBADMSG);
	copy_file(path, bad, -1, 64 + 4 * 240 * 30 + 1); /* payload bit flipped */
	assert_int_equal(mead_sim_load(u, bad), -EBADMSG);
	copy_file(path, bad, -1, 8); /* version 1 -> 17 */
	assert_int_equal(mead_sim_load(u, bad), -EPROTONOSUPPORT);
	assert_true(weight(u, MEAD_SIM_EXC, 0, 1) == before);
	struct mead_sim_params q = preset("bio-240", 9); /* other seed */
	struct mead_sim *v = make(&q);
	assert_int_equal(mead_sim_load(v, path), -ESTALE);
	mead_sim_free(v);
	remove(bad);
	remove(path);
	mead_sim_free(u);
	mead_sim_free(t);
	mead_sim_free(s);
}

static void test_snapshots(void **state)
{
	(void)state;
	struct mead_sim_params p = preset("bio-240", 12);
	struct mead_sim *s = make(&p);
	assert_int_equal(mead_sim_snapshot_save(s, 0), -EOPNOTSUPP);
	assert_int_equal(mead_sim_snapshots_alloc(s, 2), 0);
	assert_int_equal(mead_sim_snapshot_restore(s, 1), -ENOENT);
	assert_int_equal(mead_sim_snapshot_save(s, 2), -ERANGE);
	uint64_t lcg = 1;
	drive(s, 200, &lcg, true, NULL);
	float w = weight(s, MEAD_SIM_EXC, 3, 4);
	assert_int_equal(mead_sim_snapshot_save(s, 1), 0);
	drive(s, 300, &lcg, true, NULL);
	assert_true(weight(s, MEAD_SIM_EXC, 3, 4) != w);
	assert_int_equal(mead_sim_snapshot_restore(s, 1), 0);
	assert_true(weight(s, MEAD_SIM_EXC, 3, 4) == w);
	mead_sim_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_params_and_errors),
		cmocka_unit_test(test_neuron_decay_threshold),
		cmocka_unit_test(test_neuron_refractory),
		cmocka_unit_test(test_neuron_clamp),
		cmocka_unit_test(test_connectivity_statistics),
		cmocka_unit_test(test_pruned_stay_zero_and_scaling),
		cmocka_unit_test(test_stdp_exc_and_inh),
		cmocka_unit_test(test_stdp_same_step_and_clamps),
		cmocka_unit_test(test_stdp_input_pathway),
		cmocka_unit_test(test_matches_per_step_reference),
		cmocka_unit_test(test_determinism),
		cmocka_unit_test(test_placement),
		cmocka_unit_test(test_save_load),
		cmocka_unit_test(test_snapshots),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
