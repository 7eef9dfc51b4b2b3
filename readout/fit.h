/* SPDX-License-Identifier: MIT */
/*
 * Fitting the two readouts (docs/readout.md, "What the readouts are fitted
 * on"): every trial's features are stored, and each fit chooses, by
 * --fit-on and --fit-blocks, the trials of earlier blocks it learns from.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "readout/readout.h"

/* Appends one trial's features (px NULL: no image); -ENOMEM. */
int mead_readout_store_add(struct mead_readout_store *st, const float *cx, const float *px, int32_t cls,
			   uint32_t block);
void mead_readout_store_free(struct mead_readout_store *st);

/* Whether the k-th (0-based) trial of a sequence keeps its label under
 * --label-fraction f: exactly floor(k f) of the first k do, spread evenly. */
bool mead_readout_keeps_label(uint64_t k, double f);

/* Fits both readouts for the trials of block `before` (INT64_MAX: the end
 * of the input) on the selection --fit-on names, if it differs from the
 * last fit's.  Only trials of earlier blocks are ever used. */
void mead_readout_fit(struct mead_readout *s, int64_t before);
