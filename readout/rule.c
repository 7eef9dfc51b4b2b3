/* SPDX-License-Identifier: MIT */
#include "readout/rule.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void set_err(char *err, size_t len, const char *fmt, ...)
{
	if (!err || len == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

static void add_rows(struct mead_rule_layout *l, uint32_t c, uint32_t r0, uint32_t r1, uint32_t col)
{
	for (uint32_t r = r0; r < r1 && l->n_cells[c] < MEAD_RULE_MAX_CELLS; r++)
		l->cells[c][l->n_cells[c]++] = (uint16_t)(r * l->cols + col);
}

int mead_rule_layout_build(uint32_t rows, uint32_t cols, uint32_t label_col, uint32_t n_classes,
			   struct mead_rule_layout *ret, char *err, size_t err_len)
{
	struct mead_rule_layout l;
	memset(&l, 0, sizeof(l));
	l.rows = rows;
	l.cols = cols;
	if (rows == 0 || cols == 0 || rows * cols > 65535) {
		set_err(err, err_len, "grid %ux%u is not usable", rows, cols);
		return -EINVAL;
	}
	if (n_classes <= 1 || n_classes > MEAD_RULE_MAX_CLASSES) {
		*ret = l;
		return 0;
	}
	if (label_col >= cols) {
		set_err(err, err_len, "label column %u is outside a grid of %u columns", label_col, cols);
		return -EINVAL;
	}
	if (rows < n_classes || rows > MEAD_RULE_MAX_CELLS) {
		set_err(err, err_len, "%u label rows cannot carry %u classes", rows, n_classes);
		return -EINVAL;
	}
	l.n_classes = n_classes;
	uint32_t col = label_col, b;
	switch (n_classes) {
	case 2:
		add_rows(&l, 0, 0, rows / 2, col);
		add_rows(&l, 1, rows / 2 + (rows % 2), rows, col);
		break;
	case 3:
		b = rows / 3;
		if (rows % 3 != 2) {
			add_rows(&l, 0, 0, b, col);
			add_rows(&l, 1, b, 2 * b, col);
			add_rows(&l, 2, 2 * b, 3 * b, col);
		} else {
			add_rows(&l, 0, 0, b, col);
			add_rows(&l, 1, b + 1, 2 * b + 1, col);
			add_rows(&l, 2, 2 * b + 2, 3 * b + 2, col);
		}
		break;
	case 4:
		if (rows % 4 == 0) {
			b = rows / 4;
			for (uint32_t c = 0; c < 4; c++)
				add_rows(&l, c, c * b, (c + 1) * b, col);
		} else if (rows == 6 && col > 0) {
			add_rows(&l, 0, 0, 2, col - 1);
			add_rows(&l, 0, 0, 1, col);
			add_rows(&l, 1, 2, 3, col - 1);
			add_rows(&l, 1, 1, 3, col);
			add_rows(&l, 2, 3, 5, col - 1);
			add_rows(&l, 2, 3, 4, col);
			add_rows(&l, 3, 5, 6, col - 1);
			add_rows(&l, 3, 4, 6, col);
		} else {
			set_err(err, err_len, "4 classes need a multiple of 4 label rows, or 6 rows "
				"and a column left of the label column; got %u rows", rows);
			return -EINVAL;
		}
		break;
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
