/* SPDX-License-Identifier: MIT */
/*
 * What the readout learns of the rig from the daemon's status messages and
 * a recording's metadata (both one JSON object, docs/readout.md): the
 * electrode grid (a "layout" object's "rows" and "cols") and the neurons
 * under each electrode (a "neurons_per_electrode" array, the twin driver's,
 * inside "driver").  Each is the first member of that name anywhere in the
 * document, so a driver's own description may carry them.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "readout/trials.h"

struct mead_rig_info {
	bool has_grid;            /* rows, cols > 0 and rows x cols <= MEAD_TRIALS_MAX_ELECTRODES */
	uint32_t rows, cols;
	uint32_t n_neurons;       /* 0: no usable neurons_per_electrode */
	uint32_t neurons[MEAD_TRIALS_MAX_ELECTRODES];
};

/* Fills *ret from json (len bytes, need not be terminated).  A member of
 * the wrong shape (a grid too large, a count that is not an unsigned
 * 32-bit integer) is left out.  -EINVAL with err saying where, when the
 * text is not one valid JSON object; -ENOMEM, -E2BIG. */
int mead_rig_info_parse(const char *json, size_t len, struct mead_rig_info *ret, char *err, size_t err_len);
