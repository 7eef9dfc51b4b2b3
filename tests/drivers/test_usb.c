/* SPDX-License-Identifier: MIT */
/*
 * mead-driver-usb, unmodified, with the real libusb, against USB front-ends
 * emulated behind umockdev testbed usbdevfs nodes (umodel.c, protocol v2).
 * Runs under umockdev-wrapper.
 *
 * Emulated time: each device has its own clock, in nominal samples, that
 * the tests move; a tick normally moves it to the end of the tick (the
 * loop reads a tick once its samples are due).  A stall of the loop moves
 * it on without ticks; a device that is slow or fast runs its sample
 * counter clock_ppm off it.  Every raw sample the driver hands out is
 * compared with an identical signal generator: nothing lost, invented or
 * moved goes unnoticed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <string.h>
#include <time.h>
#include <umockdev.h>

#include "lib/core/time.h"
#include "tests/lib/devmodel.h"
#include "tests/lib/harness.h"

#define RATE 25000u
#define PERIOD_US 1000u
#define VID 0x1209
#define PID 0x4d45

enum { D_MAIN, D_SMALL, D_V1, D_EPS, D_NOWD, D_MULTI, D_FAST, D_SLOW, D_N };

static const struct umodel_config dev_cfg[D_N] = {
	[D_MAIN] = { VID, PID, 60, RATE, 195, 25, 2, .stim_queue = 8 },
	[D_SMALL] = { VID, PID + 1, 32, RATE, 195, 25, 3 },
	[D_V1] = { VID, PID + 2, 60, RATE, 195, 25, 4, .version = 1, .ep_out = 0x01 },
	/* numbered as another controller might; 16 + 2 x 8 x 63 = 1024 bytes,
	 * whole USB packets: a zero-length packet follows each */
	[D_EPS] = { VID, PID + 3, 63, 8000, 195, 8, 5, .ep_in = 0x83, .ep_out = 0x05 },
	[D_NOWD] = { VID, PID + 4, 60, RATE, 195, 25, 6, .flags_clear = 4 },
	[D_MULTI] = { VID, PID + 5, 60, RATE, 195, 25, 7, .stimulators = 4 },
	/* 25 ms packets for 25 ms ticks: a minute of device time in few ticks */
	[D_FAST] = { VID, PID + 6, 8, RATE, 195, 625, 8, .clock_ppm = 200 },
	[D_SLOW] = { VID, PID + 7, 8, RATE, 195, 625, 9, .clock_ppm = -200 },
};

static UMockdevTestbed *tb;
static struct umodel *dev[D_N];
static struct siggen *idle_gen[D_N];

#define MAX_EV 16384
#define MAX_RES 4096
#define MAX_SPK 400000
#define MAX_LOG 8192

/* One driver instance on one emulated device, driven as the loop drives it. */
struct rig {
	struct harness h;
	struct umodel *dev;
	int d;
	uint32_t rate, channels, electrodes;
	uint64_t period_ns;
	struct siggen *gen, *ref;
	uint64_t ref_pos;            /* device sample the reference generator is at */
	uint64_t ref_base;           /* its position at the device's START */
	uint64_t w0, world;          /* emulated time at START, now */
	bool frozen;                 /* ticks do not move emulated time */
	uint64_t t;                  /* next tick */
	int last_rc;
	/* what came out */
	struct mead_spike *spk;
	uint32_t n_spk;
	struct mead_event ev[MAX_EV];
	uint32_t n_ev;
	struct mead_event loss[MAX_EV];  /* the GAP and OVERFLOW ranges */
	uint32_t n_loss;
	struct mead_stim_result res[MAX_RES];
	uint32_t n_res;
	/* raw, checked sample by sample */
	bool check_raw;
	int16_t *raw;
	uint32_t raw_cap;
	uint64_t raw_next, raw_checked, raw_bad, raw_zeros, raw_jumps, raw_dups;
	float *ref_uv;
	int16_t *ref_row;
	uint32_t late_frames;
	int64_t lag_min, lag_max;    /* device clock - acquired */
	/* the frame buffers */
	struct mead_frame f;
	/* waveforms, when asked for: every one the frames carried */
	uint8_t *wf;
	uint32_t wf_size, wf_cap, n_wf;
	struct mead_spike fspk[4096];
	struct mead_event fev[512];
	struct mead_stim_result fres[512];
};

static uint64_t first_of(const struct rig *r, uint64_t t)
{
	return mead_tick_first_sample(t, r->period_ns, r->rate);
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* freed by the teardown when a test fails half-way */
static struct rig *current;

static struct rig *rig_new(int d, uint32_t electrodes)
{
	struct rig *r = calloc(1, sizeof(*r));
	assert_non_null(r);
	current = r;
	r->d = d;
	r->dev = dev[d];
	harness_layout60(&r->h);
	if (electrodes)
		r->h.layout.count = electrodes;
	assert_non_null(harness_load(&r->h, "usb"));
	/* a tick is a packet long */
	harness_defaults(&r->h, (uint32_t)(dev_cfg[d].samples_per_packet * 1000000ull / dev_cfg[d].rate_hz));
	char pid[16];
	snprintf(pid, sizeof(pid), "%u", dev_cfg[d].pid);
	harness_set(&r->h, "pid", pid);
	harness_set(&r->h, "reattach_interval_ms", "2");
	r->rate = dev_cfg[d].rate_hz;
	r->channels = dev_cfg[d].channels;
	r->electrodes = r->h.layout.count;
	r->period_ns = r->h.cfg.period_ns;
	r->raw_cap = (uint32_t)(first_of(r, 1) + 1) * 64;
	r->raw = calloc((size_t)r->raw_cap * r->electrodes, sizeof(int16_t));
	r->ref_uv = calloc((size_t)r->channels, sizeof(float));
	r->ref_row = calloc((size_t)r->channels, sizeof(int16_t));
	r->spk = calloc(MAX_SPK, sizeof(*r->spk));
	r->check_raw = true;
	r->lag_min = INT64_MAX;
	r->lag_max = INT64_MIN;
	return r;
}

/* A fresh signal (the device's and an identical reference), spikes planted
 * Poisson at hz on every channel over [from, to). */
static void rig_signal(struct rig *r, uint64_t seed, double hz, uint64_t from, uint64_t to)
{
	r->gen = siggen_new(r->channels, r->rate, 6.0f, seed);
	r->ref = siggen_new(r->channels, r->rate, 6.0f, seed);
	if (hz > 0) {
		siggen_plant_poisson(r->gen, hz, from, to, 80, 90.0f);
		siggen_plant_poisson(r->ref, hz, from, to, 80, 90.0f);
	}
	umodel_set_gen(r->dev, r->gen);
}

static int rig_open(struct rig *r)
{
	if (!r->gen)
		rig_signal(r, 1000u + (uint64_t)r->d, 0, 0, 0);
	return harness_open(&r->h);
}

static void rig_start(struct rig *r)
{
	assert_int_equal(r->h.ops->start(r->h.state, r->h.err, sizeof(r->h.err)), 0);
	r->w0 = r->world = umodel_world(r->dev);
	struct umodel_counts c;
	umodel_counts(r->dev, &c);
	r->ref_base = c.gen_at_start;
	r->ref_pos = 0;
	r->raw_next = 0;
}

static void rig_free(struct rig *r)
{
	if (r->h.state && r->h.ops->stop)
		r->h.ops->stop(r->h.state);
	harness_unload(&r->h);
	umodel_set_gen(r->dev, idle_gen[r->d]);
	siggen_free(r->gen);
	siggen_free(r->ref);
	free(r->raw);
	free(r->ref_uv);
	free(r->ref_row);
	free(r->spk);
	free(r->wf);
	free(r);
	current = NULL;
}

static int teardown(void **unused)
{
	if (current)
		rig_free(current);
	return 0;
}

static void rig_clock(struct rig *r, uint64_t world)
{
	r->world = world;
	umodel_set_clock(r->dev, world);
}

static bool in_loss(const struct rig *r, uint64_t s)
{
	for (uint32_t i = 0; i < r->n_loss; i++)
		if (s >= r->loss[i].sample && s < r->loss[i].sample + r->loss[i].samples)
			return true;
	return false;
}

static void ref_at(struct rig *r, uint64_t s)
{
	uint64_t dev_s = s + r->ref_base;
	/* made and thrown away: the noise is one sequence */
	while (r->ref_pos < dev_s) {
		siggen_fill(r->ref, r->ref_uv, 1);
		r->ref_pos++;
	}
	siggen_fill(r->ref, r->ref_uv, 1);
	r->ref_pos++;
	for (uint32_t c = 0; c < r->channels; c++) {
		double v = r->ref_uv[c] / (195 / 1000.0);
		v = v > 32767 ? 32767 : v < -32768 ? -32768 : v;
		r->ref_row[c] = (int16_t)(v >= 0 ? v + 0.5 : v - 0.5);
	}
}

static void collect(struct rig *r, int rc)
{
	const struct mead_frame *f = &r->f;
	for (uint32_t i = 0; i < f->n_events; i++) {
		const struct mead_event *e = &f->events[i];
		if (r->n_ev < MAX_EV)
			r->ev[r->n_ev++] = *e;
		if ((e->type == MEAD_EVENT_GAP || e->type == MEAD_EVENT_OVERFLOW) && e->samples && r->n_loss < MAX_EV)
			r->loss[r->n_loss++] = *e;
	}
	for (uint32_t i = 0; i < f->n_stim_results && r->n_res < MAX_RES; i++)
		r->res[r->n_res++] = f->stim_results[i];
	for (uint32_t i = 0; i < f->n_spikes; i++) {
		if (i)
			assert_true(f->spikes[i].sample >= f->spikes[i - 1].sample);
		if (r->n_spk < MAX_SPK)
			r->spk[r->n_spk++] = f->spikes[i];
	}
	r->late_frames += (f->flags & MEAD_FRAME_LATE) != 0;
	if (rc == 0) {
		int64_t lag = (int64_t)umodel_clock(r->dev) - (int64_t)f->acquired;
		if (lag < r->lag_min)
			r->lag_min = lag;
		if (lag > r->lag_max)
			r->lag_max = lag;
	}
	if (!r->check_raw || !f->raw_samples)
		return;
	if (f->raw_first_sample < r->raw_next)
		r->raw_dups++;
	if (f->raw_first_sample > r->raw_next) {
		/* only a range the loss events cover may be skipped */
		for (uint64_t s = r->raw_next; s < f->raw_first_sample; s++)
			if (!in_loss(r, s)) {
				r->raw_jumps++;
				break;
			}
	}
	for (uint32_t i = 0; i < f->raw_samples; i++) {
		uint64_t s = f->raw_first_sample + i;
		const int16_t *row = f->raw + (size_t)i * f->raw_channels;
		ref_at(r, s);
		bool lost = in_loss(r, s);
		bool bad = false;
		for (uint32_t c = 0; c < r->electrodes; c++) {
			if (lost ? row[c] != 0 : row[c] != r->ref_row[c])
				bad = true;
		}
		if (bad && r->raw_bad < 5)
			print_message("usb: raw sample %llu differs (frame %llu+%u)\n", (unsigned long long)s,
				      (unsigned long long)f->raw_first_sample, f->raw_samples);
		r->raw_bad += bad;
		r->raw_zeros += lost;
		r->raw_checked++;
	}
	r->raw_next = f->raw_first_sample + f->raw_samples;
}

/* One loop tick: its samples are due (emulated time reaches the end of the
 * tick unless frozen), read_frame, then write_stim for the next tick. */
static int rig_tick(struct rig *r, const struct mead_stim_pulse *p, uint32_t n, struct mead_stim_result *res,
		    int *stim_rc)
{
	uint64_t first = first_of(r, r->t), next = first_of(r, r->t + 1);
	if (!r->frozen && r->world < r->w0 + next)
		rig_clock(r, r->w0 + next);
	else
		umodel_set_clock(r->dev, r->world);
	r->f = (struct mead_frame){
		.first_sample = first, .n_samples = (uint32_t)(next - first),
		.spikes = r->fspk, .spike_capacity = 4096,
		.raw = r->raw, .raw_channels = r->electrodes, .raw_capacity = r->raw_cap,
		.stim_results = r->fres, .stim_result_capacity = 512,
		.events = r->fev, .event_capacity = 512,
	};
	if (r->wf) {
		r->f.waveforms = r->wf + (size_t)r->n_wf * r->wf_size;
		r->f.waveform_size = r->wf_size;
		r->f.waveform_capacity = r->wf_cap - r->n_wf;
	}
	int rc = r->h.ops->read_frame(r->h.state, r->t, &r->f);
	r->n_wf += r->f.n_waveforms;
	collect(r, rc);
	r->last_rc = rc;
	struct mead_stim_result local[64];
	if (n) {
		if (!res)
			res = local;
		int s = r->h.ops->write_stim(r->h.state, r->t + 1, p, n, res);
		if (stim_rc)
			*stim_rc = s;
		for (uint32_t i = 0; i < n && r->n_res < MAX_RES; i++)
			if (res[i].status != MEAD_STIM_PENDING)
				r->res[r->n_res++] = res[i];
	}
	r->t++;
	return rc;
}

static void run(struct rig *r, uint64_t ticks)
{
	for (uint64_t i = 0; i < ticks; i++)
		assert_int_equal(rig_tick(r, NULL, 0, NULL, NULL), 0);
}

/* After a stall, the loop runs tick after tick until it has caught up
 * with the device (it follows frame.acquired). */
static void catch_up(struct rig *r)
{
	r->frozen = true;
	while (r->w0 + first_of(r, r->t + 1) <= r->world)
		assert_int_equal(rig_tick(r, NULL, 0, NULL, NULL), 0);
	r->frozen = false;
}

static uint32_t count_events(const struct rig *r, uint32_t type, uint64_t *samples)
{
	uint32_t n = 0;
	uint64_t s = 0;
	for (uint32_t i = 0; i < r->n_ev; i++)
		if (r->ev[i].type == type) {
			n++;
			s += r->ev[i].samples;
		}
	if (samples)
		*samples = s;
	return n;
}

static const struct mead_event *find_event(const struct rig *r, uint32_t type, uint32_t nth)
{
	for (uint32_t i = 0; i < r->n_ev; i++)
		if (r->ev[i].type == type && nth-- == 0)
			return &r->ev[i];
	return NULL;
}

/* The settled result of the pulse asked for at `sample` on `electrode`. */
static const struct mead_stim_result *result_of(const struct rig *r, uint64_t sample, uint16_t electrode)
{
	for (uint32_t i = 0; i < r->n_res; i++)
		if (r->res[i].pulse.sample == sample && r->res[i].pulse.electrode == electrode)
			return &r->res[i];
	return NULL;
}

static const struct mead_stim_result *must_result(const struct rig *r, uint64_t sample, uint16_t electrode)
{
	const struct mead_stim_result *x = result_of(r, sample, electrode);
	if (!x)
		fail_msg("no result for the pulse at %llu on electrode %u", (unsigned long long)sample, electrode);
	return x;
}

static void describe(struct rig *r, char *buf, size_t len)
{
	int n = r->h.ops->describe(r->h.state, buf, len);
	assert_true(n > 0);
}

static long long desc_num(const char *desc, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	const char *p = strstr(desc, pat);
	return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

/* Every planted spike found once within a sample, and nothing else. */
static void match_spikes(const struct rig *r, uint64_t upto, uint32_t *planted_out)
{
	uint32_t n_planted;
	const struct siggen_spike *planted = siggen_spikes(r->gen, &n_planted);
	uint32_t want = 0, matched = 0, extra = 0;
	bool *used = calloc(r->n_spk + 1, sizeof(bool));
	for (uint32_t i = 0; i < n_planted; i++) {
		if (planted[i].sample < r->ref_base || planted[i].channel >= r->electrodes)
			continue;
		/* near the end the detector may not have said it yet */
		uint64_t s = planted[i].sample - r->ref_base;
		bool counted = s + 40 < upto;
		want += counted;
		bool found = false;
		for (uint32_t j = 0; j < r->n_spk && !found; j++) {
			if (used[j] || r->spk[j].electrode != planted[i].channel)
				continue;
			if (r->spk[j].sample + 1 >= s && r->spk[j].sample <= s + 1)
				used[j] = found = true;
		}
		matched += counted && found;
		if (counted && !found && want - matched <= 3)
			print_message("usb: planted spike at %llu on %u not found\n", (unsigned long long)s,
				      planted[i].channel);
	}
	for (uint32_t j = 0; j < r->n_spk; j++) {
		if (used[j] || r->spk[j].sample + 40 >= upto)
			continue;
		if (++extra <= 3)
			print_message("usb: detection at %llu on %u not planted\n", (unsigned long long)r->spk[j].sample,
				      r->spk[j].electrode);
	}
	free(used);
	print_message("usb: planted %u, matched %u, %u detections not planted\n", want, matched, extra);
	assert_int_equal(matched, want);
	assert_int_equal(extra, 0);
	if (planted_out)
		*planted_out = want;
}

static void print_raw(const struct rig *r, const char *what)
{
	print_message("usb: %s: raw samples checked %llu (zeros in loss ranges %llu), wrong %llu, skipped %llu, "
		      "repeated %llu; late frames %u; device clock - acquired in [%lld, %lld]\n", what,
		      (unsigned long long)r->raw_checked, (unsigned long long)r->raw_zeros,
		      (unsigned long long)r->raw_bad, (unsigned long long)r->raw_jumps,
		      (unsigned long long)r->raw_dups, r->late_frames, (long long)r->lag_min, (long long)r->lag_max);
}

static void assert_raw_exact(const struct rig *r)
{
	assert_int_equal(r->raw_bad, 0);
	assert_int_equal(r->raw_jumps, 0);
	assert_int_equal(r->raw_dups, 0);
}

/* ---- tests ---- */

static void test_bad_configuration(void **unused)
{
	struct rig *r = rig_new(D_MAIN, 0);
	harness_set(&r->h, "pid", "4660");
	int rc = rig_open(r);
	print_message("usb: pid=4660 -> %d: %s\n", rc, r->h.err);
	assert_int_equal(rc, -ENOENT);
	assert_non_null(strstr(r->h.err, "no device 1209:1234"));
	assert_null(r->h.state);
	rig_free(r);

	r = rig_new(D_SMALL, 0);
	rc = rig_open(r);
	print_message("usb: 32-channel device -> %d: %s\n", rc, r->h.err);
	assert_int_equal(rc, -EINVAL);
	assert_non_null(strstr(r->h.err, "only 32 channels"));
	rig_free(r);

	r = rig_new(D_MAIN, 0);
	harness_set(&r->h, "serial", "OTHER");
	assert_int_equal(rig_open(r), -ENOENT);
	assert_non_null(strstr(r->h.err, "with serial OTHER"));
	rig_free(r);

	r = rig_new(D_MAIN, 0);
	harness_set(&r->h, "blank_channels", "some");
	assert_int_equal(rig_open(r), -EINVAL);
	assert_non_null(strstr(r->h.err, "blank_channels"));
	rig_free(r);

	/* protocol v1 devices are refused, and told why */
	r = rig_new(D_V1, 0);
	rc = rig_open(r);
	print_message("usb: v1 device -> %d: %s\n", rc, r->h.err);
	assert_int_equal(rc, -EPROTO);
	assert_non_null(strstr(r->h.err, "protocol v1"));
	assert_non_null(strstr(r->h.err, "needs v2"));
	rig_free(r);

	/* a stimulating device without a host watchdog only with watchdog_ms = 0 */
	r = rig_new(D_NOWD, 0);
	rc = rig_open(r);
	print_message("usb: no watchdog -> %d: %s\n", rc, r->h.err);
	assert_int_equal(rc, -EOPNOTSUPP);
	assert_non_null(strstr(r->h.err, "watchdog_ms = 0"));
	rig_free(r);
	r = rig_new(D_NOWD, 0);
	harness_set(&r->h, "watchdog_ms", "0");
	assert_int_equal(rig_open(r), 0);
	rig_free(r);

	/* more transfers than the driver keeps */
	r = rig_new(D_MAIN, 0);
	harness_set(&r->h, "queue_ms", "5000");
	rc = rig_open(r);
	print_message("usb: queue_ms=5000 -> %d: %s\n", rc, r->h.err);
	assert_int_equal(rc, -EINVAL);
	assert_non_null(strstr(r->h.err, "queue_ms = 5000"));
	rig_free(r);

	/* the option the queue replaced is gone */
	r = rig_new(D_MAIN, 0);
	for (const struct mead_param_spec *p = r->h.ops->params; p->key; p++)
		assert_string_not_equal(p->key, "transfers");
	rig_free(r);
}

static void test_spikes_and_raw(void **unused)
{
	struct rig *r = rig_new(D_MAIN, 0);
	harness_set(&r->h, "threshold_k", "6");  /* see test-drivers-comedi */
	const uint64_t ticks = 3000, total = ticks * RATE / 1000;
	rig_signal(r, 7, 20.0, RATE / 2, total - 100);
	assert_int_equal(rig_open(r), 0);
	struct mead_driver_caps caps;
	r->h.ops->get_caps(r->h.state, &caps);
	assert_int_equal(caps.electrode_count, 60);
	assert_int_equal(caps.sample_rate_hz, RATE);
	assert_float_equal(caps.uv_per_count, 0.195, 1e-6);
	assert_true(caps.flags & MEAD_CAP_STIMULATE);
	assert_true(caps.flags & MEAD_CAP_DEVICE_CLOCK);
	assert_int_equal(caps.max_pulses_per_tick, 16);
	assert_int_equal(caps.stimulators, 1);
	assert_null(caps.stimulator_of_electrode);
	rig_start(r);
	run(r, ticks);
	print_raw(r, "3 s");
	uint32_t planted;
	match_spikes(r, total, &planted);
	assert_true(planted > 2000);
	assert_raw_exact(r);
	assert_int_equal(r->raw_checked, total);
	/* packets of 25 samples on 1 ms ticks line up: nothing is late, and
	 * the device clock is never ahead of what arrived by a packet */
	assert_int_equal(r->late_frames, 0);
	assert_int_equal(r->n_ev, 0);
	assert_true(r->lag_min >= 0 && r->lag_max < 25);
	struct umodel_counts c0, c1;
	umodel_counts(r->dev, &c0);
	assert_int_equal(r->h.ops->stop(r->h.state), 0);
	umodel_counts(r->dev, &c1);
	assert_int_equal(c1.stops, c0.stops + 1);
	rig_free(r);
}

/* The USB driver cuts waveforms through the same signal path: one per
 * detected spike whose post samples came, its trough the spike's own
 * amplitude at its sample. */
static void test_waveforms(void **unused)
{
	struct rig *r = rig_new(D_MAIN, 0);
	harness_set(&r->h, "threshold_k", "6");
	harness_set(&r->h, "waveforms", "true");
	harness_set(&r->h, "waveform_pre_us", "400");
	harness_set(&r->h, "waveform_post_us", "800");
	const uint64_t ticks = 1500, total = ticks * RATE / 1000;
	rig_signal(r, 11, 20.0, RATE / 2, total - 100);
	assert_int_equal(rig_open(r), 0);
	struct mead_driver_caps caps;
	r->h.ops->get_caps(r->h.state, &caps);
	assert_true(caps.flags & MEAD_CAP_WAVEFORMS);
	const uint32_t pre = RATE / 2500, post = RATE / 1250;   /* 400 and 800 us */
	assert_int_equal(caps.waveform_pre, pre);
	assert_int_equal(caps.waveform_post, post);
	r->wf_size = mead_waveform_size(pre, post);
	r->wf_cap = 8192;
	r->wf = calloc(r->wf_cap, r->wf_size);
	rig_start(r);
	run(r, ticks);
	uint32_t late = 0;
	for (uint32_t i = 0; i < r->n_spk; i++)
		late += r->spk[i].sample + post >= total;
	print_message("usb: %u spikes, %u waveforms, %u too late for one\n", r->n_spk, r->n_wf, late);
	assert_true(r->n_spk > 500);
	assert_int_equal(r->n_wf, r->n_spk - late);
	for (uint32_t k = 0; k < r->n_wf; k++) {
		struct mead_waveform w;
		const uint8_t *rec = r->wf + (size_t)k * r->wf_size;
		memcpy(&w, rec, sizeof(w));
		float v[64];
		memcpy(v, rec + sizeof(w), 4 * (pre + 1 + post));
		bool found = false;
		for (uint32_t i = 0; i < r->n_spk && !found; i++)
			found = r->spk[i].sample == w.sample && r->spk[i].electrode == w.electrode &&
				r->spk[i].amplitude_uv == w.amplitude_uv;
		assert_true(found);
		assert_int_equal(w.flags, 0);
		assert_float_equal(v[pre], w.amplitude_uv, 1e-3);
		assert_true(v[pre - 1] >= v[pre] && v[pre + 1] >= v[pre]);
	}
	rig_free(r);
}

static void test_endpoints_from_descriptor(void **unused)
{
	struct rig *r = rig_new(D_EPS, 0);
	assert_int_equal(rig_open(r), 0);
	rig_start(r);
	run(r, 200);
	char desc[4096];
	describe(r, desc, sizeof(desc));
	print_message("usb: %s\n", desc);
	assert_non_null(strstr(desc, "\"endpoint_in\":\"0x83\""));
	assert_non_null(strstr(desc, "\"endpoint_out\":\"0x05\""));
	print_raw(r, "endpoints 0x83/0x05");
	assert_raw_exact(r);
	assert_int_equal(r->raw_checked, 200 * 8);
	assert_int_equal(r->n_ev, 0);
	/* commands reach the OUT endpoint the descriptor names */
	uint64_t at = first_of(r, r->t + 1) + 3;
	struct mead_stim_pulse p = { .sample = at, .electrode = 7, .amplitude_ua = -10.0f, .phase_us = 100 };
	struct mead_stim_result res;
	int src;
	assert_int_equal(rig_tick(r, &p, 1, &res, &src), 0);
	assert_int_equal(src, 0);
	assert_int_equal(res.status, MEAD_STIM_PENDING);
	run(r, 5);
	const struct mead_stim_result *got = result_of(r, at, 7);
	assert_non_null(got);
	assert_int_equal(got->status, MEAD_STIM_DELIVERED);
	assert_int_equal(got->sample, at);
	rig_free(r);
}

static void test_stimulation_reports(void **unused)
{
	struct rig *r = rig_new(D_MAIN, 0);
	harness_set(&r->h, "watchdog_ms", "0");
	assert_int_equal(rig_open(r), 0);
	rig_start(r);
	struct umodel_stim *log = calloc(MAX_LOG, sizeof(*log));
	run(r, 20);
	uint64_t next = first_of(r, r->t + 1);
	/* one tick: on time, in the past, on a stimulator still busy, beyond
	 * the device's range, and far ahead (cancelled below) */
	struct mead_stim_pulse p[5] = {
		{ .sample = next - 30, .electrode = 3, .amplitude_ua = -20.5f, .phase_us = 100, .interphase_us = 40 },
		{ .sample = next + 8, .electrode = 41, .amplitude_ua = 35.0f, .phase_us = 200, .interphase_us = 40 },
		{ .sample = next + 10, .electrode = 42, .amplitude_ua = 35.0f, .phase_us = 100 },
		{ .sample = next + 20, .electrode = 59, .amplitude_ua = -149.0f, .phase_us = 2000 },
		{ .sample = next + 12500, .electrode = 9, .amplitude_ua = 10.0f, .phase_us = 100 },
	};
	struct mead_stim_result res[5];
	int src;
	assert_int_equal(rig_tick(r, p, 5, res, &src), 0);
	assert_int_equal(src, 0);
	for (int k = 0; k < 5; k++)
		assert_int_equal(res[k].status, MEAD_STIM_PENDING); /* only the device can tell */
	run(r, 5);
	const struct mead_stim_result *a = result_of(r, p[0].sample, 3), *b = result_of(r, p[1].sample, 41),
				      *c = result_of(r, p[2].sample, 42), *d = result_of(r, p[3].sample, 59);
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(c);
	assert_non_null(d);
	assert_null(result_of(r, p[4].sample, 9));
	print_message("usb: past pulse asked %llu started %llu; on time asked %llu started %llu; busy -> reason %u; "
		      "range -> reason %u\n", (unsigned long long)p[0].sample, (unsigned long long)a->sample,
		      (unsigned long long)p[1].sample, (unsigned long long)b->sample, c->reason, d->reason);
	/* the past one starts when the command arrived: the device clock at
	 * the end of the tick it was written in */
	assert_int_equal(a->status, MEAD_STIM_DELIVERED);
	assert_int_equal(a->sample, next);
	assert_int_equal(b->status, MEAD_STIM_DELIVERED);
	assert_int_equal(b->sample, p[1].sample);
	assert_int_equal(c->status, MEAD_STIM_REFUSED);
	assert_int_equal(c->reason, MEAD_STIM_REASON_BUSY);
	assert_int_equal(d->status, MEAD_STIM_REFUSED);
	assert_int_equal(d->reason, MEAD_STIM_REASON_RANGE);
	assert_int_equal(b->pulse.electrode, 41);
	assert_float_equal(b->pulse.amplitude_ua, 35.0f, 1e-6);
	/* outputs off: the far one is dropped and said so */
	assert_int_equal(r->h.ops->stop_outputs(r->h.state), 0);
	run(r, 2);
	const struct mead_stim_result *e = result_of(r, p[4].sample, 9);
	assert_non_null(e);
	assert_int_equal(e->status, MEAD_STIM_REFUSED);
	assert_int_equal(e->reason, MEAD_STIM_REASON_CANCELLED);

	/* the device's queue (8 pulses) full */
	next = first_of(r, r->t + 1);
	struct mead_stim_pulse q[10];
	for (int k = 0; k < 10; k++)
		q[k] = (struct mead_stim_pulse){ .sample = next + 1000 + 100 * (uint64_t)k, .electrode = (uint16_t)k,
						 .amplitude_ua = 5.0f, .phase_us = 100 };
	assert_int_equal(rig_tick(r, q, 10, NULL, NULL), 0);
	run(r, 2);
	uint32_t full = 0;
	for (int k = 0; k < 10; k++) {
		const struct mead_stim_result *x = result_of(r, q[k].sample, q[k].electrode);
		full += x && x->status == MEAD_STIM_REFUSED && x->reason == MEAD_STIM_REASON_QUEUE_FULL;
	}
	assert_int_equal(full, 2);
	run(r, 80);
	uint32_t done = 0;
	for (int k = 0; k < 8; k++) {
		const struct mead_stim_result *x = result_of(r, q[k].sample, q[k].electrode);
		done += x && x->status == MEAD_STIM_DELIVERED && x->sample == q[k].sample;
	}
	assert_int_equal(done, 8);

	/* what the device got is what was sent */
	uint32_t n = umodel_stims(r->dev, log, MAX_LOG);
	const struct umodel_stim *s = NULL;
	for (uint32_t i = 0; i < n; i++)
		if (log[i].electrode == 41 && log[i].requested_sample == p[1].sample)
			s = &log[i];
	assert_non_null(s);
	assert_int_equal(s->amplitude_na, 35000);
	assert_int_equal(s->phase_us, 200);
	assert_int_equal(s->interphase_us, 40);
	assert_int_equal(s->start_sample, p[1].sample);
	assert_true(s->received_at <= next);
	char desc[4096];
	describe(r, desc, sizeof(desc));
	print_message("usb: %s\n", desc);
	assert_int_equal(desc_num(desc, "pulses_sent"), 15);
	assert_int_equal(desc_num(desc, "pulses_delivered"), 10);
	assert_int_equal(desc_num(desc, "pulses_late"), 1);
	assert_int_equal(desc_num(desc, "pulses_refused_device"), 5);
	free(log);
	rig_free(r);
}

static void test_stimulation_refused_here(void **unused)
{
	struct rig *r = rig_new(D_MAIN, 0);
	harness_set(&r->h, "watchdog_ms", "0");
	assert_int_equal(rig_open(r), 0);
	rig_start(r);
	run(r, 10);
	/* the device takes no command for a while: eight commands are on
	 * their way, the ninth finds no transfer */
	umodel_hold_out(r->dev, true);
	struct mead_stim_result res;
	int src = 0;
	uint64_t asked[9];
	for (int k = 0; k < 9; k++) {
		asked[k] = first_of(r, r->t + 1) + 2;
		struct mead_stim_pulse p = { .sample = asked[k], .electrode = 1, .amplitude_ua = 5.0f, .phase_us = 50 };
		assert_int_equal(rig_tick(r, &p, 1, &res, &src), 0);
		if (k < 8)
			assert_int_equal(res.status, MEAD_STIM_PENDING);
	}
	assert_int_equal(src, -EBUSY);
	assert_int_equal(res.status, MEAD_STIM_REFUSED);
	assert_int_equal(res.reason, MEAD_STIM_REASON_QUEUE_FULL);
	uint64_t released = umodel_clock(r->dev);
	umodel_hold_out(r->dev, false);
	run(r, 3);
	/* they all arrived at once, after their samples: the first starts
	 * late, on arrival, and holds the one stimulator; the rest find it
	 * busy */
	const struct mead_stim_result *x = must_result(r, asked[0], 1);
	assert_int_equal(x->status, MEAD_STIM_DELIVERED);
	assert_int_equal(x->sample, released);
	assert_true(x->sample > asked[0]);
	for (int k = 1; k < 8; k++) {
		x = must_result(r, asked[k], 1);
		assert_int_equal(x->status, MEAD_STIM_REFUSED);
		assert_int_equal(x->reason, MEAD_STIM_REASON_BUSY);
	}
	/* a submission the kernel refuses */
	umodel_refuse_out(r->dev, 1);
	struct mead_stim_pulse p = { .sample = first_of(r, r->t + 1) + 2, .electrode = 2, .amplitude_ua = 5.0f,
				     .phase_us = 50 };
	assert_int_equal(rig_tick(r, &p, 1, &res, &src), 0);
	assert_true(src < 0);
	assert_int_equal(res.status, MEAD_STIM_REFUSED);
	assert_int_equal(res.reason, MEAD_STIM_REASON_IO);
	rig_free(r);
}

static void test_watchdog_fed(void **unused)
{
	struct rig *r = rig_new(D_MAIN, 0);
	assert_int_equal(rig_open(r), 0);
	struct umodel_counts c0, c;
	umodel_counts(r->dev, &c0);
	rig_start(r);
	run(r, 1000);
	umodel_counts(r->dev, &c);
	c.sk -= c0.sk;
	c.watchdog_fired -= c0.watchdog_fired;
	print_message("usb: 1 s, no pulses: SET_WATCHDOG %u ms, %u keepalives, longest silence %llu samples, "
		      "watchdog fired %u\n", c.watchdog_ms, c.sk, (unsigned long long)c.out_gap_max, c.watchdog_fired);
	assert_int_equal(c.watchdog_ms, 100);
	assert_true(c.sk >= 35);
	/* a quarter of the watchdog, and the tick it waited for */
	assert_true(c.out_gap_max <= 100 * RATE / 4000 + 2 * 25);
	assert_int_equal(c.watchdog_fired, 0);
	assert_int_equal(count_events(r, MEAD_EVENT_STIM_LOST, NULL), 0);
	rig_free(r);
}

static void test_watchdog_fires_on_silence(void **unused)
{
	struct rig *r = rig_new(D_MAIN, 0);
	assert_int_equal(rig_open(r), 0);
	rig_start(r);
	run(r, 20);
	uint64_t far = first_of(r, r->t + 1) + RATE / 2;
	struct mead_stim_pulse p = { .sample = far, .electrode = 5, .amplitude_ua = 10.0f, .phase_us = 100 };
	assert_int_equal(rig_tick(r, &p, 1, NULL, NULL), 0);
	uint64_t last_cmd = umodel_clock(r->dev);
	struct umodel_counts c0, c;
	umodel_counts(r->dev, &c0);
	/* the host hangs for 150 ms: no command reaches the device */
	rig_clock(r, r->world + 150 * RATE / 1000);
	umodel_counts(r->dev, &c);
	c.watchdog_fired -= c0.watchdog_fired;
	struct umodel_stim log[64];
	uint32_t n = umodel_stims(r->dev, log, 64);
	print_message("usb: last command at %llu, watchdog fired at %llu (%u), pulse status %u\n",
		      (unsigned long long)last_cmd, (unsigned long long)c.watchdog_sample, c.watchdog_fired,
		      log[n - 1].status);
	assert_int_equal(c.watchdog_fired, 1);
	assert_true(c.watchdog_sample > last_cmd + 100 * RATE / 1000 - 25);
	assert_true(c.watchdog_sample <= last_cmd + 100 * RATE / 1000 + 1);
	assert_int_equal(log[n - 1].status, UMODEL_DROPPED);
	/* the loop runs again: the driver says what the device did */
	catch_up(r);
	run(r, 5);
	const struct mead_event *e = find_event(r, MEAD_EVENT_STIM_LOST, 0);
	assert_non_null(e);
	print_message("usb: STIM_LOST at %llu value %d\n", (unsigned long long)e->sample, e->value);
	assert_int_equal(e->value, 1);
	assert_true(e->sample + 25 >= c.watchdog_sample && e->sample <= c.watchdog_sample);
	const struct mead_stim_result *x = result_of(r, far, 5);
	assert_non_null(x);
	assert_int_equal(x->status, MEAD_STIM_REFUSED);
	assert_int_equal(x->reason, MEAD_STIM_REASON_CANCELLED);
	/* the stall was shorter than queue_ms: no sample lost */
	assert_int_equal(count_events(r, MEAD_EVENT_GAP, NULL) + count_events(r, MEAD_EVENT_OVERFLOW, NULL), 0);
	assert_raw_exact(r);
	char desc[4096];
	describe(r, desc, sizeof(desc));
	assert_int_equal(desc_num(desc, "watchdog_fired"), 1);
	rig_free(r);
}

static void test_queue_covers_a_stall(void **unused)
{
	struct rig *r = rig_new(D_MAIN, 0);
	harness_set(&r->h, "watchdog_ms", "0");
	assert_int_equal(rig_open(r), 0);
	rig_start(r);
	run(r, 50);
	/* the loop thread is away 150 ms: the kernel fills the transfers */
	rig_clock(r, r->world + 150 * RATE / 1000);
	catch_up(r);
	run(r, 20);
	print_raw(r, "150 ms stall");
	assert_int_equal(r->n_ev, 0);
	assert_raw_exact(r);
	assert_int_equal(r->raw_checked, first_of(r, r->t));

	/* 400 ms: more than the transfers and the device's FIFO hold; the
	 * device drops packets and says so on the next */
	struct umodel_counts c0, c1;
	umodel_counts(r->dev, &c0);
	rig_clock(r, r->world + 400 * RATE / 1000);
	catch_up(r);
	run(r, 20);
	umodel_counts(r->dev, &c1);
	uint64_t lost;
	uint32_t n = count_events(r, MEAD_EVENT_OVERFLOW, &lost);
	const struct mead_event *e = find_event(r, MEAD_EVENT_OVERFLOW, 0);
	print_raw(r, "400 ms stall");
	print_message("usb: device overran %llu packets; OVERFLOW events %u, %llu samples from %llu\n",
		      (unsigned long long)(c1.packets_overrun - c0.packets_overrun), n, (unsigned long long)lost,
		      e ? (unsigned long long)e->sample : 0ull);
	assert_int_equal(n, 1);
	assert_int_equal(e->value, 0);
	assert_int_equal(lost, (c1.packets_overrun - c0.packets_overrun) * 25);
	assert_true(lost > 0);
	assert_int_equal(count_events(r, MEAD_EVENT_GAP, NULL), 0);
	/* the range reads as zeros; everything else is the signal */
	assert_raw_exact(r);
	assert_int_equal(r->raw_zeros, lost);
	char desc[4096];
	describe(r, desc, sizeof(desc));
	assert_int_equal(desc_num(desc, "in_transfers"), 200);
	rig_free(r);
}

static void test_device_started_before_the_loop(void **unused)
{
	struct rig *r = rig_new(D_MAIN, 0);
	harness_set(&r->h, "threshold_k", "6");
	harness_set(&r->h, "watchdog_ms", "0");
	rig_signal(r, 11, 20.0, RATE / 2, 3 * RATE);
	/* a host started it and went away: it has streamed for 100 ms */
	umodel_start(r->dev);
	rig_clock(r, umodel_world(r->dev) + 100 * RATE / 1000);
	assert_int_equal(rig_open(r), 0);
	rig_start(r);
	/* start() is called right before tick 0; the loop's first read comes
	 * 150 ms later still */
	rig_clock(r, r->world + 150 * RATE / 1000);
	assert_int_equal(rig_tick(r, NULL, 0, NULL, NULL), 0);
	print_message("usb: tick 0 reads with acquired = %llu (150 ms of samples), gen at START %llu\n",
		      (unsigned long long)r->f.acquired, (unsigned long long)r->ref_base);
	assert_int_equal(r->f.acquired, 150 * RATE / 1000);
	assert_true(r->ref_base > 0);
	catch_up(r);
	run(r, 2000);
	print_raw(r, "backlog before tick 0");
	assert_int_equal(r->n_ev, 0);
	assert_raw_exact(r);
	assert_int_equal(r->raw_checked, first_of(r, r->t));
	match_spikes(r, first_of(r, r->t), NULL);
	rig_free(r);
}

static void test_stale_packets_ignored(void **unused)
{
	struct rig *r = rig_new(D_MAIN, 0);
	harness_set(&r->h, "watchdog_ms", "0");
	/* a host read for 2 s, then went away; five of the packets made
	 * since are still queued when the next host sends START */
	umodel_start(r->dev);
	umodel_phantom_reader(r->dev, true);
	rig_clock(r, umodel_world(r->dev) + 2 * RATE);
	umodel_phantom_reader(r->dev, false);
	rig_clock(r, umodel_world(r->dev) + 20 * RATE / 1000);
	umodel_keep_stale(r->dev, 5);
	assert_int_equal(rig_open(r), 0);
	rig_start(r);
	run(r, 200);
	print_raw(r, "stale packets first");
	assert_int_equal(r->n_ev, 0);
	assert_raw_exact(r);
	assert_int_equal(r->raw_checked, first_of(r, r->t));
	char desc[4096];
	describe(r, desc, sizeof(desc));
	assert_int_equal(desc_num(desc, "stale_packets"), 5);
	rig_free(r);
}

static void test_lost_first_packets(void **unused)
{
	/* the device's own clock, in real time: packet k cannot come before
	 * (k + 1) ms after START */
	struct rig *r = rig_new(D_MAIN, 0);
	harness_set(&r->h, "watchdog_ms", "0");
	assert_int_equal(rig_open(r), 0);
	umodel_set_realtime(r->dev, true);
	umodel_drop_packets(r->dev, 2);
	rig_start(r);
	r->frozen = true;
	uint64_t t0 = mead_now_ns();
	for (uint64_t t = 0; t < 100; t++) {
		struct timespec ts = mead_ns_to_ts((int64_t)(t0 + (t + 1) * 1000000ull + 500000));
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
		assert_int_equal(rig_tick(r, NULL, 0, NULL, NULL), 0);
	}
	umodel_set_realtime(r->dev, false);
	print_raw(r, "the first two packets lost");
	char desc[4096];
	describe(r, desc, sizeof(desc));
	const struct mead_event *g = find_event(r, MEAD_EVENT_GAP, 0);
	assert_non_null(g);
	/* seq 2 is this stream's, not an older one's: only the lost samples go */
	assert_int_equal(g->sample, 0);
	assert_int_equal(g->samples, 50);
	assert_int_equal(desc_num(desc, "stale_packets"), 0);
	assert_raw_exact(r);
	rig_free(r);
}

static void test_late_samples_come_later(void **unused)
{
	struct rig *r = rig_new(D_MAIN, 0);
	harness_set(&r->h, "threshold_k", "6");
	harness_set(&r->h, "watchdog_ms", "0");
	rig_signal(r, 12, 30.0, RATE / 2, RATE);
	assert_int_equal(rig_open(r), 0);
	rig_start(r);
	run(r, 500);
	/* the device has nothing for ten ticks, then all of it at once */
	r->frozen = true;
	for (int i = 0; i < 10; i++)
		assert_int_equal(rig_tick(r, NULL, 0, NULL, NULL), 0);
	r->frozen = false;
	uint64_t late_from = first_of(r, 500);
	run(r, 520);
	uint64_t late;
	uint32_t n = count_events(r, MEAD_EVENT_LATE, &late);
	print_raw(r, "ten late ticks");
	print_message("usb: LATE events %u covering %llu samples from %llu\n", n, (unsigned long long)late,
		      (unsigned long long)find_event(r, MEAD_EVENT_LATE, 0)->sample);
	assert_int_equal(n, 10);
	assert_int_equal(late, 10 * 25);
	assert_int_equal(find_event(r, MEAD_EVENT_LATE, 0)->sample, late_from);
	assert_int_equal(r->late_frames, 10);
	/* nothing skipped: raw is the whole signal, in order */
	assert_raw_exact(r);
	assert_int_equal(r->raw_checked, first_of(r, r->t));
	match_spikes(r, first_of(r, r->t), NULL);
	rig_free(r);
}

static void test_losses_have_ranges(void **unused)
{
	struct rig *r = rig_new(D_MAIN, 0);
	harness_set(&r->h, "watchdog_ms", "0");
	assert_int_equal(rig_open(r), 0);
	rig_start(r);
	run(r, 20);
	/* three packets the device never sent */
	umodel_drop_packets(r->dev, 3);
	run(r, 20);
	/* two transfers that fail (a transaction error), one that babbles */
	umodel_fail_in(r->dev, 2, EPROTO);
	run(r, 20);
	umodel_fail_in(r->dev, 1, EOVERFLOW);
	run(r, 20);
	print_raw(r, "losses");
	const struct mead_event *g0 = find_event(r, MEAD_EVENT_GAP, 0), *g1 = find_event(r, MEAD_EVENT_GAP, 1),
				*o0 = find_event(r, MEAD_EVENT_OVERFLOW, 0);
	assert_non_null(g0);
	assert_non_null(g1);
	assert_non_null(o0);
	print_message("usb: GAP %llu+%u (%d), GAP %llu+%u (%d), OVERFLOW %llu+%u (%d)\n",
		      (unsigned long long)g0->sample, g0->samples, g0->value, (unsigned long long)g1->sample,
		      g1->samples, g1->value, (unsigned long long)o0->sample, o0->samples, o0->value);
	assert_int_equal(g0->samples, 75);
	assert_int_equal(g0->value, 0);
	assert_int_equal(g1->samples, 50);
	assert_int_equal(g1->value, 1);
	assert_int_equal(o0->samples, 25);
	assert_int_equal(o0->value, 1);
	assert_int_equal(count_events(r, MEAD_EVENT_GAP, NULL), 2);
	assert_int_equal(count_events(r, MEAD_EVENT_OVERFLOW, NULL), 1);
	/* the lost ranges read as zeros, the rest is the signal */
	assert_raw_exact(r);
	assert_int_equal(r->raw_zeros, 150);
	assert_int_equal(r->raw_checked, first_of(r, r->t));
	char desc[4096];
	describe(r, desc, sizeof(desc));
	print_message("usb: %s\n", desc);
	assert_int_equal(desc_num(desc, "gaps"), 2);
	assert_int_equal(desc_num(desc, "gap_samples"), 125);
	assert_int_equal(desc_num(desc, "transfer_errors"), 2);
	assert_int_equal(desc_num(desc, "babbles"), 1);
	rig_free(r);
}

static void test_stall_cleared(void **unused)
{
	struct rig *r = rig_new(D_MAIN, 0);
	harness_set(&r->h, "watchdog_ms", "0");
	assert_int_equal(rig_open(r), 0);
	rig_start(r);
	run(r, 30);
	uint64_t stalled_at = first_of(r, r->t);
	struct umodel_counts c0, c;
	umodel_counts(r->dev, &c0);
	umodel_stall_in(r->dev);
	/* 20 ms of device time pass; the watcher clears the halt (wall time) */
	rig_tick(r, NULL, 0, NULL, NULL);
	r->frozen = true;
	rig_clock(r, r->world + 20 * RATE / 1000);
	for (int i = 0; i < 2000; i++) {
		umodel_counts(r->dev, &c);
		if (c.clear_halts > c0.clear_halts)
			break;
		sleep_ms(1);
		/* the loop thread still reads: that is where the stalls come back */
		rig_tick(r, NULL, 0, NULL, NULL);
	}
	r->frozen = false;
	catch_up(r);
	run(r, 30);
	print_raw(r, "stall");
	char desc[4096];
	describe(r, desc, sizeof(desc));
	print_message("usb: %s\n", desc);
	assert_int_equal(c.clear_halts, c0.clear_halts + 1);
	const struct mead_event *e = find_event(r, MEAD_EVENT_STALL, 0);
	assert_non_null(e);
	print_message("usb: STALL at %llu value %d (stalled before %llu)\n", (unsigned long long)e->sample, e->value,
		      (unsigned long long)stalled_at);
	assert_int_equal(e->value, 1);
	assert_int_equal(e->sample, stalled_at);
	assert_int_equal(count_events(r, MEAD_EVENT_STALL, NULL), 1);
	assert_int_equal(desc_num(desc, "stalls_cleared"), 1);
	assert_true(desc_num(desc, "stalls") >= 1);
	/* the device held its packets meanwhile: nothing lost */
	assert_int_equal(count_events(r, MEAD_EVENT_GAP, NULL) + count_events(r, MEAD_EVENT_OVERFLOW, NULL), 0);
	assert_raw_exact(r);
	assert_int_equal(r->raw_checked, first_of(r, r->t));
	rig_free(r);
}

static void test_command_endpoint_stall(void **unused)
{
	struct rig *r = rig_new(D_MAIN, 0);
	harness_set(&r->h, "watchdog_ms", "0");
	assert_int_equal(rig_open(r), 0);
	rig_start(r);
	run(r, 10);
	struct umodel_counts c0, c;
	umodel_counts(r->dev, &c0);
	umodel_stall_out(r->dev);
	uint64_t at = first_of(r, r->t + 1) + 3;
	struct mead_stim_pulse p = { .sample = at, .electrode = 4, .amplitude_ua = 5.0f, .phase_us = 50 };
	struct mead_stim_result res;
	assert_int_equal(rig_tick(r, &p, 1, &res, NULL), 0);
	assert_int_equal(res.status, MEAD_STIM_PENDING);
	run(r, 1);
	/* the command stalled: the device never took the pulse */
	const struct mead_stim_result *x = must_result(r, at, 4);
	assert_int_equal(x->status, MEAD_STIM_REFUSED);
	assert_int_equal(x->reason, MEAD_STIM_REASON_IO);
	for (int i = 0; i < 2000; i++) {
		umodel_counts(r->dev, &c);
		if (c.clear_halts > c0.clear_halts)
			break;
		sleep_ms(1);
	}
	assert_int_equal(c.clear_halts, c0.clear_halts + 1);
	at = first_of(r, r->t + 1) + 3;
	p.sample = at;
	assert_int_equal(rig_tick(r, &p, 1, &res, NULL), 0);
	run(r, 2);
	x = must_result(r, at, 4);
	assert_int_equal(x->status, MEAD_STIM_DELIVERED);
	assert_int_equal(x->sample, at);
	char desc[4096];
	describe(r, desc, sizeof(desc));
	assert_int_equal(desc_num(desc, "out_stalls"), 1);
	assert_int_equal(desc_num(desc, "pulses_refused_here"), 1);
	rig_free(r);
}

static void test_ring_overrun(void **unused)
{
	struct rig *r = rig_new(D_MAIN, 0);
	harness_set(&r->h, "watchdog_ms", "0");
	harness_set(&r->h, "queue_ms", "20");
	assert_int_equal(rig_open(r), 0);
	char desc[4096];
	describe(r, desc, sizeof(desc));
	long long described = desc_num(desc, "ring_samples");
	uint64_t ring = described > 0 ? (uint64_t)described : 16384;
	rig_start(r);
	/* the device runs on while the loop reads one tick in two */
	r->frozen = true;
	uint64_t ticks = 2 * ring / 25 + 200;
	for (uint64_t i = 0; i < ticks; i++) {
		rig_clock(r, r->w0 + first_of(r, 2 * r->t + 2));
		assert_int_equal(rig_tick(r, NULL, 0, NULL, NULL), 0);
	}
	uint64_t lost;
	uint32_t n = count_events(r, MEAD_EVENT_OVERFLOW, &lost);
	const struct mead_event *e = find_event(r, MEAD_EVENT_OVERFLOW, 0);
	print_raw(r, "loop behind by more than the ring");
	print_message("usb: ring %llu samples; OVERFLOW events %u, %llu samples, first at %llu value %d\n",
		      (unsigned long long)ring, n, (unsigned long long)lost, e ? (unsigned long long)e->sample : 0ull,
		      e ? e->value : -1);
	assert_true(n > 0);
	assert_int_equal(e->value, 2);
	/* what was skipped is exactly what the events say; the rest is the signal */
	assert_raw_exact(r);
	uint64_t end_all = r->raw_next;
	for (uint32_t i = 0; i < r->n_ev; i++)
		if (r->ev[i].type == MEAD_EVENT_OVERFLOW && r->ev[i].sample + r->ev[i].samples > end_all)
			end_all = r->ev[i].sample + r->ev[i].samples;
	assert_int_equal(r->raw_checked + lost, end_all);
	assert_true(end_all >= first_of(r, r->t));
	describe(r, desc, sizeof(desc));
	assert_int_equal(desc_num(desc, "ring_overruns"), n);
	rig_free(r);
}

static void drift(int d)
{
	struct rig *r = rig_new(d, 8);
	const uint32_t spp = dev_cfg[d].samples_per_packet;
	harness_set(&r->h, "threshold_k", "6");
	harness_set(&r->h, "watchdog_ms", "0");
	const uint64_t ticks = 2400, total = first_of(r, ticks);
	rig_signal(r, 20 + (uint64_t)d, 20.0, RATE / 2, total);
	assert_int_equal(rig_open(r), 0);
	rig_start(r);
	run(r, ticks);
	uint64_t dev_now = umodel_clock(r->dev);
	/* the slow one still owes samples: they come as it makes them */
	for (int i = 0; i < 20 && r->raw_next < first_of(r, ticks); i++) {
		rig_clock(r, r->world + spp);
		r->frozen = true;
		rig_tick(r, NULL, 0, NULL, NULL);
		r->frozen = false;
	}
	print_raw(r, dev_cfg[d].clock_ppm > 0 ? "+200 ppm" : "-200 ppm");
	print_message("usb: after %llu ticks the device counted %llu samples (%+lld against the loop)\n",
		      (unsigned long long)ticks, (unsigned long long)dev_now,
		      (long long)dev_now - (long long)first_of(r, ticks));
	assert_true(llabs((long long)dev_now - (long long)total) >= 150);
	/* acquired follows the device's counter within a packet */
	assert_true(r->lag_min >= 0);
	assert_true(r->lag_max < spp);
	assert_raw_exact(r);
	assert_int_equal(count_events(r, MEAD_EVENT_GAP, NULL) + count_events(r, MEAD_EVENT_OVERFLOW, NULL), 0);
	assert_true(r->raw_checked >= first_of(r, ticks));
	match_spikes(r, first_of(r, ticks), NULL);
	rig_free(r);
}

static void test_drift_fast(void **unused)
{
	drift(D_FAST);
}

static void test_drift_slow(void **unused)
{
	drift(D_SLOW);
}

static void test_unplug_replug(void **unused)
{
	struct rig *r = rig_new(D_MAIN, 0);
	assert_int_equal(rig_open(r), 0);
	rig_start(r);
	struct umodel_counts c0;
	umodel_counts(r->dev, &c0);
	run(r, 50);
	/* a pulse far ahead is pending when the device goes */
	uint64_t far = first_of(r, r->t + 1) + RATE / 2;
	struct mead_stim_pulse p = { .sample = far, .electrode = 1, .amplitude_ua = 10, .phase_us = 100 };
	assert_int_equal(rig_tick(r, &p, 1, NULL, NULL), 0);
	run(r, 2);
	umodel_unplug(r->dev);
	uint64_t unplug_tick = r->t;
	int rc = rig_tick(r, NULL, 0, NULL, NULL);
	print_message("usb: unplugged before tick %llu: read_frame %d\n", (unsigned long long)unplug_tick, rc);
	assert_int_equal(rc, -ENODEV);
	assert_true(r->f.flags & MEAD_FRAME_DEVICE_GONE);
	const struct mead_stim_result *x = result_of(r, far, 1);
	assert_non_null(x);
	assert_int_equal(x->status, MEAD_STIM_REFUSED);
	assert_int_equal(x->reason, MEAD_STIM_REASON_UNKNOWN);
	/* the device's own outputs stopped with the bus */
	struct umodel_stim log[64];
	uint32_t n = umodel_stims(r->dev, log, 64);
	assert_int_equal(log[n - 1].status, UMODEL_DROPPED);
	/* stimulation is refused while it is away, and the status says so */
	struct mead_stim_result res;
	int src;
	p.sample = first_of(r, r->t + 1);
	assert_int_equal(rig_tick(r, &p, 1, &res, &src), -ENODEV);
	assert_int_equal(src, -ENODEV);
	assert_int_equal(res.reason, MEAD_STIM_REASON_DEVICE_GONE);
	char desc[4096];
	describe(r, desc, sizeof(desc));
	assert_non_null(strstr(desc, "\"link\":\"gone\""));
	assert_non_null(strstr(desc, "\"stimulation\":\"off\""));
	for (int i = 0; i < 20; i++) {
		sleep_ms(1);
		assert_int_equal(rig_tick(r, NULL, 0, NULL, NULL), -ENODEV);
	}
	/* the device counts from 0 again, placed where the loop stands */
	r->check_raw = false;
	umodel_replug(r->dev);
	uint64_t replug_tick = r->t;
	for (int i = 0; i < 2000; i++) {
		sleep_ms(1);
		if ((rc = rig_tick(r, NULL, 0, NULL, NULL)) == 0)
			break;
	}
	print_message("usb: replugged at tick %llu, back at tick %llu\n", (unsigned long long)replug_tick,
		      (unsigned long long)r->t - 1);
	assert_int_equal(rc, 0);
	struct umodel_counts c1;
	umodel_counts(r->dev, &c1);
	assert_true(c1.opens > c0.opens);
	assert_int_equal(c1.starts, c0.starts + 1);
	run(r, 2);
	/* off for START, on again once the stream is back */
	umodel_counts(r->dev, &c1);
	assert_int_equal(c1.set_watchdog, c0.set_watchdog + 2);
	assert_int_equal(c1.watchdog_ms, 100);
	/* samples flow again on time, and pulses land where they are asked */
	uint32_t late0 = r->late_frames;
	run(r, 38);
	assert_true(r->late_frames - late0 <= 1);
	uint64_t at = first_of(r, r->t + 1) + 4;
	p = (struct mead_stim_pulse){ .sample = at, .electrode = 2, .amplitude_ua = 10, .phase_us = 100 };
	assert_int_equal(rig_tick(r, &p, 1, &res, &src), 0);
	assert_int_equal(res.status, MEAD_STIM_PENDING);
	run(r, 3);
	x = result_of(r, at, 2);
	assert_non_null(x);
	assert_int_equal(x->status, MEAD_STIM_DELIVERED);
	assert_int_equal(x->sample, at);
	n = umodel_stims(r->dev, log, 64);
	assert_int_equal(log[n - 1].status, UMODEL_DELIVERED);
	assert_true(log[n - 1].received_at < log[n - 1].requested_sample);
	describe(r, desc, sizeof(desc));
	print_message("usb: %s\n", desc);
	assert_non_null(strstr(desc, "\"unplugs\":1"));
	assert_non_null(strstr(desc, "\"reattaches\":1"));
	assert_non_null(strstr(desc, "\"link\":\"live\""));
	assert_int_equal(desc_num(desc, "pulses_unknown"), 1);

	/* again, the transfers in flight ending as failed transactions: the
	 * resubmission finds the device gone */
	umodel_unplug_errors(r->dev, true);
	umodel_unplug(r->dev);
	rc = 0;
	for (int i = 0; i < 3 && rc == 0; i++)
		rc = rig_tick(r, NULL, 0, NULL, NULL);
	assert_int_equal(rc, -ENODEV);
	umodel_unplug_errors(r->dev, false);
	umodel_replug(r->dev);
	for (int i = 0; i < 2000; i++) {
		sleep_ms(1);
		if ((rc = rig_tick(r, NULL, 0, NULL, NULL)) == 0)
			break;
	}
	assert_int_equal(rc, 0);
	describe(r, desc, sizeof(desc));
	assert_int_equal(desc_num(desc, "unplugs"), 2);
	assert_int_equal(desc_num(desc, "reattaches"), 2);
	rig_free(r);
}

static void test_stimulators_declared(void **unused)
{
	struct rig *r = rig_new(D_MULTI, 0);
	harness_set(&r->h, "watchdog_ms", "0");
	assert_int_equal(rig_open(r), 0);
	struct mead_driver_caps caps;
	r->h.ops->get_caps(r->h.state, &caps);
	assert_int_equal(caps.stimulators, 4);
	assert_non_null(caps.stimulator_of_electrode);
	for (uint16_t e = 0; e < 60; e++)
		assert_int_equal(caps.stimulator_of_electrode[e], e % 4);
	rig_start(r);
	run(r, 10);
	/* at once on two stimulators; again on a busy one */
	uint64_t at = first_of(r, r->t + 1) + 2;
	struct mead_stim_pulse p[3] = {
		{ .sample = at, .electrode = 1, .amplitude_ua = 5.0f, .phase_us = 100 },
		{ .sample = at, .electrode = 2, .amplitude_ua = 5.0f, .phase_us = 100 },
		{ .sample = at + 1, .electrode = 5, .amplitude_ua = 5.0f, .phase_us = 100 },
	};
	assert_int_equal(rig_tick(r, p, 3, NULL, NULL), 0);
	run(r, 3);
	assert_int_equal(must_result(r, at, 1)->status, MEAD_STIM_DELIVERED);
	assert_int_equal(must_result(r, at, 2)->status, MEAD_STIM_DELIVERED);
	assert_int_equal(must_result(r, at + 1, 5)->reason, MEAD_STIM_REASON_BUSY);
	rig_free(r);
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
	for (int d = 0; d < D_N; d++) {
		idle_gen[d] = siggen_new(dev_cfg[d].channels, dev_cfg[d].rate_hz, 6.0f, 100 + (uint64_t)d);
		dev[d] = umodel_new(tb, &dev_cfg[d], idle_gen[d], err, sizeof(err));
		if (!dev[d]) {
			fprintf(stderr, "cannot emulate device %d: %s\n", d, err);
			return 1;
		}
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_bad_configuration, teardown),
		cmocka_unit_test_teardown(test_spikes_and_raw, teardown),
		cmocka_unit_test_teardown(test_waveforms, teardown),
		cmocka_unit_test_teardown(test_endpoints_from_descriptor, teardown),
		cmocka_unit_test_teardown(test_stimulation_reports, teardown),
		cmocka_unit_test_teardown(test_stimulation_refused_here, teardown),
		cmocka_unit_test_teardown(test_watchdog_fed, teardown),
		cmocka_unit_test_teardown(test_watchdog_fires_on_silence, teardown),
		cmocka_unit_test_teardown(test_queue_covers_a_stall, teardown),
		cmocka_unit_test_teardown(test_device_started_before_the_loop, teardown),
		cmocka_unit_test_teardown(test_stale_packets_ignored, teardown),
		cmocka_unit_test_teardown(test_lost_first_packets, teardown),
		cmocka_unit_test_teardown(test_late_samples_come_later, teardown),
		cmocka_unit_test_teardown(test_losses_have_ranges, teardown),
		cmocka_unit_test_teardown(test_stall_cleared, teardown),
		cmocka_unit_test_teardown(test_command_endpoint_stall, teardown),
		cmocka_unit_test_teardown(test_ring_overrun, teardown),
		cmocka_unit_test_teardown(test_drift_fast, teardown),
		cmocka_unit_test_teardown(test_drift_slow, teardown),
		cmocka_unit_test_teardown(test_unplug_replug, teardown),
		cmocka_unit_test_teardown(test_stimulators_declared, teardown),
	};
	/* MEAD_TEST_FILTER=test_stall_cleared runs one (cmocka's pattern) */
	if (getenv("MEAD_TEST_FILTER"))
		cmocka_set_test_filter(getenv("MEAD_TEST_FILTER"));
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	for (int d = 0; d < D_N; d++) {
		umodel_free(dev[d]);
		siggen_free(idle_gen[d]);
	}
	g_object_unref(tb);
	return r;
}
