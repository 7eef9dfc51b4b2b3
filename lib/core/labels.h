/* SPDX-License-Identifier: MIT */
/*
 * The label-cell layout of the MNIST protocol: which grid cells carry each
 * class's label.  The protocol stimulates them and the readout's culture
 * rule counts them, so both take it from here.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define MEAD_LABEL_MAX_CLASSES 4
#define MEAD_LABEL_MAX_CELLS 64

struct mead_label_cell {
	uint16_t row, col;
};

/*
 * Which grid cells carry each class's label.  2 classes: the label column
 * split into a top and a bottom half (class 0 on top; an odd middle row is
 * left silent).  3 classes: three blocks of rows/3 rows (with rows % 3 == 2
 * the two spare rows separate the blocks).  4 classes: with rows % 4 == 0,
 * four equal blocks; with 6 rows, the reference's layout of 3 cells per
 * class over the label column and the one left of it.  0 or 1 class: no
 * label cells (no-label mode).
 */
struct mead_label_layout {
	uint32_t n_classes;
	uint32_t n_cells[MEAD_LABEL_MAX_CLASSES];
	struct mead_label_cell cells[MEAD_LABEL_MAX_CLASSES][MEAD_LABEL_MAX_CELLS];
};

/* -EINVAL with a message when the combination has no layout. */
int mead_label_layout_build(uint32_t n_classes, uint32_t rows, uint32_t label_column,
			    struct mead_label_layout *ret, char *err, size_t err_len);
