/* SPDX-License-Identifier: MIT */
/* The loop on the real null driver module, and on an in-test driver whose
 * ticks take too long on purpose. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "config/config.h"
#include "config/layout.h"
#include "daemon/driver_module.h"
#include "daemon/loop.h"
#include "daemon/ring.h"
#include "lib/core/time.h"

static struct mead_config cfg;
static struct mead_layout layout;

struct collected {
	uint64_t msgs[MEAD_KIND_COUNT + 1];
	uint64_t next_seq[MEAD_KIND_COUNT + 1];
	uint64_t seq_gaps;
	uint64_t spikes, stim;
	uint64_t last_sample[MEAD_KIND_COUNT + 1];
	bool sample_went_back;
	bool run_start, run_end;
	uint64_t first_stim_sample, last_stim_sample;
	uint64_t stim_late;
	uint64_t raw_next, raw_frames, raw_breaks;   /* raw messages chain sample after sample */
	uint64_t late_events, late_samples;
	uint64_t unread_events, unread_sample, unread_samples;
	uint64_t run_end_sample;
};

static void drain(struct mead_ring *ring, struct collected *c)
{
	const struct mead_msg *m;
	size_t len;

	while ((m = mead_ring_peek(ring, &len))) {
		assert_true(len == sizeof(*m) + (size_t)m->count * m->record_size);
		assert_true(m->kind >= 1 && m->kind <= MEAD_KIND_COUNT);
		if (m->seq != c->next_seq[m->kind])
			c->seq_gaps++;
		c->next_seq[m->kind] = m->seq + 1;
		if (m->sample < c->last_sample[m->kind])
			c->sample_went_back = true;
		c->last_sample[m->kind] = m->sample;
		c->msgs[m->kind]++;
		if (m->kind == MEAD_KIND_SPIKES)
			c->spikes += m->count;
		if (m->kind == MEAD_KIND_STIM) {
			const struct mead_wire_stim *p = (const void *)(m + 1);
			assert_int_equal(m->record_size, sizeof(struct mead_wire_stim));
			if (c->stim == 0)
				c->first_stim_sample = p[0].pulse.sample;
			for (uint32_t i = 0; i < m->count; i++) {
				c->last_stim_sample = p[i].pulse.sample;
				c->stim_late += p[i].pulse.sample != p[i].requested_sample;
				/* a tick's pulses are decided, written and published
				 * before its samples are read */
				assert_true(p[i].pulse.sample >= m->sample);
			}
			c->stim += m->count;
		}
		if (m->kind == MEAD_KIND_EVENTS) {
			const struct mead_event *e = (const void *)(m + 1);
			for (uint32_t i = 0; i < m->count; i++) {
				c->run_start |= e[i].type == MEAD_EVENT_RUN_START;
				c->run_end |= e[i].type == MEAD_EVENT_RUN_END;
				if (e[i].type == MEAD_EVENT_RUN_END)
					c->run_end_sample = e[i].sample;
				if (e[i].type == MEAD_EVENT_UNREAD) {
					c->unread_events++;
					c->unread_sample = e[i].sample;
					c->unread_samples = e[i].samples;
				}
				if (e[i].type == MEAD_EVENT_LATE) {
					c->late_events++;
					c->late_samples += e[i].samples;
				}
			}
		}
		if (m->kind == MEAD_KIND_RAW) {
			if (m->sample != c->raw_next)
				c->raw_breaks++;
			c->raw_next = m->sample + m->count;
			c->raw_frames += m->count;
		}
		mead_ring_release(ring);
	}
}

struct null_run {
	struct mead_driver_module *mod;
	struct mead_driver_handle drv;
	struct mead_ring *ring;
	struct mead_loop *loop;
	struct collected got;
	char describe[1024];
};

static void run_null(struct null_run *n, bool virtual_clock, uint64_t ticks, double spike_rate, bool with_train)
{
	char err[1024], rate[32];
	struct mead_cfg_map opts = { 0 };

	memset(n, 0, sizeof(*n));
	snprintf(rate, sizeof(rate), "%g", spike_rate);
	opts.n = 1;
	opts.key[0] = "spike_rate_hz";
	opts.value[0] = rate;
	assert_int_equal(mead_driver_module_load("null", NULL, &opts, &n->mod, err, sizeof(err)), 0);
	size_t n_params;
	const struct mead_driver_param *params = mead_driver_module_params(n->mod, &n_params);
	struct mead_driver_config dc = { .abi_version = MEAD_DRIVER_ABI_VERSION, .period_us = 1000, .period_ns = 1000000,
					 .seed = 42, .virtual_clock = virtual_clock, .layout = &layout.view,
					 .params = params, .n_params = n_params };
	n->drv.ops = mead_driver_module_ops(n->mod);
	assert_int_equal(n->drv.ops->open(&dc, &n->drv.state, err, sizeof(err)), 0);
	assert_int_equal(n->drv.ops->get_caps(n->drv.state, &n->drv.caps), 0);
	assert_int_equal(mead_ring_new(1u << 16, &n->ring), 0);
	struct mead_loop_params lp = { .period_ns = 1000000, .virtual_clock = virtual_clock, .max_ticks = ticks,
				       .spike_capacity = 4096, .stim_capacity = 256, .cpu = -1 };
	assert_int_equal(mead_loop_new(&lp, &n->drv, &layout.view, n->ring, NULL, &n->loop), 0);
	if (with_train) {
		struct mead_command cmd = { .type = MEAD_CMD_STIM_TRAIN };
		cmd.train.electrodes[0] = 3;
		cmd.train.electrodes[1] = 17;
		cmd.train.n_electrodes = 2;
		cmd.train.amplitude_ua = -1;
		cmd.train.phase_us = 200;
		cmd.train.interphase_us = 50;
		cmd.train.pulses = 5;
		cmd.train.rate_hz = 20;
		assert_int_equal(mead_loop_submit(n->loop, &cmd), 0);
	}
	char warn[256];
	assert_int_equal(mead_loop_start(n->loop, warn, sizeof(warn)), 0);
	const struct mead_loop_stats *s = mead_loop_stats(n->loop);
	while (atomic_load(&s->state) != MEAD_LOOP_STOPPED) {
		struct timespec nap = { 0, 1000000 };
		nanosleep(&nap, NULL);
		drain(n->ring, &n->got);
	}
	mead_loop_join(n->loop);
	drain(n->ring, &n->got);
	n->drv.ops->describe(n->drv.state, n->describe, sizeof(n->describe));
}

static void free_null(struct null_run *n)
{
	mead_loop_free(n->loop);
	mead_ring_free(n->ring);
	n->drv.ops->close(n->drv.state);
	mead_driver_module_free(n->mod);
}

static void test_virtual_run_counts_and_streams(void **state)
{
	struct null_run n;

	run_null(&n, true, 5000, 5.0, true);
	const struct mead_loop_stats *s = mead_loop_stats(n.loop);
	assert_int_equal(atomic_load(&s->ticks), 5000);
	assert_int_equal(atomic_load(&s->exit_reason), MEAD_EXIT_MAX_TICKS);
	assert_int_equal(n.got.seq_gaps, 0);
	assert_false(n.got.sample_went_back);
	assert_true(n.got.run_start && n.got.run_end);
	/* 60 electrodes x 5 Hz x 5 s = 1500 expected spikes */
	assert_true(n.got.spikes > 1300 && n.got.spikes < 1700);
	assert_int_equal(n.got.spikes, atomic_load(&s->spikes));
	/* 5 pulses on 2 electrodes at 20 Hz: at samples 0, 50, 100, 150, 200 */
	assert_int_equal(n.got.stim, 10);
	assert_int_equal(n.got.first_stim_sample, 0);
	assert_int_equal(n.got.last_stim_sample, 200);
	assert_int_equal(n.got.stim_late, 0);
	assert_int_equal(atomic_load(&s->stim_pulses), 10);
	/* tick 200's pulses went out with tick 199, right after its read */
	assert_int_equal(n.got.last_sample[MEAD_KIND_STIM], 199);
	for (int k = 1; k <= MEAD_KIND_COUNT; k++)
		assert_int_equal(atomic_load(&s->dropped[k]), 0);
	/* virtual clock: no sleeping, so no latency samples */
	assert_int_equal(atomic_load(&s->overruns), 0);
	free_null(&n);
}

static void test_same_traffic_in_both_clock_modes(void **state)
{
	struct null_run v, rt;

	run_null(&v, true, 300, 20.0, true);
	run_null(&rt, false, 300, 20.0, true);
	const char *hv = strstr(v.describe, "traffic_hash");
	const char *hr = strstr(rt.describe, "traffic_hash");
	assert_non_null(hv);
	assert_non_null(hr);
	assert_memory_equal(hv, hr, 34);
	assert_int_equal(v.got.spikes, rt.got.spikes);
	assert_int_equal(v.got.stim, rt.got.stim);
	/* the real-time run slept for every tick and measured it */
	const struct mead_loop_stats *s = mead_loop_stats(rt.loop);
	uint64_t samples = 0;
	for (int i = 0; i < MEAD_LAT_BUCKETS; i++)
		samples += atomic_load(&s->lat_hist[i]);
	assert_int_equal(samples, 300);
	free_null(&v);
	free_null(&rt);
}

/* ---- an in-test driver that overruns on purpose ---- */

static struct {
	uint64_t reads;
	uint64_t last_tick;
	bool ticks_in_order;
} slow;

static int slow_read(void *st, uint64_t tick, struct mead_frame *f)
{
	if (tick != slow.reads)
		slow.ticks_in_order = false;
	slow.reads++;
	if (tick % 10 == 5) {
		struct timespec t0, t;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		do
			clock_gettime(CLOCK_MONOTONIC, &t);
		while (mead_ts_diff_ns(&t, &t0) < 2500000);
	}
	return 0;
}

static const struct mead_driver_ops slow_ops = {
	.abi_version = MEAD_DRIVER_ABI_VERSION, .ops_size = sizeof(struct mead_driver_ops), .name = "slow",
	.read_frame = slow_read,
};

static void run_slow(bool fatal, uint64_t ticks, struct timespec *elapsed, const struct mead_loop_stats **ret_stats,
		     struct mead_loop **ret_loop, struct mead_ring **ret_ring)
{
	struct mead_driver_handle drv = { .ops = &slow_ops, .caps = { .electrode_count = 60, .sample_rate_hz = 1000 } };
	struct mead_loop_params lp = { .period_ns = 1000000, .max_ticks = ticks, .spike_capacity = 16,
				       .stim_capacity = 16, .cpu = -1, .overrun_fatal = fatal };
	struct timespec t0, t1;
	char warn[256];

	memset(&slow, 0, sizeof(slow));
	slow.ticks_in_order = true;
	assert_int_equal(mead_ring_new(1u << 20, ret_ring), 0);
	assert_int_equal(mead_loop_new(&lp, &drv, &layout.view, *ret_ring, NULL, ret_loop), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(mead_loop_start(*ret_loop, warn, sizeof(warn)), 0);
	mead_loop_join(*ret_loop);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	*elapsed = mead_ns_to_ts(mead_ts_diff_ns(&t1, &t0));
	*ret_stats = mead_loop_stats(*ret_loop);
}

static void test_overruns_counted_never_rebased(void **state)
{
	const struct mead_loop_stats *s;
	struct mead_loop *loop;
	struct mead_ring *ring;
	struct timespec el;

	run_slow(false, 200, &el, &s, &loop, &ring);
	assert_int_equal(atomic_load(&s->ticks), 200);
	assert_true(slow.ticks_in_order);
	/* 20 ticks of 2.5 ms at a 1 ms period: each makes at least that tick late */
	assert_true(atomic_load(&s->overruns) >= 20);
	assert_true(atomic_load(&s->worst_overrun_ns) >= 1000000);
	/* The schedule stays absolute: the tick after a slow one wakes past its
	 * deadline (>= 1 ms late) and runs at once.  A re-based schedule would
	 * give it a fresh, on-time deadline instead. */
	uint64_t late_wakeups = 0;
	for (int i = 1000; i < MEAD_LAT_BUCKETS; i++)
		late_wakeups += atomic_load(&s->lat_hist[i]);
	assert_true(late_wakeups >= 20);
	int64_t ms = mead_ts_to_ns(&el) / 1000000;
	assert_true(ms >= 199);
	mead_loop_free(loop);
	mead_ring_free(ring);

	run_slow(true, 200, &el, &s, &loop, &ring);
	assert_int_equal(atomic_load(&s->exit_reason), MEAD_EXIT_OVERRUN);
	/* the run ends at the first overrun: tick 5 at the latest (an earlier
	 * tick may overrun on a loaded machine, which ends it the same way) */
	assert_true(atomic_load(&s->ticks) >= 1 && atomic_load(&s->ticks) <= 6);
	assert_int_equal(atomic_load(&s->overruns), 1);
	mead_loop_free(loop);
	mead_ring_free(ring);
}

/* Every spelling the configuration takes for a boolean reaches the driver
 * as "true" or "false", so a driver reading it with
 * mead_driver_param_bool() sees what the file said; a value that is no
 * boolean is refused before the driver is opened. */
static void test_bool_options_reach_drivers_normalised(void **state)
{
	static const struct { const char *text; bool want; } cases[] = {
		{ "yes", true }, { "on", true }, { "True", true }, { "TRUE", true }, { "true", true },
		{ "no", false }, { "off", false }, { "False", false }, { "false", false },
	};
	char err[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mead_driver_module *mod;
		struct mead_cfg_map opts = { .n = 1 };
		size_t np;
		opts.key[0] = "raw";
		opts.value[0] = (char *)cases[i].text;
		assert_int_equal(mead_driver_module_load("null", NULL, &opts, &mod, err, sizeof(err)), 0);
		const struct mead_driver_param *params = mead_driver_module_params(mod, &np);
		struct mead_driver_config dc = { .abi_version = MEAD_DRIVER_ABI_VERSION, .period_us = 1000,
						 .period_ns = 1000000, .layout = &layout.view, .params = params,
						 .n_params = np };
		assert_string_equal(mead_driver_param_get(&dc, "raw"), cases[i].want ? "true" : "false");
		assert_int_equal(mead_driver_param_bool(&dc, "raw", !cases[i].want), cases[i].want);
		/* and the driver itself: raw on means raw channels in its caps */
		const struct mead_driver_ops *ops = mead_driver_module_ops(mod);
		struct mead_driver_caps caps;
		void *st = NULL;
		assert_int_equal(ops->open(&dc, &st, err, sizeof(err)), 0);
		assert_int_equal(ops->get_caps(st, &caps), 0);
		assert_int_equal((caps.flags & MEAD_CAP_RAW) != 0, cases[i].want);
		ops->close(st);
		mead_driver_module_free(mod);
	}
	struct mead_driver_module *mod = NULL;
	struct mead_cfg_map opts = { .n = 1 };
	opts.key[0] = "raw";
	opts.value[0] = "1";
	assert_int_equal(mead_driver_module_load("null", NULL, &opts, &mod, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "driver.options.raw"));
	assert_null(mod);
}

/* A device whose sample clock runs faster or slower than the host's: the
 * loop follows it (its schedule moves with the device), measures the
 * drift, and over the run no sample is lost or invented: raw comes in one
 * unbroken chain and every sample the device acquired is handed over once. */
static void run_drifting(double ppm, double *ret_drift, uint64_t *ret_late_after_warmup)
{
	char err[512], ppm_text[32], warn[512] = "";
	struct mead_cfg_map opts = { .n = 3 };
	struct mead_driver_module *mod;
	struct mead_driver_handle drv = { 0 };
	struct mead_ring *ring;
	struct mead_loop *loop;
	static struct collected got;
	const uint64_t ticks = 6000;

	memset(&got, 0, sizeof(got));
	snprintf(ppm_text, sizeof(ppm_text), "%g", ppm);
	opts.key[0] = "device_clock_ppm";
	opts.value[0] = ppm_text;
	opts.key[1] = "sample_rate_hz";
	opts.value[1] = "25000";
	opts.key[2] = "raw";
	opts.value[2] = "true";
	assert_int_equal(mead_driver_module_load("null", NULL, &opts, &mod, err, sizeof(err)), 0);
	size_t np;
	const struct mead_driver_param *params = mead_driver_module_params(mod, &np);
	struct mead_driver_config dc = { .abi_version = MEAD_DRIVER_ABI_VERSION, .period_us = 1000, .period_ns = 1000000,
					 .seed = 3, .want_raw = true, .layout = &layout.view, .params = params,
					 .n_params = np };
	drv.ops = mead_driver_module_ops(mod);
	assert_int_equal(drv.ops->open(&dc, &drv.state, err, sizeof(err)), 0);
	assert_int_equal(drv.ops->get_caps(drv.state, &drv.caps), 0);
	assert_true(drv.caps.flags & MEAD_CAP_DEVICE_CLOCK);
	assert_int_equal(mead_ring_new(64u << 20, &ring), 0);
	struct mead_loop_params lp = { .period_ns = 1000000, .max_ticks = ticks, .spike_capacity = 1024,
				       .stim_capacity = 16, .cpu = -1, .want_raw = true,
				       .device_margin_samples = 6 /* 240 us */ };
	assert_int_equal(mead_loop_new(&lp, &drv, &layout.view, ring, NULL, &loop), 0);
	assert_int_equal(drv.ops->start(drv.state, err, sizeof(err)), 0);
	assert_int_equal(mead_loop_start(loop, warn, sizeof(warn)), 0);
	const struct mead_loop_stats *s = mead_loop_stats(loop);
	uint64_t late_at_warmup = UINT64_MAX;
	while (atomic_load(&s->state) != MEAD_LOOP_STOPPED) {
		struct timespec nap = { 0, 2000000 };
		nanosleep(&nap, NULL);
		drain(ring, &got);
		if (late_at_warmup == UINT64_MAX && atomic_load(&s->ticks) >= 3000)
			late_at_warmup = atomic_load(&s->loss_samples[MEAD_EVENT_LATE]);
	}
	mead_loop_join(loop);
	drain(ring, &got);
	*ret_drift = mead_loop_bits_to_double(atomic_load(&s->drift_ppm_bits));
	*ret_late_after_warmup = atomic_load(&s->loss_samples[MEAD_EVENT_LATE]) - late_at_warmup;
	print_message("device at %+g ppm: drift measured %+.1f ppm, backlog %lld (max %lld, start-up %lld), "
		      "late samples %llu (%llu after warm-up), raw %llu frames in %llu breaks, overruns %llu\n",
		      ppm, *ret_drift, (long long)atomic_load(&s->backlog), (long long)atomic_load(&s->backlog_max),
		      (long long)atomic_load(&s->startup_backlog), (unsigned long long)got.late_samples,
		      (unsigned long long)*ret_late_after_warmup, (unsigned long long)got.raw_frames,
		      (unsigned long long)got.raw_breaks, (unsigned long long)atomic_load(&s->overruns));
	/* nothing lost, nothing invented: one chain from sample 0, and what
	 * the device acquired is what came out, up to the last tick's reads */
	assert_int_equal(got.raw_breaks, 0);
	uint64_t acquired = atomic_load(&s->acquired);
	assert_true(got.raw_frames <= acquired);
	assert_true(got.raw_frames + 2 * 25 >= mead_tick_first_sample(ticks, 1000000, 25000) ||
		    got.raw_frames + 2 * 25 >= acquired);
	mead_loop_free(loop);
	mead_ring_free(ring);
	drv.ops->stop(drv.state);
	drv.ops->close(drv.state);
	mead_driver_module_free(mod);
}

static void test_loop_follows_a_drifting_device_clock(void **state)
{
	static const double ppm[] = { 1500.0, -1500.0 };
	for (size_t i = 0; i < 2; i++) {
		double drift;
		uint64_t late;
		run_drifting(ppm[i], &drift, &late);
		/* measured within 20% of the truth */
		assert_true(fabs(drift - ppm[i]) < 0.2 * fabs(ppm[i]));
		/* once followed, ticks find their samples there: none late for a
		 * whole tick (the VM's scheduling noise may make a few a sample late) */
		assert_true(late < 3 * 25);
	}
}

static void test_full_ring_drops_are_seq_gaps(void **state)
{
	struct mead_driver_module *mod;
	struct mead_driver_handle drv = { 0 };
	struct mead_ring *ring;
	struct mead_loop *loop;
	struct collected got = { 0 };
	char err[512], warn[256];
	struct mead_cfg_map opts = { .n = 1 };

	opts.key[0] = "spike_rate_hz";
	opts.value[0] = "200";
	assert_int_equal(mead_driver_module_load("null", NULL, &opts, &mod, err, sizeof(err)), 0);
	size_t np;
	const struct mead_driver_param *params = mead_driver_module_params(mod, &np);
	struct mead_driver_config dc = { .abi_version = 1, .period_us = 1000, .period_ns = 1000000, .seed = 1,
					 .layout = &layout.view, .params = params, .n_params = np };
	drv.ops = mead_driver_module_ops(mod);
	assert_int_equal(drv.ops->open(&dc, &drv.state, err, sizeof(err)), 0);
	drv.ops->get_caps(drv.state, &drv.caps);
	/* A small ring nobody drains during a real-time run must drop, count
	 * it, and leave seq gaps, never block. */
	assert_int_equal(mead_ring_new(4096, &ring), 0);
	struct mead_loop_params lp = { .period_ns = 1000000, .max_ticks = 100, .spike_capacity = 1024,
				       .stim_capacity = 16, .cpu = -1 };
	assert_int_equal(mead_loop_new(&lp, &drv, &layout.view, ring, NULL, &loop), 0);
	assert_int_equal(mead_loop_start(loop, warn, sizeof(warn)), 0);
	mead_loop_join(loop);
	drain(ring, &got);
	const struct mead_loop_stats *s = mead_loop_stats(loop);
	assert_int_equal(atomic_load(&s->ticks), 100);
	assert_true(atomic_load(&s->dropped[MEAD_KIND_SPIKES]) > 0);
	assert_int_equal(got.msgs[MEAD_KIND_SPIKES] + atomic_load(&s->dropped[MEAD_KIND_SPIKES]),
			 atomic_load(&s->produced[MEAD_KIND_SPIKES]));
	assert_true(got.seq_gaps > 0 || got.msgs[MEAD_KIND_SPIKES] < atomic_load(&s->produced[MEAD_KIND_SPIKES]));
	mead_loop_free(loop);
	mead_ring_free(ring);
	drv.ops->close(drv.state);
	mead_driver_module_free(mod);
}

/* ---- an in-test driver whose device goes away and comes back ---- */

static struct {
	uint64_t stim_calls_while_gone, stim_calls, stop_outputs_calls;
	int gone_seen_by_stats;
	bool gone;
} unplug;

static int unplug_write(void *st, uint64_t tick, const struct mead_stim_pulse *p, uint32_t n,
			struct mead_stim_result *results)
{
	for (uint32_t i = 0; i < n; i++)
		results[i] = (struct mead_stim_result){ .pulse = p[i], .sample = p[i].sample };
	/* called every tick; the ones that carry pulses are counted */
	if (n == 0)
		return 0;
	unplug.stim_calls++;
	/* the loop learns of the loss from tick 50's read_frame, after that
	 * tick's write_stim */
	if (tick > 50 && tick < 100)
		unplug.stim_calls_while_gone++;
	return 0;
}

static int unplug_read(void *st, uint64_t tick, struct mead_frame *f)
{
	if (tick >= 150 && tick < 160)
		return -EIO;     /* a fault for these ticks only: counted, the run goes on */
	if (tick >= 50 && tick < 100) {
		f->flags |= MEAD_FRAME_DEVICE_GONE;
		return -ENODEV;
	}
	return 0;
}

static int unplug_stop_outputs(void *st)
{
	unplug.stop_outputs_calls++;
	return 0;
}

static const struct mead_driver_ops unplug_ops = {
	.abi_version = MEAD_DRIVER_ABI_VERSION, .ops_size = sizeof(struct mead_driver_ops), .name = "unplug",
	.write_stim = unplug_write, .read_frame = unplug_read, .stop_outputs = unplug_stop_outputs,
};

static void test_device_gone_and_driver_errors(void **state)
{
	struct mead_driver_handle drv = { .ops = &unplug_ops,
					  .caps = { .electrode_count = 60, .sample_rate_hz = 1000,
						    .flags = MEAD_CAP_STIMULATE } };
	struct mead_loop_params lp = { .period_ns = 1000000, .virtual_clock = true, .max_ticks = 200,
				       .spike_capacity = 16, .stim_capacity = 64, .cpu = -1 };
	struct mead_ring *ring;
	struct mead_loop *loop;
	struct collected got = { 0 };
	char warn[128];

	memset(&unplug, 0, sizeof(unplug));
	assert_int_equal(mead_ring_new(1u << 20, &ring), 0);
	assert_int_equal(mead_loop_new(&lp, &drv, &layout.view, ring, NULL, &loop), 0);
	/* a train of 100 pulses at 500 Hz: one every 2 ticks, still running when the device goes */
	struct mead_command cmd = { .type = MEAD_CMD_STIM_TRAIN };
	cmd.train.electrodes[0] = 5;
	cmd.train.n_electrodes = 1;
	cmd.train.amplitude_ua = -1;
	cmd.train.phase_us = 100;
	cmd.train.pulses = 100;
	cmd.train.rate_hz = 500;
	assert_int_equal(mead_loop_submit(loop, &cmd), 0);
	assert_int_equal(mead_loop_start(loop, warn, sizeof(warn)), 0);
	mead_loop_join(loop);
	drain(ring, &got);
	const struct mead_loop_stats *s = mead_loop_stats(loop);
	assert_int_equal(atomic_load(&s->ticks), 200);
	assert_int_equal(atomic_load(&s->device_losses), 1);
	assert_int_equal(atomic_load(&s->device_gone), 0);      /* it came back */
	assert_int_equal(unplug.stim_calls_while_gone, 0);
	/* the train ran ticks 0, 2, .., 50 (26 pulses) and was ended by the loss */
	assert_int_equal(got.stim, 26);
	assert_int_equal(unplug.stim_calls, 26);
	/* once at the loss, once at the end of the run */
	assert_int_equal(unplug.stop_outputs_calls, 2);
	assert_int_equal(atomic_load(&s->driver_errors), 10);
	mead_loop_free(loop);
	mead_ring_free(ring);
}

/* ---- an in-test driver that says what became of each pulse ---- */

static struct {
	struct mead_stim_pulse pending;
	bool has_pending;
	uint32_t given;                  /* pulses write_stim was given */
} truth;

static int truth_write(void *st, uint64_t tick, const struct mead_stim_pulse *p, uint32_t n,
		       struct mead_stim_result *results)
{
	for (uint32_t i = 0; i < n; i++) {
		truth.given++;
		results[i] = (struct mead_stim_result){ .pulse = p[i], .sample = p[i].sample,
							.status = MEAD_STIM_DELIVERED };
		if (p[i].electrode == 5) {
			results[i].status = MEAD_STIM_REFUSED;       /* the device said no */
			results[i].reason = MEAD_STIM_REASON_BUSY;
		} else if (p[i].electrode == 6) {
			results[i].status = MEAD_STIM_PENDING;       /* only the device can tell */
			truth.pending = p[i];
			truth.has_pending = true;
		}
	}
	return 0;
}

static int truth_read(void *st, uint64_t tick, struct mead_frame *f)
{
	if (truth.has_pending && f->stim_result_capacity > 0) {
		/* it started three samples late */
		f->stim_results[f->n_stim_results++] = (struct mead_stim_result){
			.pulse = truth.pending, .sample = truth.pending.sample + 3, .status = MEAD_STIM_DELIVERED };
		truth.has_pending = false;
	}
	return 0;
}

static const struct mead_driver_ops truth_ops = {
	.abi_version = MEAD_DRIVER_ABI_VERSION, .ops_size = sizeof(struct mead_driver_ops), .name = "truth",
	.write_stim = truth_write, .read_frame = truth_read,
};

/* The stimulation record is what was delivered: a pulse the driver
 * refused or that exceeded what it takes per tick is never a stim record
 * but a stim_refused event with its reason; a pending pulse is recorded
 * once the device settles it, at the sample it started, flagged late. */
static void test_stim_record_is_what_was_delivered(void **state)
{
	struct mead_driver_handle drv = { .ops = &truth_ops,
					  .caps = { .electrode_count = 60, .sample_rate_hz = 1000,
						    .flags = MEAD_CAP_STIMULATE, .max_pulses_per_tick = 3 } };
	struct mead_loop_params lp = { .period_ns = 1000000, .virtual_clock = true, .max_ticks = 20,
				       .spike_capacity = 16, .stim_capacity = 64, .cpu = -1 };
	struct mead_ring *ring;
	struct mead_loop *loop;
	char warn[128];

	memset(&truth, 0, sizeof(truth));
	assert_int_equal(mead_ring_new(1u << 20, &ring), 0);
	assert_int_equal(mead_loop_new(&lp, &drv, &layout.view, ring, NULL, &loop), 0);
	/* one pulse on 1, 5, 6 and 7 at once: 1 delivered, 5 refused by the
	 * device, 6 pending then late, 7 over the per-tick limit */
	struct mead_command cmd = { .type = MEAD_CMD_STIM_TRAIN };
	cmd.train.electrodes[0] = 1;
	cmd.train.electrodes[1] = 5;
	cmd.train.electrodes[2] = 6;
	cmd.train.electrodes[3] = 7;
	cmd.train.n_electrodes = 4;
	cmd.train.amplitude_ua = -1;
	cmd.train.phase_us = 100;
	cmd.train.pulses = 1;
	cmd.train.rate_hz = 10;
	assert_int_equal(mead_loop_submit(loop, &cmd), 0);
	assert_int_equal(mead_loop_start(loop, warn, sizeof(warn)), 0);
	mead_loop_join(loop);

	uint32_t records = 0, late = 0, refused_busy = 0, refused_limit = 0;
	uint64_t late_sample = 0;
	const struct mead_msg *m;
	size_t len;
	while ((m = mead_ring_peek(ring, &len))) {
		if (m->kind == MEAD_KIND_STIM) {
			const struct mead_wire_stim *w = (const void *)(m + 1);
			for (uint32_t i = 0; i < m->count; i++) {
				records++;
				assert_true(w[i].pulse.electrode == 1 || w[i].pulse.electrode == 6);
				if (w[i].pulse.flags & MEAD_STIM_LATE) {
					late++;
					late_sample = w[i].pulse.sample;
					assert_int_equal(w[i].requested_sample + 3, w[i].pulse.sample);
				}
			}
		}
		if (m->kind == MEAD_KIND_EVENTS) {
			const struct mead_event *e = (const void *)(m + 1);
			for (uint32_t i = 0; i < m->count; i++) {
				if (e[i].type != MEAD_EVENT_STIM_REFUSED)
					continue;
				if (e[i].electrode == 5 && e[i].value == MEAD_STIM_REASON_BUSY)
					refused_busy++;
				if (e[i].electrode == 7 && e[i].value == MEAD_STIM_REASON_TICK_LIMIT)
					refused_limit++;
			}
		}
		mead_ring_release(ring);
	}
	const struct mead_loop_stats *s = mead_loop_stats(loop);
	assert_int_equal(truth.given, 3);              /* the fourth never reached the driver */
	assert_int_equal(records, 2);
	assert_int_equal(late, 1);
	assert_int_equal(late_sample, 3);
	assert_int_equal(refused_busy, 1);
	assert_int_equal(refused_limit, 1);
	assert_int_equal(atomic_load(&s->stim_pulses), 2);
	assert_int_equal(atomic_load(&s->stim_late), 1);
	assert_int_equal(atomic_load(&s->stim_pending), 0);
	assert_int_equal(atomic_load(&s->stim_rejected), 2);
	assert_int_equal(atomic_load(&s->stim_refused[MEAD_STIM_REASON_BUSY]), 1);
	assert_int_equal(atomic_load(&s->stim_refused[MEAD_STIM_REASON_TICK_LIMIT]), 1);
	mead_loop_free(loop);
	mead_ring_free(ring);
}

/* ---- an in-test driver whose samples fall behind at the end of the run ---- */

static struct {
	bool catch_up;                   /* the owed samples come after the last tick */
	uint64_t late_from_tick;         /* from this tick on, nothing comes in time */
	uint64_t acq;                    /* samples delivered */
	uint32_t reads_after_end;        /* reads of no samples of their own */
} owed;

static void owed_deliver(struct mead_frame *f, uint64_t to)
{
	if (to <= owed.acq)
		return;
	if (f->raw) {
		f->raw_first_sample = owed.acq;
		f->raw_samples = (uint32_t)(to - owed.acq);
		memset(f->raw, 0, (size_t)f->raw_samples * f->raw_channels * sizeof(int16_t));
	}
	owed.acq = to;
}

static int owed_read(void *st, uint64_t tick, struct mead_frame *f)
{
	const uint64_t end = f->first_sample + f->n_samples;
	if (f->n_samples == 0)
		owed.reads_after_end++;
	if (tick < owed.late_from_tick || (f->n_samples == 0 && owed.catch_up))
		owed_deliver(f, end);
	else if (tick == owed.late_from_tick)
		owed_deliver(f, f->first_sample + 10);        /* part of the tick */
	if (owed.acq < end) {
		uint64_t from = owed.acq > f->first_sample ? owed.acq : f->first_sample;
		f->flags |= MEAD_FRAME_LATE;
		if (from < end)
			mead_frame_event(f, MEAD_EVENT_LATE, from, end - from, 0, 0);
	}
	f->acquired = owed.acq;
	return 0;
}

static const struct mead_driver_ops owed_ops = {
	.abi_version = MEAD_DRIVER_ABI_VERSION, .ops_size = sizeof(struct mead_driver_ops), .name = "owed",
	.read_frame = owed_read,
};

static void run_owed(bool catch_up, bool raw, struct collected *got, const struct mead_loop_stats **ret_stats,
		     struct mead_loop **ret_loop, struct mead_ring **ret_ring)
{
	struct mead_driver_handle drv = { .ops = &owed_ops,
					  .caps = { .electrode_count = 8, .sample_rate_hz = 25000,
						    .raw_channels = raw ? 8 : 0, .flags = raw ? MEAD_CAP_RAW : 0 } };
	struct mead_loop_params lp = { .period_ns = 1000000, .virtual_clock = true, .max_ticks = 100,
				       .spike_capacity = 16, .stim_capacity = 16, .cpu = -1, .want_raw = raw };
	char warn[128];

	memset(&owed, 0, sizeof(owed));
	owed.catch_up = catch_up;
	owed.late_from_tick = 97;
	memset(got, 0, sizeof(*got));
	assert_int_equal(mead_ring_new(8u << 20, ret_ring), 0);
	assert_int_equal(mead_loop_new(&lp, &drv, &layout.view, *ret_ring, NULL, ret_loop), 0);
	assert_int_equal(mead_loop_start(*ret_loop, warn, sizeof(warn)), 0);
	mead_loop_join(*ret_loop);
	drain(*ret_ring, got);
	*ret_stats = mead_loop_stats(*ret_loop);
	assert_int_equal(atomic_load(&(*ret_stats)->ticks), 100);
	assert_true(got->run_end);
	assert_int_equal(got->run_end_sample, 2500);
}

/* The run is every sample of its ticks: samples its last ticks were still
 * owed come after the last tick, before RUN_END; samples that never come
 * are lost and an UNREAD event says which (a LATE event promised them). */
static void test_last_ticks_owed_samples(void **state)
{
	struct collected got;
	const struct mead_loop_stats *s;
	struct mead_loop *loop;
	struct mead_ring *ring;

	/* they come: all 2500 samples in raw, one unbroken chain */
	run_owed(true, true, &got, &s, &loop, &ring);
	assert_int_equal(got.raw_frames, 2500);
	assert_int_equal(got.raw_breaks, 0);
	assert_int_equal(got.unread_events, 0);
	assert_int_equal(got.late_samples, 75 - 10);
	assert_true(owed.reads_after_end >= 1);
	mead_loop_free(loop);
	mead_ring_free(ring);

	/* they never come: the loop waits a second for them, then says so;
	 * raw ends where the device's samples did, tick 97 + 10 samples */
	run_owed(false, true, &got, &s, &loop, &ring);
	assert_int_equal(got.raw_frames, 97 * 25 + 10);
	assert_int_equal(got.unread_events, 1);
	assert_int_equal(got.unread_sample, 97 * 25 + 10);
	assert_int_equal(got.unread_samples, 2500 - (97 * 25 + 10));
	assert_int_equal(atomic_load(&s->loss_events[MEAD_EVENT_UNREAD]), 1);
	assert_int_equal(atomic_load(&s->loss_samples[MEAD_EVENT_UNREAD]), 2500 - (97 * 25 + 10));
	assert_true(owed.reads_after_end >= 100);
	mead_loop_free(loop);
	mead_ring_free(ring);

	/* without raw the loop knows only the LATE events: the first since
	 * the last whole tick is where the loss starts */
	run_owed(false, false, &got, &s, &loop, &ring);
	assert_int_equal(got.unread_events, 1);
	assert_int_equal(got.unread_sample, 97 * 25 + 10);
	assert_int_equal(got.unread_samples, 2500 - (97 * 25 + 10));
	mead_loop_free(loop);
	mead_ring_free(ring);
}

/* ---- an in-test driver with a detector whose thresholds can be set ---- */

static struct {
	uint32_t calls;
	uint16_t electrode;
	enum mead_threshold_mode mode;
	float value;
	uint64_t late_from_tick, late_until_tick;
	uint64_t acq;
} thr;

static int thr_control(void *st, enum mead_driver_control op, int64_t value)
{
	if (op != MEAD_CTL_THRESHOLD)
		return -EOPNOTSUPP;
	mead_ctl_threshold_unpack(value, &thr.electrode, &thr.mode, &thr.value);
	thr.calls++;
	return thr.electrode == 9 ? -ENOENT : 0;
}

/* late between two ticks: the samples the threshold applies from are
 * the next the driver processes, not the tick's */
static int thr_read(void *st, uint64_t tick, struct mead_frame *f)
{
	const uint64_t end = f->first_sample + f->n_samples;
	if (tick < thr.late_from_tick || tick >= thr.late_until_tick)
		thr.acq = end;
	if (thr.acq < end) {
		f->flags |= MEAD_FRAME_LATE;
		if (thr.acq >= f->first_sample)
			mead_frame_event(f, MEAD_EVENT_LATE, thr.acq, end - thr.acq, 0, 0);
	}
	return 0;
}

static const struct mead_driver_ops thr_ops = {
	.abi_version = MEAD_DRIVER_ABI_VERSION, .ops_size = sizeof(struct mead_driver_ops), .name = "thr",
	.read_frame = thr_read, .control = thr_control,
};

/* Drains the ring; the THRESHOLD events in it (up to cap), and how many. */
static uint32_t threshold_events(struct mead_ring *ring, struct mead_event *out, uint32_t cap)
{
	const struct mead_msg *m;
	size_t len;
	uint32_t n = 0;
	while ((m = mead_ring_peek(ring, &len))) {
		const struct mead_event *e = (const void *)(m + 1);
		for (uint32_t i = 0; m->kind == MEAD_KIND_EVENTS && i < m->count; i++)
			if (e[i].type == MEAD_EVENT_THRESHOLD && n++ < cap)
				out[n - 1] = e[i];
		mead_ring_release(ring);
	}
	return n;
}

static void test_threshold_command(void **state)
{
	struct mead_driver_handle drv = { .ops = &thr_ops,
					  .caps = { .electrode_count = 8, .sample_rate_hz = 25000,
						    .flags = MEAD_CAP_THRESHOLDS } };
	struct mead_loop_params lp = { .period_ns = 1000000, .virtual_clock = true, .max_ticks = 50,
				       .spike_capacity = 16, .stim_capacity = 16, .cpu = -1 };
	struct mead_ring *ring;
	struct mead_loop *loop;
	char warn[128];

	memset(&thr, 0, sizeof(thr));
	thr.late_from_tick = 0;
	thr.late_until_tick = 0;
	assert_int_equal(mead_ring_new(1u << 20, &ring), 0);
	assert_int_equal(mead_loop_new(&lp, &drv, &layout.view, ring, NULL, &loop), 0);
	struct mead_command a = { .type = MEAD_CMD_THRESHOLD,
				  .threshold = { .electrode = 3, .mode = MEAD_THRESHOLD_UV, .value = 42.5f } };
	struct mead_command b = { .type = MEAD_CMD_THRESHOLD,
				  .threshold = { .electrode = 9, .mode = MEAD_THRESHOLD_NOISE, .value = 6.0f } };
	struct mead_command c = { .type = MEAD_CMD_THRESHOLD,
				  .threshold = { .electrode = MEAD_EVENT_ALL_ELECTRODES, .mode = MEAD_THRESHOLD_NOISE,
						 .value = 6.5f } };
	assert_int_equal(mead_loop_submit(loop, &a), 0);
	assert_int_equal(mead_loop_submit(loop, &b), 0);
	assert_int_equal(mead_loop_start(loop, warn, sizeof(warn)), 0);
	mead_loop_join(loop);
	const struct mead_loop_stats *s = mead_loop_stats(loop);
	assert_int_equal(thr.calls, 2);
	assert_int_equal(atomic_load(&s->thresholds_set), 1);
	assert_int_equal(atomic_load(&s->thresholds_refused), 1);
	/* the one taken is an event at the run's first sample; the refused none */
	struct mead_event ev[4];
	assert_int_equal(threshold_events(ring, ev, 4), 1);
	assert_int_equal(ev[0].sample, 0);
	assert_int_equal(ev[0].electrode, 3);
	assert_int_equal(ev[0].value, -4250);
	mead_loop_free(loop);
	mead_ring_free(ring);

	/* sent while ticks 10..19 are late: it applies from the first sample
	 * not yet processed, which is tick 10's */
	memset(&thr, 0, sizeof(thr));
	thr.late_from_tick = 10;
	thr.late_until_tick = 400;
	lp.max_ticks = 500;
	lp.virtual_clock = false;
	assert_int_equal(mead_ring_new(1u << 20, &ring), 0);
	assert_int_equal(mead_loop_new(&lp, &drv, &layout.view, ring, NULL, &loop), 0);
	assert_int_equal(mead_loop_start(loop, warn, sizeof(warn)), 0);
	s = mead_loop_stats(loop);
	while (atomic_load(&s->ticks) < 15) {
		struct timespec nap = { 0, 200000 };
		nanosleep(&nap, NULL);
	}
	assert_int_equal(mead_loop_submit(loop, &c), 0);
	mead_loop_join(loop);
	assert_int_equal(threshold_events(ring, ev, 4), 1);
	assert_int_equal(ev[0].sample, 10 * 25);
	assert_int_equal(ev[0].electrode, MEAD_EVENT_ALL_ELECTRODES);
	assert_int_equal(ev[0].value, 650);
	assert_true(thr.mode == MEAD_THRESHOLD_NOISE && thr.value == 6.5f);
	mead_loop_free(loop);
	mead_ring_free(ring);
}

/* ---- an in-test driver with digital inputs ---- */

/* Line tick % 3 goes to level tick % 2 at sample 25 x tick + 30, every
 * seventh tick. */
static int digital_read(void *st, uint64_t tick, struct mead_frame *f)
{
	(void)st;
	if (tick % 7 == 0 && f->n_samples)
		mead_frame_event(f, MEAD_EVENT_DIGITAL, tick * 25 + 30, 0, (uint16_t)(tick % 3), (int32_t)(tick % 2));
	return 0;
}

static const struct mead_driver_ops digital_ops = {
	.abi_version = MEAD_DRIVER_ABI_VERSION, .ops_size = sizeof(struct mead_driver_ops), .name = "digital",
	.read_frame = digital_read,
};

/* A driver's digital events reach the events stream as they were (the
 * line in the electrode field) and are no data loss. */
static void test_digital_events_passed_not_lost(void **state)
{
	struct mead_driver_handle drv = { .ops = &digital_ops, .caps = { .electrode_count = 8, .sample_rate_hz = 25000 } };
	struct mead_loop_params lp = { .period_ns = 1000000, .virtual_clock = true, .max_ticks = 100,
				       .spike_capacity = 16, .stim_capacity = 16, .cpu = -1 };
	struct mead_ring *ring;
	struct mead_loop *loop;
	char warn[128];
	assert_int_equal(mead_ring_new(8u << 20, &ring), 0);
	assert_int_equal(mead_loop_new(&lp, &drv, &layout.view, ring, NULL, &loop), 0);
	assert_int_equal(mead_loop_start(loop, warn, sizeof(warn)), 0);
	mead_loop_join(loop);
	uint32_t n = 0;
	bool as_sent = true;
	const struct mead_msg *m;
	size_t len;
	while ((m = mead_ring_peek(ring, &len))) {
		const struct mead_event *e = (const void *)(m + 1);
		for (uint32_t i = 0; m->kind == MEAD_KIND_EVENTS && i < m->count; i++) {
			if (e[i].type != MEAD_EVENT_DIGITAL)
				continue;
			uint64_t tick = (e[i].sample - 30) / 25;
			as_sent &= tick % 7 == 0 && e[i].sample == tick * 25 + 30 && e[i].electrode == tick % 3 &&
				   e[i].value == (int32_t)(tick % 2) && e[i].samples == 0 && m->sample == tick * 25;
			n++;
		}
		mead_ring_release(ring);
	}
	const struct mead_loop_stats *s = mead_loop_stats(loop);
	assert_int_equal(n, 15);
	assert_true(as_sent);
	assert_int_equal(atomic_load(&s->loss_events[MEAD_EVENT_DIGITAL]), 0);
	mead_loop_free(loop);
	mead_ring_free(ring);
}

static int setup(void **state)
{
	char err[512];

	assert_int_equal(mead_config_load(&cfg, NULL, NULL, 0, err, sizeof(err)), 0);
	assert_int_equal(mead_layout_build(&cfg, &layout, err, sizeof(err)), 0);
	return 0;
}

static int teardown(void **state)
{
	mead_config_release(&cfg);
	return 0;
}

/* ---- waveforms: an in-test driver cutting one per tick ---- */

#define WAVE_PRE 3u
#define WAVE_POST 5u

static int wave_read(void *st, uint64_t tick, struct mead_frame *f)
{
	(void)st;
	if (!f->n_samples)
		return 0;
	f->spikes[f->n_spikes++] = (struct mead_spike){ .sample = f->first_sample, .electrode = (uint16_t)(tick % 4),
							.amplitude_uv = -(float)tick };
	/* the waveform of the previous tick's spike: its post samples are in */
	if (tick == 0)
		return 0;
	if (!f->waveforms || f->waveform_capacity == 0) {
		f->waveforms_dropped++;
		return 0;
	}
	uint8_t *rec = f->waveforms;
	struct mead_waveform w = { .sample = f->first_sample - 1, .electrode = (uint16_t)((tick - 1) % 4),
				   .pre = WAVE_PRE, .post = WAVE_POST, .amplitude_uv = -(float)(tick - 1) };
	memcpy(rec, &w, sizeof(w));
	float *v = (float *)(rec + sizeof(w));
	for (uint32_t i = 0; i < WAVE_PRE + 1 + WAVE_POST; i++)
		v[i] = (float)(tick * 100 + i);
	f->n_waveforms = 1;
	return 0;
}

static const struct mead_driver_ops wave_ops = {
	.abi_version = MEAD_DRIVER_ABI_VERSION, .ops_size = sizeof(struct mead_driver_ops), .name = "wave",
	.read_frame = wave_read,
};

/* Waveform records travel as their own kind (topic "waveforms"), each
 * record its header and pre + 1 + post floats, next to unchanged spike
 * messages; a ring too small for them drops them and counts it. */
static void test_waveforms_pass_as_their_own_kind(void **state)
{
	struct mead_driver_handle drv = { .ops = &wave_ops,
					  .caps = { .electrode_count = 4, .sample_rate_hz = 1000, .flags = MEAD_CAP_WAVEFORMS,
						    .waveform_pre = WAVE_PRE, .waveform_post = WAVE_POST } };
	struct mead_loop_params lp = { .period_ns = 1000000, .virtual_clock = true, .max_ticks = 20,
				       .spike_capacity = 16, .stim_capacity = 8, .cpu = -1 };
	struct mead_ring *ring;
	struct mead_loop *loop;
	char warn[128];

	assert_string_equal(mead_wire_topic(MEAD_KIND_WAVEFORMS), "waveforms");
	assert_int_equal(mead_waveform_size(WAVE_PRE, WAVE_POST), 24 + 4 * 9);
	assert_int_equal(mead_ring_new(1u << 20, &ring), 0);
	assert_int_equal(mead_loop_new(&lp, &drv, &layout.view, ring, NULL, &loop), 0);
	assert_int_equal(mead_loop_start(loop, warn, sizeof(warn)), 0);
	mead_loop_join(loop);
	uint32_t spikes = 0, waves = 0;
	const struct mead_msg *m;
	size_t len;
	while ((m = mead_ring_peek(ring, &len))) {
		if (m->kind == MEAD_KIND_SPIKES) {
			assert_int_equal(m->record_size, sizeof(struct mead_spike));
			spikes += m->count;
		}
		if (m->kind == MEAD_KIND_WAVEFORMS) {
			assert_int_equal(m->record_size, mead_waveform_size(WAVE_PRE, WAVE_POST));
			assert_int_equal(len, sizeof(*m) + (size_t)m->count * m->record_size);
			assert_int_equal(m->count, 1);
			assert_int_equal(m->seq, waves);
			struct mead_waveform w;
			memcpy(&w, m + 1, sizeof(w));
			const uint64_t tick = m->sample;   /* 1 ms ticks at 1 kHz: tick = sample */
			assert_int_equal(w.sample, tick - 1);
			assert_int_equal(w.electrode, (tick - 1) % 4);
			assert_int_equal(w.pre, WAVE_PRE);
			assert_int_equal(w.post, WAVE_POST);
			float v[WAVE_PRE + 1 + WAVE_POST];
			memcpy(v, (const uint8_t *)(m + 1) + sizeof(w), sizeof(v));
			for (uint32_t i = 0; i < WAVE_PRE + 1 + WAVE_POST; i++)
				assert_float_equal(v[i], (float)(tick * 100 + i), 0);
			waves++;
		}
		mead_ring_release(ring);
	}
	const struct mead_loop_stats *s = mead_loop_stats(loop);
	assert_int_equal(spikes, 20);
	assert_int_equal(waves, 19);
	assert_int_equal(atomic_load(&s->waveforms), 19);
	assert_int_equal(atomic_load(&s->waveforms_dropped), 0);
	assert_int_equal(atomic_load(&s->produced[MEAD_KIND_WAVEFORMS]), 19);
	assert_int_equal(atomic_load(&s->dropped[MEAD_KIND_WAVEFORMS]), 0);
	mead_loop_free(loop);
	mead_ring_free(ring);

	/* a ring with room for none of them (real time: no waiting) */
	lp.virtual_clock = false;
	lp.max_ticks = 5;
	assert_int_equal(mead_ring_new(64, &ring), 0);
	assert_int_equal(mead_loop_new(&lp, &drv, &layout.view, ring, NULL, &loop), 0);
	assert_int_equal(mead_loop_start(loop, warn, sizeof(warn)), 0);
	mead_loop_join(loop);
	s = mead_loop_stats(loop);
	assert_int_equal(atomic_load(&s->produced[MEAD_KIND_WAVEFORMS]), 4);
	assert_int_equal(atomic_load(&s->dropped[MEAD_KIND_WAVEFORMS]), 4);
	mead_loop_free(loop);
	mead_ring_free(ring);

	/* a driver without MEAD_CAP_WAVEFORMS is given no buffer */
	drv.caps.flags = 0;
	lp.virtual_clock = true;
	assert_int_equal(mead_ring_new(1u << 20, &ring), 0);
	assert_int_equal(mead_loop_new(&lp, &drv, &layout.view, ring, NULL, &loop), 0);
	assert_int_equal(mead_loop_start(loop, warn, sizeof(warn)), 0);
	mead_loop_join(loop);
	s = mead_loop_stats(loop);
	assert_int_equal(atomic_load(&s->produced[MEAD_KIND_WAVEFORMS]), 0);
	while ((m = mead_ring_peek(ring, &len))) {
		assert_int_not_equal(m->kind, MEAD_KIND_WAVEFORMS);
		mead_ring_release(ring);
	}
	mead_loop_free(loop);
	mead_ring_free(ring);
}

/* A module of driver ABI 2 still loads and runs (told it speaks 2, its
 * caps' newer fields zero, no waveforms); one of ABI 1 is refused. */
static void test_abi2_module_still_loads(void **state)
{
	char dir[1024], err[1024];
	const char *root = getenv("MEAD_BUILD_ROOT");
	if (!root) {
		print_message("skip: MEAD_BUILD_ROOT unset\n");
		skip();
	}
	snprintf(dir, sizeof(dir), "%s/tests/unit", root);
	struct mead_driver_module *mod = NULL;
	assert_int_equal(mead_driver_module_load("abi1", dir, NULL, &mod, err, sizeof(err)), -ENOEXEC);
	print_message("abi1: %s\n", err);
	assert_non_null(strstr(err, "speaks driver ABI 1, this mead speaks 2 to 3"));
	assert_int_equal(mead_driver_module_load("abi2", dir, NULL, &mod, err, sizeof(err)), 0);
	assert_int_equal(mead_driver_module_abi(mod), 2);
	struct mead_driver_handle drv = { .ops = mead_driver_module_ops(mod) };
	struct mead_driver_config dc = { .abi_version = MEAD_DRIVER_ABI_VERSION, .period_us = 1000, .period_ns = 1000000,
					 .layout = &layout.view };
	assert_int_equal(drv.ops->open(&dc, &drv.state, err, sizeof(err)), -EPROTO);
	dc.abi_version = mead_driver_module_abi(mod);
	assert_int_equal(drv.ops->open(&dc, &drv.state, err, sizeof(err)), 0);
	memset(&drv.caps, 0, sizeof(drv.caps));
	assert_int_equal(drv.ops->get_caps(drv.state, &drv.caps), 0);
	assert_int_equal(drv.caps.flags & MEAD_CAP_WAVEFORMS, 0);
	struct mead_loop_params lp = { .period_ns = 1000000, .virtual_clock = true, .max_ticks = 10,
				       .spike_capacity = 16, .stim_capacity = 8, .cpu = -1 };
	struct mead_ring *ring;
	struct mead_loop *loop;
	char warn[128];
	assert_int_equal(mead_ring_new(1u << 20, &ring), 0);
	assert_int_equal(mead_loop_new(&lp, &drv, &layout.view, ring, NULL, &loop), 0);
	assert_int_equal(mead_loop_start(loop, warn, sizeof(warn)), 0);
	mead_loop_join(loop);
	const struct mead_loop_stats *s = mead_loop_stats(loop);
	assert_int_equal(atomic_load(&s->spikes), 10);
	assert_int_equal(atomic_load(&s->produced[MEAD_KIND_WAVEFORMS]), 0);
	mead_loop_free(loop);
	mead_ring_free(ring);
	mead_driver_module_free(mod);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_virtual_run_counts_and_streams),
		cmocka_unit_test(test_same_traffic_in_both_clock_modes),
		cmocka_unit_test(test_overruns_counted_never_rebased),
		cmocka_unit_test(test_full_ring_drops_are_seq_gaps),
		cmocka_unit_test(test_bool_options_reach_drivers_normalised),
		cmocka_unit_test(test_loop_follows_a_drifting_device_clock),
		cmocka_unit_test(test_device_gone_and_driver_errors),
		cmocka_unit_test(test_stim_record_is_what_was_delivered),
		cmocka_unit_test(test_last_ticks_owed_samples),
		cmocka_unit_test(test_threshold_command),
		cmocka_unit_test(test_digital_events_passed_not_lost),
		cmocka_unit_test(test_waveforms_pass_as_their_own_kind),
		cmocka_unit_test(test_abi2_module_still_loads),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
