/* SPDX-License-Identifier: MIT */
/*
 * mead-driver-comedi, unmodified, against Comedi boards emulated behind
 * umockdev testbed device nodes (see cmodel.c).  Runs under umockdev-wrapper.
 *
 * The board's clock is set by the test (virtual clock): tick t's read_frame
 * runs with the device at the end of tick t, as the loop runs it, then
 * write_stim gets the pulses for tick t+1.  What the board played is read
 * back from the model (cmodel_stims) and compared with what the driver
 * reported.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <comedi.h>
#include <math.h>
#include <pthread.h>
#include <time.h>
#include <umockdev.h>

#include "tests/lib/devmodel.h"
#include "lib/core/time.h"
#include "tests/lib/harness.h"

#define RATE 25000u
#define PERIOD_US 1000u
#define GAIN 1100.0
#define LEAD_SAMPLES 38u        /* the default lead, 1.5 ms, at 25 kHz (rounded up) */
/* What is written ahead when the next tick's pulses come: write_stim (every
 * tick) wrote the lead a tick ago, so the lead less a tick. */
#define COMMITTED_SAMPLES (LEAD_SAMPLES - RATE / 1000u * PERIOD_US / 1000u)
#define AO_PER_SAMPLE 4u        /* 100 kHz stream over 25 kHz scans */
#define ROUTE(el) ((uint32_t)(el) | 1u << 6 | 1u << 7)

static UMockdevTestbed *tb;
static struct cmodel *board0, *board_nocmd, *board_noao, *board_ct, *board18, *board_dma, *board_cdo, *board_rm,
	*board_ovf, *board_di;
static struct siggen *gen0, *gen_ct, *gen18, *gen_dma, *gen_cdo, *gen_rm, *gen_ovf, *gen_di;

/* ---------------------------------------------------------------- the rig */

struct rig {
	struct harness h;
	struct cmodel *m;
	uint64_t base;                 /* device clock of the driver's sample 0 */
	uint64_t t;                    /* next tick */
	struct mead_driver_caps caps;
	/* what the frames said, all along */
	struct mead_stim_result settled[512];
	uint32_t n_settled;
	struct mead_event ev[2048];
	uint32_t n_ev;
	uint64_t raw_next, raw_total;
	bool raw_in_order;
	uint32_t late_frames;
	uint32_t last_spikes;
	uint64_t acquired;
	int last_r;
	struct mead_spike spk[4096];
	uint32_t n_spk_total;
	int16_t *raw;
	uint32_t raw_cap;
	struct mead_stim_result res_buf[64];
	struct mead_event ev_buf[256];
	/* waveforms (caps.flags MEAD_CAP_WAVEFORMS): all of them, and raw kept whole */
	uint8_t *wf;
	uint32_t wf_size, wf_cap, n_wf;
	int16_t *raw_all;
	uint64_t raw_all_frames;
};

static struct rig *cur;           /* closed by the teardown when a test fails */

static uint64_t first_of(uint64_t t)
{
	return mead_tick_first_sample(t, PERIOD_US * 1000u, RATE);
}

static void layout_n(struct harness *h, uint32_t n)
{
	harness_layout60(h);
	h->layout.count = n;
}

static struct rig *rig_new(struct cmodel *m, const char *dev, uint32_t electrodes)
{
	struct rig *r = calloc(1, sizeof(*r));
	r->m = m;
	if (electrodes == 60)
		harness_layout60(&r->h);
	else
		layout_n(&r->h, electrodes);
	assert_non_null(harness_load(&r->h, "comedi"));
	harness_defaults(&r->h, PERIOD_US);
	harness_set(&r->h, "device", dev);
	harness_set(&r->h, "amp_gain", "1100");
	/* 10 µA a volt: one 16-bit DAC code is 3 nA */
	harness_set(&r->h, "ao_ua_per_volt", "10");
	r->raw_in_order = true;
	cur = r;
	return r;
}

/* No routing lines, no enable or blanking line. */
static void no_routing(struct rig *r)
{
	harness_set(&r->h, "route_lines", "");
	harness_set(&r->h, "route_enable_line", "-1");
	harness_set(&r->h, "blank_line", "-1");
}

static void rig_open(struct rig *r)
{
	int e = harness_open(&r->h);
	if (e)
		print_message("comedi: open: %d %s\n", e, r->h.err);
	assert_int_equal(e, 0);
	assert_int_equal(r->h.ops->get_caps(r->h.state, &r->caps), 0);
}

static void rig_start(struct rig *r)
{
	int e = r->h.ops->start(r->h.state, r->h.err, sizeof(r->h.err));
	if (e)
		print_message("comedi: start: %d %s\n", e, r->h.err);
	assert_int_equal(e, 0);
	r->base = cmodel_ai_start(r->m);
	r->t = 0;
}

static void rig_run(struct rig *r, uint32_t ticks);
static uint32_t played_count(struct cmodel *m);

/* Starts and runs a few ticks; returns the pulses the board had played
 * before (what cmodel_stims lists from then on is this run's). */
static uint32_t rig_go(struct rig *r, uint32_t ticks)
{
	rig_start(r);
	uint32_t n0 = played_count(r->m);
	rig_run(r, ticks);
	return n0;
}

/* Recording only, raw wanted, a raw buffer of 64 ticks: open and started. */
static struct rig *recording_rig(struct cmodel *m, const char *dev, uint32_t electrodes, const char *key,
				 const char *value)
{
	struct rig *r = rig_new(m, dev, electrodes);
	harness_set(&r->h, "stimulate", "false");
	if (key)
		harness_set(&r->h, key, value);
	r->h.cfg.want_raw = true;
	rig_open(r);
	rig_start(r);
	r->raw_cap = 25 * 64;
	r->raw = calloc((size_t)r->raw_cap * electrodes, sizeof(int16_t));
	return r;
}

static void expect_describe(struct rig *r, const char *needle)
{
	char desc[2048];
	assert_true(r->h.ops->describe(r->h.state, desc, sizeof(desc)) > 0);
	if (!strstr(desc, needle))
		print_message("comedi: describe %s lacks %s\n", desc, needle);
	assert_non_null(strstr(desc, needle));
}

static void rig_free(struct rig *r)
{
	if (!r)
		return;
	if (r->h.state) {
		r->h.ops->stop(r->h.state);
		harness_close(&r->h);
	}
	harness_unload(&r->h);
	free(r->raw);
	free(r->wf);
	free(r->raw_all);
	free(r);
	if (cur == r)
		cur = NULL;
}

static int teardown(void **unused)
{
	rig_free(cur);
	return 0;
}

/* Tick r->t: the device is at the end of it (plus `ahead` samples) when
 * its frame is read. */
static int rig_read(struct rig *r, int64_t ahead)
{
	uint64_t first = first_of(r->t), next = first_of(r->t + 1);
	cmodel_set_clock(r->m, (uint64_t)((int64_t)(r->base + next) + ahead));
	struct mead_frame f = {
		.first_sample = first, .n_samples = (uint32_t)(next - first),
		.spikes = r->spk, .spike_capacity = 4096,
		.raw = r->raw, .raw_channels = r->raw ? r->h.layout.count : 0, .raw_capacity = r->raw_cap,
		.raw_first_sample = first,
		.stim_results = r->res_buf, .stim_result_capacity = 64,
		.events = r->ev_buf, .event_capacity = 256,
	};
	if (r->wf) {
		f.waveforms = r->wf + (size_t)r->n_wf * r->wf_size;
		f.waveform_size = r->wf_size;
		f.waveform_capacity = r->wf_cap - r->n_wf;
	}
	int e = r->h.ops->read_frame(r->h.state, r->t, &f);
	r->n_wf += f.n_waveforms;
	if (r->raw_all && f.raw_samples && f.raw_first_sample + f.raw_samples <= r->raw_all_frames)
		memcpy(r->raw_all + f.raw_first_sample * f.raw_channels, r->raw,
		       (size_t)f.raw_samples * f.raw_channels * sizeof(int16_t));
	r->last_r = e;
	for (uint32_t i = 0; i < f.n_stim_results && r->n_settled < 512; i++)
		r->settled[r->n_settled++] = r->res_buf[i];
	for (uint32_t i = 0; i < f.n_events && r->n_ev < 2048; i++)
		if (r->ev_buf[i].type != MEAD_EVENT_BLANK)
			r->ev[r->n_ev++] = r->ev_buf[i];
	if (f.raw_samples) {
		if (f.raw_first_sample != r->raw_next)
			r->raw_in_order = false;
		r->raw_next = f.raw_first_sample + f.raw_samples;
		r->raw_total += f.raw_samples;
	}
	r->late_frames += (f.flags & MEAD_FRAME_LATE) != 0;
	r->acquired = f.acquired;
	r->n_spk_total += f.n_spikes;
	r->last_spikes = f.n_spikes;
	return e;
}

static int rig_write(struct rig *r, const struct mead_stim_pulse *p, uint32_t n, struct mead_stim_result *res)
{
	return r->h.ops->write_stim(r->h.state, r->t, p, n, res);
}

/* read_frame(t), then write_stim(t) with the pulses for tick t+1 (every
 * tick, pulses or not, as the loop calls it: the stream is fed there). */
static int rig_tick(struct rig *r, const struct mead_stim_pulse *p, uint32_t n, struct mead_stim_result *res)
{
	int e = rig_read(r, 0);
	assert_int_equal(e, 0);
	assert_int_equal(rig_write(r, p, n, res), 0);
	r->t++;
	return e;
}

static void rig_run(struct rig *r, uint32_t ticks)
{
	for (uint32_t i = 0; i < ticks; i++)
		rig_tick(r, NULL, 0, NULL);
}

static const struct mead_stim_result *settled_for(const struct rig *r, const struct mead_stim_pulse *p)
{
	for (uint32_t i = 0; i < r->n_settled; i++)
		if (r->settled[i].pulse.sample == p->sample && r->settled[i].pulse.electrode == p->electrode &&
		    r->settled[i].pulse.amplitude_ua == p->amplitude_ua)
			return &r->settled[i];
	return NULL;
}

static uint32_t count_events(const struct rig *r, uint32_t type)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < r->n_ev; i++)
		n += r->ev[i].type == type;
	return n;
}

static const struct mead_event *find_event(const struct rig *r, uint32_t type)
{
	for (uint32_t i = 0; i < r->n_ev; i++)
		if (r->ev[i].type == type)
			return &r->ev[i];
	return NULL;
}

/* Pulses the board played since `from` (an earlier cmodel_stims count). */
static uint32_t played(struct cmodel *m, uint32_t from, struct cmodel_stim *out, uint32_t cap)
{
	static struct cmodel_stim all[4096];
	uint32_t n = cmodel_stims(m, all, 4096);
	uint32_t k = 0;
	for (uint32_t i = from; i < n && k < cap; i++)
		out[k++] = all[i];
	return k;
}

static uint32_t played_count(struct cmodel *m)
{
	static struct cmodel_stim all[4096];
	return cmodel_stims(m, all, 4096);
}

static double one_code_ua(double ua_per_volt, uint32_t maxdata)
{
	return 20.0 / maxdata * ua_per_volt;
}

/* A pulse as played: its shape, its lines, and the driver's report of it. */
static void expect_played(const struct rig *r, const struct cmodel_stim *s, const struct mead_stim_pulse *p,
			  double ua_per_volt, uint32_t maxdata, bool check_lines)
{
	const struct mead_stim_result *res = settled_for(r, p);
	print_message("comedi: pulse el %u %.1f uA asked %llu, played at %llu (dio %#x%s%s), reported %s %llu\n",
		      p->electrode, p->amplitude_ua, (unsigned long long)p->sample,
		      (unsigned long long)(s->start_sample - r->base), s->dio, s->dio_steady ? "" : " changing",
		      s->cut ? ", cut" : "", res ? (res->status == MEAD_STIM_DELIVERED ? "delivered" : "refused") : "nothing",
		      res ? (unsigned long long)res->sample : 0ull);
	assert_false(s->cut);
	assert_float_equal(s->phase1_v * ua_per_volt, p->amplitude_ua, one_code_ua(ua_per_volt, maxdata));
	assert_float_equal(s->phase2_v * ua_per_volt, -p->amplitude_ua, one_code_ua(ua_per_volt, maxdata));
	assert_int_equal(s->phase1_ao, p->phase_us / 10);
	assert_int_equal(s->phase2_ao, p->phase_us / 10);
	assert_int_equal(s->gap_ao, p->interphase_us / 10);
	if (check_lines) {
		assert_int_equal(s->dio, ROUTE(p->electrode));
		assert_true(s->dio_steady);
	}
	assert_non_null(res);
	assert_int_equal(res->status, MEAD_STIM_DELIVERED);
	assert_int_equal(res->sample, s->start_sample - r->base);
	assert_true(res->sample >= p->sample);
}

/* ---------------------------------------------------------------- tests */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

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

/* Matches the planted spikes with the detected ones (electrode, within a
 * sample); returns how many of the planted on connected channels matched. */
static uint32_t match_spikes(const struct siggen_spike *planted, uint32_t n_planted, uint64_t from, uint64_t to,
			     uint64_t *found, size_t n_found, const int *el_of_hw, uint32_t n_el, uint32_t *expected)
{
	qsort(found, n_found, sizeof(uint64_t), cmp_u64);
	bool *used = calloc(n_found + 1, sizeof(bool));
	uint32_t matched = 0;
	*expected = 0;
	for (uint32_t i = 0; i < n_planted; i++) {
		int el = el_of_hw ? el_of_hw[planted[i].channel] : planted[i].channel < n_el ? planted[i].channel : -1;
		if (el < 0 || planted[i].sample < from || planted[i].sample >= to)
			continue;
		(*expected)++;
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
				break;
			}
		}
	}
	free(used);
	return matched;
}

/* Planted spikes at 60 channels x 25 kHz come out on the mapped electrodes
 * with the same count and within one sample; every tick's raw frames come
 * in order and the frame carries the device's clock. */
static void test_spikes_match_planted(void **unused)
{
	struct rig *r = rig_new(board0, "/dev/comedi0", 60);
	build_map(&r->h);
	harness_set(&r->h, "channel_map", channel_map);
	/* 70 µV spikes in 6 µV noise: at 6 sigma chance crossings (about one
	 * per second over 60 channels at 5 sigma, see test-drivers-signal)
	 * stay out, so the counts must agree exactly */
	harness_set(&r->h, "threshold_k", "6");
	r->h.cfg.want_raw = true;
	rig_open(r);
	assert_int_equal(r->caps.electrode_count, 60);
	assert_int_equal(r->caps.sample_rate_hz, RATE);
	assert_true(r->caps.flags & MEAD_CAP_STIMULATE);
	assert_true(r->caps.flags & MEAD_CAP_DEVICE_CLOCK);
	/* +-1 V range over 16 bits, divided by the amplifier gain */
	assert_float_equal(r->caps.uv_per_count, 2.0 / 65535 * 1e6 / GAIN, 1e-4);

	const uint64_t ticks = 3000, total = ticks * RATE / 1000;
	rig_start(r);
	siggen_plant_poisson(gen0, 20.0, r->base + RATE / 2, r->base + total - 100, 80, 70.0f);
	uint32_t n_planted;
	const struct siggen_spike *planted = siggen_spikes(gen0, &n_planted);
	r->raw_cap = 64;
	r->raw = calloc((size_t)r->raw_cap * 60, sizeof(int16_t));
	uint64_t *found = calloc(200000, sizeof(uint64_t));
	size_t n_found = 0;
	for (uint64_t t = 0; t < ticks; t++) {
		/* the device a few samples past the tick: the frame says so */
		assert_int_equal(rig_read(r, 3), 0);
		assert_int_equal(r->acquired, first_of(t + 1) + 3);
		for (uint32_t i = 0; i < r->last_spikes; i++) {
			if (i)
				assert_true(r->spk[i].sample >= r->spk[i - 1].sample);
			found[n_found++] = ((uint64_t)r->spk[i].electrode << 48) | (r->spk[i].sample + r->base);
		}
		r->t++;
	}
	assert_int_equal(r->late_frames, 0);
	assert_true(r->raw_in_order);
	assert_int_equal(r->raw_total, first_of(ticks));
	uint32_t expected;
	uint32_t matched = match_spikes(planted, n_planted, r->base, r->base + total, found, n_found, electrode_of_hw, 60,
					&expected);
	print_message("comedi: planted %u on connected channels, detected %zu, matched %u\n", expected, n_found, matched);
	assert_true(expected > 2000);
	assert_int_equal(matched, expected);
	assert_int_equal(n_found, expected);
	expect_describe(r, "\"overflows\":0");
	free(found);
	rig_free(r);
}

/* Waveforms through the real driver: each planted spike's cutout, 1 ms
 * before to 2 ms after the detected sample, is the signal the board
 * delivered (raw, in µV) less a baseline that hardly moves over 3 ms, with
 * the planted trough at the spike's sample; one per spike but those whose
 * post samples the run did not reach. */
static void test_waveforms_are_the_signal(void **unused)
{
	struct rig *r = rig_new(board0, "/dev/comedi0", 60);
	harness_set(&r->h, "threshold_k", "6");
	harness_set(&r->h, "waveforms", "true");
	harness_set(&r->h, "waveform_pre_us", "1000");
	harness_set(&r->h, "waveform_post_us", "2000");
	r->h.cfg.want_raw = true;
	rig_open(r);
	assert_true(r->caps.flags & MEAD_CAP_WAVEFORMS);
	assert_int_equal(r->caps.waveform_pre, 25);
	assert_int_equal(r->caps.waveform_post, 50);
	const uint32_t pre = 25, post = 50, len = pre + 1 + post;
	const uint64_t ticks = 2000, total = ticks * RATE / 1000;
	r->wf_size = mead_waveform_size(pre, post);
	r->wf_cap = 20000;
	r->wf = calloc(r->wf_cap, r->wf_size);
	r->raw_all_frames = total;
	r->raw_all = calloc(total * 60, sizeof(int16_t));
	r->raw_cap = 64;
	r->raw = calloc((size_t)r->raw_cap * 60, sizeof(int16_t));
	rig_start(r);
	siggen_plant_poisson(gen0, 20.0, r->base + RATE / 2, r->base + total - 100, 80, 70.0f);
	static struct mead_spike spikes[200000];
	uint32_t n_spikes = 0;
	for (uint64_t t = 0; t < ticks; t++) {
		assert_int_equal(rig_read(r, 3), 0);
		for (uint32_t i = 0; i < r->last_spikes && n_spikes < 200000; i++)
			spikes[n_spikes++] = r->spk[i];
		r->t++;
	}
	assert_int_equal(r->raw_total, total);
	uint32_t late = 0, checked = 0;
	for (uint32_t i = 0; i < n_spikes; i++)
		late += spikes[i].sample + post >= total;
	print_message("comedi: %u spikes, %u waveforms, %u spikes too late for one\n", n_spikes, r->n_wf, late);
	assert_true(n_spikes > 1000);
	assert_int_equal(r->n_wf, n_spikes - late);
	double worst = 0;
	for (uint32_t k = 0; k < r->n_wf; k++) {
		const uint8_t *rec = r->wf + (size_t)k * r->wf_size;
		struct mead_waveform w;
		memcpy(&w, rec, sizeof(w));
		float v[76];
		memcpy(v, rec + sizeof(w), sizeof(v));
		assert_int_equal(w.pre, pre);
		assert_int_equal(w.post, post);
		/* its spike */
		bool found = false;
		for (uint32_t i = 0; i < n_spikes && !found; i++)
			found = spikes[i].sample == w.sample && spikes[i].electrode == w.electrode &&
				spikes[i].amplitude_uv == w.amplitude_uv;
		assert_true(found);
		assert_true(w.sample >= pre);
		assert_int_equal(w.flags, 0);
		/* the signal less a constant: the baseline */
		double off = 0;
		for (uint32_t i = 0; i < len; i++)
			off += v[i] - r->raw_all[(w.sample - pre + i) * 60 + w.electrode] * r->caps.uv_per_count;
		off /= len;
		for (uint32_t i = 0; i < len; i++) {
			const double d = v[i] - r->raw_all[(w.sample - pre + i) * 60 + w.electrode] * r->caps.uv_per_count - off;
			if (fabs(d) > worst)
				worst = fabs(d);
		}
		/* the trough is at the spike's sample: the samples beside it were
		 * in the peak search or inside the threshold */
		assert_true(v[pre - 1] >= v[pre] && v[pre + 1] >= v[pre]);
		assert_float_equal(v[pre], w.amplitude_uv, 1e-3);
		assert_true(v[pre] < -35);
		checked++;
	}
	print_message("comedi: %u waveforms: the raw signal less its baseline within %.3f uV\n", checked, worst);
	/* the counts: the raw conversion rounds to a count (about 0.03 uV) */
	assert_true(worst < 0.5);
	expect_describe(r, "\"waveforms\":{\"pre\":25,\"post\":50");
	rig_free(r);
}

/* The AI command converts back to back at the board's fastest rate (its
 * minimum convert_arg), and asks for every scan when wake_eos is on. */
static void test_ai_command_shape(void **unused)
{
	struct rig *r = rig_new(board0, "/dev/comedi0", 60);
	harness_set(&r->h, "wake_eos", "true");
	rig_open(r);
	rig_start(r);
	struct cmodel_ai_cmd c;
	cmodel_last_ai_cmd(board0, &c);
	print_message("comedi: AI command: convert src %#x arg %u ns, scan %u ns, flags %#x\n", c.convert_src,
		      c.convert_arg, c.scan_begin_arg, c.flags);
	assert_int_equal(c.convert_src, TRIG_TIMER);
	assert_int_equal(c.convert_arg, 500);        /* 2 MS/s */
	assert_int_equal(c.scan_begin_arg, 40000);
	assert_true(c.flags & CMDF_WAKE_EOS);
	rig_free(r);
}

/* comedi_test's shape: 8 channels at 10 kHz (100 µs scans) and up to its
 * fastest rates are taken; conversions spread over the scan were refused
 * at 10 kHz ("nearest it offers: 9615.4 Hz"). */
static void test_fastest_rates_8ch(void **unused)
{
	static const char *rates[] = { "10000", "8000", "2000", "50000", "100000" };
	for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
		struct rig *r = rig_new(board_ct, "/dev/comedi3", 8);
		harness_set(&r->h, "sample_rate_hz", rates[i]);
		harness_set(&r->h, "stimulate", "false");
		harness_set(&r->h, "amp_gain", "1");
		int e = harness_open(&r->h);
		print_message("comedi: comedi_test shape, 8 ch at %s Hz -> %d %s\n", rates[i], e, r->h.err);
		assert_int_equal(e, 0);
		assert_int_equal(r->h.ops->start(r->h.state, r->h.err, sizeof(r->h.err)), 0);
		struct cmodel_ai_cmd c;
		cmodel_last_ai_cmd(board_ct, &c);
		assert_int_equal(c.scan_begin_arg, 1000000000u / (unsigned)atoi(rates[i]));
		assert_int_equal(c.convert_arg, 0);
		rig_free(r);
	}
}

/* No routing lines, no enable or blanking line: comedi_test has no DIO
 * subdevice, and the driver opens and stimulates without one. */
static void test_stimulate_without_dio(void **unused)
{
	struct rig *r = rig_new(board_ct, "/dev/comedi3", 8);
	harness_set(&r->h, "sample_rate_hz", "25000");
	harness_set(&r->h, "amp_gain", "1");
	no_routing(r);
	rig_open(r);
	assert_true(r->caps.flags & MEAD_CAP_STIMULATE);
	assert_int_equal(r->caps.stimulators, 1);
	assert_int_equal(r->caps.stim_switch_us, 0);
	expect_describe(r, "\"route\":\"none\"");
	uint32_t n0 = rig_go(r, 3);
	struct mead_stim_pulse p = { .sample = first_of(r->t + 1) + 50, .electrode = 3, .amplitude_ua = -40.0f,
				     .phase_us = 200, .interphase_us = 50 };
	struct mead_stim_result res;
	rig_tick(r, &p, 1, &res);
	assert_int_equal(res.status, MEAD_STIM_PENDING);
	rig_run(r, 5);
	struct cmodel_stim s[4];
	assert_int_equal(played(board_ct, n0, s, 4), 1);
	assert_int_equal(s[0].channel, 0);
	expect_played(r, &s[0], &p, 10, 65535, false);
	/* asked two ticks ahead, beyond the lead: on time */
	assert_int_equal(settled_for(r, &p)->sample, p.sample);
	assert_true(cmodel_ao_is_zero(board_ct, cmodel_ao_code(board_ct, 0)));
	rig_free(r);
}

/* Two pulses in consecutive ticks both play whole: the second waits for
 * the first (a new command per pulse cut the one still playing). */
static void test_consecutive_ticks_whole(void **unused)
{
	struct rig *r = rig_new(board0, "/dev/comedi0", 60);
	rig_open(r);
	uint32_t n0 = rig_go(r, 4);
	struct mead_stim_pulse a = { .sample = first_of(r->t + 1) + 20, .electrode = 5, .amplitude_ua = -40.0f,
				     .phase_us = 400, .interphase_us = 100 };
	struct mead_stim_result ra, rb;
	rig_tick(r, &a, 1, &ra);
	struct mead_stim_pulse b = { .sample = first_of(r->t + 1) + 5, .electrode = 5, .amplitude_ua = 30.0f,
				     .phase_us = 300, .interphase_us = 0 };
	rig_tick(r, &b, 1, &rb);
	assert_int_equal(ra.status, MEAD_STIM_PENDING);
	assert_int_equal(rb.status, MEAD_STIM_PENDING);
	rig_run(r, 6);
	struct cmodel_stim s[4];
	assert_int_equal(played(board0, n0, s, 4), 2);
	expect_played(r, &s[0], &a, 10, 65535, true);
	expect_played(r, &s[1], &b, 10, 65535, true);
	/* one after the other, with the guard time between */
	uint64_t a_end_ns = s[0].start_ns + (uint64_t)(s[0].phase1_ao + s[0].gap_ao + s[0].phase2_ao) * 10000u;
	assert_true(s[1].start_ns >= a_end_ns + 100000u);
	assert_int_equal(cmodel_dio(board0) & 0xff, 0);
	rig_free(r);
}

/* Several pulses in one tick are sequenced on the one stimulator: on time
 * where they fit, each after the previous one's guard time where they do
 * not, on another electrode after the lines have switched. */
static void test_several_pulses_one_tick(void **unused)
{
	struct rig *r = rig_new(board0, "/dev/comedi0", 60);
	rig_open(r);
	assert_true(r->caps.max_pulses_per_tick >= 3);
	assert_int_equal(r->caps.stimulators, 1);
	assert_int_equal(r->caps.stim_guard_us, 100);
	/* lines by instructions switch at a tick: two ticks */
	assert_int_equal(r->caps.stim_switch_us, 2 * PERIOD_US);
	uint32_t n0 = rig_go(r, 4);

	/* beyond the lead and 400 µs apart: each exactly where it was asked */
	uint64_t w = first_of(r->t + 1) + LEAD_SAMPLES + 2;
	struct mead_stim_pulse fit[3] = {
		{ .sample = w, .electrode = 7, .amplitude_ua = -20.0f, .phase_us = 100 },
		{ .sample = w + 10, .electrode = 7, .amplitude_ua = -25.0f, .phase_us = 100 },
		{ .sample = w + 20, .electrode = 7, .amplitude_ua = -30.0f, .phase_us = 100 },
	};
	struct mead_stim_result res[3];
	rig_tick(r, fit, 3, res);
	for (int i = 0; i < 3; i++)
		assert_int_equal(res[i].status, MEAD_STIM_PENDING);
	rig_run(r, 5);
	struct cmodel_stim s[8];
	assert_int_equal(played(board0, n0, s, 8), 3);
	for (int i = 0; i < 3; i++) {
		expect_played(r, &s[i], &fit[i], 10, 65535, true);
		assert_int_equal(settled_for(r, &fit[i])->sample, fit[i].sample);
	}

	/* asked on top of each other: each starts one guard after the last */
	n0 = played_count(board0);
	w = first_of(r->t + 1);
	struct mead_stim_pulse tight[3] = {
		{ .sample = w, .electrode = 7, .amplitude_ua = -20.0f, .phase_us = 100 },
		{ .sample = w + 1, .electrode = 7, .amplitude_ua = -25.0f, .phase_us = 100 },
		{ .sample = w + 2, .electrode = 7, .amplitude_ua = -30.0f, .phase_us = 100 },
	};
	rig_tick(r, tight, 3, res);
	rig_run(r, 5);
	assert_int_equal(played(board0, n0, s, 8), 3);
	for (int i = 0; i < 3; i++) {
		expect_played(r, &s[i], &tight[i], 10, 65535, true);
		if (i)   /* 200 µs of pulse plus 100 µs of guard */
			assert_int_equal(s[i].start_ns - s[i - 1].start_ns, 300000u);
	}
	/* the first was asked inside what is written: it starts at its end */
	assert_int_equal(settled_for(r, &tight[0])->sample, w + COMMITTED_SAMPLES);

	/* on two electrodes: the lines change between them, never during one */
	n0 = played_count(board0);
	w = first_of(r->t + 1) + 10;
	struct mead_stim_pulse two[2] = {
		{ .sample = w, .electrode = 3, .amplitude_ua = -20.0f, .phase_us = 100 },
		{ .sample = w + 5, .electrode = 9, .amplitude_ua = -25.0f, .phase_us = 100 },
	};
	rig_tick(r, two, 2, res);
	rig_run(r, 8);
	assert_int_equal(played(board0, n0, s, 8), 2);
	expect_played(r, &s[0], &two[0], 10, 65535, true);
	expect_played(r, &s[1], &two[1], 10, 65535, true);
	assert_true(s[1].start_ns >= s[0].start_ns + 200000u + 100000u + 2000000u);
	rig_free(r);
}

/* A pulse asked for inside the written lead starts at the first free AO
 * sample and is reported there: later than asked, at the sample the board
 * played it. */
static void test_late_pulse_real_start(void **unused)
{
	struct rig *r = rig_new(board0, "/dev/comedi0", 60);
	rig_open(r);
	uint32_t n0 = rig_go(r, 3);
	uint64_t now = first_of(r->t + 1);
	struct mead_stim_pulse p = { .sample = now, .electrode = 11, .amplitude_ua = -50.0f, .phase_us = 200 };
	struct mead_stim_result res;
	rig_tick(r, &p, 1, &res);
	assert_int_equal(res.status, MEAD_STIM_PENDING);
	/* not delivered before the device has reached it */
	assert_null(settled_for(r, &p));
	rig_run(r, 4);
	struct cmodel_stim s[2];
	assert_int_equal(played(board0, n0, s, 2), 1);
	expect_played(r, &s[0], &p, 10, 65535, true);
	const struct mead_stim_result *d = settled_for(r, &p);
	assert_int_equal(d->sample, now + COMMITTED_SAMPLES);
	expect_describe(r, "\"pulses_late\":1");
	rig_free(r);
}

/* The stream runs dry when the loop stops topping it up: the output stays
 * at 0 V (every write ends on a zero), the driver reports STIM_LOST with
 * the range and the pulse it could not write, and starts a new stream. */
static void test_underrun_rearm(void **unused)
{
	struct rig *r = rig_new(board0, "/dev/comedi0", 60);
	rig_open(r);
	rig_start(r);
	struct cmodel_counts c0, c1;
	cmodel_counts(board0, &c0);
	rig_run(r, 3);
	/* far enough ahead to be planned, not yet written */
	struct mead_stim_pulse p = { .sample = first_of(r->t + 1) + 70, .electrode = 2, .amplitude_ua = -30.0f,
				     .phase_us = 100 };
	struct mead_stim_result res;
	rig_tick(r, &p, 1, &res);
	assert_int_equal(res.status, MEAD_STIM_PENDING);
	/* the loop stalls for 10 ms: the device runs on */
	uint64_t dry_at = first_of(r->t) + LEAD_SAMPLES;
	cmodel_set_clock(board0, r->base + first_of(r->t) + 250);
	cmodel_counts(board0, &c1);
	assert_int_equal(c1.ao_underruns, c0.ao_underruns + 1);
	assert_true(cmodel_ao_is_zero(board0, cmodel_ao_code(board0, 0)));
	/* the driver catches up */
	uint64_t dev = first_of(r->t) + 250;
	for (int i = 0; i < 12; i++) {
		int64_t ahead = (int64_t)dev - (int64_t)first_of(r->t + 1);
		assert_int_equal(rig_read(r, ahead > 0 ? ahead : 0), 0);
		r->t++;
	}
	const struct mead_event *e = find_event(r, MEAD_EVENT_STIM_LOST);
	assert_non_null(e);
	print_message("comedi: STIM_LOST at %llu for %u samples, %d pulse(s) dropped (ran dry at %llu)\n",
		      (unsigned long long)e->sample, e->samples, e->value, (unsigned long long)dry_at);
	assert_int_equal(e->sample, dry_at);
	assert_int_equal(e->value, 1);
	assert_true(e->samples > 0);
	const struct mead_stim_result *d = settled_for(r, &p);
	assert_non_null(d);
	assert_int_equal(d->status, MEAD_STIM_REFUSED);
	assert_int_equal(d->reason, MEAD_STIM_REASON_CANCELLED);
	/* a new stream, and pulses play again */
	cmodel_counts(board0, &c1);
	assert_int_equal(c1.ao_commands, c0.ao_commands + 1);
	uint32_t n0 = played_count(board0);
	struct mead_stim_pulse q = { .sample = first_of(r->t + 1) + 60, .electrode = 2, .amplitude_ua = -30.0f,
				     .phase_us = 100 };
	rig_tick(r, &q, 1, &res);
	rig_run(r, 5);
	struct cmodel_stim s[2];
	assert_int_equal(played(board0, n0, s, 2), 1);
	expect_played(r, &s[0], &q, 10, 65535, true);
	rig_free(r);
}

static void *stop_from_thread(void *arg)
{
	struct rig *r = arg;
	r->h.ops->stop_outputs(r->h.state);
	return NULL;
}

/* stop_outputs (here from another thread) cuts the stream at once: 0 V on
 * the output, lines low; a pulse that had started is delivered, one that
 * had not is cancelled; the stream comes back idle for later pulses. */
static void test_stop_outputs(void **unused)
{
	struct rig *r = rig_new(board0, "/dev/comedi0", 60);
	struct cmodel_counts c0, c1;
	cmodel_counts(board0, &c0);
	rig_open(r);
	cmodel_counts(board0, &c1);
	/* outputs at 0 V from open on */
	assert_true(c1.insn_ao_writes > c0.insn_ao_writes);
	assert_int_equal(c1.insn_ao_nonzero, c0.insn_ao_nonzero);
	uint32_t n0 = rig_go(r, 3);
	uint64_t w = first_of(r->t + 1);
	struct mead_stim_pulse p[2] = {
		{ .sample = w, .electrode = 4, .amplitude_ua = -50.0f, .phase_us = 1000 },
		{ .sample = w + 100, .electrode = 4, .amplitude_ua = -20.0f, .phase_us = 100 },
	};
	struct mead_stim_result res[2];
	rig_tick(r, p, 2, res);
	/* the first is playing: 10 samples into it */
	rig_read(r, 0);
	r->t++;
	cmodel_set_clock(board0, r->base + w + LEAD_SAMPLES + 10);
	assert_false(cmodel_ao_is_zero(board0, cmodel_ao_code(board0, 0)));
	pthread_t th;
	pthread_create(&th, NULL, stop_from_thread, r);
	pthread_join(th, NULL);
	assert_true(cmodel_ao_is_zero(board0, cmodel_ao_code(board0, 0)));
	assert_int_equal(cmodel_dio(board0) & 0xff, 0);
	struct cmodel_stim s[4];
	assert_int_equal(played(board0, n0, s, 4), 1);
	assert_true(s[0].cut);
	rig_run(r, 2);
	const struct mead_stim_result *d0 = settled_for(r, &p[0]), *d1 = settled_for(r, &p[1]);
	assert_non_null(d0);
	assert_non_null(d1);
	assert_int_equal(d0->status, MEAD_STIM_DELIVERED);
	assert_int_equal(d0->sample, w + COMMITTED_SAMPLES);
	assert_int_equal(d1->status, MEAD_STIM_REFUSED);
	assert_int_equal(d1->reason, MEAD_STIM_REASON_CANCELLED);
	/* no STIM_LOST: the loop asked for it */
	assert_int_equal(count_events(r, MEAD_EVENT_STIM_LOST), 0);
	n0 = played_count(board0);
	struct mead_stim_pulse q = { .sample = first_of(r->t + 1) + 60, .electrode = 4, .amplitude_ua = -30.0f,
				     .phase_us = 100 };
	rig_tick(r, &q, 1, res);
	rig_run(r, 5);
	assert_int_equal(played(board0, n0, s, 4), 1);
	expect_played(r, &s[0], &q, 10, 65535, true);
	/* and stop leaves the outputs at 0 V */
	r->h.ops->stop(r->h.state);
	assert_true(cmodel_ao_is_zero(board0, cmodel_ao_code(board0, 0)));
	rig_free(r);
}

/* One stimulator per analog output: caps say which electrode is on which,
 * pulses on two of them play at the same time, an electrode on none is
 * refused. */
static void test_several_stimulators(void **unused)
{
	struct rig *r = rig_new(board0, "/dev/comedi0", 60);
	harness_set(&r->h, "ao_electrodes", "12:0,13:1");
	no_routing(r);
	rig_open(r);
	assert_int_equal(r->caps.stimulators, 2);
	assert_non_null(r->caps.stimulator_of_electrode);
	/* electrode index of label "12" is 0, "13" is 1 in the 60 layout */
	assert_int_equal(r->caps.stimulator_of_electrode[0], 0);
	assert_int_equal(r->caps.stimulator_of_electrode[1], 1);
	assert_int_equal(r->caps.stimulator_of_electrode[2], UINT16_MAX);
	uint32_t n0 = rig_go(r, 3);
	uint64_t w = first_of(r->t + 1) + 60;
	struct mead_stim_pulse p[3] = {
		{ .sample = w, .electrode = 0, .amplitude_ua = -20.0f, .phase_us = 200 },
		{ .sample = w, .electrode = 1, .amplitude_ua = 35.0f, .phase_us = 100 },
		{ .sample = w, .electrode = 2, .amplitude_ua = 35.0f, .phase_us = 100 },
	};
	struct mead_stim_result res[3];
	rig_tick(r, p, 3, res);
	assert_int_equal(res[0].status, MEAD_STIM_PENDING);
	assert_int_equal(res[1].status, MEAD_STIM_PENDING);
	assert_int_equal(res[2].status, MEAD_STIM_REFUSED);
	assert_int_equal(res[2].reason, MEAD_STIM_REASON_RANGE);
	rig_run(r, 4);
	struct cmodel_stim s[4];
	assert_int_equal(played(board0, n0, s, 4), 2);
	for (int i = 0; i < 2; i++) {
		const struct cmodel_stim *x = s[0].channel == (uint16_t)i ? &s[0] : &s[1];
		assert_int_equal(x->channel, i);
		expect_played(r, x, &p[i], 10, 65535, false);
		assert_int_equal(settled_for(r, &p[i])->sample, w);
	}
	rig_free(r);
}

/* The ticks whose samples were not ready are LATE (with their range); the
 * samples arrive in later frames, raw included, in order, none skipped. */
static void test_late_ticks_catch_up(void **unused)
{
	struct rig *r = recording_rig(board0, "/dev/comedi0", 60, NULL, NULL);
	uint64_t dev = 0;
	for (uint64_t t = 0; t < 120; t++) {
		uint64_t first = first_of(t), next = first_of(t + 1);
		/* ticks 50..59: nothing new (the data of those ticks arrives at tick 60) */
		if (t < 50 || t >= 60)
			dev = next;
		assert_int_equal(rig_read(r, (int64_t)dev - (int64_t)next), 0);
		assert_int_equal(r->acquired, dev);
		(void)first;
		r->t++;
	}
	assert_int_equal(r->late_frames, 10);
	assert_int_equal(count_events(r, MEAD_EVENT_LATE), 10);
	for (uint32_t i = 0; i < r->n_ev; i++)
		if (r->ev[i].type == MEAD_EVENT_LATE)
			assert_int_equal(r->ev[i].samples, 25);
	assert_int_equal(find_event(r, MEAD_EVENT_LATE)->sample, first_of(50));
	assert_true(r->raw_in_order);
	assert_int_equal(r->raw_total, 120 * 25);
	expect_describe(r, "\"late_ticks\":10");
	rig_free(r);
}

/* An overflow ends the command: the buffered samples are read, then the
 * lost ones are one OVERFLOW range and the sample index goes on where the
 * device is (continue); stop ends with -EPIPE and the event. */
static void test_overflow_range(void **unused)
{
	struct rig *r = recording_rig(board0, "/dev/comedi0", 60, NULL, NULL);
	rig_run(r, 20);
	/* the buffer fills 10 samples into tick 20 */
	uint64_t stop_at = first_of(20) + 10;
	cmodel_set_clock(board0, r->base + stop_at);
	cmodel_force_overflow(board0);
	rig_run(r, 30);
	const struct mead_event *e = find_event(r, MEAD_EVENT_OVERFLOW);
	assert_non_null(e);
	print_message("comedi: OVERFLOW from %llu for %u samples\n", (unsigned long long)e->sample, e->samples);
	assert_int_equal(e->sample, stop_at);
	/* re-armed when tick 20 was read, the device then at its end */
	assert_int_equal(e->samples, first_of(21) - stop_at);
	assert_int_equal(count_events(r, MEAD_EVENT_OVERFLOW), 1);
	assert_int_equal(r->late_frames, 0);
	/* the lost samples are missing from raw, nothing stands in for them */
	assert_int_equal(r->raw_total, first_of(50) - e->samples);
	/* the sample index follows the device: clock and index agree */
	assert_int_equal(cmodel_ai_start(board0), r->base + first_of(21));
	assert_int_equal(r->acquired, first_of(50));
	expect_describe(r, "\"overflows\":1");
	expect_describe(r, "\"rearms\":1");
	rig_free(r);

	r = recording_rig(board0, "/dev/comedi0", 60, "overflow", "stop");
	rig_run(r, 10);
	cmodel_set_clock(board0, r->base + first_of(10) + 3);
	cmodel_force_overflow(board0);
	int e2 = rig_read(r, 0);
	assert_int_equal(e2, -EPIPE);
	e = find_event(r, MEAD_EVENT_OVERFLOW);
	assert_non_null(e);
	assert_int_equal(e->sample, first_of(10) + 3);
	r->t++;
	assert_int_equal(rig_read(r, 0), -EPIPE);
	rig_free(r);
}

/* With the wall clock, the index after the re-arm is where the device is:
 * the lost range ends where the new command starts (to within the time a
 * re-arm takes), and spikes planted later are found at their own samples
 * (shifted by that constant; those inside a reported loss, if a busy
 * machine overflows the buffer again, are missing, nothing else). */
static void test_overflow_realtime(void **unused)
{
	struct rig *r = rig_new(board_ovf, "/dev/comedi9", 8);
	harness_set(&r->h, "stimulate", "false");
	harness_set(&r->h, "threshold_k", "6");
	r->h.cfg.virtual_clock = false;
	cmodel_set_realtime(board_ovf, true);
	rig_open(r);
	rig_start(r);
	struct mead_spike spk[4096];
	uint64_t *found = calloc(100000, sizeof(uint64_t));
	size_t n_found = 0;
	const uint64_t scan_ns = 1000000000ull / RATE;
	uint64_t t0 = mead_now_ns() - (cmodel_clock(board_ovf) - r->base) * scan_ns;
	uint64_t lost[16][2];
	uint32_t n_lost = 0;
	uint64_t restarted = 0, from = 0, to = RATE * 30;
	uint64_t read_end = 0, stall_read = 0, stopped = 0;
	int16_t *raw = calloc((size_t)64 * 25 * 8, sizeof(int16_t));
	for (uint64_t t = 0; first_of(t) < to + 1000; t++) {
		uint64_t first = first_of(t), next = first_of(t + 1);
		uint64_t due = t0 + next * scan_ns + 200000;
		/* the reader stalls for 0.6 s; the 128 KiB buffer holds 0.33 s */
		if (t == 300) {
			due += 600000000ull;
			stall_read = read_end;
		}
		uint64_t now = mead_now_ns();
		if (due > now) {
			struct timespec ts = { (time_t)((due - now) / 1000000000ull), (long)((due - now) % 1000000000ull) };
			nanosleep(&ts, NULL);
		}
		struct mead_event ev[64];
		struct mead_frame f = { .first_sample = first, .n_samples = (uint32_t)(next - first), .spikes = spk,
					.spike_capacity = 4096, .events = ev, .event_capacity = 64,
					.raw = raw, .raw_channels = 8, .raw_capacity = 64 * 25 };
		int e = r->h.ops->read_frame(r->h.state, t, &f);
		assert_true(e == 0 || e == -EIO);
		/* what the driver has taken from the kernel so far (it takes all
		 * there is: the frame's device clock) */
		read_end = f.acquired;
		for (uint32_t i = 0; i < f.n_events; i++) {
			if (ev[i].type != MEAD_EVENT_OVERFLOW || n_lost >= 16)
				continue;
			lost[n_lost][0] = ev[i].sample;
			lost[n_lost][1] = ev[i].sample + ev[i].samples;
			if (n_lost++ == 0) {
				restarted = cmodel_ai_start(board_ovf) - r->base;
				stopped = cmodel_ai_overflow_at(board_ovf) - r->base;
				/* spikes from a quarter second after the new command on */
				from = r->base + restarted + RATE / 4;
				to = from + 3 * RATE / 4;
				siggen_plant_poisson(gen_ovf, 20.0, from, to, 200, 80.0f);
				to -= r->base;
			}
			/* the samples in between are lost: go on from the device's
			 * position rather than read nothing for each of their ticks */
			while (first_of(t + 1) < lost[n_lost - 1][1])
				t++;
		}
		for (uint32_t i = 0; i < f.n_spikes; i++)
			found[n_found++] = ((uint64_t)spk[i].electrode << 48) | (spk[i].sample + r->base);
	}
	assert_true(n_lost >= 1);
	int64_t off = (int64_t)lost[0][1] - (int64_t)restarted;
	print_message("comedi: real-time overflow at %llu, %llu samples lost; the new command started at %llu "
		      "(index %+lld from it; %u overflows)\n",
		      (unsigned long long)lost[0][0], (unsigned long long)(lost[0][1] - lost[0][0]),
		      (unsigned long long)restarted, (long long)off, n_lost);
	/* the range starts where the board stopped: with the stall, 8192 scans
	 * after the last read before it (a machine busy enough to overflow
	 * earlier has the board stop earlier) */
	assert_int_equal(lost[0][0], stopped);
	if (stopped != stall_read + 128 * 1024 / 16)
		print_message("comedi: the buffer overflowed before the stall (at %llu, %llu read)\n",
			      (unsigned long long)stopped, (unsigned long long)stall_read);
	assert_true(lost[0][1] - lost[0][0] > RATE * 0.2);
	/* the index goes on where the device is: the estimate is the host's
	 * clock since the last look at the running device, so it is off by the
	 * scheduling delays around the re-arm (a millisecond or two on a busy
	 * two-core machine) */
	assert_true(llabs(off) <= 125);
	/* spikes outside the reported losses are found at their samples */
	uint32_t n_planted;
	const struct siggen_spike *planted = siggen_spikes(gen_ovf, &n_planted);
	struct siggen_spike *keep = calloc(n_planted + 1, sizeof(*keep));
	uint32_t n_keep = 0;
	for (uint32_t i = 0; i < n_planted; i++) {
		bool in_loss = false;
		uint64_t at = planted[i].sample - r->base + (uint64_t)off;
		for (uint32_t k = 1; k < n_lost; k++)
			in_loss |= at + 20 >= lost[k][0] && at < lost[k][1] + 20;
		if (!in_loss) {
			keep[n_keep] = planted[i];
			keep[n_keep++].sample += (uint64_t)off;
		}
	}
	uint32_t expected;
	uint32_t matched = match_spikes(keep, n_keep, from + (uint64_t)off, r->base + to + (uint64_t)off, found, n_found,
					NULL, 8, &expected);
	print_message("comedi: after the overflow %u planted outside losses, %u found at their samples\n", expected,
		      matched);
	/* a machine too busy to keep up loses the window to later overflows:
	 * what is left of it still has to match */
	if (expected < 20)
		print_message("comedi: only %u spikes outside later losses: this machine kept falling behind\n", expected);
	assert_true(matched >= expected * 9 / 10);
	free(keep);
	free(found);
	free(raw);
	cmodel_set_realtime(board_ovf, false);
	rig_free(r);
}

/* The board goes away: -ENODEV with DEVICE_GONE, pulses not known to have
 * started come back UNKNOWN, later ones are refused. */
static void test_board_removed(void **unused)
{
	struct rig *r = rig_new(board_rm, "/dev/comedi8", 60);
	rig_open(r);
	rig_start(r);
	rig_run(r, 3);
	struct mead_stim_pulse p = { .sample = first_of(r->t + 1) + 70, .electrode = 2, .amplitude_ua = -30.0f,
				     .phase_us = 100 };
	struct mead_stim_result res;
	rig_tick(r, &p, 1, &res);
	assert_int_equal(res.status, MEAD_STIM_PENDING);
	cmodel_remove(board_rm);
	assert_int_equal(rig_read(r, 0), -ENODEV);
	const struct mead_stim_result *d = settled_for(r, &p);
	assert_non_null(d);
	assert_int_equal(d->status, MEAD_STIM_REFUSED);
	assert_int_equal(d->reason, MEAD_STIM_REASON_UNKNOWN);
	r->t++;
	assert_int_equal(rig_read(r, 0), -ENODEV);
	assert_int_equal(rig_write(r, &p, 1, &res), -ENODEV);
	assert_int_equal(res.reason, MEAD_STIM_REASON_DEVICE_GONE);
	rig_free(r);
}

/* An 18-bit board: samples and output codes are lsampl_t; spikes come out
 * at their samples and sizes, pulses at their amplitudes. */
static void test_18bit_board(void **unused)
{
	struct rig *r = rig_new(board18, "/dev/comedi4", 60);
	harness_set(&r->h, "threshold_k", "6");
	r->h.cfg.want_raw = true;
	rig_open(r);
	/* raw spans the input range in 16 bits: 4 counts of 18 bits each */
	assert_float_equal(r->caps.uv_per_count, 2.0 / 262143 * 1e6 / GAIN * 262144.0 / 65536.0, 1e-4);
	expect_describe(r, "\"sample_bits\":32");
	rig_start(r);
	struct mead_spike spk[4096];
	int16_t raw[25 * 60];
	uint64_t *found = calloc(100000, sizeof(uint64_t));
	size_t n_found = 0;
	double amp_sum = 0;
	uint32_t amp_n = 0;
	float raw_min = 0;
	siggen_plant_poisson(gen18, 10.0, r->base + RATE / 2, r->base + 2 * RATE - 100, 200, 70.0f);
	uint32_t n_planted;
	const struct siggen_spike *planted = siggen_spikes(gen18, &n_planted);
	uint32_t n0 = played_count(board18);
	struct mead_stim_pulse p = { .sample = 0, .electrode = 5, .amplitude_ua = -33.3f, .phase_us = 100 };
	for (uint64_t t = 0; t < 2000; t++) {
		uint64_t first = first_of(t), next = first_of(t + 1);
		cmodel_set_clock(board18, r->base + next);
		struct mead_frame f = { .first_sample = first, .n_samples = (uint32_t)(next - first), .spikes = spk,
					.spike_capacity = 4096, .raw = raw, .raw_channels = 60, .raw_capacity = 25 };
		assert_int_equal(r->h.ops->read_frame(r->h.state, t, &f), 0);
		assert_int_equal(f.raw_samples, 25);
		for (uint32_t i = 0; i < f.raw_samples * 60; i++)
			if (raw[i] * r->caps.uv_per_count < raw_min)
				raw_min = raw[i] * r->caps.uv_per_count;
		for (uint32_t i = 0; i < f.n_spikes; i++) {
			found[n_found++] = ((uint64_t)spk[i].electrode << 48) | (spk[i].sample + r->base);
			amp_sum += fabsf(spk[i].amplitude_uv);
			amp_n++;
		}
		/* every tick, as the loop calls it: the stream is fed there */
		struct mead_stim_result res;
		p.sample = next + 60;
		assert_int_equal(r->h.ops->write_stim(r->h.state, t, &p, t == 1990 ? 1 : 0, &res), 0);
	}
	uint32_t expected;
	uint32_t matched = match_spikes(planted, n_planted, r->base, r->base + 2 * RATE, found, n_found, NULL, 60, &expected);
	print_message("comedi: 18-bit: %u planted, %u matched, mean |amplitude| %.1f uV, raw down to %.1f uV\n", expected,
		      matched, amp_n ? amp_sum / amp_n : 0, raw_min);
	assert_true(expected > 500);
	assert_int_equal(matched, expected);
	assert_true(amp_sum / amp_n > 60 && amp_sum / amp_n < 90);
	assert_true(raw_min < -60);
	struct cmodel_stim s[2];
	assert_int_equal(played(board18, n0, s, 2), 1);
	assert_float_equal(s[0].phase1_v * 10, -33.3, one_code_ua(10, 262143));
	assert_float_equal(s[0].phase2_v * 10, 33.3, one_code_ua(10, 262143));
	assert_true(cmodel_ao_is_zero(board18, cmodel_ao_code(board18, 0)));
	free(found);
	rig_free(r);
}

/* A DMA board hands samples to the buffer in 64-scan blocks; polling it
 * each tick gets every tick's samples on time. */
static void test_dma_board_polled(void **unused)
{
	struct rig *r = recording_rig(board_dma, "/dev/comedi5", 60, NULL, NULL);
	struct cmodel_counts c0, c1;
	cmodel_counts(board_dma, &c0);
	rig_run(r, 200);
	cmodel_counts(board_dma, &c1);
	print_message("comedi: DMA board: %u late ticks of 200, %u polls\n", r->late_frames, c1.polls - c0.polls);
	assert_int_equal(r->late_frames, 0);
	assert_int_equal(c1.polls - c0.polls, 200);
	assert_int_equal(r->raw_total, 200 * 25);
	expect_describe(r, "\"poll\":true");
	rig_free(r);

	/* a board without a poll handler answers EINVAL: asked once, then not */
	r = recording_rig(board_ct, "/dev/comedi3", 8, "amp_gain", "1");
	rig_run(r, 20);
	assert_int_equal(r->late_frames, 0);
	expect_describe(r, "\"poll\":false");
	rig_free(r);
}

/* A DIO that runs output commands: the lines are a stream clocked by the
 * AO updates, so they switch within the guard time and pulses on three
 * electrodes fit one tick, each with its own lines. */
static void test_correlated_lines(void **unused)
{
	struct rig *r = rig_new(board_cdo, "/dev/comedi6", 60);
	rig_open(r);
	expect_describe(r, "\"route\":\"stream\"");
	assert_int_equal(r->caps.stim_switch_us, r->caps.stim_guard_us);
	uint32_t n0 = rig_go(r, 3);
	uint64_t w = first_of(r->t + 1) + LEAD_SAMPLES + 4;
	struct mead_stim_pulse p[3] = {
		{ .sample = w, .electrode = 3, .amplitude_ua = -20.0f, .phase_us = 100 },
		{ .sample = w + 10, .electrode = 17, .amplitude_ua = -25.0f, .phase_us = 100 },
		{ .sample = w + 20, .electrode = 42, .amplitude_ua = -30.0f, .phase_us = 100 },
	};
	struct mead_stim_result res[3];
	rig_tick(r, p, 3, res);
	rig_run(r, 4);
	struct cmodel_stim s[4];
	assert_int_equal(played(board_cdo, n0, s, 4), 3);
	for (int i = 0; i < 3; i++) {
		expect_played(r, &s[i], &p[i], 10, 65535, true);
		assert_int_equal(settled_for(r, &p[i])->sample, p[i].sample);
	}
	/* lines low between pulses and after them */
	assert_int_equal(cmodel_dio(board_cdo) & 0xff, 0);
	rig_free(r);
}

/* kv: option, value, ..., NULL */
static void expect_open_error_kv(const char *dev, const char *const *kv, int want, const char *needle)
{
	struct harness h = { 0 };
	harness_layout60(&h);
	assert_non_null(harness_load(&h, "comedi"));
	harness_defaults(&h, PERIOD_US);
	harness_set(&h, "device", dev);
	for (size_t i = 0; kv && kv[i]; i += 2)
		harness_set(&h, kv[i], kv[i + 1]);
	if (strcmp(dev, "/dev/comedi3") == 0) {
		h.layout.count = 8;
		harness_set(&h, "amp_gain", "1");
	}
	int r = harness_open(&h);
	print_message("comedi: %s=%s -> %d: %s\n", kv ? kv[0] : "device", kv ? kv[1] : dev, r, h.err);
	assert_int_equal(r, want);
	assert_non_null(strstr(h.err, needle));
	assert_null(h.state);
	harness_unload(&h);
}

static void expect_open_error(const char *dev, const char *key, const char *value, int want, const char *needle)
{
	const char *const kv[] = { key, value, NULL };
	expect_open_error_kv(dev, key ? kv : NULL, want, needle);
}

static void test_bad_configuration(void **unused)
{
	struct cmodel_counts c0, c1;
	cmodel_counts(board0, &c0);
	expect_open_error("/dev/comedi7", NULL, NULL, -ENOENT, "cannot open /dev/comedi7");
	expect_open_error("/dev/comedi1", NULL, NULL, -ENODEV, "no analog-input subdevice that supports streaming");
	/* what the board really cannot do is still refused, with its nearest rate */
	expect_open_error("/dev/comedi0", "sample_rate_hz", "50000", -EINVAL, "cannot scan 60 channels at 50000 Hz");
	expect_open_error("/dev/comedi0", "ai_range_v", "20", -ERANGE, "no analog-input range covers");
	expect_open_error("/dev/comedi0", "aref", "common", -EOPNOTSUPP, "do not support aref common");
	expect_open_error("/dev/comedi0", "channel_map", "12,13,99", -EINVAL, "('99') is no electrode");
	expect_open_error("/dev/comedi0", "channel_map", "12,13,12", -EINVAL, "twice");
	expect_open_error("/dev/comedi0", "ai_subdevice", "2", -ENODEV, "not an analog input");
	expect_open_error("/dev/comedi2", NULL, NULL, -ENODEV, "no analog output");
	expect_open_error("/dev/comedi0", "route_lines", "0,1,2", -EINVAL, "cannot address 60 electrodes");
	expect_open_error("/dev/comedi0", "route_lines", "0,x", -EINVAL, "route_lines '0,x'");
	expect_open_error("/dev/comedi0", "polarity", "up", -EINVAL, "polarity");
	expect_open_error("/dev/comedi0", "ao_lead_us", "1000", -EINVAL, "must exceed the tick period");
	expect_open_error("/dev/comedi0", "ao_electrodes", "12:0,99:1", -EINVAL, "'99:1' names no electrode");
	expect_open_error("/dev/comedi0", "ao_electrodes", "12-0", -EINVAL, "not electrode:channel");
	expect_open_error("/dev/comedi0", "ao_electrodes", "12:0,13:7", -EINVAL, "has 2 channels");
	expect_open_error("/dev/comedi0", "ao_electrodes", "12:0,13:1", -EINVAL, "set route_lines to empty");
	expect_open_error("/dev/comedi0", "route_stream", "maybe", -EINVAL, "route_stream: 'maybe'");
	expect_open_error("/dev/comedi0", "route_stream", "on", -EOPNOTSUPP, "cannot run output commands");
	/* routing lines on a board without DIO: the message says how to do without */
	expect_open_error("/dev/comedi3", NULL, NULL, -ENODEV, "no digital I/O subdevice for the routing lines");
	/* no failed open moved an output off 0 V */
	cmodel_counts(board0, &c1);
	assert_int_equal(c1.insn_ao_nonzero, c0.insn_ao_nonzero);
	/* recording only works without an analog output */
	struct harness h = { 0 };
	harness_layout60(&h);
	assert_non_null(harness_load(&h, "comedi"));
	harness_defaults(&h, PERIOD_US);
	harness_set(&h, "device", "/dev/comedi2");
	harness_set(&h, "stimulate", "false");
	assert_int_equal(harness_open(&h), 0);
	struct mead_driver_caps caps;
	h.ops->get_caps(h.state, &caps);
	assert_false(caps.flags & MEAD_CAP_STIMULATE);
	assert_int_equal(caps.max_pulses_per_tick, 0);
	assert_int_equal(caps.stimulators, 0);
	harness_close(&h);
	harness_unload(&h);
}

/* ---------------------------------------------------------------- digital inputs */

#define DI_SUB 3                  /* board_di: AI, AO, DIO (32 lines), DI (16 lines) */
#define DIO_SUB 2

/* The digital events the frames carried, in order. */
static uint32_t digital_events(const struct rig *r, struct mead_event *out, uint32_t cap)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < r->n_ev && n < cap; i++)
		if (r->ev[i].type == MEAD_EVENT_DIGITAL)
			out[n++] = r->ev[i];
	return n;
}

/* The first tick end at or after sample s: where a read once a tick, with
 * the device at the end of its tick, sees a change at s. */
static uint64_t seen_at(uint64_t s)
{
	uint64_t t = 0;
	while (first_of(t + 1) < s)
		t++;
	return first_of(t + 1);
}

struct di_change {
	uint64_t sample;
	uint16_t line;
	int32_t level;
};

/* Lines 0, 3 and 15 of the DI subdevice (the default: the first DI),
 * while the stimulator routes on the DIO: every level at the run's start,
 * then each change at the end of the tick it happened in (the device's
 * position at the read), never more than a tick late; nothing for a line
 * not listed, nothing while no line changes; a pulse shorter than a tick
 * between two reads is not seen; one read a tick. */
static void test_digital_inputs(void **unused)
{
	struct rig *r = rig_new(board_di, "/dev/comedi10", 60);
	harness_set(&r->h, "di_lines", "15,0,3");
	rig_open(r);
	expect_describe(r, "\"di_subdevice\":3,\"di_lines\":3");
	cmodel_clear_inputs(board_di);
	/* before the run: line 3 and the unlisted line 5 high */
	cmodel_set_input(board_di, true, 0, 0xffff, 1u << 3 | 1u << 5);
	struct cmodel_counts c0, c1;
	cmodel_counts(board_di, &c0);
	rig_start(r);
	const uint64_t b = r->base;
	static const struct di_change changes[] = {
		{ 110, 0, 1 }, { 125, 15, 1 }, { 126, 3, 0 }, { 400, 0, 0 }, { 1013, 3, 1 }, { 1013, 15, 0 },
	};
	for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++)
		cmodel_set_input(board_di, true, b + changes[i].sample, 1u << changes[i].line,
				 (uint32_t)changes[i].level << changes[i].line);
	/* not listed: line 5 falls; within one tick line 0 goes up and down again */
	cmodel_set_input(board_di, true, b + 700, 1u << 5, 0);
	cmodel_set_input(board_di, true, b + 1503, 1u, 1u);
	cmodel_set_input(board_di, true, b + 1510, 1u, 0);
	const uint32_t ticks = 80;
	rig_run(r, ticks);
	cmodel_counts(board_di, &c1);
	struct mead_event ev[64];
	uint32_t n = digital_events(r, ev, 64);
	for (uint32_t i = 0; i < n; i++)
		print_message("comedi: digital line %u -> %d at %llu\n", ev[i].electrode, ev[i].value,
			      (unsigned long long)ev[i].sample);
	assert_int_equal(n, 3 + sizeof(changes) / sizeof(changes[0]));
	/* the start: one event per line, in line order, at the run's first sample */
	static const uint16_t lines[] = { 0, 3, 15 };
	static const int32_t start_levels[] = { 0, 1, 0 };
	for (uint32_t i = 0; i < 3; i++) {
		assert_int_equal(ev[i].sample, 0);
		assert_int_equal(ev[i].electrode, lines[i]);
		assert_int_equal(ev[i].value, start_levels[i]);
		assert_int_equal(ev[i].samples, 0);
	}
	for (uint32_t i = 3; i < n; i++) {
		/* same-tick changes come in line order */
		const struct di_change *c = NULL;
		for (size_t k = 0; k < sizeof(changes) / sizeof(changes[0]); k++)
			if (changes[k].line == ev[i].electrode && seen_at(changes[k].sample) == ev[i].sample)
				c = &changes[k];
		assert_non_null(c);
		assert_int_equal(ev[i].value, c->level);
		assert_true(ev[i].sample >= c->sample && ev[i].sample < c->sample + RATE / 1000 * PERIOD_US / 1000);
		if (i > 3)
			assert_true(ev[i].sample >= ev[i - 1].sample);
	}
	/* 110 and 125 are both seen by tick 4's read, with the device at 125 */
	assert_int_equal(ev[3].sample, 125);
	assert_int_equal(ev[4].sample, 125);
	assert_int_equal(ev[5].sample, 150);
	/* one read at the start and one each tick */
	assert_int_equal(c1.di_reads - c0.di_reads, ticks + 1);
	expect_describe(r, "\"di_changes\":6");
	rig_free(r);
}

/* Lines of the DIO the stimulator routes on: configured as inputs, the
 * routing lines left outputs; a pulse still plays on its lines, and a
 * change on the input line comes at the end of its tick. */
static void test_digital_inputs_on_routing_dio(void **unused)
{
	struct rig *r = rig_new(board_di, "/dev/comedi10", 60);
	harness_set(&r->h, "di_subdevice", "2");
	harness_set(&r->h, "di_lines", "8,20");
	rig_open(r);
	uint32_t out = cmodel_dio_outputs(board_di);
	print_message("comedi: DIO outputs %#x\n", out);
	assert_int_equal(out & 0xff, 0xff);
	assert_int_equal(out & (1u << 8 | 1u << 20), 0);
	cmodel_clear_inputs(board_di);
	uint32_t n0 = rig_go(r, 3);
	const uint64_t b = r->base;
	uint64_t w = first_of(r->t + 1) + LEAD_SAMPLES + 4;
	/* the input rises while the pulse plays */
	cmodel_set_input(board_di, false, b + w + 2, 1u << 20, 1u << 20);
	struct mead_stim_pulse p = { .sample = w, .electrode = 5, .amplitude_ua = -20.0f, .phase_us = 100 };
	struct mead_stim_result res;
	rig_tick(r, &p, 1, &res);
	rig_run(r, 6);
	struct cmodel_stim s[2];
	assert_int_equal(played(board_di, n0, s, 2), 1);
	expect_played(r, &s[0], &p, 10, 65535, true);
	struct mead_event ev[8];
	uint32_t n = digital_events(r, ev, 8);
	assert_int_equal(n, 3);
	assert_int_equal(ev[0].electrode, 8);
	assert_int_equal(ev[1].electrode, 20);
	assert_int_equal(ev[0].value, 0);
	assert_int_equal(ev[1].value, 0);
	assert_int_equal(ev[2].electrode, 20);
	assert_int_equal(ev[2].value, 1);
	assert_int_equal(ev[2].sample, seen_at(w + 2));
	rig_free(r);
}

/* With the wall clock: each change is reported at the sample the device
 * was at while the frame that saw it was read (what the model's clock said
 * just before and just after that read_frame, a sample of rounding either
 * side), by the first read after it.  Each line rises once, so a machine
 * busy enough to leave several ticks between two reads makes changes late,
 * never invisible. */
static void test_digital_inputs_wall_clock(void **unused)
{
	struct rig *r = rig_new(board_di, "/dev/comedi10", 8);
	harness_set(&r->h, "stimulate", "false");
	harness_set(&r->h, "di_lines", "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15");
	r->h.cfg.virtual_clock = false;
	cmodel_clear_inputs(board_di);
	cmodel_set_realtime(board_di, true);
	rig_open(r);
	rig_start(r);
	const uint64_t b = r->base, scan_ns = 1000000000ull / RATE;
	uint64_t t0 = mead_now_ns() - (cmodel_clock(board_di) - b) * scan_ns;
	enum { TICKS = 200, N_CH = 16 };
	struct di_change ch[N_CH];
	for (uint32_t i = 0; i < N_CH; i++) {
		/* line i rises 1.8 ms after line i-1, plus a part of a sample */
		ch[i] = (struct di_change){ 2000 + i * 45 + i % 7, (uint16_t)i, 1 };
		cmodel_set_input(board_di, true, b + ch[i].sample, 1u << ch[i].line, (uint32_t)ch[i].level << ch[i].line);
	}
	static uint64_t before[TICKS], after[TICKS];
	struct mead_event seen[64];
	uint32_t seen_tick[64], n_seen = 0;
	for (uint64_t t = 0; t < TICKS; t++) {
		uint64_t first = first_of(t), next = first_of(t + 1);
		uint64_t due = t0 + next * scan_ns + 100000;
		uint64_t now = mead_now_ns();
		if (due > now) {
			struct timespec ts = { (time_t)((due - now) / 1000000000ull), (long)((due - now) % 1000000000ull) };
			nanosleep(&ts, NULL);
		}
		struct mead_event ev[64];
		struct mead_spike spk[256];
		struct mead_frame f = { .first_sample = first, .n_samples = (uint32_t)(next - first), .spikes = spk,
					.spike_capacity = 256, .events = ev, .event_capacity = 64 };
		before[t] = cmodel_clock(board_di) - b;
		assert_int_equal(r->h.ops->read_frame(r->h.state, t, &f), 0);
		after[t] = cmodel_clock(board_di) - b;
		for (uint32_t i = 0; i < f.n_events; i++)
			if (ev[i].type == MEAD_EVENT_DIGITAL && n_seen < 64) {
				seen_tick[n_seen] = (uint32_t)t;
				seen[n_seen++] = ev[i];
			}
	}
	cmodel_set_realtime(board_di, false);
	assert_int_equal(n_seen, 2 * N_CH);
	/* the start's levels, all low: read in start(), before tick 0 */
	assert_true(seen[0].sample <= before[0] + 1);
	for (uint32_t i = 0; i < N_CH; i++) {
		assert_int_equal(seen[i].sample, seen[0].sample);
		assert_int_equal(seen[i].electrode, i);
		assert_int_equal(seen[i].value, 0);
		assert_int_equal(seen_tick[i], 0);
	}
	int64_t worst_late = 0;
	for (uint32_t i = 0; i < N_CH; i++) {
		const struct mead_event *e = &seen[N_CH + i];
		uint32_t k = seen_tick[N_CH + i];
		assert_int_equal(e->electrode, ch[i].line);
		assert_int_equal(e->value, ch[i].level);
		/* the device was at the event's sample during read k */
		assert_true(e->sample + 1 >= before[k] && e->sample <= after[k] + 1);
		/* the change came before read k ended and after read k-1 began */
		assert_true(ch[i].sample <= after[k]);
		assert_true(k == 0 || ch[i].sample >= before[k - 1]);
		int64_t late = (int64_t)e->sample - (int64_t)ch[i].sample;
		if (late > worst_late)
			worst_late = late;
	}
	print_message("comedi: wall clock: %u changes each at its read's sample, at most %lld samples after it\n",
		      N_CH, (long long)worst_late);
	rig_free(r);
}

/* Option errors name what is wrong; without di_lines nothing is read. */
static void test_digital_input_options(void **unused)
{
	static const char *const dio_of_ai[] = { "di_lines", "0", "di_subdevice", "0", NULL };
	expect_open_error_kv("/dev/comedi10", dio_of_ai, -ENODEV,
			     "di_subdevice 0 is not a digital input or digital I/O subdevice (it is: analog input)");
	static const char *const no_sub[] = { "di_lines", "0", "di_subdevice", "9", NULL };
	expect_open_error_kv("/dev/comedi10", no_sub, -ENODEV, "di_subdevice 9 does not exist (the board has 4 subdevices)");
	static const char *const beyond[] = { "di_lines", "2,16", NULL };
	expect_open_error_kv("/dev/comedi10", beyond, -EINVAL, "line 16 is beyond the 16 lines of digital input subdevice 3");
	static const char *const twice[] = { "di_lines", "2,2", NULL };
	expect_open_error_kv("/dev/comedi10", twice, -EINVAL, "di_lines names line 2 twice");
	static const char *const junk[] = { "di_lines", "2,x", NULL };
	expect_open_error_kv("/dev/comedi10", junk, -EINVAL, "di_lines '2,x' is not a comma-separated list");
	static const char *const enable[] = { "di_lines", "9,6", "di_subdevice", "2", NULL };
	expect_open_error_kv("/dev/comedi10", enable, -EINVAL,
			     "digital input line 6 of subdevice 2 is also the stimulator's enable line (route_enable_line)");
	static const char *const blank[] = { "di_lines", "7", "di_subdevice", "2", NULL };
	expect_open_error_kv("/dev/comedi10", blank, -EINVAL, "is also the stimulator's blanking line (blank_line)");
	static const char *const route[] = { "di_lines", "2", "di_subdevice", "2", NULL };
	expect_open_error_kv("/dev/comedi10", route, -EINVAL, "is also the stimulator's routing line (route_lines)");
	/* the default subdevice of a board without DI is its DIO, shared with the routing */
	static const char *const dflt[] = { "di_lines", "0", NULL };
	expect_open_error_kv("/dev/comedi0", dflt, -EINVAL, "line 0 of subdevice 2 is also the stimulator's routing line");
	static const char *const stream[] = { "di_lines", "20", NULL };
	expect_open_error_kv("/dev/comedi6", stream, -EINVAL, "the routing stream");
	static const char *const none[] = { "di_lines", "0", "stimulate", "false", NULL };
	expect_open_error_kv("/dev/comedi3", none, -ENODEV, "no digital input or digital I/O subdevice");
	/* the same lines with the stimulator off are fine: nothing drives them */
	struct rig *r = rig_new(board0, "/dev/comedi0", 60);
	harness_set(&r->h, "stimulate", "false");
	harness_set(&r->h, "di_lines", "0,6");
	rig_open(r);
	expect_describe(r, "\"di_subdevice\":2,\"di_lines\":2");
	rig_free(r);
	/* off by default: no read, no event */
	r = rig_new(board_di, "/dev/comedi10", 60);
	rig_open(r);
	expect_describe(r, "\"di_subdevice\":-1,\"di_lines\":0");
	struct cmodel_counts c0, c1;
	cmodel_counts(board_di, &c0);
	cmodel_set_input(board_di, true, 0, 0xffff, 0xffff);
	rig_go(r, 10);
	cmodel_counts(board_di, &c1);
	assert_int_equal(c1.di_reads, c0.di_reads);
	assert_int_equal(count_events(r, MEAD_EVENT_DIGITAL), 0);
	cmodel_clear_inputs(board_di);
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
	gen0 = siggen_new(64, RATE, 6.0f, 42);
	struct siggen *gen1 = siggen_new(64, RATE, 6.0f, 43), *gen2 = siggen_new(64, RATE, 6.0f, 44);
	gen_ct = siggen_new(8, RATE, 6.0f, 45);
	gen18 = siggen_new(64, RATE, 6.0f, 46);
	gen_dma = siggen_new(64, RATE, 6.0f, 47);
	gen_cdo = siggen_new(64, RATE, 6.0f, 48);
	gen_rm = siggen_new(64, RATE, 6.0f, 49);
	gen_ovf = siggen_new(8, RATE, 6.0f, 50);
	gen_di = siggen_new(64, RATE, 6.0f, 51);
	struct cmodel_config c0 = { "/dev/comedi0", 64, 2000000, GAIN, true, false };
	struct cmodel_config c1 = { "/dev/comedi1", 64, 2000000, GAIN, true, true };
	struct cmodel_config c2 = { "/dev/comedi2", 64, 2000000, GAIN, false, false };
	/* comedi_test: 8 inputs, 8 outputs, no DIO, microsecond timing, no poll */
	struct cmodel_config c3 = { "/dev/comedi3", 8, 1000000, 1.0, true, false, .no_dio = true, .us_timing = true,
				    .no_poll = true, .ao_channels = 8 };
	struct cmodel_config c4 = { "/dev/comedi4", 64, 2000000, GAIN, true, false, .ai_bits = 18, .ao_bits = 18 };
	struct cmodel_config c5 = { "/dev/comedi5", 64, 2000000, GAIN, true, false, .ai_block_scans = 64 };
	struct cmodel_config c6 = { "/dev/comedi6", 64, 2000000, GAIN, true, false, .dio_cmd = true };
	struct cmodel_config c8 = { "/dev/comedi8", 64, 2000000, GAIN, true, false };
	struct cmodel_config c9 = { "/dev/comedi9", 8, 2000000, GAIN, true, false, .ai_buffer_bytes = 128 * 1024 };
	/* the default board with a digital-input subdevice beside its DIO */
	struct cmodel_config c10 = { "/dev/comedi10", 64, 2000000, GAIN, true, false, .with_di = true };
	board0 = cmodel_new(tb, &c0, gen0, err, sizeof(err));
	board_nocmd = cmodel_new(tb, &c1, gen1, err, sizeof(err));
	board_noao = cmodel_new(tb, &c2, gen2, err, sizeof(err));
	board_ct = cmodel_new(tb, &c3, gen_ct, err, sizeof(err));
	board18 = cmodel_new(tb, &c4, gen18, err, sizeof(err));
	board_dma = cmodel_new(tb, &c5, gen_dma, err, sizeof(err));
	board_cdo = cmodel_new(tb, &c6, gen_cdo, err, sizeof(err));
	board_rm = cmodel_new(tb, &c8, gen_rm, err, sizeof(err));
	board_ovf = cmodel_new(tb, &c9, gen_ovf, err, sizeof(err));
	board_di = cmodel_new(tb, &c10, gen_di, err, sizeof(err));
	if (!board0 || !board_nocmd || !board_noao || !board_ct || !board18 || !board_dma || !board_cdo || !board_rm ||
	    !board_ovf || !board_di) {
		fprintf(stderr, "cannot emulate the board: %s\n", err);
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_bad_configuration, teardown),
		cmocka_unit_test_teardown(test_spikes_match_planted, teardown),
		cmocka_unit_test_teardown(test_waveforms_are_the_signal, teardown),
		cmocka_unit_test_teardown(test_ai_command_shape, teardown),
		cmocka_unit_test_teardown(test_fastest_rates_8ch, teardown),
		cmocka_unit_test_teardown(test_stimulate_without_dio, teardown),
		cmocka_unit_test_teardown(test_consecutive_ticks_whole, teardown),
		cmocka_unit_test_teardown(test_several_pulses_one_tick, teardown),
		cmocka_unit_test_teardown(test_late_pulse_real_start, teardown),
		cmocka_unit_test_teardown(test_underrun_rearm, teardown),
		cmocka_unit_test_teardown(test_stop_outputs, teardown),
		cmocka_unit_test_teardown(test_several_stimulators, teardown),
		cmocka_unit_test_teardown(test_late_ticks_catch_up, teardown),
		cmocka_unit_test_teardown(test_overflow_range, teardown),
		cmocka_unit_test_teardown(test_overflow_realtime, teardown),
		cmocka_unit_test_teardown(test_board_removed, teardown),
		cmocka_unit_test_teardown(test_18bit_board, teardown),
		cmocka_unit_test_teardown(test_dma_board_polled, teardown),
		cmocka_unit_test_teardown(test_correlated_lines, teardown),
		cmocka_unit_test_teardown(test_digital_inputs, teardown),
		cmocka_unit_test_teardown(test_digital_inputs_on_routing_dio, teardown),
		cmocka_unit_test_teardown(test_digital_inputs_wall_clock, teardown),
		cmocka_unit_test_teardown(test_digital_input_options, teardown),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	cmodel_free(board0);
	cmodel_free(board_nocmd);
	cmodel_free(board_noao);
	cmodel_free(board_ct);
	cmodel_free(board18);
	cmodel_free(board_dma);
	cmodel_free(board_cdo);
	cmodel_free(board_rm);
	cmodel_free(board_ovf);
	cmodel_free(board_di);
	siggen_free(gen0);
	siggen_free(gen1);
	siggen_free(gen2);
	siggen_free(gen_ct);
	siggen_free(gen18);
	siggen_free(gen_dma);
	siggen_free(gen_cdo);
	siggen_free(gen_rm);
	siggen_free(gen_ovf);
	siggen_free(gen_di);
	g_object_unref(tb);
	return r;
}
