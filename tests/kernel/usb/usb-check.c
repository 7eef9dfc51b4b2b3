/* SPDX-License-Identifier: MIT */
/*
 * usb-check: mead-driver-usb, unmodified, driven as the loop drives it,
 * against a real protocol v2 device through the kernel's usbfs: in the
 * kernel test guest, the reference device (mead-usb-device on FunctionFS
 * and dummy_hcd).  Each scenario prints `key=value` lines and one verdict
 * line, `ok SCENARIO` or `not ok SCENARIO # why`, and exits 0 or 1; the
 * guest script (guest.sh) compares what it printed with the device's log.
 *
 *   usb-check [-p PID] [-c CHANNELS] [-t PERIOD_US] [-o KEY=VALUE]... SCENARIO [ARG]...
 *     info                      caps, endpoints, the describe() object
 *     stream SECONDS TRUTH      samples in order, every planted spike found
 *     stim                      pulses of every kind, their results
 *     hold                      a pulse far ahead, then the process waits to be killed
 *     unplug UDC_FILE UDC       unbind while streaming, then bind again
 *     stall SECONDS             the device halts its IN endpoint once
 *
 * The loop is emulated as the daemon runs it: a tick every period,
 * following the device's clock (frame.acquired), read_frame then
 * write_stim for the next tick.
 */
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/core/time.h"
#include "mead/driver.h"
#include "tests/lib/harness.h"

#define MAX_EV 65536
#define MAX_SPK 400000

struct run {
	struct harness h;
	struct mead_driver_caps caps;
	uint64_t t;                  /* next tick */
	uint64_t period_ns;
	uint64_t t0_ns;              /* wall clock of sample 0 */
	struct mead_frame f;
	int rc;
	struct mead_spike fspk[4096];
	struct mead_event fev[512];
	struct mead_stim_result fres[512];
	int16_t *raw;
	uint32_t raw_cap;
	uint64_t raw_next, raw_total, raw_jumps, raw_dups;
	struct mead_event *ev;
	uint32_t n_ev;
	struct mead_spike *spk;
	uint32_t n_spk;
	struct mead_stim_result res[4096];
	uint32_t n_res;
	uint32_t late_frames, gone_frames;
	int verdict;
	char why[512];
};

static const char *scenario = "?";
static uint32_t period_us = 1000;

static void fail(struct run *r, const char *fmt, ...)
{
	va_list ap;
	size_t n = strlen(r->why);
	va_start(ap, fmt);
	if (n < sizeof(r->why) - 2) {
		if (n)
			r->why[n++] = ';', r->why[n++] = ' ';
		vsnprintf(r->why + n, sizeof(r->why) - n, fmt, ap);
	}
	va_end(ap);
	r->verdict = 1;
}

static uint64_t first_of(const struct run *r, uint64_t t)
{
	return mead_tick_first_sample(t, r->period_ns, r->caps.sample_rate_hz);
}

static void sleep_until_ns(uint64_t t)
{
	struct timespec ts = { (time_t)(t / 1000000000ull), (long)(t % 1000000000ull) };
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* [from, to) lies in the loss events' ranges (the loop fell further
 * behind than the driver's ring: those samples are skipped, and said). */
static bool covered(const struct run *r, uint64_t from, uint64_t to)
{
	while (from < to) {
		bool moved = false;
		for (uint32_t i = 0; i < r->n_ev; i++) {
			const struct mead_event *e = &r->ev[i];
			if ((e->type == MEAD_EVENT_GAP || e->type == MEAD_EVENT_OVERFLOW) && from >= e->sample &&
			    from < e->sample + e->samples) {
				from = e->sample + e->samples;
				moved = true;
			}
		}
		if (!moved)
			return false;
	}
	return true;
}

static void collect(struct run *r)
{
	const struct mead_frame *f = &r->f;
	for (uint32_t i = 0; i < f->n_events && r->n_ev < MAX_EV; i++)
		r->ev[r->n_ev++] = f->events[i];
	for (uint32_t i = 0; i < f->n_stim_results && r->n_res < 4096; i++)
		r->res[r->n_res++] = f->stim_results[i];
	for (uint32_t i = 0; i < f->n_spikes && r->n_spk < MAX_SPK; i++)
		r->spk[r->n_spk++] = f->spikes[i];
	r->late_frames += (f->flags & MEAD_FRAME_LATE) != 0;
	r->gone_frames += (f->flags & MEAD_FRAME_DEVICE_GONE) != 0;
	if (f->raw_samples) {
		if (f->raw_first_sample < r->raw_next)
			r->raw_dups++;
		else if (f->raw_first_sample > r->raw_next && !covered(r, r->raw_next, f->raw_first_sample))
			r->raw_jumps++;
		r->raw_next = f->raw_first_sample + f->raw_samples;
		r->raw_total += f->raw_samples;
	}
}

/* One tick, when its samples are due by the device's clock; pulses for
 * the next tick after the read.  Returns read_frame's value. */
static int tick(struct run *r, const struct mead_stim_pulse *p, uint32_t n, struct mead_stim_result *res)
{
	uint64_t first = first_of(r, r->t), next = first_of(r, r->t + 1);
	/* a tick runs once its samples are due, at once when the device has
	 * them already (catching up, as the daemon's loop does) */
	if (r->f.acquired < next || r->rc != 0) {
		uint64_t due = r->t0_ns + (uint64_t)((double)next * 1e9 / r->caps.sample_rate_hz) + 200000;
		sleep_until_ns(due);
	}
	r->f = (struct mead_frame){
		.first_sample = first, .n_samples = (uint32_t)(next - first),
		.spikes = r->fspk, .spike_capacity = 4096,
		.raw = r->raw, .raw_channels = r->caps.raw_channels, .raw_capacity = r->raw_cap,
		.stim_results = r->fres, .stim_result_capacity = 512,
		.events = r->fev, .event_capacity = 512,
	};
	r->rc = r->h.ops->read_frame(r->h.state, r->t, &r->f);
	collect(r);
	if (n) {
		int s = r->h.ops->write_stim(r->h.state, r->t + 1, p, n, res);
		(void)s;
		for (uint32_t i = 0; i < n && r->n_res < 4096; i++)
			if (res[i].status != MEAD_STIM_PENDING)
				r->res[r->n_res++] = res[i];
	}
	r->t++;
	return r->rc;
}

static int run_ticks(struct run *r, uint64_t n)
{
	int bad = 0;
	for (uint64_t i = 0; i < n; i++)
		bad |= tick(r, NULL, 0, NULL) != 0;
	return bad;
}

static const struct mead_stim_result *result_of(const struct run *r, uint64_t sample, uint16_t electrode);

/* Ticks until every pulse given has its result, or `seconds` of ticks. */
static void run_until_settled(struct run *r, const struct mead_stim_pulse *p, uint32_t n, double seconds)
{
	uint64_t limit = (uint64_t)(seconds * 1e6 / period_us);
	for (uint64_t i = 0; i < limit; i++) {
		uint32_t k = 0;
		while (k < n && result_of(r, p[k].sample, p[k].electrode))
			k++;
		if (k == n)
			return;
		tick(r, NULL, 0, NULL);
	}
}

/* Events of each type, and the samples their ranges cover. */
struct tally {
	uint32_t n[32];
	uint64_t samples[32];
};

static struct tally tally(const struct run *r)
{
	struct tally t = { { 0 }, { 0 } };
	for (uint32_t i = 0; i < r->n_ev; i++) {
		uint32_t k = r->ev[i].type < 32 ? r->ev[i].type : 0;
		t.n[k]++;
		t.samples[k] += r->ev[i].samples;
	}
	return t;
}

static bool in_loss(const struct run *r, uint64_t s, uint64_t margin)
{
	for (uint32_t i = 0; i < r->n_ev; i++) {
		const struct mead_event *e = &r->ev[i];
		if ((e->type == MEAD_EVENT_GAP || e->type == MEAD_EVENT_OVERFLOW) && s + margin >= e->sample &&
		    s < e->sample + e->samples + margin)
			return true;
	}
	return false;
}

static const struct mead_stim_result *result_of(const struct run *r, uint64_t sample, uint16_t electrode)
{
	for (uint32_t i = 0; i < r->n_res; i++)
		if (r->res[i].pulse.sample == sample && r->res[i].pulse.electrode == electrode)
			return &r->res[i];
	return NULL;
}

static void print_desc(struct run *r)
{
	char d[8192];
	if (r->h.ops->describe(r->h.state, d, sizeof(d)) > 0)
		printf("describe=%s\n", d);
}

static long long desc_num(struct run *r, const char *key)
{
	char d[8192], pat[64];
	if (r->h.ops->describe(r->h.state, d, sizeof(d)) <= 0)
		return -1;
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	const char *p = strstr(d, pat);
	return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

static bool desc_has(struct run *r, const char *text)
{
	char d[8192];
	return r->h.ops->describe(r->h.state, d, sizeof(d)) > 0 && strstr(d, text);
}

static void print_summary(struct run *r)
{
	struct tally t = tally(r);
	printf("stream ticks=%llu raw_samples=%llu raw_jumps=%llu raw_repeats=%llu gaps=%u gap_samples=%llu "
	       "overflows=%u overflow_samples=%llu late_events=%u late_samples=%llu late_frames=%u stalls=%u "
	       "stim_lost=%u\n", (unsigned long long)r->t, (unsigned long long)r->raw_total,
	       (unsigned long long)r->raw_jumps, (unsigned long long)r->raw_dups, t.n[MEAD_EVENT_GAP],
	       (unsigned long long)t.samples[MEAD_EVENT_GAP], t.n[MEAD_EVENT_OVERFLOW],
	       (unsigned long long)t.samples[MEAD_EVENT_OVERFLOW], t.n[MEAD_EVENT_LATE],
	       (unsigned long long)t.samples[MEAD_EVENT_LATE], r->late_frames, t.n[MEAD_EVENT_STALL],
	       t.n[MEAD_EVENT_STIM_LOST]);
	for (uint32_t i = 0, k = 0; i < r->n_ev && k < 20; i++) {
		const struct mead_event *e = &r->ev[i];
		if (e->type == MEAD_EVENT_GAP || e->type == MEAD_EVENT_OVERFLOW || e->type == MEAD_EVENT_STALL ||
		    e->type == MEAD_EVENT_STIM_LOST) {
			printf("event type=%u sample=%llu samples=%u value=%d\n", e->type, (unsigned long long)e->sample,
			       e->samples, e->value);
			k++;
		}
	}
}

/* Raw is one run of samples, in order, from sample 0: lost ones are
 * zeros inside the loss events' ranges, never missing. */
static void check_raw(struct run *r)
{
	if (r->raw_jumps || r->raw_dups)
		fail(r, "raw not contiguous: %llu jumps, %llu repeats", (unsigned long long)r->raw_jumps,
		     (unsigned long long)r->raw_dups);
}

/* Every spike the device planted (its truth file: start,sample,electrode)
 * found once within a sample, unless its samples were lost; nothing else
 * found. */
static void check_truth(struct run *r, const char *path, uint64_t upto)
{
	FILE *fp = fopen(path, "r");
	if (!fp) {
		fail(r, "truth file %s: %s", path, strerror(errno));
		return;
	}
	char line[128];
	uint32_t want = 0, found = 0, off1 = 0, excused = 0, starts = 0;
	bool *used = calloc(r->n_spk + 1, sizeof(bool));
	uint64_t max_start = 0;
	/* the last START's spikes: this run's */
	while (fgets(line, sizeof(line), fp)) {
		unsigned long long st, s;
		unsigned e;
		if (sscanf(line, "%llu,%llu,%u", &st, &s, &e) == 3 && st > max_start)
			max_start = st;
	}
	rewind(fp);
	while (fgets(line, sizeof(line), fp)) {
		unsigned long long st, s;
		unsigned e;
		if (sscanf(line, "%llu,%llu,%u", &st, &s, &e) != 3 || st != max_start)
			continue;
		starts = (uint32_t)st;
		/* the detector learns the noise over its first 100 ms */
		if (s < r->caps.sample_rate_hz / 5 || s + 40 >= upto || e >= r->caps.electrode_count)
			continue;
		if (in_loss(r, s, 40)) {
			excused++;
			continue;
		}
		want++;
		bool hit = false;
		for (uint32_t j = 0; j < r->n_spk && !hit; j++) {
			if (used[j] || r->spk[j].electrode != e || r->spk[j].sample + 1 < s || r->spk[j].sample > s + 1)
				continue;
			used[j] = hit = true;
			found++;
			off1 += r->spk[j].sample != s;
		}
		if (!hit && want - found <= 5)
			printf("missed sample=%llu electrode=%u\n", s, e);
	}
	fclose(fp);
	uint32_t extra = 0;
	for (uint32_t j = 0; j < r->n_spk; j++) {
		const struct mead_spike *k = &r->spk[j];
		if (used[j] || k->sample < r->caps.sample_rate_hz / 5 || k->sample + 40 >= upto || in_loss(r, k->sample, 40))
			continue;
		if (++extra <= 5)
			printf("extra sample=%llu electrode=%u\n", (unsigned long long)k->sample, k->electrode);
	}
	free(used);
	printf("truth start=%u planted=%u found=%u one_sample_off=%u excused_by_loss=%u extra=%u\n", starts, want,
	       found, off1, excused, extra);
	if (want == 0)
		fail(r, "no planted spike in the run");
	if (found != want)
		fail(r, "%u of %u planted spikes not found within a sample", want - found, want);
	if (extra)
		fail(r, "%u detections not planted", extra);
}

static int open_start(struct run *r)
{
	int e = harness_open(&r->h);
	if (e < 0) {
		fail(r, "open: %s", r->h.err);
		return e;
	}
	r->h.ops->get_caps(r->h.state, &r->caps);
	r->period_ns = period_us * 1000ull;
	r->raw_cap = (uint32_t)(first_of(r, 1) + 1) * 64;
	r->raw = calloc((size_t)r->raw_cap * r->caps.raw_channels, sizeof(int16_t));
	e = r->h.ops->start(r->h.state, r->h.err, sizeof(r->h.err));
	r->t0_ns = mead_now_ns();
	if (e < 0)
		fail(r, "start: %s", r->h.err);
	return e;
}

static void sc_info(struct run *r)
{
	if (harness_open(&r->h) < 0) {
		fail(r, "open: %s", r->h.err);
		return;
	}
	r->h.ops->get_caps(r->h.state, &r->caps);
	printf("caps electrodes=%u rate=%u uv_per_count=%g flags=0x%x max_ua=%g max_phase_us=%u max_pulses=%u "
	       "stimulators=%u\n", r->caps.electrode_count, r->caps.sample_rate_hz, r->caps.uv_per_count,
	       r->caps.flags, r->caps.max_amplitude_ua, r->caps.max_phase_us, r->caps.max_pulses_per_tick,
	       r->caps.stimulators);
	print_desc(r);
	if (!(r->caps.flags & MEAD_CAP_DEVICE_CLOCK) || !(r->caps.flags & MEAD_CAP_STIMULATE))
		fail(r, "caps flags 0x%x", r->caps.flags);
	if (r->caps.stimulators != 1)
		fail(r, "%u stimulators, the reference device has one", r->caps.stimulators);
	if (!desc_has(r, "\"protocol\":2"))
		fail(r, "not protocol 2");
}

static void sc_stream(struct run *r, double seconds, const char *truth)
{
	if (open_start(r) < 0)
		return;
	uint64_t ticks = (uint64_t)(seconds * 1e6 / period_us);
	int bad = run_ticks(r, ticks);
	/* what the device still owes comes as it catches up */
	for (int i = 0; i < 200 && r->raw_next < first_of(r, ticks); i++)
		tick(r, NULL, 0, NULL);
	print_summary(r);
	print_desc(r);
	if (bad)
		fail(r, "read_frame failed");
	check_raw(r);
	if (r->raw_next < first_of(r, ticks))
		fail(r, "raw ends at %llu, the run at %llu", (unsigned long long)r->raw_next,
		     (unsigned long long)first_of(r, ticks));
	/* the device writes its truth file out every 250 ms and at STOP */
	r->h.ops->stop(r->h.state);
	usleep(500000);
	check_truth(r, truth, r->raw_next);
}

static void print_result(const char *what, uint32_t seq, uint16_t idx, const struct mead_stim_pulse *p,
			 const struct mead_stim_result *x)
{
	printf("pulse %s seq=%u idx=%u electrode=%u asked=%llu status=%d reason=%d sample=%llu\n", what, seq, idx,
	       p->electrode, (unsigned long long)p->sample, x ? x->status : -1, x ? x->reason : -1,
	       x ? (unsigned long long)x->sample : 0ull);
}

static void expect(struct run *r, const char *what, uint32_t seq, uint16_t idx, const struct mead_stim_pulse *p,
		   int status, int reason, uint64_t sample)
{
	const struct mead_stim_result *x = result_of(r, p->sample, p->electrode);
	print_result(what, seq, idx, p, x);
	if (!x)
		fail(r, "%s: no result", what);
	else if (x->status != status || (status == MEAD_STIM_REFUSED && x->reason != reason) ||
		 (status == MEAD_STIM_DELIVERED && sample && x->sample != sample))
		fail(r, "%s: status %u reason %u sample %llu", what, x->status, x->reason, (unsigned long long)x->sample);
}

static void sc_stim(struct run *r)
{
	if (open_start(r) < 0)
		return;
	run_ticks(r, 1000000 / period_us);
	uint32_t seq = 0;
	/* command 0: on time, in the past, busy, out of range */
	uint64_t next = first_of(r, r->t + 1);
	/* "on time" 200 ms ahead: a guest's vCPU can stall for tens of ms */
	const uint64_t lead = r->caps.sample_rate_hz / 5;
	struct mead_stim_pulse a[4] = {
		{ .sample = next + lead, .electrode = 1, .amplitude_ua = -20.0f, .phase_us = 200, .interphase_us = 50 },
		{ .sample = next - 50, .electrode = 2, .amplitude_ua = 15.0f, .phase_us = 100 },
		{ .sample = next + lead + 5, .electrode = 3, .amplitude_ua = -20.0f, .phase_us = 200, .interphase_us = 50 },
		{ .sample = next + lead + 400, .electrode = 4, .amplitude_ua = -200.0f, .phase_us = 100 },
	};
	struct mead_stim_result res[16];
	tick(r, a, 4, res);
	for (int i = 0; i < 4; i++)
		if (res[i].status != MEAD_STIM_PENDING)
			fail(r, "pulse %d not pending after write_stim (%u)", i, res[i].status);
	run_until_settled(r, a, 4, 5);
	expect(r, "on-time", seq, 0, &a[0], MEAD_STIM_DELIVERED, 0, a[0].sample);
	expect(r, "late", seq, 1, &a[1], MEAD_STIM_DELIVERED, 0, 0);
	const struct mead_stim_result *l = result_of(r, a[1].sample, 2);
	if (l && l->sample <= a[1].sample)
		fail(r, "the late pulse is said to start at %llu, asked %llu", (unsigned long long)l->sample,
		     (unsigned long long)a[1].sample);
	expect(r, "busy", seq, 2, &a[2], MEAD_STIM_REFUSED, MEAD_STIM_REASON_BUSY, 0);
	expect(r, "range", seq, 3, &a[3], MEAD_STIM_REFUSED, MEAD_STIM_REASON_RANGE, 0);
	seq++;
	/* command 1: far ahead, then outputs off */
	next = first_of(r, r->t + 1);
	struct mead_stim_pulse b[2] = {
		{ .sample = next + 25000, .electrode = 5, .amplitude_ua = 10.0f, .phase_us = 100 },
		{ .sample = next + 26000, .electrode = 6, .amplitude_ua = 10.0f, .phase_us = 100 },
	};
	tick(r, b, 2, res);
	run_ticks(r, 20);
	r->h.ops->stop_outputs(r->h.state);
	run_until_settled(r, b, 2, 5);
	expect(r, "cancelled", seq, 0, &b[0], MEAD_STIM_REFUSED, MEAD_STIM_REASON_CANCELLED, 0);
	expect(r, "cancelled", seq, 1, &b[1], MEAD_STIM_REFUSED, MEAD_STIM_REASON_CANCELLED, 0);
	seq++;
	/* command 2: ten against the device's queue of eight */
	next = first_of(r, r->t + 1);
	struct mead_stim_pulse c[10];
	for (int i = 0; i < 10; i++)
		c[i] = (struct mead_stim_pulse){ .sample = next + lead + 100 * (uint64_t)i, .electrode = (uint16_t)i % 8,
						 .amplitude_ua = 5.0f, .phase_us = 100 };
	tick(r, c, 10, res);
	run_until_settled(r, c, 10, 5);
	for (int i = 0; i < 10; i++)
		expect(r, i < 8 ? "queued" : "queue-full", seq, (uint16_t)i, &c[i],
		       i < 8 ? MEAD_STIM_DELIVERED : MEAD_STIM_REFUSED, MEAD_STIM_REASON_QUEUE_FULL,
		       i < 8 ? c[i].sample : 0);
	print_summary(r);
	print_desc(r);
	r->h.ops->stop(r->h.state);
}

static void sc_hold(struct run *r)
{
	if (open_start(r) < 0)
		return;
	run_ticks(r, 500000 / period_us);
	uint64_t next = first_of(r, r->t + 1);
	struct mead_stim_pulse p = { .sample = next + 2 * r->caps.sample_rate_hz, .electrode = 1,
				     .amplitude_ua = 10.0f, .phase_us = 100 };
	struct mead_stim_result res;
	tick(r, &p, 1, &res);
	run_ticks(r, 10);
	printf("hold queued seq=0 idx=0 asked=%llu\n", (unsigned long long)p.sample);
	fflush(stdout);
	/* the host stops here, as a killed one does: no command, no read */
	for (;;)
		pause();
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, text, strlen(text));
	int e = n < 0 ? -errno : 0;
	close(fd);
	return e;
}

static void sc_unplug(struct run *r, const char *udc_file, const char *udc)
{
	if (open_start(r) < 0)
		return;
	run_ticks(r, 1000000 / period_us);
	uint64_t next = first_of(r, r->t + 1);
	struct mead_stim_pulse p = { .sample = next + r->caps.sample_rate_hz, .electrode = 2, .amplitude_ua = 10.0f,
				     .phase_us = 100 };
	struct mead_stim_result res;
	tick(r, &p, 1, &res);
	run_ticks(r, 5);
	/* unplug: the gadget leaves the bus */
	uint64_t t_unplug = r->t;
	int e = write_file(udc_file, "\n");
	if (e < 0) {
		fail(r, "unbind %s: %s", udc_file, strerror(-e));
		return;
	}
	uint64_t gone_at = 0;
	for (int i = 0; i < 2000 && !gone_at; i++)
		if (tick(r, NULL, 0, NULL) == -ENODEV)
			gone_at = r->t - 1;
	printf("unplug at_tick=%llu enodev_at_tick=%llu ticks=%llu\n", (unsigned long long)t_unplug,
	       (unsigned long long)gone_at, (unsigned long long)(gone_at - t_unplug + 1));
	if (!gone_at)
		fail(r, "read_frame never said -ENODEV");
	else if (gone_at - t_unplug + 1 > 2)
		fail(r, "-ENODEV %llu ticks after the unplug", (unsigned long long)(gone_at - t_unplug + 1));
	const struct mead_stim_result *x = result_of(r, p.sample, 2);
	print_result("pending-at-unplug", 0, 0, &p, x);
	if (!x || x->status != MEAD_STIM_REFUSED || x->reason != MEAD_STIM_REASON_UNKNOWN)
		fail(r, "the pending pulse did not settle as unknown");
	struct mead_stim_pulse q = { .sample = first_of(r, r->t + 1), .electrode = 3, .amplitude_ua = 10.0f,
				     .phase_us = 100 };
	tick(r, &q, 1, &res);
	if (res.status != MEAD_STIM_REFUSED || res.reason != MEAD_STIM_REASON_DEVICE_GONE)
		fail(r, "stimulation while away: status %u reason %u", res.status, res.reason);
	print_desc(r);
	if (!desc_has(r, "\"link\":\"gone\"") || !desc_has(r, "\"stimulation\":\"off\""))
		fail(r, "describe does not say gone and off");
	run_ticks(r, 500000 / period_us);
	/* plug back */
	e = write_file(udc_file, udc);
	if (e < 0) {
		fail(r, "bind %s: %s", udc_file, strerror(-e));
		return;
	}
	uint64_t t_plug = r->t, back_at = 0;
	for (int i = 0; i < 20000 && !back_at; i++)
		if (tick(r, NULL, 0, NULL) == 0)
			back_at = r->t - 1;
	printf("replug at_tick=%llu back_at_tick=%llu\n", (unsigned long long)t_plug, (unsigned long long)back_at);
	if (!back_at) {
		fail(r, "the device did not come back");
		return;
	}
	run_ticks(r, 1000000 / period_us);
	next = first_of(r, r->t + 1);
	struct mead_stim_pulse s = { .sample = next + r->caps.sample_rate_hz / 5, .electrode = 4, .amplitude_ua = 10.0f,
				     .phase_us = 100 };
	tick(r, &s, 1, &res);
	run_until_settled(r, &s, 1, 5);
	/* the command seq goes on over the reattach: this is the second.  A
	 * guest's loop may lag the device, so the pulse may start late: the
	 * guest script checks the lateness against the device's log, which
	 * proves the mapping of samples after the reattach */
	expect(r, "after-replug", 1, 0, &s, MEAD_STIM_DELIVERED, 0, 0);
	const struct mead_stim_result *y = result_of(r, s.sample, 4);
	if (y && y->status == MEAD_STIM_DELIVERED)
		printf("after-replug late_by=%lld\n", (long long)y->sample - (long long)s.sample);
	print_summary(r);
	print_desc(r);
	if (desc_num(r, "reattaches") != 1 || desc_num(r, "unplugs") != 1)
		fail(r, "unplugs %lld reattaches %lld", desc_num(r, "unplugs"), desc_num(r, "reattaches"));
	r->h.ops->stop(r->h.state);
}

static void sc_stall(struct run *r, double seconds)
{
	if (open_start(r) < 0)
		return;
	run_ticks(r, (uint64_t)(seconds * 1e6 / period_us));
	print_summary(r);
	print_desc(r);
	const struct mead_event *st = NULL;
	for (uint32_t i = 0; i < r->n_ev && !st; i++)
		if (r->ev[i].type == MEAD_EVENT_STALL)
			st = &r->ev[i];
	if (!st || st->value != 1)
		fail(r, "no STALL event with value 1");
	if (desc_num(r, "stalls_cleared") != 1)
		fail(r, "stalls_cleared %lld", desc_num(r, "stalls_cleared"));
	check_raw(r);
	if (r->raw_next + 2 * first_of(r, 1) < first_of(r, r->t))
		fail(r, "samples stopped at %llu", (unsigned long long)r->raw_next);
	r->h.ops->stop(r->h.state);
}

static void on_fault(int sig)
{
	void *bt[64];
	int n = backtrace(bt, 64);
	static const char msg[] = "usb-check: fatal signal; backtrace:\n";
	ssize_t w = write(2, msg, sizeof(msg) - 1);
	(void)w;
	backtrace_symbols_fd(bt, n, 2);
	signal(sig, SIG_DFL);
	raise(sig);
}

int main(int argc, char **argv)
{
	static struct run run;
	signal(SIGSEGV, on_fault);
	signal(SIGABRT, on_fault);
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct run *r = &run;
	unsigned channels = 8;
	const char *pid = NULL;
	char *opts[32];
	int n_opts = 0, c;
	while ((c = getopt(argc, argv, "p:c:t:o:")) != -1) {
		if (c == 't')
			period_us = (uint32_t)atoi(optarg);
		else if (c == 'p')
			pid = optarg;
		else if (c == 'c')
			channels = (unsigned)atoi(optarg);
		else if (c == 'o' && n_opts < 32)
			opts[n_opts++] = optarg;
		else
			return 2;
	}
	if (optind >= argc) {
		fprintf(stderr, "usage: usb-check [-p PID] [-c CHANNELS] [-t PERIOD_US] [-o KEY=VALUE]... "
			"info|stream|stim|hold|unplug|stall ...\n");
		return 2;
	}
	scenario = argv[optind];
	r->ev = calloc(MAX_EV, sizeof(*r->ev));
	r->spk = calloc(MAX_SPK, sizeof(*r->spk));
	harness_layout60(&r->h);
	r->h.layout.count = channels < 60 ? channels : 60;
	if (!harness_load(&r->h, "usb")) {
		printf("not ok %s # cannot load mead-driver-usb.so from $MEAD_DRIVER_PATH\n", scenario);
		return 1;
	}
	harness_defaults(&r->h, period_us);
	r->h.cfg.virtual_clock = false;
	r->h.cfg.want_raw = true;
	harness_set(&r->h, "reattach_interval_ms", "5");
	if (pid)
		harness_set(&r->h, "pid", pid);
	for (int i = 0; i < n_opts; i++) {
		char *eq = strchr(opts[i], '=');
		if (!eq)
			return 2;
		*eq = '\0';
		harness_set(&r->h, opts[i], eq + 1);
	}
	char **a = argv + optind + 1;
	int na = argc - optind - 1;
	if (strcmp(scenario, "info") == 0)
		sc_info(r);
	else if (strcmp(scenario, "stream") == 0 && na == 2)
		sc_stream(r, atof(a[0]), a[1]);
	else if (strcmp(scenario, "stim") == 0)
		sc_stim(r);
	else if (strcmp(scenario, "hold") == 0)
		sc_hold(r);
	else if (strcmp(scenario, "unplug") == 0 && na == 2)
		sc_unplug(r, a[0], a[1]);
	else if (strcmp(scenario, "stall") == 0 && na == 1)
		sc_stall(r, atof(a[0]));
	else {
		fprintf(stderr, "usb-check: unknown scenario or arguments: %s\n", scenario);
		return 2;
	}
	if (r->verdict)
		printf("not ok %s # %s\n", scenario, r->why);
	else
		printf("ok %s\n", scenario);
	harness_unload(&r->h);
	return r->verdict;
}
