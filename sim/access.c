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

/* Where synapse (pre, post) of pathway p is stored, and the anchor and
 * history row of its presynaptic row's pending potentiation. */
struct syn {
	float *w;               /* inhibitory: the magnitude */
	int64_t anchor;
	uint32_t since;
};

static int find_syn(struct mead_sim *s, enum mead_sim_pathway p, uint32_t pre, uint32_t post, struct syn *ret)
{
	if (post >= s->n)
		return -ERANGE;
	switch (p) {
	case MEAD_SIM_INPUT:
		if (pre >= s->ne)
			return -ERANGE;
		*ret = (struct syn){ s->win + (size_t)pre * s->np + post, s->ae[pre], s->se[pre] };
		return signbit(*ret->w) ? -ENOENT : 0;
	case MEAD_SIM_EXC:
		if (pre >= s->n)
			return -ERANGE;
		*ret = (struct syn){ s->wex + (size_t)pre * s->np + post, s->ax[pre], s->sx[pre] };
		return signbit(*ret->w) ? -ENOENT : 0;
	case MEAD_SIM_INH: {
		if (pre >= s->n)
			return -ERANGE;
		int q = inh_find(s, pre, post);
		if (q < 0)
			return -ENOENT;
		*ret = (struct syn){ s->ival + q, s->ai[pre], s->si[pre] };
		return 0;
	}
	}
	return -EINVAL;
}

int mead_sim_weight(struct mead_sim *s, enum mead_sim_pathway p, uint32_t pre, uint32_t post, float *ret_w)
{
	struct syn y;
	int r = find_syn(s, p, pre, post, &y);
	if (r < 0)
		return r;
	float w = *y.w;
	if (s->learning && y.anchor != ANCHOR_NONE && y.since < s->k) {
		float g = p == MEAD_SIM_INH ? sim_gain_inh(s, y.anchor) : sim_gain_exc(s, y.anchor);
		w = w + g * (sim_drow(s, s->k)[post] - sim_drow(s, y.since)[post]);
	}
	*ret_w = p == MEAD_SIM_INH ? -w : w;
	return 0;
}

int mead_sim_set_weight(struct mead_sim *s, enum mead_sim_pathway p, uint32_t pre, uint32_t post, float w)
{
	if (post >= s->n)
		return -ERANGE;
	/* the row's pending potentiation would otherwise land on the new value */
	sim_sync_all(s, NULL);
	struct syn y;
	int r = find_syn(s, p, pre, post, &y);
	if (r < 0)
		return r;
	if (p == MEAD_SIM_INH ? !(w <= 0.0f) : !(w >= 0.0f))
		return -EINVAL;
	/* + 0.0f: a live weight set to -0.0 must not read as pruned */
	*y.w = (p == MEAD_SIM_INH ? -w : w) + 0.0f;
	return 0;
}
