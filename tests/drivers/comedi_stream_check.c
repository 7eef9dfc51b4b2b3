/* SPDX-License-Identifier: MIT */
/*
 * comedi-stream-check: mead-driver-comedi against comedi_test, the
 * kernel's own simulated board, inside the kernel test guest
 * (tests/kernel/comedi/stream.sh runs it there).  The driver module is loaded and driven
 * the way the loop drives it, paced by the wall clock.
 *
 * What the kernel is asked:
 *   rates     8 channels open and stream at 2 kHz .. 100 kHz (conversions
 *             back to back)
 *   stream    the continuous AO command the driver runs (TRIG_INT start,
 *             TRIG_TIMER scans, no stop) is accepted and consumed at its
 *             rate; pulses settle as delivered; the output reads 0 V after
 *   loopback  a long pulse read back through comedi_test's loopback while
 *             it plays: 0 V, phase 1, phase 2, 0 V, and 0 V once the stream
 *             has run dry
 *   underrun  the loop stalls, the stream runs dry at 0 V, the driver
 *             reports STIM_LOST and re-arms
 *   stop      stop_outputs in the middle of a pulse: 0 V at once
 *   leads     how much lead comedi_test needs (jiffy-paced timers)
 *   removal   rmmod -f under the running driver: -ENODEV, pulses refused
 *
 * The loopback can only be read while no command runs on the subdevice
 * read (the kernel answers EBUSY): the check cancels the driver's AI
 * command on the driver's own file, then reads the AO channel's loopback
 * through the AI subdevice on a file of its own.
 *
 * Prints "ok  ..." / "FAIL ..." per check and "note: ..." figures; exit 1
 * if a check failed, 77 when there is no comedi_test board or no module.
 */
#include <comedilib.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "lib/core/time.h"
#include "tests/lib/harness.h"

#define PERIOD_US 1000u
#define AO_CHAN 0
#define UA_PER_VOLT 10.0

static const char *device = "/dev/comedi0";
static comedi_t *mine;           /* this program's own file of the board */
static int failures;

static void check(int ok, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("%s ", ok ? "ok  " : "FAIL");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	fflush(stdout);
	if (!ok)
		failures++;
}

static void note(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("note: ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	fflush(stdout);
}

static void sleep_until(uint64_t t)
{
	uint64_t now = mead_now_ns();
	if (t > now) {
		struct timespec ts = { (time_t)((t - now) / 1000000000ull), (long)((t - now) % 1000000000ull) };
		nanosleep(&ts, NULL);
	}
}

static void sleep_ms(unsigned ms)
{
	sleep_until(mead_now_ns() + ms * 1000000ull);
}

/* ---------------------------------------------------------------- one run */

struct run {
	struct harness h;
	uint32_t rate;
	uint64_t t, t0;
	uint64_t acquired;
	uint32_t late, frames;
	uint64_t busy_ns;
	uint64_t raw_total;
	uint32_t ev[32];
	struct mead_event lost[16];
	uint32_t n_lost;
	uint32_t delivered, refused, refused_now;
	uint64_t last_start;
	struct mead_spike spk[4096];
	int16_t raw[64 * 100 * 8];
	struct mead_stim_result res[64];
	struct mead_event evb[256];
};

static uint64_t first_of(const struct run *r, uint64_t t)
{
	return mead_tick_first_sample(t, PERIOD_US * 1000u, r->rate);
}

static int run_open(struct run *r, uint32_t rate, bool stim, uint32_t lead_us, uint32_t max_phase_us)
{
	memset(r, 0, sizeof(*r));
	r->rate = rate;
	harness_layout60(&r->h);
	r->h.layout.count = 8;
	if (!harness_load(&r->h, "comedi")) {
		printf("cannot load mead-driver-comedi.so from $MEAD_DRIVER_PATH\n");
		exit(77);
	}
	harness_defaults(&r->h, PERIOD_US);
	r->h.cfg.virtual_clock = false;
	r->h.cfg.want_raw = true;
	char v[32];
	harness_set(&r->h, "device", device);
	snprintf(v, sizeof(v), "%u", rate);
	harness_set(&r->h, "sample_rate_hz", v);
	harness_set(&r->h, "ai_range_v", "5");
	harness_set(&r->h, "amp_gain", "1");
	harness_set(&r->h, "stimulate", stim ? "true" : "false");
	harness_set(&r->h, "route_lines", "");
	harness_set(&r->h, "route_enable_line", "-1");
	harness_set(&r->h, "blank_line", "-1");
	snprintf(v, sizeof(v), "%.1f", UA_PER_VOLT);
	harness_set(&r->h, "ao_ua_per_volt", v);
	snprintf(v, sizeof(v), "%u", lead_us);
	harness_set(&r->h, "ao_lead_us", v);
	snprintf(v, sizeof(v), "%u", max_phase_us);
	harness_set(&r->h, "max_phase_us", v);
	/* blanking would hide nothing here; keep the signal path plain */
	harness_set(&r->h, "blank_us", "0");
	return harness_open(&r->h);
}

static int run_start(struct run *r)
{
	int e = r->h.ops->start(r->h.state, r->h.err, sizeof(r->h.err));
	r->t0 = mead_now_ns();
	return e;
}

/* One tick when its samples are due (plus a jiffy: comedi_test's timers
 * run at 250 Hz), then the pulses for the next one. */
static void run_tick(struct run *r, const struct mead_stim_pulse *p, uint32_t n)
{
	uint64_t first = first_of(r, r->t), next = first_of(r, r->t + 1);
	sleep_until(r->t0 + next * 1000000000ull / r->rate + 4000000ull);
	struct mead_frame f = {
		.first_sample = first, .n_samples = (uint32_t)(next - first),
		.spikes = r->spk, .spike_capacity = 4096,
		.raw = r->raw, .raw_channels = 8, .raw_capacity = 64 * 100, .raw_first_sample = first,
		.stim_results = r->res, .stim_result_capacity = 64,
		.events = r->evb, .event_capacity = 256,
	};
	uint64_t b0 = mead_now_ns();
	int e = r->h.ops->read_frame(r->h.state, r->t, &f);
	r->busy_ns += mead_now_ns() - b0;
	(void)e;
	r->frames++;
	r->late += (f.flags & MEAD_FRAME_LATE) != 0;
	r->raw_total += f.raw_samples;
	r->acquired = f.acquired;
	for (uint32_t i = 0; i < f.n_events; i++) {
		if (r->evb[i].type < 32)
			r->ev[r->evb[i].type]++;
		if (r->evb[i].type == MEAD_EVENT_STIM_LOST && r->n_lost < 16)
			r->lost[r->n_lost++] = r->evb[i];
	}
	for (uint32_t i = 0; i < f.n_stim_results; i++) {
		if (r->res[i].status == MEAD_STIM_DELIVERED) {
			r->delivered++;
			r->last_start = r->res[i].sample;
		} else {
			r->refused++;
		}
	}
	if (n) {
		struct mead_stim_result res[8];
		r->h.ops->write_stim(r->h.state, r->t, p, n, res);
		for (uint32_t i = 0; i < n; i++)
			if (res[i].status == MEAD_STIM_REFUSED)
				r->refused_now++;
	}
	r->t++;
}

static void run_close(struct run *r)
{
	if (r->h.state) {
		r->h.ops->stop(r->h.state);
		harness_close(&r->h);
	}
	harness_unload(&r->h);
}

static void describe(struct run *r, char *buf, size_t len)
{
	if (r->h.ops->describe(r->h.state, buf, len) < 0)
		snprintf(buf, len, "{}");
}

/* ---------------------------------------------------------------- the board */

/* The driver's file of the board: the one this program did not open. */
static int driver_fd(void)
{
	DIR *d = opendir("/proc/self/fd");
	int found = -1;
	struct dirent *e;
	char path[64], target[256];
	while (d && (e = readdir(d))) {
		int fd = atoi(e->d_name);
		if (fd <= 2 || fd == comedi_fileno(mine))
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		ssize_t n = readlink(path, target, sizeof(target) - 1);
		if (n > 0) {
			target[n] = '\0';
			if (strcmp(target, device) == 0)
				found = fd;
		}
	}
	if (d)
		closedir(d);
	return found;
}

/* Cancels the driver's acquisition, so the AI subdevice can be read by
 * instruction; the driver's AO stream goes on (and runs dry). */
static int free_ai(void)
{
	int fd = driver_fd();
	return fd < 0 ? -1 : ioctl(fd, COMEDI_CANCEL, 0);
}

/* comedi_test: an instruction read of an AI channel returns the last value
 * its AO channel put out. */
static long loopback(void)
{
	lsampl_t v;
	if (comedi_data_read(mine, 0, AO_CHAN, 0, AREF_GROUND, &v) < 0)
		return -errno;
	return (long)v;
}

static bool zero_code(long c)
{
	return c == 32767 || c == 32768;
}

static long code_of(double volts)
{
	return lround((volts + 10.0) / 20.0 * 65535.0);
}

/* AO scans the kernel has taken from the driver's stream buffer so far. */
static long ao_taken(void)
{
	int fd = driver_fd();
	comedi_bufinfo bi = { .subdevice = 1 };
	if (fd < 0 || ioctl(fd, COMEDI_BUFINFO, &bi) < 0)
		return -errno;
	return (long)(bi.buf_read_count / 2);
}

/* AO scans the driver has handed to the kernel in this stream. */
static long ao_written(void)
{
	int fd = driver_fd();
	comedi_bufinfo bi = { .subdevice = 1 };
	if (fd < 0 || ioctl(fd, COMEDI_BUFINFO, &bi) < 0)
		return -errno;
	return (long)(bi.buf_write_count / 2);
}

/* Asks for a pulse and ticks until all of it is in the kernel's buffer (a
 * stream that runs dry meanwhile drops it: ask again). */
static bool pulse_written(struct run *r, const struct mead_stim_pulse *shape, long scans)
{
	for (int tries = 0; tries < 5; tries++) {
		struct mead_stim_pulse p = *shape;
		p.sample = first_of(r, r->t + 1);
		uint32_t lost = r->ev[MEAD_EVENT_STIM_LOST];
		run_tick(r, &p, 1);
		long w0 = ao_written();
		for (int k = 0; k < 2000 && r->ev[MEAD_EVENT_STIM_LOST] == lost; k++) {
			if (ao_written() >= w0 + scans)
				return true;
			run_tick(r, NULL, 0);
		}
	}
	return false;
}

/* ---------------------------------------------------------------- scenarios */

/* A stimulating run at 25 kHz, started and ticking for `ticks`; NULL (and
 * a failed check) when it does not start. */
static struct run *run_begin(const char *what, uint32_t lead_us, uint32_t max_phase_us, int ticks)
{
	struct run *r = calloc(1, sizeof(*r));
	int e = run_open(r, 25000, true, lead_us, max_phase_us);
	if (e == 0)
		e = run_start(r);
	check(e == 0, "%s: driver running (%s)", what, e ? r->h.err : "");
	if (e) {
		run_close(r);
		free(r);
		return NULL;
	}
	for (int k = 0; k < ticks; k++)
		run_tick(r, NULL, 0);
	return r;
}

static void scenario_rates(void)
{
	static const uint32_t rates[] = { 2000, 8000, 10000, 25000, 50000, 100000 };
	for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
		struct run *r = calloc(1, sizeof(*r));
		int e = run_open(r, rates[i], false, 0, 1000);
		check(e == 0, "rates: 8 channels at %u Hz open (%s)", rates[i], e ? r->h.err : "");
		if (e == 0) {
			e = run_start(r);
			check(e == 0, "rates: %u Hz starts (%s)", rates[i], e ? r->h.err : "");
			for (int k = 0; e == 0 && k < 500; k++)
				run_tick(r, NULL, 0);
			char d[2048];
			describe(r, d, sizeof(d));
			uint64_t want = first_of(r, r->t);
			check(r->raw_total > want / 2, "rates: %u Hz, %llu of %llu samples in 0.5 s", rates[i],
			      (unsigned long long)r->raw_total, (unsigned long long)want);
			note("rates: %u Hz: %u late frames of %u, %u overflows, %u LATE events, read_frame %.0f us a tick; %s",
			     rates[i], r->late, r->frames, r->ev[MEAD_EVENT_OVERFLOW], r->ev[MEAD_EVENT_LATE],
			     r->busy_ns / 1e3 / (r->frames ? r->frames : 1), d);
		}
		run_close(r);
		free(r);
	}
}

static struct mead_stim_pulse pulse(uint64_t sample, float ua, uint32_t phase_us, uint32_t gap_us)
{
	return (struct mead_stim_pulse){ .sample = sample, .electrode = 0, .amplitude_ua = ua, .phase_us = phase_us,
					 .interphase_us = gap_us };
}

/* A stream that ran dry is re-armed and counted: what matters is that
 * every loss is reported and the output is at 0 V after. */
static void scenario_stream(uint32_t lead_us)
{
	struct run *r = calloc(1, sizeof(*r));
	int e = run_open(r, 25000, true, lead_us, 1000);
	check(e == 0, "stream: opens with stimulate, no DIO (%s)", e ? r->h.err : "");
	if (e) {
		run_close(r);
		free(r);
		return;
	}
	e = run_start(r);
	check(e == 0, "stream: the continuous AO command is accepted and triggered (%s)", e ? r->h.err : "");
	/* the kernel's pace: AO scans taken from the buffer over a second */
	for (int k = 0; e == 0 && k < 200; k++)
		run_tick(r, NULL, 0);
	uint32_t lost0 = r->ev[MEAD_EVENT_STIM_LOST];
	long taken0 = ao_taken();
	uint64_t w0 = mead_now_ns();
	for (int k = 0; e == 0 && k < 1000; k++)
		run_tick(r, NULL, 0);
	long taken1 = ao_taken();
	double secs = (mead_now_ns() - w0) / 1e9;
	double rate = (taken1 - taken0) / secs;
	if (r->ev[MEAD_EVENT_STIM_LOST] == lost0)
		check(taken0 >= 0 && rate > 90000 && rate < 110000,
		      "stream: the kernel takes the stream at its rate (%.0f scans/s, 100000 asked)", rate);
	else
		note("stream: the stream ran dry meanwhile, its pace not measured");
	uint32_t sent = 0;
	for (int k = 0; e == 0 && k < 3000; k++) {
		struct mead_stim_pulse p = pulse(first_of(r, r->t + 1) + 5, -20.0f, 200, 50);
		bool send = k % 100 == 50;
		run_tick(r, &p, send ? 1 : 0);
		sent += send;
	}
	for (int k = 0; k < 200; k++)
		run_tick(r, NULL, 0);
	char d[2048];
	describe(r, d, sizeof(d));
	check(r->delivered + r->refused + r->refused_now == sent,
	      "stream: %u pulses sent, %u delivered, %u cancelled by a dry stream, %u refused while it was down", sent,
	      r->delivered, r->refused, r->refused_now);
	char want[64];
	snprintf(want, sizeof(want), "\"ao_underruns\":%u,", r->ev[MEAD_EVENT_STIM_LOST]);
	check(strstr(d, want) != NULL, "stream: every underrun is a STIM_LOST event (%u)", r->ev[MEAD_EVENT_STIM_LOST]);
	note("stream: %u us lead: %u underruns in %.1f s, read_frame %.0f us a tick; %s", lead_us,
	     r->ev[MEAD_EVENT_STIM_LOST], (mead_now_ns() - r->t0) / 1e9, r->busy_ns / 1e3 / (r->frames ? r->frames : 1), d);
	check(free_ai() == 0, "stream: the driver's AI command cancelled on its own file");
	long c = loopback();
	check(zero_code(c), "stream: after %u pulses the output reads 0 V (code %ld)", sent, c);
	run_close(r);
	c = loopback();
	check(zero_code(c), "stream: after close the output reads 0 V (code %ld)", c);
	free(r);
}

/* Watches the loopback for ms milliseconds; returns the distinct codes in
 * the order they appeared. */
static int watch(long *codes, int cap, unsigned ms)
{
	int n = 0;
	uint64_t end = mead_now_ns() + ms * 1000000ull;
	while (mead_now_ns() < end) {
		long c = loopback();
		if (c >= 0 && (n == 0 || codes[n - 1] != c) && n < cap)
			codes[n++] = c;
		sleep_ms(1);
	}
	return n;
}

static void scenario_loopback(uint32_t lead_us)
{
	/* long enough that a stalled guest does not run it dry before the pulse */
	lead_us = lead_us > 200000 ? lead_us : 200000;
	struct run *r = run_begin("loopback", lead_us, 100000, 300);
	if (!r)
		return;
	/* -6 V for 100 ms, 50 ms at 0 V, +6 V for 100 ms: comedi_test's AO
	 * timer shows only the last sample of each run, and a stalled guest
	 * runs it seldom: long phases are seen whatever the stalls */
	struct mead_stim_pulse p = pulse(0, -60.0f, 100000, 50000);
	check(pulse_written(r, &p, 25000 + 100), "loopback: the pulse is in the kernel's buffer");
	check(free_ai() == 0, "loopback: the driver's AI command cancelled");
	long codes[32];
	int n = watch(codes, 32, (lead_us + 500000) / 1000);
	char seq[512] = "";
	for (int i = 0; i < n; i++)
		snprintf(seq + strlen(seq), sizeof(seq) - strlen(seq), "%s%ld", i ? " " : "", codes[i]);
	long c1 = code_of(-6.0), c2 = code_of(6.0);
	bool shape = n >= 3 && zero_code(codes[n - 1]);
	int i1 = -1, i2 = -1;
	for (int i = 0; i < n; i++) {
		if (labs(codes[i] - c1) <= 1 && i1 < 0)
			i1 = i;
		if (labs(codes[i] - c2) <= 1 && i2 < 0)
			i2 = i;
	}
	check(shape && i1 >= 0 && i2 > i1, "loopback: the pulse plays and the output returns to 0 V (codes seen: %s; "
	      "phase codes %ld, %ld)", seq, c1, c2);
	for (int i = 0; i < n; i++)
		if (!zero_code(codes[i]) && labs(codes[i] - c1) > 1 && labs(codes[i] - c2) > 1)
			check(0, "loopback: no code but 0 V and the two phases (saw %ld)", codes[i]);
	note("loopback: with no tick after the AI was cancelled the stream ran dry and holds code %ld", loopback());
	run_close(r);
	free(r);
}

static void scenario_underrun(uint32_t lead_us)
{
	struct run *r = run_begin("underrun", lead_us, 1000, 500);
	if (!r)
		return;
	uint32_t lost0 = r->ev[MEAD_EVENT_STIM_LOST], seen0 = r->n_lost;
	/* the loop stalls for 300 ms: the stream runs dry */
	sleep_ms(300);
	for (int k = 0; k < 1000; k++) {
		struct mead_stim_pulse p = pulse(first_of(r, r->t + 1), -20.0f, 200, 0);
		run_tick(r, &p, k == 500 ? 1 : 0);
	}
	char d[2048];
	describe(r, d, sizeof(d));
	check(r->ev[MEAD_EVENT_STIM_LOST] >= lost0 + 1, "underrun: reported as STIM_LOST (%u)",
	      r->ev[MEAD_EVENT_STIM_LOST] - lost0);
	if (r->n_lost > seen0) {
		const struct mead_event *l = &r->lost[seen0];
		note("underrun: STIM_LOST at %llu for %u samples (%.1f ms), %d pulse(s) dropped",
		     (unsigned long long)l->sample, l->samples, l->samples * 1000.0 / r->rate, l->value);
	}
	check(r->delivered == 1, "underrun: the re-armed stream plays the next pulse (%u delivered)", r->delivered);
	note("underrun: %s", d);
	check(free_ai() == 0, "underrun: the driver's AI command cancelled");
	long c = loopback();
	check(zero_code(c), "underrun: the output reads 0 V (code %ld)", c);
	run_close(r);
	free(r);
}

static void scenario_stop(uint32_t lead_us)
{
	lead_us = lead_us > 200000 ? lead_us : 200000;
	struct run *r = run_begin("stop", lead_us, 50000, 300);
	if (!r)
		return;
	struct mead_stim_pulse p = pulse(0, -60.0f, 40000, 0);
	check(pulse_written(r, &p, 8000 + 100), "stop: the pulse is in the kernel's buffer");
	check(free_ai() == 0, "stop: the driver's AI command cancelled");
	long c1 = code_of(-6.0), c = 0;
	uint64_t end = mead_now_ns() + (lead_us + 100000) * 1000ull;
	while (mead_now_ns() < end && labs((c = loopback()) - c1) > 1)
		sleep_ms(1);
	check(labs(c - c1) <= 1, "stop: the pulse is playing (code %ld)", c);
	r->h.ops->stop_outputs(r->h.state);
	c = loopback();
	check(zero_code(c), "stop: right after stop_outputs the output reads 0 V (code %ld)", c);
	sleep_ms(50);
	c = loopback();
	check(zero_code(c), "stop: and stays there (code %ld)", c);
	run_close(r);
	free(r);
}

static void scenario_leads(void)
{
	static const uint32_t leads[] = { 2000, 5000, 10000, 20000, 50000, 100000, 200000 };
	for (size_t i = 0; i < sizeof(leads) / sizeof(leads[0]); i++) {
		struct run *r = calloc(1, sizeof(*r));
		int e = run_open(r, 25000, true, leads[i], 1000);
		if (e == 0)
			e = run_start(r);
		for (int k = 0; e == 0 && k < 2000; k++)
			run_tick(r, NULL, 0);
		note("leads: %5u us: %u STIM_LOST in 2 s, %u late frames", leads[i], r->ev[MEAD_EVENT_STIM_LOST], r->late);
		run_close(r);
		free(r);
	}
}

static int modprobe(const char *args)
{
	const char *root = getenv("MEAD_GUEST_MODROOT");
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "modprobe %s%s %s >/dev/null 2>&1", root ? "-d " : "", root ? root : "", args);
	return system(cmd);
}

/* comedi_test goes away under a running driver (a forced removal detaches
 * the board as a USB unplug does): -ENODEV from then on, outputs not
 * touched again; loaded again afterwards for what follows. */
static void scenario_removal(uint32_t lead_us)
{
	struct run *r = run_begin("removal", lead_us, 1000, 300);
	if (!r)
		return;
	/* this program's own file keeps the module busy too */
	comedi_close(mine);
	mine = NULL;
	int rm = system("rmmod -f comedi_test >/dev/null 2>&1");
	check(rm == 0 && access(device, F_OK) != 0, "removal: rmmod -f comedi_test removes the board");
	int got = 0;
	for (int k = 0; k < 50; k++) {
		struct mead_frame f = { .first_sample = first_of(r, r->t), .n_samples = 25, .spikes = r->spk,
					.spike_capacity = 4096, .stim_results = r->res, .stim_result_capacity = 64,
					.events = r->evb, .event_capacity = 256 };
		got = r->h.ops->read_frame(r->h.state, r->t++, &f);
		if (got == -ENODEV) {
			check(f.flags & MEAD_FRAME_DEVICE_GONE, "removal: the frame says DEVICE_GONE");
			break;
		}
		sleep_ms(1);
	}
	check(got == -ENODEV, "removal: read_frame returns -ENODEV (%d)", got);
	struct mead_stim_pulse p = pulse(0, -20.0f, 200, 0);
	struct mead_stim_result res;
	int w = r->h.ops->write_stim(r->h.state, r->t, &p, 1, &res);
	check(w == -ENODEV && res.reason == MEAD_STIM_REASON_DEVICE_GONE, "removal: pulses refused, device gone (%d)", w);
	run_close(r);
	free(r);
	check(modprobe("comedi_test") == 0, "removal: comedi_test loaded again");
	for (int i = 0; i < 100 && access(device, F_OK) != 0; i++)
		sleep_ms(50);
	mine = comedi_open(device);
}

int main(int argc, char **argv)
{
	uint32_t lead_us = 20000;
	int first_arg = 1;
	for (; first_arg < argc; first_arg++) {
		if (strcmp(argv[first_arg], "--device") == 0 && first_arg + 1 < argc)
			device = argv[++first_arg];
		else if (strcmp(argv[first_arg], "--lead-us") == 0 && first_arg + 1 < argc)
			lead_us = (uint32_t)atoi(argv[++first_arg]);
		else
			break;
	}
	comedi_loglevel(0);
	mine = comedi_open(device);
	if (!mine || strcmp(comedi_get_driver_name(mine), "comedi_test") != 0) {
		printf("no comedi_test board at %s (modprobe comedi_test; runs in the kernel test guest)\n", device);
		return 77;
	}
	static const char *all[] = { "rates", "stream", "loopback", "underrun", "stop", "leads", "removal" };
	const char **which = first_arg < argc ? (const char **)argv + first_arg : all;
	int n = first_arg < argc ? argc - first_arg : (int)(sizeof(all) / sizeof(all[0]));
	for (int i = 0; i < n; i++) {
		if (strcmp(which[i], "rates") == 0)
			scenario_rates();
		else if (strcmp(which[i], "stream") == 0)
			scenario_stream(lead_us);
		else if (strcmp(which[i], "loopback") == 0)
			scenario_loopback(lead_us);
		else if (strcmp(which[i], "underrun") == 0)
			scenario_underrun(lead_us);
		else if (strcmp(which[i], "stop") == 0)
			scenario_stop(lead_us);
		else if (strcmp(which[i], "leads") == 0)
			scenario_leads();
		else if (strcmp(which[i], "removal") == 0)
			scenario_removal(lead_us);
		else {
			printf("unknown scenario '%s' (rates, stream, loopback, underrun, stop, leads, removal)\n", which[i]);
			return 2;
		}
	}
	if (mine)
		comedi_close(mine);
	printf("%d check(s) failed\n", failures);
	return failures ? 1 : 0;
}
