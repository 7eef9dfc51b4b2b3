/* SPDX-License-Identifier: MIT */
/*
 * The one boolean parser: what the configuration accepts, the driver
 * options accept, and nothing else (as systemd keeps one parse_boolean()).
 */
#pragma once

#include <stdbool.h>

/* true, yes, on / false, no, off, in any case.  Returns 0 and *ret, or
 * -EINVAL with *ret untouched. */
int mead_parse_bool(const char *text, bool *ret);

/* A spike threshold as people write it: "5.5x" (times the noise estimate,
 * MEAD_THRESHOLD_K_MIN..MAX) or "-40uV", "40 uV", "40µV" (a magnitude, up
 * to MEAD_THRESHOLD_UV_MAX; the sign is the detector's polarity, not the
 * threshold's).  Returns 0, or -EINVAL with the outputs untouched. */
int mead_parse_threshold(const char *text, int *ret_mode, double *ret_value);
