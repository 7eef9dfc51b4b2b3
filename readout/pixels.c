/* SPDX-License-Identifier: MIT */
#include "readout/pixels.h"

#include <errno.h>
#include <stdlib.h>

#include "lib/core/err.h"
#include "lib/core/idx.h"
#include "lib/core/resize.h"

struct mead_pixels {
	struct mead_idx *idx;
	uint32_t rows, cols;      /* of the file's images */
	uint32_t w, h;            /* the features' grid */
	uint8_t *small;           /* w x h, when the grid differs from the images */
};

void mead_pixels_free(struct mead_pixels *p)
{
	if (!p)
		return;
	mead_idx_free(p->idx);
	free(p->small);
	free(p);
}

int mead_pixels_open(const char *path, uint32_t grid, struct mead_pixels **ret, char *err, size_t err_len)
{
	struct mead_pixels *p = calloc(1, sizeof(*p));
	if (!p) {
		mead_set_err(err, err_len, "%s: out of memory", path);
		return -ENOMEM;
	}
	int r = mead_idx_new(path, &p->idx, err, err_len);
	if (r < 0) {
		free(p);
		return r;
	}
	if (mead_idx_ndims(p->idx) != 3) {
		mead_set_err(err, err_len, "%s: %u dimensions: an image file has 3 (count x rows x cols)", path,
			     mead_idx_ndims(p->idx));
		mead_pixels_free(p);
		return -EINVAL;
	}
	p->rows = mead_idx_dim(p->idx, 1);
	p->cols = mead_idx_dim(p->idx, 2);
	p->w = grid ? grid : p->cols;
	p->h = grid ? grid : p->rows;
	if ((p->w != p->cols || p->h != p->rows) && !(p->small = malloc((size_t)p->w * p->h))) {
		mead_set_err(err, err_len, "%s: out of memory", path);
		mead_pixels_free(p);
		return -ENOMEM;
	}
	*ret = p;
	return 0;
}

uint32_t mead_pixels_count(const struct mead_pixels *p)
{
	return mead_idx_dim(p->idx, 0);
}

uint32_t mead_pixels_rows(const struct mead_pixels *p)
{
	return p->rows;
}

uint32_t mead_pixels_cols(const struct mead_pixels *p)
{
	return p->cols;
}

uint32_t mead_pixels_n(const struct mead_pixels *p)
{
	return p->w * p->h;
}

bool mead_pixels_features(struct mead_pixels *p, int64_t item, float *x)
{
	if (item < 0 || (uint64_t)item >= mead_pixels_count(p))
		return false;
	const uint8_t *px = mead_idx_item(p->idx, (uint32_t)item);
	if (p->small) {
		if (mead_resize_u8(px, p->cols, p->rows, p->small, p->w, p->h) < 0)
			return false;
		px = p->small;
	}
	for (uint32_t k = 0; k < p->w * p->h; k++)
		x[k] = px[k] / 255.f;
	return true;
}
