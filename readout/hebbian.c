/* SPDX-License-Identifier: MIT */
#include "readout/hebbian.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lib/core/rng.h"

void mead_hrng_seed(struct mead_hrng *r, uint64_t seed)
{
	r->s = seed ^ 0x6a09e667f3bcc909ull;
}

uint64_t mead_hrng_next(struct mead_hrng *r)
{
	return mead_splitmix64(&r->s);
}

double mead_hrng_uniform(struct mead_hrng *r)
{
	return (double)(mead_hrng_next(r) >> 11) * 0x1.0p-53;
}

double mead_hrng_normal(struct mead_hrng *r)
{
	/* Box-Muller; 1 - u keeps the log argument away from zero. */
	double u = 1.0 - mead_hrng_uniform(r);
	double v = mead_hrng_uniform(r);
	return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

uint32_t mead_hrng_below(struct mead_hrng *r, uint32_t n)
{
	return (uint32_t)(((mead_hrng_next(r) >> 32) * (uint64_t)n) >> 32);
}

void mead_hrng_shuffle(struct mead_hrng *r, uint32_t *v, uint32_t n)
{
	for (uint32_t i = n; i > 1; i--) {
		uint32_t j = mead_hrng_below(r, i);
		uint32_t t = v[i - 1];
		v[i - 1] = v[j];
		v[j] = t;
	}
}

int mead_layer_kind_parse(const char *s)
{
	if (strcmp(s, "none") == 0)
		return MEAD_LAYER_NONE;
	if (strcmp(s, "swta") == 0)
		return MEAD_LAYER_SWTA;
	if (strcmp(s, "hpca") == 0)
		return MEAD_LAYER_HPCA;
	if (strcmp(s, "swta-softmax") == 0)
		return MEAD_LAYER_SWTA_SOFTMAX;
	return -EINVAL;
}

const char *mead_layer_kind_name(enum mead_layer_kind k)
{
	switch (k) {
	case MEAD_LAYER_NONE: return "none";
	case MEAD_LAYER_SWTA: return "swta";
	case MEAD_LAYER_HPCA: return "hpca";
	case MEAD_LAYER_SWTA_SOFTMAX: return "swta-softmax";
	}
	return "?";
}

struct mead_hebb_layer {
	enum mead_layer_kind kind;
	uint32_t n_in, n_out;
	float temperature;
	float *w;       /* n_out x n_in */
	float *scratch; /* n_in: running reconstruction for HPCA, y for SWTA */
	float *y;       /* n_out */
};

static void unit_random_rows(float *w, uint32_t rows, uint32_t cols, uint64_t seed)
{
	struct mead_hrng r;
	mead_hrng_seed(&r, seed);
	for (uint32_t i = 0; i < rows; i++) {
		float *row = w + (size_t)i * cols;
		double n2 = 0;
		for (uint32_t k = 0; k < cols; k++) {
			row[k] = (float)mead_hrng_normal(&r);
			n2 += (double)row[k] * row[k];
		}
		float inv = n2 > 0 ? (float)(1.0 / sqrt(n2)) : 0.f;
		for (uint32_t k = 0; k < cols; k++)
			row[k] *= inv;
	}
}

int mead_hebb_layer_new(enum mead_layer_kind kind, uint32_t n_in, uint32_t n_out, uint64_t seed,
			struct mead_hebb_layer **ret)
{
	if (n_in == 0 || (kind != MEAD_LAYER_NONE && n_out == 0))
		return -EINVAL;
	if (kind != MEAD_LAYER_NONE && kind != MEAD_LAYER_SWTA && kind != MEAD_LAYER_HPCA &&
	    kind != MEAD_LAYER_SWTA_SOFTMAX)
		return -EINVAL;
	struct mead_hebb_layer *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->kind = kind;
	l->n_in = n_in;
	l->n_out = kind == MEAD_LAYER_NONE ? n_in : n_out;
	l->temperature = MEAD_SWTA_DEFAULT_TEMPERATURE;
	if (kind != MEAD_LAYER_NONE) {
		l->w = calloc((size_t)l->n_out * n_in, sizeof(float));
		l->scratch = calloc(n_in, sizeof(float));
		l->y = calloc(l->n_out, sizeof(float));
		if (!l->w || !l->scratch || !l->y) {
			mead_hebb_layer_free(l);
			return -ENOMEM;
		}
		unit_random_rows(l->w, l->n_out, n_in, seed);
	}
	*ret = l;
	return 0;
}

void mead_hebb_layer_free(struct mead_hebb_layer *l)
{
	if (!l)
		return;
	free(l->w);
	free(l->scratch);
	free(l->y);
	free(l);
}

enum mead_layer_kind mead_hebb_layer_kind(const struct mead_hebb_layer *l) { return l->kind; }
uint32_t mead_hebb_layer_n_in(const struct mead_hebb_layer *l) { return l->n_in; }
uint32_t mead_hebb_layer_n_out(const struct mead_hebb_layer *l) { return l->n_out; }
float *mead_hebb_layer_weights(struct mead_hebb_layer *l) { return l->w; }
float mead_hebb_layer_temperature(const struct mead_hebb_layer *l) { return l->temperature; }

void mead_hebb_layer_set_temperature(struct mead_hebb_layer *l, float t)
{
	if (t > 0)
		l->temperature = t;
}

void mead_hebb_layer_init_from_samples(struct mead_hebb_layer *l, const float *x, uint32_t n,
				       uint64_t seed)
{
	if ((l->kind != MEAD_LAYER_SWTA && l->kind != MEAD_LAYER_SWTA_SOFTMAX) || n == 0)
		return;
	struct mead_hrng r;
	mead_hrng_seed(&r, seed ^ 0x5157a5eedull);
	/* Distinct samples while there are enough: two prototypes on the same
	 * point share every update and never separate. */
	uint32_t *pick = n >= l->n_out ? malloc((size_t)n * sizeof(uint32_t)) : NULL;
	if (pick) {
		for (uint32_t i = 0; i < n; i++)
			pick[i] = i;
		for (uint32_t i = 0; i < l->n_out; i++) {
			uint32_t j = i + mead_hrng_below(&r, n - i);
			uint32_t t = pick[i];
			pick[i] = pick[j];
			pick[j] = t;
		}
	}
	for (uint32_t i = 0; i < l->n_out; i++) {
		uint32_t k = pick ? pick[i] : mead_hrng_below(&r, n);
		memcpy(l->w + (size_t)i * l->n_in, x + (size_t)k * l->n_in, l->n_in * sizeof(float));
	}
	free(pick);
}

static double dot(const float *a, const float *b, uint32_t n)
{
	double s = 0;
	for (uint32_t k = 0; k < n; k++)
		s += (double)a[k] * b[k];
	return s;
}

static void swta_forward(const struct mead_hebb_layer *l, const float *x, float *z)
{
	double xn = sqrt(dot(x, x, l->n_in));
	float smax = -INFINITY;
	for (uint32_t i = 0; i < l->n_out; i++) {
		const float *w = l->w + (size_t)i * l->n_in;
		double wn = sqrt(dot(w, w, l->n_in));
		double c = (xn > 0 && wn > 0) ? dot(w, x, l->n_in) / (xn * wn) : 0.0;
		float s = (float)((c + 1.0) * 0.5);
		s = s * s / l->temperature;
		z[i] = s;
		if (s > smax)
			smax = s;
	}
	/* Subtracting the maximum keeps exp() finite at T = 0.02; a unit more
	 * than 40 below it gets nothing (e^-40 is far below float epsilon). */
	float sum = 0;
	for (uint32_t i = 0; i < l->n_out; i++) {
		float d = z[i] - smax;
		z[i] = d < -40.f ? 0.f : expf(d);
		sum += z[i];
	}
	float inv = 1.f / sum;
	for (uint32_t i = 0; i < l->n_out; i++)
		z[i] *= inv;
}

/* The authors' output: the projection on each unit's direction, rectified. */
static void swta_relu_forward(const struct mead_hebb_layer *l, const float *x, float *y)
{
	for (uint32_t i = 0; i < l->n_out; i++) {
		const float *w = l->w + (size_t)i * l->n_in;
		double wn = sqrt(dot(w, w, l->n_in));
		double v = wn > 0 ? dot(w, x, l->n_in) / wn : 0.0;
		y[i] = v > 0 ? (float)v : 0.f;
	}
}

static void hpca_forward(const struct mead_hebb_layer *l, const float *x, float *y)
{
	for (uint32_t i = 0; i < l->n_out; i++) {
		double v = dot(l->w + (size_t)i * l->n_in, x, l->n_in);
		y[i] = v > 0 ? (float)v : 0.f;
	}
}

void mead_hebb_layer_forward(const struct mead_hebb_layer *l, const float *x, float *y)
{
	switch (l->kind) {
	case MEAD_LAYER_NONE:
		memcpy(y, x, l->n_in * sizeof(float));
		break;
	case MEAD_LAYER_SWTA:
		swta_relu_forward(l, x, y);
		break;
	case MEAD_LAYER_SWTA_SOFTMAX:
		swta_forward(l, x, y);
		break;
	case MEAD_LAYER_HPCA:
		hpca_forward(l, x, y);
		break;
	}
}

void mead_hebb_layer_learn(struct mead_hebb_layer *l, const float *x, float eta)
{
	uint32_t n = l->n_in;
	if (l->kind == MEAD_LAYER_SWTA || l->kind == MEAD_LAYER_SWTA_SOFTMAX) {
		swta_forward(l, x, l->y);
		for (uint32_t i = 0; i < l->n_out; i++) {
			float g = eta * l->y[i];
			/* Most units get a negligible share at T = 0.02. */
			if (g < 1e-9f)
				continue;
			float *w = l->w + (size_t)i * n;
			for (uint32_t k = 0; k < n; k++)
				w[k] += g * (x[k] - w[k]);
		}
	} else if (l->kind == MEAD_LAYER_HPCA) {
		/* Sanger's rule with the outputs taken before the update:
		 * scratch accumulates sum_{j<=i} y_j w_j as i grows. */
		hpca_forward(l, x, l->y);
		memset(l->scratch, 0, n * sizeof(float));
		for (uint32_t i = 0; i < l->n_out; i++) {
			float *w = l->w + (size_t)i * n;
			float yi = l->y[i];
			if (yi == 0.f)
				continue;
			for (uint32_t k = 0; k < n; k++)
				l->scratch[k] += yi * w[k];
			float g = eta * yi;
			for (uint32_t k = 0; k < n; k++)
				w[k] += g * (x[k] - l->scratch[k]);
		}
	}
}

int mead_clf_kind_parse(const char *s)
{
	if (strcmp(s, "lms") == 0 || strcmp(s, "delta") == 0)
		return MEAD_CLF_LMS;
	if (strcmp(s, "proto") == 0)
		return MEAD_CLF_PROTO;
	if (strcmp(s, "hebbian") == 0)
		return MEAD_CLF_HEBBIAN;
	return -EINVAL;
}

const char *mead_clf_kind_name(enum mead_clf_kind k)
{
	switch (k) {
	case MEAD_CLF_LMS: return "lms";
	case MEAD_CLF_PROTO: return "proto";
	case MEAD_CLF_HEBBIAN: return "hebbian";
	}
	return "?";
}

struct mead_hebb_clf {
	enum mead_clf_kind kind;
	uint32_t n_in, n_classes;
	float *w;   /* n_classes x (n_in + 1) */
	float *out; /* n_classes */
};

int mead_hebb_clf_new(enum mead_clf_kind kind, uint32_t n_in, uint32_t n_classes,
		      struct mead_hebb_clf **ret)
{
	if (n_in == 0 || n_classes < 2 || (kind != MEAD_CLF_LMS && kind != MEAD_CLF_PROTO && kind != MEAD_CLF_HEBBIAN))
		return -EINVAL;
	struct mead_hebb_clf *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->kind = kind;
	c->n_in = n_in;
	c->n_classes = n_classes;
	c->w = calloc((size_t)n_classes * (n_in + 1), sizeof(float));
	c->out = calloc(n_classes, sizeof(float));
	if (!c->w || !c->out) {
		mead_hebb_clf_free(c);
		return -ENOMEM;
	}
	*ret = c;
	return 0;
}

void mead_hebb_clf_free(struct mead_hebb_clf *c)
{
	if (!c)
		return;
	free(c->w);
	free(c->out);
	free(c);
}

enum mead_clf_kind mead_hebb_clf_kind(const struct mead_hebb_clf *c) { return c->kind; }
uint32_t mead_hebb_clf_n_in(const struct mead_hebb_clf *c) { return c->n_in; }
uint32_t mead_hebb_clf_n_classes(const struct mead_hebb_clf *c) { return c->n_classes; }
float *mead_hebb_clf_weights(struct mead_hebb_clf *c) { return c->w; }

void mead_hebb_clf_reset(struct mead_hebb_clf *c)
{
	memset(c->w, 0, (size_t)c->n_classes * (c->n_in + 1) * sizeof(float));
}

static void clf_scores(const struct mead_hebb_clf *c, const float *y, float *out)
{
	uint32_t n = c->n_in, stride = n + 1;
	double yn = c->kind == MEAD_CLF_PROTO ? sqrt(dot(y, y, n)) : 1.0;
	for (uint32_t k = 0; k < c->n_classes; k++) {
		const float *w = c->w + (size_t)k * stride;
		if (c->kind == MEAD_CLF_LMS) {
			out[k] = (float)(dot(w, y, n) + w[n]);
		} else if (c->kind == MEAD_CLF_HEBBIAN) {
			out[k] = (float)dot(w, y, n);
		} else {
			double wn = sqrt(dot(w, w, n));
			out[k] = (wn > 0 && yn > 0) ? (float)(dot(w, y, n) / (wn * yn)) : 0.f;
		}
	}
}

uint32_t mead_hebb_clf_predict(const struct mead_hebb_clf *c, const float *y, float *out)
{
	float *o = out ? out : c->out;
	clf_scores(c, y, o);
	uint32_t best = 0;
	for (uint32_t k = 1; k < c->n_classes; k++)
		if (o[k] > o[best])
			best = k;
	return best;
}

void mead_hebb_clf_learn(struct mead_hebb_clf *c, const float *y, uint32_t label, float eta)
{
	if (label >= c->n_classes)
		return;
	uint32_t n = c->n_in, stride = n + 1;
	if (c->kind == MEAD_CLF_PROTO || c->kind == MEAD_CLF_HEBBIAN) {
		float *w = c->w + (size_t)label * stride;
		for (uint32_t k = 0; k < n; k++)
			w[k] += eta * (y[k] - w[k]);
		return;
	}
	clf_scores(c, y, c->out);
	for (uint32_t k = 0; k < c->n_classes; k++) {
		float err = (k == label ? 1.f : 0.f) - c->out[k];
		float g = eta * err;
		float *w = c->w + (size_t)k * stride;
		for (uint32_t i = 0; i < n; i++)
			w[i] += g * y[i];
		w[n] += g;
	}
}

int mead_norm_parse(const char *s)
{
	if (strcmp(s, "none") == 0)
		return MEAD_NORM_NONE;
	if (strcmp(s, "l2") == 0)
		return MEAD_NORM_L2;
	if (strcmp(s, "max") == 0)
		return MEAD_NORM_MAX;
	if (strcmp(s, "sum") == 0)
		return MEAD_NORM_SUM;
	return -EINVAL;
}

const char *mead_norm_name(enum mead_norm n)
{
	switch (n) {
	case MEAD_NORM_NONE: return "none";
	case MEAD_NORM_L2: return "l2";
	case MEAD_NORM_MAX: return "max";
	case MEAD_NORM_SUM: return "sum";
	}
	return "?";
}

void mead_normalise(float *x, uint32_t n, enum mead_norm how)
{
	double d = 0;
	switch (how) {
	case MEAD_NORM_NONE:
		return;
	case MEAD_NORM_L2:
		d = sqrt(dot(x, x, n));
		break;
	case MEAD_NORM_MAX:
		for (uint32_t k = 0; k < n; k++)
			if (fabs(x[k]) > d)
				d = fabs(x[k]);
		break;
	case MEAD_NORM_SUM:
		for (uint32_t k = 0; k < n; k++)
			d += fabs(x[k]);
		break;
	}
	if (d <= 0)
		return;
	float inv = (float)(1.0 / d);
	for (uint32_t k = 0; k < n; k++)
		x[k] *= inv;
}

int mead_transform_parse(const char *s)
{
	if (strcmp(s, "none") == 0)
		return MEAD_TRANSFORM_NONE;
	if (strcmp(s, "sqrt") == 0)
		return MEAD_TRANSFORM_SQRT;
	return -EINVAL;
}

const char *mead_transform_name(enum mead_transform t)
{
	switch (t) {
	case MEAD_TRANSFORM_NONE: return "none";
	case MEAD_TRANSFORM_SQRT: return "sqrt";
	}
	return "?";
}

void mead_transform_apply(float *x, uint32_t n, enum mead_transform how)
{
	if (how != MEAD_TRANSFORM_SQRT)
		return;
	for (uint32_t k = 0; k < n; k++)
		x[k] = x[k] > 0 ? sqrtf(x[k]) : 0.0f;
}
