/* SPDX-License-Identifier: MIT */
/*
 * Test harness: the daemon's streaming side (ring, publisher, recorder,
 * control, status) fed by a synthetic producer standing in for the loop,
 * 1 ms ticks at 25 kHz over 60 electrodes.  Lets the Python subscriber,
 * meactl and mead-export be tested end to end without a driver.
 *
 *   stream-harness --pub EP --ctl EP [--seconds S] [--record PATH] [--virtual]
 *                  [--raw] [--rig] [--digital] [--waveforms] [--wait-subscribers N] [--ticks N]
 * --rig makes raw look like a rig's (noise, each spike's waveform on its
 * electrode, an artifact at each pulse) and follows every pulse with the
 * BLANK event a rig driver's detector reports (2 ms, every electrode).
 * --digital adds a rig's digital inputs: lines 0..2 low at the start, then
 * every 250 ticks line (t / 250) % 3 toggles.
 * --waveforms adds each spike's waveform (topic waveforms, 25 samples
 * before and 50 after, values harness_wave() of its sample, electrode and
 * amplitude) two ticks after the spike, as a rig's detector hands them
 * over once their post samples are in; the last two ticks' never come.
 * Ends after S seconds (or N ticks), or on the control request "shutdown";
 * prints one JSON line with the final counters.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "daemon/control.h"
#include "daemon/daemon.h"
#include "lib/core/json.h"
#include "daemon/publisher.h"
#include "daemon/recorder.h"
#include "daemon/ring.h"
#include "daemon/status.h"
#include "tests/streams/fake_loop.h"

#define RATE 25000
#define PER_TICK 25
#define CH 60

static struct mead_electrode electrodes[CH];
static struct mead_layout_view layout = { 6, 10, CH, 200.0f, electrodes };

static int describe(void *state, char *buf, size_t len)
{
	return snprintf(buf, len, "{\"synthetic\":true}");
}

static const struct mead_driver_ops ops = { .name = "harness", .describe = describe };

static void log_cb(void *ctx, int prio, const char *msg)
{
	fprintf(stderr, "stream-harness: %s\n", msg);
}

static uint64_t seq[MEAD_KIND_COUNT + 1];

#define WAVE_PRE 25u
#define WAVE_POST 50u
#define WAVE_N (WAVE_PRE + 1 + WAVE_POST)

/* Sample i of a spike's waveform: a trough of its amplitude at WAVE_PRE
 * and a pattern that tells samples, spikes and electrodes apart. */
static float harness_wave(const struct mead_spike *s, uint32_t i)
{
	const float d = (float)i - (float)WAVE_PRE;
	return s->amplitude_uv / (1.0f + d * d / 4.0f) + (float)((s->sample + i * 3u + s->electrode) % 11u) * 0.25f;
}

static void push(struct mead_ring *ring, bool wait, unsigned kind, uint64_t sample, const void *rec, uint32_t count,
		 uint32_t rsize)
{
	struct mead_msg h = { .kind = (uint16_t)kind, .count = count, .record_size = rsize, .seq = seq[kind]++,
			      .sample = sample };
	size_t len = sizeof(h) + (size_t)count * rsize;
	uint8_t *p;

	atomic_fetch_add(&fake_loop_state.stats.produced[kind], 1);
	while (!(p = mead_ring_reserve(ring, len))) {
		if (!wait) {
			atomic_fetch_add(&fake_loop_state.stats.dropped[kind], 1);
			return;
		}
		atomic_fetch_add(&fake_loop_state.stats.virtual_waits, 1);
		struct timespec ts = { 0, 100000 };
		nanosleep(&ts, NULL);
	}
	memcpy(p, &h, sizeof(h));
	memcpy(p + sizeof(h), rec, len - sizeof(h));
	mead_ring_commit(ring, len);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pub", required_argument, NULL, 'p' },
		{ "ctl", required_argument, NULL, 'c' },
		{ "seconds", required_argument, NULL, 's' },
		{ "ticks", required_argument, NULL, 't' },
		{ "record", required_argument, NULL, 'r' },
		{ "virtual", no_argument, NULL, 'v' },
		{ "raw", no_argument, NULL, 'R' },
		{ "rig", no_argument, NULL, 'G' },
		{ "digital", no_argument, NULL, 'D' },
		{ "waveforms", no_argument, NULL, 'W' },
		{ "wait-subscribers", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	const char *pub_ep = "tcp://127.0.0.1:*", *ctl_ep = "tcp://127.0.0.1:*", *record = NULL;
	double seconds = 5;
	uint64_t max_ticks = 0;
	bool virt = false, raw = false, rig = false, digital = false, waves = false;
	int32_t level[3] = { 0, 0, 0 };
	uint32_t wait_subs = 0;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'p': pub_ep = optarg; break;
		case 'c': ctl_ep = optarg; break;
		case 's': seconds = atof(optarg); break;
		case 't': max_ticks = strtoull(optarg, NULL, 10); break;
		case 'r': record = optarg; break;
		case 'v': virt = true; break;
		case 'R': raw = true; break;
		case 'G': rig = raw = true; break;
		case 'D': digital = true; break;
		case 'W': waves = true; break;
		case 'w': wait_subs = (uint32_t)atoi(optarg); break;
		default: return 2;
		}
	}

	static struct mead_daemon d;
	struct mead_ring *ring;
	struct mead_publisher *pub = NULL;
	struct mead_recorder *rec = NULL;
	struct mead_control *ctl = NULL;
	char err[512];
	static char meta[1 << 16];
	static const char config_text[] = "driver:\n  name: harness\nrecording:\n  enabled: true\n";

	fake_loop_reset();
	fake_loop_state.params.virtual_clock = virt;
	for (int i = 0; i < CH; i++) {
		electrodes[i].row = (uint16_t)(i / 10);
		electrodes[i].col = (uint16_t)(i % 10);
		snprintf(electrodes[i].label, sizeof(electrodes[i].label), "%c%d", 'A' + i % 10, 1 + i / 10);
	}
	electrodes[14].excluded = true;
	d.layout = &layout;
	d.loop = fake_loop_get();
	d.driver.ops = &ops;
	d.driver.caps = (struct mead_driver_caps){ .electrode_count = CH, .sample_rate_hz = RATE, .raw_channels = raw ? CH : 0,
						   .uv_per_count = 0.195f, .flags = MEAD_CAP_STIMULATE | MEAD_CAP_SIMULATED,
						   .max_amplitude_ua = 100.0f, .max_phase_us = 1000 };
	if (waves) {
		d.driver.caps.flags |= MEAD_CAP_WAVEFORMS;
		d.driver.caps.waveform_pre = WAVE_PRE;
		d.driver.caps.waveform_post = WAVE_POST;
	}
	d.config_path = "harness.yaml";
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	d.started_realtime_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;

	if (mead_ring_new(16u << 20, &ring) < 0)
		return 1;
	if (record) {
		if (mead_status_recording_meta(&d, meta, sizeof(meta)) < 0)
			return 1;
		struct mead_recorder_params rp = { .path = record, .overwrite = true, .config_text = config_text,
						   .config_len = strlen(config_text), .meta_json = meta,
						   .fsync_interval_ms = 500, .log = log_cb };
		if (mead_recorder_new(&rp, &rec, err, sizeof(err)) < 0) {
			fprintf(stderr, "stream-harness: %s\n", err);
			return 1;
		}
		d.recorder = rec;
	}
	struct mead_publisher_params pp = { .endpoint = pub_ep, .virtual_clock = virt, .raw = raw,
					    .wait_subscribers = wait_subs, .log = log_cb };
	if (mead_publisher_new(&pp, ring, rec, mead_status_json_cb, &d, &pub, err, sizeof(err)) < 0) {
		fprintf(stderr, "stream-harness: %s\n", err);
		return 1;
	}
	d.publisher = pub;
	struct mead_control_params cp = { .endpoint = ctl_ep, .status_json = mead_status_json_cb, .status_ctx = &d,
					  .log = log_cb };
	if (mead_control_new(&cp, &d, true, &ctl, err, sizeof(err)) < 0) {
		fprintf(stderr, "stream-harness: %s\n", err);
		return 1;
	}
	printf("{\"pub\":\"%s\",\"ctl\":\"%s\"}\n", mead_publisher_endpoint(pub), mead_control_endpoint(ctl));
	fflush(stdout);
	if (rec)
		mead_recorder_start(rec);
	mead_publisher_start(pub);
	mead_control_start(ctl);
	atomic_store(&fake_loop_state.stats.state, MEAD_LOOP_RUNNING);

	struct timespec next;
	clock_gettime(CLOCK_MONOTONIC, &next);
	uint64_t end_ns = (uint64_t)(seconds * 1e9), t0 = (uint64_t)next.tv_sec * 1000000000ull + (uint64_t)next.tv_nsec;
	unsigned seed = 1;
	static int16_t rawbuf[PER_TICK * CH];
	/* the spikes of the last three ticks, for their waveforms */
	static struct mead_spike past[3][8];
	static uint32_t n_past[3];
	static uint8_t wbuf[8][sizeof(struct mead_waveform) + 4 * WAVE_N];
	for (uint64_t t = 0; !atomic_load(&d.stop_requested); t++) {
		if (max_ticks && t >= max_ticks)
			break;
		if (!virt) {
			next.tv_nsec += 1000000;
			if (next.tv_nsec >= 1000000000L) {
				next.tv_nsec -= 1000000000L;
				next.tv_sec++;
			}
			clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
			uint64_t tn = (uint64_t)next.tv_sec * 1000000000ull + (uint64_t)next.tv_nsec;
			if (!max_ticks && tn - t0 >= end_ns)
				break;
		} else if (!max_ticks && t >= (uint64_t)(seconds * 1000)) {
			break;
		}
		uint64_t first = t * PER_TICK;
		struct mead_spike sp[8];
		uint32_t n = (uint32_t)(rand_r(&seed) % 8);
		for (uint32_t i = 0; i < n; i++) {
			uint16_t e;
			do
				e = (uint16_t)(rand_r(&seed) % CH);
			while (e == 14);
			sp[i] = (struct mead_spike){ .sample = first + (uint64_t)i * 3, .electrode = e,
						     .amplitude_uv = -(float)(20 + rand_r(&seed) % 80) };
		}
		push(ring, virt, MEAD_KIND_SPIKES, first, sp, n, sizeof(sp[0]));
		atomic_fetch_add(&fake_loop_state.stats.spikes, n);
		if (waves) {
			memcpy(past[t % 3], sp, sizeof(sp));
			n_past[t % 3] = n;
			const uint32_t k = t >= 2 ? n_past[(t - 2) % 3] : 0;
			const struct mead_spike *ws = past[(t - 2) % 3];
			for (uint32_t i = 0; i < k; i++) {
				struct mead_waveform w = { .sample = ws[i].sample, .electrode = ws[i].electrode,
							   .pre = WAVE_PRE, .post = WAVE_POST, .amplitude_uv = ws[i].amplitude_uv };
				memcpy(wbuf[i], &w, sizeof(w));
				float v[WAVE_N];
				for (uint32_t j = 0; j < WAVE_N; j++)
					v[j] = harness_wave(&ws[i], j);
				memcpy(wbuf[i] + sizeof(w), v, sizeof(v));
			}
			if (k) {
				push(ring, virt, MEAD_KIND_WAVEFORMS, first, wbuf, k, sizeof(wbuf[0]));
				atomic_fetch_add(&fake_loop_state.stats.waveforms, k);
			}
		}
		if (t % 50 == 0) {
			struct mead_stim_pulse s = { .sample = first, .electrode = (uint16_t)(t / 50 % 13), .amplitude_ua = -1.0f,
						     .phase_us = 200, .interphase_us = 50 };
			push(ring, virt, MEAD_KIND_STIM, first, &s, 1, 24);
			if (rig) {
				struct mead_event b = { .sample = first, .type = MEAD_EVENT_BLANK, .samples = RATE / 500,
							.electrode = MEAD_EVENT_ALL_ELECTRODES };
				push(ring, virt, MEAD_KIND_EVENTS, first, &b, 1, sizeof(b));
			}
		}
		if (t % 100 == 0) {
			struct mead_event e[2] = { { first, t == 0 ? MEAD_EVENT_RUN_START : MEAD_EVENT_TRIAL_END,
						     t == 0 ? RATE : (int32_t)(t / 100 - 1) },
						   { first, MEAD_EVENT_TRIAL_START, (int32_t)(t / 100) } };
			push(ring, virt, MEAD_KIND_EVENTS, first, e, 2, sizeof(e[0]));
		}
		if (digital && t % 250 == 0) {
			struct mead_event dv[3];
			uint32_t nd = 0;
			for (uint16_t l = 0; l < 3; l++) {
				if (t == 0 || l == t / 250 % 3) {
					if (t)
						level[l] = !level[l];
					dv[nd++] = (struct mead_event){ .sample = first + 7, .type = MEAD_EVENT_DIGITAL,
								       .value = level[l], .electrode = l };
				}
			}
			push(ring, virt, MEAD_KIND_EVENTS, first, dv, nd, sizeof(dv[0]));
		}
		if (rig) {
			/* noise of about 3.5 uV rms, a biphasic spike of its amplitude
			 * on each spike's electrode, a saturating artifact at a pulse */
			for (int i = 0; i < PER_TICK * CH; i++) {
				int u = 0;
				for (int k = 0; k < 4; k++)
					u += (int)(rand_r(&seed) % 61) - 30;
				rawbuf[i] = (int16_t)(u / 2);
			}
			for (uint32_t i = 0; i < n; i++) {
				int at = (int)(sp[i].sample - first);
				float a = sp[i].amplitude_uv / 0.195f;
				for (int k = 0; k < 12 && at + k < PER_TICK; k++)
					rawbuf[(at + k) * CH + sp[i].electrode] += (int16_t)(k < 4 ? a * (float)k / 4.0f :
											      k < 8 ? a * (float)(7 - k) / 4.0f : -a * 0.3f);
			}
			if (t % 50 == 0)
				for (int k = 0; k < 10; k++)
					for (int ch = 0; ch < CH; ch++)
						rawbuf[k * CH + ch] = (int16_t)(k < 5 ? 9000 - 1500 * k : -3000 + 600 * (k - 5));
			push(ring, virt, MEAD_KIND_RAW, first, rawbuf, PER_TICK, CH * 2);
		} else if (raw) {
			for (int i = 0; i < PER_TICK * CH; i++)
				rawbuf[i] = (int16_t)((int)(first % 1000) - 500 + i % CH);
			push(ring, virt, MEAD_KIND_RAW, first, rawbuf, PER_TICK, CH * 2);
		}
		atomic_store(&fake_loop_state.stats.ticks, t + 1);
		atomic_store(&fake_loop_state.stats.sample, first);
		atomic_fetch_add(&fake_loop_state.stats.lat_hist[3 + rand_r(&seed) % 5], 1);
	}
	struct mead_event end_ev = { atomic_load(&fake_loop_state.stats.sample), MEAD_EVENT_RUN_END, 0 };
	push(ring, true, MEAD_KIND_EVENTS, end_ev.sample, &end_ev, 1, sizeof(end_ev));
	atomic_store(&fake_loop_state.stats.state, MEAD_LOOP_STOPPED);

	/* Same order as the daemon: control, publisher (drains), recorder. */
	mead_control_stop(ctl);
	mead_publisher_stop(pub);
	if (rec)
		mead_recorder_stop(rec);
	static char status[1 << 16];
	int n = mead_status_json(&d, status, sizeof(status));
	printf("%s\n", n > 0 ? status : "{}");
	mead_control_free(ctl);
	mead_publisher_free(pub);
	mead_recorder_free(rec);
	mead_ring_free(ring);
	return 0;
}
