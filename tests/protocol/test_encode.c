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

#include "lib/core/labels.h"
#include "lib/core/resize.h"
#include "protocol/encode.h"
#include "lib/core/idx.h"

static void test_rng_known_values(void **state)
{
	(void)state;
	/* xoshiro256** seeded with splitmix64: values of the published
	 * algorithms, so streams are the same on every platform */
	struct mead_rng r;
	mead_rng_seed(&r, 1);
	assert_true(mead_rng_next(&r) == 0xb3f2af6d0fc710c5ull);
	assert_true(mead_rng_next(&r) == 0x853b559647364ceaull);
	assert_true(mead_rng_next(&r) == 0x92f89756082a4514ull);
	mead_rng_seed(&r, 0);
	assert_true(mead_rng_next(&r) == 0x99ec5f36cb75f2b4ull);

	struct mead_rng a, b;
	mead_rng_seed_stream(&a, 7, 3);
	mead_rng_seed_stream(&b, 7, 3);
	for (int i = 0; i < 100; i++)
		assert_true(mead_rng_next(&a) == mead_rng_next(&b));
	mead_rng_seed_stream(&b, 7, 4);
	assert_true(mead_rng_next(&a) != mead_rng_next(&b));
}

static void test_rng_below_uniform(void **state)
{
	(void)state;
	struct mead_rng r;
	mead_rng_seed(&r, 42);
	uint32_t hist[7] = { 0 };
	for (int i = 0; i < 70000; i++) {
		uint32_t v = mead_rng_below(&r, 7);
		assert_true(v < 7);
		hist[v]++;
	}
	for (int k = 0; k < 7; k++)
		assert_true(hist[k] > 9500 && hist[k] < 10500);
	double sum = 0;
	for (int i = 0; i < 100000; i++) {
		double u = mead_rng_uniform(&r);
		assert_true(u >= 0.0 && u < 1.0);
		sum += u;
	}
	assert_true(fabs(sum / 100000 - 0.5) < 0.01);
	uint32_t v[10] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 }, seen = 0;
	mead_rng_shuffle_u32(&r, v, 10);
	for (int i = 0; i < 10; i++)
		seen |= 1u << v[i];
	assert_int_equal(seen, 0x3ff);
}

/* ---- resize: values produced by Pillow 9.4 Image.resize(BILINEAR) ---- */

static void grad(uint8_t *img)
{
	for (int y = 0; y < 28; y++)
		for (int x = 0; x < 28; x++)
			img[y * 28 + x] = (uint8_t)((x * 9 + y * 3) % 256);
}

static void test_resize_known(void **state)
{
	(void)state;
	uint8_t img[784], out[64];
	static const uint8_t grad6[36] = {
		28, 66, 107, 150, 192, 225, 41, 79, 120, 163, 204, 194, 54, 92, 133, 176, 215, 124,
		69, 107, 148, 191, 208, 67, 83, 121, 162, 205, 171, 40, 95, 133, 174, 215, 119, 41 };
	static const uint8_t grad5x7[35] = {
		31, 77, 128, 178, 223, 42, 88, 139, 189, 207, 54, 100, 151, 201, 166, 66, 112, 163,
		209, 115, 78, 124, 175, 206, 74, 90, 136, 187, 189, 51, 100, 146, 197, 160, 43 };
	grad(img);
	assert_int_equal(mead_resize_u8(img, 28, 28, out, 6, 6), 0);
	assert_memory_equal(out, grad6, 36);
	assert_int_equal(mead_resize_u8(img, 28, 28, out, 5, 7), 0);
	assert_memory_equal(out, grad5x7, 35);

	memset(img, 255, sizeof(img));
	assert_int_equal(mead_resize_u8(img, 28, 28, out, 6, 6), 0);
	for (int i = 0; i < 36; i++)
		assert_int_equal(out[i], 255);
	memset(img, 100, sizeof(img));
	assert_int_equal(mead_resize_u8(img, 28, 28, out, 6, 6), 0);
	for (int i = 0; i < 36; i++)
		assert_int_equal(out[i], 100);

	assert_int_equal(mead_resize_u8(img, 0, 28, out, 6, 6), -EINVAL);
	assert_int_equal(mead_resize_u8(img, 28, 28, out, 6, 0), -EINVAL);
}

static void test_resize_digits(void **state)
{
	(void)state;
	const char *root = getenv("MEAD_SOURCE_ROOT");
	char im[512], lb[512], err[256];
	snprintf(im, sizeof(im), "%s/data/mnist/mnist8k-images-idx3-ubyte.gz", root ? root : ".");
	snprintf(lb, sizeof(lb), "%s/data/mnist/mnist8k-labels-idx1-ubyte.gz", root ? root : ".");
	struct mead_digits *d = NULL;
	assert_int_equal(mead_digits_new(im, lb, &d, err, sizeof(err)), 0);
	static const uint8_t want[3][36] = {
		{ 0, 0, 6, 34, 16, 0, 0, 14, 94, 130, 60, 0, 0, 38, 144, 96, 11, 0, 0, 7, 154, 119, 10, 0,
		  0, 2, 113, 151, 36, 0, 0, 0, 18, 45, 7, 0 },
		{ 0, 0, 0, 2, 2, 0, 0, 0, 15, 77, 57, 0, 0, 12, 77, 107, 46, 0, 0, 25, 107, 89, 4, 0,
		  0, 6, 73, 21, 0, 0, 0, 15, 41, 0, 0, 0 },
		{ 0, 0, 0, 0, 4, 0, 0, 12, 24, 29, 97, 9, 1, 65, 138, 119, 89, 1, 4, 96, 173, 166, 49, 0,
		  2, 25, 81, 65, 0, 0, 0, 0, 44, 21, 0, 0 },
	};
	for (uint32_t i = 0; i < 3; i++) {
		uint8_t out[36];
		assert_int_equal(mead_resize_u8(mead_digits_image(d, i), 28, 28, out, 6, 6), 0);
		assert_memory_equal(out, want[i], 36);
	}
	mead_digits_free(d);
}

/* ---- spike encoders ---- */

static struct mead_spike_encoder *enc(enum mead_encoder_kind k, uint32_t dur, double rate)
{
	struct mead_spike_encoder *e = NULL;
	char err[256];
	assert_int_equal(mead_spike_encoder_new(k, dur, &rate, 1, &e, err, sizeof(err)), 0);
	return e;
}

/* Mean count over many windows and the ISI mean and variance. */
static void stats(struct mead_spike_encoder *e, uint32_t dur, uint32_t draws, double *ret_mean,
		  double *ret_isi_mean, double *ret_isi_var)
{
	struct mead_rng r;
	mead_rng_seed(&r, 1234);
	uint16_t *t = calloc(dur, sizeof(*t));
	double total = 0, isum = 0, isq = 0, in = 0;
	for (uint32_t d = 0; d < draws; d++) {
		uint32_t n = mead_spike_encoder_draw(e, 0, &r, t);
		assert_true(n <= dur);
		for (uint32_t k = 0; k < n; k++) {
			assert_true(t[k] < dur);
			if (k) {
				assert_true(t[k] >= t[k - 1] + 1);  /* ISI >= 1 ms */
				double isi = t[k] - t[k - 1];
				isum += isi;
				isq += isi * isi;
				in++;
			}
		}
		total += n;
	}
	free(t);
	*ret_mean = total / draws;
	*ret_isi_mean = in ? isum / in : 0;
	*ret_isi_var = in ? isq / in - (isum / in) * (isum / in) : 0;
}

static void test_reference_rates(void **state)
{
	(void)state;
	/* long windows make the renewal edge effect negligible: count ~ T/E[ISI],
	 * E[ISI] = lambda + P(X=0) for Poisson(lambda) with 0 bumped to 1 */
	static const double rates[] = { 10, 50, 100, 200 };
	for (size_t i = 0; i < 4; i++) {
		double lambda = 1000.0 / rates[i];
		double mu = lambda + exp(-lambda);
		struct mead_spike_encoder *e = enc(MEAD_ENCODER_REFERENCE, 10000, rates[i]);
		double mean, im, iv;
		stats(e, 10000, 200, &mean, &im, &iv);
		assert_true(fabs(mean - 10000.0 / mu) < 0.02 * 10000.0 / mu);
		assert_true(fabs(im - mu) < 0.02 * mu);
		/* Poisson-distributed intervals: variance ~ lambda, far below the
		 * lambda^2 of a Poisson process's exponential intervals */
		assert_true(iv > 0.8 * lambda && iv < 1.2 * lambda);
		mead_spike_encoder_free(e);
	}
	/* 200 Hz over the 100 ms presentation: about 19.5 spikes */
	struct mead_spike_encoder *e = enc(MEAD_ENCODER_REFERENCE, 100, 200);
	double mean, im, iv;
	stats(e, 100, 5000, &mean, &im, &iv);
	assert_true(mean > 19.0 && mean < 20.2);
	mead_spike_encoder_free(e);
	/* the dimmest pixel (1/255 of 200 Hz): mean interval 1275 ms, never in 100 ms */
	e = enc(MEAD_ENCODER_REFERENCE, 100, 200.0 / 255);
	stats(e, 100, 2000, &mean, &im, &iv);
	assert_true(mean == 0.0);
	mead_spike_encoder_free(e);
	e = enc(MEAD_ENCODER_REFERENCE, 100, 0);
	stats(e, 100, 100, &mean, &im, &iv);
	assert_true(mean == 0.0);
	mead_spike_encoder_free(e);
}

static void test_poisson_rates(void **state)
{
	(void)state;
	static const double rates[] = { 5, 50, 200, 500 };
	for (size_t i = 0; i < 4; i++) {
		struct mead_spike_encoder *e = enc(MEAD_ENCODER_POISSON, 1000, rates[i]);
		double mean, im, iv;
		stats(e, 1000, 400, &mean, &im, &iv);
		/* binomial(1000, r/1000) per window, 400 windows */
		double p = rates[i] / 1000, sd = sqrt(1000 * p * (1 - p) / 400);
		assert_true(fabs(mean - rates[i]) < 5 * sd);
		/* geometric intervals: variance (1-p)/p^2 */
		if (rates[i] >= 50)
			assert_true(fabs(iv - (1 - p) / (p * p)) < 0.15 * (1 - p) / (p * p) + 0.05);
		mead_spike_encoder_free(e);
	}
	struct mead_spike_encoder *e = enc(MEAD_ENCODER_POISSON, 100, 1000);
	double mean, im, iv;
	stats(e, 100, 10, &mean, &im, &iv);
	assert_true(mean == 100.0);
	mead_spike_encoder_free(e);
}

static void test_encoder_determinism_and_errors(void **state)
{
	(void)state;
	double rates[3] = { 20, 120, 0 };
	struct mead_spike_encoder *e = NULL;
	char err[256];
	for (int kind = 0; kind < 2; kind++) {
		assert_int_equal(mead_spike_encoder_new((enum mead_encoder_kind)kind, 100, rates, 3, &e, err,
							sizeof(err)), 0);
		assert_int_equal(mead_spike_encoder_duration_ms(e), 100);
		uint16_t a[100], b[100];
		struct mead_rng r1, r2;
		mead_rng_seed_stream(&r1, 5, 1);
		mead_rng_seed_stream(&r2, 5, 1);
		uint32_t na = mead_spike_encoder_draw(e, 1, &r1, a);
		uint32_t nb = mead_spike_encoder_draw(e, 1, &r2, b);
		assert_int_equal(na, nb);
		assert_true(na > 0);
		assert_memory_equal(a, b, na * sizeof(a[0]));
		mead_rng_seed_stream(&r2, 6, 1);
		nb = mead_spike_encoder_draw(e, 1, &r2, b);
		assert_true(na != nb || memcmp(a, b, na * sizeof(a[0])) != 0);
		assert_int_equal(mead_spike_encoder_draw(e, 2, &r1, a), 0);
		assert_int_equal(mead_spike_encoder_draw(e, 3, &r1, a), 0);
		mead_spike_encoder_free(e);
	}
	struct mead_spike_encoder *sentinel = (struct mead_spike_encoder *)(uintptr_t)8;
	e = sentinel;
	double bad = 1500;
	assert_int_equal(mead_spike_encoder_new(MEAD_ENCODER_REFERENCE, 100, &bad, 1, &e, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "1500"));
	assert_int_equal(mead_spike_encoder_new(MEAD_ENCODER_REFERENCE, 0, rates, 1, &e, err, sizeof(err)), -EINVAL);
	assert_int_equal(mead_spike_encoder_new((enum mead_encoder_kind)9, 10, rates, 1, &e, err, sizeof(err)), -EINVAL);
	assert_ptr_equal(e, sentinel);
	mead_spike_encoder_free(NULL);
	assert_true(mead_pixel_rate_hz(255, 200) == 200.0);
	assert_true(mead_pixel_rate_hz(0, 200) == 0.0);
	assert_true(fabs(mead_pixel_rate_hz(51, 200) - 40.0) < 1e-12);
}

/* ---- label layouts ---- */

static uint32_t rows_of(const struct mead_label_layout *l, uint32_t c, uint32_t col)
{
	uint32_t m = 0;
	for (uint32_t k = 0; k < l->n_cells[c]; k++)
		if (l->cells[c][k].col == col)
			m |= 1u << l->cells[c][k].row;
	return m;
}

static void test_label_layouts(void **state)
{
	(void)state;
	struct mead_label_layout l;
	char err[256];
	assert_int_equal(mead_label_layout_build(2, 6, 9, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n_classes, 2);
	assert_int_equal(rows_of(&l, 0, 9), 0x07);   /* class 0 = rows 0..2 */
	assert_int_equal(rows_of(&l, 1, 9), 0x38);   /* class 1 = rows 3..5 */
	assert_int_equal(l.n_cells[0], 3);

	assert_int_equal(mead_label_layout_build(2, 7, 9, &l, err, sizeof(err)), 0);
	assert_int_equal(rows_of(&l, 0, 9), 0x07);
	assert_int_equal(rows_of(&l, 1, 9), 0x70);   /* the middle row stays silent */

	assert_int_equal(mead_label_layout_build(3, 6, 9, &l, err, sizeof(err)), 0);
	assert_int_equal(rows_of(&l, 0, 9), 0x03);
	assert_int_equal(rows_of(&l, 1, 9), 0x0c);
	assert_int_equal(rows_of(&l, 2, 9), 0x30);

	assert_int_equal(mead_label_layout_build(3, 8, 9, &l, err, sizeof(err)), 0);
	assert_int_equal(rows_of(&l, 0, 9), 0x03);
	assert_int_equal(rows_of(&l, 1, 9), 0x18);
	assert_int_equal(rows_of(&l, 2, 9), 0xc0);

	assert_int_equal(mead_label_layout_build(4, 8, 9, &l, err, sizeof(err)), 0);
	for (uint32_t c = 0; c < 4; c++)
		assert_int_equal(rows_of(&l, c, 9), 0x3u << (2 * c));

	/* 6 rows, 4 classes: 3 cells each over columns 8 and 9, disjoint */
	assert_int_equal(mead_label_layout_build(4, 6, 9, &l, err, sizeof(err)), 0);
	uint32_t used8 = 0, used9 = 0;
	for (uint32_t c = 0; c < 4; c++) {
		assert_int_equal(l.n_cells[c], 3);
		assert_int_equal(rows_of(&l, c, 8) & used8, 0);
		assert_int_equal(rows_of(&l, c, 9) & used9, 0);
		used8 |= rows_of(&l, c, 8);
		used9 |= rows_of(&l, c, 9);
	}
	assert_int_equal(used8, 0x3f);
	assert_int_equal(used9, 0x3f);
	assert_int_equal(rows_of(&l, 0, 8), 0x03);
	assert_int_equal(rows_of(&l, 0, 9), 0x01);

	assert_int_equal(mead_label_layout_build(1, 6, 9, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n_cells[0], 0);
	assert_int_equal(mead_label_layout_build(0, 6, 9, &l, err, sizeof(err)), 0);

	l.n_classes = 77;
	assert_int_equal(mead_label_layout_build(5, 6, 9, &l, err, sizeof(err)), -EINVAL);
	assert_int_equal(l.n_classes, 77);
	assert_int_equal(mead_label_layout_build(4, 5, 9, &l, err, sizeof(err)), -EINVAL);
	assert_int_equal(mead_label_layout_build(4, 6, 0, &l, err, sizeof(err)), -EINVAL);
	assert_int_equal(mead_label_layout_build(3, 2, 9, &l, err, sizeof(err)), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rng_known_values),
		cmocka_unit_test(test_rng_below_uniform),
		cmocka_unit_test(test_resize_known),
		cmocka_unit_test(test_resize_digits),
		cmocka_unit_test(test_reference_rates),
		cmocka_unit_test(test_poisson_rates),
		cmocka_unit_test(test_encoder_determinism_and_errors),
		cmocka_unit_test(test_label_layouts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
