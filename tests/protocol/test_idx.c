/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "lib/core/idx.h"

static char tmpdir[256];

static const char *src_root(void)
{
	const char *s = getenv("MEAD_SOURCE_ROOT");
	return s ? s : ".";
}

static void path_in(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", tmpdir, name);
}

/* An IDX file of n items of rows x cols (rows == 0: a 1-d label file),
 * item i filled with (i * 7 + k) % 256. */
static size_t make_idx(uint8_t *buf, uint8_t type, uint32_t n, uint32_t rows, uint32_t cols)
{
	size_t o = 0;
	uint8_t nd = rows ? 3 : 1;
	buf[o++] = 0;
	buf[o++] = 0;
	buf[o++] = type;
	buf[o++] = nd;
	uint32_t dims[3] = { n, rows, cols };
	for (uint8_t d = 0; d < nd; d++) {
		buf[o++] = (uint8_t)(dims[d] >> 24);
		buf[o++] = (uint8_t)(dims[d] >> 16);
		buf[o++] = (uint8_t)(dims[d] >> 8);
		buf[o++] = (uint8_t)dims[d];
	}
	size_t item = rows ? (size_t)rows * cols : 1;
	for (uint32_t i = 0; i < n; i++)
		for (size_t k = 0; k < item; k++)
			buf[o++] = (uint8_t)((i * 7 + k) % 256);
	return o;
}

static void write_plain(const char *name, const uint8_t *buf, size_t len)
{
	char p[512];
	path_in(p, sizeof(p), name);
	FILE *f = fopen(p, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, len, f), len);
	fclose(f);
}

static void write_gz(const char *name, const uint8_t *buf, size_t len)
{
	char p[512];
	path_in(p, sizeof(p), name);
	gzFile f = gzopen(p, "wb");
	assert_non_null(f);
	assert_int_equal(gzwrite(f, buf, (unsigned)len), (int)len);
	gzclose(f);
}

static int expect_fail(const char *name, int want, const char *needle)
{
	char p[512], err[512] = "";
	path_in(p, sizeof(p), name);
	struct mead_idx *sentinel = (struct mead_idx *)(uintptr_t)0x1234;
	struct mead_idx *idx = sentinel;
	int r = mead_idx_new(p, &idx, err, sizeof(err));
	assert_int_equal(r, want);
	assert_ptr_equal(idx, sentinel);  /* untouched on failure */
	assert_non_null(strstr(err, name));
	if (needle)
		assert_non_null(strstr(err, needle));
	return r;
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mead-test-idx-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_bundled(void **state)
{
	(void)state;
	char im[512], lb[512], err[256];
	snprintf(im, sizeof(im), "%s/data/mnist/mnist8k-images-idx3-ubyte.gz", src_root());
	snprintf(lb, sizeof(lb), "%s/data/mnist/mnist8k-labels-idx1-ubyte.gz", src_root());
	struct mead_digits *d = NULL;
	assert_int_equal(mead_digits_new(im, lb, &d, err, sizeof(err)), 0);
	assert_int_equal(mead_digits_count(d), 8000);
	assert_int_equal(mead_digits_rows(d), 28);
	assert_int_equal(mead_digits_cols(d), 28);
	/* the README's label counts */
	static const uint32_t want[10] = { 812, 925, 799, 831, 769, 693, 783, 856, 753, 779 };
	uint32_t got[10] = { 0 };
	for (uint32_t i = 0; i < 8000; i++) {
		uint8_t l = mead_digits_label(d, i);
		assert_true(l < 10);
		got[l]++;
	}
	for (int c = 0; c < 10; c++)
		assert_int_equal(got[c], want[c]);
	/* a digit has ink and background */
	const uint8_t *px = mead_digits_image(d, 0);
	uint32_t ink = 0;
	for (int k = 0; k < 784; k++)
		ink += px[k] > 128;
	assert_true(ink > 20 && ink < 400);
	assert_null(mead_digits_image(d, 8000));
	mead_digits_free(d);
}

static void test_plain_and_gz_agree(void **state)
{
	(void)state;
	static uint8_t buf[64 + 5 * 28 * 28];
	size_t n = make_idx(buf, 0x08, 5, 28, 28);
	write_plain("plain-idx3", buf, n);
	write_gz("gz-idx3.gz", buf, n);
	char a[512], b[512], err[256];
	path_in(a, sizeof(a), "plain-idx3");
	path_in(b, sizeof(b), "gz-idx3.gz");
	struct mead_idx *x = NULL, *y = NULL;
	assert_int_equal(mead_idx_new(a, &x, err, sizeof(err)), 0);
	assert_int_equal(mead_idx_new(b, &y, err, sizeof(err)), 0);
	assert_int_equal(mead_idx_ndims(x), 3);
	assert_int_equal(mead_idx_dim(x, 0), 5);
	assert_int_equal(mead_idx_dim(x, 1), 28);
	assert_int_equal(mead_idx_dim(x, 2), 28);
	assert_int_equal(mead_idx_dim(x, 3), 0);
	assert_int_equal(mead_idx_item_size(x), 784);
	for (uint32_t i = 0; i < 5; i++) {
		assert_memory_equal(mead_idx_item(x, i), mead_idx_item(y, i), 784);
		assert_int_equal(mead_idx_item(x, i)[3], (uint8_t)(i * 7 + 3));
	}
	mead_idx_free(x);
	mead_idx_free(y);
	mead_idx_free(NULL);
}

static void test_bad_magic(void **state)
{
	(void)state;
	static uint8_t buf[64 + 2 * 16];
	size_t n = make_idx(buf, 0x08, 2, 4, 4);
	buf[0] = 0x1f;  /* looks like neither IDX nor gzip */
	write_plain("bad-magic", buf, n);
	expect_fail("bad-magic", -EBADMSG, "magic");
	/* an unknown element type is a bad magic too */
	n = make_idx(buf, 0x07, 2, 4, 4);
	write_plain("bad-type", buf, n);
	expect_fail("bad-type", -EBADMSG, "magic");
	/* a known but unsupported type says so */
	n = make_idx(buf, 0x0D, 2, 4, 4);
	write_plain("float-type", buf, n);
	expect_fail("float-type", -EPROTONOSUPPORT, "float");
	write_plain("empty", buf, 0);
	expect_fail("empty", -EBADMSG, "truncated");
}

static void test_truncated(void **state)
{
	(void)state;
	static uint8_t buf[64 + 10 * 28 * 28];
	size_t n = make_idx(buf, 0x08, 10, 28, 28);
	write_plain("trunc-plain", buf, n - 100);
	expect_fail("trunc-plain", -EBADMSG, "truncated");
	write_gz("trunc-data.gz", buf, n - 1);
	expect_fail("trunc-data.gz", -EBADMSG, "truncated");
	write_plain("trunc-header", buf, 10);
	expect_fail("trunc-header", -EBADMSG, "truncated");

	/* a gzip stream cut in the middle */
	write_gz("whole.gz", buf, n);
	char p[512];
	path_in(p, sizeof(p), "whole.gz");
	FILE *f = fopen(p, "rb");
	assert_non_null(f);
	static uint8_t z[64 + 10 * 28 * 28 + 1024];
	size_t zn = fread(z, 1, sizeof(z), f);
	fclose(f);
	assert_true(zn > 40);
	write_plain("cut.gz", z, zn / 2);
	expect_fail("cut.gz", -EBADMSG, NULL);

	write_plain("trailing", buf, n);
	path_in(p, sizeof(p), "trailing");
	f = fopen(p, "ab");
	fputc(0, f);
	fclose(f);
	expect_fail("trailing", -EBADMSG, "after");
}

static void test_absurd_dims(void **state)
{
	(void)state;
	uint8_t buf[32] = { 0, 0, 0x08, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 28 };
	write_plain("zero-rows", buf, 16);
	expect_fail("zero-rows", -EBADMSG, "dimension");
	uint8_t big[32] = { 0, 0, 0x08, 3, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0x10, 0, 0, 0, 0x10, 0 };
	write_plain("huge", big, 16);
	expect_fail("huge", -EBADMSG, NULL);
	uint8_t many[32] = { 0, 0, 0x08, 9 };
	write_plain("nine-dims", many, 4);
	expect_fail("nine-dims", -EBADMSG, "dimensions");
}

static void test_pair_mismatch(void **state)
{
	(void)state;
	static uint8_t buf[64 + 6 * 28 * 28];
	size_t n = make_idx(buf, 0x08, 6, 28, 28);
	write_gz("im6.gz", buf, n);
	n = make_idx(buf, 0x08, 5, 0, 0);
	write_gz("lb5.gz", buf, n);
	n = make_idx(buf, 0x08, 6, 0, 0);
	write_plain("lb6", buf, n);
	char im[512], lb5[512], lb6[512], err[512];
	path_in(im, sizeof(im), "im6.gz");
	path_in(lb5, sizeof(lb5), "lb5.gz");
	path_in(lb6, sizeof(lb6), "lb6");
	struct mead_digits *sentinel = (struct mead_digits *)(uintptr_t)0x99, *d = sentinel;
	assert_int_equal(mead_digits_new(im, lb5, &d, err, sizeof(err)), -EINVAL);
	assert_ptr_equal(d, sentinel);
	assert_non_null(strstr(err, "5 labels"));
	assert_non_null(strstr(err, "6 images"));
	/* images given as labels and the other way round */
	assert_int_equal(mead_digits_new(lb6, im, &d, err, sizeof(err)), -EINVAL);
	assert_int_equal(mead_digits_new(im, im, &d, err, sizeof(err)), -EINVAL);
	assert_int_equal(mead_digits_new(im, lb6, &d, err, sizeof(err)), 0);
	assert_int_equal(mead_digits_count(d), 6);
	assert_int_equal(mead_digits_label(d, 2), 14);
	mead_digits_free(d);
	d = sentinel;
	char missing[512];
	path_in(missing, sizeof(missing), "nope.gz");
	assert_int_equal(mead_digits_new(missing, lb6, &d, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "nope.gz"));
	assert_ptr_equal(d, sentinel);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bundled),
		cmocka_unit_test(test_plain_and_gz_agree),
		cmocka_unit_test(test_bad_magic),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_absurd_dims),
		cmocka_unit_test(test_pair_mismatch),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
