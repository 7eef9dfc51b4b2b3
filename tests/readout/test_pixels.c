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
	struct mead_idx *im, *lb;
	assert_int_equal(mead_idx_load(images, &im, err, sizeof(err)), 0);
	assert_int_equal(mead_idx_load(labels, &lb, err, sizeof(err)), 0);
	assert_int_equal(im->n, 8000);
	assert_int_equal(im->rows, 28);
	assert_int_equal(im->cols, 28);
	assert_int_equal(lb->n, 8000);
	assert_int_equal(lb->item_size, 1);
	/* data/mnist/README.md: 0:812 1:925 */
	int zeros = 0, ones = 0;
	for (uint32_t i = 0; i < lb->n; i++) {
		zeros += lb->data[i] == 0;
		ones += lb->data[i] == 1;
	}
	assert_int_equal(zeros, 812);
	assert_int_equal(ones, 925);

	/* Reference values: the first two digits resized to 6x6 by the
	 * protocol's Pillow-exact resize (protocol/encode.c). */
	static const uint8_t want0[36] = {
		0, 0, 6, 34, 16, 0, 0, 14, 94, 130, 60, 0, 0, 38, 144, 96, 11, 0,
		0, 7, 154, 119, 10, 0, 0, 2, 113, 151, 36, 0, 0, 0, 18, 45, 7, 0};
	static const uint8_t want1[36] = {
		0, 0, 0, 2, 2, 0, 0, 0, 15, 77, 57, 0, 0, 12, 77, 107, 46, 0,
		0, 25, 107, 89, 4, 0, 0, 6, 73, 21, 0, 0, 0, 15, 41, 0, 0, 0};
	uint8_t out[36], tmp[6 * 28];
	mead_resize_aa(im->data, 28, 28, out, 6, 6, tmp);
	assert_memory_equal(out, want0, 36);
	mead_resize_aa(im->data + 784, 28, 28, out, 6, 6, tmp);
	assert_memory_equal(out, want1, 36);
	mead_idx_free(im);
	mead_idx_free(lb);
}

static void test_resize_constant_and_identity(void **state)
{
	(void)state;
	uint8_t src[28 * 28], out[10 * 10], tmp[28 * 28];
	memset(src, 200, sizeof(src));
	mead_resize_aa(src, 28, 28, out, 6, 6, tmp);
	for (int k = 0; k < 36; k++)
		assert_int_equal(out[k], 200);
	for (int k = 0; k < 28 * 28; k++)
		src[k] = (uint8_t)(k * 7);
	uint8_t same[28 * 28];
	mead_resize_aa(src, 28, 28, same, 28, 28, tmp);
	assert_memory_equal(same, src, sizeof(src));
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

static void test_bad_files(void **state)
{
	(void)state;
	char path[256], err[512];
	snprintf(path, sizeof(path), "/tmp/mead-readout-idx-%d", (int)getpid());
	struct mead_idx *x = NULL;

	/* plain (not gzip) 2 items of 2x3 */
	uint8_t good[4 + 12 + 12] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3};
	for (int i = 0; i < 12; i++)
		good[16 + i] = (uint8_t)i;
	write_file(path, good, sizeof(good), false);
	assert_int_equal(mead_idx_load(path, &x, err, sizeof(err)), 0);
	assert_int_equal(x->n, 2);
	assert_int_equal(x->rows, 2);
	assert_int_equal(x->cols, 3);
	assert_int_equal(x->data[11], 11);
	mead_idx_free(x);

	uint8_t bad_magic[16] = {0, 0, 9, 3};
	write_file(path, bad_magic, sizeof(bad_magic), true);
	err[0] = 0;
	assert_int_equal(mead_idx_load(path, &x, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "magic"));

	write_file(path, good, sizeof(good) - 1, true);
	err[0] = 0;
	assert_int_equal(mead_idx_load(path, &x, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "truncated"));

	unlink(path);
	assert_true(mead_idx_load(path, &x, err, sizeof(err)) < 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bundled_digits),
		cmocka_unit_test(test_resize_constant_and_identity),
		cmocka_unit_test(test_bad_files),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
