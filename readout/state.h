/* SPDX-License-Identifier: MIT */
/*
 * mead-readout's saved state (--save, --load; docs/readout.md, "Saved
 * state"): both readouts in one file, little-endian,
 *   "MEADREAD" | u32 version (1) | u32 flags (1: culture, 2: pixels)
 * then each readout present as mead_model_write writes it.
 */
#pragma once

#include <stddef.h>

#include "readout/model.h"

/* Writes the readouts present (pixel may be NULL) through path.tmp and a
 * rename.  0, or a negative errno with err naming the file. */
int mead_readout_state_save(const char *path, const struct mead_model *culture, const struct mead_model *pixel,
			    char *err, size_t err_len);

/* Reads the readouts path holds (*pixel NULL when it holds none) with the
 * training schedule of o.  0, or a negative errno (-EINVAL: not such a file,
 * or damaged) with err naming the file; nothing is returned on failure. */
int mead_readout_state_load(const char *path, const struct mead_model_options *o, struct mead_model **culture,
			    struct mead_model **pixel, char *err, size_t err_len);
