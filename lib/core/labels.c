/* SPDX-License-Identifier: MIT */
#include "lib/core/labels.h"

#include <errno.h>
#include <string.h>

#include "lib/core/err.h"

static void add_rows(struct mead_label_layout *l, uint32_t c, uint32_t r0, uint32_t r1, uint32_t col)
{
	for (uint32_t r = r0; r < r1 && l->n_cells[c] < MEAD_LABEL_MAX_CELLS; r++) {
		l->cells[c][l->n_cells[c]].row = (uint16_t)r;
		l->cells[c][l->n_cells[c]].col = (uint16_t)col;
		l->n_cells[c]++;
	}
}

int mead_label_layout_build(uint32_t n_classes, uint32_t rows, uint32_t label_column,
			    struct mead_label_layout *ret, char *err, size_t err_len)
{
	struct mead_label_layout l;
	memset(&l, 0, sizeof(l));
	l.n_classes = n_classes;
	if (n_classes <= 1) {
		*ret = l;
		return 0;
	}
	if (n_classes > MEAD_LABEL_MAX_CLASSES) {
		mead_set_err(err, err_len, "a label layout exists for 2, 3 or 4 classes, not %u "
			"(turn the label off to use more classes)", n_classes);
		return -EINVAL;
	}
	if (rows < n_classes || rows > MEAD_LABEL_MAX_CELLS) {
		mead_set_err(err, err_len, "%u label rows cannot carry %u classes", rows, n_classes);
		return -EINVAL;
	}
	uint32_t col = label_column, b;
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
		} else if (rows == 6) {
			if (col == 0) {
				mead_set_err(err, err_len, "4 classes on 6 rows use the label column and the one "
					"to its left: label column 0 has none");
				return -EINVAL;
			}
			/* 3 cells per class over two columns, as the reference lays them */
			add_rows(&l, 0, 0, 2, col - 1);
			add_rows(&l, 0, 0, 1, col);
			add_rows(&l, 1, 2, 3, col - 1);
			add_rows(&l, 1, 1, 3, col);
			add_rows(&l, 2, 3, 5, col - 1);
			add_rows(&l, 2, 3, 4, col);
			add_rows(&l, 3, 5, 6, col - 1);
			add_rows(&l, 3, 4, 6, col);
		} else {
			mead_set_err(err, err_len, "4 classes need a multiple of 4 label rows, or 6; got %u", rows);
			return -EINVAL;
		}
		break;
	}
	*ret = l;
	return 0;
}
