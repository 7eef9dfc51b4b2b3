/* SPDX-License-Identifier: MIT */
#include "readout/model.h"

#include <endian.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void mead_model_options_default(struct mead_model_options *o)
{
	*o = (struct mead_model_options){
		.layer = MEAD_LAYER_SWTA,
		.units = 64,
		.temperature = MEAD_SWTA_DEFAULT_TEMPERATURE,
		.eta_layer = 0.05f,
		.layer_epochs = 10,
		.clf = MEAD_CLF_LMS,
		.eta = 0.05f,
		.epochs = 20,
		.transform = MEAD_TRANSFORM_NONE,
		.norm = MEAD_NORM_L2,
		.center = false,
		.seed = 1,
		.n_classes = 2,
	};
}

struct mead_model {
	struct mead_model_options o;
	uint32_t n_in;
	struct mead_hebb_layer *layer;
	struct mead_hebb_clf *clf;
	float *mean;       /* n_in */
	float *xbuf;       /* n_in */
	float *ybuf;       /* layer outputs */
	float *x;          /* stored samples, n x n_in */
	int32_t *labels;
	uint32_t n, cap, n_labelled;
	bool trained, restored, stale;
};

static int build(struct mead_model *m)
{
	int r = mead_hebb_layer_new(m->o.layer, m->n_in, m->o.units, m->o.seed, &m->layer);
	if (r < 0)
		return r;
	mead_hebb_layer_set_temperature(m->layer, m->o.temperature);
	uint32_t n_out = mead_hebb_layer_n_out(m->layer);
	r = mead_hebb_clf_new(m->o.clf, n_out, m->o.n_classes, &m->clf);
	if (r < 0)
		return r;
	m->mean = calloc(m->n_in, sizeof(float));
	m->xbuf = calloc(m->n_in, sizeof(float));
	m->ybuf = calloc(n_out, sizeof(float));
	if (!m->mean || !m->xbuf || !m->ybuf)
		return -ENOMEM;
	return 0;
}

int mead_model_new(const struct mead_model_options *o, uint32_t n_in, struct mead_model **ret)
{
	if (n_in == 0 || o->n_classes < 2)
		return -EINVAL;
	struct mead_model *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->o = *o;
	m->n_in = n_in;
	int r = build(m);
	if (r < 0) {
		mead_model_free(m);
		return r;
	}
	*ret = m;
	return 0;
}

void mead_model_free(struct mead_model *m)
{
	if (!m)
		return;
	mead_hebb_layer_free(m->layer);
	mead_hebb_clf_free(m->clf);
	free(m->mean);
	free(m->xbuf);
	free(m->ybuf);
	free(m->x);
	free(m->labels);
	free(m);
}

uint32_t mead_model_n_in(const struct mead_model *m) { return m->n_in; }
uint32_t mead_model_n_train(const struct mead_model *m) { return m->n; }
uint32_t mead_model_n_labelled(const struct mead_model *m) { return m->n_labelled; }
bool mead_model_trained(const struct mead_model *m) { return m->trained; }
bool mead_model_stale(const struct mead_model *m) { return m->stale; }

int mead_model_add(struct mead_model *m, const float *x, int32_t label)
{
	if (m->n == m->cap) {
		uint32_t cap = m->cap ? m->cap * 2 : 1024;
		float *nx = realloc(m->x, (size_t)cap * m->n_in * sizeof(float));
		if (!nx)
			return -ENOMEM;
		m->x = nx;
		int32_t *nl = realloc(m->labels, (size_t)cap * sizeof(int32_t));
		if (!nl)
			return -ENOMEM;
		m->labels = nl;
		m->cap = cap;
	}
	float *dst = m->x + (size_t)m->n * m->n_in;
	memcpy(dst, x, m->n_in * sizeof(float));
	mead_transform_apply(dst, m->n_in, m->o.transform);
	mead_normalise(dst, m->n_in, m->o.norm);
	if (label >= (int32_t)m->o.n_classes)
		label = -1;
	m->labels[m->n] = label;
	if (label >= 0)
		m->n_labelled++;
	m->n++;
	m->stale = true;
	return 0;
}

void mead_model_clear(struct mead_model *m)
{
	m->n = 0;
	m->n_labelled = 0;
	m->stale = true;
}

/* Normalised (already) sample -> centred copy in m->xbuf. */
static const float *centred(struct mead_model *m, const float *x)
{
	if (!m->o.center)
		return x;
	for (uint32_t k = 0; k < m->n_in; k++)
		m->xbuf[k] = x[k] - m->mean[k];
	return m->xbuf;
}

/* SWTA's projections are each up to |x|: over many units their sum of
 * squares outgrows what LMS can take (stable only while eta |y|^2 < 2), so
 * the classifier sees them L2-normalised.  The soft-max output sums to 1. */
static void layer_out(const struct mead_model *m, const float *x, float *y)
{
	mead_hebb_layer_forward(m->layer, x, y);
	if (m->o.layer == MEAD_LAYER_SWTA)
		mead_normalise(y, mead_hebb_layer_n_out(m->layer), MEAD_NORM_L2);
}

int mead_model_fit(struct mead_model *m)
{
	if (m->n == 0)
		return -EAGAIN;
	if (!m->restored) {
		/* The same seed and samples give the same model whenever fitted. */
		struct mead_hebb_layer *l = NULL;
		int r = mead_hebb_layer_new(m->o.layer, m->n_in, m->o.units, m->o.seed, &l);
		if (r < 0)
			return r;
		mead_hebb_layer_set_temperature(l, m->o.temperature);
		mead_hebb_layer_free(m->layer);
		m->layer = l;
		mead_hebb_clf_reset(m->clf);
		if (m->o.center) {
			double *acc = calloc(m->n_in, sizeof(double));
			if (!acc)
				return -ENOMEM;
			for (uint32_t i = 0; i < m->n; i++)
				for (uint32_t k = 0; k < m->n_in; k++)
					acc[k] += m->x[(size_t)i * m->n_in + k];
			for (uint32_t k = 0; k < m->n_in; k++)
				m->mean[k] = (float)(acc[k] / m->n);
			free(acc);
		}
	}
	uint32_t *order = malloc((size_t)m->n * sizeof(uint32_t));
	if (!order)
		return -ENOMEM;
	struct mead_hrng rng;
	mead_hrng_seed(&rng, m->o.seed * 0x9e3779b97f4a7c15ull + 17);

	if ((m->o.layer == MEAD_LAYER_SWTA || m->o.layer == MEAD_LAYER_SWTA_SOFTMAX) && !m->restored) {
		/* Prototypes start on (centred) samples. */
		float *init = malloc((size_t)m->n * m->n_in * sizeof(float));
		if (!init) {
			free(order);
			return -ENOMEM;
		}
		for (uint32_t i = 0; i < m->n; i++)
			memcpy(init + (size_t)i * m->n_in, centred(m, m->x + (size_t)i * m->n_in),
			       m->n_in * sizeof(float));
		mead_hebb_layer_init_from_samples(m->layer, init, m->n, m->o.seed);
		free(init);
	}
	if (m->o.layer != MEAD_LAYER_NONE) {
		for (uint32_t e = 0; e < m->o.layer_epochs; e++) {
			/* Rate falls linearly to a tenth so the weights settle. */
			float eta = m->o.eta_layer *
				    (1.0f - 0.9f * (float)e / (float)(m->o.layer_epochs > 1 ? m->o.layer_epochs - 1 : 1));
			for (uint32_t i = 0; i < m->n; i++)
				order[i] = i;
			mead_hrng_shuffle(&rng, order, m->n);
			for (uint32_t i = 0; i < m->n; i++)
				mead_hebb_layer_learn(m->layer, centred(m, m->x + (size_t)order[i] * m->n_in), eta);
		}
	}

	uint32_t n_out = mead_hebb_layer_n_out(m->layer);
	uint32_t nl = 0;
	float *y = malloc(((size_t)m->n_labelled + 1) * n_out * sizeof(float));
	uint32_t *ly = malloc(((size_t)m->n_labelled + 1) * sizeof(uint32_t));
	if (!y || !ly) {
		free(order);
		free(y);
		free(ly);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < m->n; i++) {
		if (m->labels[i] < 0)
			continue;
		layer_out(m, centred(m, m->x + (size_t)i * m->n_in), y + (size_t)nl * n_out);
		ly[nl++] = (uint32_t)m->labels[i];
	}
	for (uint32_t e = 0; e < m->o.epochs && nl > 0; e++) {
		float eta = m->o.eta * (1.0f - 0.9f * (float)e / (float)(m->o.epochs > 1 ? m->o.epochs - 1 : 1));
		for (uint32_t i = 0; i < nl; i++)
			order[i] = i;
		mead_hrng_shuffle(&rng, order, nl);
		for (uint32_t i = 0; i < nl; i++)
			mead_hebb_clf_learn(m->clf, y + (size_t)order[i] * n_out, ly[order[i]], eta);
	}
	free(order);
	free(y);
	free(ly);
	m->trained = nl > 0 || m->restored;
	m->stale = false;
	return m->trained ? 0 : -EAGAIN;
}

int mead_model_predict(struct mead_model *m, const float *x, float *scores)
{
	if (!m->trained)
		return -EAGAIN;
	float tmp[1024];
	float *xn = m->n_in <= 1024 ? tmp : NULL;
	if (!xn)
		return -E2BIG;
	memcpy(xn, x, m->n_in * sizeof(float));
	mead_transform_apply(xn, m->n_in, m->o.transform);
	mead_normalise(xn, m->n_in, m->o.norm);
	layer_out(m, centred(m, xn), m->ybuf);
	return (int)mead_hebb_clf_predict(m->clf, m->ybuf, scores);
}

/* ---- Saved state -------------------------------------------------------- */

#define MODEL_MAGIC "MEADRDM1"
/* 2 added the transform; a version 1 file has none. */
#define MODEL_VERSION 2u

static int put_u32(FILE *f, uint32_t v)
{
	v = htole32(v);
	return fwrite(&v, 4, 1, f) == 1 ? 0 : -EIO;
}

static int put_f32s(FILE *f, const float *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, &v[i], 4);
		if (put_u32(f, u) < 0)
			return -EIO;
	}
	return 0;
}

static int get_u32(FILE *f, uint32_t *v)
{
	uint32_t u;
	if (fread(&u, 4, 1, f) != 1)
		return -EIO;
	*v = le32toh(u);
	return 0;
}

static int get_f32s(FILE *f, float *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t u;
		if (get_u32(f, &u) < 0)
			return -EIO;
		memcpy(&v[i], &u, 4);
		if (!isfinite(v[i]))
			return -EINVAL;
	}
	return 0;
}

int mead_model_write(const struct mead_model *m, FILE *f)
{
	uint32_t n_out = mead_hebb_layer_n_out(m->layer);
	uint32_t tbits;
	memcpy(&tbits, &m->o.temperature, 4);
	if (fwrite(MODEL_MAGIC, 8, 1, f) != 1 || put_u32(f, MODEL_VERSION) < 0 ||
	    put_u32(f, m->n_in) < 0 || put_u32(f, (uint32_t)m->o.layer) < 0 || put_u32(f, n_out) < 0 ||
	    put_u32(f, tbits) < 0 || put_u32(f, (uint32_t)m->o.clf) < 0 ||
	    put_u32(f, m->o.n_classes) < 0 || put_u32(f, (uint32_t)m->o.norm) < 0 ||
	    put_u32(f, m->o.center ? 1u : 0u) < 0 || put_u32(f, m->trained ? 1u : 0u) < 0 ||
	    put_u32(f, (uint32_t)m->o.transform) < 0)
		return -EIO;
	if (put_f32s(f, m->mean, m->n_in) < 0)
		return -EIO;
	if (m->o.layer != MEAD_LAYER_NONE &&
	    put_f32s(f, mead_hebb_layer_weights(m->layer), (size_t)n_out * m->n_in) < 0)
		return -EIO;
	return put_f32s(f, mead_hebb_clf_weights(m->clf), (size_t)m->o.n_classes * (n_out + 1));
}

int mead_model_read(FILE *f, const struct mead_model_options *o, struct mead_model **ret)
{
	char magic[8];
	uint32_t version, n_in, layer, n_out, tbits, clf, n_classes, norm, center, trained, transform = 0;
	if (fread(magic, 8, 1, f) != 1 || memcmp(magic, MODEL_MAGIC, 8) != 0)
		return -EINVAL;
	if (get_u32(f, &version) < 0 || version < 1 || version > MODEL_VERSION)
		return -EPROTO;
	if (get_u32(f, &n_in) < 0 || get_u32(f, &layer) < 0 || get_u32(f, &n_out) < 0 ||
	    get_u32(f, &tbits) < 0 || get_u32(f, &clf) < 0 || get_u32(f, &n_classes) < 0 ||
	    get_u32(f, &norm) < 0 || get_u32(f, &center) < 0 || get_u32(f, &trained) < 0 ||
	    (version >= 2 && get_u32(f, &transform) < 0))
		return -EIO;
	if (n_in == 0 || n_in > 1024 || layer > MEAD_LAYER_SWTA_SOFTMAX || n_out == 0 || n_out > 65536 ||
	    clf > MEAD_CLF_HEBBIAN || n_classes < 2 || n_classes > 1024 || norm > MEAD_NORM_SUM ||
	    transform > MEAD_TRANSFORM_SQRT)
		return -EINVAL;
	struct mead_model_options mo = *o;
	mo.layer = (enum mead_layer_kind)layer;
	mo.units = n_out;
	memcpy(&mo.temperature, &tbits, 4);
	if (!(mo.temperature > 0))
		return -EINVAL;
	mo.clf = (enum mead_clf_kind)clf;
	mo.n_classes = n_classes;
	mo.norm = (enum mead_norm)norm;
	mo.transform = (enum mead_transform)transform;
	mo.center = center != 0;
	struct mead_model *m;
	int r = mead_model_new(&mo, n_in, &m);
	if (r < 0)
		return r;
	uint32_t lo = mead_hebb_layer_n_out(m->layer);
	if ((r = get_f32s(f, m->mean, n_in)) < 0 ||
	    (mo.layer != MEAD_LAYER_NONE &&
	     (r = get_f32s(f, mead_hebb_layer_weights(m->layer), (size_t)lo * n_in)) < 0) ||
	    (r = get_f32s(f, mead_hebb_clf_weights(m->clf), (size_t)n_classes * (lo + 1))) < 0) {
		mead_model_free(m);
		return r;
	}
	m->restored = true;
	m->trained = trained != 0;
	*ret = m;
	return 0;
}
