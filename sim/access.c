/* SPDX-License-Identifier: MIT */
/*
 * Reading the model, and setting single values (tests, hand-made networks).
 * A weight read here is the one the next step would use: pending
 * potentiation (step.c) is added on the fly, without syncing the row.
 */
#include "sim/internal.h"

#include <errno.h>
#include <math.h>

bool mead_sim_learning(const struct mead_sim *s) { return s->learning; }
uint64_t mead_sim_time(const struct mead_sim *s) { return s->t; }
uint32_t mead_sim_neurons(const struct mead_sim *s) { return s->n; }
uint32_t mead_sim_electrodes(const struct mead_sim *s) { return s->ne; }
const struct mead_sim_params *mead_sim_get_params(const struct mead_sim *s) { return &s->p; }

uint64_t mead_sim_synapses(const struct mead_sim *s)
{
	return s->nsyn[0] + s->nsyn[1] + s->nsyn[2];
}

uint64_t mead_sim_pathway_synapses(const struct mead_sim *s, enum mead_sim_pathway p)
{
	return (unsigned)p < 3 ? s->nsyn[p] : 0;
}

uint32_t mead_sim_neuron_electrode(const struct mead_sim *s, uint32_t i)
{
	return i < s->n ? s->cell[i] : UINT32_MAX;
}

void mead_sim_neuron_position(const struct mead_sim *s, uint32_t i, double *x_mm, double *y_mm)
{
	if (i >= s->n)
		return;
	if (x_mm)
		*x_mm = s->px[i] * s->p.mm_per_unit;
	if (y_mm)
		*y_mm = s->py[i] * s->p.mm_per_unit;
}

uint32_t mead_sim_electrode_neurons(const struct mead_sim *s, uint32_t e)
{
	return e < s->ne ? s->cell_count[e] : 0;
}

int mead_sim_neuron_state(const struct mead_sim *s, uint32_t i, float *ret_v, float *ret_trace,
			  uint32_t *ret_refractory)
{
	if (i >= s->n)
		return -ERANGE;
	if (ret_v)
		*ret_v = s->v[i];
	if (ret_trace)
		*ret_trace = s->x[i];
	if (ret_refractory)
		*ret_refractory = (uint32_t)s->rc[i];
	return 0;
}

int mead_sim_set_potential(struct mead_sim *s, uint32_t i, float v)
{
	if (i >= s->n)
		return -ERANGE;
	s->v[i] = v;
	return 0;
}

static int inh_find(const struct mead_sim *s, uint32_t pre, uint32_t post)
{
	uint32_t lo = s->irow[pre], hi = s->irow[pre + 1];
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (s->icol[mid] < post)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < s->irow[pre + 1] && s->icol[lo] == post ? (int)lo : -1;
}

int mead_sim_weight(struct mead_sim *s, enum mead_sim_pathway p, uint32_t pre, uint32_t post, float *ret_w)
{
	if (post >= s->n)
		return -ERANGE;
	const float *dk = sim_drow(s, s->k);
	switch (p) {
	case MEAD_SIM_INPUT: {
		if (pre >= s->ne)
			return -ERANGE;
		float w = s->win[(size_t)pre * s->np + post];
		if (signbit(w))
			return -ENOENT;
		if (s->learning && s->ae[pre] != ANCHOR_NONE && s->se[pre] < s->k)
			w = w + sim_gain_exc(s, s->ae[pre]) * (dk[post] - sim_drow(s, s->se[pre])[post]);
		*ret_w = w;
		return 0;
	}
	case MEAD_SIM_EXC: {
		if (pre >= s->n)
			return -ERANGE;
		float w = s->wex[(size_t)pre * s->np + post];
		if (signbit(w))
			return -ENOENT;
		if (s->learning && s->ax[pre] != ANCHOR_NONE && s->sx[pre] < s->k)
			w = w + sim_gain_exc(s, s->ax[pre]) * (dk[post] - sim_drow(s, s->sx[pre])[post]);
		*ret_w = w;
		return 0;
	}
	case MEAD_SIM_INH: {
		if (pre >= s->n)
			return -ERANGE;
		int q = inh_find(s, pre, post);
		if (q < 0)
			return -ENOENT;
		float m = s->ival[q];
		if (s->learning && s->ai[pre] != ANCHOR_NONE && s->si[pre] < s->k)
			m = m + sim_gain_inh(s, s->ai[pre]) * (dk[post] - sim_drow(s, s->si[pre])[post]);
		*ret_w = -m;
		return 0;
	}
	}
	return -EINVAL;
}

int mead_sim_set_weight(struct mead_sim *s, enum mead_sim_pathway p, uint32_t pre, uint32_t post, float w)
{
	if (post >= s->n)
		return -ERANGE;
	sim_sync_all(s, NULL);
	switch (p) {
	case MEAD_SIM_INPUT:
		if (pre >= s->ne)
			return -ERANGE;
		if (signbit(s->win[(size_t)pre * s->np + post]))
			return -ENOENT;
		if (!(w >= 0.0f))
			return -EINVAL;
		s->win[(size_t)pre * s->np + post] = w + 0.0f;
		return 0;
	case MEAD_SIM_EXC:
		if (pre >= s->n)
			return -ERANGE;
		if (signbit(s->wex[(size_t)pre * s->np + post]))
			return -ENOENT;
		if (!(w >= 0.0f))
			return -EINVAL;
		s->wex[(size_t)pre * s->np + post] = w + 0.0f;
		return 0;
	case MEAD_SIM_INH: {
		if (pre >= s->n)
			return -ERANGE;
		int q = inh_find(s, pre, post);
		if (q < 0)
			return -ENOENT;
		if (!(w <= 0.0f))
			return -EINVAL;
		s->ival[q] = -w + 0.0f;
		return 0;
	}
	}
	return -EINVAL;
}
