/* SPDX-License-Identifier: MIT */
/* Latency histogram: 1 µs buckets below 1 ms, then 1 ms buckets, then one
 * overflow bucket (the last), so that a loop far behind still has its
 * percentiles rather than the maximum for all of them.  The rt thread adds
 * with relaxed atomics; readers take percentiles from a live histogram. */
#pragma once

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define MEAD_HIST_FINE 1000   /* buckets of 1 µs, from 0 */

static inline size_t mead_hist_bucket(int64_t value_ns)
{
	uint64_t us = value_ns <= 0 ? 0 : (uint64_t)value_ns / 1000u;
	return us < MEAD_HIST_FINE ? (size_t)us : MEAD_HIST_FINE + (size_t)(us / 1000u) - 1;
}

static inline void mead_hist_add(_Atomic uint64_t *buckets, size_t n_buckets, int64_t value_ns)
{
	size_t b = mead_hist_bucket(value_ns);

	if (b >= n_buckets - 1)
		b = n_buckets - 1;
	atomic_store_explicit(&buckets[b], atomic_load_explicit(&buckets[b], memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

/* p in [0,100].  Returns the lower edge in µs (latency truncated to whole µs,
 * as cyclictest reports it, or to whole ms from 1 ms on) of the bucket holding the p-th
 * percentile (nearest rank); overflow_value_us for the overflow bucket;
 * -1 for an empty histogram. */
double mead_hist_percentile(_Atomic uint64_t *buckets, size_t n_buckets, double p, double overflow_value_us);
uint64_t mead_hist_total(_Atomic uint64_t *buckets, size_t n_buckets);
