/* SPDX-License-Identifier: MIT */
/*
 * mead-usb-client: a small libusb host for mead-usb-device, used by
 * gadget/tests/guest-smoke.sh in an emulated guest (and handy on a PC next to
 * a board).  Each command runs one scenario against the device and exits 0
 * when the device behaved as protocol v2 says, 1 when not, 2 on bad usage
 * or no device, printing `key=value` results for the caller to record.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libusb.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gadget/proto.h"

#define NX_MAX 128
#define CTRL_MS 1000
#define MAX_RECS 4096

struct client {
	libusb_context *ctx;
	libusb_device_handle *h;
	uint16_t vid, pid;
	uint8_t ep_in, ep_out;
	uint16_t mps_in, mps_out;
	struct mg_info info;
	size_t sp_bytes, buf_bytes;
	struct libusb_transfer *x[NX_MAX];
	int nx;
	int inflight;
	bool reading;

	/* what arrived */
	bool have_seq;
	uint32_t last_seq;
	uint64_t sp, gaps, lost, backwards, bad_first, bad_len, zlp, other;
	uint64_t first_sample0, last_end;
	uint16_t flags_seen;
	uint64_t wd_flag_at_ns;      /* first SP with the watchdog bit */
	uint64_t wd_flag_packets;
	uint32_t sr_next;
	uint64_t sr, sr_gaps;
	struct mg_record recs[MAX_RECS];
	uint32_t n_recs;
	bool stalled, gone;
	int last_error;
	uint32_t endings[8];         /* transfer statuses seen, by libusb_transfer_status */

	/* spike detection on every channel */
	bool detect;
	int16_t thr;
	uint64_t *det_sample;
	uint16_t *det_el;
	uint32_t n_det, det_cap;
	uint8_t *got;                /* bitmap of the sample packets received, by seq */
	uint64_t got_bits;
	uint64_t *below_since;       /* per channel: 1 + where the window opened, or 0 */
	uint64_t *rest_until;
	int16_t *below_min;
	uint64_t *below_min_at;
};

static struct client cl;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

__attribute__((format(printf, 1, 2))) static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("mead-usb-client: FAIL: ", stdout);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* --- device --------------------------------------------------------------- */

static int ctrl_in(uint8_t req, uint16_t value, uint8_t *b, uint16_t len)
{
	return libusb_control_transfer(cl.h, LIBUSB_ENDPOINT_IN | LIBUSB_REQUEST_TYPE_VENDOR | LIBUSB_RECIPIENT_INTERFACE,
				       req, value, 0, b, len, CTRL_MS);
}

static int ctrl_out(uint8_t req, uint16_t value)
{
	return libusb_control_transfer(cl.h, LIBUSB_ENDPOINT_OUT | LIBUSB_REQUEST_TYPE_VENDOR | LIBUSB_RECIPIENT_INTERFACE,
				       req, value, 0, NULL, 0, CTRL_MS);
}

/* The endpoints are whatever the UDC gave: read them from interface 0. */
static int find_endpoints(libusb_device *dev)
{
	struct libusb_config_descriptor *cfg;
	int r = libusb_get_active_config_descriptor(dev, &cfg);
	if (r < 0)
		return r;
	cl.ep_in = cl.ep_out = 0;
	for (int i = 0; i < cfg->bNumInterfaces; i++) {
		const struct libusb_interface_descriptor *id = &cfg->interface[i].altsetting[0];
		if (id->bInterfaceNumber != 0)
			continue;
		for (int e = 0; e < id->bNumEndpoints; e++) {
			const struct libusb_endpoint_descriptor *ed = &id->endpoint[e];
			if ((ed->bmAttributes & 3) != LIBUSB_TRANSFER_TYPE_BULK)
				continue;
			if (ed->bEndpointAddress & LIBUSB_ENDPOINT_IN) {
				cl.ep_in = ed->bEndpointAddress;
				cl.mps_in = ed->wMaxPacketSize;
			} else {
				cl.ep_out = ed->bEndpointAddress;
				cl.mps_out = ed->wMaxPacketSize;
			}
		}
	}
	libusb_free_config_descriptor(cfg);
	return cl.ep_in && cl.ep_out ? 0 : LIBUSB_ERROR_NOT_FOUND;
}

/* Without udevd (the emulated guest) libusb's device list is what it saw at
 * libusb_init, so looking again means a new context. */
static int open_device(bool quiet)
{
	if (cl.ctx)
		libusb_exit(cl.ctx);
	cl.ctx = NULL;
	cl.h = NULL;
	int r = libusb_init(&cl.ctx);
	if (r < 0)
		return r;
	libusb_device **list;
	ssize_t n = libusb_get_device_list(cl.ctx, &list);
	if (n < 0)
		return (int)n;
	r = LIBUSB_ERROR_NO_DEVICE;
	for (ssize_t i = 0; i < n; i++) {
		struct libusb_device_descriptor dd;
		if (libusb_get_device_descriptor(list[i], &dd) < 0 || dd.idVendor != cl.vid || dd.idProduct != cl.pid)
			continue;
		if ((r = libusb_open(list[i], &cl.h)) < 0)
			break;
		if ((r = find_endpoints(list[i])) < 0 || (r = libusb_claim_interface(cl.h, 0)) < 0) {
			libusb_close(cl.h);
			cl.h = NULL;
			break;
		}
		break;
	}
	libusb_free_device_list(list, 1);
	if (r < 0) {
		if (!quiet)
			fprintf(stderr, "mead-usb-client: no usable device %04x:%04x: %s\n", cl.vid, cl.pid,
				libusb_error_name(r));
		return r;
	}
	uint8_t b[64];
	r = ctrl_in(MEAD_USB_REQ_GET_INFO, 0, b, sizeof(b));
	if (r < 0 || mg_info_decode(b, (size_t)r, &cl.info) < 0) {
		fprintf(stderr, "mead-usb-client: GET_INFO: %s\n", r < 0 ? libusb_error_name(r) : "not a mead device");
		return r < 0 ? r : LIBUSB_ERROR_OTHER;
	}
	cl.sp_bytes = mg_sp_bytes(cl.info.spp, cl.info.channels);
	/* whole USB packets, one more than a sample packet needs: only the
	 * device's short packet or ZLP can end a transfer */
	cl.buf_bytes = (cl.sp_bytes / cl.mps_in + 1) * cl.mps_in;
	return 0;
}

static void close_device(void)
{
	for (int i = 0; i < cl.nx; i++) {
		if (cl.x[i]) {
			free(cl.x[i]->buffer);
			libusb_free_transfer(cl.x[i]);
			cl.x[i] = NULL;
		}
	}
	if (cl.h) {
		libusb_release_interface(cl.h, 0);
		libusb_close(cl.h);
	}
	if (cl.ctx)
		libusb_exit(cl.ctx);
	cl.h = NULL;
	cl.ctx = NULL;
}

/* --- the IN stream ---------------------------------------------------------- */

/* A threshold crossing opens a 0.6 ms window; its minimum is the spike,
 * and the channel then rests 1 ms, so that noise around one trough does
 * not count twice. */
static void detect_row(uint64_t s, const uint8_t *row)
{
	const uint64_t win = cl.info.rate * 6u / 10000u + 1, rest = cl.info.rate / 1000u + 1;
	for (uint32_t c = 0; c < cl.info.channels; c++) {
		int16_t v = (int16_t)mead_usb_get16(row + 2 * c);
		if (cl.below_since[c]) {
			if (v < cl.below_min[c]) {
				cl.below_min[c] = v;
				cl.below_min_at[c] = s;
			}
			if (s + 1 >= cl.below_since[c] + win) {
				if (cl.n_det < cl.det_cap) {
					cl.det_sample[cl.n_det] = cl.below_min_at[c];
					cl.det_el[cl.n_det] = (uint16_t)c;
				}
				cl.n_det++;
				cl.below_since[c] = 0;
				cl.rest_until[c] = cl.below_min_at[c] + rest;
			}
		} else if (v < cl.thr && s >= cl.rest_until[c]) {
			cl.below_since[c] = s + 1;
			cl.below_min[c] = v;
			cl.below_min_at[c] = s;
		}
	}
}

static void on_sp(const uint8_t *b, size_t len)
{
	uint16_t flags = mead_usb_get16(b + 2);
	uint32_t seq = mead_usb_get32(b + 4);
	uint64_t first = mead_usb_get64(b + 8);
	if (len != cl.sp_bytes) {
		if (cl.bad_len++ < 5)
			printf("odd sample packet len=%zu seq=%" PRIu32 " after seq %" PRIu32 "\n", len, seq, cl.last_seq);
		return;
	}
	if (cl.have_seq && seq <= cl.last_seq) {
		cl.backwards++;
	} else if (cl.have_seq && seq != cl.last_seq + 1) {
		cl.gaps++;
		cl.lost += seq - cl.last_seq - 1;
		/* a detection cannot run across a hole */
		for (uint32_t c = 0; cl.detect && c < cl.info.channels; c++)
			cl.below_since[c] = 0;
	}
	if (!cl.have_seq)
		cl.first_sample0 = first;
	if (first != (uint64_t)seq * cl.info.spp)
		cl.bad_first++;
	cl.have_seq = true;
	cl.last_seq = seq;
	cl.last_end = first + cl.info.spp;
	cl.flags_seen |= flags;
	if ((flags & MEAD_USB_SP_WATCHDOG) && !cl.wd_flag_at_ns) {
		cl.wd_flag_at_ns = now_ns();
		cl.wd_flag_packets = cl.sp;
	}
	cl.sp++;
	if (cl.got && seq < cl.got_bits)
		cl.got[seq / 8] |= (uint8_t)(1u << (seq % 8));
	if (cl.detect)
		for (uint32_t k = 0; k < cl.info.spp; k++)
			detect_row(first + k, b + MEAD_USB_SP_HEADER + (size_t)k * cl.info.channels * 2);
}

static void on_sr(const uint8_t *b, size_t len)
{
	uint32_t rseq;
	uint16_t n;
	struct mg_record r[256];
	if (mg_sr_decode(b, len, &rseq, r, 256, &n) < 0) {
		cl.other++;
		return;
	}
	if (rseq != cl.sr_next)
		cl.sr_gaps++;
	cl.sr_next = rseq + 1;
	cl.sr++;
	for (uint16_t i = 0; i < n && i < 256; i++) {
		if (cl.n_recs < MAX_RECS)
			cl.recs[cl.n_recs++] = r[i];
		printf("record rseq=%" PRIu32 " seq=%" PRIu32 " idx=%u status=%u(%s) started=%" PRIu64 " requested=%" PRIu64 "\n",
		       rseq, r[i].cmd_seq, r[i].index, r[i].status, mg_status_name(r[i].status), r[i].started,
		       r[i].requested);
	}
}

static void LIBUSB_CALL in_cb(struct libusb_transfer *x)
{
	if ((unsigned)x->status < 8)
		cl.endings[x->status]++;
	switch (x->status) {
	case LIBUSB_TRANSFER_COMPLETED:
		/* once the reads are being cancelled, one whose data came is
		 * as likely reported cancelled as the next is completed: what
		 * arrives then would count as a gap */
		if (!cl.reading)
			break;
		if (x->actual_length == 0)
			cl.zlp++;
		else if (x->actual_length >= 2 && mead_usb_get16(x->buffer) == MEAD_USB_SP_MAGIC)
			on_sp(x->buffer, (size_t)x->actual_length);
		else if (x->actual_length >= 2 && mead_usb_get16(x->buffer) == MEAD_USB_SR_MAGIC)
			on_sr(x->buffer, (size_t)x->actual_length);
		else {
			if (cl.other++ < 5)
				printf("odd transfer len=%d bytes=%02x %02x %02x %02x after seq %" PRIu32 "\n",
				       x->actual_length, x->buffer[0], x->buffer[1], x->buffer[2], x->buffer[3], cl.last_seq);
		}
		break;
	case LIBUSB_TRANSFER_STALL:
		cl.stalled = true;
		break;
	case LIBUSB_TRANSFER_NO_DEVICE:
		cl.gone = true;
		break;
	case LIBUSB_TRANSFER_CANCELLED:
		break;
	default:
		/* an unplug ends some transfers with plain errors; the
		 * resubmission then says the device is gone */
		cl.last_error = x->status;
		break;
	}
	if (cl.reading && x->status != LIBUSB_TRANSFER_CANCELLED && x->status != LIBUSB_TRANSFER_STALL &&
	    x->status != LIBUSB_TRANSFER_NO_DEVICE) {
		int r = libusb_submit_transfer(x);
		if (r == 0)
			return;
		if (r == LIBUSB_ERROR_NO_DEVICE)
			cl.gone = true;
	}
	cl.inflight--;
}

static int submit_reads(void)
{
	for (int i = 0; i < cl.nx; i++) {
		if (!cl.x[i]) {
			cl.x[i] = libusb_alloc_transfer(0);
			uint8_t *b = malloc(cl.buf_bytes);
			if (!cl.x[i] || !b)
				return LIBUSB_ERROR_NO_MEM;
			libusb_fill_bulk_transfer(cl.x[i], cl.h, cl.ep_in, b, (int)cl.buf_bytes, in_cb, NULL, 0);
		}
		int r = libusb_submit_transfer(cl.x[i]);
		if (r < 0)
			return r;
		cl.inflight++;
	}
	cl.reading = true;
	return 0;
}

static void pump_ms(unsigned ms)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000u;
	while (now_ns() < end && !cl.gone) {
		struct timeval tv = { 0, 10000 };
		libusb_handle_events_timeout_completed(cl.ctx, &tv, NULL);
	}
}

static void stop_reads(void)
{
	cl.reading = false;
	for (int i = 0; i < cl.nx; i++)
		if (cl.x[i])
			libusb_cancel_transfer(cl.x[i]);
	for (int i = 0; i < 200 && cl.inflight > 0; i++) {
		struct timeval tv = { 0, 10000 };
		libusb_handle_events_timeout_completed(cl.ctx, &tv, NULL);
	}
}

static void reset_stream(void)
{
	cl.have_seq = false;
	cl.sp = cl.gaps = cl.lost = cl.backwards = cl.bad_first = cl.bad_len = cl.zlp = cl.other = 0;
	cl.flags_seen = 0;
	cl.wd_flag_at_ns = 0;
	cl.sr_next = 0;
	cl.sr = cl.sr_gaps = 0;
	cl.n_recs = 0;
	cl.stalled = false;
	cl.n_det = 0;
	memset(cl.endings, 0, sizeof(cl.endings));
}

static int start_stream(void)
{
	reset_stream();
	int r = ctrl_out(MEAD_USB_REQ_START, 0);
	if (r < 0) {
		fail("START: %s", libusb_error_name(r));
		return r;
	}
	return submit_reads();
}

static void end_stream(void)
{
	stop_reads();
	ctrl_out(MEAD_USB_REQ_STOP, 0);
}

/* Waits until the stream passed `packets` sample packets. */
static bool pump_packets(uint64_t packets, unsigned timeout_ms)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000u;
	while (cl.sp < packets && now_ns() < end && !cl.gone && !cl.stalled) {
		struct timeval tv = { 0, 10000 };
		libusb_handle_events_timeout_completed(cl.ctx, &tv, NULL);
	}
	return cl.sp >= packets;
}

static int send_cmd(const uint8_t *b, size_t len)
{
	int done = 0;
	int r = libusb_bulk_transfer(cl.h, cl.ep_out, (uint8_t *)b, (int)len, &done, CTRL_MS);
	if (r < 0 || (size_t)done != len) {
		fail("bulk OUT of %zu bytes: %s (%d sent)", len, libusb_error_name(r), done);
		return r < 0 ? r : LIBUSB_ERROR_IO;
	}
	return 0;
}

static int send_short(uint16_t magic, uint32_t value)
{
	uint8_t b[MEAD_USB_CMD_HEADER];
	mg_short_cmd(b, magic, value);
	return send_cmd(b, sizeof(b));
}

static const struct mg_record *find_rec(uint32_t seq, uint16_t idx)
{
	for (uint32_t i = 0; i < cl.n_recs; i++)
		if (cl.recs[i].cmd_seq == seq && cl.recs[i].index == idx)
			return &cl.recs[i];
	return NULL;
}

static bool wait_recs(uint32_t n, unsigned timeout_ms)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000u;
	while (cl.n_recs < n && now_ns() < end && !cl.gone) {
		struct timeval tv = { 0, 10000 };
		libusb_handle_events_timeout_completed(cl.ctx, &tv, NULL);
	}
	return cl.n_recs >= n;
}

static void print_stream(const char *what, double seconds)
{
	printf("%s packets=%" PRIu64 " gaps=%" PRIu64 " lost=%" PRIu64 " backwards=%" PRIu64 " bad_first=%" PRIu64
	       " bad_len=%" PRIu64 " zlp=%" PRIu64 " reports=%" PRIu64 " flags=0x%x", what, cl.sp, cl.gaps, cl.lost,
	       cl.backwards, cl.bad_first, cl.bad_len, cl.zlp, cl.sr, cl.flags_seen);
	if (seconds > 0)
		printf(" seconds=%.3f packets_per_s=%.1f MB_per_s=%.3f", seconds, cl.sp / seconds,
		       cl.sp * (double)cl.sp_bytes / seconds / 1e6);
	if (cl.endings[LIBUSB_TRANSFER_ERROR] || cl.endings[LIBUSB_TRANSFER_OVERFLOW] || cl.endings[LIBUSB_TRANSFER_TIMED_OUT])
		printf(" transfer_errors=%u overflows=%u", cl.endings[LIBUSB_TRANSFER_ERROR],
		       cl.endings[LIBUSB_TRANSFER_OVERFLOW]);
	printf("\n");
	fflush(stdout);
}

/* --- scenarios -------------------------------------------------------------- */

static int cmd_info(void)
{
	const struct mg_info *i = &cl.info;
	printf("info version=%u channels=%u rate=%u nv_per_count=%u spp=%u flags=0x%x max_na=%u max_phase_us=%u "
	       "max_pulses=%u serial=%s model=%s ep_in=0x%02x ep_out=0x%02x mps=%u packet_bytes=%zu\n",
	       i->version, i->channels, i->rate, i->nv_per_count, i->spp, i->flags, i->max_na, i->max_phase_us,
	       i->max_pulses, i->serial, i->model, cl.ep_in, cl.ep_out, cl.mps_in, cl.sp_bytes);
	int bad = 0;
	if (i->version != 2)
		fail("protocol version %u, not 2", i->version), bad = 1;
	if (i->flags != (MEAD_USB_INFO_CAN_STIMULATE | MEAD_USB_INFO_REPORTS | MEAD_USB_INFO_WATCHDOG))
		fail("flags 0x%x, want 0x7", i->flags), bad = 1;
	/* an unknown request must stall */
	uint8_t b[8];
	int r = ctrl_in(0x7f, 0, b, sizeof(b));
	printf("unknown_request=%s\n", r == LIBUSB_ERROR_PIPE ? "stalled" : libusb_error_name(r));
	if (r != LIBUSB_ERROR_PIPE)
		fail("request 0x7f answered %d, want a stall", r), bad = 1;
	r = libusb_control_transfer(cl.h, LIBUSB_ENDPOINT_OUT | LIBUSB_REQUEST_TYPE_VENDOR | LIBUSB_RECIPIENT_INTERFACE,
				    0x7e, 0, 0, NULL, 0, CTRL_MS);
	if (r != LIBUSB_ERROR_PIPE)
		fail("OUT request 0x7e answered %d, want a stall", r), bad = 1;
	/* the device still answers after the stalls */
	r = ctrl_in(MEAD_USB_REQ_GET_CLOCK, 0, b, 8);
	if (r != 8)
		fail("GET_CLOCK after a stall: %d", r), bad = 1;
	return bad;
}

/* Reads the truth rows of the last START, sample and electrode. */
static uint32_t read_truth(const char *path, uint64_t *s, uint16_t *e, uint32_t cap)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	char line[128];
	unsigned st, el, last = 0;
	uint64_t smp;
	uint32_t n = 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%u,%" SCNu64 ",%u", &st, &smp, &el) != 3)
			continue;
		if (st != last) {
			last = st;
			n = 0;
		}
		if (n < cap) {
			s[n] = smp;
			e[n] = (uint16_t)el;
		}
		n++;
	}
	fclose(f);
	return n < cap ? n : cap;
}

static bool received(uint64_t sample)
{
	uint64_t seq = sample / cl.info.spp;
	return seq < cl.got_bits && (cl.got[seq / 8] >> (seq % 8) & 1u);
}

/* A spike can be seen whole only where every packet around it came. */
static bool seen_whole(uint64_t sample)
{
	uint64_t w = cl.info.rate / 1000u + 1;   /* a spike spans 0.3 ms before, 1 ms after */
	for (uint64_t s = sample > w ? sample - w : 0; s <= sample + w; s += cl.info.spp)
		if (!received(s))
			return false;
	return received(sample + w);
}

static int check_truth(const char *truth)
{
	uint32_t cap = 1u << 20;
	uint64_t *ts = calloc(cap, sizeof(*ts));
	uint16_t *te = calloc(cap, sizeof(*te));
	uint32_t nt = read_truth(truth, ts, te, cap);
	/* only spikes wholly inside what was received, away from the edges */
	uint64_t lo = cl.first_sample0 + 50, hi = cl.last_end > 50 ? cl.last_end - 50 : 0;
	uint32_t want = 0, matched = 0, extra = 0;
	/* noise moves a trough's lowest sample by up to 0.2 ms */
	const uint64_t tol = cl.info.rate / 5000u > 1 ? cl.info.rate / 5000u : 1;
	for (uint32_t i = 0; i < nt; i++) {
		if (ts[i] < lo || ts[i] >= hi || !seen_whole(ts[i]))
			continue;
		want++;
		for (uint32_t j = 0; j < cl.n_det && j < cl.det_cap; j++) {
			if (cl.det_el[j] == te[i] && cl.det_sample[j] + tol >= ts[i] && cl.det_sample[j] <= ts[i] + tol) {
				matched++;
				break;
			}
		}
	}
	for (uint32_t j = 0; j < cl.n_det && j < cl.det_cap; j++) {
		if (cl.det_sample[j] < lo || cl.det_sample[j] >= hi || !seen_whole(cl.det_sample[j]))
			continue;
		bool found = false;
		for (uint32_t i = 0; i < nt && !found; i++)
			found = te[i] == cl.det_el[j] && ts[i] + tol >= cl.det_sample[j] && ts[i] <= cl.det_sample[j] + tol;
		extra += !found;
	}
	printf("truth planted=%u detected=%u matched=%u unplanted=%u (spikes in received packets)\n", want, cl.n_det,
	       matched, extra);
	free(ts);
	free(te);
	if (want == 0 || matched != want || extra) {
		fail("spikes: %u planted in range, %u matched, %u detected that were not planted", want, matched, extra);
		return 1;
	}
	return 0;
}

static int cmd_stream(uint64_t packets, const char *truth, double noise_uv, bool expect_clean)
{
	if (truth) {
		cl.detect = true;
		/* 5 sd below zero */
		cl.thr = (int16_t)-lround(5.0 * noise_uv * 1000.0 / cl.info.nv_per_count);
		cl.det_cap = 1u << 20;
		cl.det_sample = calloc(cl.det_cap, sizeof(uint64_t));
		cl.det_el = calloc(cl.det_cap, sizeof(uint16_t));
		cl.below_since = calloc(cl.info.channels, sizeof(uint64_t));
		cl.below_min = calloc(cl.info.channels, sizeof(int16_t));
		cl.below_min_at = calloc(cl.info.channels, sizeof(uint64_t));
		cl.rest_until = calloc(cl.info.channels, sizeof(uint64_t));
		cl.got_bits = packets * 2 + 100000;
		cl.got = calloc(cl.got_bits / 8 + 1, 1);
	}
	if (start_stream() < 0)
		return 1;
	uint64_t t0 = now_ns();
	unsigned timeout = (unsigned)(packets * 1000u / (cl.info.rate / cl.info.spp ? cl.info.rate / cl.info.spp : 1)) + 5000u;
	bool ok = pump_packets(packets, timeout);
	double sec = (now_ns() - t0) / 1e9;
	end_stream();
	print_stream("stream", sec);
	int bad = 0;
	if (!ok)
		fail("%" PRIu64 " of %" PRIu64 " packets (%s)", cl.sp, packets, cl.gone ? "device gone" : "timeout"), bad = 1;
	if (cl.backwards)
		fail("%" PRIu64 " packets out of order", cl.backwards), bad = 1;
	if (cl.bad_first || cl.bad_len || cl.other)
		fail("malformed packets: first-sample %" PRIu64 ", length %" PRIu64 ", unknown %" PRIu64, cl.bad_first,
		     cl.bad_len, cl.other), bad = 1;
	if (cl.first_sample0 != 0)
		fail("the first packet after START holds sample %" PRIu64 ", not 0", cl.first_sample0), bad = 1;
	if (expect_clean && (cl.gaps || (cl.flags_seen & MEAD_USB_SP_OVERRUN)))
		fail("%" PRIu64 " gaps, %" PRIu64 " packets lost, flags 0x%x", cl.gaps, cl.lost, cl.flags_seen), bad = 1;
	if (truth) {
		/* the device writes its truth file at STOP */
		usleep(300000);
		bad |= check_truth(truth);
	}
	return bad;
}

/* Streams until the device disappears (an unplug), then exits 0. */
static int cmd_until_gone(unsigned timeout_s)
{
	if (start_stream() < 0)
		return 1;
	uint64_t end = now_ns() + (uint64_t)timeout_s * 1000000000u;
	while (!cl.gone && now_ns() < end) {
		struct timeval tv = { 0, 10000 };
		libusb_handle_events_timeout_completed(cl.ctx, &tv, NULL);
	}
	print_stream("until-gone", 0);
	if (!cl.gone) {
		fail("the device did not go away in %u s", timeout_s);
		return 1;
	}
	printf("gone after_packets=%" PRIu64 " endings: error=%u timed_out=%u cancelled=%u stall=%u no_device=%u "
	       "overflow=%u\n", cl.sp, cl.endings[LIBUSB_TRANSFER_ERROR], cl.endings[LIBUSB_TRANSFER_TIMED_OUT],
	       cl.endings[LIBUSB_TRANSFER_CANCELLED], cl.endings[LIBUSB_TRANSFER_STALL],
	       cl.endings[LIBUSB_TRANSFER_NO_DEVICE], cl.endings[LIBUSB_TRANSFER_OVERFLOW]);
	/* every transfer ends with the device; no STOP goes to a device
	 * that is not there */
	cl.reading = false;
	for (int i = 0; i < 300 && cl.inflight > 0; i++) {
		struct timeval tv = { 0, 10000 };
		libusb_handle_events_timeout_completed(cl.ctx, &tv, NULL);
	}
	return 0;
}

static int get_clock(uint64_t *sample, uint64_t *us, uint64_t *mid);

/* The device's sample counter now: pulses are timed against it, not
 * against the packets, which may lag behind in the queues. */
static uint64_t dev_sample_now(void)
{
	uint64_t s, us, mid;
	return get_clock(&s, &us, &mid) == 0 ? s : cl.last_end;
}

static struct mg_pulse mkpulse(uint64_t start, uint16_t el, int32_t na)
{
	return (struct mg_pulse){ .start = start, .electrode = el, .amp_na = na, .phase_us = 200, .interphase_us = 50 };
}

static int expect(uint32_t seq, uint16_t idx, unsigned status, const char *what)
{
	const struct mg_record *r = find_rec(seq, idx);
	if (!r) {
		fail("%s (seq %u pulse %u): no report", what, seq, idx);
		return 1;
	}
	if (r->status != status) {
		fail("%s (seq %u pulse %u): status %u (%s), want %u (%s)", what, seq, idx, r->status,
		     mg_status_name(r->status), status, mg_status_name(status));
		return 1;
	}
	printf("ok %s status=%u(%s) started=%" PRIu64 " requested=%" PRIu64 "\n", what, r->status,
	       mg_status_name(r->status), r->started, r->requested);
	return 0;
}

static int cmd_stim(uint32_t queue)
{
	if (start_stream() < 0)
		return 1;
	if (!pump_packets(20, 3000)) {
		fail("no packets after START");
		return 1;
	}
	const uint64_t S = dev_sample_now(), rate = cl.info.rate;
	uint8_t b[MEAD_USB_CMD_HEADER + 16 * MEAD_USB_PULSE_BYTES];
	struct mg_pulse p[16];
	/* in time, late, overlapping the first, bad electrode, too strong;
	 * "in time" is half a second ahead, which a busy emulated host
	 * still makes */
	p[0] = mkpulse(S + rate / 2, 1, -20000);
	p[1] = mkpulse(S > 1000 ? S - 1000 : 0, 2, -20000);
	p[2] = mkpulse(S + rate / 2 + 5, 3, -20000);
	p[3] = mkpulse(S + rate / 5, (uint16_t)cl.info.channels, -20000);
	p[4] = mkpulse(S + rate / 5 + 100, 4, -(int32_t)cl.info.max_na - 1);
	if (send_cmd(b, mg_sc_encode(b, 100, p, 5)) < 0)
		return 1;
	uint64_t sent_at = S;
	/* 4 reports at once, the in-time one half a second later */
	bool ok = wait_recs(5, 3000);
	int bad = !ok;
	if (!ok)
		fail("%u of 5 reports", cl.n_recs);
	bad |= expect(100, 0, MEAD_USB_ST_DELIVERED, "in-time");
	bad |= expect(100, 1, MEAD_USB_ST_LATE, "late");
	bad |= expect(100, 2, MEAD_USB_ST_OVERLAP, "overlapping");
	bad |= expect(100, 3, MEAD_USB_ST_RANGE, "bad-electrode");
	bad |= expect(100, 4, MEAD_USB_ST_RANGE, "too-strong");
	const struct mg_record *r0 = find_rec(100, 0), *r1 = find_rec(100, 1);
	if (r0 && r0->started != p[0].start)
		fail("in-time pulse started at %" PRIu64 ", asked %" PRIu64, r0->started, p[0].start), bad = 1;
	if (r1 && (r1->started <= p[1].start || r1->started < sent_at))
		fail("late pulse started at %" PRIu64 " (asked %" PRIu64 ", sent near %" PRIu64 ")", r1->started,
		     p[1].start, sent_at), bad = 1;

	/* queued far ahead, then SX: dropped */
	uint64_t F = dev_sample_now() + 5 * rate;
	p[0] = mkpulse(F, 5, 10000);
	p[1] = mkpulse(F + 100, 6, 10000);
	if (send_cmd(b, mg_sc_encode(b, 101, p, 2)) < 0 || send_short(MEAD_USB_SX_MAGIC, 0) < 0)
		return 1;
	uint32_t before = cl.n_recs;
	if (!wait_recs(before + 2, 2000))
		fail("no reports after SX"), bad = 1;
	bad |= expect(101, 0, MEAD_USB_ST_DROPPED, "dropped-by-SX");
	bad |= expect(101, 1, MEAD_USB_ST_DROPPED, "dropped-by-SX");

	/* more pulses than the queue holds */
	uint16_t n = (uint16_t)(queue + 2 <= 16 ? queue + 2 : 16);
	for (uint16_t i = 0; i < n; i++)
		p[i] = mkpulse(F + 1000u * i, 7, 10000);
	if (send_cmd(b, mg_sc_encode(b, 102, p, n)) < 0)
		return 1;
	before = cl.n_recs;
	uint32_t full = n > queue ? n - queue : 0;
	wait_recs(before + full, 2000);
	for (uint16_t i = (uint16_t)queue; i < n; i++)
		bad |= expect(102, i, MEAD_USB_ST_QUEUE_FULL, "queue-full");
	if (send_short(MEAD_USB_SX_MAGIC, 1) < 0)
		return 1;
	wait_recs(before + n, 2000);
	for (uint16_t i = 0; i < queue && i < n; i++)
		bad |= expect(102, i, MEAD_USB_ST_DROPPED, "queued-then-SX");

	/* a malformed command changes nothing and the next one still works */
	uint8_t junk[8] = { 0x53, 0x43, 0xff, 0xff, 0, 0, 0, 0 };
	send_cmd(junk, sizeof(junk));
	p[0] = mkpulse(dev_sample_now() + rate / 2, 8, -5000);
	if (send_cmd(b, mg_sc_encode(b, 103, p, 1)) < 0)
		return 1;
	before = cl.n_recs;
	wait_recs(before + 1, 3000);
	bad |= expect(103, 0, MEAD_USB_ST_DELIVERED, "after-malformed");
	pump_ms(50);
	end_stream();
	print_stream("stim", 0);
	if (cl.sr_gaps)
		fail("report sequence has %" PRIu64 " gaps", cl.sr_gaps), bad = 1;
	if (cl.gaps)
		printf("note: %" PRIu64 " sample packet gaps while stimulating\n", cl.gaps);
	return bad;
}

/* Keepalives every `feed` ms for `dur_ms`; returns the longest gap between
 * two that went out, which says whether this host kept the watchdog fed. */
static double keep_fed(uint32_t *k, unsigned feed, unsigned dur_ms)
{
	uint64_t end = now_ns() + (uint64_t)dur_ms * 1000000u, last = now_ns();
	double worst = 0;
	while (now_ns() < end) {
		send_short(MEAD_USB_SK_MAGIC, (*k)++);
		uint64_t t = now_ns();
		if ((t - last) / 1e6 > worst)
			worst = (t - last) / 1e6;
		last = t;
		pump_ms(feed);
	}
	return worst;
}

static int cmd_watchdog(unsigned ms)
{
	int bad = 0, r = ctrl_out(MEAD_USB_REQ_SET_WATCHDOG, (uint16_t)ms);
	if (r < 0) {
		fail("SET_WATCHDOG: %s", libusb_error_name(r));
		return 1;
	}
	if (start_stream() < 0)
		return 1;
	/* it runs from START: kept fed for a second, it must not fire */
	uint32_t k = 0;
	const unsigned feed = ms / 10 ? ms / 10 : 1;
	double gap = keep_fed(&k, feed, 1000);
	/* a keepalive's way into the device (usbfs, dummy_hcd, AIO) adds to
	 * the gaps this host sees, so only a clearly fed watchdog counts */
	if (cl.flags_seen & MEAD_USB_SP_WATCHDOG) {
		if (gap < ms / 2)
			fail("the watchdog fired while fed (longest gap %.1f ms)", gap), bad = 1;
		else
			printf("note: this host left %.1f ms between two keepalives; the watchdog rightly fired\n", gap);
	}
	const uint64_t rate = cl.info.rate, S = dev_sample_now();
	struct mg_pulse p[2] = { mkpulse(S + 10 * rate, 9, -10000), mkpulse(S + 11 * rate, 10, -10000) };
	uint8_t b[MEAD_USB_CMD_HEADER + 2 * MEAD_USB_PULSE_BYTES];
	cl.wd_flag_at_ns = 0;
	if (send_cmd(b, mg_sc_encode(b, 200, p, 2)) < 0)
		return 1;
	uint64_t quiet = now_ns();
	uint64_t packets_at_quiet = cl.sp;
	/* silent now; reading goes on */
	uint64_t end = quiet + (uint64_t)(ms * 3 + 1000) * 1000000u;
	while (!cl.wd_flag_at_ns && now_ns() < end && !cl.gone) {
		struct timeval tv = { 0, 5000 };
		libusb_handle_events_timeout_completed(cl.ctx, &tv, NULL);
	}
	if (!cl.wd_flag_at_ns) {
		fail("no SP packet with the watchdog flag within %u ms of silence", ms * 3 + 1000);
		end_stream();
		return 1;
	}
	double fired_ms = (cl.wd_flag_at_ns - quiet) / 1e6;
	double pkt_ms = (double)(cl.wd_flag_packets - packets_at_quiet) * cl.info.spp * 1000.0 / rate;
	printf("watchdog timeout_ms=%u flag_seen_after_ms=%.1f by_packets_ms=%.1f\n", ms, fired_ms, pkt_ms);
	if (fired_ms < ms || fired_ms > ms + 250)
		fail("the watchdog flag came %.1f ms after the last command, set to %u ms", fired_ms, ms), bad = 1;
	wait_recs(2, 1000);
	bad |= expect(200, 0, MEAD_USB_ST_DROPPED, "dropped-by-watchdog");
	bad |= expect(200, 1, MEAD_USB_ST_DROPPED, "dropped-by-watchdog");
	/* fed again, it keeps quiet while fed */
	uint16_t seen = cl.flags_seen;
	send_short(MEAD_USB_SK_MAGIC, k++);
	/* the packets still in the queues may carry the flag */
	pump_ms(100);
	cl.flags_seen = 0;
	gap = keep_fed(&k, feed, 500);
	if ((cl.flags_seen & MEAD_USB_SP_WATCHDOG) && gap < ms / 2)
		fail("the watchdog fired again while fed (longest gap %.1f ms)", gap), bad = 1;
	else if (cl.flags_seen & MEAD_USB_SP_WATCHDOG)
		printf("note: this host left %.1f ms between two keepalives; the watchdog rightly fired\n", gap);
	cl.flags_seen |= seen;
	end_stream();
	ctrl_out(MEAD_USB_REQ_SET_WATCHDOG, 0);
	print_stream("watchdog", 0);
	return bad;
}

/* SET_WATCHDOG, START, queue pulses, then read on without a word: the
 * caller kills this process, as a crashed host would be. */
static int cmd_hold(unsigned ms, unsigned seconds)
{
	if (ctrl_out(MEAD_USB_REQ_SET_WATCHDOG, (uint16_t)ms) < 0 || start_stream() < 0 || send_short(MEAD_USB_SK_MAGIC, 0) < 0)
		return 1;
	const uint64_t rate = cl.info.rate, S = dev_sample_now();
	struct mg_pulse p[2] = { mkpulse(S + 30 * rate, 11, -10000), mkpulse(S + 31 * rate, 12, -10000) };
	uint8_t b[MEAD_USB_CMD_HEADER + 2 * MEAD_USB_PULSE_BYTES];
	if (send_cmd(b, mg_sc_encode(b, 300, p, 2)) < 0)
		return 1;
	printf("hold queued=2\n");
	fflush(stdout);
	pump_ms(seconds * 1000u);
	return 0;
}

static int cmd_stall(uint64_t after)
{
	if (start_stream() < 0)
		return 1;
	uint64_t end = now_ns() + 10000000000ull;
	while (!cl.stalled && now_ns() < end && !cl.gone) {
		struct timeval tv = { 0, 10000 };
		libusb_handle_events_timeout_completed(cl.ctx, &tv, NULL);
	}
	if (!cl.stalled) {
		fail("no stall within 10 s (%" PRIu64 " packets)", cl.sp);
		end_stream();
		return 1;
	}
	uint64_t at = cl.sp;
	uint32_t seq_at = cl.last_seq;
	/* the other transfers end with the stall too; then clear it */
	cl.reading = false;
	for (int i = 0; i < cl.nx; i++)
		libusb_cancel_transfer(cl.x[i]);
	for (int i = 0; i < 200 && cl.inflight > 0; i++) {
		struct timeval tv = { 0, 10000 };
		libusb_handle_events_timeout_completed(cl.ctx, &tv, NULL);
	}
	int r = libusb_clear_halt(cl.h, cl.ep_in);
	printf("stall after_packets=%" PRIu64 " clear_halt=%s\n", at, libusb_error_name(r));
	int bad = 0;
	if (r < 0)
		fail("clear_halt: %s", libusb_error_name(r)), bad = 1;
	if (at != after)
		fail("stalled after %" PRIu64 " packets, device asked to stall after %" PRIu64, at, after), bad = 1;
	cl.stalled = false;
	if (submit_reads() < 0)
		return 1;
	bool ok = pump_packets(at + 100, 5000);
	end_stream();
	print_stream("after-stall", 0);
	if (!ok || cl.stalled)
		fail("streaming did not resume after clear_halt"), bad = 1;
	if (cl.last_seq <= seq_at)
		fail("sequence did not move on after the stall"), bad = 1;
	return bad;
}

static int get_clock(uint64_t *sample, uint64_t *us, uint64_t *mid)
{
	uint8_t b[16];
	uint64_t a = now_ns();
	int r = ctrl_in(MEAD_USB_REQ_GET_CLOCK, 0, b, 16);
	uint64_t z = now_ns();
	if (r != 16)
		return r < 0 ? r : LIBUSB_ERROR_IO;
	*sample = mead_usb_get64(b);
	*us = mead_usb_get64(b + 8);
	*mid = a + (z - a) / 2;
	return 0;
}

/* The reading with the shortest round trip of a few: the least skewed by
 * a late reply. */
static int best_clock(uint64_t *sample, uint64_t *us, uint64_t *mid, uint64_t *rtt)
{
	*rtt = UINT64_MAX;
	for (int i = 0; i < 40; i++) {
		uint64_t s, u, m, a = now_ns();
		if (get_clock(&s, &u, &m) < 0)
			return -1;
		uint64_t t = now_ns() - a;
		if (t < *rtt) {
			*rtt = t;
			*sample = s;
			*us = u;
			*mid = m;
		}
	}
	return 0;
}

static int cmd_clock(double seconds, double want_ppm, double tol_ppm)
{
	if (start_stream() < 0)
		return 1;
	pump_packets(10, 3000);
	uint64_t s1, u1, t1, s2, u2, t2, rtt1, rtt2;
	if (best_clock(&s1, &u1, &t1, &rtt1) < 0)
		return 1;
	pump_ms((unsigned)(seconds * 1000));
	if (best_clock(&s2, &u2, &t2, &rtt2) < 0)
		return 1;
	printf("clock rtt_us=%.0f,%.0f\n", rtt1 / 1e3, rtt2 / 1e3);
	uint64_t last_end = cl.last_end;
	end_stream();
	double host_s = (t2 - t1) / 1e9;
	double ppm_us = ((u2 - u1) / 1e6 / host_s - 1.0) * 1e6;
	double ppm_samples = ((s2 - s1) / (double)cl.info.rate / host_s - 1.0) * 1e6;
	printf("clock host_s=%.3f device_us=%" PRIu64 " samples=%" PRIu64 " ppm_by_us=%.1f ppm_by_samples=%.1f "
	       "want_ppm=%.1f sample_vs_us=%" PRId64 " last_packet_end=%" PRIu64 " clock_sample=%" PRIu64 "\n",
	       host_s, u2 - u1, s2 - s1, ppm_us, ppm_samples, want_ppm,
	       (int64_t)s2 - (int64_t)(u2 * cl.info.rate / 1000000u), last_end, s2);
	int bad = 0;
	/* each reading is off by at most half its round trip */
	double unc_ppm = (rtt1 + rtt2) / 2.0 / (t2 - t1) * 1e6;
	printf("clock uncertainty_ppm=%.1f\n", unc_ppm);
	if (fabs(ppm_us - want_ppm) > tol_ppm + unc_ppm)
		fail("device clock runs %.1f ppm against the host, set to %.1f (+-%.1f)", ppm_us, want_ppm,
		     tol_ppm + unc_ppm), bad = 1;
	/* sample counter and microseconds come from one clock */
	if (llabs((int64_t)s2 - (int64_t)(u2 * cl.info.rate / 1000000u)) > 1)
		fail("GET_CLOCK sample %" PRIu64 " and us %" PRIu64 " disagree", s2, u2), bad = 1;
	return bad;
}

static int cmd_wait(bool back, unsigned seconds)
{
	uint64_t end = now_ns() + (uint64_t)seconds * 1000000000u;
	while (now_ns() < end) {
		bool there = open_device(true) == 0;
		if (there == back) {
			printf("%s\n", back ? "back" : "gone");
			return 0;
		}
		close_device();
		usleep(100000);
	}
	fail("the device is %s after %u s", back ? "not back" : "still there", seconds);
	return 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mead-usb-client [--vid V] [--pid P] [--transfers N] COMMAND\n"
		"  --transfers N                 IN transfers kept in flight (default 32)\n"
		"  info                          GET_INFO, endpoints, stalls for unknown requests\n"
		"  stream N [--truth FILE] [--noise-uv X] [--allow-gaps]\n"
		"                                START, N sample packets in order, STOP; spikes against the truth file\n"
		"  until-gone SECONDS            stream until the device leaves (unplug)\n"
		"  wait-back SECONDS | wait-gone SECONDS\n"
		"  stim [--queue N]              SC in time, late, overlapping, out of range, queue full; SX\n"
		"  watchdog MS                   keepalives, then silence: the watchdog must fire after MS\n"
		"  hold MS SECONDS               watchdog on, pulses queued, then silence until killed\n"
		"  set-watchdog MS               SET_WATCHDOG alone (0: off)\n"
		"  stall N                       the device halts IN after N packets: clear_halt and go on\n"
		"  clock SECONDS [--ppm X] [--tol-ppm Y]  GET_CLOCK drift against this host\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "vid", 1, 0, 'V' }, { "pid", 1, 0, 'P' }, { "truth", 1, 0, 't' }, { "noise-uv", 1, 0, 'n' },
		{ "queue", 1, 0, 'q' }, { "ppm", 1, 0, 'p' }, { "tol-ppm", 1, 0, 'T' }, { "allow-gaps", 0, 0, 'g' },
		{ "transfers", 1, 0, 'x' }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 },
	};
	cl.vid = 0x1209;
	cl.pid = 0x4d45;
	cl.nx = 32;
	const char *truth = NULL;
	double noise_uv = 10, ppm = 0, tol = 200;
	uint32_t queue = 8;
	bool allow_gaps = false;
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'V': cl.vid = (uint16_t)strtoul(optarg, NULL, 0); break;
		case 'P': cl.pid = (uint16_t)strtoul(optarg, NULL, 0); break;
		case 't': truth = optarg; break;
		case 'n': noise_uv = strtod(optarg, NULL); break;
		case 'q': queue = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'p': ppm = strtod(optarg, NULL); break;
		case 'T': tol = strtod(optarg, NULL); break;
		case 'g': allow_gaps = true; break;
		case 'x':
			cl.nx = atoi(optarg);
			if (cl.nx < 1 || cl.nx > NX_MAX) {
				fprintf(stderr, "mead-usb-client: --transfers: 1 .. %d\n", NX_MAX);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[optind];
	const char *a1 = optind + 1 < argc ? argv[optind + 1] : NULL, *a2 = optind + 2 < argc ? argv[optind + 2] : NULL;
	if (strcmp(cmd, "wait-back") == 0 || strcmp(cmd, "wait-gone") == 0) {
		int r = cmd_wait(cmd[5] == 'b', a1 ? (unsigned)atoi(a1) : 10);
		close_device();
		return r;
	}
	if (open_device(false) < 0)
		return 2;
	int r = 2;
	if (strcmp(cmd, "info") == 0)
		r = cmd_info();
	else if (strcmp(cmd, "stream") == 0 && a1)
		r = cmd_stream(strtoull(a1, NULL, 0), truth, noise_uv, !allow_gaps);
	else if (strcmp(cmd, "until-gone") == 0)
		r = cmd_until_gone(a1 ? (unsigned)atoi(a1) : 30);
	else if (strcmp(cmd, "stim") == 0)
		r = cmd_stim(queue);
	else if (strcmp(cmd, "watchdog") == 0 && a1)
		r = cmd_watchdog((unsigned)atoi(a1));
	else if (strcmp(cmd, "hold") == 0 && a1 && a2)
		r = cmd_hold((unsigned)atoi(a1), (unsigned)atoi(a2));
	else if (strcmp(cmd, "set-watchdog") == 0 && a1)
		r = ctrl_out(MEAD_USB_REQ_SET_WATCHDOG, (uint16_t)atoi(a1)) < 0;
	else if (strcmp(cmd, "stall") == 0 && a1)
		r = cmd_stall(strtoull(a1, NULL, 0));
	else if (strcmp(cmd, "clock") == 0 && a1)
		r = cmd_clock(strtod(a1, NULL), ppm, tol);
	else
		usage(stderr);
	if (r == 0)
		printf("mead-usb-client: %s: ok\n", cmd);
	close_device();
	return r;
}
