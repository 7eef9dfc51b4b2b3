/* SPDX-License-Identifier: MIT */
/*
 * Runs a fuzz target over files without libFuzzer: every argument is a file
 * or a directory whose regular files (sorted by name, dot files skipped)
 * are fed one by one to LLVMFuzzerTestOneInput.  Each input sits in a heap
 * buffer of exactly its size, as under libFuzzer.  A target that finds a
 * broken invariant aborts, which fails the test; a directory with no input
 * at all fails too, so an emptied corpus cannot pass unnoticed.
 *
 *   fuzz-regress-TARGET [--allow-empty] PATH...
 */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz_common.h"

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long len;

	if (!f) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fseek(f, 0, SEEK_END) < 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0) {
		fprintf(stderr, "%s: cannot size\n", path);
		fclose(f);
		return -1;
	}
	/* Exactly len bytes (at least one allocation), nothing after them. */
	buf = malloc(len ? (size_t)len : 1);
	if (!buf || (len && fread(buf, 1, (size_t)len, f) != (size_t)len)) {
		fprintf(stderr, "%s: cannot read\n", path);
		free(buf);
		fclose(f);
		return -1;
	}
	fclose(f);
	fprintf(stderr, "%s (%ld bytes)\n", path, len);
	LLVMFuzzerTestOneInput(buf, (size_t)len);
	free(buf);
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Returns the number of inputs run, or -1. */
static long run_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, cap = 0;
	long ran = 0;

	if (!d) {
		fprintf(stderr, "%s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			char **grown = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof(*names));
			if (!grown)
				abort();
			names = grown;
		}
		if (!(names[n++] = strdup(e->d_name)))
			abort();
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), by_name);
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(dir) + strlen(names[i]) + 2;
		char *path = malloc(len);
		struct stat st;

		if (!path)
			abort();
		snprintf(path, len, "%s/%s", dir, names[i]);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			if (run_file(path) < 0)
				ran = -1;
			else if (ran >= 0)
				ran++;
		}
		free(path);
		free(names[i]);
	}
	free(names);
	return ran;
}

int main(int argc, char **argv)
{
	bool allow_empty = false;
	long total = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		long ran;

		if (strcmp(argv[i], "--allow-empty") == 0) {
			allow_empty = true;
			continue;
		}
		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		if (S_ISDIR(st.st_mode)) {
			ran = run_dir(argv[i]);
			if (ran == 0 && !allow_empty) {
				fprintf(stderr, "%s: no inputs\n", argv[i]);
				return 1;
			}
		} else {
			ran = run_file(argv[i]) < 0 ? -1 : 1;
		}
		if (ran < 0)
			return 1;
		total += ran;
	}
	if (total == 0 && !allow_empty) {
		fprintf(stderr, "usage: %s [--allow-empty] FILE|DIR...\n", argv[0]);
		return 1;
	}
	printf("%ld inputs ran\n", total);
	return 0;
}
