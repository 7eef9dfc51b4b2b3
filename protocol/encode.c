/* SPDX-License-Identifier: MIT */
#include "protocol/encode.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void set_err(char *err, size_t err_len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
	if (!err || err_len == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
}

/* ---- PRNG ---------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void mead_rng_seed(struct mead_rng *r, uint64_t seed)
{
	uint64_t x = seed;
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
	/* all-zero state is the one fixed point of xoshiro */
	if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3]))
		r->s[0] = 1;
}

void mead_rng_seed_stream(struct mead_rng *r, uint64_t seed, uint64_t stream)
{
	uint64_t x = stream;
	mead_rng_seed(r, seed ^ splitmix64(&x));
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t mead_rng_next(struct mead_rng *r)
{
	uint64_t *s = r->s;
	const uint64_t result = rotl(s[1] * 5, 7) * 9;
	const uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

uint32_t mead_rng_below(struct mead_rng *r, uint32_t n)
{
	/* Lemire's multiply-shift with rejection: no modulo bias */
	uint64_t m = (uint64_t)(uint32_t)(mead_rng_next(r) >> 32) * n;
	uint32_t low = (uint32_t)m;
	if (low < n) {
		uint32_t t = (uint32_t)(-n) % n;
		while (low < t) {
			m = (uint64_t)(uint32_t)(mead_rng_next(r) >> 32) * n;
			low = (uint32_t)m;
		}
	}
	return (uint32_t)(m >> 32);
}

double mead_rng_uniform(struct mead_rng *r)
{
	return (double)(mead_rng_next(r) >> 11) * 0x1.0p-53;
}

void mead_rng_shuffle_u32(struct mead_rng *r, uint32_t *v, uint32_t n)
{
	for (uint32_t i = n; i > 1; i--) {
		uint32_t j = mead_rng_below(r, i);
		uint32_t t = v[i - 1];
		v[i - 1] = v[j];
		v[j] = t;
	}
}

/* ---- Resize (Pillow's ImagingResample, mode L, BILINEAR) ----------------- */

#define PRECISION_BITS (32 - 8 - 2)

static double triangle(double x)
{
	if (x < 0.0)
		x = -x;
	return x < 1.0 ? 1.0 - x : 0.0;
}

/* Fixed-point coefficients and source bounds for one axis, computed exactly
 * as Pillow's precompute_coeffs + normalize_coeffs_8bpc (box from 0 to
 * in_size, as a float like Pillow's box). */
static int axis_coeffs(uint32_t in_size, uint32_t out_size, int32_t **ret_k, int *ret_bounds_ksize,
		       int **ret_bounds)
{
	const float in0 = 0.0f, in1 = (float)in_size;
	double scale = (double)(in1 - in0) / out_size;
	double filterscale = scale < 1.0 ? 1.0 : scale;
	double support = 1.0 * filterscale;
	int ksize = (int)ceil(support) * 2 + 1;

	double *kk = calloc((size_t)out_size * ksize, sizeof(*kk));
	int32_t *ki = calloc((size_t)out_size * ksize, sizeof(*ki));
	int *bounds = calloc((size_t)out_size * 2, sizeof(*bounds));
	if (!kk || !ki || !bounds) {
		free(kk);
		free(ki);
		free(bounds);
		return -ENOMEM;
	}
	for (uint32_t xx = 0; xx < out_size; xx++) {
		double center = in0 + (xx + 0.5) * scale;
		double ww = 0.0, ss = 1.0 / filterscale;
		int xmin = (int)(center - support + 0.5);
		if (xmin < 0)
			xmin = 0;
		int xmax = (int)(center + support + 0.5);
		if (xmax > (int)in_size)
			xmax = (int)in_size;
		xmax -= xmin;
		double *k = &kk[(size_t)xx * ksize];
		for (int x = 0; x < xmax; x++) {
			double w = triangle((x + xmin - center + 0.5) * ss);
			k[x] = w;
			ww += w;
		}
		for (int x = 0; x < xmax; x++)
			if (ww != 0.0)
				k[x] /= ww;
		bounds[xx * 2] = xmin;
		bounds[xx * 2 + 1] = xmax;
	}
	for (size_t i = 0; i < (size_t)out_size * ksize; i++) {
		if (kk[i] < 0)
			ki[i] = (int32_t)(-0.5 + kk[i] * (1 << PRECISION_BITS));
		else
			ki[i] = (int32_t)(0.5 + kk[i] * (1 << PRECISION_BITS));
	}
	free(kk);
	*ret_k = ki;
	*ret_bounds_ksize = ksize;
	*ret_bounds = bounds;
	return 0;
}

static inline uint8_t clip8(int32_t in)
{
	/* arithmetic shift: Pillow's lookup table is indexed by in >> 22 */
	int32_t v = in >> PRECISION_BITS;
	if (v < 0)
		return 0;
	if (v > 255)
		return 255;
	return (uint8_t)v;
}

int mead_resize_u8(const uint8_t *src, uint32_t src_w, uint32_t src_h,
		   uint8_t *dst, uint32_t dst_w, uint32_t dst_h)
{
	if (!src || !dst || !src_w || !src_h || !dst_w || !dst_h ||
	    src_w > 65536 || src_h > 65536 || dst_w > 65536 || dst_h > 65536)
		return -EINVAL;

	int32_t *kh = NULL, *kv = NULL;
	int *bh = NULL, *bv = NULL;
	int ksh = 0, ksv = 0, r;
	uint8_t *tmp = NULL;

	if ((r = axis_coeffs(src_w, dst_w, &kh, &ksh, &bh)) < 0)
		goto out;
	if ((r = axis_coeffs(src_h, dst_h, &kv, &ksv, &bv)) < 0)
		goto out;

	/* Pillow skips a pass when that axis keeps its size (no rounding then) */
	bool need_h = dst_w != src_w, need_v = dst_h != src_h;
	int ybox_first = bv[0];
	int ybox_last = bv[dst_h * 2 - 2] + bv[dst_h * 2 - 1];
	const uint8_t *vin = src;
	uint32_t vin_w = src_w;

	if (need_h) {
		for (uint32_t i = 0; i < dst_h; i++)
			bv[i * 2] -= ybox_first;
		uint32_t th = (uint32_t)(ybox_last - ybox_first);
		tmp = malloc((size_t)dst_w * th);
		if (!tmp) {
			r = -ENOMEM;
			goto out;
		}
		for (uint32_t yy = 0; yy < th; yy++) {
			const uint8_t *row = src + (size_t)(yy + ybox_first) * src_w;
			for (uint32_t xx = 0; xx < dst_w; xx++) {
				int xmin = bh[xx * 2], xmax = bh[xx * 2 + 1];
				const int32_t *k = &kh[(size_t)xx * ksh];
				int32_t ss0 = 1 << (PRECISION_BITS - 1);
				for (int x = 0; x < xmax; x++)
					ss0 += (int32_t)row[x + xmin] * k[x];
				tmp[(size_t)yy * dst_w + xx] = clip8(ss0);
			}
		}
		vin = tmp;
		vin_w = dst_w;
	}
	if (need_v) {
		for (uint32_t yy = 0; yy < dst_h; yy++) {
			const int32_t *k = &kv[(size_t)yy * ksv];
			int ymin = bv[yy * 2], ymax = bv[yy * 2 + 1];
			for (uint32_t xx = 0; xx < vin_w; xx++) {
				int32_t ss0 = 1 << (PRECISION_BITS - 1);
				for (int y = 0; y < ymax; y++)
					ss0 += (int32_t)vin[(size_t)(y + ymin) * vin_w + xx] * k[y];
				dst[(size_t)yy * dst_w + xx] = clip8(ss0);
			}
		}
	} else {
		/* only the horizontal pass (or none): its rows are the output rows */
		for (uint32_t yy = 0; yy < dst_h; yy++)
			memcpy(dst + (size_t)yy * dst_w, vin + (size_t)yy * vin_w, dst_w);
	}
	r = 0;
out:
	free(kh);
	free(kv);
	free(bh);
	free(bv);
	free(tmp);
	return r;
}

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
		set_err(err, err_len, "unknown spike encoder %d", (int)kind);
		return -EINVAL;
	}
	if (duration_ms == 0 || duration_ms > ENCODER_MAX_DURATION_MS) {
		set_err(err, err_len, "spike train window of %u ms: expected 1..%u ms",
			duration_ms, ENCODER_MAX_DURATION_MS);
		return -EINVAL;
	}
	if (n_rates == 0 || !rates_hz) {
		set_err(err, err_len, "spike encoder without rates");
		return -EINVAL;
	}
	for (uint32_t i = 0; i < n_rates; i++) {
		if (!isfinite(rates_hz[i]) || rates_hz[i] < 0.0 || rates_hz[i] > 1000.0) {
			set_err(err, err_len, "firing rate %g Hz: expected 0..1000 Hz (at most one spike per ms)",
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
	set_err(err, err_len, "out of memory building spike encoder tables");
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

/* ---- Label layout -------------------------------------------------------- */

static void add_rows(struct mead_label_layout *l, uint32_t c, uint32_t r0, uint32_t r1, uint32_t col)
{
	for (uint32_t r = r0; r < r1 && l->n_cells[c] < MEAD_LABEL_MAX_CELLS; r++) {
		l->cells[c][l->n_cells[c]].row = (uint16_t)r;
		l->cells[c][l->n_cells[c]].col = (uint16_t)col;
		l->n_cells[c]++;
	}
}

int mead_label_layout_build(uint32_t n_classes, uint32_t rows, uint32_t label_column,
			    struct mead_label_layout *ret, char *err, size_t err_len)
{
	struct mead_label_layout l;
	memset(&l, 0, sizeof(l));
	l.n_classes = n_classes;
	if (n_classes <= 1) {
		*ret = l;
		return 0;
	}
	if (n_classes > MEAD_LABEL_MAX_CLASSES) {
		set_err(err, err_len, "a label layout exists for 2, 3 or 4 classes, not %u "
			"(turn the label off to use more classes)", n_classes);
		return -EINVAL;
	}
	if (rows < n_classes || rows > MEAD_LABEL_MAX_CELLS) {
		set_err(err, err_len, "%u label rows cannot carry %u classes", rows, n_classes);
		return -EINVAL;
	}
	uint32_t col = label_column, b;
	switch (n_classes) {
	case 2:
		add_rows(&l, 0, 0, rows / 2, col);
		add_rows(&l, 1, rows / 2 + (rows % 2), rows, col);
		break;
	case 3:
		b = rows / 3;
		if (rows % 3 != 2) {
			add_rows(&l, 0, 0, b, col);
			add_rows(&l, 1, b, 2 * b, col);
			add_rows(&l, 2, 2 * b, 3 * b, col);
		} else {
			add_rows(&l, 0, 0, b, col);
			add_rows(&l, 1, b + 1, 2 * b + 1, col);
			add_rows(&l, 2, 2 * b + 2, 3 * b + 2, col);
		}
		break;
	case 4:
		if (rows % 4 == 0) {
			b = rows / 4;
			for (uint32_t c = 0; c < 4; c++)
				add_rows(&l, c, c * b, (c + 1) * b, col);
		} else if (rows == 6) {
			if (col == 0) {
				set_err(err, err_len, "4 classes on 6 rows use the label column and the one "
					"to its left: label column 0 has none");
				return -EINVAL;
			}
			/* 3 cells per class over two columns, as the reference lays them */
			add_rows(&l, 0, 0, 2, col - 1);
			add_rows(&l, 0, 0, 1, col);
			add_rows(&l, 1, 2, 3, col - 1);
			add_rows(&l, 1, 1, 3, col);
			add_rows(&l, 2, 3, 5, col - 1);
			add_rows(&l, 2, 3, 4, col);
			add_rows(&l, 3, 5, 6, col - 1);
			add_rows(&l, 3, 4, 6, col);
		} else {
			set_err(err, err_len, "4 classes need a multiple of 4 label rows, or 6; got %u", rows);
			return -EINVAL;
		}
		break;
	}
	*ret = l;
	return 0;
}
