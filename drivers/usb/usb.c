/* SPDX-License-Identifier: MIT */
/*
 * mead-driver-usb: a USB MEA front-end speaking docs/usb-protocol.md.
 *
 * Sample packets arrive on bulk IN transfers that are allocated in open()
 * and kept in flight from start() to stop(); read_frame() runs libusb's
 * event handling with a zero timeout, so completions (and their
 * resubmission) happen on the real-time thread without waiting.  An unplug
 * completes every transfer with LIBUSB_TRANSFER_NO_DEVICE; from then on
 * read_frame() says -ENODEV and a non-real-time watcher thread reopens the
 * device when it returns and hands it back through an atomic state.
 */
#include <errno.h>
#include <libusb.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mead/driver.h"
#include "lib/signal/signal.h"

enum {
	REQ_GET_INFO = 0x01,
	REQ_START = 0x02,
	REQ_STOP = 0x03,
	REQ_GET_CLOCK = 0x04,
	EP_SAMPLES = 0x81,
	EP_COMMANDS = 0x01,
	INFO_MAGIC = 0x3141454D,   /* "MEA1" */
	PKT_MAGIC = 0x5053,        /* "SP" */
	CMD_STIM = 0x4353,         /* "SC" */
	CMD_STOP = 0x5853,         /* "SX" */
	PKT_HEADER = 16,
	CMD_HEADER = 8,
	PULSE_BYTES = 24,
	N_OUT = 8,
	CTRL_TIMEOUT_MS = 1000,
};

enum link_state { LINK_IDLE, LINK_LIVE, LINK_GONE, LINK_STOPPING };

static const struct mead_param_spec usb_params[] = {
	{ "vid", MEAD_PARAM_INT, "4617", 0, 65535, "USB vendor id (default 0x1209, pid.codes)" },
	{ "pid", MEAD_PARAM_INT, "19781", 0, 65535, "USB product id (default 0x4d45)" },
	{ "serial", MEAD_PARAM_STRING, "", 1, 0, "serial from the device info block; empty: the first device found" },
	{ "interface", MEAD_PARAM_INT, "0", 0, 255, "interface carrying the two bulk endpoints" },
	{ "transfers", MEAD_PARAM_INT, "8", 2, 64, "sample transfers kept in flight" },
	{ "reattach", MEAD_PARAM_BOOL, "true", 1, 0, "reopen the device when it returns after an unplug" },
	{ "reattach_interval_ms", MEAD_PARAM_INT, "20", 1, 10000, "how often the watcher looks for the returned device" },
	MEAD_SIG_PARAM_SPECS,
	{ NULL, 0, NULL, 0, 0, NULL },
};

struct dev_info {
	uint16_t version, channels;
	uint32_t rate, nv_per_count;
	uint16_t spp, flags;
	uint32_t max_na, max_phase_us;
	uint16_t max_pulses;
	char serial[17], model[17];
};

struct usb_state {
	libusb_context *ctx;
	libusb_device_handle *h;
	uint16_t vid, pid;
	int iface;
	char serial[17];
	struct dev_info info;
	uint32_t electrodes;
	uint32_t period_ns;
	float uv_per_count;

	/* sample transfers */
	uint32_t n_in;
	struct libusb_transfer **in;
	size_t pkt_bytes;
	atomic_int inflight;

	/* command transfers */
	struct libusb_transfer *out[N_OUT];
	atomic_bool out_busy[N_OUT];
	struct libusb_transfer *stopx;
	atomic_bool stop_busy;
	uint32_t cmd_seq;

	/* samples, indexed by loop sample modulo ring_scans */
	int16_t *ring;
	uint32_t ring_scans;
	uint64_t head;             /* one past the newest loop sample received */
	int64_t offset;            /* loop sample = device sample + offset */
	bool resync, have_seq;
	uint32_t last_seq;
	uint64_t cur_end;          /* end of the frame being read */
	uint32_t pending_flags;
	uint64_t acq;
	float *uv;
	uint32_t uv_scans;

	struct mead_sig *sig;
	bool blank_all;

	atomic_int link;
	bool reattach;
	uint32_t reattach_ms;
	pthread_t watcher;
	bool watcher_on;
	atomic_bool quit;

	_Atomic uint64_t gaps, lost_samples, unplugs, reattaches, late_ticks, pulses, stim_errors, ring_overruns;
};

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) { return get16(p) | (uint32_t)get16(p + 2) << 16; }
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }

static int errno_from_usb(int r)
{
	switch (r) {
	case LIBUSB_ERROR_NO_DEVICE: return ENODEV;
	case LIBUSB_ERROR_NOT_FOUND: return ENOENT;
	case LIBUSB_ERROR_ACCESS: return EACCES;
	case LIBUSB_ERROR_BUSY: return EBUSY;
	case LIBUSB_ERROR_TIMEOUT: return ETIMEDOUT;
	case LIBUSB_ERROR_PIPE: return EPIPE;
	case LIBUSB_ERROR_NO_MEM: return ENOMEM;
	case LIBUSB_ERROR_NOT_SUPPORTED: return EOPNOTSUPP;
	case LIBUSB_ERROR_INVALID_PARAM: return EINVAL;
	default: return EIO;
	}
}

static int get_info(libusb_device_handle *h, int iface, struct dev_info *di)
{
	uint8_t b[64];
	int r = libusb_control_transfer(h, LIBUSB_ENDPOINT_IN | LIBUSB_REQUEST_TYPE_VENDOR | LIBUSB_RECIPIENT_INTERFACE,
					REQ_GET_INFO, 0, (uint16_t)iface, b, sizeof(b), CTRL_TIMEOUT_MS);
	if (r < 0)
		return -errno_from_usb(r);
	if (r < 32 || get32(b) != INFO_MAGIC)
		return -EPROTO;
	memset(di, 0, sizeof(*di));
	di->version = get16(b + 4);
	di->channels = get16(b + 6);
	di->rate = get32(b + 8);
	di->nv_per_count = get32(b + 12);
	di->spp = get16(b + 16);
	di->flags = get16(b + 18);
	di->max_na = get32(b + 20);
	di->max_phase_us = get32(b + 24);
	di->max_pulses = get16(b + 28);
	if (r >= 48)
		memcpy(di->serial, b + 32, 16);
	if (r >= 64)
		memcpy(di->model, b + 48, 16);
	if (di->version != 1 || di->channels == 0 || di->rate == 0 || di->spp == 0 || di->nv_per_count == 0)
		return -EPROTO;
	return 0;
}

static int vendor_out(libusb_device_handle *h, int iface, uint8_t req)
{
	int r = libusb_control_transfer(h, LIBUSB_ENDPOINT_OUT | LIBUSB_REQUEST_TYPE_VENDOR | LIBUSB_RECIPIENT_INTERFACE,
					req, 0, (uint16_t)iface, NULL, 0, CTRL_TIMEOUT_MS);
	return r < 0 ? -errno_from_usb(r) : 0;
}

/* Opens the first matching device and reads its info block. */
static int find_device(struct usb_state *st, libusb_device_handle **ret, struct dev_info *di)
{
	libusb_device **list;
	ssize_t n = libusb_get_device_list(st->ctx, &list);
	if (n < 0)
		return -errno_from_usb((int)n);
	int r = -ENOENT;
	for (ssize_t i = 0; i < n; i++) {
		struct libusb_device_descriptor d;
		if (libusb_get_device_descriptor(list[i], &d) < 0 || d.idVendor != st->vid || d.idProduct != st->pid)
			continue;
		libusb_device_handle *h;
		int e = libusb_open(list[i], &h);
		if (e < 0) {
			r = -errno_from_usb(e);
			continue;
		}
		e = libusb_claim_interface(h, st->iface);
		if (e < 0) {
			r = -errno_from_usb(e);
			libusb_close(h);
			continue;
		}
		e = get_info(h, st->iface, di);
		if (e == 0 && st->serial[0] && strncmp(st->serial, di->serial, sizeof(di->serial)) != 0)
			e = -ENOENT;
		if (e < 0) {
			r = e;
			libusb_release_interface(h, st->iface);
			libusb_close(h);
			continue;
		}
		*ret = h;
		r = 0;
		break;
	}
	libusb_free_device_list(list, 1);
	return r;
}

static void mark_gone(struct usb_state *st)
{
	int expect = LINK_LIVE;
	if (atomic_compare_exchange_strong(&st->link, &expect, LINK_GONE))
		atomic_fetch_add(&st->unplugs, 1);
}

static void store_packet(struct usb_state *st, const uint8_t *b, int len)
{
	const uint32_t C = st->info.channels;
	if (len < PKT_HEADER || get16(b) != PKT_MAGIC)
		return;
	uint16_t flags = get16(b + 2);
	uint32_t seq = get32(b + 4);
	uint64_t dev_first = get64(b + 8);
	uint32_t n = (uint32_t)((len - PKT_HEADER) / (int)(C * 2));
	if (flags & 1u)
		st->pending_flags |= MEAD_FRAME_OVERFLOW;
	if (st->have_seq && seq != st->last_seq + 1) {
		atomic_fetch_add(&st->gaps, 1);
		st->pending_flags |= MEAD_FRAME_GAP;
	}
	st->last_seq = seq;
	st->have_seq = true;
	if (st->resync) {
		/* a (re)started device: its newest samples are now */
		st->offset = (int64_t)st->cur_end - (int64_t)(dev_first + n);
		if ((int64_t)dev_first + st->offset < (int64_t)st->acq)
			st->offset = (int64_t)st->acq - (int64_t)dev_first;
		st->head = st->acq;
		st->resync = false;
	}
	int64_t first = (int64_t)dev_first + st->offset;
	if (first < 0)
		return;
	uint64_t lf = (uint64_t)first;
	/* samples that never came are silence, not stale ring content */
	if (lf > st->head) {
		atomic_fetch_add(&st->lost_samples, lf - st->head);
		for (uint64_t s = st->head; s < lf && s < st->head + st->ring_scans; s++)
			memset(st->ring + (size_t)(s % st->ring_scans) * C, 0, C * sizeof(int16_t));
		st->pending_flags |= MEAD_FRAME_GAP;
	}
	for (uint32_t k = 0; k < n; k++) {
		uint64_t s = lf + k;
		if (s < st->acq)
			continue;
		if (s >= st->acq + st->ring_scans) {
			atomic_fetch_add(&st->ring_overruns, 1);
			st->pending_flags |= MEAD_FRAME_OVERFLOW;
			break;
		}
		int16_t *row = st->ring + (size_t)(s % st->ring_scans) * C;
		const uint8_t *src = b + PKT_HEADER + (size_t)k * C * 2;
		for (uint32_t c = 0; c < C; c++)
			row[c] = (int16_t)get16(src + 2 * c);
		if (s + 1 > st->head)
			st->head = s + 1;
	}
}

static void LIBUSB_CALL in_cb(struct libusb_transfer *x)
{
	struct usb_state *st = x->user_data;
	if (x->status == LIBUSB_TRANSFER_COMPLETED)
		store_packet(st, x->buffer, x->actual_length);
	else if (x->status == LIBUSB_TRANSFER_NO_DEVICE)
		mark_gone(st);
	if (atomic_load(&st->link) == LINK_LIVE && x->status != LIBUSB_TRANSFER_CANCELLED) {
		int r = libusb_submit_transfer(x);
		if (r == 0)
			return;
		if (r == LIBUSB_ERROR_NO_DEVICE)
			mark_gone(st);
	}
	atomic_fetch_sub(&st->inflight, 1);
}

static void LIBUSB_CALL out_cb(struct libusb_transfer *x)
{
	struct usb_state *st = x->user_data;
	if (x->status == LIBUSB_TRANSFER_NO_DEVICE)
		mark_gone(st);
	for (int i = 0; i < N_OUT; i++)
		if (st->out[i] == x)
			atomic_store(&st->out_busy[i], false);
	if (x == st->stopx)
		atomic_store(&st->stop_busy, false);
}

static int submit_all(struct usb_state *st)
{
	for (uint32_t i = 0; i < st->n_in; i++) {
		libusb_fill_bulk_transfer(st->in[i], st->h, EP_SAMPLES, st->in[i]->buffer, (int)st->pkt_bytes, in_cb, st, 0);
		atomic_fetch_add(&st->inflight, 1);
		int r = libusb_submit_transfer(st->in[i]);
		if (r < 0) {
			atomic_fetch_sub(&st->inflight, 1);
			return -errno_from_usb(r);
		}
	}
	return 0;
}

static void sleep_ms(uint32_t ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static bool outputs_idle(struct usb_state *st)
{
	for (int i = 0; i < N_OUT; i++)
		if (atomic_load(&st->out_busy[i]))
			return false;
	return !atomic_load(&st->stop_busy);
}

/* Non-real-time: brings a returned device back. */
static void *watch(void *arg)
{
	struct usb_state *st = arg;
	while (!atomic_load(&st->quit)) {
		sleep_ms(st->reattach_ms);
		if (atomic_load(&st->link) != LINK_GONE || atomic_load(&st->inflight) != 0 || !outputs_idle(st))
			continue;
		if (st->h) {
			libusb_release_interface(st->h, st->iface);
			libusb_close(st->h);
			st->h = NULL;
		}
		libusb_device_handle *h;
		struct dev_info di;
		if (find_device(st, &h, &di) < 0)
			continue;
		if (di.channels != st->info.channels || di.rate != st->info.rate || di.spp != st->info.spp ||
		    di.nv_per_count != st->info.nv_per_count || vendor_out(h, st->iface, REQ_START) < 0) {
			/* another device, or one that will not stream: not ours */
			libusb_release_interface(h, st->iface);
			libusb_close(h);
			continue;
		}
		st->h = h;
		st->resync = true;
		st->have_seq = false;
		if (atomic_load(&st->quit))
			break;
		/* The transfers are not in flight, so the rt thread does not
		 * touch them until it sees LINK_LIVE. */
		atomic_store(&st->link, LINK_LIVE);
		if (submit_all(st) < 0)
			mark_gone(st);
		else
			atomic_fetch_add(&st->reattaches, 1);
	}
	return NULL;
}

static void usb_close_(void *state);

static int usb_open_(const struct mead_driver_config *cfg, void **ret_state, char *err, size_t err_len)
{
	if (cfg->abi_version != MEAD_DRIVER_ABI_VERSION) {
		snprintf(err, err_len, "usb: daemon ABI mismatch");
		return -EPROTO;
	}
	struct usb_state *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	int r;
	st->vid = (uint16_t)mead_driver_param_int(cfg, "vid", 0);
	st->pid = (uint16_t)mead_driver_param_int(cfg, "pid", 0);
	st->iface = (int)mead_driver_param_int(cfg, "interface", 0);
	const char *ser = mead_driver_param_get(cfg, "serial");
	snprintf(st->serial, sizeof(st->serial), "%s", ser ? ser : "");
	st->reattach = mead_driver_param_bool(cfg, "reattach", true);
	st->reattach_ms = (uint32_t)mead_driver_param_int(cfg, "reattach_interval_ms", 0);
	st->period_ns = cfg->period_ns ? cfg->period_ns : cfg->period_us * 1000u;
	st->electrodes = cfg->layout ? cfg->layout->count : 0;
	if (st->electrodes == 0) {
		snprintf(err, err_len, "usb: the layout has no electrodes");
		r = -EINVAL;
		goto fail;
	}
	r = libusb_init(&st->ctx);
	if (r < 0) {
		snprintf(err, err_len, "usb: libusb_init: %s", libusb_strerror(r));
		r = -errno_from_usb(r);
		st->ctx = NULL;
		goto fail;
	}
	libusb_set_option(st->ctx, LIBUSB_OPTION_LOG_LEVEL, LIBUSB_LOG_LEVEL_NONE);
	r = find_device(st, &st->h, &st->info);
	if (r < 0) {
		if (r == -ENOENT)
			snprintf(err, err_len, "usb: no device %04x:%04x%s%s found", st->vid, st->pid,
				 st->serial[0] ? " with serial " : "", st->serial);
		else if (r == -EPROTO)
			snprintf(err, err_len, "usb: device %04x:%04x does not speak the mead USB protocol v1", st->vid, st->pid);
		else
			snprintf(err, err_len, "usb: cannot open device %04x:%04x: %s", st->vid, st->pid, strerror(-r));
		goto fail;
	}
	if (st->info.channels < st->electrodes) {
		snprintf(err, err_len, "usb: the layout has %u electrodes but the device only %u channels",
			 st->electrodes, st->info.channels);
		r = -EINVAL;
		goto fail;
	}
	st->uv_per_count = (float)(st->info.nv_per_count / 1000.0);
	st->pkt_bytes = PKT_HEADER + (size_t)st->info.spp * st->info.channels * 2;
	st->n_in = (uint32_t)mead_driver_param_int(cfg, "transfers", 0);
	st->in = calloc(st->n_in, sizeof(*st->in));
	if (!st->in) {
		r = -ENOMEM;
		goto fail;
	}
	for (uint32_t i = 0; i < st->n_in; i++) {
		st->in[i] = libusb_alloc_transfer(0);
		uint8_t *b = calloc(1, st->pkt_bytes);
		if (!st->in[i] || !b) {
			free(b);
			r = -ENOMEM;
			goto fail;
		}
		st->in[i]->buffer = b;
	}
	uint32_t max_pulses = st->info.max_pulses ? st->info.max_pulses : 1;
	for (int i = 0; i < N_OUT; i++) {
		st->out[i] = libusb_alloc_transfer(0);
		uint8_t *b = calloc(1, CMD_HEADER + (size_t)PULSE_BYTES * max_pulses);
		if (!st->out[i] || !b) {
			free(b);
			r = -ENOMEM;
			goto fail;
		}
		st->out[i]->buffer = b;
	}
	st->stopx = libusb_alloc_transfer(0);
	uint8_t *sb = calloc(1, CMD_HEADER);
	if (!st->stopx || !sb) {
		free(sb);
		r = -ENOMEM;
		goto fail;
	}
	st->stopx->buffer = sb;

	/* A quarter second of samples: room for late ticks and the bursts of
	 * packets that follow them. */
	uint32_t want = st->info.rate / 4 + 4u * st->info.spp;
	st->ring_scans = 1;
	while (st->ring_scans < want)
		st->ring_scans <<= 1;
	st->ring = calloc((size_t)st->ring_scans * st->info.channels, sizeof(int16_t));
	st->uv_scans = st->ring_scans;
	st->uv = calloc((size_t)st->uv_scans * st->electrodes, sizeof(float));
	if (!st->ring || !st->uv) {
		r = -ENOMEM;
		goto fail;
	}
	struct mead_sig_config sc;
	mead_sig_config_defaults(&sc, st->electrodes, st->info.rate);
	if ((r = mead_sig_config_from_params(&sc, cfg, &st->blank_all, err, err_len)) < 0)
		goto fail;
	st->sig = mead_sig_new(&sc);
	if (!st->sig) {
		r = -errno;
		snprintf(err, err_len, "usb: spike detector: %s", strerror(errno));
		goto fail;
	}
	atomic_store(&st->link, LINK_IDLE);
	*ret_state = st;
	return 0;
fail:
	usb_close_(st);
	return r;
}

static int usb_stop_(void *state);

static void usb_close_(void *state)
{
	struct usb_state *st = state;
	if (!st)
		return;
	if (atomic_load(&st->link) == LINK_LIVE || atomic_load(&st->link) == LINK_GONE || st->watcher_on)
		usb_stop_(st);
	for (uint32_t i = 0; st->in && i < st->n_in; i++) {
		if (st->in[i]) {
			free(st->in[i]->buffer);
			st->in[i]->buffer = NULL;
			libusb_free_transfer(st->in[i]);
		}
	}
	free(st->in);
	for (int i = 0; i < N_OUT; i++) {
		if (st->out[i]) {
			free(st->out[i]->buffer);
			st->out[i]->buffer = NULL;
			libusb_free_transfer(st->out[i]);
		}
	}
	if (st->stopx) {
		free(st->stopx->buffer);
		st->stopx->buffer = NULL;
		libusb_free_transfer(st->stopx);
	}
	if (st->h) {
		libusb_release_interface(st->h, st->iface);
		libusb_close(st->h);
	}
	if (st->ctx)
		libusb_exit(st->ctx);
	mead_sig_free(st->sig);
	free(st->ring);
	free(st->uv);
	free(st);
}

static int usb_get_caps_(void *state, struct mead_driver_caps *c)
{
	struct usb_state *st = state;
	bool stim = st->info.flags & 1u;
	*c = (struct mead_driver_caps){
		.electrode_count = st->electrodes,
		.sample_rate_hz = st->info.rate,
		.raw_channels = st->electrodes,
		.uv_per_count = st->uv_per_count,
		.flags = MEAD_CAP_RAW | (stim ? MEAD_CAP_STIMULATE : 0u),
		.max_amplitude_ua = stim ? st->info.max_na / 1000.0f : 0,
		.max_phase_us = stim ? st->info.max_phase_us : 0,
		.max_pulses_per_tick = stim ? (st->info.max_pulses ? st->info.max_pulses : 1u) : 0,
	};
	return 0;
}

static int usb_start_(void *state, char *err, size_t err_len)
{
	struct usb_state *st = state;
	if (!st->h) {
		snprintf(err, err_len, "usb: the device is gone");
		return -ENODEV;
	}
	int r = vendor_out(st->h, st->iface, REQ_START);
	if (r < 0) {
		snprintf(err, err_len, "usb: START refused: %s", strerror(-r));
		return r;
	}
	mead_sig_reset(st->sig);
	st->acq = 0;
	st->head = 0;
	st->offset = 0;
	st->resync = false;
	st->have_seq = false;
	st->pending_flags = 0;
	atomic_store(&st->quit, false);
	atomic_store(&st->link, LINK_LIVE);
	r = submit_all(st);
	if (r < 0) {
		atomic_store(&st->link, LINK_IDLE);
		snprintf(err, err_len, "usb: cannot queue sample transfers: %s", strerror(-r));
		return r;
	}
	if (st->reattach) {
		if (pthread_create(&st->watcher, NULL, watch, st) != 0) {
			snprintf(err, err_len, "usb: cannot start the reattach watcher");
			return -EAGAIN;
		}
		st->watcher_on = true;
	}
	return 0;
}

static void process(struct usb_state *st, struct mead_frame *f, uint64_t upto)
{
	const uint32_t C = st->info.channels, E = st->electrodes;
	while (st->acq < upto) {
		uint64_t s0 = st->acq;
		uint32_t idx = (uint32_t)(s0 % st->ring_scans);
		uint32_t n = (uint32_t)(upto - s0);
		if (n > st->ring_scans - idx)
			n = st->ring_scans - idx;
		for (uint32_t i = 0; i < n; i++) {
			const int16_t *src = st->ring + (size_t)(idx + i) * C;
			mead_sig_counts_to_uv_s16(src, st->uv + (size_t)i * E, E, st->uv_per_count);
		}
		mead_sig_process(st->sig, s0, st->uv, n, f);
		if (f->raw && f->raw_channels) {
			uint32_t rc = f->raw_channels < E ? f->raw_channels : E;
			for (uint32_t i = 0; i < n; i++) {
				uint64_t s = s0 + i;
				if (s < f->first_sample || s >= f->first_sample + f->n_samples)
					continue;
				int16_t *row = f->raw + (size_t)(s - f->first_sample) * f->raw_channels;
				memset(row, 0, f->raw_channels * sizeof(int16_t));
				for (uint32_t c = 0; c < rc; c++)
					row[c] = mead_sig_uv_to_raw(st->uv[(size_t)i * E + c], st->uv_per_count);
				f->raw_samples = (uint32_t)(s - f->first_sample + 1);
			}
		}
		st->acq += n;
	}
}

static int usb_read_frame_(void *state, uint64_t tick, struct mead_frame *f)
{
	struct usb_state *st = state;
	const uint64_t end = f->first_sample + f->n_samples;
	f->flags = 0;
	f->n_spikes = 0;
	f->spikes_dropped = 0;
	f->raw_samples = 0;
	st->cur_end = end;
	struct timeval zero = { 0, 0 };
	libusb_handle_events_timeout_completed(st->ctx, &zero, NULL);
	if (atomic_load(&st->link) != LINK_LIVE) {
		/* nothing arrives while the device is away; the loop's clock
		 * goes on, so the stream resumes at the current tick */
		st->acq = end;
		st->head = end;
		st->pending_flags = 0;
		f->flags = MEAD_FRAME_DEVICE_GONE | MEAD_FRAME_GAP;
		return -ENODEV;
	}
	if (st->acq + st->ring_scans < end) {
		st->acq = end - st->ring_scans;
		f->flags |= MEAD_FRAME_GAP;
	}
	uint64_t upto = st->head < end ? st->head : end;
	process(st, f, upto);
	f->flags |= st->pending_flags;
	st->pending_flags = 0;
	if (st->acq < end) {
		f->flags |= MEAD_FRAME_LATE;
		atomic_fetch_add(&st->late_ticks, 1);
	}
	return 0;
}

static int usb_write_stim_(void *state, uint64_t tick, const struct mead_stim_pulse *p, uint32_t n,
			   struct mead_stim_result *results)
{
	struct usb_state *st = state;
	for (uint32_t i = 0; i < n; i++)
		results[i] = (struct mead_stim_result){ .pulse = p[i], .status = MEAD_STIM_REFUSED,
							.reason = MEAD_STIM_REASON_IO };
	if (n == 0)
		return 0;
	if (atomic_load(&st->link) != LINK_LIVE) {
		for (uint32_t i = 0; i < n; i++)
			results[i].reason = MEAD_STIM_REASON_DEVICE_GONE;
		return -ENODEV;
	}
	uint32_t max = st->info.max_pulses ? st->info.max_pulses : 1;
	if (!(st->info.flags & 1u))
		return -EOPNOTSUPP;
	if (n > max) {
		atomic_fetch_add(&st->stim_errors, 1);
		return -E2BIG;
	}
	int slot = -1;
	for (int i = 0; i < N_OUT && slot < 0; i++) {
		bool expect = false;
		if (atomic_compare_exchange_strong(&st->out_busy[i], &expect, true))
			slot = i;
	}
	if (slot < 0) {
		atomic_fetch_add(&st->stim_errors, 1);
		for (uint32_t i = 0; i < n; i++)
			results[i].reason = MEAD_STIM_REASON_QUEUE_FULL;
		return -EBUSY;
	}
	struct libusb_transfer *x = st->out[slot];
	uint8_t *b = x->buffer;
	put16(b, CMD_STIM);
	put16(b + 2, (uint16_t)n);
	put32(b + 4, st->cmd_seq++);
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *q = b + CMD_HEADER + (size_t)i * PULSE_BYTES;
		int64_t dev = (int64_t)p[i].sample - st->offset;
		put64(q, dev > 0 ? (uint64_t)dev : 0);
		put16(q + 8, p[i].electrode);
		put16(q + 10, p[i].flags);
		put32(q + 12, (uint32_t)(int32_t)lroundf(p[i].amplitude_ua * 1000.0f));
		put32(q + 16, p[i].phase_us);
		put32(q + 20, p[i].interphase_us);
	}
	libusb_fill_bulk_transfer(x, st->h, EP_COMMANDS, b, (int)(CMD_HEADER + n * PULSE_BYTES), out_cb, st, 0);
	int r = libusb_submit_transfer(x);
	if (r < 0) {
		atomic_store(&st->out_busy[slot], false);
		atomic_fetch_add(&st->stim_errors, 1);
		if (r == LIBUSB_ERROR_NO_DEVICE) {
			mark_gone(st);
			return -ENODEV;
		}
		return -errno_from_usb(r);
	}
	atomic_fetch_add(&st->pulses, n);
	for (uint32_t i = 0; i < n; i++) {
		results[i].status = MEAD_STIM_DELIVERED;
		results[i].sample = p[i].sample;
		if (st->blank_all) {
			mead_sig_blank_pulse(st->sig, UINT32_MAX, p[i].sample);
		} else if (p[i].electrode < st->electrodes) {
			mead_sig_blank_pulse(st->sig, p[i].electrode, p[i].sample);
		}
	}
	return 0;
}

static int usb_stop_outputs_(void *state)
{
	struct usb_state *st = state;
	if (atomic_load(&st->link) != LINK_LIVE)
		return 0; /* a device that is gone drives nothing */
	bool expect = false;
	if (!atomic_compare_exchange_strong(&st->stop_busy, &expect, true))
		return 0; /* a stop is already on its way */
	put16(st->stopx->buffer, CMD_STOP);
	put16(st->stopx->buffer + 2, 0);
	put32(st->stopx->buffer + 4, 0);
	libusb_fill_bulk_transfer(st->stopx, st->h, EP_COMMANDS, st->stopx->buffer, CMD_HEADER, out_cb, st, 0);
	int r = libusb_submit_transfer(st->stopx);
	if (r < 0) {
		atomic_store(&st->stop_busy, false);
		return r == LIBUSB_ERROR_NO_DEVICE ? 0 : -errno_from_usb(r);
	}
	return 0;
}

static int usb_stop_(void *state)
{
	struct usb_state *st = state;
	if (st->watcher_on) {
		atomic_store(&st->quit, true);
		pthread_join(st->watcher, NULL);
		st->watcher_on = false;
	}
	bool live = atomic_load(&st->link) == LINK_LIVE;
	atomic_store(&st->link, LINK_STOPPING);
	for (uint32_t i = 0; i < st->n_in; i++)
		libusb_cancel_transfer(st->in[i]);
	struct timeval tv = { 0, 20000 };
	for (int i = 0; i < 100 && (atomic_load(&st->inflight) > 0 || !outputs_idle(st)); i++)
		libusb_handle_events_timeout_completed(st->ctx, &tv, NULL);
	int r = 0;
	if (live && st->h)
		r = vendor_out(st->h, st->iface, REQ_STOP);
	atomic_store(&st->link, LINK_IDLE);
	return r == -ENODEV ? 0 : r;
}

static int usb_describe_(void *state, char *buf, size_t len)
{
	struct usb_state *st = state;
	static const char *names[] = { "idle", "live", "gone", "stopping" };
	int l = atomic_load(&st->link);
	int n = snprintf(buf, len,
			 "{\"driver\":\"usb\",\"device\":\"%04x:%04x\",\"serial\":\"%.16s\",\"link\":\"%s\","
			 "\"channels\":%u,\"sample_rate_hz\":%u,\"gaps\":%llu,\"lost_samples\":%llu,\"unplugs\":%llu,"
			 "\"reattaches\":%llu,\"late_ticks\":%llu,\"pulses\":%llu,\"stim_errors\":%llu,\"ring_overruns\":%llu}",
			 st->vid, st->pid, st->info.serial, names[l & 3], st->info.channels, st->info.rate,
			 (unsigned long long)atomic_load(&st->gaps), (unsigned long long)atomic_load(&st->lost_samples),
			 (unsigned long long)atomic_load(&st->unplugs), (unsigned long long)atomic_load(&st->reattaches),
			 (unsigned long long)atomic_load(&st->late_ticks), (unsigned long long)atomic_load(&st->pulses),
			 (unsigned long long)atomic_load(&st->stim_errors), (unsigned long long)atomic_load(&st->ring_overruns));
	if (n < 0)
		return -EIO;
	if ((size_t)n >= len)
		return -ENOSPC;
	return n;
}

static const struct mead_driver_ops usb_ops = {
	.abi_version = MEAD_DRIVER_ABI_VERSION,
	.ops_size = sizeof(struct mead_driver_ops),
	.name = "usb",
	.description = "USB MEA front-end speaking the mead USB protocol v1 (docs/usb-protocol.md)",
	.params = usb_params,
	.open = usb_open_,
	.close = usb_close_,
	.get_caps = usb_get_caps_,
	.start = usb_start_,
	.write_stim = usb_write_stim_,
	.read_frame = usb_read_frame_,
	.control = NULL,
	.stop_outputs = usb_stop_outputs_,
	.stop = usb_stop_,
	.describe = usb_describe_,
};

MEAD_DRIVER_EXPORT(usb_ops)
