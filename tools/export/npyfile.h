/* SPDX-License-Identifier: MIT */
/*
 * NumPy .npy files (format 1.0), written as rows arrive: the header holds
 * the row count, so it is written again when the file is closed.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define NPY_HEADER 256   /* total header bytes, a multiple of 64 */

struct npy {
	FILE *f;
	char *path;
	const char *descr;       /* "'<i2'" or "[('sample', '<u8'), ...]" */
	char shape_tail[48];     /* "" for 1-D, ", 60" for (rows, 60) */
	size_t item;             /* bytes per row */
	uint64_t rows;
};

/* The header of an array of the given shape ("(12,)", "(3, 1, 0)") at the
 * start of f. */
int npy_header(FILE *f, const char *descr, const char *shape);

/* dir/name, header for 0 rows; -errno with the error printed. */
int npy_open(struct npy *n, const char *dir, const char *name, const char *descr, const char *shape_tail,
	     size_t item);
int npy_write(struct npy *n, const void *rows, uint64_t count);
/* Rewrites the header with the row count and closes; 0 for a closed one. */
int npy_close(struct npy *n);
