/* SPDX-License-Identifier: MIT */
/*
 * mead-bench closed-loop: spike-to-stimulation latency of the rig drivers
 * on emulated devices (a Comedi board and a USB front-end behind umockdev
 * testbed device nodes, streaming in real time).
 *
 * The bench drives a driver's vtable tick by tick as the loop does: it
 * wakes when a tick's samples have been acquired, calls write_stim with the
 * pulses decided on the previous tick, then read_frame; a planted spike seen
 * in read_frame of tick t becomes a pulse written at tick t+1.  Latency runs
 * from the moment the device acquired the spike's peak sample to the moment
 * the device model received the stimulation command.
 */
#include <dlfcn.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <umockdev.h>

#include "bench/bench.h"
#include "mead-build-config.h"
#include "tests/lib/devmodel.h"
#include "tests/lib/harness.h"

struct bench_opts {
	const char *driver;
	double seconds;
	uint32_t period_us;
	uint32_t rate;
	double spike_hz;
};

static void bench_usage(FILE *f)
{
	fprintf(f,
		"usage: umockdev-wrapper mead-bench closed-loop [--driver comedi|usb|both] [--seconds S]\n"
		"                        [--period-us P] [--spike-hz H]\n"
		"Runs the comedi and usb drivers against emulated devices (umockdev testbed,\n"
		"so it must run under umockdev-wrapper) and measures the time from a planted\n"
		"spike being acquired to the stimulation command reaching the device.\n"
		"Drivers are loaded from $MEAD_DRIVER_PATH (default: the build tree).\n");
}

struct lat {
	double *us;
	double *after_tick_us;     /* from the end of the spike's tick */
	uint32_t *ticks;
	uint32_t n, cap;
	uint32_t missed;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static double pct_d(const double *v, uint32_t n, double p)
{
	if (n == 0)
		return 0;
	uint32_t i = (uint32_t)(p * (n - 1) + 0.5);
	return v[i];
}

static uint32_t pct_u(const uint32_t *v, uint32_t n, double p)
{
	if (n == 0)
		return 0;
	uint32_t i = (uint32_t)(p * (n - 1) + 0.5);
	return v[i];
}

static void sleep_until(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

struct pending {
	uint64_t spike_sample;
	uint64_t spike_tick;
	uint64_t written_tick;
};

/* One driver, one run.  Returns 0 or -errno. */
static int run_one(const char *name, void *tb, const struct bench_opts *o, struct lat *out)
{
	const uint32_t C = 60;
	struct siggen *g = siggen_new(C, o->rate, 6.0f, 2024);
	uint64_t total = (uint64_t)(o->seconds * o->rate);
	/* spikes at known samples on a rotating electrode, well apart */
	uint64_t gap = (uint64_t)(o->rate / o->spike_hz);
	for (uint64_t s = o->rate / 2, k = 0; s < total; s += gap, k++) {
		struct siggen_spike sp = { s + k % 7, (uint16_t)(k * 13 % C), 90.0f };
		siggen_plant(g, &sp, 1);
	}
	uint32_t n_planted;
	const struct siggen_spike *planted = siggen_spikes(g, &n_planted);
	char err[256] = "";
	struct cmodel *cm = NULL;
	struct umodel *um = NULL;
	static int usb_devnum = 4;
	static int comedi_minor = 4;
	char devnode[64];
	struct harness *h = calloc(1, sizeof(*h));
	harness_layout60(h);
	if (!harness_load(h, name)) {
		fprintf(stderr, "closed-loop: cannot load mead-driver-%s.so from $MEAD_DRIVER_PATH (%s)\n", name, dlerror());
		siggen_free(g);
		free(h);
		return -ENOENT;
	}
	harness_defaults(h, o->period_us);
	if (strcmp(name, "comedi") == 0) {
		snprintf(devnode, sizeof(devnode), "/dev/comedi%d", comedi_minor++);
		struct cmodel_config cc = { devnode, 64, 2000000, 1100.0, true, false };
		cm = cmodel_new(tb, &cc, g, err, sizeof(err));
		if (cm)
			cmodel_set_realtime(cm, true);
		harness_set(h, "device", devnode);
	} else {
		struct umodel_config uc = { 0x1209, (uint16_t)(0x4d45 + usb_devnum), (uint16_t)C, o->rate, 195,
					    (uint16_t)(o->rate * (uint64_t)o->period_us / 1000000u ? o->rate * (uint64_t)o->period_us / 1000000u : 1),
					    (uint8_t)usb_devnum };
		usb_devnum++;
		um = umodel_new(tb, &uc, g, err, sizeof(err));
		if (um)
			umodel_set_realtime(um, true);
		char pid[16];
		snprintf(pid, sizeof(pid), "%u", uc.pid);
		harness_set(h, "pid", pid);
	}
	if (!cm && !um) {
		fprintf(stderr, "closed-loop: cannot emulate the %s device: %s\n", name, err);
		siggen_free(g);
		free(h);
		return -ENODEV;
	}
	char rate[16];
	snprintf(rate, sizeof(rate), "%u", o->rate);
	harness_set(h, "sample_rate_hz", rate);
	int r = harness_open(h);
	if (r < 0) {
		fprintf(stderr, "closed-loop: %s open: %s\n", name, h->err);
		goto done;
	}
	if ((r = h->ops->start(h->state, h->err, sizeof(h->err))) < 0) {
		fprintf(stderr, "closed-loop: %s start: %s\n", name, h->err);
		goto done;
	}
	uint64_t t0 = 0;
	for (int i = 0; i < 1000 && !t0; i++) {
		t0 = cm ? cmodel_stream_start_ns(cm) : umodel_stream_start_ns(um);
	}
	uint64_t ticks = (uint64_t)(o->seconds * 1e6 / o->period_us);
	struct mead_spike *spk = calloc(4096, sizeof(*spk));
	struct pending *pend = calloc(n_planted + 1, sizeof(*pend));
	bool *seen = calloc(n_planted + 1, sizeof(bool));
	uint32_t n_pend = 0, n_written = 0;
	struct mead_stim_pulse pulse;
	bool have_pulse = false;
	uint64_t pulse_for = 0;
	uint32_t late = 0, next_planted = 0, n_work = 0;
	double *work_us = calloc(ticks + 1, sizeof(double)), *wake_us = calloc(ticks + 1, sizeof(double));
	for (uint64_t t = 0; t < ticks; t++) {
		uint64_t first = mead_tick_first_sample(t, o->period_us * 1000u, o->rate), next = mead_tick_first_sample(t + 1, o->period_us * 1000u, o->rate);
		/* wake when the tick's last sample has been acquired */
		uint64_t planned = t0 + next * 1000000000ull / o->rate + 2000;
		sleep_until(planned);
		uint64_t woke = mead_now_ns();
		struct mead_stim_result res;
		int sr = h->ops->write_stim(h->state, t, have_pulse ? &pulse : NULL, have_pulse ? 1 : 0, &res);
		if (have_pulse && sr == 0) {
			pend[pulse_for].written_tick = t;
			n_written++;
		}
		have_pulse = false;
		struct mead_frame f = { .first_sample = first, .n_samples = (uint32_t)(next - first), .spikes = spk,
					.spike_capacity = 4096 };
		r = h->ops->read_frame(h->state, t, &f);
		uint64_t done_ns = mead_now_ns();
		if (n_work < ticks) {
			work_us[n_work] = (double)(done_ns - woke) / 1000.0;
			wake_us[n_work++] = (double)(woke - planned) / 1000.0;
		}
		if (r < 0) {
			fprintf(stderr, "closed-loop: %s read_frame: %d\n", name, r);
			break;
		}
		late += (f.flags & MEAD_FRAME_LATE) != 0;
		while (next_planted < n_planted && planted[next_planted].sample + 2 < f.first_sample)
			next_planted++;
		for (uint32_t i = 0; i < f.n_spikes && !have_pulse; i++) {
			for (uint32_t k = next_planted > 4 ? next_planted - 4 : 0; k < n_planted && planted[k].sample <= spk[i].sample + 1; k++) {
				if (seen[k] || planted[k].channel != spk[i].electrode || planted[k].sample + 1 < spk[i].sample)
					continue;
				seen[k] = true;
				/* the tick whose samples hold the spike */
				uint64_t st = planted[k].sample * 1000000u / ((uint64_t)o->period_us * o->rate);
				while (st > 0 && mead_tick_first_sample(st, o->period_us * 1000u, o->rate) > planted[k].sample)
					st--;
				while (mead_tick_first_sample(st + 1, o->period_us * 1000u, o->rate) <= planted[k].sample)
					st++;
				pend[n_pend] = (struct pending){ planted[k].sample, st, 0 };
				pulse = (struct mead_stim_pulse){ .sample = next, .electrode = (uint16_t)((spk[i].electrode + 1) % C),
								  .amplitude_ua = -20.0f, .phase_us = 100, .interphase_us = 0 };
				have_pulse = true;
				pulse_for = n_pend++;
				break;
			}
		}
	}
	h->ops->stop(h->state);
	/* pair the i-th written pulse with the i-th command the device got */
	uint32_t n_rec = 0;
	uint64_t *rec_ns = calloc(n_written + 1, sizeof(uint64_t));
	if (cm) {
		struct cmodel_stim *cs = calloc(n_written + 1, sizeof(*cs));
		n_rec = cmodel_stims(cm, cs, n_written);
		for (uint32_t i = 0; i < n_rec; i++)
			rec_ns[i] = cs[i].t_ns;
		free(cs);
	} else {
		struct umodel_stim *us = calloc(n_written + 1, sizeof(*us));
		n_rec = umodel_stims(um, us, n_written);
		for (uint32_t i = 0; i < n_rec; i++)
			rec_ns[i] = us[i].t_ns;
		free(us);
	}
	out->n = 0;
	out->missed = n_planted - n_pend;
	out->us = calloc(n_rec + 1, sizeof(double));
	out->ticks = calloc(n_rec + 1, sizeof(uint32_t));
	out->after_tick_us = calloc(n_rec + 1, sizeof(double));
	for (uint32_t i = 0, w = 0; i < n_pend && w < n_rec; i++) {
		if (!pend[i].written_tick)
			continue;
		uint64_t acquired = t0 + (pend[i].spike_sample + 1) * 1000000000ull / o->rate;
		out->us[out->n] = ((double)rec_ns[w] - (double)acquired) / 1000.0;
		out->ticks[out->n] = (uint32_t)(pend[i].written_tick - pend[i].spike_tick);
		uint64_t tick_end = t0 + mead_tick_first_sample(pend[i].spike_tick + 1, o->period_us * 1000u, o->rate) * 1000000000ull / o->rate;
		out->after_tick_us[out->n] = ((double)rec_ns[w] - (double)tick_end) / 1000.0;
		out->n++;
		w++;
	}
	qsort(work_us, n_work, sizeof(double), cmp_double);
	qsort(wake_us, n_work, sizeof(double), cmp_double);
	printf("%s: per tick, write_stim+read_frame us p50=%.1f p99=%.1f max=%.1f; wake-up late by us p50=%.1f p99=%.1f\n",
	       name, pct_d(work_us, n_work, 0.5), pct_d(work_us, n_work, 0.99), n_work ? work_us[n_work - 1] : 0,
	       pct_d(wake_us, n_work, 0.5), pct_d(wake_us, n_work, 0.99));
	free(work_us);
	free(wake_us);
	if (late)
		fprintf(stdout, "%s: %u of %llu ticks had samples missing when read (late)\n", name, late,
			(unsigned long long)ticks);
	free(rec_ns);
	free(spk);
	free(pend);
	free(seen);
	r = 0;
done:
	harness_unload(h);
	free(h);
	/* the device models stay attached to the testbed until it goes */
	(void)cm;
	(void)um;
	siggen_free(g);
	return r;
}

int mead_bench_closed_loop(int argc, char **argv)
{
	struct bench_opts o = { "both", 5.0, 1000, 25000, 20.0 };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			bench_usage(stdout);
			return 0;
		} else if (strcmp(a, "--driver") == 0 && v) {
			o.driver = v;
			i++;
		} else if (strcmp(a, "--seconds") == 0 && v) {
			o.seconds = atof(v);
			i++;
		} else if (strcmp(a, "--period-us") == 0 && v) {
			o.period_us = (uint32_t)atoi(v);
			i++;
		} else if (strcmp(a, "--spike-hz") == 0 && v) {
			o.spike_hz = atof(v);
			i++;
		} else {
			bench_usage(stderr);
			return 2;
		}
	}
	if (o.seconds <= 0 || o.period_us == 0 || o.spike_hz <= 0 ||
	    (strcmp(o.driver, "comedi") && strcmp(o.driver, "usb") && strcmp(o.driver, "both"))) {
		bench_usage(stderr);
		return 2;
	}
	const char *pre = getenv("LD_PRELOAD");
	if (!pre || !strstr(pre, "umockdev-preload")) {
		fprintf(stderr, "closed-loop: the emulated devices need umockdev's preload library\n");
		bench_usage(stderr);
		return 77;
	}
	setenv("MEAD_DRIVER_PATH", MEAD_BUILD_ROOT "/drivers", 0);
	/* Like the daemon's loop thread; the testbed's worker thread, which
	 * answers the emulated devices, inherits it. */
	struct sched_param sp = { .sched_priority = 50 };
	bool rt = sched_setscheduler(0, SCHED_FIFO, &sp) == 0;
	UMockdevTestbed *tb = umockdev_testbed_new();
	const char *names[2];
	int n = 0;
	if (strcmp(o.driver, "usb") != 0)
		names[n++] = "comedi";
	if (strcmp(o.driver, "comedi") != 0)
		names[n++] = "usb";
	double worst_us_p99 = 0, worst_us_max = 0;
	uint32_t worst_ticks_p99 = 0;
	int rc = 0;
	printf("closed-loop: period %u us, %u Hz, 60 channels, %.1f s per driver, spikes at %.1f Hz, %s\n", o.period_us,
	       o.rate, o.seconds, o.spike_hz, rt ? "SCHED_FIFO 50" : "SCHED_OTHER (no real-time privilege)");
	for (int i = 0; i < n; i++) {
		struct lat l = { 0 };
		int r = run_one(names[i], tb, &o, &l);
		if (r < 0 || l.n == 0) {
			fprintf(stderr, "closed-loop: %s: no measurement\n", names[i]);
			rc = 1;
			free(l.us);
			free(l.ticks);
			free(l.after_tick_us);
			continue;
		}
		qsort(l.us, l.n, sizeof(double), cmp_double);
		qsort(l.ticks, l.n, sizeof(uint32_t), cmp_u32);
		qsort(l.after_tick_us, l.n, sizeof(double), cmp_double);
		double p50 = pct_d(l.us, l.n, 0.5), p99 = pct_d(l.us, l.n, 0.99), mx = l.us[l.n - 1];
		uint32_t t50 = pct_u(l.ticks, l.n, 0.5), t99 = pct_u(l.ticks, l.n, 0.99), tmx = l.ticks[l.n - 1];
		printf("%s: %u spikes -> pulses (%u planted spikes not triggered)\n", names[i], l.n, l.missed);
		printf("%s: latency ticks p50=%u p99=%u max=%u; us p50=%.1f p99=%.1f max=%.1f\n", names[i], t50, t99, tmx,
		       p50, p99, mx);
		printf("%s: from the end of the spike's tick to the command at the device: us p50=%.1f p99=%.1f max=%.1f\n",
		       names[i], pct_d(l.after_tick_us, l.n, 0.5), pct_d(l.after_tick_us, l.n, 0.99), l.after_tick_us[l.n - 1]);
		printf("%s: latency_ticks_p99=%u latency_us_p99=%.1f latency_us_max=%.1f\n", names[i], t99, p99, mx);
		if (t99 > worst_ticks_p99)
			worst_ticks_p99 = t99;
		if (p99 > worst_us_p99)
			worst_us_p99 = p99;
		if (mx > worst_us_max)
			worst_us_max = mx;
		free(l.us);
		free(l.ticks);
		free(l.after_tick_us);
	}
	g_object_unref(tb);
	printf("latency_ticks_p99=%u latency_us_p99=%.1f latency_us_max=%.1f\n", worst_ticks_p99, worst_us_p99,
	       worst_us_max);
	return rc;
}
