/* SPDX-License-Identifier: MIT */
#include "readout/rule.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/core/err.h"
#include "lib/core/labels.h"

int mead_rule_layout_build(uint32_t rows, uint32_t cols, uint32_t label_col, uint32_t n_classes,
			   struct mead_rule_layout *ret, char *err, size_t err_len)
{
	struct mead_rule_layout l;
	struct mead_label_layout cells;
	int r;

	memset(&l, 0, sizeof(l));
	l.rows = rows;
	l.cols = cols;
	if (rows == 0 || cols == 0 || rows * cols > 65535) {
		mead_set_err(err, err_len, "grid %ux%u is not usable", rows, cols);
		return -EINVAL;
	}
	if (n_classes <= 1 || n_classes > MEAD_RULE_MAX_CLASSES) {
		*ret = l;
		return 0;
	}
	if (label_col >= cols) {
		mead_set_err(err, err_len, "label column %u is outside a grid of %u columns", label_col, cols);
		return -EINVAL;
	}
	/* The label cells are the protocol's own: one layout, one implementation. */
	r = mead_label_layout_build(n_classes, rows, label_col, &cells, err, err_len);
	if (r < 0)
		return r;
	l.n_classes = cells.n_classes;
	for (uint32_t c = 0; c < cells.n_classes; c++) {
		for (uint32_t i = 0; i < cells.n_cells[c] && i < MEAD_RULE_MAX_CELLS; i++)
			l.cells[c][i] = (uint16_t)(cells.cells[c][i].row * cols + cells.cells[c][i].col);
		l.n_cells[c] = cells.n_cells[c] < MEAD_RULE_MAX_CELLS ? cells.n_cells[c] : MEAD_RULE_MAX_CELLS;
	}
	*ret = l;
	return 0;
}

bool mead_rule_is_label_cell(const struct mead_rule_layout *l, uint32_t e)
{
	for (uint32_t c = 0; c < l->n_classes; c++)
		for (uint32_t i = 0; i < l->n_cells[c]; i++)
			if (l->cells[c][i] == e)
				return true;
	return false;
}

int mead_rule_predict(const struct mead_rule_layout *l, const uint32_t *counts,
		      const uint32_t *neurons, uint32_t n_neurons, double *scores, bool *tie)
{
	if (l->n_classes < 2)
		return -EINVAL;
	int best = -1;
	double best_score = 0;
	bool shared = false;
	for (uint32_t c = 0; c < l->n_classes; c++) {
		uint64_t spikes = 0, units = 0;
		for (uint32_t i = 0; i < l->n_cells[c]; i++) {
			uint16_t e = l->cells[c][i];
			spikes += counts[e];
			units += (neurons && e < n_neurons) ? neurons[e] : 1;
		}
		double s = units ? (double)spikes / (double)units : (double)spikes;
		if (scores)
			scores[c] = s;
		if (best < 0 || s > best_score) {
			best = (int)c;
			best_score = s;
			shared = false;
		} else if (s == best_score) {
			shared = true;
		}
	}
	if (tie)
		*tie = shared;
	return best;
}
