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
