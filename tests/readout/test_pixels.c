/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <cmocka.h>

#include "lib/core/idx.h"
#include "readout/pixels.h"

static char images[4096], labels[4096];

static int setup(void **state)
{
	(void)state;
	const char *root = getenv("MEAD_SOURCE_ROOT");
	if (!root)
		root = ".";
	snprintf(images, sizeof(images), "%s/data/mnist/mnist8k-images-idx3-ubyte.gz", root);
	snprintf(labels, sizeof(labels), "%s/data/mnist/mnist8k-labels-idx1-ubyte.gz", root);
	return 0;
}

static void test_bundled_digits(void **state)
{
	(void)state;
	char err[512];
	struct mead_digits *d;
	assert_int_equal(mead_digits_new(images, labels, &d, err, sizeof(err)), 0);
	assert_int_equal(mead_digits_count(d), 8000);
	assert_int_equal(mead_digits_rows(d), 28);
	assert_int_equal(mead_digits_cols(d), 28);
	/* data/mnist/README.md: 0:812 1:925 */
	int zeros = 0, ones = 0;
	for (uint32_t i = 0; i < mead_digits_count(d); i++) {
		zeros += mead_digits_label(d, i) == 0;
		ones += mead_digits_label(d, i) == 1;
	}
	assert_int_equal(zeros, 812);
	assert_int_equal(ones, 925);
	mead_digits_free(d);

	/* Reference values: the first two digits resized to 6x6 by the
	 * protocol's Pillow-exact resize (protocol/encode.c). */
	static const uint8_t want[2][36] = {
		{0, 0, 6, 34, 16, 0, 0, 14, 94, 130, 60, 0, 0, 38, 144, 96, 11, 0,
		 0, 7, 154, 119, 10, 0, 0, 2, 113, 151, 36, 0, 0, 0, 18, 45, 7, 0},
		{0, 0, 0, 2, 2, 0, 0, 0, 15, 77, 57, 0, 0, 12, 77, 107, 46, 0,
		 0, 25, 107, 89, 4, 0, 0, 6, 73, 21, 0, 0, 0, 15, 41, 0, 0, 0},
	};
	struct mead_pixels *p;
	assert_int_equal(mead_pixels_open(images, 6, &p, err, sizeof(err)), 0);
	assert_int_equal(mead_pixels_count(p), 8000);
	assert_int_equal(mead_pixels_n(p), 36);
	float x[36];
	for (int i = 0; i < 2; i++) {
		assert_true(mead_pixels_features(p, i, x));
		for (int k = 0; k < 36; k++)
			assert_true(x[k] == want[i][k] / 255.f);
	}
	assert_false(mead_pixels_features(p, 8000, x));
	assert_false(mead_pixels_features(p, -1, x));
	mead_pixels_free(p);
}

/* Grid 0 keeps the images as they are: the features are the bytes / 255. */
static void test_own_size(void **state)
{
	(void)state;
	char err[512];
	struct mead_digits *d;
	struct mead_pixels *p;
	assert_int_equal(mead_digits_new(images, labels, &d, err, sizeof(err)), 0);
	assert_int_equal(mead_pixels_open(images, 0, &p, err, sizeof(err)), 0);
	assert_int_equal(mead_pixels_n(p), 28 * 28);
	static float x[28 * 28];
	assert_true(mead_pixels_features(p, 7999, x));
	const uint8_t *im = mead_digits_image(d, 7999);
	for (int k = 0; k < 28 * 28; k++)
		assert_true(x[k] == im[k] / 255.f);
	mead_pixels_free(p);
	mead_digits_free(d);
}

static void write_file(const char *path, const void *buf, size_t len, bool gz)
{
	if (gz) {
		gzFile f = gzopen(path, "wb");
		assert_non_null(f);
		assert_int_equal(gzwrite(f, buf, (unsigned)len), (int)len);
		gzclose(f);
	} else {
		FILE *f = fopen(path, "wb");
		assert_non_null(f);
		assert_int_equal(fwrite(buf, 1, len, f), len);
		fclose(f);
	}
}

/* Refused with the file named and what is wrong with it. */
static void expect_refused(const char *path, int rc, const char *what)
{
	char err[512] = "";
	struct mead_pixels *p = NULL;
	assert_int_equal(mead_pixels_open(path, 6, &p, err, sizeof(err)), rc);
	assert_null(p);
	assert_non_null(strstr(err, path));
	if (!strstr(err, what))
		fail_msg("\"%s\" does not say \"%s\"", err, what);
}

static void test_bad_files(void **state)
{
	(void)state;
	char path[256], err[512];
	snprintf(path, sizeof(path), "/tmp/mead-readout-idx-%d", (int)getpid());
	struct mead_pixels *p = NULL;

	/* plain (not gzip) 2 items of 2x3 */
	uint8_t good[4 + 12 + 12] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3};
	for (int i = 0; i < 12; i++)
		good[16 + i] = (uint8_t)(i * 20);
	write_file(path, good, sizeof(good), false);
	assert_int_equal(mead_pixels_open(path, 0, &p, err, sizeof(err)), 0);
	assert_int_equal(mead_pixels_count(p), 2);
	assert_int_equal(mead_pixels_rows(p), 2);
	assert_int_equal(mead_pixels_cols(p), 3);
	float x[6];
	assert_true(mead_pixels_features(p, 1, x));
	assert_true(x[5] == 220 / 255.f);
	mead_pixels_free(p);

	uint8_t bad_magic[16] = {1, 2, 3, 4};
	write_file(path, bad_magic, sizeof(bad_magic), true);
	expect_refused(path, -EBADMSG, "not an IDX file");

	uint8_t signed_bytes[16] = {0, 0, 9, 3};
	write_file(path, signed_bytes, sizeof(signed_bytes), true);
	expect_refused(path, -EPROTONOSUPPORT, "only unsigned bytes");

	write_file(path, good, sizeof(good) - 1, true);
	expect_refused(path, -EBADMSG, "truncated");

	uint8_t label_file[8 + 2] = {0, 0, 8, 1, 0, 0, 0, 2, 0, 1};
	write_file(path, label_file, sizeof(label_file), true);
	expect_refused(path, -EINVAL, "an image file has 3");

	unlink(path);
	expect_refused(path, -ENOENT, "cannot open");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bundled_digits),
		cmocka_unit_test(test_own_size),
		cmocka_unit_test(test_bad_files),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
