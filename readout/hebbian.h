/* SPDX-License-Identifier: MIT */
/*
 * Hebbian learning for mead-readout: unsupervised feature layers (soft
 * winner-takes-all, Hebbian PCA) and a supervised Hebbian classifier.
 * Pure computation: no I/O, no global state, deterministic for a given seed.
 * See docs/readout.md for the rules.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Small seeded generator (lib/core's splitmix64 as the stream): the
 * readout's results must not depend on the C library's rand().  Not
 * lib/core's xoshiro mead_rng: the readout's figures come from this
 * stream, and a seed must keep giving them. */
struct mead_hrng {
	uint64_t s;
};
void mead_hrng_seed(struct mead_hrng *r, uint64_t seed);
uint64_t mead_hrng_next(struct mead_hrng *r);
double mead_hrng_uniform(struct mead_hrng *r);          /* [0, 1) */
double mead_hrng_normal(struct mead_hrng *r);           /* N(0, 1) */
uint32_t mead_hrng_below(struct mead_hrng *r, uint32_t n); /* [0, n), n > 0 */
void mead_hrng_shuffle(struct mead_hrng *r, uint32_t *v, uint32_t n);

enum mead_layer_kind {
	MEAD_LAYER_NONE = 0, /* identity: the classifier sees the input itself */
	MEAD_LAYER_SWTA = 1,
	MEAD_LAYER_HPCA = 2,
	/* SWTA's learning with the soft competition z as the output (what
	 * "swta" gave before it followed the authors) */
	MEAD_LAYER_SWTA_SOFTMAX = 3,
};

/* Returns the kind for "none"/"swta"/"hpca"/"swta-softmax", or -EINVAL. */
int mead_layer_kind_parse(const char *s);
const char *mead_layer_kind_name(enum mead_layer_kind k);

#define MEAD_SWTA_DEFAULT_TEMPERATURE 0.02f

struct mead_hebb_layer;

/* n_out is ignored (set to n_in) for MEAD_LAYER_NONE.  Weights start as
 * unit-norm random vectors drawn from seed. */
int mead_hebb_layer_new(enum mead_layer_kind kind, uint32_t n_in, uint32_t n_out, uint64_t seed,
			struct mead_hebb_layer **ret);
void mead_hebb_layer_free(struct mead_hebb_layer *l);

enum mead_layer_kind mead_hebb_layer_kind(const struct mead_hebb_layer *l);
uint32_t mead_hebb_layer_n_in(const struct mead_hebb_layer *l);
uint32_t mead_hebb_layer_n_out(const struct mead_hebb_layer *l);
void mead_hebb_layer_set_temperature(struct mead_hebb_layer *l, float t);
float mead_hebb_layer_temperature(const struct mead_hebb_layer *l);

/* Row-major n_out x n_in; NULL for MEAD_LAYER_NONE.  Writable so that saved
 * state can be restored. */
float *mead_hebb_layer_weights(struct mead_hebb_layer *l);

/* SWTA only: start each prototype at a sample drawn (seeded) from the
 * n x n_in rows of x, so no unit starts out of reach of the data. */
void mead_hebb_layer_init_from_samples(struct mead_hebb_layer *l, const float *x, uint32_t n,
				       uint64_t seed);

/* y: n_out values.  SWTA: y_i = relu(w_i . x / |w_i|), the competition
 * only in learning.  SWTA_SOFTMAX: z = softmax(s / T),
 * s_i = ((cos(w_i, x) + 1) / 2)^2.  HPCA: y_i = relu(w_i . x).  NONE: y = x. */
void mead_hebb_layer_forward(const struct mead_hebb_layer *l, const float *x, float *y);

/* One unsupervised step on x with rate eta.  SWTA (both): dw_i = eta z_i (x - w_i).
 * HPCA: dw_i = eta y_i (x - sum_{j<=i} y_j w_j).  NONE: nothing. */
void mead_hebb_layer_learn(struct mead_hebb_layer *l, const float *x, float eta);

enum mead_clf_kind {
	/* The LMS (Widrow-Hoff, delta) rule, error-driven: o_c = w_c . [y, 1];
	 * dw_c = eta (t_c - o_c) [y, 1], t one-hot.  "delta" is its old name. */
	MEAD_CLF_LMS = 0,
	/* dw_c = eta t_c (y - w_c): each class weight vector moves to its
	 * class's mean; o_c = cos(w_c, y). */
	MEAD_CLF_PROTO = 1,
	/* The authors' supervised Hebbian rule: the same update, prediction
	 * by projection, o_c = w_c . y. */
	MEAD_CLF_HEBBIAN = 2,
};
int mead_clf_kind_parse(const char *s);
const char *mead_clf_kind_name(enum mead_clf_kind k);

struct mead_hebb_clf;

int mead_hebb_clf_new(enum mead_clf_kind kind, uint32_t n_in, uint32_t n_classes,
		      struct mead_hebb_clf **ret);
void mead_hebb_clf_free(struct mead_hebb_clf *c);
enum mead_clf_kind mead_hebb_clf_kind(const struct mead_hebb_clf *c);
uint32_t mead_hebb_clf_n_in(const struct mead_hebb_clf *c);
uint32_t mead_hebb_clf_n_classes(const struct mead_hebb_clf *c);
/* n_classes x (n_in + 1): the last column is the bias (LMS only). */
float *mead_hebb_clf_weights(struct mead_hebb_clf *c);
void mead_hebb_clf_reset(struct mead_hebb_clf *c);

/* Scores for each class into out (n_classes); returns the argmax (lowest
 * index on ties). */
uint32_t mead_hebb_clf_predict(const struct mead_hebb_clf *c, const float *y, float *out);
/* One supervised step toward class label (< n_classes). */
void mead_hebb_clf_learn(struct mead_hebb_clf *c, const float *y, uint32_t label, float eta);

enum mead_norm {
	MEAD_NORM_NONE = 0,
	MEAD_NORM_L2 = 1,  /* x / ||x||_2 */
	MEAD_NORM_MAX = 2, /* x / max(x) */
	MEAD_NORM_SUM = 3, /* x / sum(x) */
};
int mead_norm_parse(const char *s);
const char *mead_norm_name(enum mead_norm n);
/* In place; a zero vector stays zero. */
void mead_normalise(float *x, uint32_t n, enum mead_norm how);

/* Applied to a trial's features before normalisation.  Spike counts are
 * Poisson-like: their variance grows with their mean, so a busy electrode's
 * noise swamps a quiet one's signal; the square root makes the variance
 * about equal (Anscombe) and lets a linear readout weigh them alike. */
enum mead_transform {
	MEAD_TRANSFORM_NONE = 0,
	MEAD_TRANSFORM_SQRT = 1, /* sqrt(max(x, 0)) */
};
int mead_transform_parse(const char *s);
const char *mead_transform_name(enum mead_transform t);
/* In place. */
void mead_transform_apply(float *x, uint32_t n, enum mead_transform how);
