/* SPDX-License-Identifier: MIT */
#pragma once

#include "mead/driver.h"
#include "config/config.h"

#define MEAD_LAYOUT_MAX_ELECTRODES 256

struct mead_layout {
	struct mead_layout_view view;
	struct mead_electrode electrodes[MEAD_LAYOUT_MAX_ELECTRODES];
};

/* Build the layout the configuration describes.  -EINVAL with err naming the
 * key at fault (labels count, excluded index out of range, ...). */
int mead_layout_build(const struct mead_config *cfg, struct mead_layout *ret, char *err, size_t err_len);

/* Index of the electrode with this label, or -ENOENT. */
int mead_layout_find_label(const struct mead_layout_view *layout, const char *label);
