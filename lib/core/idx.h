/* SPDX-License-Identifier: MIT */
/*
 * IDX files (the MNIST distribution format, also Fashion-MNIST), gzip or
 * plain.  Only unsigned-byte data (type 0x08) is read: every image and
 * label set of those distributions is stored that way.
 *
 * Errors: -ENOENT/-EACCES/... from opening, -EBADMSG for a file that is not
 * well-formed IDX (bad magic, truncated, trailing bytes, absurd dimensions,
 * corrupt gzip), -EPROTONOSUPPORT for a non-byte element type, -EINVAL for
 * a label file that does not belong to its image file; err gets a message
 * for a person naming the file.  Main thread only.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define MEAD_IDX_MAX_DIMS 4

struct mead_idx;

int mead_idx_new(const char *path, struct mead_idx **ret, char *err, size_t err_len);
void mead_idx_free(struct mead_idx *idx);

uint32_t mead_idx_ndims(const struct mead_idx *idx);
/* Size of dimension i (0: item count); 0 when i >= ndims. */
uint32_t mead_idx_dim(const struct mead_idx *idx, uint32_t i);
/* Bytes of one item (the product of the dimensions after the first). */
size_t mead_idx_item_size(const struct mead_idx *idx);
const uint8_t *mead_idx_item(const struct mead_idx *idx, uint32_t i);

/* An image file and its label file, checked against each other. */
struct mead_digits;

int mead_digits_new(const char *images_path, const char *labels_path, struct mead_digits **ret,
		    char *err, size_t err_len);
void mead_digits_free(struct mead_digits *d);

uint32_t mead_digits_count(const struct mead_digits *d);
uint32_t mead_digits_rows(const struct mead_digits *d);
uint32_t mead_digits_cols(const struct mead_digits *d);
const uint8_t *mead_digits_image(const struct mead_digits *d, uint32_t i); /* rows x cols, row-major */
uint8_t mead_digits_label(const struct mead_digits *d, uint32_t i);
