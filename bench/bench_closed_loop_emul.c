/* SPDX-License-Identifier: MIT */
/*
 * mead-bench closed-loop on the emulated devices of the driver tests: a
 * Comedi board (NI M-series-like, correlated digital output for the routing
 * lines) or a USB front-end behind umockdev testbed nodes, streaming in real
 * time, with spikes planted on a rotating electrode.  The daemon runs as a
 * child process and reaches them through umockdev's preload library, which
 * it inherits from umockdev-wrapper; the testbed's worker thread in this
 * process answers its ioctls.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <umockdev.h>

#include "bench/closed_loop.h"
#include "tests/lib/devmodel.h"

/* The daemon starts within this many seconds of the device model: spikes
 * are planted over it and the run, since where the run's sample 0 falls in
 * the model's signal is only known afterwards. */
#define STARTUP_S 60u

static struct siggen *planted_signal(const struct cl_opts *o)
{
	struct siggen *g = siggen_new(o->channels, o->rate, 6.0f, 2024);
	uint64_t gap = (uint64_t)(o->rate / o->spike_hz), end = (uint64_t)((o->seconds + STARTUP_S) * o->rate);
	uint16_t others = (uint16_t)(o->channels - 1);
	/* one electrode at a time, never the target, off the tick grid by a
	 * changing amount so that spikes fall early and late in their ticks */
	for (uint64_t s = gap, k = 0; s < end; s += gap, k++) {
		uint16_t e = (uint16_t)(k * 13 % others);
		struct siggen_spike sp = { s + k * 7 % 41, e >= o->target ? (uint16_t)(e + 1) : e, 90.0f };
		siggen_plant(g, &sp, 1);
	}
	return g;
}

/* Planted spikes of the run: signal sample `offset` is run sample 0. */
static void truth_spikes(const struct cl_opts *o, struct siggen *g, uint64_t offset, struct cl_truth *t)
{
	uint32_t n;
	const struct siggen_spike *sp = siggen_spikes(g, &n);
	uint64_t end = offset + (uint64_t)(o->seconds * o->rate);
	for (uint32_t i = 0; i < n; i++)
		if (sp[i].sample >= offset && sp[i].sample < end)
			cl_truth_spike(t, sp[i].sample - offset, sp[i].channel);
}

static int comedi(const struct cl_opts *o, UMockdevTestbed *tb, struct siggen *g, const char *dir, struct cl_truth *t)
{
	char err[256] = "";
	struct cmodel_config cc = { .devnode = "/dev/comedi3", .ai_channels = 64, .max_aggregate_hz = 2000000,
				    .amp_gain = 1100.0, .with_ao = true, .dio_cmd = true };
	struct cmodel *m = cmodel_new(tb, &cc, g, err, sizeof(err));
	if (!m) {
		fprintf(stderr, "closed-loop: cannot emulate the Comedi board: %s\n", err);
		return -1;
	}
	cmodel_set_realtime(m, true);
	char yaml[512];
	snprintf(yaml, sizeof(yaml),
		 "  name: comedi\n"
		 "  options:\n"
		 "    device: %s\n"
		 "    sample_rate_hz: %u\n"
		 "    stimulate: true\n",
		 cc.devnode, o->rate);
	if (cl_run_daemon(o, dir, yaml) < 0)
		return -1;
	/* In real time the model's clock starts at 0 with the first AI command,
	 * the driver's start(): run sample 0.  Later commands (re-arms after
	 * an overflow) keep the run's sample index in step with that clock. */
	const uint64_t s0 = 0;
	truth_spikes(o, g, s0, t);
	uint32_t cap = 1u << 16;
	struct cmodel_stim *cs = calloc(cap, sizeof(*cs));
	uint32_t n = cmodel_stims(m, cs, cap);
	for (uint32_t i = 0; i < n; i++) {
		if (cs[i].start_sample < s0)
			continue;
		struct cl_pulse *p = cl_truth_pulse(t);
		/* the routing lines carry the electrode index on lines 0..5 */
		*p = (struct cl_pulse){ .started = cs[i].start_sample - s0, .wall_ns = cs[i].t_ns,
					.electrode = (uint16_t)(cs[i].dio & 0x3f), .played = true };
	}
	free(cs);
	/* the model's wall clock for its sample k is the stream start plus k scans */
	t->wall0_ns = cmodel_stream_start_ns(m) + s0 * 1000000000ull / o->rate;
	struct cmodel_counts c;
	cmodel_counts(m, &c);
	printf("comedi: device: %u AO underruns, %u AI overflows, %u AI commands\n", c.ao_underruns, c.ai_overflows,
	       c.ai_commands);
	return 0;
}

static int usb(const struct cl_opts *o, UMockdevTestbed *tb, struct siggen *g, const char *dir, struct cl_truth *t)
{
	char err[256] = "";
	uint32_t spp = (uint32_t)((uint64_t)o->rate * o->period_us / 1000000u);
	struct umodel_config uc = { .vid = 0x1209, .pid = 0x4d50, .channels = (uint16_t)o->channels, .rate_hz = o->rate,
				    .nv_per_count = 195, .samples_per_packet = (uint16_t)(spp ? spp : 1), .devnum = 3 };
	struct umodel *m = umodel_new(tb, &uc, g, err, sizeof(err));
	if (!m) {
		fprintf(stderr, "closed-loop: cannot emulate the USB front-end: %s\n", err);
		return -1;
	}
	umodel_set_realtime(m, true);
	char yaml[512];
	snprintf(yaml, sizeof(yaml),
		 "  name: usb\n"
		 "  options:\n"
		 "    vid: %u\n"
		 "    pid: %u\n",
		 uc.vid, uc.pid);
	if (cl_run_daemon(o, dir, yaml) < 0)
		return -1;
	struct umodel_counts c;
	umodel_counts(m, &c);
	truth_spikes(o, g, c.gen_at_start, t);
	uint32_t cap = 1u << 16;
	struct umodel_stim *us = calloc(cap, sizeof(*us));
	uint32_t n = umodel_stims(m, us, cap);
	for (uint32_t i = 0; i < n; i++) {
		bool played = us[i].status == UMODEL_DELIVERED || us[i].status == UMODEL_LATE;
		struct cl_pulse *p = cl_truth_pulse(t);
		*p = (struct cl_pulse){ .requested = us[i].requested_sample, .started = us[i].start_sample,
					.arrival = us[i].received_at, .wall_ns = us[i].t_ns, .electrode = us[i].electrode,
					.played = played && us[i].start_sample > 0, .has_requested = true,
					.has_arrival = true };
	}
	free(us);
	t->wall0_ns = umodel_stream_start_ns(m);
	printf("usb: device: %u START, %" PRIu64 " packets (%" PRIu64 " overrun, %" PRIu64 " dropped), watchdog fired %u\n",
	       c.starts, c.packets, c.packets_overrun, c.packets_dropped, c.watchdog_fired);
	return 0;
}

int cl_emulated(const struct cl_opts *o, const char *driver, const char *dir, uint32_t *ret_ticks_p99)
{
	UMockdevTestbed *tb = umockdev_testbed_new();
	struct siggen *g = planted_signal(o);
	struct cl_truth t = { 0 };
	int r = strcmp(driver, "comedi") == 0 ? comedi(o, tb, g, dir, &t) : usb(o, tb, g, dir, &t);
	if (r == 0)
		r = cl_report(o, driver, dir, &t, ret_ticks_p99);
	cl_truth_clear(&t);
	/* the models stay attached to the testbed until it goes */
	g_object_unref(tb);
	siggen_free(g);
	return r;
}
