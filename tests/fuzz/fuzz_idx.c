/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the IDX reader (plain or gzip) on an arbitrary file.
 *
 * The input is the whole file, opened by the /proc/self/fd path of an
 * in-memory file (mead_idx_new takes a path; zlib reads both forms through
 * the same descriptor).  When it loads, every item is touched, and the file
 * is paired through mead_digits_new: a 3-dimension file as the images with
 * a generated label file of the same count, a 1-dimension file as the
 * labels with generated 1 x 1 images.
 *
 * Invariants: a failure is one of the documented errors with a message;
 * a loaded file has 1..4 dimensions, item_size is the product of the
 * dimensions after the first, item i exists exactly for i < dims[0]; a
 * pair of matching counts loads and reads back what was generated.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/core/idx.h"
#include "tests/fuzz/fuzz_common.h"

static void check_error(int rc, const char *err, size_t err_len)
{
	FUZZ_CHECK(rc == -EBADMSG || rc == -EPROTONOSUPPORT || rc == -ENOMEM || rc == -EINVAL || rc == -EIO,
		   "mead_idx_new returned %d (%s)", rc, err);
	FUZZ_CHECK(memchr(err, '\0', err_len) != NULL && err[0], "failure without a message");
}

/* An IDX file with dims (big-endian) and body generated from seed. */
static int make_idx(uint32_t nd, const uint32_t *dims, uint8_t seed, char *path, size_t path_len)
{
	size_t total = 1, len;
	uint8_t *buf;
	int fd;

	for (uint32_t i = 0; i < nd; i++)
		total *= dims[i];
	len = 4 + 4 * nd + total;
	buf = malloc(len);
	FUZZ_CHECK(buf, "out of memory");
	buf[0] = 0;
	buf[1] = 0;
	buf[2] = 0x08;
	buf[3] = (uint8_t)nd;
	for (uint32_t i = 0; i < nd; i++) {
		buf[4 + 4 * i] = (uint8_t)(dims[i] >> 24);
		buf[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
		buf[6 + 4 * i] = (uint8_t)(dims[i] >> 8);
		buf[7 + 4 * i] = (uint8_t)dims[i];
	}
	for (size_t i = 0; i < total; i++)
		buf[4 + 4 * nd + i] = (uint8_t)(seed + i * 7);
	fd = fuzz_memfile(buf, len, path, path_len);
	free(buf);
	FUZZ_CHECK(fd >= 0, "memfd");
	return fd;
}

static void pair(const char *input_path, const struct mead_idx *idx)
{
	uint32_t nd = mead_idx_ndims(idx), count = mead_idx_dim(idx, 0);
	char other[64], err[256];
	struct mead_digits *d = NULL;
	int fd, rc;

	/* A file is never its own pair (images have 3 dimensions, labels 1). */
	rc = mead_digits_new(input_path, input_path, &d, err, sizeof(err));
	FUZZ_CHECK(rc == -EINVAL || rc == -ENOMEM, "a file paired with itself: %d", rc);
	/* Counts that differ by one do not pair. */
	if (count < 1u << 20) {
		uint32_t more = count + 1, dims[3] = { count + 1, 1, 1 };
		fd = nd == 3 ? make_idx(1, &more, 3, other, sizeof(other)) : make_idx(3, dims, 5, other, sizeof(other));
		rc = nd == 3 ? mead_digits_new(input_path, other, &d, err, sizeof(err))
			     : mead_digits_new(other, input_path, &d, err, sizeof(err));
		close(fd);
		FUZZ_CHECK(rc == -EINVAL || rc == -ENOMEM,
			   "counts %u and %u paired: %d", count, more, rc);
		FUZZ_CHECK(err[0] != '\0', "refused pair without a message");
	}

	if (nd == 3) {
		fd = make_idx(1, &count, 3, other, sizeof(other));
		rc = mead_digits_new(input_path, other, &d, err, sizeof(err));
	} else if (nd == 1) {
		uint32_t dims[3] = { count, 1, 1 };
		fd = make_idx(3, dims, 5, other, sizeof(other));
		rc = mead_digits_new(other, input_path, &d, err, sizeof(err));
	} else {
		return;
	}
	close(fd);
	FUZZ_CHECK(rc == 0 || rc == -ENOMEM, "a matching pair does not load: %s", err);
	if (rc < 0)
		return;
	FUZZ_CHECK(mead_digits_count(d) == count, "pair count %u, file %u", mead_digits_count(d), count);
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *im = mead_digits_image(d, i);
		FUZZ_CHECK(im != NULL, "image %u missing", i);
		if (nd == 3) {
			FUZZ_CHECK(mead_digits_label(d, i) == (uint8_t)(3 + i * 7), "label %u", i);
			FUZZ_CHECK(im == mead_idx_item(idx, i) || memcmp(im, mead_idx_item(idx, i), mead_idx_item_size(idx)) == 0,
				   "image %u differs from the file", i);
		} else {
			FUZZ_CHECK(*im == (uint8_t)(5 + i * 7), "image %u", i);
			FUZZ_CHECK(mead_digits_label(d, i) == *mead_idx_item(idx, i), "label %u differs from the file", i);
		}
	}
	FUZZ_CHECK(mead_digits_image(d, count) == NULL, "image past the end");
	FUZZ_CHECK(mead_digits_label(d, count) == 0, "label past the end");
	if (nd == 3)
		FUZZ_CHECK(mead_digits_rows(d) == mead_idx_dim(idx, 1) && mead_digits_cols(d) == mead_idx_dim(idx, 2),
			   "pair geometry");
	mead_digits_free(d);
}

static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mead_idx *idx = NULL;
	char path[64], err[256];
	uint64_t product = 1, sum = 0;
	uint32_t nd, count;
	int fd, rc;

	fd = fuzz_memfile(data, size, path, sizeof(path));
	FUZZ_CHECK(fd >= 0, "memfd");
	memset(err, 0x55, sizeof(err));
	rc = mead_idx_new(path, &idx, err, sizeof(err));
	if (rc < 0) {
		check_error(rc, err, sizeof(err));
		close(fd);
		return 0;
	}
	nd = mead_idx_ndims(idx);
	FUZZ_CHECK(nd >= 1 && nd <= MEAD_IDX_MAX_DIMS, "%u dimensions", nd);
	for (uint32_t i = 1; i < nd; i++)
		product *= mead_idx_dim(idx, i);
	FUZZ_CHECK(mead_idx_item_size(idx) == product, "item size %zu, dimensions give %llu", mead_idx_item_size(idx),
		   (unsigned long long)product);
	FUZZ_CHECK(mead_idx_dim(idx, nd) == 0 && mead_idx_dim(idx, 7) == 0, "dimension past the last");
	count = mead_idx_dim(idx, 0);
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *p = mead_idx_item(idx, i);
		FUZZ_CHECK(p != NULL, "item %u missing", i);
		if (product)
			sum += p[0] + p[product - 1];
	}
	FUZZ_CHECK(mead_idx_item(idx, count) == NULL && mead_idx_item(idx, UINT32_MAX) == NULL, "item past the end");
	sink = sum;
	pair(path, idx);
	mead_idx_free(idx);
	close(fd);
	return 0;
}
