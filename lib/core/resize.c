/* SPDX-License-Identifier: MIT */
#include "lib/core/resize.h"

#include <errno.h>
#include <stdbool.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- Resize (Pillow's ImagingResample, mode L, BILINEAR) ----------------- */

#define PRECISION_BITS (32 - 8 - 2)

static double triangle(double x)
{
	if (x < 0.0)
		x = -x;
	return x < 1.0 ? 1.0 - x : 0.0;
}

/* Fixed-point coefficients and source bounds for one axis, computed exactly
 * as Pillow's precompute_coeffs + normalize_coeffs_8bpc (box from 0 to
 * in_size, as a float like Pillow's box). */
static int axis_coeffs(uint32_t in_size, uint32_t out_size, int32_t **ret_k, int *ret_bounds_ksize,
		       int **ret_bounds)
{
	const float in0 = 0.0f, in1 = (float)in_size;
	double scale = (double)(in1 - in0) / out_size;
	double filterscale = scale < 1.0 ? 1.0 : scale;
	double support = 1.0 * filterscale;
	int ksize = (int)ceil(support) * 2 + 1;

	double *kk = calloc((size_t)out_size * ksize, sizeof(*kk));
	int32_t *ki = calloc((size_t)out_size * ksize, sizeof(*ki));
	int *bounds = calloc((size_t)out_size * 2, sizeof(*bounds));
	if (!kk || !ki || !bounds) {
		free(kk);
		free(ki);
		free(bounds);
		return -ENOMEM;
	}
	for (uint32_t xx = 0; xx < out_size; xx++) {
		double center = in0 + (xx + 0.5) * scale;
		double ww = 0.0, ss = 1.0 / filterscale;
		int xmin = (int)(center - support + 0.5);
		if (xmin < 0)
			xmin = 0;
		int xmax = (int)(center + support + 0.5);
		if (xmax > (int)in_size)
			xmax = (int)in_size;
		xmax -= xmin;
		double *k = &kk[(size_t)xx * ksize];
		for (int x = 0; x < xmax; x++) {
			double w = triangle((x + xmin - center + 0.5) * ss);
			k[x] = w;
			ww += w;
		}
		for (int x = 0; x < xmax; x++)
			if (ww != 0.0)
				k[x] /= ww;
		bounds[xx * 2] = xmin;
		bounds[xx * 2 + 1] = xmax;
	}
	for (size_t i = 0; i < (size_t)out_size * ksize; i++) {
		if (kk[i] < 0)
			ki[i] = (int32_t)(-0.5 + kk[i] * (1 << PRECISION_BITS));
		else
			ki[i] = (int32_t)(0.5 + kk[i] * (1 << PRECISION_BITS));
	}
	free(kk);
	*ret_k = ki;
	*ret_bounds_ksize = ksize;
	*ret_bounds = bounds;
	return 0;
}

static inline uint8_t clip8(int32_t in)
{
	/* arithmetic shift: Pillow's lookup table is indexed by in >> 22 */
	int32_t v = in >> PRECISION_BITS;
	if (v < 0)
		return 0;
	if (v > 255)
		return 255;
	return (uint8_t)v;
}

int mead_resize_u8(const uint8_t *src, uint32_t src_w, uint32_t src_h,
		   uint8_t *dst, uint32_t dst_w, uint32_t dst_h)
{
	if (!src || !dst || !src_w || !src_h || !dst_w || !dst_h ||
	    src_w > 65536 || src_h > 65536 || dst_w > 65536 || dst_h > 65536)
		return -EINVAL;

	int32_t *kh = NULL, *kv = NULL;
	int *bh = NULL, *bv = NULL;
	int ksh = 0, ksv = 0, r;
	uint8_t *tmp = NULL;

	if ((r = axis_coeffs(src_w, dst_w, &kh, &ksh, &bh)) < 0)
		goto out;
	if ((r = axis_coeffs(src_h, dst_h, &kv, &ksv, &bv)) < 0)
		goto out;

	/* Pillow skips a pass when that axis keeps its size (no rounding then) */
	bool need_h = dst_w != src_w, need_v = dst_h != src_h;
	int ybox_first = bv[0];
	int ybox_last = bv[dst_h * 2 - 2] + bv[dst_h * 2 - 1];
	const uint8_t *vin = src;
	uint32_t vin_w = src_w;

	if (need_h) {
		for (uint32_t i = 0; i < dst_h; i++)
			bv[i * 2] -= ybox_first;
		uint32_t th = (uint32_t)(ybox_last - ybox_first);
		tmp = malloc((size_t)dst_w * th);
		if (!tmp) {
			r = -ENOMEM;
			goto out;
		}
		for (uint32_t yy = 0; yy < th; yy++) {
			const uint8_t *row = src + (size_t)(yy + ybox_first) * src_w;
			for (uint32_t xx = 0; xx < dst_w; xx++) {
				int xmin = bh[xx * 2], xmax = bh[xx * 2 + 1];
				const int32_t *k = &kh[(size_t)xx * ksh];
				int32_t ss0 = 1 << (PRECISION_BITS - 1);
				for (int x = 0; x < xmax; x++)
					ss0 += (int32_t)row[x + xmin] * k[x];
				tmp[(size_t)yy * dst_w + xx] = clip8(ss0);
			}
		}
		vin = tmp;
		vin_w = dst_w;
	}
	if (need_v) {
		for (uint32_t yy = 0; yy < dst_h; yy++) {
			const int32_t *k = &kv[(size_t)yy * ksv];
			int ymin = bv[yy * 2], ymax = bv[yy * 2 + 1];
			for (uint32_t xx = 0; xx < vin_w; xx++) {
				int32_t ss0 = 1 << (PRECISION_BITS - 1);
				for (int y = 0; y < ymax; y++)
					ss0 += (int32_t)vin[(size_t)(y + ymin) * vin_w + xx] * k[y];
				dst[(size_t)yy * dst_w + xx] = clip8(ss0);
			}
		}
	} else {
		/* only the horizontal pass (or none): its rows are the output rows */
		for (uint32_t yy = 0; yy < dst_h; yy++)
			memcpy(dst + (size_t)yy * dst_w, vin + (size_t)yy * vin_w, dst_w);
	}
	r = 0;
out:
	free(kh);
	free(kv);
	free(bh);
	free(bv);
	free(tmp);
	return r;
}

