/* SPDX-License-Identifier: MIT */
/*
 * The one way a library hands a message for a person back to its caller:
 * a bounded buffer filled with printf-style text.  NULL or empty buffers
 * are allowed, so callers that only want the errno need not pass one.
 */
#pragma once

#include <stddef.h>

void mead_set_err(char *err, size_t err_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
