/* SPDX-License-Identifier: MIT */
/* Time: the one clock read, and monotonic-time arithmetic on struct
 * timespec, free of overflow for any run shorter than a few centuries. */
#pragma once

#include <stdint.h>
#include <time.h>

#define MEAD_NSEC_PER_SEC 1000000000LL

static inline int64_t mead_ts_to_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * MEAD_NSEC_PER_SEC + ts->tv_nsec;
}

/* clock c now, in ns (0 if the clock cannot be read). */
static inline uint64_t mead_clock_ns(clockid_t c)
{
	struct timespec ts;

	if (clock_gettime(c, &ts) != 0)
		return 0;
	return (uint64_t)mead_ts_to_ns(&ts);
}

/* CLOCK_MONOTONIC now, in ns: what every interval and deadline is measured on. */
static inline uint64_t mead_now_ns(void)
{
	return mead_clock_ns(CLOCK_MONOTONIC);
}

/* CLOCK_MONOTONIC now, in seconds: for progress lines and wall-time figures. */
static inline double mead_now_s(void)
{
	return (double)mead_now_ns() / 1e9;
}

static inline struct timespec mead_ns_to_ts(int64_t ns)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(ns / MEAD_NSEC_PER_SEC);
	ts.tv_nsec = (long)(ns % MEAD_NSEC_PER_SEC);
	if (ts.tv_nsec < 0) {
		ts.tv_nsec += MEAD_NSEC_PER_SEC;
		ts.tv_sec -= 1;
	}
	return ts;
}

/* a + ns, normalised (0 <= tv_nsec < 1e9) for any sign of ns. */
static inline struct timespec mead_ts_add_ns(struct timespec a, int64_t ns)
{
	int64_t nsec = (int64_t)a.tv_nsec + ns % MEAD_NSEC_PER_SEC;

	a.tv_sec += (time_t)(ns / MEAD_NSEC_PER_SEC);
	if (nsec >= MEAD_NSEC_PER_SEC) {
		nsec -= MEAD_NSEC_PER_SEC;
		a.tv_sec += 1;
	} else if (nsec < 0) {
		nsec += MEAD_NSEC_PER_SEC;
		a.tv_sec -= 1;
	}
	a.tv_nsec = (long)nsec;
	return a;
}

/* a - b in ns. */
static inline int64_t mead_ts_diff_ns(const struct timespec *a, const struct timespec *b)
{
	return (int64_t)(a->tv_sec - b->tv_sec) * MEAD_NSEC_PER_SEC + (a->tv_nsec - b->tv_nsec);
}

static inline int mead_ts_cmp(const struct timespec *a, const struct timespec *b)
{
	if (a->tv_sec != b->tv_sec)
		return a->tv_sec < b->tv_sec ? -1 : 1;
	if (a->tv_nsec != b->tv_nsec)
		return a->tv_nsec < b->tv_nsec ? -1 : 1;
	return 0;
}

/* First acquisition sample of tick t: floor(t * period_ns * rate / 1e9),
 * exact in 128-bit so 25 kHz runs of years do not drift. */
static inline uint64_t mead_tick_first_sample(uint64_t tick, uint32_t period_ns, uint32_t rate_hz)
{
	unsigned __int128 x = (unsigned __int128)tick * period_ns * rate_hz;

	return (uint64_t)(x / 1000000000u);
}
