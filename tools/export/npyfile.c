/* SPDX-License-Identifier: MIT */
#include "tools/export/npyfile.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

int npy_header(FILE *f, const char *descr, const char *shape)
{
	char h[NPY_HEADER];
	int len;

	memset(h, ' ', sizeof(h));
	memcpy(h, "\x93NUMPY\x01\x00", 8);
	uint16_t hl = NPY_HEADER - 10;
	h[8] = (char)(hl & 0xff);
	h[9] = (char)(hl >> 8);
	len = snprintf(h + 10, sizeof(h) - 10, "{'descr': %s, 'fortran_order': False, 'shape': %s, }", descr, shape);
	if (len < 0 || len >= NPY_HEADER - 11)
		return -E2BIG;
	h[10 + len] = ' ';
	h[NPY_HEADER - 1] = '\n';
	if (fseeko(f, 0, SEEK_SET) < 0 || fwrite(h, 1, sizeof(h), f) != sizeof(h))
		return -EIO;
	return 0;
}

static int rewrite_header(struct npy *n)
{
	char shape[96];
	snprintf(shape, sizeof(shape), "(%" PRIu64 "%s,)", n->rows, n->shape_tail);
	int rc = npy_header(n->f, n->descr, shape);
	if (rc == 0 && fseeko(n->f, 0, SEEK_END) < 0)
		rc = -EIO;
	return rc;
}

int npy_open(struct npy *n, const char *dir, const char *name, const char *descr, const char *shape_tail,
	     size_t item)
{
	memset(n, 0, sizeof(*n));
	if (asprintf(&n->path, "%s/%s", dir, name) < 0) {
		n->path = NULL;
		return -ENOMEM;
	}
	n->descr = descr;
	snprintf(n->shape_tail, sizeof(n->shape_tail), "%s", shape_tail);
	n->item = item;
	n->f = fopen(n->path, "wb");
	if (!n->f) {
		int e = errno;
		fprintf(stderr, "mead-export: %s: %s\n", n->path, strerror(e));
		free(n->path);
		n->path = NULL;
		return -e;
	}
	if (rewrite_header(n) < 0) {
		fprintf(stderr, "mead-export: %s: cannot write\n", n->path);
		return -EIO;
	}
	return 0;
}

int npy_write(struct npy *n, const void *rows, uint64_t count)
{
	size_t len = (size_t)count * n->item;
	if (len && fwrite(rows, 1, len, n->f) != len)
		return -EIO;
	n->rows += count;
	return 0;
}

int npy_close(struct npy *n)
{
	int rc = 0;
	if (!n->f) {
		free(n->path);
		n->path = NULL;
		return 0;
	}
	if (rewrite_header(n) < 0 || fflush(n->f) != 0)
		rc = -EIO;
	if (fclose(n->f) != 0)
		rc = -EIO;
	n->f = NULL;
	if (rc < 0)
		fprintf(stderr, "mead-export: %s: write failed\n", n->path);
	free(n->path);
	n->path = NULL;
	return rc;
}
