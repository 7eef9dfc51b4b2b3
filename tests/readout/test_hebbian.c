/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "readout/hebbian.h"
#include "readout/model.h"

static double cosine(const float *a, const double *b, uint32_t n)
{
	double ab = 0, aa = 0, bb = 0;
	for (uint32_t k = 0; k < n; k++) {
		ab += a[k] * b[k];
		aa += (double)a[k] * a[k];
		bb += b[k] * b[k];
	}
	return ab / sqrt(aa * bb);
}

/* Three well separated clusters in the positive orthant: every prototype
 * must end near one centre, and every centre must have its prototype. */
static void test_swta_prototypes_find_cluster_centres(void **state)
{
	(void)state;
	enum { D = 8, K = 3, N = 600 };
	static const float centres[K][D] = {
		{1, 1, 1, 0, 0, 0, 0, 0},
		{0, 0, 0, 1, 1, 1, 0, 0},
		{0, 0, 0, 0, 0, 1, 1, 1},
	};
	static float x[N][D];
	struct mead_hrng r;
	mead_hrng_seed(&r, 7);
	for (int i = 0; i < N; i++)
		for (int k = 0; k < D; k++)
			x[i][k] = centres[i % K][k] + 0.05f * (float)mead_hrng_normal(&r);

	struct mead_hebb_layer *l;
	assert_int_equal(mead_hebb_layer_new(MEAD_LAYER_SWTA, D, K, 3, &l), 0);
	assert_int_equal(mead_hebb_layer_n_out(l), K);
	/* Prototypes start on three distinct samples, whichever clusters
	 * they come from: competition has to move them apart. */
	mead_hebb_layer_init_from_samples(l, &x[0][0], N, 1);
	for (int e = 0; e < 20; e++)
		for (int i = 0; i < N; i++)
			mead_hebb_layer_learn(l, x[(i * 7919) % N], 0.05f);

	const float *w = mead_hebb_layer_weights(l);
	bool covered[K] = {false};
	for (int u = 0; u < K; u++) {
		int best = -1;
		double best_d = 1e9;
		for (int c = 0; c < K; c++) {
			double d = 0;
			for (int k = 0; k < D; k++)
				d += pow(w[u * D + k] - centres[c][k], 2);
			d = sqrt(d);
			if (d < best_d) {
				best_d = d;
				best = c;
			}
		}
		if (getenv("DBG")) fprintf(stderr, "unit %d best %d d %f\n", u, best, best_d);
		assert_true(best_d < 0.1);
		covered[best] = true;
	}
	for (int c = 0; c < K; c++)
		assert_true(covered[c]);

	/* The authors' output: each unit's projection relu(w . x / |w|),
	 * the competition only in learning. */
	float y[K];
	mead_hebb_layer_forward(l, centres[1], y);
	for (int u = 0; u < K; u++) {
		double d = 0, n2 = 0;
		for (int k = 0; k < D; k++) {
			d += (double)w[u * D + k] * centres[1][k];
			n2 += (double)w[u * D + k] * w[u * D + k];
		}
		double want = d > 0 ? d / sqrt(n2) : 0;
		assert_float_equal(y[u], (float)want, 1e-5);
	}
	/* swta-softmax: the same learning, the soft competition z as the
	 * output; at T = 0.02 a point at a centre belongs to its unit. */
	struct mead_hebb_layer *ls;
	assert_int_equal(mead_hebb_layer_new(MEAD_LAYER_SWTA_SOFTMAX, D, K, 3, &ls), 0);
	memcpy(mead_hebb_layer_weights(ls), w, sizeof(float) * K * D);
	float z[K];
	mead_hebb_layer_forward(ls, centres[1], z);
	mead_hebb_layer_free(ls);
	float sum = 0, mx = 0;
	for (int u = 0; u < K; u++) {
		sum += z[u];
		if (z[u] > mx)
			mx = z[u];
	}
	assert_true(fabsf(sum - 1.f) < 1e-4f);
	assert_true(mx > 0.99f);
	mead_hebb_layer_free(l);
}

/* Anisotropic zero-mean Gaussian.  The first HPCA unit must align with the
 * top principal direction.  With the relu, a unit only learns from the half
 * of the data on its positive side, so the next unit takes the other half
 * of the same axis: on symmetric data the units come in +/- pairs, u1 then
 * u2. */
static void test_hpca_finds_principal_directions(void **state)
{
	(void)state;
	enum { D = 5, N = 4000, U = 4 };
	/* Principal axes: u1 = (1,1,0,0,0)/sqrt2 (sd 3), u2 = (0,0,1,0,0) (sd 1.5),
	 * the rest sd 0.3. */
	double u1[D] = {M_SQRT1_2, M_SQRT1_2, 0, 0, 0};
	double u2[D] = {0, 0, 1, 0, 0};
	double u3[D] = {M_SQRT1_2, -M_SQRT1_2, 0, 0, 0};
	static float x[N][D];
	struct mead_hrng r;
	mead_hrng_seed(&r, 11);
	for (int i = 0; i < N; i++) {
		double a = 3.0 * mead_hrng_normal(&r), b = 1.5 * mead_hrng_normal(&r);
		double c = 0.3 * mead_hrng_normal(&r), d = 0.3 * mead_hrng_normal(&r),
		       e = 0.3 * mead_hrng_normal(&r);
		for (int k = 0; k < D; k++)
			x[i][k] = (float)(a * u1[k] + b * u2[k] + c * u3[k]);
		x[i][3] += (float)d;
		x[i][4] += (float)e;
	}
	for (uint64_t seed = 1; seed <= 3; seed++) {
		struct mead_hebb_layer *l;
		assert_int_equal(mead_hebb_layer_new(MEAD_LAYER_HPCA, D, U, seed, &l), 0);
		for (int ep = 0; ep < 10; ep++)
			for (int i = 0; i < N; i++)
				mead_hebb_layer_learn(l, x[i], ep < 5 ? 0.002f : 0.0005f);
		const float *w = mead_hebb_layer_weights(l);
		double c[U][2];
		for (int u = 0; u < U; u++) {
			c[u][0] = cosine(w + u * D, u1, D);
			c[u][1] = cosine(w + u * D, u2, D);
			if (getenv("DBG"))
				fprintf(stderr, "seed %d unit %d: cos u1 %f u2 %f\n", (int)seed, u, c[u][0], c[u][1]);
		}
		assert_true(fabs(c[0][0]) > 0.98);
		assert_true(c[0][0] * c[1][0] < -0.98 * 0.98);
		assert_true(fabs(c[2][1]) > 0.95);
		assert_true(c[2][1] * c[3][1] < -0.95 * 0.95);
		/* Oja-type rule: weight vectors settle near unit norm. */
		for (int u = 0; u < U; u++) {
			double n2 = 0;
			for (int k = 0; k < D; k++)
				n2 += (double)w[u * D + k] * w[u * D + k];
			assert_true(fabs(sqrt(n2) - 1.0) < 0.1);
		}
		/* relu: a point opposite the first unit's direction gives 0. */
		float y[U], p[D];
		for (int k = 0; k < D; k++)
			p[k] = -w[k];
		mead_hebb_layer_forward(l, p, y);
		assert_true(y[0] == 0.f);
		assert_true(y[1] > 0.9f);
		mead_hebb_layer_free(l);
	}
}

static void make_two_classes(float (*x)[6], int *lab, int n, uint64_t seed)
{
	struct mead_hrng r;
	mead_hrng_seed(&r, seed);
	for (int i = 0; i < n; i++) {
		lab[i] = i % 2;
		for (int k = 0; k < 6; k++) {
			float base = (lab[i] == 0) == (k < 3) ? 1.0f : 0.2f;
			x[i][k] = base + 0.15f * (float)mead_hrng_normal(&r);
		}
	}
}

static void check_classifier(enum mead_clf_kind kind)
{
	enum { N = 400 };
	static float x[N][6], xt[N][6];
	static int lab[N], labt[N];
	make_two_classes(x, lab, N, 21);
	make_two_classes(xt, labt, N, 22);
	struct mead_hebb_clf *c;
	assert_int_equal(mead_hebb_clf_new(kind, 6, 2, &c), 0);
	/* Untrained: nothing learnt yet, so no better than a constant. */
	int ok0 = 0;
	for (int i = 0; i < N; i++)
		ok0 += (int)mead_hebb_clf_predict(c, xt[i], NULL) == labt[i];
	assert_int_equal(ok0, N / 2);
	for (int e = 0; e < 10; e++)
		for (int i = 0; i < N; i++)
			mead_hebb_clf_learn(c, x[i], (uint32_t)lab[i], 0.05f);
	int ok = 0;
	for (int i = 0; i < N; i++)
		ok += (int)mead_hebb_clf_predict(c, xt[i], NULL) == labt[i];
	assert_true(ok >= N * 98 / 100);
	mead_hebb_clf_free(c);
}

static void test_lms_classifier_separates_two_classes(void **state)
{
	(void)state;
	check_classifier(MEAD_CLF_LMS);
	assert_int_equal(mead_clf_kind_parse("delta"), MEAD_CLF_LMS);   /* its old name */
	assert_string_equal(mead_clf_kind_name(MEAD_CLF_LMS), "lms");
}

/* The supervised Hebbian rule: class vectors move to their class's mean
 * (as proto), the score is the projection w_c . y (proto: the cosine). */
static void test_hebbian_classifier(void **state)
{
	(void)state;
	check_classifier(MEAD_CLF_HEBBIAN);
	struct mead_hebb_clf *c;
	assert_int_equal(mead_clf_kind_parse("hebbian"), MEAD_CLF_HEBBIAN);
	assert_int_equal(mead_hebb_clf_new(MEAD_CLF_HEBBIAN, 2, 2, &c), 0);
	const float a[2] = { 1, 0 }, b[2] = { 3, 3 };
	for (int i = 0; i < 200; i++) {
		mead_hebb_clf_learn(c, a, 0, 0.1f);
		mead_hebb_clf_learn(c, b, 1, 0.1f);
	}
	const float *w = mead_hebb_clf_weights(c);
	assert_float_equal(w[0], 1.f, 1e-4);
	assert_float_equal(w[3], 3.f, 1e-4);
	assert_float_equal(w[4], 3.f, 1e-4);
	/* (1, 0.2) is closer in angle to class 0, but projects further on class 1 */
	const float q[2] = { 1, 0.2f };
	float out[2];
	assert_int_equal(mead_hebb_clf_predict(c, q, out), 1);
	assert_float_equal(out[0], 1.f, 1e-3);
	assert_float_equal(out[1], 3.6f, 1e-3);
	mead_hebb_clf_free(c);
	assert_int_equal(mead_hebb_clf_new(MEAD_CLF_PROTO, 2, 2, &c), 0);
	for (int i = 0; i < 200; i++) {
		mead_hebb_clf_learn(c, a, 0, 0.1f);
		mead_hebb_clf_learn(c, b, 1, 0.1f);
	}
	assert_int_equal(mead_hebb_clf_predict(c, q, out), 0);
	mead_hebb_clf_free(c);
}

static void test_proto_classifier_separates_two_classes(void **state)
{
	(void)state;
	check_classifier(MEAD_CLF_PROTO);
}

static void test_normalise(void **state)
{
	(void)state;
	float a[3] = {3, 4, 0};
	mead_normalise(a, 3, MEAD_NORM_L2);
	assert_float_equal(a[0], 0.6f, 1e-6);
	assert_float_equal(a[1], 0.8f, 1e-6);
	float b[3] = {1, 2, 4};
	mead_normalise(b, 3, MEAD_NORM_MAX);
	assert_float_equal(b[2], 1.f, 1e-6);
	assert_float_equal(b[0], 0.25f, 1e-6);
	float c[2] = {0, 0};
	mead_normalise(c, 2, MEAD_NORM_L2);
	assert_true(c[0] == 0 && c[1] == 0);
	assert_int_equal(mead_norm_parse("sum"), MEAD_NORM_SUM);
	assert_true(mead_norm_parse("x") < 0);
	assert_true(mead_layer_kind_parse("hpca") == MEAD_LAYER_HPCA);
	assert_true(mead_layer_kind_parse("pca") < 0);
}

/* The full pipeline learns, the semi-supervised model learns from a few
 * labels, and saved state predicts exactly like the original. */
static void test_model_fit_save_load(void **state)
{
	(void)state;
	enum { N = 400 };
	static float x[N][6], xt[N][6];
	static int lab[N], labt[N];
	make_two_classes(x, lab, N, 31);
	make_two_classes(xt, labt, N, 32);
	for (int kind = 0; kind < 3; kind++) {
		struct mead_model_options o;
		mead_model_options_default(&o);
		o.layer = (enum mead_layer_kind)kind;
		o.units = kind == MEAD_LAYER_HPCA ? 4 : 16;
		o.center = kind == MEAD_LAYER_HPCA;
		struct mead_model *m;
		assert_int_equal(mead_model_new(&o, 6, &m), 0);
		assert_int_equal(mead_model_predict(m, xt[0], NULL), -EAGAIN);
		/* 5% labelled. */
		for (int i = 0; i < N; i++)
			assert_int_equal(mead_model_add(m, x[i], i % 20 == 0 || i % 20 == 1 ? lab[i] : -1), 0);
		assert_int_equal(mead_model_n_labelled(m), N / 10);
		assert_true(mead_model_stale(m));
		assert_int_equal(mead_model_fit(m), 0);
		assert_false(mead_model_stale(m));
		int ok = 0, pred[N];
		for (int i = 0; i < N; i++) {
			pred[i] = mead_model_predict(m, xt[i], NULL);
			ok += pred[i] == labt[i];
		}
		assert_true(ok >= N * 95 / 100);

		FILE *f = tmpfile();
		assert_non_null(f);
		assert_int_equal(mead_model_write(m, f), 0);
		rewind(f);
		struct mead_model *m2;
		struct mead_model_options other;
		mead_model_options_default(&other);
		other.layer = MEAD_LAYER_NONE; /* the file's architecture wins */
		assert_int_equal(mead_model_read(f, &other, &m2), 0);
		fclose(f);
		for (int i = 0; i < N; i++)
			assert_int_equal(mead_model_predict(m2, xt[i], NULL), pred[i]);
		mead_model_free(m2);

		f = tmpfile();
		fwrite("MEADRDM1\x07\0\0\0", 12, 1, f);
		rewind(f);
		assert_true(mead_model_read(f, &other, &m2) < 0);
		fclose(f);
		mead_model_free(m);
	}
}

/* The square root of spike counts, kept in saved state; a version-1 file
 * (before the transform existed) loads as untransformed. */
static void test_transform(void **state)
{
	(void)state;
	float a[4] = {0, 1, 4, -2};
	mead_transform_apply(a, 4, MEAD_TRANSFORM_SQRT);
	assert_float_equal(a[1], 1.f, 1e-6);
	assert_float_equal(a[2], 2.f, 1e-6);
	assert_true(a[0] == 0 && a[3] == 0);
	float b[2] = {9, 16};
	mead_transform_apply(b, 2, MEAD_TRANSFORM_NONE);
	assert_true(b[0] == 9 && b[1] == 16);
	assert_int_equal(mead_transform_parse("sqrt"), MEAD_TRANSFORM_SQRT);
	assert_int_equal(mead_transform_parse("none"), MEAD_TRANSFORM_NONE);
	assert_true(mead_transform_parse("log") < 0);
	assert_string_equal(mead_transform_name(MEAD_TRANSFORM_SQRT), "sqrt");

	/* counts: class 0 busy on input 0, class 1 on input 1 */
	enum { N = 300, D = 4 };
	static float x[N][D];
	struct mead_hrng r;
	mead_hrng_seed(&r, 5);
	for (int i = 0; i < N; i++)
		for (int k = 0; k < D; k++)
			x[i][k] = (float)mead_hrng_below(&r, 5) + (k == i % 2 ? 20.f : 2.f);
	struct mead_model_options o;
	mead_model_options_default(&o);
	o.transform = MEAD_TRANSFORM_SQRT;
	struct mead_model *m, *back, *v1;
	assert_int_equal(mead_model_new(&o, D, &m), 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(mead_model_add(m, x[i], i % 2), 0);
	assert_int_equal(mead_model_fit(m), 0);
	float sm[2], sb[2];
	FILE *f = tmpfile();
	assert_int_equal(mead_model_write(m, f), 0);
	long len = ftell(f);
	rewind(f);
	assert_int_equal(mead_model_read(f, &o, &back), 0);
	for (int i = 0; i < N; i++) {
		assert_int_equal(mead_model_predict(back, x[i], sm), mead_model_predict(m, x[i], sb));
		assert_memory_equal(sm, sb, sizeof(sm));
	}
	/* the same bytes as version 1: no transform field (after 11 u32s) */
	static unsigned char buf[1 << 16];
	assert_true(len > 56 && len < (long)sizeof(buf));
	rewind(f);
	assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	assert_int_equal(buf[8], 2);
	buf[8] = 1;
	memmove(buf + 52, buf + 56, (size_t)len - 56);
	f = tmpfile();
	fwrite(buf, 1, (size_t)len - 4, f);
	rewind(f);
	assert_int_equal(mead_model_read(f, &o, &v1), 0);
	fclose(f);
	/* untransformed inputs: raw x scores as the sqrt model scores sqrt(x)'s square */
	float sq[D], raw[D];
	for (int k = 0; k < D; k++) {
		sq[k] = x[0][k];
		raw[k] = x[0][k];
	}
	mead_transform_apply(sq, D, MEAD_TRANSFORM_SQRT);
	float s1[2], s2[2];
	mead_model_predict(v1, sq, s1);
	mead_model_predict(m, raw, s2);
	assert_memory_equal(s1, s2, sizeof(s1));
	mead_model_free(v1);
	mead_model_free(back);
	mead_model_free(m);
}

/* Fitting twice on the same data with the same seed gives the same model;
 * another seed may differ but must still learn. */
static void test_model_deterministic(void **state)
{
	(void)state;
	enum { N = 200 };
	static float x[N][6];
	static int lab[N];
	make_two_classes(x, lab, N, 41);
	struct mead_model_options o;
	mead_model_options_default(&o);
	struct mead_model *a, *b;
	assert_int_equal(mead_model_new(&o, 6, &a), 0);
	assert_int_equal(mead_model_new(&o, 6, &b), 0);
	for (int i = 0; i < N; i++) {
		mead_model_add(a, x[i], lab[i]);
		mead_model_add(b, x[i], lab[i]);
	}
	assert_int_equal(mead_model_fit(a), 0);
	assert_int_equal(mead_model_fit(b), 0);
	assert_int_equal(mead_model_fit(b), 0);
	float sa[2], sb[2];
	for (int i = 0; i < N; i++) {
		mead_model_predict(a, x[i], sa);
		mead_model_predict(b, x[i], sb);
		assert_true(sa[0] == sb[0] && sa[1] == sb[1]);
	}
	mead_model_free(a);
	mead_model_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_swta_prototypes_find_cluster_centres),
		cmocka_unit_test(test_hpca_finds_principal_directions),
		cmocka_unit_test(test_lms_classifier_separates_two_classes),
		cmocka_unit_test(test_hebbian_classifier),
		cmocka_unit_test(test_proto_classifier_separates_two_classes),
		cmocka_unit_test(test_normalise),
		cmocka_unit_test(test_transform),
		cmocka_unit_test(test_model_fit_save_load),
		cmocka_unit_test(test_model_deterministic),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
