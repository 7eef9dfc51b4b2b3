/* SPDX-License-Identifier: MIT */
/* The replay driver gives back a recording's spikes, each in the tick that covers it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib/core/json.h"
#include "daemon/recorder.h"
#include "mead/driver.h"
#include "tests/lib/harness.h"

#define RATE 25000
#define TICK 25            /* samples per 1 ms tick */
#define N_TICKS 400

static char dir[] = "/tmp/mead-test-replay-XXXXXX";
static char path[300];
static struct mead_spike recorded[N_TICKS * 4];
static size_t n_recorded;
static struct mead_electrode electrodes[60];
static struct harness replay;   /* the module, loaded as the daemon loads it */

static int setup(void **state)
{
	if (!harness_load(&replay, "replay")) {
		fprintf(stderr, "cannot load the replay driver from $MEAD_DRIVER_PATH\n");
		return -1;
	}
	struct mead_recorder *rec;
	char err[256];

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/r.meadrec", dir);
	struct mead_recorder_params p = {
		.path = path,
		.meta_json = "{\"sample_rate_hz\":25000,\"electrode_count\":60,\"uv_per_count\":0.195,\"raw_channels\":0}",
	};
	assert_int_equal(mead_recorder_new(&p, &rec, err, sizeof(err)), 0);
	assert_int_equal(mead_recorder_start(rec), 0);
	/* One message per tick, as the loop publishes; a few spikes in some ticks. */
	unsigned seed = 7;
	for (uint64_t t = 0; t < N_TICKS; t++) {
		struct mead_spike s[4];
		uint32_t n = (uint32_t)(rand_r(&seed) % 5);
		if (n == 4)
			n = 0;
		for (uint32_t i = 0; i < n; i++) {
			s[i].sample = t * TICK + (uint64_t)(rand_r(&seed) % TICK);
			s[i].electrode = (uint16_t)(rand_r(&seed) % 60);
			s[i].flags = 0;
			s[i].amplitude_uv = -(float)(rand_r(&seed) % 200);
		}
		/* sample-ordered within a message */
		for (uint32_t i = 1; i < n; i++)
			for (uint32_t j = i; j > 0 && s[j].sample < s[j - 1].sample; j--) {
				struct mead_spike x = s[j];
				s[j] = s[j - 1];
				s[j - 1] = x;
			}
		memcpy(&recorded[n_recorded], s, n * sizeof(s[0]));
		n_recorded += n;
		struct mead_wire_header h;
		mead_wire_header_encode(&h, MEAD_KIND_SPIKES, t, t * TICK, n, 16);
		assert_int_equal(mead_recorder_submit(rec, "spikes", &h, s, n * 16, true), 0);
		if (t % 100 == 0) {
			char js[32];
			int len = snprintf(js, sizeof(js), "{\"t\":%u}", (unsigned)t);
			mead_wire_header_encode(&h, MEAD_KIND_STATUS, t / 100, t * TICK, 1, (uint32_t)len);
			assert_int_equal(mead_recorder_submit(rec, "status", &h, js, (size_t)len, true), 0);
		}
	}
	assert_int_equal(mead_recorder_stop(rec), 0);
	mead_recorder_free(rec);
	assert_true(n_recorded > 100);
	return 0;
}

static int teardown(void **state)
{
	unlink(path);
	rmdir(dir);
	harness_unload(&replay);
	return 0;
}

static void *open_replay(const struct mead_driver_ops *ops, const char *speed, const char *loop, uint32_t layout_count,
			 int *ret_rc, char *err, size_t err_len)
{
	static struct mead_layout_view layout;
	struct mead_driver_param params[] = { { "path", path }, { "loop", loop }, { "speed", speed } };
	layout = (struct mead_layout_view){ 6, 10, layout_count, 200.0f, electrodes };
	struct mead_driver_config cfg = {
		.abi_version = MEAD_DRIVER_ABI_VERSION, .period_us = 1000, .period_ns = 1000000, .virtual_clock = true,
		.layout = &layout, .params = params, .n_params = 3,
	};
	void *st = NULL;
	*ret_rc = ops->open(&cfg, &st, err, err_len);
	return st;
}

/* Runs ticks [0, ticks) and collects the spikes; checks each lies in its tick. */
static size_t run(const struct mead_driver_ops *ops, void *st, uint64_t ticks, uint32_t per_tick,
		  struct mead_spike *out, size_t cap, uint32_t capacity, uint64_t *dropped)
{
	struct mead_spike buf[64];
	size_t n = 0;
	*dropped = 0;
	for (uint64_t t = 0; t < ticks; t++) {
		struct mead_frame f = { .first_sample = t * per_tick, .n_samples = per_tick, .spikes = buf,
					.spike_capacity = capacity };
		assert_int_equal(ops->read_frame(st, t, &f), 0);
		*dropped += f.spikes_dropped;
		for (uint32_t i = 0; i < f.n_spikes; i++) {
			assert_true(buf[i].sample >= f.first_sample && buf[i].sample < f.first_sample + per_tick);
			assert_true(n < cap);
			out[n++] = buf[i];
		}
	}
	return n;
}

static void test_reproduces_spikes(void **state)
{
	const struct mead_driver_ops *ops = replay.ops;
	static struct mead_spike got[N_TICKS * 8];
	struct mead_driver_caps caps;
	char err[256] = "";
	uint64_t dropped;
	int rc;

	assert_int_equal(ops->abi_version, MEAD_DRIVER_ABI_VERSION);
	assert_string_equal(ops->name, "replay");
	void *st = open_replay(ops, "1.0", "false", 60, &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_int_equal(ops->get_caps(st, &caps), 0);
	assert_int_equal(caps.sample_rate_hz, RATE);
	assert_int_equal(caps.electrode_count, 60);
	assert_true(caps.uv_per_count > 0.19f && caps.uv_per_count < 0.2f);
	assert_int_equal(ops->start(st, err, sizeof(err)), 0);
	size_t n = run(ops, st, N_TICKS + 10, TICK, got, N_TICKS * 8, 64, &dropped);
	assert_int_equal(dropped, 0);
	assert_int_equal(n, n_recorded);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(got[i].sample, recorded[i].sample);
		assert_int_equal(got[i].electrode, recorded[i].electrode);
		assert_true(got[i].amplitude_uv == recorded[i].amplitude_uv);
	}
	char desc[1024];
	int dl = ops->describe(st, desc, sizeof(desc));
	assert_true(dl > 0);
	struct mead_json *d;
	assert_int_equal(mead_json_parse(desc, (size_t)dl, NULL, &d, NULL, 0), 0);
	assert_true(mead_json_get(d, mead_json_root(d), "finished")->b);
	assert_int_equal(mead_json_get(d, mead_json_root(d), "emitted_spikes")->i, (int64_t)n_recorded);
	mead_json_free(d);
	ops->close(st);
}

static void test_speed_loop_and_capacity(void **state)
{
	const struct mead_driver_ops *ops = replay.ops;
	static struct mead_spike got[N_TICKS * 8];
	char err[256] = "";
	uint64_t dropped;
	int rc;

	/* Twice as fast: every sample halves. */
	void *st = open_replay(ops, "2", "false", 60, &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	ops->start(st, err, sizeof(err));
	size_t n = run(ops, st, N_TICKS / 2 + 10, TICK, got, N_TICKS * 8, 64, &dropped);
	assert_int_equal(n, n_recorded);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(got[i].sample, recorded[i].sample / 2);
	ops->close(st);

	/* Looping: the second pass follows the first, one recording span later. */
	st = open_replay(ops, "1", "true", 60, &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	ops->start(st, err, sizeof(err));
	n = run(ops, st, 2 * N_TICKS, TICK, got, N_TICKS * 8, 64, &dropped);
	assert_true(n >= 2 * n_recorded - 8);
	uint64_t span = (uint64_t)(N_TICKS - 1) * TICK + 1;   /* last message's sample + 1 */
	if (recorded[n_recorded - 1].sample + 1 > span)
		span = recorded[n_recorded - 1].sample + 1;
	for (size_t i = 0; i < n_recorded && n_recorded + i < n; i++)
		assert_int_equal(got[n_recorded + i].sample, recorded[i].sample + span);
	ops->close(st);

	/* More spikes than the frame holds are counted, not lost silently. */
	st = open_replay(ops, "1", "false", 60, &rc, err, sizeof(err));
	ops->start(st, err, sizeof(err));
	n = run(ops, st, N_TICKS + 1, TICK, got, N_TICKS * 8, 1, &dropped);
	assert_true(dropped > 0);
	assert_int_equal(n + dropped, n_recorded);
	ops->close(st);

	/* A layout smaller than the recording's is refused with a reason. */
	st = open_replay(ops, "1", "false", 30, &rc, err, sizeof(err));
	assert_int_equal(rc, -EINVAL);
	assert_null(st);
	assert_non_null(strstr(err, "electrodes"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reproduces_spikes),
		cmocka_unit_test(test_speed_loop_and_capacity),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
