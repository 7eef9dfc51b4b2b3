/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "daemon/histogram.h"
#include "daemon/loop.h"
#include "lib/core/time.h"

static void test_add_normalises(void **state)
{
	struct timespec a = { 10, 999999999 };
	struct timespec b = mead_ts_add_ns(a, 1);
	assert_int_equal(b.tv_sec, 11);
	assert_int_equal(b.tv_nsec, 0);

	b = mead_ts_add_ns(a, 2500000001LL);
	assert_int_equal(b.tv_sec, 13);
	assert_int_equal(b.tv_nsec, 500000000);

	b = mead_ts_add_ns((struct timespec){ 5, 100 }, -200);
	assert_int_equal(b.tv_sec, 4);
	assert_int_equal(b.tv_nsec, 999999900);

	b = mead_ts_add_ns((struct timespec){ 5, 0 }, -3000000001LL);
	assert_int_equal(b.tv_sec, 1);
	assert_int_equal(b.tv_nsec, 999999999);
}

static void test_diff_and_compare(void **state)
{
	struct timespec a = { 100, 5 }, b = { 99, 999999999 };
	assert_int_equal(mead_ts_diff_ns(&a, &b), 6);
	assert_int_equal(mead_ts_diff_ns(&b, &a), -6);
	assert_int_equal(mead_ts_cmp(&a, &b), 1);
	assert_int_equal(mead_ts_cmp(&b, &a), -1);
	assert_int_equal(mead_ts_cmp(&a, &a), 0);
	assert_int_equal(mead_ts_to_ns(&a), 100000000005LL);
	struct timespec c = mead_ns_to_ts(-1);
	assert_int_equal(c.tv_sec, -1);
	assert_int_equal(c.tv_nsec, 999999999);
}

static void test_absolute_schedule_does_not_drift(void **state)
{
	/* A million 40 µs ticks from an odd start land exactly 40 s later. */
	struct timespec start = { 1234, 987654321 }, t = start;
	for (int i = 0; i < 1000000; i++)
		t = mead_ts_add_ns(t, 40000);
	assert_int_equal(mead_ts_diff_ns(&t, &start), 40000000000LL);
}

static void test_tick_to_sample(void **state)
{
	/* 1 ms ticks at 25 kHz: 25 samples each. */
	assert_int_equal(mead_tick_first_sample(0, 1000000, 25000), 0);
	assert_int_equal(mead_tick_first_sample(1, 1000000, 25000), 25);
	assert_int_equal(mead_tick_first_sample(1000, 1000000, 25000), 25000);
	/* 40 µs ticks at 25 kHz: one sample each. */
	assert_int_equal(mead_tick_first_sample(7, 40000, 25000), 7);
	/* 40 µs ticks on a 1 kHz twin: a step every 25 ticks. */
	assert_int_equal(mead_tick_first_sample(24, 40000, 1000), 0);
	assert_int_equal(mead_tick_first_sample(25, 40000, 1000), 1);
	/* A year of 25 kHz at 40 µs ticks overflows 64-bit intermediate
	 * arithmetic; the 128-bit path stays exact. */
	uint64_t ticks_per_year = 365ull * 86400ull * 25000ull;
	assert_int_equal(mead_tick_first_sample(ticks_per_year, 40000, 25000), ticks_per_year);
	/* 3 kHz at 1 ms: 3 per tick, no rounding creep. */
	assert_int_equal(mead_tick_first_sample(999999, 1000000, 3000), 2999997);
}

static void test_histogram_percentiles(void **state)
{
	static _Atomic uint64_t h[MEAD_LAT_BUCKETS];

	assert_true(mead_hist_percentile(h, MEAD_LAT_BUCKETS, 50, 0) < 0);
	/* 1000 samples: 900 at 3 µs, 90 at 10 µs, 9 at 50 µs, 1 overflow. */
	for (int i = 0; i < 900; i++)
		mead_hist_add(h, MEAD_LAT_BUCKETS, 3400);
	for (int i = 0; i < 90; i++)
		mead_hist_add(h, MEAD_LAT_BUCKETS, 10999);
	for (int i = 0; i < 9; i++)
		mead_hist_add(h, MEAD_LAT_BUCKETS, 50000);
	mead_hist_add(h, MEAD_LAT_BUCKETS, 5000000);
	assert_int_equal(mead_hist_total(h, MEAD_LAT_BUCKETS), 1000);
	assert_true(mead_hist_percentile(h, MEAD_LAT_BUCKETS, 50, 5000) == 3.0);
	assert_true(mead_hist_percentile(h, MEAD_LAT_BUCKETS, 90, 5000) == 3.0);
	assert_true(mead_hist_percentile(h, MEAD_LAT_BUCKETS, 90.1, 5000) == 10.0);
	assert_true(mead_hist_percentile(h, MEAD_LAT_BUCKETS, 99, 5000) == 10.0);
	assert_true(mead_hist_percentile(h, MEAD_LAT_BUCKETS, 99.9, 5000) == 50.0);
	assert_true(mead_hist_percentile(h, MEAD_LAT_BUCKETS, 100, 5000) == 5000.0);
	/* negative latencies (woken before the deadline) land in bucket 0 */
	mead_hist_add(h, MEAD_LAT_BUCKETS, -20);
	assert_int_equal(atomic_load(&h[0]), 1);
}

/* A loop far behind: its percentiles are still its own, to the ms, and only
 * a second or more is the overflow (the maximum). */
static void test_histogram_far_behind(void **state)
{
	static _Atomic uint64_t h[MEAD_LAT_BUCKETS];

	for (int i = 0; i < 600; i++)
		mead_hist_add(h, MEAD_LAT_BUCKETS, 250700000);   /* 250.7 ms */
	for (int i = 0; i < 390; i++)
		mead_hist_add(h, MEAD_LAT_BUCKETS, 3000000);     /* 3 ms */
	for (int i = 0; i < 9; i++)
		mead_hist_add(h, MEAD_LAT_BUCKETS, 999999999);   /* just under 1 s */
	mead_hist_add(h, MEAD_LAT_BUCKETS, 4000000000ll);    /* 4 s: overflow */
	assert_true(mead_hist_percentile(h, MEAD_LAT_BUCKETS, 30, 4000000) == 3000.0);
	assert_true(mead_hist_percentile(h, MEAD_LAT_BUCKETS, 50, 4000000) == 250000.0);
	assert_true(mead_hist_percentile(h, MEAD_LAT_BUCKETS, 99, 4000000) == 250000.0);
	assert_true(mead_hist_percentile(h, MEAD_LAT_BUCKETS, 99.9, 4000000) == 999000.0);
	assert_true(mead_hist_percentile(h, MEAD_LAT_BUCKETS, 100, 4000000) == 4000000.0);
	assert_int_equal(atomic_load(&h[MEAD_HIST_FINE - 1]), 0);
	mead_hist_add(h, MEAD_LAT_BUCKETS, 999999);   /* 999.999 µs: the last fine bucket */
	assert_int_equal(atomic_load(&h[MEAD_HIST_FINE - 1]), 1);
	mead_hist_add(h, MEAD_LAT_BUCKETS, 1000000);  /* 1 ms: the first coarse one */
	assert_int_equal(atomic_load(&h[MEAD_HIST_FINE]), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_normalises),
		cmocka_unit_test(test_diff_and_compare),
		cmocka_unit_test(test_absolute_schedule_does_not_drift),
		cmocka_unit_test(test_tick_to_sample),
		cmocka_unit_test(test_histogram_percentiles),
		cmocka_unit_test(test_histogram_far_behind),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
