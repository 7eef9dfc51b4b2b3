/* SPDX-License-Identifier: MIT */
#include "config/layout.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void add_electrode(struct mead_layout *l, uint16_t row, uint16_t col, float pitch, const char *label)
{
	struct mead_electrode *e = &l->electrodes[l->view.count++];

	e->row = row;
	e->col = col;
	e->x_um = (float)col * pitch;
	e->y_um = (float)row * pitch;
	snprintf(e->label, sizeof(e->label), "%s", label);
	e->excluded = false;
}

/* MCS 60MEA200/30: an 8 x 8 grid without its corners.  Labels are
 * column digit then row digit (12 = column 1, row 2), and MCS numbers the
 * electrodes column by column, so index order follows the labels.  Electrode
 * 15 is the internal reference. */
static void build_mcs60(struct mead_layout *l)
{
	char label[8];

	l->view.rows = 8;
	l->view.cols = 8;
	l->view.pitch_um = 200.0f;
	for (unsigned c = 1; c <= 8; c++)
		for (unsigned r = 1; r <= 8; r++) {
			if ((c == 1 || c == 8) && (r == 1 || r == 8))
				continue;
			snprintf(label, sizeof(label), "%u%u", c, r);
			add_electrode(l, (uint16_t)(r - 1), (uint16_t)(c - 1), 200.0f, label);
		}
	l->electrodes[mead_layout_find_label(&l->view, "15")].excluded = true;
}

static void build_grid(struct mead_layout *l, uint32_t rows, uint32_t cols, float pitch,
		       const struct mead_cfg_uint_list *absent)
{
	char label[8];

	l->view.rows = rows;
	l->view.cols = cols;
	l->view.pitch_um = pitch;
	for (uint32_t r = 0; r < rows; r++)
		for (uint32_t c = 0; c < cols; c++) {
			bool skip = false;
			for (uint32_t i = 0; absent && i < absent->n; i++)
				skip |= absent->v[i] == r * cols + c;
			if (skip)
				continue;
			snprintf(label, sizeof(label), "%u", l->view.count);
			add_electrode(l, (uint16_t)r, (uint16_t)c, pitch, label);
		}
}

int mead_layout_build(const struct mead_config *cfg, struct mead_layout *ret, char *err, size_t err_len)
{
	static struct mead_layout l;   /* large; built on the main thread only */
	const typeof(cfg->layout) *c = &cfg->layout;

	memset(&l, 0, sizeof(l));
	l.view.electrodes = l.electrodes;
	switch (c->preset) {
	case MEAD_LAYOUT_GRID_6X10:
		build_grid(&l, 6, 10, 500.0f, NULL);
		break;
	case MEAD_LAYOUT_MCS_60MEA200:
		build_mcs60(&l);
		break;
	case MEAD_LAYOUT_CUSTOM:
		if ((uint64_t)c->rows * c->cols > MEAD_LAYOUT_MAX_ELECTRODES) {
			snprintf(err, err_len, "layout: %u x %u electrodes is more than the %d supported",
				 c->rows, c->cols, MEAD_LAYOUT_MAX_ELECTRODES);
			return -EINVAL;
		}
		for (uint32_t i = 0; i < c->absent.n; i++)
			if (c->absent.v[i] >= c->rows * c->cols) {
				snprintf(err, err_len, "layout.absent: position %u is outside the %u x %u grid",
					 c->absent.v[i], c->rows, c->cols);
				return -EINVAL;
			}
		build_grid(&l, c->rows, c->cols, (float)c->pitch_um, &c->absent);
		break;
	default:
		snprintf(err, err_len, "layout.preset: unknown preset %d", c->preset);
		return -EINVAL;
	}

	if (c->labels.n > 0) {
		if (c->labels.n != l.view.count) {
			snprintf(err, err_len, "layout.labels: %u labels given for %u electrodes", c->labels.n, l.view.count);
			return -EINVAL;
		}
		for (uint32_t i = 0; i < c->labels.n; i++) {
			if (strlen(c->labels.v[i]) >= sizeof(l.electrodes[i].label) || c->labels.v[i][0] == '\0') {
				snprintf(err, err_len, "layout.labels: label %u (\"%s\") must be 1 to %zu characters",
					 i, c->labels.v[i], sizeof(l.electrodes[i].label) - 1);
				return -EINVAL;
			}
			for (uint32_t j = 0; j < i; j++)
				if (strcmp(c->labels.v[i], c->labels.v[j]) == 0) {
					snprintf(err, err_len, "layout.labels: label \"%s\" is used twice", c->labels.v[i]);
					return -EINVAL;
				}
			snprintf(l.electrodes[i].label, sizeof(l.electrodes[i].label), "%s", c->labels.v[i]);
		}
	}
	for (uint32_t i = 0; i < c->excluded.n; i++) {
		if (c->excluded.v[i] >= l.view.count) {
			snprintf(err, err_len, "layout.excluded: electrode %u does not exist (the layout has %u)",
				 c->excluded.v[i], l.view.count);
			return -EINVAL;
		}
		l.electrodes[c->excluded.v[i]].excluded = true;
	}

	*ret = l;
	ret->view.electrodes = ret->electrodes;
	return 0;
}

int mead_layout_find_label(const struct mead_layout_view *layout, const char *label)
{
	for (uint32_t i = 0; i < layout->count; i++)
		if (strcmp(layout->electrodes[i].label, label) == 0)
			return (int)i;
	return -ENOENT;
}
