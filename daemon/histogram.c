/* SPDX-License-Identifier: MIT */
#include "daemon/histogram.h"

#include <math.h>

uint64_t mead_hist_total(_Atomic uint64_t *buckets, size_t n_buckets)
{
	uint64_t total = 0;

	for (size_t i = 0; i < n_buckets; i++)
		total += atomic_load_explicit(&buckets[i], memory_order_relaxed);
	return total;
}

double mead_hist_percentile(_Atomic uint64_t *buckets, size_t n_buckets, double p, double overflow_value_us)
{
	uint64_t total = mead_hist_total(buckets, n_buckets), rank, seen = 0;

	if (total == 0)
		return -1.0;
	if (p < 0)
		p = 0;
	if (p > 100)
		p = 100;
	/* the epsilon keeps 99.9% of 1000 at rank 999 despite binary rounding */
	rank = (uint64_t)ceil(p / 100.0 * (double)total - 1e-9);
	if (rank == 0)
		rank = 1;
	for (size_t i = 0; i < n_buckets; i++) {
		seen += atomic_load_explicit(&buckets[i], memory_order_relaxed);
		if (seen >= rank)
			return i == n_buckets - 1 ? overflow_value_us
			       : i < MEAD_HIST_FINE ? (double)i : (double)(i - MEAD_HIST_FINE + 1) * 1000.0;
	}
	return overflow_value_us;
}
