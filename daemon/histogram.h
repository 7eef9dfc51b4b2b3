/* SPDX-License-Identifier: MIT */
/* Latency histogram in 1 µs buckets with one overflow bucket.  The rt thread
 * adds with relaxed atomics; readers take percentiles from a live histogram. */
#pragma once

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

static inline void mead_hist_add(_Atomic uint64_t *buckets, size_t n_buckets, int64_t value_ns)
{
	size_t b = value_ns <= 0 ? 0 : (size_t)(value_ns / 1000);

	if (b >= n_buckets - 1)
		b = n_buckets - 1;
	atomic_store_explicit(&buckets[b], atomic_load_explicit(&buckets[b], memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

/* p in [0,100].  Returns the lower edge in µs (latency truncated to whole µs,
 * as cyclictest reports it) of the bucket holding the p-th
 * percentile (nearest rank); overflow_value_us for the overflow bucket;
 * -1 for an empty histogram. */
double mead_hist_percentile(_Atomic uint64_t *buckets, size_t n_buckets, double p, double overflow_value_us);
uint64_t mead_hist_total(_Atomic uint64_t *buckets, size_t n_buckets);
