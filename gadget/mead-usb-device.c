/* SPDX-License-Identifier: MIT */
/*
 * mead-usb-device: the device side of the mead USB protocol v2 on Linux
 * FunctionFS (docs/usb-gadget.md).  A reference front-end for boards with a
 * USB device port and for an emulated guest with dummy_hcd.
 *
 * One thread, one epoll loop: ep0 events and control requests, the sample
 * clock (an absolute timerfd), and AIO completions of both bulk endpoints
 * (an eventfd).  Being single-threaded, the stimulator queue, the sample
 * counter and the report stream need no locks, and a command is judged
 * against exactly the samples already produced.  Everything the streaming
 * path touches is allocated before the UDC is bound.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/aio_abi.h>
#include <linux/usb/ch9.h>
#include <linux/usb/functionfs.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "gadget/configfs.h"
#include "gadget/devclock.h"
#include "gadget/proto.h"
#include "gadget/stim.h"
#include "gadget/synth.h"

#define PROG "mead-usb-device"
#define MODEL "mead-usb-device"
#define N_OUT 4                 /* OUT reads kept queued */
#define SR_RESERVE 2            /* IN slots sample packets leave to reports */
#define MAX_SPIKE_ELECTRODES 256

/* --- options ------------------------------------------------------------ */

struct opts {
	uint32_t channels, rate, spp, nv_per_count;
	uint64_t seed;
	double noise_uv, spike_uv, spike_every_ms, clock_ppm, max_ua;
	uint16_t spike_el[MAX_SPIKE_ELECTRODES];
	uint32_t n_spike_el;
	bool spike_el_given;
	long long stall_after;
	const char *truth, *log;
	uint32_t max_pulses, max_phase_us, max_interphase_us, queue, in_queue, fifo_packets;
	const char *udc, *gadget, *ffs_name, *ffs_dir, *serial;
	bool no_bind;
	int rt_priority;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " [OPTION]...\n"
		"The mead USB protocol v2 device on FunctionFS (docs/usb-gadget.md).\n"
		"signal:\n"
		"  --channels N            channels (default 60)\n"
		"  --rate HZ               samples per second per channel (default 25000)\n"
		"  --spp N                 samples per packet (default rate/1000)\n"
		"  --seed N                noise seed (default 1)\n"
		"  --nv-per-count N        nanovolts per count (default 195)\n"
		"  --noise-uv X            noise rms, uV (default 10)\n"
		"  --spike-uv X            depth of a planted spike's trough, uV (default 100)\n"
		"  --spike-every-ms X      period of each spiking electrode, ms; 0: none (default 100)\n"
		"  --spike-electrodes L    comma-separated channels that spike (default 0,C/4,C/2,3C/4,C-1)\n"
		"  --clock-ppm X           the sample clock runs X ppm fast (+) or slow (-) (default 0)\n"
		"  --truth FILE            CSV of every planted spike: start,sample,electrode\n"
		"stimulation:\n"
		"  --max-pulses N          pulses per SC command (default 16)\n"
		"  --max-ua X              largest |amplitude|, uA (default 150)\n"
		"  --max-phase-us N        longest phase (default 1000)\n"
		"  --max-interphase-us N   longest interphase gap (default 1000)\n"
		"  --queue N               pulses the stimulator queue holds (default 64)\n"
		"transport:\n"
		"  --in-queue N            IN transfers queued in the kernel (default 64)\n"
		"  --fifo-packets N        packets the device buffers before it loses samples (default 64)\n"
		"  --stall-after-packets N halt the IN endpoint once after N sample packets\n"
		"  --log FILE              every control request, command, pulse and its fate\n"
		"gadget:\n"
		"  --udc NAME              device controller (default: the only one in /sys/class/udc)\n"
		"  --gadget NAME|DIR       configfs gadget (default mead); made here if missing\n"
		"  --ffs-name NAME         FunctionFS instance, function ffs.NAME (default mead)\n"
		"  --ffs-dir DIR           where FunctionFS is mounted (default /dev/usb-ffs/NAME)\n"
		"  --serial S              serial number, at most 16 characters (default MEAD0001)\n"
		"  --no-bind               leave binding the UDC to the board's own setup\n"
		"  --rt-priority N         SCHED_FIFO priority (default 0: none)\n");
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char *end;
	errno = 0;
	if (*s == '-')
		return -EINVAL;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *end || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo && v <= hi))
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_list(const char *s, struct opts *o)
{
	o->n_spike_el = 0;
	o->spike_el_given = true;
	if (!*s)
		return 0;
	while (*s) {
		char *end;
		errno = 0;
		unsigned long v = strtoul(s, &end, 10);
		if (errno || end == s || v > 65535 || (*end && *end != ',') || o->n_spike_el == MAX_SPIKE_ELECTRODES)
			return -EINVAL;
		o->spike_el[o->n_spike_el++] = (uint16_t)v;
		s = *end ? end + 1 : end;
	}
	return 0;
}

enum {
	O_CHANNELS = 256, O_RATE, O_SPP, O_SEED, O_NV, O_NOISE, O_SPIKE_UV, O_SPIKE_EVERY, O_SPIKE_EL, O_PPM,
	O_TRUTH, O_MAX_PULSES, O_MAX_UA, O_MAX_PHASE, O_MAX_IP, O_QUEUE, O_IN_QUEUE, O_FIFO, O_STALL, O_LOG,
	O_UDC, O_GADGET, O_FFS_NAME, O_FFS_DIR, O_SERIAL, O_NO_BIND, O_RT,
};

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "channels", 1, 0, O_CHANNELS }, { "rate", 1, 0, O_RATE }, { "spp", 1, 0, O_SPP },
		{ "seed", 1, 0, O_SEED }, { "nv-per-count", 1, 0, O_NV }, { "noise-uv", 1, 0, O_NOISE },
		{ "spike-uv", 1, 0, O_SPIKE_UV }, { "spike-every-ms", 1, 0, O_SPIKE_EVERY },
		{ "spike-electrodes", 1, 0, O_SPIKE_EL }, { "clock-ppm", 1, 0, O_PPM }, { "truth", 1, 0, O_TRUTH },
		{ "max-pulses", 1, 0, O_MAX_PULSES }, { "max-ua", 1, 0, O_MAX_UA }, { "max-phase-us", 1, 0, O_MAX_PHASE },
		{ "max-interphase-us", 1, 0, O_MAX_IP }, { "queue", 1, 0, O_QUEUE }, { "in-queue", 1, 0, O_IN_QUEUE },
		{ "fifo-packets", 1, 0, O_FIFO }, { "stall-after-packets", 1, 0, O_STALL }, { "log", 1, 0, O_LOG },
		{ "udc", 1, 0, O_UDC }, { "gadget", 1, 0, O_GADGET }, { "ffs-name", 1, 0, O_FFS_NAME },
		{ "ffs-dir", 1, 0, O_FFS_DIR }, { "serial", 1, 0, O_SERIAL }, { "no-bind", 0, 0, O_NO_BIND },
		{ "rt-priority", 1, 0, O_RT }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 },
	};
	*o = (struct opts){
		.channels = 60, .rate = 25000, .seed = 1, .nv_per_count = 195, .noise_uv = 10, .spike_uv = 100,
		.spike_every_ms = 100, .max_ua = 150, .stall_after = -1, .max_pulses = 16, .max_phase_us = 1000,
		.max_interphase_us = 1000, .queue = 64, .in_queue = 64, .fifo_packets = 64, .gadget = "mead",
		.ffs_name = "mead", .serial = "MEAD0001",
	};
	bool spp_given = false;
	int c, li = -1;
	while ((c = getopt_long(argc, argv, "h", lo, &li)) != -1) {
		uint64_t u = 0;
		int e = 0;
		const char *want = NULL;
		switch (c) {
		case O_CHANNELS:
			e = parse_u64(optarg, 1, 4096, &u);
			o->channels = (uint32_t)u;
			want = "an integer 1 .. 4096";
			break;
		case O_RATE:
			e = parse_u64(optarg, 1, 1000000, &u);
			o->rate = (uint32_t)u;
			want = "an integer 1 .. 1000000";
			break;
		case O_SPP:
			e = parse_u64(optarg, 1, 65535, &u);
			o->spp = (uint32_t)u;
			spp_given = true;
			want = "an integer 1 .. 65535";
			break;
		case O_SEED:
			e = parse_u64(optarg, 0, UINT64_MAX, &o->seed);
			want = "an integer 0 .. 2^64-1";
			break;
		case O_NV:
			e = parse_u64(optarg, 1, 1000000, &u);
			o->nv_per_count = (uint32_t)u;
			want = "an integer 1 .. 1000000";
			break;
		case O_NOISE:
			e = parse_double(optarg, 0, 100000, &o->noise_uv);
			want = "a number 0 .. 100000";
			break;
		case O_SPIKE_UV:
			e = parse_double(optarg, 0, 1000000, &o->spike_uv);
			want = "a number 0 .. 1000000";
			break;
		case O_SPIKE_EVERY:
			e = parse_double(optarg, 0, 3600000, &o->spike_every_ms);
			want = "a number 0 .. 3600000";
			break;
		case O_SPIKE_EL: e = parse_list(optarg, o); break;
		case O_PPM:
			e = parse_double(optarg, -100000, 100000, &o->clock_ppm);
			want = "a number -100000 .. 100000";
			break;
		case O_TRUTH: o->truth = optarg; break;
		case O_MAX_PULSES:
			e = parse_u64(optarg, 1, 65535, &u);
			o->max_pulses = (uint32_t)u;
			want = "an integer 1 .. 65535";
			break;
		case O_MAX_UA:
			e = parse_double(optarg, 0.001, 4000000, &o->max_ua);
			want = "a number 0.001 .. 4000000";
			break;
		case O_MAX_PHASE:
			e = parse_u64(optarg, 1, 10000000, &u);
			o->max_phase_us = (uint32_t)u;
			want = "an integer 1 .. 10000000";
			break;
		case O_MAX_IP:
			e = parse_u64(optarg, 0, 10000000, &u);
			o->max_interphase_us = (uint32_t)u;
			want = "an integer 0 .. 10000000";
			break;
		case O_QUEUE:
			e = parse_u64(optarg, 1, 65536, &u);
			o->queue = (uint32_t)u;
			want = "an integer 1 .. 65536";
			break;
		case O_IN_QUEUE:
			e = parse_u64(optarg, SR_RESERVE + 2, 256, &u);
			o->in_queue = (uint32_t)u;
			want = "an integer 4 .. 256";
			break;
		case O_FIFO:
			e = parse_u64(optarg, 1, 1000000, &u);
			o->fifo_packets = (uint32_t)u;
			want = "an integer 1 .. 1000000";
			break;
		case O_STALL:
			e = parse_u64(optarg, 0, UINT32_MAX, &u);
			o->stall_after = (long long)u;
			want = "an integer 0 .. 2^32-1";
			break;
		case O_LOG: o->log = optarg; break;
		case O_UDC: o->udc = optarg; break;
		case O_GADGET: o->gadget = optarg; break;
		case O_FFS_NAME: o->ffs_name = optarg; break;
		case O_FFS_DIR: o->ffs_dir = optarg; break;
		case O_SERIAL: o->serial = optarg; break;
		case O_NO_BIND: o->no_bind = true; break;
		case O_RT:
			e = parse_u64(optarg, 0, 99, &u);
			o->rt_priority = (int)u;
			want = "an integer 0 .. 99";
			break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -EINVAL;
		}
		if (e) {
			fprintf(stderr, PROG ": --%s: bad value '%s'", li >= 0 ? lo[li].name : "?", optarg);
			if (c == O_SPIKE_EL)
				want = "a comma-separated list of channel numbers";
			fprintf(stderr, want ? " (%s)\n" : "\n", want);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (!spp_given)
		o->spp = o->rate >= 1000 ? o->rate / 1000 : 1;
	if (strlen(o->serial) == 0 || strlen(o->serial) > 16) {
		fprintf(stderr, PROG ": --serial: 1 to 16 characters, not '%s'\n", o->serial);
		return -EINVAL;
	}
	if (strlen(o->ffs_name) == 0 || strlen(o->ffs_name) > 40 || strchr(o->ffs_name, '/')) {
		fprintf(stderr, PROG ": --ffs-name: a short name without '/', not '%s'\n", o->ffs_name);
		return -EINVAL;
	}
	size_t sp = mg_sp_bytes(o->spp, o->channels);
	if (sp > (1u << 20)) {
		fprintf(stderr, PROG ": a sample packet of %zu bytes (--spp %u x --channels %u) is over 1 MiB\n",
			sp, o->spp, o->channels);
		return -EINVAL;
	}
	if (mg_sr_capacity(sp) == 0) {
		fprintf(stderr, PROG ": a sample packet of %zu bytes cannot carry a stimulation report (%d bytes): "
			"raise --spp or --channels\n", sp, MEAD_USB_SR_HEADER + MEAD_USB_SR_RECORD);
		return -EINVAL;
	}
	if (!o->spike_el_given) {
		uint32_t C = o->channels, cand[5] = { 0, C / 4, C / 2, 3 * C / 4, C - 1 };
		for (int i = 0; i < 5; i++) {
			bool dup = false;
			for (uint32_t j = 0; j < o->n_spike_el; j++)
				dup |= o->spike_el[j] == cand[i];
			if (!dup)
				o->spike_el[o->n_spike_el++] = (uint16_t)cand[i];
		}
	}
	return 0;
}

/* --- state --------------------------------------------------------------- */

struct in_slot {
	struct iocb cb, zlp;
	uint8_t *buf;
	int pending;               /* iocbs of this slot not yet completed */
	bool cb_busy, zlp_busy;
	bool cancelled;            /* asked to go; the completions follow */
	bool report;
};

struct out_slot {
	struct iocb cb;
	uint8_t buf[512];
	bool busy, done;
	long res;
	uint64_t order;
};

struct dev {
	struct opts o;
	struct mg_gadget g;
	int ep0, ep_in, ep_out, epfd, tfd, evfd, sfd;
	aio_context_t aio;
	bool bound, enabled, quit;
	uint16_t in_mps, out_mps;
	uint8_t in_addr, out_addr;

	struct mg_info info;
	struct mg_clock clk;
	struct mg_synth synth;
	struct mg_stim stim;
	size_t sp_bytes;
	uint32_t sr_max;           /* records per SR packet */

	/* streaming */
	bool streaming;
	uint64_t t0;               /* CLOCK_MONOTONIC ns of START */
	uint64_t frozen_sample, frozen_us;
	uint64_t produced;         /* packets produced since START, sent or not */
	uint32_t report_seq;
	uint16_t flags_pending;
	uint32_t starts;
	uint64_t sent, dropped, overrun_packets, reports_sent, records_lost, in_failed;
	uint64_t deadline, late_max, late_1ms, late_5ms;   /* sample clock wake-ups */

	/* IN */
	struct in_slot *in;
	uint32_t n_in, in_free;
	uint64_t last_in_progress;

	/* OUT */
	struct out_slot out[N_OUT];
	uint64_t out_next_submit, out_next_done;
	uint8_t *cmd;
	size_t cmd_len, cmd_cap;
	bool cmd_skip;

	/* reports waiting for an IN slot */
	struct mg_record *rec;
	uint32_t rec_cap, rec_head, rec_n;
	struct mg_record *scratch;

	/* watchdog */
	uint32_t wd_ms;
	uint64_t wd_last_out;
	bool wd_tripped;

	/* stall */
	uint64_t sp_since_start;
	bool halting, stalled;

	struct mg_spike *spk;
	uint32_t spk_cap;

	FILE *log, *truth;
	uint64_t prog_t0, last_flush;
};

static char log_buf[1 << 16], truth_buf[1 << 16];

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

__attribute__((format(printf, 2, 3))) static void logf_(struct dev *d, const char *fmt, ...)
{
	if (!d->log)
		return;
	uint64_t t = mono_ns() - d->prog_t0;
	fprintf(d->log, "%" PRIu64 ".%06" PRIu64 " ", t / 1000000000u, t / 1000u % 1000000u);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(d->log, fmt, ap);
	va_end(ap);
	fputc('\n', d->log);
}

__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs(PROG ": ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void flush_files(struct dev *d)
{
	if (d->log)
		fflush(d->log);
	if (d->truth)
		fflush(d->truth);
}

/* Device time since START, frozen at STOP. */
static void dev_now(struct dev *d, uint64_t now, uint64_t *sample, uint64_t *us)
{
	if (!d->streaming) {
		*sample = d->frozen_sample;
		*us = d->frozen_us;
		return;
	}
	uint64_t el = now - d->t0;
	*sample = mg_clock_samples(&d->clk, el);
	*us = mg_clock_dev_ns(&d->clk, el) / 1000u;
}

static uint64_t dev_sample(struct dev *d, uint64_t now)
{
	uint64_t s, us;
	dev_now(d, now, &s, &us);
	return s;
}

/* --- AIO ------------------------------------------------------------------ */

static long sys_io_setup(unsigned nr, aio_context_t *ctx) { return syscall(SYS_io_setup, nr, ctx); }
static long sys_io_destroy(aio_context_t ctx) { return syscall(SYS_io_destroy, ctx); }
static long sys_io_submit(aio_context_t ctx, long n, struct iocb **v) { return syscall(SYS_io_submit, ctx, n, v); }
static long sys_io_cancel(aio_context_t ctx, struct iocb *cb, struct io_event *ev)
{
	return syscall(SYS_io_cancel, ctx, cb, ev);
}
/* min_nr 0 with no timeout never waits, and sidesteps the 32/64-bit
 * timespec split of io_getevents on 32-bit boards */
static long sys_io_reap(aio_context_t ctx, long max, struct io_event *ev)
{
	return syscall(SYS_io_getevents, ctx, 0L, max, ev, NULL);
}

/* notify: the completion wakes the loop (commands); IN completions are
 * reaped at the next tick instead, which saves two syscalls a packet */
static void prep(struct dev *d, struct iocb *cb, int fd, unsigned op, void *buf, size_t len, bool notify)
{
	memset(cb, 0, sizeof(*cb));
	cb->aio_data = (uint64_t)(uintptr_t)cb;
	cb->aio_lio_opcode = (uint16_t)op;
	cb->aio_fildes = (uint32_t)fd;
	cb->aio_buf = (uint64_t)(uintptr_t)buf;
	cb->aio_nbytes = len;
	if (notify) {
		cb->aio_flags = IOCB_FLAG_RESFD;
		cb->aio_resfd = (uint32_t)d->evfd;
	}
}

/* The completion ring lives at the context's address; peeking at it spares
 * an io_getevents when nothing completed.  A wrong guess costs one call. */
struct aio_ring_head {
	unsigned id, nr, head, tail, magic, compat_features, incompat_features, header_length;
};

static bool aio_maybe_ready(const struct dev *d)
{
	const volatile struct aio_ring_head *r = (const volatile struct aio_ring_head *)(uintptr_t)d->aio;
	return r->magic != 0xa10a10a1u || r->head != r->tail;
}

/* --- IN: sample packets and reports --------------------------------------- */

static struct in_slot *free_in_slot(struct dev *d)
{
	for (uint32_t i = 0; i < d->n_in; i++)
		if (d->in[i].pending == 0)
			return &d->in[i];
	return NULL;
}

/* Queues buf[0..len) on the IN endpoint, with a zero-length packet after it
 * when len is a multiple of wMaxPacketSize: FunctionFS never adds one, and
 * without it the host's transfer would not end. */
static int submit_in(struct dev *d, struct in_slot *s, size_t len, bool report)
{
	struct iocb *v[2] = { &s->cb, &s->zlp };
	long n = 1;
	prep(d, &s->cb, d->ep_in, IOCB_CMD_PWRITE, s->buf, len, false);
	if (d->in_mps && len % d->in_mps == 0) {
		prep(d, &s->zlp, d->ep_in, IOCB_CMD_PWRITE, s->buf, 0, false);
		n = 2;
	}
	bool was_idle = d->in_free == d->n_in;
	long r = sys_io_submit(d->aio, n, v);
	if (r < 0)
		return -errno;
	if (r == 0)
		return -EAGAIN;
	/* a packet must not go without its ZLP: the host would read the
	 * next packet into the same transfer */
	if (r == 1 && n == 2 && sys_io_submit(d->aio, 1, &v[1]) == 1)
		r = 2;
	if (r < n)
		logf_(d, "in-error ZLP not queued after %zu bytes", len);
	s->pending = (int)r;
	s->cb_busy = true;
	s->zlp_busy = r > 1;
	s->cancelled = false;
	s->report = report;
	d->in_free--;
	if (was_idle)
		d->last_in_progress = mono_ns();
	return 0;
}

static void cancel_in(struct dev *d)
{
	struct io_event ev;
	uint32_t n = 0, refused = 0;
	for (uint32_t i = 0; i < d->n_in; i++) {
		struct in_slot *s = &d->in[i];
		if (s->cancelled)
			continue;
		s->cancelled = true;
		/* the kernel answers EINPROGRESS: the completion follows */
		if (s->cb_busy && ++n && sys_io_cancel(d->aio, &s->cb, &ev) < 0 && errno != EINPROGRESS)
			refused++;
		if (s->zlp_busy && ++n && sys_io_cancel(d->aio, &s->zlp, &ev) < 0 && errno != EINPROGRESS)
			refused++;
	}
	if (n)
		logf_(d, "in-cancel n=%u refused=%u", n, refused);
}

static void push_record(struct dev *d, const struct mg_record *r)
{
	if (d->rec_n == d->rec_cap) {
		d->records_lost++;
		logf_(d, "report-lost seq=%" PRIu32 " idx=%u status=%u", r->cmd_seq, r->index, r->status);
		return;
	}
	d->rec[(d->rec_head + d->rec_n) % d->rec_cap] = *r;
	d->rec_n++;
}

static void push_records(struct dev *d, const struct mg_record *r, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		push_record(d, &r[i]);
}

/* Sends waiting records, as many SR packets as there are free IN slots. */
static void flush_reports(struct dev *d)
{
	while (d->rec_n && d->streaming && d->enabled && !d->halting) {
		struct in_slot *s = free_in_slot(d);
		if (!s)
			return;
		uint16_t n = (uint16_t)(d->rec_n < d->sr_max ? d->rec_n : d->sr_max);
		struct mg_record *r = d->scratch;
		for (uint16_t i = 0; i < n; i++)
			r[i] = d->rec[(d->rec_head + i) % d->rec_cap];
		size_t len = mg_sr_encode(s->buf, d->report_seq, r, n);
		int e = submit_in(d, s, len, true);
		if (e < 0) {
			if (e != -EAGAIN && e != -ESHUTDOWN)
				logf_(d, "in-error report: %s", strerror(-e));
			return;
		}
		for (uint16_t i = 0; i < n; i++)
			logf_(d, "report rseq=%" PRIu32 " seq=%" PRIu32 " idx=%u status=%u(%s) started=%" PRIu64
			      " requested=%" PRIu64, d->report_seq, r[i].cmd_seq, r[i].index, r[i].status,
			      mg_status_name(r[i].status), r[i].started, r[i].requested);
		d->report_seq++;
		d->reports_sent++;
		d->rec_head = (d->rec_head + n) % d->rec_cap;
		d->rec_n -= n;
	}
}

static void log_records(struct dev *d, const char *why, const struct mg_record *r, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		logf_(d, "pulse seq=%" PRIu32 " idx=%u -> status=%u(%s) started=%" PRIu64 " requested=%" PRIu64 " by=%s",
		      r[i].cmd_seq, r[i].index, r[i].status, mg_status_name(r[i].status), r[i].started,
		      r[i].requested, why);
}

/* Outputs to zero now; the queue goes.  send: the records go to the host
 * (SX, watchdog) rather than only to the log (STOP, unplug). */
static void stop_outputs(struct dev *d, uint64_t sample, const char *why, bool send)
{
	bool cut;
	uint32_t n = mg_stim_cancel(&d->stim, sample, d->scratch, d->stim.cap + d->sr_max, &cut);
	log_records(d, why, d->scratch, n);
	if (send)
		push_records(d, d->scratch, n);
	logf_(d, "outputs zero at=%" PRIu64 " by=%s dropped=%u%s", sample, why, n, cut ? " cut-playing-pulse" : "");
}

/* --- streaming ------------------------------------------------------------ */

static void reap(struct dev *d);

static void arm_timer(struct dev *d)
{
	uint64_t t = d->t0 + mg_clock_true_ns_of(&d->clk, (d->produced + 1) * d->o.spp);
	d->deadline = t;
	struct itimerspec its = { .it_value = { (time_t)(t / 1000000000u), (long)(t % 1000000000u) } };
	timerfd_settime(d->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void disarm_timer(struct dev *d)
{
	struct itimerspec its = { 0 };
	timerfd_settime(d->tfd, 0, &its, NULL);
}

static void end_stream(struct dev *d, const char *why)
{
	if (!d->streaming)
		return;
	uint64_t now = mono_ns();
	dev_now(d, now, &d->frozen_sample, &d->frozen_us);
	stop_outputs(d, d->frozen_sample, why, false);
	d->streaming = false;
	disarm_timer(d);
	/* queued packets of this stream must not reach the host after its
	 * next START */
	cancel_in(d);
	if (d->rec_n)
		logf_(d, "reports-unsent n=%u by=%s", d->rec_n, why);
	d->rec_n = 0;
	logf_(d, "stream end by=%s packets=%" PRIu64 " sent=%" PRIu64 " failed=%" PRIu64 " dropped=%" PRIu64
	      " overrun=%" PRIu64 " reports=%" PRIu64 " at=%" PRIu64 " us=%" PRIu64 " wake_late_max_us=%" PRIu64
	      " wake_late_1ms=%" PRIu64 " wake_late_5ms=%" PRIu64, why, d->produced, d->sent, d->in_failed, d->dropped,
	      d->overrun_packets, d->reports_sent, d->frozen_sample, d->frozen_us, d->late_max / 1000u, d->late_1ms,
	      d->late_5ms);
	say("stream %u ended (%s): %" PRIu64 " packets, %" PRIu64 " sent, %" PRIu64 " dropped, %" PRIu64 " reports",
	    d->starts, why, d->produced, d->sent, d->dropped, d->reports_sent);
	flush_files(d);
}

/* Packets a previous stream left queued must not reach the host after its
 * START: they are cancelled before the status stage lets the host read. */
static void flush_in(struct dev *d)
{
	cancel_in(d);
	for (int i = 0; i < 50 && d->in_free < d->n_in; i++) {
		reap(d);
		if (d->in_free < d->n_in)
			nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	}
	if (d->in_free < d->n_in)
		logf_(d, "in-cancel still-queued=%u", d->n_in - d->in_free);
}

static void start_stream(struct dev *d)
{
	if (d->streaming)
		end_stream(d, "restart");
	mg_stim_reset(&d->stim);
	d->rec_n = 0;
	d->produced = d->sent = d->dropped = d->overrun_packets = d->reports_sent = d->in_failed = 0;
	d->late_max = d->late_1ms = d->late_5ms = 0;
	d->report_seq = 0;
	d->flags_pending = 0;
	d->sp_since_start = 0;
	d->starts++;
	d->t0 = mono_ns();
	d->wd_last_out = d->t0;
	d->last_in_progress = d->t0;
	d->wd_tripped = false;
	d->streaming = true;
	arm_timer(d);
	logf_(d, "stream start n=%u rate=%u spp=%u channels=%u watchdog_ms=%u", d->starts, d->o.rate, d->o.spp,
	      d->o.channels, d->wd_ms);
	say("stream %u started", d->starts);
}

static void watchdog_check(struct dev *d, uint64_t now)
{
	if (!d->wd_ms || d->wd_tripped || !d->streaming)
		return;
	uint64_t limit = (uint64_t)d->wd_ms * 1000000u;
	const char *why = NULL;
	if (now - d->wd_last_out > limit)
		why = "out-silent";
	else if (d->in_free < d->n_in && now - d->last_in_progress > limit)
		why = "in-stuck";
	if (!why)
		return;
	uint64_t s = dev_sample(d, now);
	d->wd_tripped = true;
	d->flags_pending |= MEAD_USB_SP_WATCHDOG;
	logf_(d, "watchdog fired reason=%s at=%" PRIu64 " ms_since_out=%.1f ms_since_in=%.1f", why, s,
	      (now - d->wd_last_out) / 1e6, (now - d->last_in_progress) / 1e6);
	say("watchdog fired (%s) at sample %" PRIu64, why, s);
	stop_outputs(d, s, "watchdog", true);
}

static void emit_truth(struct dev *d, uint64_t first, uint64_t end)
{
	if (!d->truth)
		return;
	uint32_t n = mg_synth_spikes(&d->synth, first, end, d->spk, d->spk_cap);
	for (uint32_t i = 0; i < n && i < d->spk_cap; i++)
		fprintf(d->truth, "%u,%" PRIu64 ",%u\n", d->starts, d->spk[i].sample, d->spk[i].electrode);
}

static void halt_in(struct dev *d)
{
	/* FunctionFS halts an endpoint on I/O in the wrong direction; the
	 * UDC refuses while requests are queued, hence the drain first */
	uint8_t b;
	ssize_t r = read(d->ep_in, &b, 1);
	int e = r < 0 ? errno : 0;
	d->halting = false;
	d->stalled = true;
	logf_(d, "in-halt after=%" PRIu64 " packets result=%s", d->sp_since_start, e ? strerror(e) : "no error");
	say("IN endpoint halted after %" PRIu64 " packets (%s)", d->sp_since_start,
	    e == EBADMSG ? "as FunctionFS does" : e ? strerror(e) : "read returned data");
}

static void produce(struct dev *d, uint64_t k)
{
	const uint64_t first = k * d->o.spp, end = first + d->o.spp;
	uint32_t n = mg_stim_advance(&d->stim, end, d->scratch, d->stim.cap + d->sr_max);
	log_records(d, "start", d->scratch, n);
	push_records(d, d->scratch, n);
	emit_truth(d, first, end);

	struct in_slot *s = NULL;
	if (!d->halting && d->enabled && d->in_free > SR_RESERVE)
		s = free_in_slot(d);
	if (s) {
		mg_sp_header(s->buf, d->flags_pending, (uint32_t)k, first);
		mg_synth_fill(&d->synth, first, d->o.spp, s->buf + MEAD_USB_SP_HEADER);
		int e = submit_in(d, s, d->sp_bytes, false);
		if (e == 0) {
			d->flags_pending = 0;
			d->sent++;
			d->sp_since_start++;
			if (d->o.stall_after >= 0 && !d->stalled && d->sp_since_start >= (uint64_t)d->o.stall_after)
				d->halting = true;
			return;
		}
		if (e != -EAGAIN && e != -ESHUTDOWN)
			logf_(d, "in-error packet seq=%" PRIu64 ": %s", k, strerror(-e));
	}
	d->dropped++;
}

static void tick(struct dev *d)
{
	/* edge-triggered, and timerfd_settime() clears the expiry count, so
	 * the timer needs no read */
	if (aio_maybe_ready(d))
		reap(d);
	if (!d->streaming)
		return;
	uint64_t now = mono_ns();
	uint64_t late = now > d->deadline ? now - d->deadline : 0;
	d->late_max = late > d->late_max ? late : d->late_max;
	d->late_1ms += late > 1000000u;
	d->late_5ms += late > 5000000u;
	watchdog_check(d, now);
	uint64_t avail = dev_sample(d, now) / d->o.spp;
	if (avail > d->produced + d->o.fifo_packets) {
		/* the loop fell behind by more than the device's FIFO: those
		 * samples are lost inside the device */
		uint64_t skip = avail - d->o.fifo_packets - d->produced;
		uint64_t from = d->produced * d->o.spp, to = (d->produced + skip) * d->o.spp;
		uint32_t n = mg_stim_advance(&d->stim, to, d->scratch, d->stim.cap + d->sr_max);
		log_records(d, "start", d->scratch, n);
		push_records(d, d->scratch, n);
		emit_truth(d, from, to);
		logf_(d, "overrun packets=%" PRIu64 " from=%" PRIu64, skip, from);
		d->overrun_packets += skip;
		d->produced += skip;
		d->flags_pending |= MEAD_USB_SP_OVERRUN;
	}
	while (d->produced < avail)
		produce(d, d->produced++);
	flush_reports(d);
	if (d->halting && d->in_free == d->n_in)
		halt_in(d);
	arm_timer(d);
	if (now - d->last_flush > 250000000u) {
		flush_files(d);
		d->last_flush = now;
	}
}

/* --- OUT: commands -------------------------------------------------------- */

static void submit_out(struct dev *d)
{
	if (!d->enabled)
		return;
	for (int i = 0; i < N_OUT; i++) {
		struct out_slot *s = &d->out[i];
		if (s->busy)
			continue;
		/* one packet per read: a command that fills whole packets
		 * then ends without a ZLP is not left waiting for the next */
		prep(d, &s->cb, d->ep_out, IOCB_CMD_PREAD, s->buf, d->out_mps ? d->out_mps : 512, true);
		struct iocb *v = &s->cb;
		if (sys_io_submit(d->aio, 1, &v) != 1)
			return;
		s->busy = true;
		s->done = false;
		s->order = d->out_next_submit++;
	}
}

static void handle_sc(struct dev *d, const uint8_t *b, const struct mg_cmd *h, uint64_t arrival)
{
	logf_(d, "cmd SC seq=%" PRIu32 " n=%u arrival=%" PRIu64 "%s", h->seq, h->n, arrival,
	      d->streaming ? "" : " refused=not-streaming");
	for (uint16_t i = 0; i < h->n; i++) {
		struct mg_pulse p;
		mg_pulse_decode(b + MEAD_USB_CMD_HEADER + (size_t)i * MEAD_USB_PULSE_BYTES, h->seq, i, &p);
		char what[96];
		if (!d->streaming) {
			snprintf(what, sizeof(what), "refused not-streaming");
		} else {
			uint64_t start = 0;
			unsigned st = mg_stim_offer(&d->stim, &p, arrival, &start);
			if (st == MEAD_USB_ST_DELIVERED || st == MEAD_USB_ST_LATE) {
				snprintf(what, sizeof(what), "queued start=%" PRIu64 " busy=%" PRIu64 "%s", start,
					 mg_stim_busy(&d->stim.lim, p.phase_us, p.interphase_us),
					 st == MEAD_USB_ST_LATE ? " late" : "");
			} else {
				snprintf(what, sizeof(what), "refused status=%u(%s)", st, mg_status_name(st));
				push_record(d, &(struct mg_record){ .started = 0, .cmd_seq = p.cmd_seq, .index = i,
								    .status = (uint16_t)st, .requested = p.start });
			}
		}
		logf_(d, "pulse seq=%" PRIu32 " idx=%u start=%" PRIu64 " electrode=%u flags=%u amp_na=%" PRId32
		      " phase_us=%" PRIu32 " interphase_us=%" PRIu32 " -> %s", p.cmd_seq, i, p.start, p.electrode,
		      p.flags, p.amp_na, p.phase_us, p.interphase_us, what);
	}
}

static void handle_cmd(struct dev *d, const uint8_t *b, const struct mg_cmd *h)
{
	uint64_t now = mono_ns();
	uint64_t arrival = dev_sample(d, now);
	/* a command is always judged against the samples already produced */
	if (d->streaming && arrival < d->stim.done_upto)
		arrival = d->stim.done_upto;
	d->wd_last_out = now;
	if (d->wd_tripped) {
		d->wd_tripped = false;
		d->last_in_progress = now;
		logf_(d, "watchdog re-armed");
	}
	switch (h->magic) {
	case MEAD_USB_SC_MAGIC:
		handle_sc(d, b, h, arrival);
		break;
	case MEAD_USB_SX_MAGIC:
		logf_(d, "cmd SX value=%" PRIu32 " arrival=%" PRIu64, h->seq, arrival);
		if (d->streaming)
			stop_outputs(d, arrival, "SX", true);
		break;
	case MEAD_USB_SK_MAGIC:
		logf_(d, "cmd SK counter=%" PRIu32 " arrival=%" PRIu64, h->seq, arrival);
		break;
	}
	flush_reports(d);
}

/* Commands are parsed as a byte stream cut into transfers: a read shorter
 * than wMaxPacketSize ends a transfer, and whatever is left of it then is
 * malformed. */
static void out_data(struct dev *d, const uint8_t *b, size_t len)
{
	if (!d->cmd_skip) {
		if (d->cmd_len + len > d->cmd_cap) {
			logf_(d, "cmd-malformed too-long bytes>%zu", d->cmd_cap);
			d->cmd_skip = true;
			d->cmd_len = 0;
		} else {
			memcpy(d->cmd + d->cmd_len, b, len);
			d->cmd_len += len;
		}
	}
	while (!d->cmd_skip && d->cmd_len) {
		struct mg_cmd h;
		long need = mg_cmd_length(d->cmd, d->cmd_len, (uint16_t)d->o.max_pulses, &h);
		if (need == 0)
			break;
		if (need < 0) {
			if (need == -E2BIG)
				logf_(d, "cmd-malformed SC seq=%" PRIu32 " n=%u: 1..%u pulses allowed", h.seq, h.n,
				      d->o.max_pulses);
			else
				logf_(d, "cmd-malformed magic=0x%04x", h.magic);
			d->cmd_skip = true;
			d->cmd_len = 0;
			break;
		}
		if (d->cmd_len < (size_t)need)
			break;
		handle_cmd(d, d->cmd, &h);
		memmove(d->cmd, d->cmd + need, d->cmd_len - (size_t)need);
		d->cmd_len -= (size_t)need;
	}
	if (len < (d->out_mps ? d->out_mps : 512u)) {
		if (d->cmd_len)
			logf_(d, "cmd-malformed truncated bytes=%zu", d->cmd_len);
		d->cmd_len = 0;
		d->cmd_skip = false;
	}
}

/* --- completions ----------------------------------------------------------- */

static void reap(struct dev *d)
{
	struct io_event ev[32];
	long n;
	while ((n = sys_io_reap(d->aio, 32, ev)) > 0) {
		uint64_t now = mono_ns();
		for (long i = 0; i < n; i++) {
			struct iocb *cb = (struct iocb *)(uintptr_t)ev[i].obj;
			long res = (long)ev[i].res;
			if (cb->aio_lio_opcode == IOCB_CMD_PREAD) {
				struct out_slot *s = (struct out_slot *)((char *)cb - offsetof(struct out_slot, cb));
				s->done = true;
				s->res = res;
				continue;
			}
			struct in_slot *s = NULL;
			for (uint32_t j = 0; j < d->n_in && !s; j++)
				if (cb == &d->in[j].cb || cb == &d->in[j].zlp)
					s = &d->in[j];
			if (!s || s->pending == 0)
				continue;
			if (cb == &s->cb)
				s->cb_busy = false;
			else
				s->zlp_busy = false;
			/* ESHUTDOWN and EAGAIN: the endpoint went away under
			 * it (an unplug); ECONNRESET: cancelled */
			if (res >= 0)
				d->last_in_progress = now;
			else if (res != -ECONNRESET && res != -ESHUTDOWN && res != -EAGAIN)
				logf_(d, "in-error %s: %s", s->report ? "report" : "packet", strerror((int)-res));
			if (res < 0 && !s->cancelled && cb == &s->cb)
				d->in_failed++;
			if (--s->pending == 0)
				d->in_free++;
		}
	}
	/* OUT in submission order; the endpoint completes them that way, this
	 * only keeps it so when one batch holds several */
	for (;;) {
		struct out_slot *s = NULL;
		for (int i = 0; i < N_OUT && !s; i++)
			if (d->out[i].busy && d->out[i].done && d->out[i].order == d->out_next_done)
				s = &d->out[i];
		if (!s)
			break;
		d->out_next_done++;
		s->busy = false;
		if (s->res >= 0)
			out_data(d, s->buf, (size_t)s->res);
		else {
			d->cmd_len = 0;
			d->cmd_skip = false;
			if (s->res != -ESHUTDOWN && s->res != -ECONNRESET)
				logf_(d, "out-error: %s", strerror((int)-s->res));
		}
	}
	/* an OUT read that never completes (the host left) holds its order
	 * number; after a DISABLE all complete, so restart the count */
	bool any = false;
	for (int i = 0; i < N_OUT; i++)
		any |= d->out[i].busy;
	if (!any)
		d->out_next_done = d->out_next_submit;
	submit_out(d);
	flush_reports(d);
	if (d->halting && d->in_free == d->n_in)
		halt_in(d);
}

static void on_eventfd(struct dev *d)
{
	uint64_t cnt;
	if (read(d->evfd, &cnt, sizeof(cnt)) > 0)
		reap(d);
}

/* --- ep0 ------------------------------------------------------------------- */

static void ep0_ack(struct dev *d)
{
	if (read(d->ep0, NULL, 0) < 0 && errno != EIDRM)
		logf_(d, "ep0 status stage: %s", strerror(errno));
}

static void ep0_stall(struct dev *d, bool in)
{
	/* FunctionFS stalls ep0 on I/O against the request's direction */
	ssize_t r = in ? read(d->ep0, NULL, 0) : write(d->ep0, NULL, 0);
	(void)r;
}

static void handle_setup(struct dev *d, const struct usb_ctrlrequest *c)
{
	const bool in = c->bRequestType & USB_DIR_IN;
	const uint16_t value = le16toh(c->wValue), index = le16toh(c->wIndex), length = le16toh(c->wLength);
	const bool vendor_intf =
		(c->bRequestType & (USB_TYPE_MASK | USB_RECIP_MASK)) == (USB_TYPE_VENDOR | USB_RECIP_INTERFACE);
	static const char *const names[] = { "?", "GET_INFO", "START", "STOP", "GET_CLOCK", "SET_WATCHDOG" };
	const bool known = vendor_intf && c->bRequest >= MEAD_USB_REQ_GET_INFO && c->bRequest <= MEAD_USB_REQ_SET_WATCHDOG;
	const bool wants_in = c->bRequest == MEAD_USB_REQ_GET_INFO || c->bRequest == MEAD_USB_REQ_GET_CLOCK;
	const char *name = known ? names[c->bRequest] : "unknown";
	uint64_t now = mono_ns(), sample = 0, us = 0;
	uint8_t b[MEAD_USB_INFO_BYTES];
	const char *result = "ok";

	if (!known || in != wants_in) {
		ep0_stall(d, in);
		result = "stall";
	} else if (in) {
		size_t len = MEAD_USB_INFO_BYTES;
		if (c->bRequest == MEAD_USB_REQ_GET_INFO) {
			mg_info_encode(b, &d->info);
		} else {
			dev_now(d, now, &sample, &us);
			mg_clock_encode(b, sample, us);
			len = MEAD_USB_CLOCK_BYTES;
		}
		if (write(d->ep0, b, length < len ? length : len) < 0)
			result = strerror(errno);
	} else {
		/* a data stage nobody asked for is read and ignored */
		if (length && read(d->ep0, b, length < sizeof(b) ? length : sizeof(b)) < 0)
			result = strerror(errno);
		/* the host learns of START at the status stage, so sample 0 is
		 * taken after it */
		if (c->bRequest == MEAD_USB_REQ_START) {
			if (d->streaming)
				end_stream(d, "restart");
			flush_in(d);
		}
		if (!length)
			ep0_ack(d);
		switch (c->bRequest) {
		case MEAD_USB_REQ_START:
			start_stream(d);
			break;
		case MEAD_USB_REQ_STOP:
			end_stream(d, "STOP");
			break;
		case MEAD_USB_REQ_SET_WATCHDOG:
			d->wd_ms = value;
			d->wd_last_out = now;
			d->last_in_progress = now;
			d->wd_tripped = false;
			say("watchdog %s (%u ms)", value ? "on" : "off", value);
			break;
		}
	}
	logf_(d, "ctrl %s bmRequestType=0x%02x bRequest=0x%02x wValue=%u wIndex=%u wLength=%u -> %s", name,
	      c->bRequestType, c->bRequest, value, index, length, result);
	if (known && c->bRequest == MEAD_USB_REQ_GET_CLOCK && in)
		logf_(d, "clock sample=%" PRIu64 " us=%" PRIu64, sample, us);
}

static void endpoint_info(struct dev *d)
{
	struct usb_endpoint_descriptor ed;
	if (ioctl(d->ep_in, FUNCTIONFS_ENDPOINT_DESC, &ed) == 0) {
		d->in_mps = le16toh(ed.wMaxPacketSize);
		d->in_addr = ed.bEndpointAddress;
	}
	if (ioctl(d->ep_out, FUNCTIONFS_ENDPOINT_DESC, &ed) == 0) {
		d->out_mps = le16toh(ed.wMaxPacketSize);
		d->out_addr = ed.bEndpointAddress;
	}
	if (d->out_mps == 0 || d->out_mps > sizeof(d->out[0].buf))
		d->out_mps = 512;
}

static void handle_events(struct dev *d)
{
	struct usb_functionfs_event ev[4];
	ssize_t r = read(d->ep0, ev, sizeof(ev));
	if (r < 0) {
		if (errno != EINTR && errno != EAGAIN && errno != EIDRM)
			say("ep0: %s", strerror(errno));
		return;
	}
	for (size_t i = 0; i < (size_t)r / sizeof(ev[0]); i++) {
		switch (ev[i].type) {
		case FUNCTIONFS_BIND:
			logf_(d, "event BIND");
			break;
		case FUNCTIONFS_UNBIND:
			logf_(d, "event UNBIND");
			end_stream(d, "unbind");
			d->enabled = false;
			break;
		case FUNCTIONFS_ENABLE:
			d->enabled = true;
			endpoint_info(d);
			logf_(d, "event ENABLE in=0x%02x/%u out=0x%02x/%u", d->in_addr, d->in_mps, d->out_addr, d->out_mps);
			say("configured: bulk IN 0x%02x, bulk OUT 0x%02x, %u-byte packets", d->in_addr, d->out_addr, d->in_mps);
			d->cmd_len = 0;
			d->cmd_skip = false;
			submit_out(d);
			break;
		case FUNCTIONFS_DISABLE:
			logf_(d, "event DISABLE");
			end_stream(d, "disable");
			d->enabled = false;
			say("unconfigured");
			break;
		case FUNCTIONFS_SETUP:
			handle_setup(d, &ev[i].u.setup);
			break;
		case FUNCTIONFS_SUSPEND:
			logf_(d, "event SUSPEND");
			break;
		case FUNCTIONFS_RESUME:
			logf_(d, "event RESUME");
			break;
		default:
			logf_(d, "event %u", ev[i].type);
			break;
		}
	}
	flush_files(d);
}

/* --- descriptors ----------------------------------------------------------- */

/* htole*() are not constant expressions */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define LE16(x) ((uint16_t)(x))
#define LE32(x) ((uint32_t)(x))
#else
#define LE16(x) __builtin_bswap16(x)
#define LE32(x) __builtin_bswap32(x)
#endif

struct ep_set {
	struct usb_interface_descriptor intf;
	struct usb_endpoint_descriptor_no_audio in, out;
} __attribute__((packed));

static const struct {
	struct usb_functionfs_descs_head_v2 head;
	__le32 fs_count, hs_count;
	struct ep_set fs, hs;
} __attribute__((packed)) descriptors_le = {
	.head = {
		.magic = LE32(FUNCTIONFS_DESCRIPTORS_MAGIC_V2),
		.length = LE32(sizeof(descriptors_le)),
		.flags = LE32(FUNCTIONFS_HAS_FS_DESC | FUNCTIONFS_HAS_HS_DESC),
	},
	.fs_count = LE32(3),
	.hs_count = LE32(3),
#define EP_SET(mps) { \
		.intf = { .bLength = USB_DT_INTERFACE_SIZE, .bDescriptorType = USB_DT_INTERFACE, \
			  .bInterfaceNumber = 0, .bNumEndpoints = 2, .bInterfaceClass = USB_CLASS_VENDOR_SPEC, \
			  .iInterface = 1 }, \
		/* the UDC picks the real numbers; these only tell IN from OUT */ \
		.in = { .bLength = USB_DT_ENDPOINT_SIZE, .bDescriptorType = USB_DT_ENDPOINT, \
			.bEndpointAddress = 1 | USB_DIR_IN, .bmAttributes = USB_ENDPOINT_XFER_BULK, \
			.wMaxPacketSize = LE16(mps) }, \
		.out = { .bLength = USB_DT_ENDPOINT_SIZE, .bDescriptorType = USB_DT_ENDPOINT, \
			 .bEndpointAddress = 2 | USB_DIR_OUT, .bmAttributes = USB_ENDPOINT_XFER_BULK, \
			 .wMaxPacketSize = LE16(mps) }, \
	}
	.fs = EP_SET(64),
	.hs = EP_SET(512),
#undef EP_SET
};

#define INTERFACE_STRING "mead MEA front-end, protocol v2"

static const struct {
	struct usb_functionfs_strings_head head;
	struct {
		__le16 code;
		char str[sizeof(INTERFACE_STRING)];
	} __attribute__((packed)) lang0;
} __attribute__((packed)) strings_le = {
	.head = {
		.magic = LE32(FUNCTIONFS_STRINGS_MAGIC),
		.length = LE32(sizeof(strings_le)),
		.str_count = LE32(1),
		.lang_count = LE32(1),
	},
	.lang0 = { LE16(0x0409), INTERFACE_STRING },
};

/* --- set-up and tear-down ------------------------------------------------- */

static int open_ffs(struct dev *d, char *err, size_t err_len)
{
	char path[300];
	snprintf(path, sizeof(path), "%s/ep0", d->g.ffs_dir);
	d->ep0 = open(path, O_RDWR);
	if (d->ep0 < 0) {
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		return -errno;
	}
	if (write(d->ep0, &descriptors_le, sizeof(descriptors_le)) < 0) {
		snprintf(err, err_len, "%s: writing the descriptors: %s (is another program using this function?)", path,
			 strerror(errno));
		return -errno;
	}
	if (write(d->ep0, &strings_le, sizeof(strings_le)) < 0) {
		snprintf(err, err_len, "%s: writing the strings: %s", path, strerror(errno));
		return -errno;
	}
	/* the endpoint files appear once the strings are in, numbered in
	 * descriptor order */
	snprintf(path, sizeof(path), "%s/ep1", d->g.ffs_dir);
	d->ep_in = open(path, O_RDWR | O_NONBLOCK);
	if (d->ep_in < 0) {
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		return -errno;
	}
	snprintf(path, sizeof(path), "%s/ep2", d->g.ffs_dir);
	d->ep_out = open(path, O_RDWR | O_NONBLOCK);
	if (d->ep_out < 0) {
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		return -errno;
	}
	return 0;
}

static int alloc_all(struct dev *d, char *err, size_t err_len)
{
	const struct opts *o = &d->o;
	d->sp_bytes = mg_sp_bytes(o->spp, o->channels);
	d->sr_max = mg_sr_capacity(d->sp_bytes);
	d->n_in = o->in_queue;
	d->in_free = d->n_in;
	d->in = calloc(d->n_in, sizeof(*d->in));
	if (!d->in)
		return -ENOMEM;
	for (uint32_t i = 0; i < d->n_in; i++) {
		/* page-aligned so that a UDC doing DMA from a bounce buffer
		 * and one mapping it directly both get what they like */
		if (posix_memalign((void **)&d->in[i].buf, 4096, d->sp_bytes))
			return -ENOMEM;
		memset(d->in[i].buf, 0, d->sp_bytes);
	}
	d->cmd_cap = MEAD_USB_CMD_HEADER + (size_t)o->max_pulses * MEAD_USB_PULSE_BYTES;
	d->cmd = calloc(1, d->cmd_cap);
	d->rec_cap = 4 * o->queue + 4 * o->max_pulses + 64;
	d->rec = calloc(d->rec_cap, sizeof(*d->rec));
	d->scratch = calloc((size_t)o->queue + d->sr_max + o->max_pulses, sizeof(*d->scratch));
	d->spk_cap = 4096;
	d->spk = calloc(d->spk_cap, sizeof(*d->spk));
	if (!d->cmd || !d->rec || !d->scratch || !d->spk)
		return -ENOMEM;

	struct mg_stim_limits lim = {
		.channels = (uint16_t)o->channels,
		.rate = o->rate,
		.max_na = (uint32_t)(o->max_ua * 1000.0 + 0.5),
		.max_phase_us = o->max_phase_us,
		.max_interphase_us = o->max_interphase_us,
		.max_lead = 3600ull * o->rate,
	};
	int e = mg_stim_init(&d->stim, &lim, o->queue);
	if (e < 0)
		return e;
	struct mg_synth_config sc = {
		.channels = (uint16_t)o->channels,
		.rate = o->rate,
		.seed = o->seed,
		.nv_per_count = o->nv_per_count,
		.noise_nv = (uint32_t)(o->noise_uv * 1000.0 + 0.5),
		.spike_nv = (uint32_t)(o->spike_uv * 1000.0 + 0.5),
		.spike_every_us = (uint32_t)(o->spike_every_ms * 1000.0 + 0.5),
		.electrodes = o->spike_el,
		.n_electrodes = o->n_spike_el,
	};
	if ((e = mg_synth_init(&d->synth, &sc, err, err_len)) < 0) {
		char why[300];
		snprintf(why, sizeof(why), "%s", err);
		snprintf(err, err_len, "the signal options (--spike-*, --noise-uv, --nv-per-count): %s", why);
		return e;
	}
	d->info = (struct mg_info){
		.version = MEAD_USB_VERSION,
		.channels = (uint16_t)o->channels,
		.rate = o->rate,
		.nv_per_count = o->nv_per_count,
		.spp = (uint16_t)o->spp,
		.flags = MEAD_USB_INFO_CAN_STIMULATE | MEAD_USB_INFO_REPORTS | MEAD_USB_INFO_WATCHDOG,
		.max_na = lim.max_na,
		.max_phase_us = o->max_phase_us,
		.max_pulses = (uint16_t)o->max_pulses,
	};
	snprintf(d->info.serial, sizeof(d->info.serial), "%s", o->serial);
	snprintf(d->info.model, sizeof(d->info.model), "%s", MODEL);
	double ppb = o->clock_ppm * 1000.0;
	d->clk = (struct mg_clock){ .rate = o->rate, .ppb = (int64_t)(ppb < 0 ? ppb - 0.5 : ppb + 0.5) };
	return 0;
}

static int open_outputs(struct dev *d)
{
	if (d->o.log) {
		d->log = fopen(d->o.log, "w");
		if (!d->log) {
			say("--log %s: %s", d->o.log, strerror(errno));
			return -errno;
		}
		setvbuf(d->log, log_buf, _IOFBF, sizeof(log_buf));
	}
	if (d->o.truth) {
		d->truth = fopen(d->o.truth, "w");
		if (!d->truth) {
			say("--truth %s: %s", d->o.truth, strerror(errno));
			return -errno;
		}
		setvbuf(d->truth, truth_buf, _IOFBF, sizeof(truth_buf));
		fprintf(d->truth, "start,sample,electrode\n");
	}
	return 0;
}

static int setup_loop(struct dev *d, char *err, size_t err_len)
{
	d->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	d->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGHUP);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	d->sfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
	if (d->evfd < 0 || d->tfd < 0 || d->epfd < 0 || d->sfd < 0) {
		snprintf(err, err_len, "event loop: %s", strerror(errno));
		return -errno;
	}
	if (sys_io_setup(2 * d->n_in + N_OUT + 4, &d->aio) < 0) {
		snprintf(err, err_len, "io_setup: %s", strerror(errno));
		return -errno;
	}
	int fds[] = { d->ep0, d->tfd, d->evfd, d->sfd };
	for (int i = 0; i < 4; i++) {
		struct epoll_event ev = { .events = EPOLLIN | (fds[i] == d->tfd ? EPOLLET : 0), .data.fd = fds[i] };
		if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fds[i], &ev) < 0) {
			snprintf(err, err_len, "epoll: %s", strerror(errno));
			return -errno;
		}
	}
	return 0;
}

static void run(struct dev *d)
{
	while (!d->quit) {
		struct epoll_event ev[8];
		int n = epoll_wait(d->epfd, ev, 8, 1000);
		if (n < 0 && errno != EINTR) {
			say("epoll_wait: %s", strerror(errno));
			return;
		}
		for (int i = 0; i < n; i++) {
			int fd = ev[i].data.fd;
			if (fd == d->tfd)
				tick(d);
			else if (fd == d->evfd)
				on_eventfd(d);
			else if (fd == d->ep0)
				handle_events(d);
			else if (fd == d->sfd)
				d->quit = true;
		}
	}
}

static void shutdown_all(struct dev *d)
{
	end_stream(d, "exit");
	if (d->aio) {
		cancel_in(d);
		for (int i = 0; i < N_OUT; i++) {
			struct io_event ev;
			if (d->out[i].busy)
				sys_io_cancel(d->aio, &d->out[i].cb, &ev);
		}
	}
	/* unbinding completes whatever the host never fetched, so that
	 * io_destroy does not wait for it */
	mg_gadget_unbind(&d->g);
	if (d->aio)
		sys_io_destroy(d->aio);
	if (d->ep_in >= 0)
		close(d->ep_in);
	if (d->ep_out >= 0)
		close(d->ep_out);
	if (d->ep0 >= 0)
		close(d->ep0);
	mg_gadget_teardown(&d->g);
	logf_(d, "exit");
	flush_files(d);
	if (d->log)
		fclose(d->log);
	if (d->truth)
		fclose(d->truth);
}

int main(int argc, char **argv)
{
	static struct dev dev;
	struct dev *d = &dev;
	char err[512] = "";
	d->ep0 = d->ep_in = d->ep_out = -1;
	d->prog_t0 = mono_ns();
	if (parse_opts(argc, argv, &d->o) < 0)
		return 2;
	if (alloc_all(d, err, sizeof(err)) < 0) {
		say("%s", err[0] ? err : strerror(ENOMEM));
		return 2;
	}
	if (open_outputs(d) < 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);

	char ffs_dir[256];
	if (d->o.ffs_dir)
		snprintf(ffs_dir, sizeof(ffs_dir), "%s", d->o.ffs_dir);
	else
		snprintf(ffs_dir, sizeof(ffs_dir), "/dev/usb-ffs/%s", d->o.ffs_name);
	struct mg_gadget_ids ids = {
		.vid = 0x1209, .pid = 0x4d45, .bcd_device = 0x0200,
		.manufacturer = "mead", .product = "mead MEA front-end (reference device)", .serial = d->o.serial,
	};
	int rc = 1;
	if (mg_gadget_prepare(&d->g, d->o.gadget, d->o.ffs_name, ffs_dir, &ids, err, sizeof(err)) < 0) {
		say("%s", err);
		goto out;
	}
	if (open_ffs(d, err, sizeof(err)) < 0 || setup_loop(d, err, sizeof(err)) < 0) {
		say("%s", err);
		goto out;
	}
	if (!d->o.no_bind) {
		char udc[64];
		if (d->o.udc)
			snprintf(udc, sizeof(udc), "%s", d->o.udc);
		else if (mg_default_udc(udc, sizeof(udc), err, sizeof(err)) < 0) {
			say("%s", err);
			goto out;
		}
		if (mg_gadget_bind(&d->g, udc, err, sizeof(err)) < 0) {
			say("%s", err);
			goto out;
		}
		say("bound %s to %s: %u channels, %u Hz, %u samples per packet (%zu bytes)", d->g.dir, udc,
		    d->o.channels, d->o.rate, d->o.spp, d->sp_bytes);
	}
	logf_(d, "ready channels=%u rate=%u spp=%u packet_bytes=%zu seed=%" PRIu64 " clock_ppm=%.3f max_pulses=%u "
	      "queue=%u in_queue=%u", d->o.channels, d->o.rate, d->o.spp, d->sp_bytes, d->o.seed, d->o.clock_ppm,
	      d->o.max_pulses, d->o.queue, d->o.in_queue);
	flush_files(d);
	if (mlockall(MCL_CURRENT | MCL_FUTURE) < 0)
		logf_(d, "mlockall: %s", strerror(errno));
	if (d->o.rt_priority > 0) {
		struct sched_param sp = { .sched_priority = d->o.rt_priority };
		if (sched_setscheduler(0, SCHED_FIFO, &sp) < 0)
			say("SCHED_FIFO %d: %s (running without)", d->o.rt_priority, strerror(errno));
	}
	run(d);
	rc = 0;
out:
	shutdown_all(d);
	mg_synth_free(&d->synth);
	mg_stim_free(&d->stim);
	return rc;
}
