/* SPDX-License-Identifier: MIT */
/*
 * mead-bench loop: the daemon's real loop on the null driver, then
 * cyclictest with the same period and priority on the same machine, one
 * after the other so neither disturbs the other, with the same percentile
 * arithmetic over both histograms.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "config/layout.h"
#include "daemon/driver_module.h"
#include "daemon/histogram.h"
#include "daemon/loop.h"
#include "daemon/ring.h"
#include "bench/bench.h"

struct figures {
	bool valid;
	double p50, p99, p999, max;
	uint64_t overruns, ticks;
	bool rt;
};

static void print_usage(FILE *f)
{
	fprintf(f, "usage: mead-bench loop [--period-us P] [--seconds S] [--priority N] [--cpu C|-1|-2] [--json]\n"
		   "  runs the loop on the null driver, then cyclictest (when installed) with the same period\n"
		   "  and priority; SCHED_FIFO needs root or LimitRTPRIO, else both run degraded and say so\n");
}

static int run_mead(uint32_t period_us, double seconds, int priority, int cpu, struct figures *out, char *warn,
		    size_t warn_len)
{
	static struct mead_config cfg;
	static struct mead_layout layout;
	struct mead_driver_module *mod = NULL;
	struct mead_driver_handle drv = { 0 };
	struct mead_ring *ring = NULL;
	struct mead_loop *loop = NULL;
	char err[1024];
	int r;

	r = mead_config_load(&cfg, NULL, NULL, 0, err, sizeof(err));
	if (r < 0 || (r = mead_layout_build(&cfg, &layout, err, sizeof(err))) < 0) {
		fprintf(stderr, "mead-bench: %s\n", err);
		return r;
	}
	r = mead_driver_module_load("null", NULL, NULL, &mod, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "mead-bench: %s\n", err);
		goto out;
	}
	size_t n_params;
	const struct mead_driver_param *params = mead_driver_module_params(mod, &n_params);
	struct mead_driver_config dc = {
		.abi_version = MEAD_DRIVER_ABI_VERSION, .period_us = period_us, .period_ns = period_us * 1000,
		.seed = 1, .layout = &layout.view, .params = params, .n_params = n_params,
	};
	drv.ops = mead_driver_module_ops(mod);
	r = drv.ops->open(&dc, &drv.state, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "mead-bench: null driver: %s\n", err);
		drv.state = NULL;
		goto out;
	}
	drv.ops->get_caps(drv.state, &drv.caps);
	r = mead_ring_new(4u << 20, &ring);
	if (r < 0)
		goto out;
	struct mead_loop_params lp = {
		.period_ns = period_us * 1000, .rt_priority = priority, .cpu = cpu, .lock_memory = true,
		.max_ticks = (uint64_t)llround(seconds * 1e6 / period_us), .spike_capacity = 1024,
		.stim_capacity = 64,
	};
	r = mead_loop_new(&lp, &drv, &layout.view, ring, NULL, &loop);
	if (r < 0)
		goto out;
	drv.ops->start(drv.state, err, sizeof(err));
	r = mead_loop_start(loop, warn, warn_len);
	if (r < 0)
		goto out;
	const struct mead_loop_stats *s = mead_loop_stats(loop);
	while (atomic_load(&s->state) != MEAD_LOOP_STOPPED) {
		struct timespec nap = { 0, 20 * 1000000 };
		size_t len;
		nanosleep(&nap, NULL);
		while (mead_ring_peek(ring, &len))
			mead_ring_release(ring);
	}
	mead_loop_join(loop);
	out->valid = true;
	out->p50 = mead_loop_latency_percentile(s, 50);
	out->p99 = mead_loop_latency_percentile(s, 99);
	out->p999 = mead_loop_latency_percentile(s, 99.9);
	out->max = (double)atomic_load(&s->lat_max_ns) / 1000.0;
	out->overruns = atomic_load(&s->overruns);
	out->ticks = atomic_load(&s->ticks);
	out->rt = atomic_load(&s->rt_active);
	drv.ops->stop(drv.state);
out:
	mead_loop_free(loop);
	mead_ring_free(ring);
	if (drv.state)
		drv.ops->close(drv.state);
	mead_driver_module_free(mod);
	mead_config_release(&cfg);
	return r;
}

static int run_cyclictest(uint32_t period_us, double seconds, int priority, int cpu, struct figures *out)
{
	static _Atomic uint64_t hist[MEAD_LAT_BUCKETS];
	char cmd[512], line[256], aff[32] = "";
	uint64_t loops = (uint64_t)llround(seconds * 1e6 / period_us), total = 0, over = 0, max_us = 0;
	FILE *p;

	if (system("command -v cyclictest >/dev/null 2>&1") != 0)
		return -ENOENT;
	if (cpu >= 0)
		snprintf(aff, sizeof(aff), "-a %d", cpu);
	/* -m: mlockall like the loop; -h: histogram with 1 µs buckets, the same
	 * resolution the loop keeps; -q: only the summary. */
	snprintf(cmd, sizeof(cmd), "cyclictest -m -q %s%d -i %u -l %" PRIu64 " -t 1 %s -h %d 2>&1",
		 priority > 0 ? "-p " : "", priority > 0 ? priority : 0, period_us, loops, aff, MEAD_LAT_BUCKETS - 1);
	if (priority <= 0)
		snprintf(cmd, sizeof(cmd), "cyclictest -m -q -i %u -l %" PRIu64 " -t 1 %s -h %d 2>&1", period_us, loops,
			 aff, MEAD_LAT_BUCKETS - 1);
	p = popen(cmd, "r");
	if (!p)
		return -errno;
	for (size_t i = 0; i < MEAD_LAT_BUCKETS; i++)
		atomic_store(&hist[i], 0);
	while (fgets(line, sizeof(line), p)) {
		unsigned long long a, b;
		/* histogram rows are exactly "BUCKET COUNT" for one thread */
		if (line[0] >= '0' && line[0] <= '9' && strlen(line) <= 16 && sscanf(line, "%llu %llu", &a, &b) == 2) {
			if (a < MEAD_LAT_BUCKETS - 1)
				atomic_store(&hist[a], b);
			total += b;
			if (a >= period_us)
				over += b;
		} else if (sscanf(line, "# Max Latencies: %llu", &a) == 1) {
			max_us = a;
		} else if (sscanf(line, "# Histogram Overflows: %llu", &a) == 1) {
			atomic_store(&hist[MEAD_LAT_BUCKETS - 1], a);
			total += a;
			over += a;
		}
	}
	if (pclose(p) != 0 || total == 0)
		return -EIO;
	out->valid = true;
	out->p50 = mead_hist_percentile(hist, MEAD_LAT_BUCKETS, 50, (double)max_us);
	out->p99 = mead_hist_percentile(hist, MEAD_LAT_BUCKETS, 99, (double)max_us);
	out->p999 = mead_hist_percentile(hist, MEAD_LAT_BUCKETS, 99.9, (double)max_us);
	out->max = (double)max_us;
	out->overruns = over;
	out->ticks = total;
	return 0;
}

static void print_json_fig(const char *name, const struct figures *f)
{
	if (!f->valid) {
		printf("\"%s\":null", name);
		return;
	}
	printf("\"%s\":{\"p50_us\":%.0f,\"p99_us\":%.0f,\"p999_us\":%.0f,\"max_us\":%.1f,\"overruns\":%" PRIu64
	       ",\"ticks\":%" PRIu64 "}", name, f->p50, f->p99, f->p999, f->max, f->overruns, f->ticks);
}

/* Both sides are whole microseconds from the same percentile arithmetic;
 * a 0 µs denominator has no meaningful ratio (NAN prints as null). */
static double ratio(double a, double b)
{
	return b > 0 ? a / b : NAN;
}

static void print_ratio(const char *key, double v)
{
	if (isnan(v))
		printf(",\"%s\":null", key);
	else
		printf(",\"%s\":%.3f", key, v);
}

int mead_bench_loop(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "period-us", required_argument, NULL, 'p' }, { "seconds", required_argument, NULL, 's' },
		{ "priority", required_argument, NULL, 'P' }, { "cpu", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' }, { 0 },
	};
	uint32_t period_us = 1000;
	double seconds = 10;
	int priority = 80, cpu = -1, c;
	bool json = false;
	struct figures mead = { 0 }, cyc = { 0 };
	char warn[512] = "";

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'p': period_us = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 's': seconds = strtod(optarg, NULL); break;
		case 'P': priority = atoi(optarg); break;
		case 'c': cpu = atoi(optarg); break;
		case 'j': json = true; break;
		case 'h': print_usage(stdout); return 0;
		default: print_usage(stderr); return 1;
		}
	}
	if (period_us < 10 || period_us > 1000000 || !(seconds > 0)) {
		print_usage(stderr);
		return 1;
	}
	/* the daemon's default: the loop on the last CPU, the rest elsewhere;
	 * cyclictest gets the same CPU */
	cpu = mead_loop_pick_cpu(cpu, true);
	if (run_mead(period_us, seconds, priority, cpu, &mead, warn, sizeof(warn)) < 0)
		return 1;
	if (warn[0])
		fprintf(stderr, "mead-bench: degraded: %s\n", warn);
	int cr = run_cyclictest(period_us, seconds, mead.rt ? priority : 0, cpu, &cyc);
	if (cr == -ENOENT)
		fprintf(stderr, "mead-bench: cyclictest not installed (apt-get install rt-tests): no comparison\n");
	else if (cr < 0)
		fprintf(stderr, "mead-bench: cyclictest failed: %s\n", strerror(-cr));

	if (json) {
		printf("{");
		print_json_fig("mead", &mead);
		printf(",");
		print_json_fig("cyclictest", &cyc);
		print_ratio("ratio_p99", cyc.valid ? ratio(mead.p99, cyc.p99) : NAN);
		printf(",\"period_us\":%u,\"seconds\":%g,\"sched_fifo\":%s}\n", period_us, seconds, mead.rt ? "true" : "false");
		return 0;
	}
	printf("period %u us, %g s, %s\n", period_us, seconds, mead.rt ? "SCHED_FIFO" : "normal priority (degraded)");
	printf("%-10s %8s %8s %8s %10s %9s %10s\n", "", "p50_us", "p99_us", "p99.9_us", "max_us", "overruns", "ticks");
	printf("%-10s %8.0f %8.0f %8.0f %10.1f %9" PRIu64 " %10" PRIu64 "\n", "mead", mead.p50, mead.p99, mead.p999,
	       mead.max, mead.overruns, mead.ticks);
	if (cyc.valid) {
		printf("%-10s %8.0f %8.0f %8.0f %10.1f %9" PRIu64 " %10" PRIu64 "\n", "cyclictest", cyc.p50, cyc.p99,
		       cyc.p999, cyc.max, cyc.overruns, cyc.ticks);
		printf("ratio mead/cyclictest: p50 %.2f p99 %.2f p99.9 %.2f max %.2f\n",
		       ratio(mead.p50, cyc.p50), ratio(mead.p99, cyc.p99), ratio(mead.p999, cyc.p999),
		       ratio(mead.max, cyc.max));
	}
	return 0;
}
