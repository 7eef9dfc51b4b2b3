/* SPDX-License-Identifier: MIT */
/* The IDX reader on an independent distribution: Debian's Fashion-MNIST
 * (package dataset-fashion-mnist).  Skipped (77) when it is not installed. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lib/core/idx.h"

#define DIR "/usr/share/datasets/fashion-mnist/"

static int check(const char *images, const char *labels, uint32_t want)
{
	char err[512];
	struct mead_digits *d = NULL;
	int r = mead_digits_new(DIR, labels, &d, err, sizeof(err));
	if (r == 0) {
		fprintf(stderr, "a directory read as an image file\n");
		mead_digits_free(d);
		return 1;
	}
	r = mead_digits_new(images, labels, &d, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	int bad = 0;
	if (mead_digits_count(d) != want || mead_digits_rows(d) != 28 || mead_digits_cols(d) != 28) {
		fprintf(stderr, "%s: %u x %u x %u, expected %u x 28 x 28\n", images, mead_digits_count(d),
			mead_digits_rows(d), mead_digits_cols(d), want);
		bad = 1;
	}
	/* ten balanced classes */
	uint32_t n[10] = { 0 };
	for (uint32_t i = 0; i < mead_digits_count(d); i++) {
		uint8_t l = mead_digits_label(d, i);
		if (l > 9) {
			fprintf(stderr, "%s: label %u at %u\n", labels, l, i);
			bad = 1;
			break;
		}
		n[l]++;
	}
	for (int c = 0; c < 10; c++)
		if (n[c] != want / 10) {
			fprintf(stderr, "%s: class %d has %u items, expected %u\n", labels, c, n[c], want / 10);
			bad = 1;
		}
	mead_digits_free(d);
	return bad;
}

int main(void)
{
	if (access(DIR "t10k-images-idx3-ubyte.gz", R_OK) != 0) {
		printf("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist): skipped\n");
		return 77;
	}
	int bad = check(DIR "t10k-images-idx3-ubyte.gz", DIR "t10k-labels-idx1-ubyte.gz", 10000);
	bad |= check(DIR "train-images-idx3-ubyte.gz", DIR "train-labels-idx1-ubyte.gz", 60000);
	return bad;
}
