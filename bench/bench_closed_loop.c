/* SPDX-License-Identifier: MIT */
/*
 * mead-bench closed-loop: spike-to-stimulation latency of the rig path, the
 * daemon's own start sequence and loop included.  The daemon runs as a
 * process with the `respond` protocol (every spike answered by a pulse on
 * the target electrode in the next window) and records the run; the bench
 * then holds the recording against what the device itself saw: the spikes
 * it carried and the pulses it received and played, each at its sample.
 *
 * Devices: the emulated Comedi board and USB front-end of the driver tests
 * (under umockdev-wrapper), or a real USB device running the reference
 * firmware (gadget/mead-usb-device), whose truth file and log say the same.
 */
#include <errno.h>
#include <sched.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/closed_loop.h"
#include "mead-build-config.h"
#include "lib/core/recording.h"
#include "lib/core/time.h"
#include "mead/wire.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: umockdev-wrapper mead-bench closed-loop [--driver comedi|usb|both] [options]\n"
		"       mead-bench closed-loop --gadget-log LOG --gadget-truth CSV [options]\n"
		"       mead-bench closed-loop --driver null [options]\n"
		"Runs the daemon with the respond protocol against a device and measures, in\n"
		"the device's own samples, the time from a spike to the stimulation it triggers;\n"
		"checks that the daemon's recording holds every pulse the device played, at the\n"
		"sample it played it, and nothing else.\n"
		"  --driver D        emulated comedi, usb, or both (default both; needs umockdev-wrapper);\n"
		"                    null: no device, the loop alone (random spikes, pulses delivered as asked)\n"
		"  --gadget-log F    a USB device running mead-usb-device --log F --truth CSV instead\n"
		"  --gadget-truth F  its truth file\n"

		"  --seconds S       run length (default 5)\n"
		"  --period-us P     loop period (default 1000)\n"
		"  --rate HZ         sample rate (default 25000)\n"
		"  --channels N      electrodes (default 60; the gadget's --channels)\n"
		"  --spike-hz H      planted (emulated devices) or random (null) spikes per second (default 20)\n"
		"  --target E        electrode stimulated (default: the last)\n"
		"  --priority N      the daemon's loop.priority (default 50)\n"
		"  --keep DIR        keep the configuration, log and recording in DIR\n"
		"  -o KEY=VALUE      more configuration for the daemon\n");
}

/* ---- the device's truth ---- */

void cl_truth_spike(struct cl_truth *t, uint64_t sample, uint16_t electrode)
{
	if (t->n_spikes == t->cap_spikes) {
		t->cap_spikes = t->cap_spikes ? 2 * t->cap_spikes : 1024;
		t->spikes = realloc(t->spikes, t->cap_spikes * sizeof(*t->spikes));
		if (!t->spikes)
			abort();
	}
	t->spikes[t->n_spikes++] = (struct cl_spike){ sample, electrode };
}

struct cl_pulse *cl_truth_pulse(struct cl_truth *t)
{
	if (t->n_pulses == t->cap_pulses) {
		t->cap_pulses = t->cap_pulses ? 2 * t->cap_pulses : 1024;
		t->pulses = realloc(t->pulses, t->cap_pulses * sizeof(*t->pulses));
		if (!t->pulses)
			abort();
	}
	struct cl_pulse *p = &t->pulses[t->n_pulses++];
	memset(p, 0, sizeof(*p));
	return p;
}

void cl_truth_clear(struct cl_truth *t)
{
	free(t->spikes);
	free(t->pulses);
	memset(t, 0, sizeof(*t));
}

/* ---- the daemon ---- */

static void mead_path(char *buf, size_t len)
{
	const char *env = getenv("MEAD_BIN");
	if (env)
		snprintf(buf, len, "%s", env);
	else
		snprintf(buf, len, "%s/daemon/mead", MEAD_BUILD_ROOT);
}

int cl_run_daemon(const struct cl_opts *o, const char *dir, const char *driver_yaml)
{
	char cfg[512], log[512], rec[512];
	snprintf(cfg, sizeof(cfg), "%s/mead.yaml", dir);
	snprintf(log, sizeof(log), "%s/mead.log", dir);
	snprintf(rec, sizeof(rec), "%s/run.mrec", dir);
	FILE *f = fopen(cfg, "w");
	if (!f) {
		fprintf(stderr, "closed-loop: cannot write %s: %s\n", cfg, strerror(errno));
		return -1;
	}
	fprintf(f,
		"rig:\n  name: bench-closed-loop\n"
		"loop:\n  period_us: %u\n  clock: realtime\n  priority: %u\n  duration_s: %g\n"
		"layout:\n",
		o->period_us, o->priority, o->seconds);
	if (o->channels == 60)
		fprintf(f, "  preset: grid-6x10\n");
	else
		fprintf(f, "  preset: custom\n  rows: 1\n  cols: %u\n  pitch_um: 200\n", o->channels);
	fprintf(f,
		"driver:\n%s"
		"protocol:\n  autostart: respond\n  respond:\n    target: %u\n    dead_ms: 10\n"
		"streams:\n  pub: ipc:///tmp/mead-closed-loop-%d.pub\n  control: ipc:///tmp/mead-closed-loop-%d.control\n"
		"recording:\n  enabled: true\n  path: %s\n  overwrite: true\n",
		driver_yaml, o->target, (int)getpid(), (int)getpid(), rec);
	fclose(f);

	char mead[4096];
	mead_path(mead, sizeof(mead));
	char *argv[8 + 2 * 16] = { mead, "-c", cfg };
	int na = 3;
	for (int i = 0; i < o->n_extra; i++) {
		argv[na++] = "-o";
		argv[na++] = (char *)o->extra[i];
	}
	argv[na] = NULL;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		FILE *l = freopen(log, "w", stdout);
		if (l)
			dup2(fileno(l), 2);
		execv(mead, argv);
		fprintf(stderr, "cannot run %s: %s\n", mead, strerror(errno));
		_exit(127);
	}
	/* the sockets stay off the run's folder, which may be on a file system
	 * without them (9p); the run plus start and stop; a daemon that does not
	 * end is stopped */
	double deadline = mead_now_s() + o->seconds + 60;
	int st = 0;
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			break;
		if (mead_now_s() > deadline) {
			kill(pid, SIGTERM);
			sleep(2);
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			fprintf(stderr, "closed-loop: the daemon did not end within %.0f s\n", o->seconds + 60);
			break;
		}
		struct timespec ts = { 0, 50 * 1000000L };
		nanosleep(&ts, NULL);
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "closed-loop: %s -c %s ended with status %d%s; its log (%s) ends:\n", mead, cfg,
			WIFEXITED(st) ? WEXITSTATUS(st) : -1, WIFSIGNALED(st) ? " (killed)" : "", log);
		char cmd[1200];
		snprintf(cmd, sizeof(cmd), "tail -n 15 '%s' >&2", log);
		if (system(cmd) != 0)
			fprintf(stderr, "(no log)\n");
		return -1;
	}
	return 0;
}

/* ---- the daemon's record ---- */

struct rec_stim {
	uint64_t sample, requested;
	uint16_t electrode, flags;
};

struct record {
	struct rec_stim *stims;
	uint32_t n_stims, cap;
	struct cl_truth seen;        /* the spikes the loop saw, the pulses it asked for and had refused */
	uint64_t spikes;
	uint64_t refused[256];
	uint64_t events[32];
	uint64_t late_samples;
};

static int read_record(const char *path, struct record *r)
{
	struct mead_rec_reader *rd;
	char err[256];
	if (mead_rec_open(path, &rd, err, sizeof(err)) < 0) {
		fprintf(stderr, "closed-loop: %s\n", err);
		return -1;
	}
	struct mead_rec_record rr;
	int x;
	while ((x = mead_rec_next(rd, &rr)) != 0) {
		if (x < 0)
			continue;
		const struct mead_wire_header *h = &rr.header;
		for (uint32_t i = 0; i < h->count; i++) {
			const uint8_t *b = rr.payload + (size_t)i * h->record_size;
			if (h->kind == MEAD_KIND_SPIKES && h->record_size >= sizeof(struct mead_spike)) {
				struct mead_spike sp;
				memcpy(&sp, b, sizeof(sp));
				r->spikes++;
				cl_truth_spike(&r->seen, le64toh(sp.sample), le16toh(sp.electrode));
			} else if (h->kind == MEAD_KIND_STIM && h->record_size >= sizeof(struct mead_wire_stim)) {
				struct mead_wire_stim s;
				memcpy(&s, b, sizeof(s));
				if (r->n_stims == r->cap) {
					r->cap = r->cap ? 2 * r->cap : 1024;
					r->stims = realloc(r->stims, r->cap * sizeof(*r->stims));
					if (!r->stims)
						abort();
				}
				r->stims[r->n_stims++] = (struct rec_stim){ le64toh(s.pulse.sample), le64toh(s.requested_sample),
									   le16toh(s.pulse.electrode), le16toh(s.pulse.flags) };
				struct cl_pulse *p = cl_truth_pulse(&r->seen);
				p->requested = le64toh(s.requested_sample);
				p->started = le64toh(s.pulse.sample);
				p->electrode = le16toh(s.pulse.electrode);
				p->has_requested = p->played = true;
			} else if (h->kind == MEAD_KIND_EVENTS && h->record_size >= sizeof(struct mead_event)) {
				struct mead_event e;
				memcpy(&e, b, sizeof(e));
				uint32_t type = le32toh(e.type);
				if (type < 32)
					r->events[type]++;
				if (type == MEAD_EVENT_STIM_REFUSED) {
					r->refused[(uint32_t)le32toh((uint32_t)e.value) & 255u]++;
					struct cl_pulse *p = cl_truth_pulse(&r->seen);
					p->requested = le64toh(e.sample);
					p->electrode = le16toh(e.electrode);
					p->has_requested = true;
				}
				if (type == MEAD_EVENT_LATE)
					r->late_samples += le32toh(e.samples);
			}
		}
	}
	mead_rec_close(rd);
	return 0;
}

/* ---- figures ---- */

static uint64_t tick_of(uint64_t sample, const struct cl_opts *o)
{
	uint32_t pns = o->period_us * 1000u;
	uint64_t t = (uint64_t)((double)sample * 1e9 / ((double)pns * o->rate));
	while (t > 0 && mead_tick_first_sample(t, pns, o->rate) > sample)
		t--;
	while (mead_tick_first_sample(t + 1, pns, o->rate) <= sample)
		t++;
	return t;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static int64_t pct(const int64_t *v, uint32_t n, double p)
{
	return n ? v[(uint32_t)(p * (n - 1) + 0.5)] : 0;
}

/* "name: what p50=.. p99=.. max=.." of n values (sorted here) in unit / div */
static void dist(const char *name, const char *what, int64_t *v, uint32_t n, double div, const char *fmt)
{
	if (!n)
		return;
	qsort(v, n, sizeof(*v), cmp_i64);
	char a[32], b[32], c[32], d[32];
	snprintf(a, sizeof(a), fmt, (double)v[0] / div);
	snprintf(b, sizeof(b), fmt, (double)pct(v, n, 0.5) / div);
	snprintf(c, sizeof(c), fmt, (double)pct(v, n, 0.99) / div);
	snprintf(d, sizeof(d), fmt, (double)v[n - 1] / div);
	printf("%s: %s min=%s p50=%s p99=%s max=%s\n", name, what, a, b, c, d);
}

int cl_report(const struct cl_opts *o, const char *name, const char *dir, const struct cl_truth *t,
	      uint32_t *ret_ticks_p99)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/run.mrec", dir);
	struct record r = { 0 };
	if (read_record(path, &r) < 0)
		return -1;
	int rc = 0;
	if (!t) {
		/* no device: what the loop saw and asked for is all there is */
		t = &r.seen;
		printf("%s: no device truth: the spikes the loop detected, the pulses it asked for\n", name);
	}

	/* The record against the device: each recorded pulse with the played
	 * one nearest to it on its electrode, within a tick.  Where the driver
	 * can only estimate where its output stream stands on the input clock
	 * (Comedi's software-triggered AO), the offsets are that estimate's
	 * error. */
	uint32_t played = 0, matched = 0, exact = 0, phantom = 0, unrecorded = 0, late = 0, n_off = 0;
	uint64_t tol = (uint64_t)o->rate * o->period_us / 1000000u;
	int64_t *off = calloc((size_t)r.n_stims + 1, sizeof(int64_t));
	bool *taken = calloc((size_t)t->n_pulses + 1, sizeof(bool));
	for (uint32_t i = 0; i < r.n_stims; i++) {
		const struct rec_stim *s = &r.stims[i];
		late += (s->flags & MEAD_STIM_LATE) != 0;
		int64_t best = INT64_MAX;
		uint32_t bk = 0;
		for (uint32_t k = 0; k < t->n_pulses; k++) {
			const struct cl_pulse *p = &t->pulses[k];
			if (!p->played || taken[k] || p->electrode != s->electrode)
				continue;
			int64_t d = (int64_t)s->sample - (int64_t)p->started;
			if (llabs(d) <= (int64_t)tol && llabs(d) < llabs(best)) {
				best = d;
				bk = k;
			}
		}
		if (best == INT64_MAX) {
			phantom++;
			if (phantom <= 3)
				printf("%s: recorded pulse at sample %" PRIu64 " (asked for %" PRIu64 ") on electrode %u: the device "
				       "played none within a tick of it\n", name, s->sample, s->requested, s->electrode);
			continue;
		}
		taken[bk] = true;
		matched++;
		exact += best == 0;
		off[n_off++] = llabs(best);
	}
	for (uint32_t k = 0; k < t->n_pulses; k++) {
		if (!t->pulses[k].played)
			continue;
		played++;
		if (!taken[k] && ++unrecorded <= 3)
			printf("%s: the device played a pulse at sample %" PRIu64 " on electrode %u that is not in the record\n", name,
			       t->pulses[k].started, t->pulses[k].electrode);
	}
	if (getenv("MEAD_BENCH_VERBOSE")) {
		for (uint32_t i = 0; i < r.n_stims; i++)
			printf("%s: record: %" PRIu64 " asked %" PRIu64 " electrode %u\n", name, r.stims[i].sample,
			       r.stims[i].requested, r.stims[i].electrode);
		for (uint32_t k = 0; k < t->n_pulses; k++)
			printf("%s: device: %s %" PRIu64 " electrode %u\n", name, t->pulses[k].played ? "played" : "not played",
			       t->pulses[k].started, t->pulses[k].electrode);
	}
	free(taken);
	uint64_t refused = 0;
	for (int i = 0; i < 256; i++)
		refused += r.refused[i];
	if (t != &r.seen)
		printf("%s: record vs device: %u pulses played by the device, %u recorded (%u late), %u at the very sample the "
		       "device played them, %u recorded but not played, %u played but not recorded; %" PRIu64 " refused\n",
		       name, played, r.n_stims, late, exact, phantom, unrecorded, refused);
	if (n_off > exact)
		dist(name, "recorded sample - played sample, |samples|:", off, n_off, 1, "%.0f");
	free(off);
	for (int i = 0; i < 256; i++)
		if (r.refused[i])
			printf("%s: refused %s: %" PRIu64 "\n", name, mead_stim_reason_name((uint32_t)i), r.refused[i]);
	printf("%s: events: late %" PRIu64 " (%" PRIu64 " samples), gap %" PRIu64 ", overflow %" PRIu64 ", stall %" PRIu64
	       ", stim_lost %" PRIu64 ", device_gone %" PRIu64 "; %" PRIu64 " spikes recorded, %u planted\n",
	       name, r.events[MEAD_EVENT_LATE], r.late_samples, r.events[MEAD_EVENT_GAP], r.events[MEAD_EVENT_OVERFLOW],
	       r.events[MEAD_EVENT_STALL], r.events[MEAD_EVENT_STIM_LOST], r.events[MEAD_EVENT_DEVICE_GONE], r.spikes,
	       t->n_spikes);
	(void)matched;
	if (phantom || unrecorded)
		rc = 1;

	/* Each pulse answers the latest planted spike before the device heard
	 * of it (its arrival, or its start where the device cannot tell) and
	 * before the sample it was asked for, if within the window below; a spike is
	 * answered by the first such pulse.  Pulses answering nothing planted
	 * answered noise the detector took for a spike. */
	uint32_t n = 0, missed = 0, noise = 0, n_arr = 0, n_req = 0, n_wall = 0;
	size_t nb = (size_t)t->n_spikes + 1;
	int64_t *tk_start = calloc(nb, sizeof(int64_t)), *tk_req = calloc(nb, sizeof(int64_t)),
		*tk_arr = calloc(nb, sizeof(int64_t)), *us_start = calloc(nb, sizeof(int64_t)),
		*us_arr = calloc(nb, sizeof(int64_t)), *wall = calloc(nb, sizeof(int64_t));
	bool *answered = calloc(nb, sizeof(bool));
	/* 20 ms or six ticks, whichever is longer: beyond that a pulse
	 * answered something else */
	uint64_t window = (uint64_t)o->rate / 50;
	if (window < 6 * tol)
		window = 6 * tol;
	for (uint32_t k = 0; k < t->n_pulses; k++) {
		const struct cl_pulse *p = &t->pulses[k];
		if (!p->has_arrival && !p->played && !p->has_requested)
			continue;
		uint64_t at = p->has_arrival ? p->arrival : p->played ? p->started : p->requested + 1;
		uint64_t before = p->has_requested && p->requested < at ? p->requested : at;
		uint32_t lo = 0, hi = t->n_spikes;   /* first spike at or after `before` */
		while (lo < hi) {
			uint32_t mid = (lo + hi) / 2;
			if (t->spikes[mid].sample < before)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo == 0 || at - t->spikes[lo - 1].sample > window) {
			noise++;
			continue;
		}
		uint32_t i = lo - 1;
		if (answered[i])
			continue;
		answered[i] = true;
		const struct cl_spike *sp = &t->spikes[i];
		uint64_t ts = tick_of(sp->sample, o);
		if (p->played) {
			tk_start[n] = (int64_t)(tick_of(p->started, o) - ts);
			us_start[n++] = (int64_t)((p->started - sp->sample) * 1000000ull / o->rate);
		}
		if (p->has_requested)
			tk_req[n_req++] = (int64_t)(tick_of(p->requested, o) - ts);
		if (p->has_arrival) {
			tk_arr[n_arr] = (int64_t)(tick_of(p->arrival, o) - ts);
			us_arr[n_arr++] = (int64_t)((p->arrival - sp->sample) * 1000000ull / o->rate);
		}
		if (p->wall_ns && t->wall0_ns) {
			/* from the moment the device acquired the spike's trough */
			uint64_t acq = t->wall0_ns + (sp->sample + 1) * 1000000000ull / o->rate;
			wall[n_wall++] = (int64_t)p->wall_ns - (int64_t)acq;
		}
	}
	for (uint32_t i = 0; i < t->n_spikes; i++)
		missed += !answered[i];
	free(answered);
	printf("%s: %u of %u planted spikes answered, %u pulses answered no planted spike\n", name, t->n_spikes - missed,
	       t->n_spikes, noise);
	if (n_req)
		dist(name, "ticks from the spike's tick to the tick the pulse was asked for:", tk_req, n_req, 1, "%.0f");
	if (n_arr) {
		dist(name, "ticks from the spike's tick to the command's arrival at the device:", tk_arr, n_arr, 1, "%.0f");
		dist(name, "device time from the spike to the command's arrival, us:", us_arr, n_arr, 1, "%.0f");
	}
	dist(name, "ticks from the spike's tick to the pulse's start:", tk_start, n, 1, "%.0f");
	dist(name, "device time from the spike to the pulse's start, us:", us_start, n, 1, "%.0f");
	if (n_wall)
		dist(name, t->pulses[0].has_arrival ? "wall clock from the spike's acquisition to the command's arrival, us:"
						    : "wall clock from the spike's acquisition to the pulse's start, us:",
		     wall, n_wall, 1000.0, "%.1f");
	/* the headline figure: what the goal counts, the command at the
	 * device where the device tells (USB), else the pulse's start */
	int64_t *head = n_arr ? tk_arr : n ? tk_start : tk_req;
	uint32_t n_head = n_arr ? n_arr : n ? n : n_req;
	uint32_t p99 = n_head ? (uint32_t)pct(head, n_head, 0.99) : 0;
	printf("%s: latency_ticks_p50=%u latency_ticks_p99=%u latency_ticks_max=%u (%s)\n", name,
	       n_head ? (uint32_t)pct(head, n_head, 0.5) : 0, p99, n_head ? (uint32_t)head[n_head - 1] : 0,
	       n_arr ? "to the command at the device" : n ? "to the pulse's start" : "to the tick the pulse was asked for");
	if (ret_ticks_p99)
		*ret_ticks_p99 = p99;
	if (n_head == 0)
		rc = rc ? rc : -1;
	free(tk_start);
	free(tk_req);
	free(tk_arr);
	free(us_start);
	free(us_arr);
	free(wall);
	free(r.stims);
	cl_truth_clear(&r.seen);
	return rc;
}

/* ---- the reference USB device's truth file and log ---- */

static int gadget_truth(const struct cl_opts *o, struct cl_truth *t)
{
	FILE *f = fopen(o->gadget_truth, "r");
	if (!f) {
		fprintf(stderr, "closed-loop: cannot read %s: %s\n", o->gadget_truth, strerror(errno));
		return -1;
	}
	/* samples restart at each START: the daemon's run is the last one */
	char line[256];
	unsigned last = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned st;
		if (sscanf(line, "%u,", &st) == 1 && st > last)
			last = st;
	}
	rewind(f);
	uint64_t end = (uint64_t)(o->seconds * o->rate);
	while (fgets(line, sizeof(line), f)) {
		unsigned st, e;
		uint64_t s;
		if (sscanf(line, "%u,%" SCNu64 ",%u", &st, &s, &e) == 3 && st == last && s < end)
			cl_truth_spike(t, s, (uint16_t)e);
	}
	fclose(f);

	f = fopen(o->gadget_log, "r");
	if (!f) {
		fprintf(stderr, "closed-loop: cannot read %s: %s\n", o->gadget_log, strerror(errno));
		return -1;
	}
	/* the pulses of the last stream: arrival from its command, the fate
	 * from the line that settles it */
	uint32_t streams = 0;
	while (fgets(line, sizeof(line), f))
		streams += strstr(line, " stream start ") != NULL;
	rewind(f);
	uint32_t stream = 0, cmd_seq = UINT32_MAX;
	uint64_t cmd_arrival = 0;
	while (fgets(line, sizeof(line), f)) {
		if (strstr(line, " stream start ")) {
			stream++;
			continue;
		}
		if (stream != streams || stream == 0)
			continue;
		const char *c;
		unsigned seq, idx, n, e, status;
		uint64_t a, start;
		int used = 0;
		if ((c = strstr(line, " cmd SC ")) && sscanf(c, " cmd SC seq=%u n=%u arrival=%" SCNu64, &seq, &n, &a) == 3) {
			cmd_seq = seq;
			cmd_arrival = a;
		} else if ((c = strstr(line, " pulse seq=")) && sscanf(c, " pulse seq=%u idx=%u %n", &seq, &idx, &used) == 2 &&
			   used > 0) {
			c += used;
			if (sscanf(c, "start=%" SCNu64 " electrode=%u", &start, &e) == 2) {
				struct cl_pulse *p = cl_truth_pulse(t);
				*p = (struct cl_pulse){ .requested = start, .electrode = (uint16_t)e, .has_requested = true,
							.cmd_seq = seq, .cmd_index = (uint16_t)idx };
				if (seq == cmd_seq) {
					p->arrival = cmd_arrival;
					p->has_arrival = true;
				}
			} else if (sscanf(c, "-> status=%u", &status) == 1) {
				const char *sp = strstr(c, " started=");
				for (uint32_t k = t->n_pulses; sp && k-- > 0;) {
					struct cl_pulse *p = &t->pulses[k];
					if (p->cmd_seq == seq && p->cmd_index == idx) {
						/* 0 delivered, 1 late: both played */
						p->played = status <= 1;
						p->started = p->played ? strtoull(sp + 9, NULL, 10) : 0;
						break;
					}
				}
			}
		}
	}
	fclose(f);
	if (stream == 0)
		fprintf(stderr, "closed-loop: %s has no stream start\n", o->gadget_log);
	return stream ? 0 : -1;
}

static int run_gadget(const struct cl_opts *o, const char *dir, uint32_t *ret_ticks_p99)
{
	char yaml[256];
	snprintf(yaml, sizeof(yaml), "  name: usb\n  options: {}\n");
	if (cl_run_daemon(o, dir, yaml) < 0)
		return -1;
	/* the device writes its truth every 250 ms and at STOP */
	struct timespec ts = { 0, 500 * 1000000L };
	nanosleep(&ts, NULL);
	struct cl_truth t = { 0 };
	int r = gadget_truth(o, &t);
	if (r == 0)
		r = cl_report(o, "usb-device", dir, &t, ret_ticks_p99);
	cl_truth_clear(&t);
	return r;
}

/* The null driver makes spikes at random and delivers every pulse at the
 * sample asked for: the loop alone, from the spike it reads to the pulse
 * it asks for, at any period. */
static int run_null(const struct cl_opts *o, const char *dir, uint32_t *ret_ticks_p99)
{
	char yaml[256];
	snprintf(yaml, sizeof(yaml),
		 "  name: null\n  options:\n    sample_rate_hz: %u\n    spike_rate_hz: %g\n", o->rate,
		 o->spike_hz / o->channels);
	if (cl_run_daemon(o, dir, yaml) < 0)
		return -1;
	return cl_report(o, "null", dir, NULL, ret_ticks_p99);
}

int mead_bench_closed_loop(int argc, char **argv)
{
	struct cl_opts o = { .driver = "both", .seconds = 5.0, .period_us = 1000, .rate = 25000, .spike_hz = 20.0,
			     .channels = 60, .target = UINT16_MAX, .priority = 50 };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		}
		if (!v) {
			usage(stderr);
			return 2;
		}
		i++;
		if (strcmp(a, "--driver") == 0)
			o.driver = v;
		else if (strcmp(a, "--seconds") == 0)
			o.seconds = atof(v);
		else if (strcmp(a, "--period-us") == 0)
			o.period_us = (uint32_t)atoi(v);
		else if (strcmp(a, "--rate") == 0)
			o.rate = (uint32_t)atoi(v);
		else if (strcmp(a, "--channels") == 0)
			o.channels = (uint32_t)atoi(v);
		else if (strcmp(a, "--spike-hz") == 0)
			o.spike_hz = atof(v);
		else if (strcmp(a, "--target") == 0)
			o.target = (uint16_t)atoi(v);
		else if (strcmp(a, "--priority") == 0)
			o.priority = (uint32_t)atoi(v);
		else if (strcmp(a, "--gadget-log") == 0)
			o.gadget_log = v;
		else if (strcmp(a, "--gadget-truth") == 0)
			o.gadget_truth = v;
		else if (strcmp(a, "--keep") == 0)
			o.keep = v;
		else if (strcmp(a, "-o") == 0 && o.n_extra < 16)
			o.extra[o.n_extra++] = v;
		else {
			fprintf(stderr, "closed-loop: unknown option %s\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (!(o.seconds > 0) || o.period_us == 0 || !(o.spike_hz > 0) || o.rate < 1000 || o.channels < 2 ||
	    o.channels > 128 || (o.target != UINT16_MAX && o.target >= o.channels) ||
	    (!o.gadget_log) != (!o.gadget_truth) ||
	    (strcmp(o.driver, "comedi") && strcmp(o.driver, "usb") && strcmp(o.driver, "both") && strcmp(o.driver, "null"))) {
		fprintf(stderr, "closed-loop: bad options\n");
		usage(stderr);
		return 2;
	}
	if (o.target == UINT16_MAX)
		o.target = (uint16_t)(o.channels - 1);

	char tmp[] = "/tmp/mead-closed-loop-XXXXXX", dir[600];
	const char *base = o.keep;
	if (base) {
		mkdir(base, 0755);
	} else if (!(base = mkdtemp(tmp))) {
		perror("closed-loop: mkdtemp");
		return 1;
	}
	printf("closed-loop: daemon with the respond protocol, period %u us, %u Hz, %u electrodes, %.1f s per run, "
	       "target electrode %u, loop priority %u\n",
	       o.period_us, o.rate, o.channels, o.seconds, o.target, o.priority);
	int rc = 0;
	uint32_t worst = 0, p99 = 0;
	bool null = strcmp(o.driver, "null") == 0;
	if (o.gadget_log || null) {
		snprintf(dir, sizeof(dir), "%s", base);
		int r = null ? run_null(&o, dir, &p99) : run_gadget(&o, dir, &p99);
		rc = r < 0 ? 1 : r;
		worst = p99;
	} else {
#ifdef MEAD_BENCH_CLOSED_LOOP
		const char *pre = getenv("LD_PRELOAD");
		if (!pre || !strstr(pre, "umockdev-preload")) {
			fprintf(stderr, "closed-loop: the emulated devices need umockdev's preload library: run under "
					"umockdev-wrapper\n");
			return 77;
		}
		/* above the daemon's loop: the testbed's worker thread, which
		 * answers the emulated devices, inherits it */
		struct sched_param sp = { .sched_priority = (int)o.priority + 10 };
		if (sched_setscheduler(0, SCHED_FIFO, &sp) != 0)
			printf("closed-loop: no real-time privilege: the device emulation and the loop run SCHED_OTHER\n");
		const char *names[2] = { "comedi", "usb" };
		for (int i = 0; i < 2; i++) {
			if (strcmp(o.driver, "both") && strcmp(o.driver, names[i]))
				continue;
			snprintf(dir, sizeof(dir), "%s/%s", base, names[i]);
			mkdir(dir, 0755);
			int r = cl_emulated(&o, names[i], dir, &p99);
			if (r != 0)
				rc = 1;
			if (p99 > worst)
				worst = p99;
		}
#else
		fprintf(stderr, "closed-loop: built without the emulated devices (umockdev); use --gadget-log\n");
		return 77;
#endif
	}
	printf("latency_ticks_p99=%u\n", worst);
	if (!o.keep) {
		char cmd[700];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
		if (rc == 0 && system(cmd) != 0)
			fprintf(stderr, "closed-loop: could not remove %s\n", base);
		else if (rc != 0)
			fprintf(stderr, "closed-loop: the run's files are in %s\n", base);
	}
	return rc;
}
