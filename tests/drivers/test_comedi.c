/* SPDX-License-Identifier: MIT */
/*
 * mead-driver-comedi, unmodified, against a Comedi board emulated behind a
 * umockdev testbed device node (see cmodel.c).  Runs under umockdev-wrapper.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <math.h>
#include <umockdev.h>

#include "tests/lib/devmodel.h"
#include "lib/core/time.h"
#include "tests/lib/harness.h"

/* what write_stim says of the pulses it is given */
static struct mead_stim_result res[4];

#define RATE 25000u
#define PERIOD_US 1000u
#define GAIN 1100.0

static UMockdevTestbed *tb;
static struct cmodel *board0, *board_nocmd, *board_noao;
static struct siggen *gen0;

/* Hardware channel j records the electrode whose label is map_label[j];
 * channels 60..63 and two in between are left unconnected ("-"). */
static char channel_map[1024];
static int electrode_of_hw[64];

static void build_map(struct harness *h)
{
	int order[60];
	for (int i = 0; i < 60; i++)
		order[i] = i;
	/* a fixed scramble, like an amplifier's connector order */
	for (int i = 59; i > 0; i--) {
		int j = (i * 37 + 11) % (i + 1);
		int t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	size_t off = 0;
	int k = 0;
	for (int hw = 0; hw < 64; hw++) {
		const char *sep = hw ? "," : "";
		if (hw == 5 || hw == 33 || k >= 60) {
			electrode_of_hw[hw] = -1;
			off += (size_t)snprintf(channel_map + off, sizeof(channel_map) - off, "%s-", sep);
			continue;
		}
		electrode_of_hw[hw] = order[k];
		off += (size_t)snprintf(channel_map + off, sizeof(channel_map) - off, "%s%s", sep,
					h->el[order[k]].label);
		k++;
	}
}

static void open_board(struct harness *h, const char *dev)
{
	harness_layout60(h);
	assert_non_null(harness_load(h, "comedi"));
	harness_defaults(h, PERIOD_US);
	harness_set(h, "device", dev);
	harness_set(h, "amp_gain", "1100");
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Planted spikes at 60 channels x 25 kHz come out on the mapped electrodes
 * with the same count and within one sample. */
static void test_spikes_match_planted(void **unused)
{
	struct harness h = { 0 };
	open_board(&h, "/dev/comedi0");
	build_map(&h);
	harness_set(&h, "channel_map", channel_map);
	/* 70 µV spikes in 6 µV noise: at 6 sigma chance crossings (about one
	 * per second over 60 channels at 5 sigma, see test-drivers-signal)
	 * stay out, so the counts must agree exactly */
	harness_set(&h, "threshold_k", "6");
	h.cfg.want_raw = true;
	int r = harness_open(&h);
	assert_int_equal(r, 0);

	struct mead_driver_caps caps;
	assert_int_equal(h.ops->get_caps(h.state, &caps), 0);
	assert_int_equal(caps.electrode_count, 60);
	assert_int_equal(caps.sample_rate_hz, RATE);
	assert_true(caps.flags & MEAD_CAP_STIMULATE);
	/* +-1 V range over 16 bits, divided by the amplifier gain */
	assert_float_equal(caps.uv_per_count, 2.0 / 65535 * 1e6 / GAIN, 1e-4);

	const uint64_t ticks = 3000;
	const uint64_t total = ticks * RATE / 1000;
	siggen_plant_poisson(gen0, 20.0, RATE / 2, total - 100, 80, 70.0f);
	uint32_t n_planted;
	const struct siggen_spike *planted = siggen_spikes(gen0, &n_planted);

	assert_int_equal(h.ops->start(h.state, h.err, sizeof(h.err)), 0);
	struct mead_spike *spk = calloc(4096, sizeof(*spk));
	int16_t *raw = calloc(64 * 60, sizeof(int16_t));
	uint64_t *found = calloc(200000, sizeof(uint64_t)); /* electrode << 48 | sample */
	size_t n_found = 0;
	uint32_t late = 0;
	for (uint64_t t = 0; t < ticks; t++) {
		uint64_t first = mead_tick_first_sample(t, PERIOD_US * 1000u, RATE), next = mead_tick_first_sample(t + 1, PERIOD_US * 1000u, RATE);
		cmodel_set_clock(board0, next);
		struct mead_frame f = { .first_sample = first, .n_samples = (uint32_t)(next - first),
					.spikes = spk, .spike_capacity = 4096, .raw = raw, .raw_channels = 60 };
		assert_int_equal(h.ops->write_stim(h.state, t, NULL, 0, NULL), 0);
		assert_int_equal(h.ops->read_frame(h.state, t, &f), 0);
		late += (f.flags & MEAD_FRAME_LATE) != 0;
		assert_int_equal(f.spikes_dropped, 0);
		assert_int_equal(f.raw_samples, f.n_samples);
		for (uint32_t i = 0; i < f.n_spikes; i++) {
			if (i)
				assert_true(spk[i].sample >= spk[i - 1].sample);
			assert_true(spk[i].electrode < 60);
			found[n_found++] = ((uint64_t)spk[i].electrode << 48) | spk[i].sample;
		}
	}
	assert_int_equal(late, 0);
	qsort(found, n_found, sizeof(uint64_t), cmp_u64);
	bool *used = calloc(n_found, sizeof(bool));
	uint32_t matched = 0, off_by_one = 0;
	for (uint32_t i = 0; i < n_planted; i++) {
		int el = electrode_of_hw[planted[i].channel];
		if (el < 0)
			continue;
		uint64_t key = ((uint64_t)el << 48) | planted[i].sample;
		size_t lo = 0, hi = n_found;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (found[mid] < key - 1)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (size_t j = lo; j < n_found && found[j] <= key + 1; j++) {
			if (!used[j]) {
				used[j] = true;
				matched++;
				off_by_one += found[j] != key;
				break;
			}
		}
	}
	uint32_t expected = 0;
	for (uint32_t i = 0; i < n_planted; i++)
		expected += electrode_of_hw[planted[i].channel] >= 0;
	print_message("comedi: planted %u on connected channels, detected %zu, matched %u (%u one sample off)\n",
		      expected, n_found, matched, off_by_one);
	for (size_t j = 0; j < n_found; j++)
		if (!used[j])
			print_message("comedi: unmatched detection electrode %llu sample %llu\n",
				      (unsigned long long)(found[j] >> 48), (unsigned long long)(found[j] & 0xffffffffffffull));
	assert_true(expected > 2000);
	assert_int_equal(matched, expected);
	assert_int_equal(n_found, expected);

	char desc[1024];
	assert_true(h.ops->describe(h.state, desc, sizeof(desc)) > 0);
	assert_non_null(strstr(desc, "\"overflows\":0"));
	assert_int_equal(h.ops->stop(h.state), 0);
	harness_close(&h);
	free(used);
	free(found);
	free(spk);
	free(raw);
}

/* Pulses reach the board with the electrode on the routing lines, the
 * amplitude on the analog output and the requested start sample. */
static void test_stimulation_arrives(void **unused)
{
	struct harness h = { 0 };
	open_board(&h, "/dev/comedi0");
	harness_set(&h, "ao_ua_per_volt", "10");
	assert_int_equal(harness_open(&h), 0);
	/* the board's clock goes on from the previous test */
	const uint64_t base = cmodel_clock(board0);
	assert_int_equal(h.ops->start(h.state, h.err, sizeof(h.err)), 0);
	struct cmodel_stim before[8];
	uint32_t n0 = cmodel_stims(board0, before, 8);

	struct {
		uint16_t el;
		float ua;
		uint32_t phase, gap;
		int64_t lead;      /* samples after the device's clock; <0: in the past */
	} want[] = {
		{ 0, -50.0f, 200, 0, 10 }, { 37, 30.0f, 100, 50, 20 }, { 59, -99.0f, 400, 100, -5 }, { 12, -8.0f, 60, 0, 0 },
	};
	struct mead_spike spk[256];
	uint64_t expect_start[4];
	uint64_t t = 0;
	for (size_t k = 0; k < 4; k++) {
		/* a few quiet ticks between pulses */
		for (int q = 0; q < 5; q++, t++) {
			uint64_t first = mead_tick_first_sample(t, PERIOD_US * 1000u, RATE), next = mead_tick_first_sample(t + 1, PERIOD_US * 1000u, RATE);
			cmodel_set_clock(board0, base + next);
			if (q == 4) {
				uint64_t dev_now = next;
				struct mead_stim_pulse p = {
					.sample = (uint64_t)((int64_t)dev_now + want[k].lead), .electrode = want[k].el,
					.amplitude_ua = want[k].ua, .phase_us = want[k].phase, .interphase_us = want[k].gap,
				};
				expect_start[k] = want[k].lead > 0 ? p.sample : dev_now;
				assert_int_equal(h.ops->write_stim(h.state, t, &p, 1, res), 0);
				/* routing and blanking lines are up while the pulse plays */
				uint32_t dio = cmodel_dio(board0);
				assert_int_equal(dio & 0x3f, want[k].el);
				assert_true(dio & (1u << 6));
				assert_true(dio & (1u << 7));
			} else {
				assert_int_equal(h.ops->write_stim(h.state, t, NULL, 0, NULL), 0);
			}
			struct mead_frame f = { .first_sample = first, .n_samples = (uint32_t)(next - first),
						.spikes = spk, .spike_capacity = 256 };
			assert_int_equal(h.ops->read_frame(h.state, t, &f), 0);
		}
	}
	/* lines drop once the pulse is over */
	for (int q = 0; q < 3; q++, t++) {
		uint64_t first = mead_tick_first_sample(t, PERIOD_US * 1000u, RATE), next = mead_tick_first_sample(t + 1, PERIOD_US * 1000u, RATE);
		cmodel_set_clock(board0, base + next);
		assert_int_equal(h.ops->write_stim(h.state, t, NULL, 0, NULL), 0);
		struct mead_frame f = { .first_sample = first, .n_samples = (uint32_t)(next - first), .spikes = spk, .spike_capacity = 256 };
		assert_int_equal(h.ops->read_frame(h.state, t, &f), 0);
	}
	assert_int_equal(cmodel_dio(board0) & 0xff, 0);

	struct cmodel_stim got[16];
	uint32_t n = cmodel_stims(board0, got, 16);
	assert_int_equal(n - n0, 4);
	for (size_t k = 0; k < 4; k++) {
		const struct cmodel_stim *s = &got[n0 + k];
		assert_int_equal(s->dio & 0x3f, want[k].el);
		double q = 20.0 / 65535 * 10; /* one AO code in µA */
		assert_float_equal(s->phase1_v * 10.0, want[k].ua, q);
		assert_float_equal(s->phase2_v * 10.0, -want[k].ua, q);
		assert_int_equal(s->ao_period_ns, 10000);
		assert_int_equal(s->phase1_ao, want[k].phase / 10);
		assert_int_equal(s->phase2_ao, want[k].phase / 10);
		assert_int_equal(s->gap_ao, want[k].gap / 10);
		int64_t d = (int64_t)(s->start_sample - base) - (int64_t)expect_start[k];
		print_message("comedi: pulse %zu electrode %u %.1f uA start %llu (wanted %llu)\n", k, s->dio & 0x3f,
			      s->phase1_v * 10.0, (unsigned long long)(s->start_sample - base), (unsigned long long)expect_start[k]);
		assert_true(d >= -1 && d <= 1);
	}
	/* more pulses than one stimulator can play in a tick are refused */
	struct mead_stim_pulse two[2] = { { .sample = 0, .electrode = 1, .amplitude_ua = 1, .phase_us = 100 },
					  { .sample = 0, .electrode = 2, .amplitude_ua = 1, .phase_us = 100 } };
	assert_int_equal(h.ops->write_stim(h.state, t, two, 2, res), -EINVAL);
	assert_int_equal(h.ops->stop_outputs(h.state), 0);
	assert_int_equal(h.ops->stop(h.state), 0);
	harness_close(&h);
}

static int run_until_overflow(struct harness *h, uint64_t ticks, uint64_t overflow_at, uint32_t *flags_seen,
			      int *first_err)
{
	struct mead_spike spk[512];
	*flags_seen = 0;
	*first_err = 0;
	for (uint64_t t = 0; t < ticks; t++) {
		uint64_t first = mead_tick_first_sample(t, PERIOD_US * 1000u, RATE), next = mead_tick_first_sample(t + 1, PERIOD_US * 1000u, RATE);
		cmodel_set_clock(board0, cmodel_clock(board0) + (next - first));
		if (t == overflow_at)
			cmodel_force_overflow(board0);
		struct mead_frame f = { .first_sample = first, .n_samples = (uint32_t)(next - first), .spikes = spk, .spike_capacity = 512 };
		int r = h->ops->read_frame(h->state, t, &f);
		if (r < 0 && !*first_err)
			*first_err = r;
		if (t > overflow_at + 3)
			assert_false(f.flags & MEAD_FRAME_LATE);
		*flags_seen |= f.flags;
	}
	return 0;
}

static void test_overflow_continue_and_stop(void **unused)
{
	struct harness h = { 0 };
	open_board(&h, "/dev/comedi0");
	assert_int_equal(harness_open(&h), 0);
	assert_int_equal(h.ops->start(h.state, h.err, sizeof(h.err)), 0);
	uint32_t flags;
	int err;
	run_until_overflow(&h, 50, 20, &flags, &err);
	assert_int_equal(err, 0);
	assert_true(flags & MEAD_FRAME_OVERFLOW);
	assert_true(flags & MEAD_FRAME_GAP);
	char desc[1024];
	assert_true(h.ops->describe(h.state, desc, sizeof(desc)) > 0);
	assert_non_null(strstr(desc, "\"overflows\":1"));
	assert_non_null(strstr(desc, "\"rearms\":1"));
	h.ops->stop(h.state);
	harness_close(&h);

	struct harness h2 = { 0 };
	open_board(&h2, "/dev/comedi0");
	harness_set(&h2, "overflow", "stop");
	assert_int_equal(harness_open(&h2), 0);
	assert_int_equal(h2.ops->start(h2.state, h2.err, sizeof(h2.err)), 0);
	struct mead_spike spk[512];
	int r = 0;
	for (uint64_t t = 0; t < 30; t++) {
		uint64_t first = mead_tick_first_sample(t, PERIOD_US * 1000u, RATE), next = mead_tick_first_sample(t + 1, PERIOD_US * 1000u, RATE);
		cmodel_set_clock(board0, cmodel_clock(board0) + (next - first));
		if (t == 10)
			cmodel_force_overflow(board0);
		struct mead_frame f = { .first_sample = first, .n_samples = (uint32_t)(next - first), .spikes = spk, .spike_capacity = 512 };
		r = h2.ops->read_frame(h2.state, t, &f);
		if (t < 10)
			assert_int_equal(r, 0);
		if (r < 0)
			break;
	}
	assert_int_equal(r, -EPIPE);
	h2.ops->stop(h2.state);
	harness_close(&h2);
}

/* The board runs on while the loop stalls for ten ticks; the samples wait
 * in the kernel buffer and the driver catches up without losing any. */
static void test_late_ticks_catch_up(void **unused)
{
	struct harness h = { 0 };
	open_board(&h, "/dev/comedi0");
	h.cfg.want_raw = true;
	assert_int_equal(harness_open(&h), 0);
	assert_int_equal(h.ops->start(h.state, h.err, sizeof(h.err)), 0);
	struct mead_spike spk[512];
	int16_t raw[25 * 60];
	uint64_t dev = cmodel_clock(board0);
	uint32_t late = 0, late_after = 0;
	uint64_t samples = 0;
	for (uint64_t t = 0; t < 120; t++) {
		uint64_t first = mead_tick_first_sample(t, PERIOD_US * 1000u, RATE), next = mead_tick_first_sample(t + 1, PERIOD_US * 1000u, RATE);
		/* ticks 50..59: the device has nothing new when read (the data
		 * of those ticks arrives all at once at tick 60) */
		if (t < 50 || t >= 60)
			dev += (t == 60 ? 11 : 1) * (next - first);
		cmodel_set_clock(board0, dev);
		struct mead_frame f = { .first_sample = first, .n_samples = (uint32_t)(next - first), .spikes = spk,
					.spike_capacity = 512, .raw = raw, .raw_channels = 60 };
		assert_int_equal(h.ops->read_frame(h.state, t, &f), 0);
		if (f.flags & MEAD_FRAME_LATE) {
			late++;
			if (t >= 60)
				late_after++;
		}
		assert_false(f.flags & (MEAD_FRAME_GAP | MEAD_FRAME_OVERFLOW));
		samples += f.raw_samples;
	}
	assert_int_equal(late, 10);
	assert_int_equal(late_after, 0);
	/* every tick's raw samples were delivered except the ten stalled */
	assert_int_equal(samples, (120 - 10) * 25);
	char desc[1024];
	assert_true(h.ops->describe(h.state, desc, sizeof(desc)) > 0);
	assert_non_null(strstr(desc, "\"late_ticks\":10"));
	h.ops->stop(h.state);
	harness_close(&h);
}

static void expect_open_error(const char *dev, const char *key, const char *value, int want, const char *needle)
{
	struct harness h = { 0 };
	open_board(&h, dev);
	if (key)
		harness_set(&h, key, value);
	int r = harness_open(&h);
	print_message("comedi: %s=%s -> %d: %s\n", key ? key : "device", key ? value : dev, r, h.err);
	assert_int_equal(r, want);
	assert_non_null(strstr(h.err, needle));
	assert_null(h.state);
	harness_unload(&h);
}

static void test_bad_configuration(void **unused)
{
	expect_open_error("/dev/comedi7", NULL, NULL, -ENOENT, "cannot open /dev/comedi7");
	expect_open_error("/dev/comedi1", NULL, NULL, -ENODEV, "no analog-input subdevice that supports streaming");
	expect_open_error("/dev/comedi0", "sample_rate_hz", "50000", -EINVAL, "cannot scan 60 channels at 50000 Hz");
	expect_open_error("/dev/comedi0", "ai_range_v", "20", -ERANGE, "no analog-input range covers");
	expect_open_error("/dev/comedi0", "aref", "common", -EOPNOTSUPP, "do not support aref common");
	expect_open_error("/dev/comedi0", "channel_map", "12,13,99", -EINVAL, "('99') is no electrode");
	expect_open_error("/dev/comedi0", "channel_map", "12,13,12", -EINVAL, "twice");
	expect_open_error("/dev/comedi0", "ai_subdevice", "2", -ENODEV, "not an analog input");
	expect_open_error("/dev/comedi2", NULL, NULL, -ENODEV, "no analog output");
	expect_open_error("/dev/comedi0", "route_lines", "0,1,2", -EINVAL, "cannot address 60 electrodes");
	expect_open_error("/dev/comedi0", "polarity", "up", -EINVAL, "polarity");
	/* recording only works without an analog output */
	struct harness h = { 0 };
	open_board(&h, "/dev/comedi2");
	harness_set(&h, "stimulate", "false");
	assert_int_equal(harness_open(&h), 0);
	struct mead_driver_caps caps;
	h.ops->get_caps(h.state, &caps);
	assert_false(caps.flags & MEAD_CAP_STIMULATE);
	assert_int_equal(caps.max_pulses_per_tick, 0);
	harness_close(&h);
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
	gen0 = siggen_new(64, RATE, 6.0f, 42);
	static struct siggen *gen1, *gen2;
	gen1 = siggen_new(64, RATE, 6.0f, 43);
	gen2 = siggen_new(64, RATE, 6.0f, 44);
	struct cmodel_config c0 = { "/dev/comedi0", 64, 2000000, GAIN, true, false };
	struct cmodel_config c1 = { "/dev/comedi1", 64, 2000000, GAIN, true, true };
	struct cmodel_config c2 = { "/dev/comedi2", 64, 2000000, GAIN, false, false };
	board0 = cmodel_new(tb, &c0, gen0, err, sizeof(err));
	board_nocmd = cmodel_new(tb, &c1, gen1, err, sizeof(err));
	board_noao = cmodel_new(tb, &c2, gen2, err, sizeof(err));
	if (!board0 || !board_nocmd || !board_noao) {
		fprintf(stderr, "cannot emulate the board: %s\n", err);
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_configuration),
		cmocka_unit_test(test_spikes_match_planted),
		cmocka_unit_test(test_stimulation_arrives),
		cmocka_unit_test(test_overflow_continue_and_stop),
		cmocka_unit_test(test_late_ticks_catch_up),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	cmodel_free(board0);
	cmodel_free(board_nocmd);
	cmodel_free(board_noao);
	siggen_free(gen0);
	siggen_free(gen1);
	siggen_free(gen2);
	g_object_unref(tb);
	return r;
}
