/* SPDX-License-Identifier: MIT */
/* systemd readiness/watchdog/status notifications.  Uses libsystemd when
 * built with it, else speaks the NOTIFY_SOCKET datagram protocol itself;
 * without NOTIFY_SOCKET every call is a no-op returning 0. */
#pragma once

#include <stdint.h>

int mead_notify(const char *state);
/* Watchdog period from WATCHDOG_USEC/WATCHDOG_PID, in µs; 0 when not watched. */
uint64_t mead_notify_watchdog_usec(void);
