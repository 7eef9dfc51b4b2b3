/* SPDX-License-Identifier: MIT */
#include "lib/core/idx.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "lib/core/err.h"

/* The largest file accepted: the 60k MNIST training images are 47 MB. */
#define IDX_MAX_BYTES (1ull << 30)
#define IDX_MAX_ITEM_DIM 65536u

struct mead_idx {
	uint32_t ndims;
	uint32_t dims[MEAD_IDX_MAX_DIMS];
	size_t item_size;
	uint8_t *data;   /* dims[0] * item_size bytes */
};

struct mead_digits {
	struct mead_idx *images, *labels;
};

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads exactly len bytes or reports why not: returns bytes read (short
 * only at end of data) or a negative errno. */
static long long read_full(gzFile f, void *buf, size_t len, const char *path, char *err, size_t err_len)
{
	size_t got = 0;
	while (got < len) {
		size_t chunk = len - got > (1u << 30) ? (1u << 30) : len - got;
		int n = gzread(f, (uint8_t *)buf + got, (unsigned)chunk);
		if (n < 0) {
			int zerr;
			const char *msg = gzerror(f, &zerr);
			if (zerr == Z_ERRNO) {
				int e = errno ? errno : EIO;
				mead_set_err(err, err_len, "%s: read error: %s", path, strerror(e));
				return -e;
			}
			mead_set_err(err, err_len, "%s: corrupt gzip data: %s", path, msg);
			return -EBADMSG;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if (got < len) {
		/* a gzip stream cut short reads as a short read plus Z_BUF_ERROR */
		int zerr = Z_OK;
		gzerror(f, &zerr);
		if (zerr != Z_OK && zerr != Z_BUF_ERROR && zerr != Z_STREAM_END) {
			mead_set_err(err, err_len, "%s: corrupt gzip data", path);
			return -EBADMSG;
		}
	}
	return (long long)got;
}

static const char *type_name(uint8_t t)
{
	switch (t) {
	case 0x08: return "unsigned byte";
	case 0x09: return "signed byte";
	case 0x0B: return "short";
	case 0x0C: return "int";
	case 0x0D: return "float";
	case 0x0E: return "double";
	}
	return NULL;
}

void mead_idx_free(struct mead_idx *idx)
{
	if (!idx)
		return;
	free(idx->data);
	free(idx);
}

int mead_idx_new(const char *path, struct mead_idx **ret, char *err, size_t err_len)
{
	if (!path || !*path) {
		mead_set_err(err, err_len, "no IDX file named");
		return -EINVAL;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		mead_set_err(err, err_len, "%s: cannot open: %s", path, strerror(e));
		return -e;
	}
	/* gzdopen reads plain files transparently, so one path serves both */
	gzFile f = gzdopen(fd, "rb");
	if (!f) {
		close(fd);
		mead_set_err(err, err_len, "%s: out of memory opening", path);
		return -ENOMEM;
	}
	gzbuffer(f, 1u << 17);

	struct mead_idx *idx = NULL;
	uint8_t head[4 + 4 * MEAD_IDX_MAX_DIMS];
	long long n = read_full(f, head, 4, path, err, err_len);
	int r;
	if (n < 0) {
		r = (int)n;
		goto fail;
	}
	if (n < 4) {
		mead_set_err(err, err_len, "%s: truncated: %lld bytes, shorter than the 4-byte IDX magic", path, n);
		r = -EBADMSG;
		goto fail;
	}
	if (head[0] != 0 || head[1] != 0 || !type_name(head[2]) || head[3] == 0) {
		mead_set_err(err, err_len, "%s: not an IDX file: magic %02x%02x%02x%02x, expected 0000TTDD "
			"(TT element type 08..0e, DD dimensions)", path, head[0], head[1], head[2], head[3]);
		r = -EBADMSG;
		goto fail;
	}
	if (head[2] != 0x08) {
		mead_set_err(err, err_len, "%s: IDX elements of type %s (0x%02x): only unsigned bytes (0x08) are read",
			path, type_name(head[2]), head[2]);
		r = -EPROTONOSUPPORT;
		goto fail;
	}
	uint32_t nd = head[3];
	if (nd > MEAD_IDX_MAX_DIMS) {
		mead_set_err(err, err_len, "%s: %u dimensions: at most %u are expected", path, nd, MEAD_IDX_MAX_DIMS);
		r = -EBADMSG;
		goto fail;
	}
	n = read_full(f, head + 4, 4 * nd, path, err, err_len);
	if (n < 0) {
		r = (int)n;
		goto fail;
	}
	if ((size_t)n < 4 * nd) {
		mead_set_err(err, err_len, "%s: truncated inside the header (%u dimensions announced)", path, nd);
		r = -EBADMSG;
		goto fail;
	}
	idx = calloc(1, sizeof(*idx));
	if (!idx) {
		r = -ENOMEM;
		mead_set_err(err, err_len, "%s: out of memory", path);
		goto fail;
	}
	idx->ndims = nd;
	unsigned long long total = 1, item = 1;
	for (uint32_t i = 0; i < nd; i++) {
		idx->dims[i] = be32(head + 4 + 4 * i);
		if (i > 0 && (idx->dims[i] == 0 || idx->dims[i] > IDX_MAX_ITEM_DIM)) {
			mead_set_err(err, err_len, "%s: dimension %u is %u: expected 1..%u", path, i, idx->dims[i],
				IDX_MAX_ITEM_DIM);
			r = -EBADMSG;
			goto fail;
		}
		if (i > 0)
			item *= idx->dims[i];
		total *= idx->dims[i];
		if (total > IDX_MAX_BYTES || item > IDX_MAX_BYTES) {
			mead_set_err(err, err_len, "%s: dimensions announce more than %llu bytes of data", path,
				(unsigned long long)IDX_MAX_BYTES);
			r = -EBADMSG;
			goto fail;
		}
	}
	idx->item_size = (size_t)item;
	idx->data = malloc(total ? (size_t)total : 1);
	if (!idx->data) {
		r = -ENOMEM;
		mead_set_err(err, err_len, "%s: out of memory for %llu bytes", path, total);
		goto fail;
	}
	n = read_full(f, idx->data, (size_t)total, path, err, err_len);
	if (n < 0) {
		r = (int)n;
		goto fail;
	}
	if ((unsigned long long)n < total) {
		mead_set_err(err, err_len, "%s: truncated: the header announces %u items (%llu bytes of data), "
			"the file holds %lld bytes", path, idx->dims[0], total, n);
		r = -EBADMSG;
		goto fail;
	}
	uint8_t extra;
	n = read_full(f, &extra, 1, path, err, err_len);
	if (n < 0) {
		r = (int)n;
		goto fail;
	}
	if (n > 0) {
		mead_set_err(err, err_len, "%s: bytes after the %llu announced by the header: not one IDX array",
			path, total);
		r = -EBADMSG;
		goto fail;
	}
	gzclose(f);
	*ret = idx;
	return 0;
fail:
	mead_idx_free(idx);
	gzclose(f);
	return r;
}

uint32_t mead_idx_ndims(const struct mead_idx *idx)
{
	return idx->ndims;
}

uint32_t mead_idx_dim(const struct mead_idx *idx, uint32_t i)
{
	return i < idx->ndims ? idx->dims[i] : 0;
}

size_t mead_idx_item_size(const struct mead_idx *idx)
{
	return idx->item_size;
}

const uint8_t *mead_idx_item(const struct mead_idx *idx, uint32_t i)
{
	if (i >= idx->dims[0])
		return NULL;
	return idx->data + (size_t)i * idx->item_size;
}

void mead_digits_free(struct mead_digits *d)
{
	if (!d)
		return;
	mead_idx_free(d->images);
	mead_idx_free(d->labels);
	free(d);
}

int mead_digits_new(const char *images_path, const char *labels_path, struct mead_digits **ret,
		    char *err, size_t err_len)
{
	struct mead_idx *im = NULL, *lb = NULL;
	int r = mead_idx_new(images_path, &im, err, err_len);
	if (r < 0)
		return r;
	if (im->ndims != 3) {
		mead_set_err(err, err_len, "%s: %u dimensions: an image file has 3 (count x rows x cols)",
			images_path, im->ndims);
		mead_idx_free(im);
		return -EINVAL;
	}
	r = mead_idx_new(labels_path, &lb, err, err_len);
	if (r < 0) {
		mead_idx_free(im);
		return r;
	}
	if (lb->ndims != 1) {
		mead_set_err(err, err_len, "%s: %u dimensions: a label file has 1", labels_path, lb->ndims);
		r = -EINVAL;
	} else if (lb->dims[0] != im->dims[0]) {
		mead_set_err(err, err_len, "%s holds %u labels but %s holds %u images: not a pair",
			labels_path, lb->dims[0], images_path, im->dims[0]);
		r = -EINVAL;
	}
	struct mead_digits *d = NULL;
	if (r == 0 && !(d = calloc(1, sizeof(*d)))) {
		mead_set_err(err, err_len, "out of memory");
		r = -ENOMEM;
	}
	if (r < 0) {
		mead_idx_free(im);
		mead_idx_free(lb);
		return r;
	}
	d->images = im;
	d->labels = lb;
	*ret = d;
	return 0;
}

uint32_t mead_digits_count(const struct mead_digits *d)
{
	return d->images->dims[0];
}

uint32_t mead_digits_rows(const struct mead_digits *d)
{
	return d->images->dims[1];
}

uint32_t mead_digits_cols(const struct mead_digits *d)
{
	return d->images->dims[2];
}

const uint8_t *mead_digits_image(const struct mead_digits *d, uint32_t i)
{
	return mead_idx_item(d->images, i);
}

uint8_t mead_digits_label(const struct mead_digits *d, uint32_t i)
{
	const uint8_t *p = mead_idx_item(d->labels, i);
	return p ? *p : 0;
}
