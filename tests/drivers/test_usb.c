/* SPDX-License-Identifier: MIT */
/*
 * mead-driver-usb, unmodified, with the real libusb, against a USB front-end
 * emulated behind a umockdev testbed usbdevfs node (see umodel.c).  Runs
 * under umockdev-wrapper.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <math.h>
#include <time.h>
#include <umockdev.h>

#include "tests/lib/devmodel.h"
#include "lib/core/time.h"
#include "tests/lib/harness.h"

#define RATE 25000u
#define PERIOD_US 1000u
#define VID 0x1209
#define PID 0x4d45

static UMockdevTestbed *tb;
static struct umodel *dev0, *dev_small;
static struct siggen *gen0, *gen_small;
static uint64_t world;   /* samples of emulated time, shared by all ticks */

static void open_dev(struct harness *h)
{
	harness_layout60(h);
	assert_non_null(harness_load(h, "usb"));
	harness_defaults(h, PERIOD_US);
	harness_set(h, "reattach_interval_ms", "2");
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* One loop tick: emulated time moves on by a tick, then the loop's calls. */
static int tick(struct harness *h, uint64_t t, const struct mead_stim_pulse *p, uint32_t n, struct mead_frame *f,
		struct mead_spike *spk, uint32_t cap, int *stim_ret)
{
	uint64_t first = mead_tick_first_sample(t, PERIOD_US * 1000u, RATE), next = mead_tick_first_sample(t + 1, PERIOD_US * 1000u, RATE);
	world += next - first;
	umodel_set_clock(dev0, world);
	struct mead_stim_result res[64];
	int s = h->ops->write_stim(h->state, t, p, n, res);
	if (stim_ret)
		*stim_ret = s;
	*f = (struct mead_frame){ .first_sample = first, .n_samples = (uint32_t)(next - first), .spikes = spk, .spike_capacity = cap };
	return h->ops->read_frame(h->state, t, f);
}

static void test_spikes_match_planted(void **unused)
{
	struct harness h = { 0 };
	open_dev(&h);
	harness_set(&h, "threshold_k", "6");  /* see test-drivers-comedi */
	assert_int_equal(harness_open(&h), 0);
	struct mead_driver_caps caps;
	h.ops->get_caps(h.state, &caps);
	assert_int_equal(caps.electrode_count, 60);
	assert_int_equal(caps.sample_rate_hz, RATE);
	assert_float_equal(caps.uv_per_count, 0.195, 1e-6);
	assert_true(caps.flags & MEAD_CAP_STIMULATE);
	assert_int_equal(caps.max_pulses_per_tick, 16);

	const uint64_t ticks = 3000, total = ticks * RATE / 1000;
	siggen_plant_poisson(gen0, 20.0, RATE / 2, total - 100, 80, 70.0f);
	uint32_t n_planted;
	const struct siggen_spike *planted = siggen_spikes(gen0, &n_planted);
	assert_int_equal(h.ops->start(h.state, h.err, sizeof(h.err)), 0);

	struct mead_spike *spk = calloc(4096, sizeof(*spk));
	uint64_t *found = calloc(200000, sizeof(uint64_t));
	size_t n_found = 0;
	uint32_t late = 0;
	for (uint64_t t = 0; t < ticks; t++) {
		struct mead_frame f;
		assert_int_equal(tick(&h, t, NULL, 0, &f, spk, 4096, NULL), 0);
		late += (f.flags & MEAD_FRAME_LATE) != 0;
		assert_false(f.flags & (MEAD_FRAME_GAP | MEAD_FRAME_OVERFLOW | MEAD_FRAME_DEVICE_GONE));
		for (uint32_t i = 0; i < f.n_spikes; i++) {
			if (i)
				assert_true(spk[i].sample >= spk[i - 1].sample);
			found[n_found++] = ((uint64_t)spk[i].electrode << 48) | spk[i].sample;
		}
	}
	qsort(found, n_found, sizeof(uint64_t), cmp_u64);
	bool *used = calloc(n_found + 1, sizeof(bool));
	uint32_t matched = 0, off = 0;
	for (uint32_t i = 0; i < n_planted; i++) {
		uint64_t key = ((uint64_t)planted[i].channel << 48) | planted[i].sample;
		for (size_t j = 0; j < n_found; j++) {
			if (found[j] + 1 < key)
				continue;
			if (found[j] > key + 1)
				break;
			if (!used[j]) {
				used[j] = true;
				matched++;
				off += found[j] != key;
				break;
			}
		}
	}
	print_message("usb: planted %u, detected %zu, matched %u (%u one sample off), late ticks %u\n", n_planted,
		      n_found, matched, off, late);
	assert_true(n_planted > 2000);
	assert_int_equal(matched, n_planted);
	assert_int_equal(n_found, n_planted);
	/* packets of 25 samples on 1 ms ticks line up: nothing is late */
	assert_int_equal(late, 0);
	assert_int_equal(h.ops->stop(h.state), 0);
	assert_true(umodel_stops(dev0) >= 1);
	harness_close(&h);
	free(used);
	free(found);
	free(spk);
}

static void test_stimulation_arrives(void **unused)
{
	struct harness h = { 0 };
	open_dev(&h);
	assert_int_equal(harness_open(&h), 0);
	assert_int_equal(h.ops->start(h.state, h.err, sizeof(h.err)), 0);
	struct umodel_stim before[64];
	uint32_t n0 = umodel_stims(dev0, before, 64);
	struct mead_spike spk[512];
	struct mead_frame f;
	uint64_t t = 0;
	for (; t < 20; t++)
		assert_int_equal(tick(&h, t, NULL, 0, &f, spk, 512, NULL), 0);
	/* three pulses in one tick, one in the past, two ahead */
	uint64_t now = mead_tick_first_sample(t + 1, PERIOD_US * 1000u, RATE);
	struct mead_stim_pulse p[3] = {
		{ .sample = now - 30, .electrode = 3, .amplitude_ua = -20.5f, .phase_us = 200, .interphase_us = 40 },
		{ .sample = now + 12, .electrode = 41, .amplitude_ua = 35.0f, .phase_us = 100 },
		{ .sample = now + 20, .electrode = 59, .amplitude_ua = -149.0f, .phase_us = 1000, .interphase_us = 0 },
	};
	int sr;
	assert_int_equal(tick(&h, t++, p, 3, &f, spk, 512, &sr), 0);
	assert_int_equal(sr, 0);
	for (int q = 0; q < 5; q++, t++)
		assert_int_equal(tick(&h, t, NULL, 0, &f, spk, 512, NULL), 0);
	/* more pulses than the device takes per command are refused */
	struct mead_stim_pulse many[17] = { 0 };
	assert_int_equal(tick(&h, t++, many, 17, &f, spk, 512, &sr), 0);
	assert_int_equal(sr, -E2BIG);

	struct umodel_stim got[64];
	uint32_t n = umodel_stims(dev0, got, 64);
	assert_int_equal(n - n0, 3);
	for (int k = 0; k < 3; k++) {
		const struct umodel_stim *s = &got[n0 + k];
		print_message("usb: pulse electrode %u %d nA requested %llu start %llu (device clock at arrival %llu)\n",
			      s->electrode, s->amplitude_na, (unsigned long long)s->requested_sample,
			      (unsigned long long)s->start_sample, (unsigned long long)s->received_at);
		assert_int_equal(s->electrode, p[k].electrode);
		assert_int_equal(s->amplitude_na, (int32_t)lroundf(p[k].amplitude_ua * 1000));
		assert_int_equal(s->phase_us, p[k].phase_us);
		assert_int_equal(s->interphase_us, p[k].interphase_us);
		/* the device clock and the loop's samples are the same count */
		assert_int_equal(s->requested_sample, p[k].sample);
		/* the command left on the tick it was written: the device had
		 * not moved past the tick when it arrived */
		assert_true(s->received_at <= now);
		assert_int_equal(s->start_sample, p[k].sample > s->received_at ? p[k].sample : s->received_at);
	}
	uint32_t stops = umodel_stops(dev0);
	assert_int_equal(h.ops->stop_outputs(h.state), 0);
	assert_int_equal(tick(&h, t++, NULL, 0, &f, spk, 512, NULL), 0);
	assert_int_equal(umodel_stops(dev0), stops + 1);
	h.ops->stop(h.state);
	harness_close(&h);
}

static void sleep_ms(int ms)
{
	struct timespec ts = { 0, ms * 1000000L };
	nanosleep(&ts, NULL);
}

static void test_unplug_replug(void **unused)
{
	struct harness h = { 0 };
	open_dev(&h);
	assert_int_equal(harness_open(&h), 0);
	assert_int_equal(h.ops->start(h.state, h.err, sizeof(h.err)), 0);
	uint32_t opens0 = umodel_opens(dev0);
	struct mead_spike spk[512];
	struct mead_frame f;
	uint64_t t = 0;
	for (; t < 50; t++)
		assert_int_equal(tick(&h, t, NULL, 0, &f, spk, 512, NULL), 0);
	umodel_unplug(dev0);
	uint64_t unplug_tick = t;
	int r = 0;
	for (; t < unplug_tick + 10; t++) {
		r = tick(&h, t, NULL, 0, &f, spk, 512, NULL);
		if (r == -ENODEV)
			break;
	}
	print_message("usb: unplugged before tick %llu, read_frame said -ENODEV at tick %llu\n",
		      (unsigned long long)unplug_tick, (unsigned long long)t);
	assert_int_equal(r, -ENODEV);
	assert_true(f.flags & MEAD_FRAME_DEVICE_GONE);
	assert_true(t <= unplug_tick + 1);
	t++;
	/* stimulation stops: nothing reaches the device while it is away */
	struct mead_stim_pulse p = { .sample = 0, .electrode = 1, .amplitude_ua = 10, .phase_us = 100 };
	int sr;
	r = tick(&h, t++, &p, 1, &f, spk, 512, &sr);
	assert_int_equal(sr, -ENODEV);
	assert_int_equal(r, -ENODEV);
	char desc[1024];
	assert_true(h.ops->describe(h.state, desc, sizeof(desc)) > 0);
	assert_non_null(strstr(desc, "\"link\":\"gone\""));
	for (int i = 0; i < 20; i++, t++) {
		sleep_ms(1);
		assert_int_equal(tick(&h, t, NULL, 0, &f, spk, 512, NULL), -ENODEV);
	}
	umodel_replug(dev0);
	uint64_t replug_tick = t;
	for (; t < replug_tick + 2000; t++) {
		sleep_ms(1);
		r = tick(&h, t, NULL, 0, &f, spk, 512, NULL);
		if (r == 0)
			break;
	}
	print_message("usb: replugged at tick %llu, back at tick %llu\n", (unsigned long long)replug_tick,
		      (unsigned long long)t);
	assert_int_equal(r, 0);
	assert_true(umodel_opens(dev0) > opens0);
	/* samples flow again on time */
	uint32_t late = 0;
	for (uint64_t end = t + 50; t < end; t++) {
		assert_int_equal(tick(&h, t, NULL, 0, &f, spk, 512, NULL), 0);
		if (end - t < 40)
			late += (f.flags & MEAD_FRAME_LATE) != 0;
	}
	assert_int_equal(late, 0);
	r = tick(&h, t++, &p, 1, &f, spk, 512, &sr);
	assert_int_equal(sr, 0);
	assert_true(h.ops->describe(h.state, desc, sizeof(desc)) > 0);
	print_message("usb: %s\n", desc);
	assert_non_null(strstr(desc, "\"unplugs\":1"));
	assert_non_null(strstr(desc, "\"reattaches\":1"));
	assert_non_null(strstr(desc, "\"link\":\"live\""));
	assert_int_equal(h.ops->stop(h.state), 0);
	harness_close(&h);
}

static void test_gap_counted(void **unused)
{
	struct harness h = { 0 };
	open_dev(&h);
	assert_int_equal(harness_open(&h), 0);
	assert_int_equal(h.ops->start(h.state, h.err, sizeof(h.err)), 0);
	struct mead_spike spk[512];
	struct mead_frame f;
	uint32_t flags = 0;
	for (uint64_t t = 0; t < 40; t++) {
		if (t == 20)
			umodel_drop_packets(dev0, 3);
		assert_int_equal(tick(&h, t, NULL, 0, &f, spk, 512, NULL), 0);
		flags |= f.flags;
	}
	assert_true(flags & MEAD_FRAME_GAP);
	assert_false(flags & MEAD_FRAME_OVERFLOW);
	/* the device reports an overrun of its own FIFO */
	umodel_overrun(dev0);
	flags = 0;
	for (uint64_t t = 40; t < 45; t++) {
		assert_int_equal(tick(&h, t, NULL, 0, &f, spk, 512, NULL), 0);
		flags |= f.flags;
	}
	assert_true(flags & MEAD_FRAME_OVERFLOW);
	char desc[1024];
	h.ops->describe(h.state, desc, sizeof(desc));
	assert_non_null(strstr(desc, "\"gaps\":1"));
	assert_non_null(strstr(desc, "\"lost_samples\":75"));
	h.ops->stop(h.state);
	harness_close(&h);
}

static void test_bad_configuration(void **unused)
{
	struct harness h = { 0 };
	open_dev(&h);
	harness_set(&h, "pid", "4660");
	int r = harness_open(&h);
	print_message("usb: pid=4660 -> %d: %s\n", r, h.err);
	assert_int_equal(r, -ENOENT);
	assert_non_null(strstr(h.err, "no device 1209:1234"));
	assert_null(h.state);

	struct harness h2 = { 0 };
	open_dev(&h2);
	harness_set(&h2, "pid", "19782");
	r = harness_open(&h2);
	print_message("usb: 32-channel device -> %d: %s\n", r, h2.err);
	assert_int_equal(r, -EINVAL);
	assert_non_null(strstr(h2.err, "only 32 channels"));

	struct harness h3 = { 0 };
	open_dev(&h3);
	harness_set(&h3, "serial", "OTHER");
	r = harness_open(&h3);
	assert_int_equal(r, -ENOENT);
	assert_non_null(strstr(h3.err, "with serial OTHER"));

	struct harness h4 = { 0 };
	open_dev(&h4);
	harness_set(&h4, "blank_channels", "some");
	r = harness_open(&h4);
	assert_int_equal(r, -EINVAL);
	assert_non_null(strstr(h4.err, "blank_channels"));
}

int main(void)
{
	const char *pre = getenv("LD_PRELOAD");
	if (!pre || !strstr(pre, "umockdev-preload")) {
		fprintf(stderr, "SKIP: needs umockdev-wrapper (run through meson test)\n");
		return 77;
	}
	tb = umockdev_testbed_new();
	char err[256];
	gen0 = siggen_new(60, RATE, 6.0f, 7);
	gen_small = siggen_new(32, RATE, 6.0f, 8);
	struct umodel_config c0 = { VID, PID, 60, RATE, 195, 25, 2 };
	struct umodel_config c1 = { VID, PID + 1, 32, RATE, 195, 25, 3 };
	dev0 = umodel_new(tb, &c0, gen0, err, sizeof(err));
	dev_small = dev0 ? umodel_new(tb, &c1, gen_small, err, sizeof(err)) : NULL;
	if (!dev0 || !dev_small) {
		fprintf(stderr, "cannot emulate the device: %s\n", err);
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_configuration),
		cmocka_unit_test(test_spikes_match_planted),
		cmocka_unit_test(test_stimulation_arrives),
		cmocka_unit_test(test_gap_counted),
		cmocka_unit_test(test_unplug_replug),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	umodel_free(dev0);
	umodel_free(dev_small);
	siggen_free(gen0);
	siggen_free(gen_small);
	g_object_unref(tb);
	return r;
}
