/* SPDX-License-Identifier: MIT */
/*
 * comedi-probe: asks a Comedi board, through comedilib, what the kernel
 * tests take as their oracle, and prints it as JSON on one line.
 *
 *   comedi-probe [-d DEV] info
 *   comedi-probe [-d DEV] cmdtest SUBDEV NCHAN RATE_HZ [packed|spread]
 *   comedi-probe [-d DEV] fastest SUBDEV NCHAN
 *   comedi-probe [-d DEV] read SUBDEV CHAN [RANGE]
 *   comedi-probe [-d DEV] write SUBDEV CHAN CODE [RANGE]
 *   comedi-probe [-d DEV] watch SUBDEV CHAN SECONDS INTERVAL_US
 *   comedi-probe [-d DEV] stream NCHAN RATE_HZ SECONDS RANGE [FILE]
 *
 * The shape of a scan: packed (the default) is the rig driver's command,
 * conversions back to back (convert_arg 0, which the board raises to its
 * fastest); spread puts them evenly over the scan (scan / NCHAN), as the
 * driver once did, which comedi_test's microsecond rounding breaks for most
 * rates.  stream runs the packed shape.
 * watch reads one channel by instruction over and over and counts the codes
 * and refusals, until SECONDS are over or SIGTERM comes; stream runs a continuous command of its own and reads it as
 * fast as it can, so the board's own pace is known apart from the daemon's
 * (FILE gets the samples as read, native 16-bit).
 */
#include <comedilib.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static comedi_t *dev;
static volatile sig_atomic_t stop_watch;

static void on_term(int sig)
{
	(void)sig;
	stop_watch = 1;
}

static long arg_l(const char *s, const char *what)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 0);
	if (errno || *end || end == s) {
		fprintf(stderr, "comedi-probe: %s: '%s' is not a number\n", what, s);
		exit(2);
	}
	return v;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static const char *src_name(unsigned src)
{
	switch (src) {
	case TRIG_NONE: return "none";
	case TRIG_NOW: return "now";
	case TRIG_FOLLOW: return "follow";
	case TRIG_TIME: return "time";
	case TRIG_TIMER: return "timer";
	case TRIG_COUNT: return "count";
	case TRIG_EXT: return "ext";
	case TRIG_INT: return "int";
	case TRIG_OTHER: return "other";
	default: return "mixed";
	}
}

static int info(void)
{
	int n = comedi_get_n_subdevices(dev);
	printf("{\"board\":\"%s\",\"driver\":\"%s\",\"subdevices\":[", comedi_get_board_name(dev),
	       comedi_get_driver_name(dev));
	for (int s = 0; s < n; s++) {
		int nch = comedi_get_n_channels(dev, (unsigned)s);
		int flags = comedi_get_subdevice_flags(dev, (unsigned)s);
		printf("%s{\"index\":%d,\"type\":%d,\"flags\":%d,\"channels\":%d,\"maxdata\":%u,"
		       "\"cmd_read\":%s,\"cmd_write\":%s,\"soft_calibrated\":%s,\"ranges\":[",
		       s ? "," : "", s, comedi_get_subdevice_type(dev, (unsigned)s), flags, nch,
		       (unsigned)comedi_get_maxdata(dev, (unsigned)s, 0),
		       (flags & SDF_CMD_READ) ? "true" : "false", (flags & SDF_CMD_WRITE) ? "true" : "false",
		       (flags & SDF_SOFT_CALIBRATED) ? "true" : "false");
		int nr = nch > 0 ? comedi_get_n_ranges(dev, (unsigned)s, 0) : 0;
		for (int r = 0; r < nr; r++) {
			comedi_range *rg = comedi_get_range(dev, (unsigned)s, 0, (unsigned)r);
			comedi_polynomial_t p;
			int hc = comedi_get_hardcal_converter(dev, (unsigned)s, 0, (unsigned)r, COMEDI_TO_PHYSICAL, &p);
			printf("%s{\"min\":%.9g,\"max\":%.9g,\"unit\":%u", r ? "," : "", rg->min, rg->max, rg->unit);
			if (hc == 0 && p.order >= 1)
				printf(",\"hardcal_to_physical\":{\"c0\":%.17g,\"c1\":%.17g,\"origin\":%.17g}",
				       p.coefficients[0], p.coefficients[1], p.expansion_origin);
			hc = comedi_get_hardcal_converter(dev, (unsigned)s, 0, (unsigned)r, COMEDI_FROM_PHYSICAL, &p);
			if (hc == 0 && p.order >= 1)
				printf(",\"hardcal_from_physical\":{\"c0\":%.17g,\"c1\":%.17g,\"origin\":%.17g}",
				       p.coefficients[0], p.coefficients[1], p.expansion_origin);
			printf("}");
		}
		printf("]");
		comedi_cmd c;
		if ((flags & (SDF_CMD_READ | SDF_CMD_WRITE)) && comedi_get_cmd_src_mask(dev, (unsigned)s, &c) == 0)
			printf(",\"src_mask\":{\"start\":%u,\"scan_begin\":%u,\"convert\":%u,\"scan_end\":%u,\"stop\":%u}",
			       c.start_src, c.scan_begin_src, c.convert_src, c.scan_end_src, c.stop_src);
		printf("}");
	}
	printf("]}\n");
	return 0;
}

static void print_cmd(const char *key, const comedi_cmd *c)
{
	printf("\"%s\":{\"start\":\"%s\",\"scan_begin\":\"%s\",\"scan_begin_arg\":%u,\"convert\":\"%s\","
	       "\"convert_arg\":%u,\"scan_end_arg\":%u,\"stop\":\"%s\"}",
	       key, src_name(c->start_src), src_name(c->scan_begin_src), c->scan_begin_arg,
	       src_name(c->convert_src), c->convert_arg, c->scan_end_arg, src_name(c->stop_src));
}

static void fill_ai_cmd(comedi_cmd *c, unsigned sub, unsigned *chans, unsigned n, unsigned range,
			unsigned scan_ns, unsigned convert_src, unsigned convert_ns)
{
	memset(c, 0, sizeof(*c));
	for (unsigned i = 0; i < n; i++)
		chans[i] = CR_PACK(i, range, AREF_GROUND);
	c->subdev = sub;
	c->start_src = TRIG_NOW;
	c->scan_begin_src = TRIG_TIMER;
	c->scan_begin_arg = scan_ns;
	c->convert_src = convert_src;
	c->convert_arg = convert_ns;
	c->scan_end_src = TRIG_COUNT;
	c->scan_end_arg = n;
	c->stop_src = TRIG_NONE;
	c->chanlist = chans;
	c->chanlist_len = n;
}

/* Up to three passes, as comedilib's users do: stage 4 means "adjusted". */
static int settle(comedi_cmd *c, int *stages)
{
	int r = 0;
	for (int pass = 0; pass < 3; pass++) {
		r = comedi_command_test(dev, c);
		stages[pass] = r;
		if (r <= 0 || r == 1 || r == 2)
			break;
	}
	return r;
}

/* The driver's command: timed conversions back to back (convert_arg 0);
 * TRIG_NOW where the board has no convert timer. */
static int packed_settle(comedi_cmd *c, unsigned sub, unsigned *chans, unsigned n, unsigned range, unsigned period,
			 int *st)
{
	fill_ai_cmd(c, sub, chans, n, range, period, TRIG_TIMER, 0);
	int r = settle(c, st);
	if (r == 1 || r == 2) {
		fill_ai_cmd(c, sub, chans, n, range, period, TRIG_NOW, 0);
		r = settle(c, st);
	}
	return r;
}

static int cmdtest(unsigned sub, unsigned n, unsigned rate, bool spread)
{
	unsigned chans[64];
	comedi_cmd c;
	int st[3] = { -9, -9, -9 };
	if (n == 0 || n > 64 || rate == 0) {
		fprintf(stderr, "comedi-probe: cmdtest: 1..64 channels and a rate above 0\n");
		return 2;
	}
	unsigned period = (unsigned)(1000000000ull / rate);
	int r;
	printf("{\"rate_hz\":%u,\"period_ns\":%u,\"shape\":\"%s\",", rate, period, spread ? "spread" : "packed");
	if (spread) {
		fill_ai_cmd(&c, sub, chans, n, 0, period, TRIG_TIMER, period / n);
		print_cmd("asked", &c);
		r = settle(&c, st);
	} else {
		fill_ai_cmd(&c, sub, chans, n, 0, period, TRIG_TIMER, 0);
		print_cmd("asked", &c);
		r = packed_settle(&c, sub, chans, n, 0, period, st);
	}
	printf(",\"stages\":[%d,%d,%d],\"result\":%d,", st[0], st[1], st[2], r);
	print_cmd("settled", &c);
	printf(",\"scan_kept\":%s,\"offered_hz\":%.6f}\n", c.scan_begin_arg == period ? "true" : "false",
	       c.scan_begin_arg ? 1e9 / c.scan_begin_arg : 0.0);
	return 0;
}

static int fastest(unsigned sub, unsigned n)
{
	unsigned chans[64];
	comedi_cmd c;
	int st[3];
	if (n == 0 || n > 64) {
		fprintf(stderr, "comedi-probe: fastest: 1..64 channels\n");
		return 2;
	}
	printf("{\"channels\":%u", n);
	static const struct { const char *name; unsigned src, arg; } shapes[] = {
		{ "convert_now", TRIG_NOW, 0 },
		{ "convert_timer_1ns", TRIG_TIMER, 1 },
		{ "convert_timer_1us", TRIG_TIMER, 1000 },
	};
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		fill_ai_cmd(&c, sub, chans, n, 0, 1, shapes[i].src, shapes[i].arg);
		int r = settle(&c, st);
		printf(",\"%s\":{\"result\":%d,\"scan_begin_ns\":%u,\"convert_ns\":%u,\"rate_hz\":%.3f}", shapes[i].name, r,
		       c.scan_begin_arg, c.convert_arg, c.scan_begin_arg ? 1e9 / c.scan_begin_arg : 0.0);
	}
	comedi_cmd g;
	if (comedi_get_cmd_generic_timed(dev, sub, &g, n, 1) == 0)
		printf(",\"generic_timed_1ns\":{\"scan_begin_ns\":%u,\"convert\":\"%s\",\"convert_ns\":%u}",
		       g.scan_begin_arg, src_name(g.convert_src), g.convert_arg);
	printf("}\n");
	return 0;
}

static const char *errname(int e)
{
	switch (e) {
	case EBUSY: return "EBUSY";
	case EACCES: return "EACCES";
	case EINVAL: return "EINVAL";
	case ENODEV: return "ENODEV";
	case EIO: return "EIO";
	default: return "other";
	}
}

static int insn_read(unsigned sub, unsigned chan, unsigned range)
{
	lsampl_t v;
	if (comedi_data_read(dev, sub, chan, range, AREF_GROUND, &v) < 0) {
		int e = errno;
		printf("{\"error\":\"%s\",\"errno\":%d,\"message\":\"%s\"}\n", errname(e), e, strerror(e));
		return 1;
	}
	printf("{\"code\":%u}\n", (unsigned)v);
	return 0;
}

static int insn_write(unsigned sub, unsigned chan, unsigned code, unsigned range)
{
	if (comedi_data_write(dev, sub, chan, range, AREF_GROUND, code) < 0) {
		int e = errno;
		printf("{\"error\":\"%s\",\"errno\":%d,\"message\":\"%s\"}\n", errname(e), e, strerror(e));
		return 1;
	}
	printf("{\"written\":%u}\n", code);
	return 0;
}

struct count { lsampl_t code; uint64_t n; };

static int watch(unsigned sub, unsigned chan, double seconds, long interval_us)
{
	struct count codes[64];
	unsigned ncodes = 0;
	uint64_t reads = 0, ebusy = 0, other = 0, overflow = 0;
	int last_err = 0;
	double end = now_s() + seconds;
	struct sigaction sa = { .sa_handler = on_term };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	while (!stop_watch && now_s() < end) {
		lsampl_t v;
		if (comedi_data_read(dev, sub, chan, 0, AREF_GROUND, &v) < 0) {
			last_err = errno;
			if (errno == EBUSY)
				ebusy++;
			else
				other++;
			if (errno == ENODEV)
				break;
		} else {
			reads++;
			unsigned i = 0;
			while (i < ncodes && codes[i].code != v)
				i++;
			if (i == ncodes) {
				if (ncodes < sizeof(codes) / sizeof(codes[0]))
					codes[ncodes++] = (struct count){ v, 0 };
				else
					i = UINT32_MAX;
			}
			if (i == UINT32_MAX)
				overflow++;
			else
				codes[i].n++;
		}
		if (interval_us > 0)
			usleep((useconds_t)interval_us);
	}
	printf("{\"reads\":%" PRIu64 ",\"ebusy\":%" PRIu64 ",\"other_errors\":%" PRIu64 ",\"last_error\":\"%s\","
	       "\"untracked\":%" PRIu64 ",\"codes\":{",
	       reads, ebusy, other, last_err ? strerror(last_err) : "", overflow);
	for (unsigned i = 0; i < ncodes; i++)
		printf("%s\"%u\":%" PRIu64, i ? "," : "", (unsigned)codes[i].code, codes[i].n);
	printf("}}\n");
	return 0;
}

/* Reads a command of its own straight from the device: how many scans the
 * board delivers per second, and whether it overflows, with nobody else
 * between it and the reader. */
static int stream(unsigned n, unsigned rate, double seconds, unsigned range, const char *file)
{
	unsigned chans[64];
	comedi_cmd c;
	int st[3];
	if (n == 0 || n > 64 || rate == 0) {
		fprintf(stderr, "comedi-probe: stream: 1..64 channels and a rate above 0\n");
		return 2;
	}
	FILE *dump = NULL;
	if (file && !(dump = fopen(file, "wb"))) {
		fprintf(stderr, "comedi-probe: cannot create %s: %s\n", file, strerror(errno));
		return 2;
	}
	unsigned period = (unsigned)(1000000000ull / rate);
	int r = packed_settle(&c, 0, chans, n, range, period, st);
	if (r != 0 || comedi_command(dev, &c) < 0) {
		if (r != 0)
			printf("{\"error\":\"command test stage %d\"}\n", r);
		else
			printf("{\"error\":\"%s\"}\n", comedi_strerror(comedi_errno()));
		if (dump)
			fclose(dump);
		return 1;
	}
	static uint16_t buf[1 << 16];
	uint64_t bytes = 0;
	int err = 0;
	double t0 = now_s(), end = t0 + seconds;
	uint16_t first[8] = { 0 };
	while (now_s() < end) {
		ssize_t k = read(comedi_fileno(dev), buf, sizeof(buf));
		if (k < 0) {
			err = errno;
			break;
		}
		if (k == 0)
			break;
		if (bytes == 0)
			memcpy(first, buf, sizeof(first));
		if (dump && fwrite(buf, 1, (size_t)k, dump) != (size_t)k) {
			err = errno;
			break;
		}
		bytes += (uint64_t)k;
	}
	double dt = now_s() - t0;
	/* what the board made and the reader had not taken yet */
	int waiting = comedi_get_buffer_contents(dev, 0);
	comedi_cancel(dev, 0);
	if (dump && fclose(dump) != 0 && !err)
		err = errno;
	printf("{\"rate_hz\":%u,\"scan_ns\":%u,\"convert_ns\":%u,\"seconds\":%.3f,\"scans\":%" PRIu64
	       ",\"scans_per_s\":%.1f,\"waiting_scans\":%d,\"made_per_s\":%.1f,\"expected_scans\":%.0f,\"error\":\"%s\",\"first_scan\":[%u,%u,%u,%u,%u,%u,%u,%u]}\n",
	       rate, c.scan_begin_arg, c.convert_arg, dt, bytes / (2u * n), bytes / (2.0 * n) / dt,
	       waiting < 0 ? -1 : waiting / (int)(2u * n), (bytes + (uint64_t)(waiting < 0 ? 0 : waiting)) / (2.0 * n) / dt,
	       dt * rate,
	       err ? strerror(err) : "", first[0], first[1], first[2], first[3], first[4], first[5], first[6], first[7]);
	return err ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *path = "/dev/comedi0";
	int a = 1;
	if (argc > 2 && strcmp(argv[1], "-d") == 0) {
		path = argv[2];
		a = 3;
	}
	if (a >= argc) {
		fprintf(stderr, "usage: comedi-probe [-d DEV] info|cmdtest|fastest|read|write|watch|stream ...\n");
		return 2;
	}
	comedi_loglevel(0);
	dev = comedi_open(path);
	if (!dev) {
		fprintf(stderr, "comedi-probe: cannot open %s: %s\n", path, comedi_strerror(comedi_errno()));
		return 3;
	}
	const char *cmd = argv[a];
	int n = argc - a - 1;
	char **v = argv + a + 1;
	int r;
	if (strcmp(cmd, "info") == 0 && n == 0)
		r = info();
	else if (strcmp(cmd, "cmdtest") == 0 && (n == 3 || (n == 4 && (!strcmp(v[3], "packed") || !strcmp(v[3], "spread")))))
		r = cmdtest((unsigned)arg_l(v[0], "SUBDEV"), (unsigned)arg_l(v[1], "NCHAN"), (unsigned)arg_l(v[2], "RATE_HZ"),
			    n == 4 && strcmp(v[3], "spread") == 0);
	else if (strcmp(cmd, "fastest") == 0 && n == 2)
		r = fastest((unsigned)arg_l(v[0], "SUBDEV"), (unsigned)arg_l(v[1], "NCHAN"));
	else if (strcmp(cmd, "read") == 0 && (n == 2 || n == 3))
		r = insn_read((unsigned)arg_l(v[0], "SUBDEV"), (unsigned)arg_l(v[1], "CHAN"),
			      n == 3 ? (unsigned)arg_l(v[2], "RANGE") : 0);
	else if (strcmp(cmd, "write") == 0 && (n == 3 || n == 4))
		r = insn_write((unsigned)arg_l(v[0], "SUBDEV"), (unsigned)arg_l(v[1], "CHAN"),
			       (unsigned)arg_l(v[2], "CODE"), n == 4 ? (unsigned)arg_l(v[3], "RANGE") : 0);
	else if (strcmp(cmd, "watch") == 0 && n == 4)
		r = watch((unsigned)arg_l(v[0], "SUBDEV"), (unsigned)arg_l(v[1], "CHAN"),
			  (double)arg_l(v[2], "SECONDS"), arg_l(v[3], "INTERVAL_US"));
	else if (strcmp(cmd, "stream") == 0 && (n == 4 || n == 5))
		r = stream((unsigned)arg_l(v[0], "NCHAN"), (unsigned)arg_l(v[1], "RATE_HZ"),
			   (double)arg_l(v[2], "SECONDS"), (unsigned)arg_l(v[3], "RANGE"), n == 5 ? v[4] : NULL);
	else {
		fprintf(stderr, "comedi-probe: '%s' with %d arguments is not a known command\n", cmd, n);
		r = 2;
	}
	comedi_close(dev);
	return r;
}
