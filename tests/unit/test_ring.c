/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "daemon/ring.h"

static void test_push_pop_order(void **state)
{
	struct mead_ring *r;
	char buf[64];
	size_t len;

	assert_int_equal(mead_ring_new(1024, &r), 0);
	assert_true(mead_ring_empty(r));
	for (int i = 0; i < 10; i++) {
		int n = snprintf(buf, sizeof(buf), "message %d", i);
		assert_int_equal(mead_ring_push(r, buf, (size_t)n), 0);
	}
	for (int i = 0; i < 10; i++) {
		const char *m = mead_ring_peek(r, &len);
		assert_non_null(m);
		int n = snprintf(buf, sizeof(buf), "message %d", i);
		assert_int_equal(len, (size_t)n);
		assert_memory_equal(m, buf, len);
		mead_ring_release(r);
	}
	assert_null(mead_ring_peek(r, &len));
	mead_ring_free(r);
}

static void test_full_and_too_big(void **state)
{
	struct mead_ring *r;
	uint8_t big[1024] = { 0 };
	int pushed = 0;

	assert_int_equal(mead_ring_new(256, &r), 0);
	assert_int_equal(mead_ring_capacity(r), 256);
	assert_int_equal(mead_ring_push(r, big, mead_ring_max_message(r) + 1), -EMSGSIZE);
	while (mead_ring_push(r, big, 24) == 0)
		pushed++;
	/* 24 bytes + 8 length word = 32 per slot: exactly 8 fit in 256. */
	assert_int_equal(pushed, 8);
	assert_int_equal(mead_ring_push(r, big, 24), -ENOBUFS);
	assert_null(mead_ring_reserve(r, 1));
	mead_ring_peek(r, NULL);
	mead_ring_release(r);
	assert_int_equal(mead_ring_push(r, big, 24), 0);
	mead_ring_free(r);
}

static void test_wrap_keeps_messages_whole(void **state)
{
	struct mead_ring *r;
	uint8_t msg[100];
	size_t len;

	assert_int_equal(mead_ring_new(512, &r), 0);
	/* Sizes that do not divide the capacity force a padding skip at the end. */
	for (int round = 0; round < 200; round++) {
		size_t n = 1 + (size_t)(round * 37) % 100;
		memset(msg, round & 0xff, n);
		assert_int_equal(mead_ring_push(r, msg, n), 0);
		const uint8_t *m = mead_ring_peek(r, &len);
		assert_non_null(m);
		assert_int_equal(len, n);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(m[i], round & 0xff);
		mead_ring_release(r);
	}
	assert_true(mead_ring_empty(r));
	mead_ring_free(r);
}

static void test_reserve_without_commit_is_invisible(void **state)
{
	struct mead_ring *r;
	size_t len;

	assert_int_equal(mead_ring_new(256, &r), 0);
	void *p = mead_ring_reserve(r, 16);
	assert_non_null(p);
	assert_null(mead_ring_peek(r, &len));
	memset(p, 7, 16);
	mead_ring_commit(r, 16);
	assert_non_null(mead_ring_peek(r, &len));
	assert_int_equal(len, 16);
	mead_ring_free(r);
}

#define N_MESSAGES 200000

static void *producer(void *arg)
{
	struct mead_ring *r = arg;

	for (uint64_t i = 0; i < N_MESSAGES;) {
		uint64_t payload[4] = { i, i * 3, i ^ 0x5555, (uint64_t)(i % 4) };
		size_t n = sizeof(uint64_t) * (1 + i % 4);
		if (mead_ring_push(r, payload, n) == 0)
			i++;
	}
	return NULL;
}

static void test_two_threads_lose_nothing(void **state)
{
	struct mead_ring *r;
	pthread_t t;
	uint64_t expect = 0;
	size_t len;

	assert_int_equal(mead_ring_new(4096, &r), 0);
	assert_int_equal(pthread_create(&t, NULL, producer, r), 0);
	while (expect < N_MESSAGES) {
		const uint64_t *m = mead_ring_peek(r, &len);
		if (!m)
			continue;
		assert_int_equal(len, sizeof(uint64_t) * (1 + expect % 4));
		assert_int_equal(m[0], expect);
		if (len >= 16)
			assert_int_equal(m[1], expect * 3);
		mead_ring_release(r);
		expect++;
	}
	pthread_join(t, NULL);
	assert_true(mead_ring_empty(r));
	mead_ring_free(r);
}

static void test_bad_arguments(void **state)
{
	struct mead_ring *r = NULL;

	assert_int_equal(mead_ring_new(8, &r), -EINVAL);
	assert_null(r);
	assert_int_equal(mead_ring_new(1024, NULL), -EINVAL);
	mead_ring_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_push_pop_order),
		cmocka_unit_test(test_full_and_too_big),
		cmocka_unit_test(test_wrap_keeps_messages_whole),
		cmocka_unit_test(test_reserve_without_commit_is_invisible),
		cmocka_unit_test(test_two_threads_lose_nothing),
		cmocka_unit_test(test_bad_arguments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
