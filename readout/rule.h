/* SPDX-License-Identifier: MIT */
/*
 * The culture's own decision rule (docs/digital-twin.md): with no label
 * input, class c scores the spikes of the neurons lying in c's label cells
 * divided by how many neurons lie there; the prediction is the argmax.
 * The label cells are the protocol's label layout (protocol/encode.h,
 * mead_label_layout_build), turned into electrode indices of the grid.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEAD_RULE_MAX_CLASSES 4u
#define MEAD_RULE_MAX_CELLS 64u

struct mead_rule_layout {
	uint32_t rows, cols;   /* electrode index = row * cols + col */
	uint32_t n_classes;    /* 0: no label cells (no-label mode) */
	uint32_t n_cells[MEAD_RULE_MAX_CLASSES];
	uint16_t cells[MEAD_RULE_MAX_CLASSES][MEAD_RULE_MAX_CELLS]; /* electrode indices */
};

/* 2 classes: the label column split into a top and a bottom half (an odd
 * middle row silent); 3: blocks of rows/3 rows (with rows % 3 == 2 the two
 * spare rows separate the blocks); 4: four equal blocks when rows % 4 == 0,
 * and with 6 rows 3 cells per class over the label column and the one left
 * of it.  n_classes 0 or 1, or more than 4: no label cells.  -EINVAL with a
 * message when the grid cannot carry the classes. */
int mead_rule_layout_build(uint32_t rows, uint32_t cols, uint32_t label_col, uint32_t n_classes,
			   struct mead_rule_layout *ret, char *err, size_t err_len);

/* True if electrode e is a label cell of some class. */
bool mead_rule_is_label_cell(const struct mead_rule_layout *l, uint32_t e);

/* neurons: per electrode (NULL: one each).  A class whose cells hold no
 * neuron at all scores its raw spike count (zero on a twin, where an empty
 * cell records nothing) rather than dividing by zero.
 * scores (n_classes, may be NULL).  Returns the argmax, lowest class on
 * ties, *tie set when the best score is shared; -EINVAL without label cells. */
int mead_rule_predict(const struct mead_rule_layout *l, const uint32_t *counts,
		      const uint32_t *neurons, uint32_t n_neurons, double *scores, bool *tie);
