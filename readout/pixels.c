/* SPDX-License-Identifier: MIT */
#include "readout/pixels.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static void set_err(char *err, size_t len, const char *fmt, ...)
{
	if (!err || len == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

static int read_exact(gzFile f, void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len > 0) {
		unsigned chunk = len > (1u << 30) ? (1u << 30) : (unsigned)len;
		int r = gzread(f, p, chunk);
		if (r <= 0)
			return -EIO;
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

int mead_idx_load(const char *path, struct mead_idx **ret, char *err, size_t err_len)
{
	gzFile f = gzopen(path, "rb");
	if (!f) {
		int e = errno ? errno : ENOENT;
		set_err(err, err_len, "%s: cannot open: %s", path, strerror(e));
		return -e;
	}
	uint8_t magic[4];
	if (read_exact(f, magic, 4) < 0) {
		set_err(err, err_len, "%s: truncated: no IDX magic", path);
		gzclose(f);
		return -EINVAL;
	}
	/* 0x00 0x00 type ndims; 0x08 is unsigned byte, the only type MNIST uses. */
	if (magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] < 1 || magic[3] > 3) {
		set_err(err, err_len, "%s: bad IDX magic %02x%02x%02x%02x (want 0x00000801 or 0x00000803)",
			path, magic[0], magic[1], magic[2], magic[3]);
		gzclose(f);
		return -EINVAL;
	}
	uint32_t dims[3] = {1, 1, 1};
	for (unsigned i = 0; i < magic[3]; i++) {
		uint8_t b[4];
		if (read_exact(f, b, 4) < 0) {
			set_err(err, err_len, "%s: truncated header", path);
			gzclose(f);
			return -EINVAL;
		}
		dims[i] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
	}
	struct mead_idx *x = calloc(1, sizeof(*x));
	if (!x) {
		gzclose(f);
		return -ENOMEM;
	}
	x->n = dims[0];
	x->rows = magic[3] >= 2 ? dims[1] : 1;
	x->cols = magic[3] >= 3 ? dims[2] : 1;
	x->item_size = (size_t)x->rows * x->cols;
	if (x->item_size == 0 || x->item_size > (1u << 24) || x->n > (1u << 28)) {
		set_err(err, err_len, "%s: implausible dimensions %u x %u x %u", path, x->n, x->rows, x->cols);
		mead_idx_free(x);
		gzclose(f);
		return -EINVAL;
	}
	size_t total = (size_t)x->n * x->item_size;
	x->data = malloc(total ? total : 1);
	if (!x->data) {
		mead_idx_free(x);
		gzclose(f);
		return -ENOMEM;
	}
	if (read_exact(f, x->data, total) < 0) {
		set_err(err, err_len, "%s: truncated: header announces %u items of %zu bytes", path, x->n,
			x->item_size);
		mead_idx_free(x);
		gzclose(f);
		return -EINVAL;
	}
	gzclose(f);
	*ret = x;
	return 0;
}

void mead_idx_free(struct mead_idx *x)
{
	if (!x)
		return;
	free(x->data);
	free(x);
}

static double triangle(double x)
{
	x = fabs(x);
	return x < 1.0 ? 1.0 - x : 0.0;
}

/* One output position's source range and normalised weights (at most 64). */
static int coeffs(uint32_t in, uint32_t out, uint32_t i, int *xmin, double *w)
{
	double scale = (double)in / out;
	double fscale = scale < 1.0 ? 1.0 : scale;
	double support = fscale; /* bilinear support 1, widened when shrinking */
	double center = (i + 0.5) * scale;
	int lo = (int)(center - support + 0.5);
	int hi = (int)(center + support + 0.5);
	if (lo < 0)
		lo = 0;
	if (hi > (int)in)
		hi = (int)in;
	if (hi - lo > 64)
		hi = lo + 64;
	double sum = 0;
	for (int x = 0; x < hi - lo; x++) {
		w[x] = triangle((x + lo - center + 0.5) / fscale);
		sum += w[x];
	}
	for (int x = 0; x < hi - lo && sum > 0; x++)
		w[x] /= sum;
	*xmin = lo;
	return hi - lo;
}

/* Pillow's fixed point: 22 fractional bits, half added before the shift. */
#define PRECISION_BITS 22

static void quantise(const double *w, int n, int32_t *k)
{
	for (int x = 0; x < n; x++)
		k[x] = (int32_t)(w[x] < 0 ? -0.5 + w[x] * (1 << PRECISION_BITS)
					  : 0.5 + w[x] * (1 << PRECISION_BITS));
}

static uint8_t clip8(int32_t v)
{
	v >>= PRECISION_BITS;
	return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

void mead_resize_aa(const uint8_t *src, uint32_t src_w, uint32_t src_h,
		    uint8_t *dst, uint32_t dst_w, uint32_t dst_h, uint8_t *tmp)
{
	double w[64];
	int32_t k[64];
	int lo, n;
	for (uint32_t xx = 0; xx < dst_w; xx++) {
		n = coeffs(src_w, dst_w, xx, &lo, w);
		quantise(w, n, k);
		for (uint32_t y = 0; y < src_h; y++) {
			int32_t s = 1 << (PRECISION_BITS - 1);
			for (int i = 0; i < n; i++)
				s += src[(size_t)y * src_w + lo + i] * k[i];
			/* Pillow skips an axis that keeps its size. */
			tmp[(size_t)y * dst_w + xx] = dst_w == src_w ? src[(size_t)y * src_w + xx] : clip8(s);
		}
	}
	for (uint32_t yy = 0; yy < dst_h; yy++) {
		n = coeffs(src_h, dst_h, yy, &lo, w);
		quantise(w, n, k);
		for (uint32_t x = 0; x < dst_w; x++) {
			int32_t s = 1 << (PRECISION_BITS - 1);
			for (int i = 0; i < n; i++)
				s += tmp[(size_t)(lo + i) * dst_w + x] * k[i];
			dst[(size_t)yy * dst_w + x] = dst_h == src_h ? tmp[(size_t)yy * dst_w + x] : clip8(s);
		}
	}
}
