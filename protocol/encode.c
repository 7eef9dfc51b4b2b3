/* SPDX-License-Identifier: MIT */
#include "protocol/encode.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/core/err.h"

/* ---- Spike encoders ------------------------------------------------------ */

#define ENCODER_MAX_DURATION_MS 60000u

struct rate_table {
	uint32_t len;         /* entries in thr */
	bool saturated;       /* the last entry is certain (CDF reached 1) */
	uint64_t *thr;        /* reference: thr[j-1] = P(interval <= j) * 2^64;
			       * poisson: thr[0] = P(spike in a ms) * 2^64 */
};

struct mead_spike_encoder {
	enum mead_encoder_kind kind;
	uint32_t duration_ms;
	uint32_t n_rates;
	struct rate_table *tables;
};

static uint64_t prob_to_u64(double p, bool *ret_certain)
{
	*ret_certain = false;
	if (!(p > 0.0))
		return 0;
	if (p >= 1.0) {
		*ret_certain = true;
		return UINT64_MAX;
	}
	double x = p * 18446744073709551616.0; /* 2^64, exact */
	if (x >= 18446744073709551615.0) {
		*ret_certain = true;
		return UINT64_MAX;
	}
	return (uint64_t)x;
}

/* CDF of the reference's interval: Poisson(lambda) with 0 counted as 1,
 * over 1..duration.  The pmf is built in the log domain so that large means
 * (dim pixels: lambda over 1000 ms) neither underflow early nor need lgamma. */
static int build_reference_table(struct rate_table *t, double rate_hz, uint32_t duration_ms)
{
	t->len = 0;
	t->saturated = false;
	t->thr = NULL;
	if (!(rate_hz > 0.0))
		return 0;
	double lambda = 1000.0 / rate_hz;
	double log_lambda = log(lambda);
	t->thr = calloc(duration_ms, sizeof(*t->thr));
	if (!t->thr)
		return -ENOMEM;
	double lp = -lambda;               /* log P(X = 0) */
	double cdf = exp(lp);              /* P(X <= 0): folded into interval 1 */
	for (uint32_t j = 1; j <= duration_ms; j++) {
		lp += log_lambda - log((double)j);
		cdf += exp(lp);
		bool certain;
		t->thr[j - 1] = prob_to_u64(cdf, &certain);
		t->len = j;
		if (certain) {
			t->saturated = true;
			break;
		}
	}
	return 0;
}

static int build_poisson_table(struct rate_table *t, double rate_hz)
{
	t->len = 0;
	t->saturated = false;
	t->thr = NULL;
	if (!(rate_hz > 0.0))
		return 0;
	t->thr = calloc(1, sizeof(*t->thr));
	if (!t->thr)
		return -ENOMEM;
	t->thr[0] = prob_to_u64(rate_hz / 1000.0, &t->saturated);
	t->len = 1;
	return 0;
}

void mead_spike_encoder_free(struct mead_spike_encoder *e)
{
	if (!e)
		return;
	if (e->tables)
		for (uint32_t i = 0; i < e->n_rates; i++)
			free(e->tables[i].thr);
	free(e->tables);
	free(e);
}

int mead_spike_encoder_new(enum mead_encoder_kind kind, uint32_t duration_ms,
			   const double *rates_hz, uint32_t n_rates,
			   struct mead_spike_encoder **ret, char *err, size_t err_len)
{
	if (kind != MEAD_ENCODER_REFERENCE && kind != MEAD_ENCODER_POISSON) {
		mead_set_err(err, err_len, "unknown spike encoder %d", (int)kind);
		return -EINVAL;
	}
	if (duration_ms == 0 || duration_ms > ENCODER_MAX_DURATION_MS) {
		mead_set_err(err, err_len, "spike train window of %u ms: expected 1..%u ms",
			duration_ms, ENCODER_MAX_DURATION_MS);
		return -EINVAL;
	}
	if (n_rates == 0 || !rates_hz) {
		mead_set_err(err, err_len, "spike encoder without rates");
		return -EINVAL;
	}
	for (uint32_t i = 0; i < n_rates; i++) {
		if (!isfinite(rates_hz[i]) || rates_hz[i] < 0.0 || rates_hz[i] > 1000.0) {
			mead_set_err(err, err_len, "firing rate %g Hz: expected 0..1000 Hz (at most one spike per ms)",
				rates_hz[i]);
			return -EINVAL;
		}
	}
	struct mead_spike_encoder *e = calloc(1, sizeof(*e));
	if (!e)
		goto nomem;
	e->kind = kind;
	e->duration_ms = duration_ms;
	e->n_rates = n_rates;
	e->tables = calloc(n_rates, sizeof(*e->tables));
	if (!e->tables)
		goto nomem;
	for (uint32_t i = 0; i < n_rates; i++) {
		int r = kind == MEAD_ENCODER_REFERENCE
			? build_reference_table(&e->tables[i], rates_hz[i], duration_ms)
			: build_poisson_table(&e->tables[i], rates_hz[i]);
		if (r < 0)
			goto nomem;
	}
	*ret = e;
	return 0;
nomem:
	mead_spike_encoder_free(e);
	mead_set_err(err, err_len, "out of memory building spike encoder tables");
	return -ENOMEM;
}

uint32_t mead_spike_encoder_duration_ms(const struct mead_spike_encoder *e)
{
	return e->duration_ms;
}

/* Smallest interval j (1-based) with u below its CDF threshold, or
 * duration+1 when the interval is longer than the window. */
static uint32_t draw_interval(const struct rate_table *t, uint64_t u, uint32_t duration_ms)
{
	uint32_t lo = 0, hi = t->len;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (u < t->thr[mid])
			hi = mid;
		else
			lo = mid + 1;
	}
	if (lo < t->len)
		return lo + 1;
	if (t->saturated)
		return t->len;
	return duration_ms + 1;
}

uint32_t mead_spike_encoder_draw(const struct mead_spike_encoder *e, uint32_t rate_index,
				 struct mead_rng *rng, uint16_t *out_ms)
{
	if (rate_index >= e->n_rates)
		return 0;
	const struct rate_table *t = &e->tables[rate_index];
	if (t->len == 0)
		return 0;
	uint32_t n = 0, d = e->duration_ms;
	if (e->kind == MEAD_ENCODER_POISSON) {
		uint64_t thr = t->thr[0];
		for (uint32_t ms = 0; ms < d; ms++) {
			uint64_t u = mead_rng_next(rng);
			if (u < thr || t->saturated)
				out_ms[n++] = (uint16_t)ms;
		}
		return n;
	}
	/* times are cumulative intervals >= 1; a spike at time s (1..d) lands
	 * in ms s-1, as the reference drops its time-0 slot */
	uint32_t time = 0;
	for (;;) {
		uint32_t iv = draw_interval(t, mead_rng_next(rng), d);
		time += iv;
		if (time > d)
			break;
		out_ms[n++] = (uint16_t)(time - 1);
	}
	return n;
}

double mead_pixel_rate_hz(uint8_t level, double max_rate_hz)
{
	return (double)level / 255.0 * max_rate_hz;
}

