/* SPDX-License-Identifier: MIT */
/*
 * Scoring: each trial by the culture's own rule and by both readouts, into
 * its block's figures, published as one JSON object per trial
 * (--publish), and the summary at the end (docs/readout.md, "Output").
 */
#pragma once

#include "readout/readout.h"

/* Training trials are stored for the fits; test-phase and validation
 * trials are predicted and scored (the first trial of a test-phase block
 * fits the readouts on what came before it). */
void mead_readout_score_trial(struct mead_readout *s, const struct mead_trial *t);

/* The summary on stdout: one line, or one JSON object with --json. */
void mead_readout_print_summary(struct mead_readout *s, double elapsed);
