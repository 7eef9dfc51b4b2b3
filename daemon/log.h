/* SPDX-License-Identifier: MIT */
/* Daemon-layer logging to stderr, with sd-daemon priority prefixes when
 * stderr is the journal.  Never called from the real-time thread. */
#pragma once

#include <syslog.h>

void mead_log_init(const char *ident);
void mead_log(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) mead_log(LOG_ERR, __VA_ARGS__)
#define log_warning(...) mead_log(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) mead_log(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) mead_log(LOG_INFO, __VA_ARGS__)
