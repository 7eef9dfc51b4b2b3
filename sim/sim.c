/* SPDX-License-Identifier: MIT */
/*
 * The culture model.  Per-step semantics follow the Brian2 anchor
 * (bench/brian2_twin.py), which matches the reference spike for spike:
 *
 *   groups     x *= r; v decays; v += I unless refractory; I = 0;
 *              refractory counter--; v clamped at the lower bound
 *   thresholds v >= threshold spikes; a neuron that spiked in the previous
 *              step fires its inhibitory relay now
 *   resets     v = reset, refractory 5 steps, x = 1
 *   synapses   in Brian2's name order: exc post, exc pre, input post,
 *              input pre, inh post, inh pre.  Post before pre matters: a
 *              synapse whose two ends spike together is first potentiated
 *              and then depressed (and clamped).
 *
 * Potentiation is lazy.  A postsynaptic spike of j at step t' adds
 * A+ * x_i(t') to w_ij for every i; applied at once that is a strided walk
 * down column j of the whole matrix.  Between two spikes of i, x_i(t') = r^(t' - a_i) (a_i = i's last
 * spike) and nothing else touches row i except those additions (they never
 * hit the w >= 0 clamp), so they can be summed and applied when row i is
 * next read, i.e. when i spikes:
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
 *
 * Pruned synapses: excitatory and input weights are >= +0 when alive and
 * stored as -0.0f when pruned, so one sign-bit blend excludes them from
 * every update and they add nothing to the input.  Inhibitory weights are
 * sparse (~5%): CSR by presynaptic neuron, magnitudes stored.
 */
#include "sim/kernel.h"
#include "sim/mead_sim.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ANCHOR_NONE INT64_MIN
#define REBASE_STEPS 64u

struct mead_sim {
	struct mead_sim_params p;
	uint32_t n, np, ne;

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

	float *win;             /* ne rows of np */
	float *wex;             /* n rows of np */
	uint32_t *irow, *icol;  /* CSR, n + 1 and n_inh */
	float *ival;            /* magnitudes */
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

/* ------------------------------------------------------------------- rng */

struct rng {
	uint64_t s[4];
	double spare;
	bool has_spare;
};

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void rng_seed(struct rng *g, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		g->s[i] = splitmix64(&seed);
	g->has_spare = false;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_u64(struct rng *g)
{
	uint64_t *s = g->s;
	uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45);
	return res;
}

static double rng_uniform(struct rng *g) { return (double)(rng_u64(g) >> 11) * 0x1.0p-53; }

static double rng_normal(struct rng *g)
{
	if (g->has_spare) {
		g->has_spare = false;
		return g->spare;
	}
	double u, v, q;
	do {
		u = 2.0 * rng_uniform(g) - 1.0;
		v = 2.0 * rng_uniform(g) - 1.0;
		q = u * u + v * v;
	} while (q >= 1.0 || q == 0.0);
	double f = sqrt(-2.0 * log(q) / q);
	g->spare = v * f;
	g->has_spare = true;
	return u * f;
}

/* ---------------------------------------------------------------- params */

int mead_sim_params_preset(const char *name, struct mead_sim_params *ret)
{
	if (!name || !ret)
		return -EINVAL;
	uint32_t neurons = ret->neurons;
	bool tsk;
	if (!strcmp(name, "bio-240") || !strcmp(name, "tsk-240"))
		neurons = 240;
	else if (!strcmp(name, "bio-10140") || !strcmp(name, "tsk-10140"))
		neurons = 10140;
	else if (strcmp(name, "bio") && strcmp(name, "tsk"))
		return -EINVAL;
	tsk = name[0] == 't';
	struct mead_sim_params p = {
		.neurons = neurons ? neurons : 240,
		.seed = ret->seed,
		.dt_ms = 1.0,
		.tau_m_ms = 50.0,
		.v_rest_mv = tsk ? -90.0 : -70.0,
		.v_reset_mv = -70.0,
		.v_threshold_mv = -50.0,
		.has_lower_bound = !tsk,
		.v_lower_bound_mv = -90.0,
		.refractory_ms = 5.0,
		.tau_stdp_ms = 20.0,
		.a_plus = 1e-2,
		.a_minus = 1e-4,
		.stdp = true,
		.input_strength = 1.0,
		.exc_strength = tsk ? 3.0 : 1.0,
		.inh_strength = tsk ? 300.0 : 10.0,
		.sigma_e_mm = 1.2,
		.sigma_i_mm = 0.15,
		.electrode_reach_mm = 0.3,
		.prune_threshold = 1e-3,
		.width_mm = 5.0,
		.height_mm = 3.0,
		.mm_per_unit = 3.0,
		.electrode_rows = 6,
		.electrode_cols = 10,
	};
	*ret = p;
	return 0;
}

static int check_params(const struct mead_sim_params *p)
{
	if (p->neurons < 2 || p->neurons > 60000)
		return -EINVAL;
	if (!(p->dt_ms > 0) || !(p->tau_m_ms > 0) || !(p->tau_stdp_ms > 0) || !(p->mm_per_unit > 0))
		return -EINVAL;
	if (!(p->width_mm > 0) || !(p->height_mm > 0) || !(p->refractory_ms >= 0) || p->refractory_ms > 1e6)
		return -EINVAL;
	if (!(p->sigma_e_mm > 0) || !(p->sigma_i_mm > 0) || !(p->electrode_reach_mm > 0))
		return -EINVAL;
	if (!(p->a_plus >= 0) || !(p->a_minus >= 0) || !(p->prune_threshold >= 0))
		return -EINVAL;
	if (!(p->input_strength >= 0) || !(p->exc_strength >= 0) || !(p->inh_strength >= 0))
		return -EINVAL;
	if (!isfinite(p->v_rest_mv) || !isfinite(p->v_reset_mv) || !isfinite(p->v_threshold_mv) ||
	    !isfinite(p->v_lower_bound_mv))
		return -EINVAL;
	if (p->electrode_rows == 0 || p->electrode_cols == 0 || p->electrode_rows * p->electrode_cols > 4096)
		return -EINVAL;
	return 0;
}

/* ------------------------------------------------------------ allocation */

static void *zalloc(size_t n)
{
	size_t sz = (n + 63) & ~(size_t)63;
	void *ptr = aligned_alloc(64, sz ? sz : 64);
	if (ptr)
		memset(ptr, 0, sz ? sz : 64);
	return ptr;
}

void mead_sim_free(struct mead_sim *s)
{
	if (!s)
		return;
	free(s->v); free(s->in); free(s->x); free(s->spk); free(s->rc); free(s->ae); free(s->se);
	free(s->in_pending); free(s->spikes); free(s->relay); free(s->px); free(s->py);
	free(s->cell); free(s->cell_count); free(s->win); free(s->wex); free(s->irow);
	free(s->icol); free(s->ival); free(s->d); free(s->ax); free(s->ai); free(s->sx);
	free(s->si); free(s->colsum); free(s->scale);
	for (uint32_t q = 0; q < s->nsnap; q++)
		free(s->snap[q]);
	free(s->snap); free(s->snap_full);
	free(s);
}

/* ------------------------------------------------------- lazy bookkeeping */

/* A+ r^(E - a): a row anchored at a, against history with epoch E.  Anchors
 * lie in [E - REBASE_STEPS - 1, E + REBASE_STEPS] except for rows idle since
 * before the previous epoch, which take the slow path. */
static inline float gain_at(const struct mead_sim *s, int64_t off)
{
	if (off >= -(int64_t)REBASE_STEPS - 1 && off <= (int64_t)REBASE_STEPS)
		return s->gtab[off + REBASE_STEPS + 1];
	return (float)((double)s->ap * exp((double)off * s->p.dt_ms / s->p.tau_stdp_ms));
}

static inline float gain_exc(const struct mead_sim *s, int64_t a)
{
	return gain_at(s, a - (int64_t)s->epoch);
}

static inline float gain_inh(const struct mead_sim *s, int64_t a)
{
	return gain_at(s, a + 1 - (int64_t)s->epoch);
}

static inline const float *drow(const struct mead_sim *s, uint32_t k)
{
	return s->d + (size_t)k * s->np;
}

static void inh_sync_row(struct mead_sim *s, uint32_t i, const float *dk, const float *ds, float g)
{
	for (uint32_t q = s->irow[i]; q < s->irow[i + 1]; q++) {
		uint32_t j = s->icol[q];
		s->ival[q] = s->ival[q] + g * (dk[j] - ds[j]);
	}
}

/* Applies every pending potentiation (all post spikes before the current
 * step), optionally summing the excitatory columns on the way. */
static void sync_all(struct mead_sim *s, float *colsum)
{
	const float *dk = drow(s, s->k);
	for (uint32_t e = 0; e < s->ne; e++) {
		if (s->learning && s->ae[e] != ANCHOR_NONE && s->se[e] < s->k)
			s->kern.sync(s->win + (size_t)e * s->np, NULL, dk, drow(s, s->se[e]), gain_exc(s, s->ae[e]), s->np);
		s->se[e] = s->k;
	}
	for (uint32_t i = 0; i < s->n; i++) {
		float *w = s->wex + (size_t)i * s->np;
		if (s->learning && s->ax[i] != ANCHOR_NONE && s->sx[i] < s->k) {
			s->kern.sync(w, colsum, dk, drow(s, s->sx[i]), gain_exc(s, s->ax[i]), s->np);
		} else if (colsum) {
			s->kern.acc(colsum, w, s->np);
		}
		s->sx[i] = s->k;
		if (s->learning && s->ai[i] != ANCHOR_NONE && s->si[i] < s->k)
			inh_sync_row(s, i, dk, drow(s, s->si[i]), gain_inh(s, s->ai[i]));
		s->si[i] = s->k;
	}
}

static void rebase(struct mead_sim *s)
{
	memset(s->d, 0, (size_t)s->np * sizeof(float));
	s->epoch = s->t;
	s->k = 0;
	for (uint32_t i = 0; i < s->n; i++)
		s->sx[i] = s->si[i] = 0;
	for (uint32_t e = 0; e < s->ne; e++)
		s->se[e] = 0;
}

/* -------------------------------------------------------- normalisation */

static void normalise_all(struct mead_sim *s)
{
	uint32_t np = s->np, n = s->n;
	/* every pending potentiation first; the excitatory column sums are
	 * taken on the way */
	memset(s->colsum, 0, np * sizeof(float));
	sync_all(s, s->colsum);
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
	rebase(s);
}

void mead_sim_normalise(struct mead_sim *s)
{
	normalise_all(s);
}

/* ------------------------------------------------------------ construction */

struct byx { float x, y; uint32_t i; };

static int cmp_byx(const void *a, const void *b)
{
	const struct byx *p = a, *q = b;
	if (p->x != q->x)
		return p->x < q->x ? -1 : 1;
	return p->i < q->i ? -1 : (p->i > q->i);
}

/* |N(0,1)| exp(-d^2 / 2 sigma^2), or 0 when it would be pruned.  Pairs whose
 * profile is below theta/8 are pruned without a draw: |N(0,1)| > 8 has
 * probability 1.2e-15, so this saves ~10^8 draws at 10,140 neurons and
 * removes, in expectation, far less than one synapse. */
static double draw_weight(struct rng *g, double d2, double sigma, double theta)
{
	double f = exp(-d2 / (2.0 * sigma * sigma));
	if (f < theta / 8.0)
		return 0.0;
	double w = fabs(rng_normal(g)) * f;
	return w >= theta ? w : 0.0;
}

int mead_sim_new(const struct mead_sim_params *params, struct mead_sim **ret_sim)
{
	if (!params || !ret_sim)
		return -EINVAL;
	int r = check_params(params);
	if (r < 0)
		return r;
	struct mead_sim *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->p = *params;
	const struct mead_sim_params *p = &s->p;
	uint32_t n = p->neurons, np = (n + 15u) & ~15u, ne = p->electrode_rows * p->electrode_cols;
	s->n = n;
	s->np = np;
	s->ne = ne;
	s->rest = (float)((p->v_rest_mv + 90.0) / 40.0);
	s->reset = (float)((p->v_reset_mv + 90.0) / 40.0);
	s->th = (float)((p->v_threshold_mv + 90.0) / 40.0);
	s->lb = (float)((p->v_lower_bound_mv + 90.0) / 40.0);
	s->has_lb = p->has_lower_bound;
	s->dm = (float)exp(-p->dt_ms / p->tau_m_ms);
	s->rd = exp(-p->dt_ms / p->tau_stdp_ms);
	s->r = (float)s->rd;
	s->refr = (uint32_t)lround(p->refractory_ms / p->dt_ms);
	s->ap = (float)p->a_plus;
	s->am = (float)p->a_minus;
	s->learning = p->stdp;
	for (int32_t o = -(int32_t)REBASE_STEPS - 1; o <= (int32_t)REBASE_STEPS; o++)
		s->gtab[o + REBASE_STEPS + 1] = (float)(p->a_plus * exp((double)o * p->dt_ms / p->tau_stdp_ms));
	for (uint32_t k = 0; k <= REBASE_STEPS; k++)
		s->rtab[k] = (float)exp(-(double)k * p->dt_ms / p->tau_stdp_ms);

	r = -ENOMEM;
	if (!(s->v = zalloc(np * sizeof(float))) || !(s->in = zalloc(np * sizeof(float))) ||
	    !(s->x = zalloc(np * sizeof(float))) || !(s->spk = zalloc(np * sizeof(float))) ||
	    !(s->rc = zalloc(np * sizeof(float))) || !(s->ae = zalloc(ne * sizeof(int64_t))) ||
	    !(s->se = zalloc(ne * sizeof(uint32_t))) ||
	    !(s->in_pending = zalloc(ne)) || !(s->spikes = zalloc(n * sizeof(uint32_t))) ||
	    !(s->relay = zalloc(n * sizeof(uint32_t))) || !(s->px = zalloc(n * sizeof(float))) ||
	    !(s->py = zalloc(n * sizeof(float))) || !(s->cell = zalloc(n * sizeof(uint32_t))) ||
	    !(s->cell_count = zalloc(ne * sizeof(uint32_t))) ||
	    !(s->win = zalloc((size_t)ne * np * sizeof(float))) ||
	    !(s->wex = zalloc((size_t)n * np * sizeof(float))) ||
	    !(s->irow = zalloc((n + 1) * sizeof(uint32_t))) ||
	    !(s->d = zalloc((size_t)(REBASE_STEPS + 1) * np * sizeof(float))) ||
	    !(s->ax = zalloc(n * sizeof(int64_t))) || !(s->ai = zalloc(n * sizeof(int64_t))) ||
	    !(s->sx = zalloc(n * sizeof(uint32_t))) || !(s->si = zalloc(n * sizeof(uint32_t))) ||
	    !(s->colsum = zalloc(np * sizeof(float))) || !(s->scale = zalloc(np * sizeof(float))))
		goto fail;
	s->kern = *sim_kernels_pick();

	struct rng g;
	rng_seed(&g, p->seed);

	/* Placement: uniform over the culture, then ordered by x so that the
	 * short-range inhibitory rows touch a narrow band of the state arrays. */
	double wu = p->width_mm / p->mm_per_unit, hu = p->height_mm / p->mm_per_unit;
	struct byx *tmp = malloc(n * sizeof(*tmp));
	if (!tmp)
		goto fail;
	for (uint32_t i = 0; i < n; i++) {
		tmp[i].x = (float)(rng_uniform(&g) * wu);
		tmp[i].i = i;
	}
	for (uint32_t i = 0; i < n; i++)
		tmp[i].y = (float)(rng_uniform(&g) * hu);
	qsort(tmp, n, sizeof(*tmp), cmp_byx);
	uint32_t rows = p->electrode_rows, cols = p->electrode_cols;
	for (uint32_t i = 0; i < n; i++) {
		s->px[i] = tmp[i].x;
		s->py[i] = tmp[i].y;
		int c = (int)floor(s->px[i] / (wu / cols)), rr = (int)floor(s->py[i] / (hu / rows));
		if (c < 0) c = 0;
		if (c >= (int)cols) c = (int)cols - 1;
		if (rr < 0) rr = 0;
		if (rr >= (int)rows) rr = (int)rows - 1;
		s->cell[i] = (uint32_t)rr * cols + (uint32_t)c;
		s->cell_count[s->cell[i]]++;
	}
	free(tmp);

	double theta = p->prune_threshold;
	double sig_in = p->electrode_reach_mm / p->mm_per_unit, sig_e = p->sigma_e_mm / p->mm_per_unit,
	       sig_i = p->sigma_i_mm / p->mm_per_unit;
	for (uint32_t e = 0; e < ne; e++) {
		double ex = ((e % cols) + 0.5) * wu / cols, ey = ((e / cols) + 0.5) * hu / rows;
		float *w = s->win + (size_t)e * np;
		for (uint32_t j = 0; j < np; j++) {
			double w0 = 0.0;
			if (j < n) {
				double dx = ex - s->px[j], dy = ey - s->py[j];
				w0 = draw_weight(&g, dx * dx + dy * dy, sig_in, theta);
			}
			w[j] = w0 > 0.0 ? (float)w0 : -0.0f;
			s->nsyn[MEAD_SIM_INPUT] += w0 > 0.0;
		}
	}
	for (uint32_t i = 0; i < n; i++) {
		float *w = s->wex + (size_t)i * np;
		for (uint32_t j = 0; j < np; j++) {
			double w0 = 0.0;
			if (j < n && j != i) {
				double dx = (double)s->px[i] - s->px[j], dy = (double)s->py[i] - s->py[j];
				w0 = draw_weight(&g, dx * dx + dy * dy, sig_e, theta);
			}
			w[j] = w0 > 0.0 ? (float)w0 : -0.0f;
			s->nsyn[MEAD_SIM_EXC] += w0 > 0.0;
		}
	}
	size_t cap = 1024, nnz = 0;
	s->icol = malloc(cap * sizeof(uint32_t));
	s->ival = malloc(cap * sizeof(float));
	if (!s->icol || !s->ival)
		goto fail;
	for (uint32_t i = 0; i < n; i++) {
		s->irow[i] = (uint32_t)nnz;
		for (uint32_t j = 0; j < n; j++) {
			if (j == i)
				continue;
			double dx = (double)s->px[i] - s->px[j], dy = (double)s->py[i] - s->py[j];
			double w0 = draw_weight(&g, dx * dx + dy * dy, sig_i, theta);
			if (w0 <= 0.0)
				continue;
			if (nnz == cap) {
				if (cap > UINT32_MAX / 2)
					goto fail;
				cap *= 2;
				uint32_t *nc = realloc(s->icol, cap * sizeof(uint32_t));
				if (!nc)
					goto fail;
				s->icol = nc;
				float *nv = realloc(s->ival, cap * sizeof(float));
				if (!nv)
					goto fail;
				s->ival = nv;
			}
			s->icol[nnz] = j;
			s->ival[nnz] = (float)w0;
			nnz++;
		}
	}
	s->irow[n] = (uint32_t)nnz;
	s->nsyn[MEAD_SIM_INH] = nnz;

	for (uint32_t i = 0; i < n; i++)
		s->ax[i] = s->ai[i] = ANCHOR_NONE;
	for (uint32_t e = 0; e < ne; e++)
		s->ae[e] = ANCHOR_NONE;
	mead_sim_reset_state(s);
	normalise_all(s);
	*ret_sim = s;
	return 0;
fail:
	mead_sim_free(s);
	return r;
}

/* ------------------------------------------------------------------ step */

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
		sync_all(s, NULL);
		rebase(s);
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
		const float *dk = drow(s, s->k);
		uint32_t qb = 0;
		for (; qb + 4 <= ns; qb += 4) {
			float *w4[4];
			const float *ds4[4];
			float g4[4];
			for (int u = 0; u < 4; u++) {
				uint32_t i = s->spikes[qb + u];
				w4[u] = s->wex + (size_t)i * np;
				bool pend = s->ax[i] != ANCHOR_NONE && s->sx[i] < s->k;
				ds4[u] = pend ? drow(s, s->sx[i]) : dk;
				g4[u] = pend ? gain_exc(s, s->ax[i]) : 0.0f;
				s->ax[i] = now;
				s->sx[i] = s->k + 1;
			}
			s->kern.pre_full4(w4, in, x, s->spk, dk, ds4, g4, s->ap, s->am, np);
		}
		for (; qb < ns; qb++) {
			uint32_t i = s->spikes[qb];
			float *w = s->wex + (size_t)i * np;
			bool pend = s->ax[i] != ANCHOR_NONE && s->sx[i] < s->k;
			s->kern.pre_full(w, in, x, s->spk, dk, pend ? drow(s, s->sx[i]) : dk,
				    pend ? gain_exc(s, s->ax[i]) : 0.0f, s->ap, s->am, np);
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
				s->kern.pre_full(w, in, x, s->spk, dk, drow(s, s->se[e]), gain_exc(s, s->ae[e]),
					    s->ap, s->am, np);
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
				sim_inh_pre(s->icol + lo, s->ival + lo, hi - lo, in, x, s->spk, dk, drow(s, s->si[i]),
					   gain_inh(s, s->ai[i]), s->ap, s->am);
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
		sync_all(s, NULL);
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
	rebase(s);
}

void mead_sim_set_learning(struct mead_sim *s, bool on)
{
	if (on == s->learning)
		return;
	if (s->learning)
		sync_all(s, NULL);
	s->learning = on;
	rebase(s);
}

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
	const float *dk = drow(s, s->k);
	switch (p) {
	case MEAD_SIM_INPUT: {
		if (pre >= s->ne)
			return -ERANGE;
		float w = s->win[(size_t)pre * s->np + post];
		if (signbit(w))
			return -ENOENT;
		if (s->learning && s->ae[pre] != ANCHOR_NONE && s->se[pre] < s->k)
			w = w + gain_exc(s, s->ae[pre]) * (dk[post] - drow(s, s->se[pre])[post]);
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
			w = w + gain_exc(s, s->ax[pre]) * (dk[post] - drow(s, s->sx[pre])[post]);
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
			m = m + gain_inh(s, s->ai[pre]) * (dk[post] - drow(s, s->si[pre])[post]);
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
	sync_all(s, NULL);
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

/* ------------------------------------------------------------- save/load */

/*
 * File layout (little-endian), see docs/twin.md:
 *   0  char[8]  "MEADSIMW"
 *   8  u32      version (1)
 *  12  u32      header size (64)
 *  16  u32      neurons
 *  20  u32      electrodes
 *  24  u64      seed
 *  32  u64      input, excitatory, inhibitory synapse counts
 *  56  u64      FNV-1a 64 of the payload
 *  64  payload: input weights (electrodes x neurons f32, pruned = -0.0),
 *      excitatory (neurons x neurons f32, row = presynaptic, pruned = -0.0),
 *      inhibitory CSR: row offsets (neurons + 1 u32), columns (u32),
 *      magnitudes (f32, the weight is minus the magnitude).
 */
#define HDR_SIZE 64u
#define FNV_OFF 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t fnv(uint64_t h, const void *buf, size_t len)
{
	const unsigned char *b = buf;
	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * FNV_PRIME;
	return h;
}

static void put32(unsigned char *b, uint32_t v) { for (int i = 0; i < 4; i++) b[i] = (unsigned char)(v >> (8 * i)); }
static void put64(unsigned char *b, uint64_t v) { for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i)); }
static uint32_t get32(const unsigned char *b) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | b[i]; return v; }
static uint64_t get64(const unsigned char *b) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | b[i]; return v; }

/* The padding columns of the dense matrices are not written. */
typedef int (*walk_fn)(void *ctx, void *ptr, size_t len);

static int walk_payload(struct mead_sim *s, walk_fn fn, void *ctx)
{
	int r;
	for (uint32_t e = 0; e < s->ne; e++)
		if ((r = fn(ctx, s->win + (size_t)e * s->np, s->n * sizeof(float))) < 0)
			return r;
	for (uint32_t i = 0; i < s->n; i++)
		if ((r = fn(ctx, s->wex + (size_t)i * s->np, s->n * sizeof(float))) < 0)
			return r;
	if ((r = fn(ctx, s->irow, (s->n + 1) * sizeof(uint32_t))) < 0)
		return r;
	if ((r = fn(ctx, s->icol, s->irow[s->n] * sizeof(uint32_t))) < 0)
		return r;
	return fn(ctx, s->ival, s->irow[s->n] * sizeof(float));
}

struct wctx { FILE *f; uint64_t h; };

static int w_hash(void *ctx, void *ptr, size_t len)
{
	struct wctx *w = ctx;
	w->h = fnv(w->h, ptr, len);
	return 0;
}

static int w_write(void *ctx, void *ptr, size_t len)
{
	struct wctx *w = ctx;
	return fwrite(ptr, 1, len, w->f) == len ? 0 : -EIO;
}

static void header(struct mead_sim *s, unsigned char *h, uint64_t sum)
{
	memset(h, 0, HDR_SIZE);
	memcpy(h, MEAD_SIM_WEIGHTS_MAGIC, 8);
	put32(h + 8, MEAD_SIM_WEIGHTS_VERSION);
	put32(h + 12, HDR_SIZE);
	put32(h + 16, s->n);
	put32(h + 20, s->ne);
	put64(h + 24, s->p.seed);
	put64(h + 32, s->nsyn[0]);
	put64(h + 40, s->nsyn[1]);
	put64(h + 48, s->nsyn[2]);
	put64(h + 56, sum);
}

int mead_sim_save(struct mead_sim *s, const char *path)
{
	if (!s || !path)
		return -EINVAL;
	/* Pending potentiation belongs to the weights. */
	sync_all(s, NULL);
	struct wctx w = { .h = FNV_OFF };
	walk_payload(s, w_hash, &w);
	unsigned char h[HDR_SIZE];
	header(s, h, w.h);
	char tmpp[4096];
	if (snprintf(tmpp, sizeof(tmpp), "%s.tmp", path) >= (int)sizeof(tmpp))
		return -ENAMETOOLONG;
	w.f = fopen(tmpp, "wb");
	if (!w.f)
		return -errno;
	int r = fwrite(h, 1, HDR_SIZE, w.f) == HDR_SIZE ? 0 : -EIO;
	if (r == 0)
		r = walk_payload(s, w_write, &w);
	if (fflush(w.f) != 0 && r == 0)
		r = -errno;
	if (fclose(w.f) != 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmpp, path) != 0)
		r = -errno;
	if (r < 0)
		remove(tmpp);
	return r;
}

struct rctx {
	FILE *f;
	uint64_t h;
	bool apply;
	bool mismatch;
	unsigned char buf[1 << 16];
	uint32_t part; /* 0 = dense f32 with sign pattern, 1 = exact match u32, 2 = values */
};

static int r_read(void *ctx, void *ptr, size_t len)
{
	struct rctx *c = ctx;
	unsigned char *dst = ptr;
	while (len) {
		size_t m = len < sizeof(c->buf) ? len : sizeof(c->buf);
		if (fread(c->buf, 1, m, c->f) != m)
			return -EBADMSG;
		c->h = fnv(c->h, c->buf, m);
		if (c->apply) {
			memcpy(dst, c->buf, m);
		} else if (c->part == 0) {
			for (size_t i = 0; i + 4 <= m; i += 4)
				if ((c->buf[i + 3] ^ dst[i + 3]) & 0x80)
					c->mismatch = true;
		} else if (c->part == 1) {
			if (memcmp(dst, c->buf, m))
				c->mismatch = true;
		}
		dst += m;
		len -= m;
	}
	return 0;
}

/* Walks the payload in the same order as walk_payload, telling the reader
 * which comparison applies to each part. */
static int read_payload(struct mead_sim *s, struct rctx *c)
{
	int r;
	c->part = 0;
	for (uint32_t e = 0; e < s->ne; e++)
		if ((r = r_read(c, s->win + (size_t)e * s->np, s->n * sizeof(float))) < 0)
			return r;
	for (uint32_t i = 0; i < s->n; i++)
		if ((r = r_read(c, s->wex + (size_t)i * s->np, s->n * sizeof(float))) < 0)
			return r;
	c->part = 1;
	if ((r = r_read(c, s->irow, (s->n + 1) * sizeof(uint32_t))) < 0)
		return r;
	if ((r = r_read(c, s->icol, s->irow[s->n] * sizeof(uint32_t))) < 0)
		return r;
	c->part = 2;
	return r_read(c, s->ival, s->irow[s->n] * sizeof(float));
}

int mead_sim_load(struct mead_sim *s, const char *path)
{
	if (!s || !path)
		return -EINVAL;
	struct rctx *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	int r = 0;
	c->f = fopen(path, "rb");
	if (!c->f) {
		r = -errno;
		free(c);
		return r;
	}
	unsigned char h[HDR_SIZE];
	if (fread(h, 1, HDR_SIZE, c->f) != HDR_SIZE || memcmp(h, MEAD_SIM_WEIGHTS_MAGIC, 8)) {
		r = -EBADMSG;
		goto out;
	}
	if (get32(h + 8) != MEAD_SIM_WEIGHTS_VERSION) {
		r = -EPROTONOSUPPORT;
		goto out;
	}
	if (get32(h + 12) != HDR_SIZE) {
		r = -EBADMSG;
		goto out;
	}
	if (get32(h + 16) != s->n || get32(h + 20) != s->ne || get64(h + 24) != s->p.seed ||
	    get64(h + 32) != s->nsyn[0] || get64(h + 40) != s->nsyn[1] || get64(h + 48) != s->nsyn[2]) {
		r = -ESTALE;
		goto out;
	}
	uint64_t want = get64(h + 56);
	/* First pass: verify without touching the model. */
	c->h = FNV_OFF;
	c->apply = false;
	if ((r = read_payload(s, c)) < 0)
		goto out;
	if (fgetc(c->f) != EOF || c->h != want) {
		r = -EBADMSG;
		goto out;
	}
	if (c->mismatch) {
		r = -ESTALE;
		goto out;
	}
	/* Second pass: apply. */
	if (fseek(c->f, HDR_SIZE, SEEK_SET) != 0) {
		r = -errno;
		goto out;
	}
	c->h = FNV_OFF;
	c->apply = true;
	if ((r = read_payload(s, c)) < 0)
		goto out;
	if (c->h != want) {
		/* the file changed under us; the weights are now whatever it held */
		r = -EBADMSG;
		goto out;
	}
	/* Pending potentiation belonged to the weights just replaced. */
	rebase(s);
out:
	fclose(c->f);
	free(c);
	return r;
}

/* ------------------------------------------------------------- snapshots */

static size_t snap_floats(const struct mead_sim *s)
{
	return (size_t)s->ne * s->np + (size_t)s->n * s->np + s->irow[s->n];
}

size_t mead_sim_snapshot_bytes(const struct mead_sim *s)
{
	return snap_floats(s) * sizeof(float);
}

int mead_sim_snapshots_alloc(struct mead_sim *s, uint32_t slots)
{
	if (s->nsnap)
		return -EALREADY;
	if (slots == 0)
		return 0;
	if (slots > 64)
		return -EINVAL;
	s->snap = calloc(slots, sizeof(float *));
	s->snap_full = calloc(slots, sizeof(bool));
	if (!s->snap || !s->snap_full)
		goto fail;
	for (uint32_t q = 0; q < slots; q++)
		if (!(s->snap[q] = zalloc(snap_floats(s) * sizeof(float))))
			goto fail;
	s->nsnap = slots;
	return 0;
fail:
	for (uint32_t q = 0; q < slots && s->snap; q++)
		free(s->snap[q]);
	free(s->snap);
	free(s->snap_full);
	s->snap = NULL;
	s->snap_full = NULL;
	return -ENOMEM;
}

int mead_sim_snapshot_save(struct mead_sim *s, uint32_t slot)
{
	if (slot >= s->nsnap)
		return s->nsnap ? -ERANGE : -EOPNOTSUPP;
	sync_all(s, NULL);
	float *d = s->snap[slot];
	size_t a = (size_t)s->ne * s->np, b = (size_t)s->n * s->np;
	memcpy(d, s->win, a * sizeof(float));
	memcpy(d + a, s->wex, b * sizeof(float));
	memcpy(d + a + b, s->ival, s->irow[s->n] * sizeof(float));
	s->snap_full[slot] = true;
	return 0;
}

int mead_sim_snapshot_restore(struct mead_sim *s, uint32_t slot)
{
	if (slot >= s->nsnap)
		return s->nsnap ? -ERANGE : -EOPNOTSUPP;
	if (!s->snap_full[slot])
		return -ENOENT;
	const float *d = s->snap[slot];
	size_t a = (size_t)s->ne * s->np, b = (size_t)s->n * s->np;
	memcpy(s->win, d, a * sizeof(float));
	memcpy(s->wex, d + a, b * sizeof(float));
	memcpy(s->ival, d + a + b, s->irow[s->n] * sizeof(float));
	/* pending potentiation belonged to the weights just replaced */
	rebase(s);
	return 0;
}
