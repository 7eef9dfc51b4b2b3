/* SPDX-License-Identifier: MIT */
/*
 * The pixel baseline's data: IDX files (gzip or not) and the antialiased
 * bilinear resize the protocol applies before stimulating, so the baseline
 * sees the same grid the culture was shown.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* An IDX file of unsigned bytes: n items of item_size bytes (rows x cols for
 * images, 1 for labels). */
struct mead_idx {
	uint32_t n;
	uint32_t rows, cols;   /* 1 x 1 for a label file */
	size_t item_size;
	uint8_t *data;
};

/* Reads path (gzip-compressed or plain: zlib reads both); -EINVAL, -EIO,
 * -ENOMEM or -ENOENT with a message on a bad magic, a truncated file or
 * an unreadable one. */
int mead_idx_load(const char *path, struct mead_idx **ret, char *err, size_t err_len);
void mead_idx_free(struct mead_idx *x);

/*
 * Resize an 8-bit image like Pillow's Image.resize(BILINEAR): a triangle
 * filter whose support widens by the scale factor when shrinking, a
 * horizontal pass then a vertical pass, with Pillow's fixed-point
 * coefficients (22 fractional bits) and rounding to 8 bits after each pass.
 * tmp: room for dst_w * src_h bytes.
 */
void mead_resize_aa(const uint8_t *src, uint32_t src_w, uint32_t src_h,
		    uint8_t *dst, uint32_t dst_w, uint32_t dst_h, uint8_t *tmp);
