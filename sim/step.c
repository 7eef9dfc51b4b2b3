/* SPDX-License-Identifier: MIT */
/*
 * The culture model over time: the step, and the lazy potentiation that
 * makes it cheap.  Per-step semantics are the reference's (SpikingGrid on
 * BindsNET 0.2.6, docs/twin.md); tests/sim/test_reference_raster.c holds
 * the twin to its recorded rasters spike for spike:
 *
 *   groups     x *= r; v decays; v += I unless refractory; I = 0;
 *              refractory counter--; v clamped at the lower bound
 *   thresholds v >= threshold spikes; a neuron that spiked in the previous
 *              step fires its inhibitory relay now
 *   resets     v = reset, refractory 5 steps, x = 1
 *   synapses   in the name order of the Brian2 peer (bench/brian2_twin.py):
 *              exc post, exc pre, input post, input pre, inh post, inh
 *              pre.  Post before pre matters: a synapse whose two ends
 *              spike together is first potentiated and then depressed (and
 *              clamped).  Unlike the peer, an electrode's trace already
 *              holds this step's input spike (the electrode rows below).
 *
 * Potentiation is lazy.  A postsynaptic spike of j at step t' adds
 * A+ * x_i(t') to w_ij for every i; applied at once that is a strided walk
 * down column j of the whole matrix.  Between two spikes of i,
 * x_i(t') = r^(t' - a_i) (a_i = i's last spike) and nothing else touches
 * row i except those additions (they never hit the w >= 0 clamp), so they
 * can be summed and applied when row i is next read, i.e. when i spikes:
 *
 *   sum_{t' in [s_i, t)} [j spiked at t'] A+ r^(t'-a_i)
 *       = A+ r^(E-a_i) (D_j(t) - D_j(s_i)),   D_j(t) = sum_{t'<t} [j spiked at t'] r^(t'-E)
 *
 * with D kept as one vector per step since the epoch E.  A spiking neuron's
 * row is then one contiguous pass: add the pending potentiation, add A+ for
 * the post spikes of this very step (post runs before pre), depress by
 * A- x_j, clamp, and add into the input vector.  The history is rebased (all
 * rows brought up to date) at every state reset and normalisation, on
 * learning switches and every REBASE_STEPS steps otherwise, which bounds
 * r^(E-a) and so the float32 rounding of the summed potentiation.  The
 * inhibitory pathway uses the relay's trace xz_i(t') = x_i(t' - 1), i.e.
 * r^(t'-1-a_i); the electrode rows use the electrode's last input spike.
 */
#include "sim/internal.h"

#include <errno.h>
#include <math.h>
#include <string.h>

static void inh_sync_row(struct mead_sim *s, uint32_t i, const float *dk, const float *ds, float g)
{
	for (uint32_t q = s->irow[i]; q < s->irow[i + 1]; q++) {
		uint32_t j = s->icol[q];
		s->ival[q] = s->ival[q] + g * (dk[j] - ds[j]);
	}
}

void sim_sync_all(struct mead_sim *s, float *colsum)
{
	const float *dk = sim_drow(s, s->k);
	for (uint32_t e = 0; e < s->ne; e++) {
		if (s->learning && s->ae[e] != ANCHOR_NONE && s->se[e] < s->k)
			s->kern.sync(s->win + (size_t)e * s->np, NULL, dk, sim_drow(s, s->se[e]),
				     sim_gain_exc(s, s->ae[e]), s->np);
		s->se[e] = s->k;
	}
	for (uint32_t i = 0; i < s->n; i++) {
		float *w = s->wex + (size_t)i * s->np;
		if (s->learning && s->ax[i] != ANCHOR_NONE && s->sx[i] < s->k) {
			s->kern.sync(w, colsum, dk, sim_drow(s, s->sx[i]), sim_gain_exc(s, s->ax[i]), s->np);
		} else if (colsum) {
			s->kern.acc(colsum, w, s->np);
		}
		s->sx[i] = s->k;
		if (s->learning && s->ai[i] != ANCHOR_NONE && s->si[i] < s->k)
			inh_sync_row(s, i, dk, sim_drow(s, s->si[i]), sim_gain_inh(s, s->ai[i]));
		s->si[i] = s->k;
	}
}

void sim_rebase(struct mead_sim *s)
{
	memset(s->d, 0, (size_t)s->np * sizeof(float));
	s->epoch = s->t;
	s->k = 0;
	for (uint32_t i = 0; i < s->n; i++)
		s->sx[i] = s->si[i] = 0;
	for (uint32_t e = 0; e < s->ne; e++)
		s->se[e] = 0;
}

void mead_sim_normalise(struct mead_sim *s)
{
	uint32_t np = s->np, n = s->n;
	/* every pending potentiation first; the excitatory column sums are
	 * taken on the way */
	memset(s->colsum, 0, np * sizeof(float));
	sim_sync_all(s, s->colsum);
	for (uint32_t j = 0; j < np; j++)
		s->scale[j] = j < n ? (float)(s->p.exc_strength / (s->colsum[j] != 0.0f ? (double)s->colsum[j] : 1.0)) : 1.0f;
	for (uint32_t i = 0; i < n; i++)
		s->kern.scale_rows(s->wex + (size_t)i * np, s->scale, np);
	/* input */
	memset(s->colsum, 0, np * sizeof(float));
	for (uint32_t e = 0; e < s->ne; e++)
		s->kern.acc(s->colsum, s->win + (size_t)e * np, np);
	for (uint32_t j = 0; j < np; j++)
		s->scale[j] = j < n ? (float)(s->p.input_strength / (s->colsum[j] != 0.0f ? (double)s->colsum[j] : 1.0)) : 1.0f;
	for (uint32_t e = 0; e < s->ne; e++)
		s->kern.scale_rows(s->win + (size_t)e * np, s->scale, np);
	/* inhibitory */
	memset(s->colsum, 0, np * sizeof(float));
	uint64_t nnz = s->irow[n];
	for (uint64_t q = 0; q < nnz; q++)
		s->colsum[s->icol[q]] += s->ival[q];
	for (uint32_t j = 0; j < n; j++)
		s->scale[j] = (float)(s->p.inh_strength / (s->colsum[j] != 0.0f ? (double)s->colsum[j] : 1.0));
	for (uint64_t q = 0; q < nnz; q++)
		s->ival[q] *= s->scale[s->icol[q]];
	sim_rebase(s);
}

int mead_sim_input(struct mead_sim *s, uint32_t electrode)
{
	if (electrode >= s->ne)
		return -ERANGE;
	s->in_pending[electrode] = 1;
	return 0;
}

void mead_sim_step(struct mead_sim *s, const uint32_t **ret_spikes, uint32_t *ret_n)
{
	const uint32_t n = s->n, np = s->np;
	const bool learn = s->learning;
	if (learn && s->k >= REBASE_STEPS) {
		sim_sync_all(s, NULL);
		sim_rebase(s);
	}

	/* the previous step's spikes fire their relays now */
	uint32_t *tmp = s->relay;
	s->relay = s->spikes;
	s->nrelay = s->nspikes;
	s->spikes = tmp;

	/* groups */
	float *restrict v = s->v, *restrict in = s->in, *restrict x = s->x;
	float *restrict rc = s->rc;
	s->kern.groups(v, in, x, rc, s->rest, s->dm, s->r, s->has_lb ? s->lb : -INFINITY, np);

	/* thresholds, resets */
	uint32_t ns = s->kern.threshold(v, s->th, n, s->spikes);
	for (uint32_t q = 0; q < ns; q++) {
		uint32_t j = s->spikes[q];
		v[j] = s->reset;
		rc[j] = (float)s->refr;
		x[j] = 1.0f;
	}
	s->nspikes = ns;

	const int64_t now = (int64_t)s->t;
	if (learn) {
		for (uint32_t q = 0; q < ns; q++)
			s->spk[s->spikes[q]] = 1.0f;

		/* exc post + exc pre; a row with nothing pending goes through the
		 * same arithmetic with a zero difference (D_k - D_k) */
		const float *dk = sim_drow(s, s->k);
		uint32_t qb = 0;
		for (; qb + 4 <= ns; qb += 4) {
			float *w4[4];
			const float *ds4[4];
			float g4[4];
			for (int u = 0; u < 4; u++) {
				uint32_t i = s->spikes[qb + u];
				w4[u] = s->wex + (size_t)i * np;
				bool pend = s->ax[i] != ANCHOR_NONE && s->sx[i] < s->k;
				ds4[u] = pend ? sim_drow(s, s->sx[i]) : dk;
				g4[u] = pend ? sim_gain_exc(s, s->ax[i]) : 0.0f;
				s->ax[i] = now;
				s->sx[i] = s->k + 1;
			}
			s->kern.pre_full4(w4, in, x, s->spk, dk, ds4, g4, s->ap, s->am, np);
		}
		for (; qb < ns; qb++) {
			uint32_t i = s->spikes[qb];
			float *w = s->wex + (size_t)i * np;
			bool pend = s->ax[i] != ANCHOR_NONE && s->sx[i] < s->k;
			s->kern.pre_full(w, in, x, s->spk, dk, pend ? sim_drow(s, s->sx[i]) : dk,
					 pend ? sim_gain_exc(s, s->ax[i]) : 0.0f, s->ap, s->am, np);
			s->ax[i] = now;
			s->sx[i] = s->k + 1;
		}
		/* post spikes of this step into the history */
		float *dn = s->d + (size_t)(s->k + 1) * np;
		memcpy(dn, dk, np * sizeof(float));
		const float rk = s->rtab[s->k];
		for (uint32_t q = 0; q < ns; q++)
			dn[s->spikes[q]] += rk;
		/* Electrode rows.  As in the reference, the electrode's trace
		 * already holds this step's input spike when this step's post
		 * spikes potentiate (+A+ each), although that spike reaches the
		 * neurons only in the next step; so the pending potentiation is
		 * synced up to, not through, this step's post spikes. */
		for (uint32_t e = 0; e < s->ne; e++) {
			if (!s->in_pending[e])
				continue;
			s->in_pending[e] = 0;
			float *w = s->win + (size_t)e * np;
			if (s->ae[e] != ANCHOR_NONE && s->se[e] < s->k)
				s->kern.pre_full(w, in, x, s->spk, dk, sim_drow(s, s->se[e]),
						 sim_gain_exc(s, s->ae[e]), s->ap, s->am, np);
			else
				s->kern.pre_nod(w, in, x, s->spk, s->ap, s->am, np);
			s->ae[e] = now;
			s->se[e] = s->k + 1;
		}
		/* inh post + inh pre (relay) */
		for (uint32_t q = 0; q < s->nrelay; q++) {
			uint32_t i = s->relay[q];
			const uint32_t lo = s->irow[i], hi = s->irow[i + 1];
			if (s->ai[i] != ANCHOR_NONE && s->si[i] < s->k)
				sim_inh_pre(s->icol + lo, s->ival + lo, hi - lo, in, x, s->spk, dk, sim_drow(s, s->si[i]),
					    sim_gain_inh(s, s->ai[i]), s->ap, s->am);
			else
				sim_inh_pre(s->icol + lo, s->ival + lo, hi - lo, in, x, s->spk, dk, NULL, 0.0f, s->ap,
					    s->am);
			s->ai[i] = now - 1;
			s->si[i] = s->k + 1;
		}
		for (uint32_t q = 0; q < ns; q++)
			s->spk[s->spikes[q]] = 0.0f;
		s->k++;
	} else {
		for (uint32_t q = 0; q < ns; q++) {
			uint32_t i = s->spikes[q];
			s->kern.acc(in, s->wex + (size_t)i * np, np);
			s->ax[i] = now;
		}
		for (uint32_t e = 0; e < s->ne; e++) {
			if (!s->in_pending[e])
				continue;
			s->in_pending[e] = 0;
			s->ae[e] = now;
			s->kern.acc(in, s->win + (size_t)e * np, np);
		}
		for (uint32_t q = 0; q < s->nrelay; q++) {
			uint32_t i = s->relay[q];
			for (uint32_t qq = s->irow[i]; qq < s->irow[i + 1]; qq++)
				in[s->icol[qq]] -= s->ival[qq];
			s->ai[i] = now - 1;
		}
	}
	s->t++;
	*ret_spikes = s->spikes;
	*ret_n = ns;
}

void mead_sim_reset_state(struct mead_sim *s)
{
	if (s->learning)
		sim_sync_all(s, NULL);
	for (uint32_t j = 0; j < s->n; j++) {
		s->v[j] = s->rest;
		s->in[j] = 0.0f;
		s->x[j] = 0.0f;
		s->rc[j] = 0.0f;
		s->ax[j] = s->ai[j] = ANCHOR_NONE;
	}
	for (uint32_t e = 0; e < s->ne; e++)
		s->ae[e] = ANCHOR_NONE;
	memset(s->in_pending, 0, s->ne);
	s->nspikes = s->nrelay = 0;
	sim_rebase(s);
}

void mead_sim_set_learning(struct mead_sim *s, bool on)
{
	if (on == s->learning)
		return;
	if (s->learning)
		sim_sync_all(s, NULL);
	s->learning = on;
	sim_rebase(s);
}
