/* SPDX-License-Identifier: MIT */
/*
 * The pixel baseline's inputs: the images a trial's item event indexes,
 * resized to the grid the protocol stimulated (lib/core/resize.h, the
 * protocol's own resize) and divided by 255, so the baseline sees what the
 * culture was shown.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mead_pixels;

/* Opens an IDX image file (count x rows x cols, gzip or plain) and sizes
 * the features grid x grid (0: the images' own size).  Errors as
 * lib/core/idx.h, with -EINVAL for a file that is not count x rows x cols;
 * err names the file and what is wrong. */
int mead_pixels_open(const char *path, uint32_t grid, struct mead_pixels **ret, char *err, size_t err_len);
void mead_pixels_free(struct mead_pixels *p);

uint32_t mead_pixels_count(const struct mead_pixels *p);
uint32_t mead_pixels_rows(const struct mead_pixels *p);   /* of the file's images */
uint32_t mead_pixels_cols(const struct mead_pixels *p);
/* Features per image: the grid's cells. */
uint32_t mead_pixels_n(const struct mead_pixels *p);

/* x[mead_pixels_n] gets item's features in [0, 1], row-major; false when
 * the file holds no such item (or memory for the resize ran out). */
bool mead_pixels_features(struct mead_pixels *p, int64_t item, float *x);
