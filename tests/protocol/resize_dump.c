/* SPDX-License-Identifier: MIT */
/* resize_dump IDX W H [N]: the first N images of an IDX image file resized
 * to W x H by mead_resize_u8, as raw bytes on stdout. */
#include <stdio.h>
#include <stdlib.h>

#include "lib/core/resize.h"
#include "lib/core/idx.h"

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s IDX W H [N]\n", argv[0]);
		return 2;
	}
	char err[512];
	struct mead_idx *idx = NULL;
	if (mead_idx_new(argv[1], &idx, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (mead_idx_ndims(idx) != 3) {
		fprintf(stderr, "%s: not an image file\n", argv[1]);
		return 1;
	}
	uint32_t w = (uint32_t)strtoul(argv[2], NULL, 10), h = (uint32_t)strtoul(argv[3], NULL, 10);
	uint32_t n = argc > 4 ? (uint32_t)strtoul(argv[4], NULL, 10) : mead_idx_dim(idx, 0);
	if (n > mead_idx_dim(idx, 0))
		n = mead_idx_dim(idx, 0);
	uint8_t *out = malloc((size_t)w * h);
	if (!out)
		return 1;
	for (uint32_t i = 0; i < n; i++) {
		if (mead_resize_u8(mead_idx_item(idx, i), mead_idx_dim(idx, 2), mead_idx_dim(idx, 1), out, w, h) < 0) {
			fprintf(stderr, "resize failed\n");
			return 1;
		}
		fwrite(out, 1, (size_t)w * h, stdout);
	}
	free(out);
	mead_idx_free(idx);
	return 0;
}
