/* SPDX-License-Identifier: MIT */
/*
 * mead-driver-usb: a USB MEA front-end speaking docs/usb-protocol.md v2.
 *
 * Sample and report packets arrive on bulk IN transfers that are allocated
 * in open() and kept in flight from start() to stop(), as many as cover
 * queue_ms of samples: the kernel fills them while the loop is away, so a
 * stall shorter than that loses nothing.  read_frame() runs libusb's event
 * handling with a zero timeout, so completions (and their resubmission)
 * happen on the real-time thread without waiting.  A non-real-time watcher
 * thread does what may block: it clears a stalled endpoint and resubmits
 * the transfers that stalled, and after an unplug reopens the device when
 * it returns, handing everything back through atomic states.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/core/usbproto.h"
#include "drivers/usb/usb.h"
#include "lib/core/time.h"

static const struct mead_param_spec usb_params[] = {
	{ "vid", MEAD_PARAM_INT, "4617", 0, 65535, "USB vendor id (default 0x1209, pid.codes)" },
	{ "pid", MEAD_PARAM_INT, "19781", 0, 65535, "USB product id (default 0x4d45)" },
	{ "serial", MEAD_PARAM_STRING, "", 1, 0, "serial from the device info block; empty: the first device found" },
	{ "interface", MEAD_PARAM_INT, "0", 0, 255,
	  "interface carrying the bulk endpoints (their addresses come from its descriptor)" },
	{ "queue_ms", MEAD_PARAM_INT, "200", 5, 5000,
	  "sample packets kept in flight, as time: a stall of the loop shorter than this loses nothing" },
	{ "watchdog_ms", MEAD_PARAM_INT, "100", 0, 65535,
	  "the device stops its outputs when no command came for this long (0: off)" },
	{ "reattach", MEAD_PARAM_BOOL, "true", 1, 0, "reopen the device when it returns after an unplug" },
	{ "reattach_interval_ms", MEAD_PARAM_INT, "20", 1, 10000,
	  "how often the watcher looks for a returned device or a stalled endpoint" },
	MEAD_SIG_PARAM_SPECS,
	{ NULL, 0, NULL, 0, 0, NULL },
};

int usb_errno(int r)
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

struct libusb_transfer *usb_transfer_new(size_t bytes)
{
	struct libusb_transfer *x = libusb_alloc_transfer(0);
	uint8_t *b = calloc(1, bytes);
	if (!x || !b) {
		free(b);
		libusb_free_transfer(x);
		return NULL;
	}
	x->buffer = b;
	return x;
}

void usb_transfer_free(struct libusb_transfer *x)
{
	if (!x)
		return;
	free(x->buffer);
	x->buffer = NULL;
	libusb_free_transfer(x);
}

void usb_mark_gone(struct usb_state *st)
{
	int expect = LINK_LIVE;
	if (atomic_compare_exchange_strong(&st->link, &expect, LINK_GONE))
		atomic_fetch_add(&st->unplugs, 1);
}

static int vendor_in(libusb_device_handle *h, int iface, uint8_t req, uint8_t *b, uint16_t len)
{
	int r = libusb_control_transfer(h, LIBUSB_ENDPOINT_IN | LIBUSB_REQUEST_TYPE_VENDOR | LIBUSB_RECIPIENT_INTERFACE,
					req, 0, (uint16_t)iface, b, len, CTRL_TIMEOUT_MS);
	return r < 0 ? -usb_errno(r) : r;
}

static int vendor_out(libusb_device_handle *h, int iface, uint8_t req, uint16_t value)
{
	int r = libusb_control_transfer(h, LIBUSB_ENDPOINT_OUT | LIBUSB_REQUEST_TYPE_VENDOR | LIBUSB_RECIPIENT_INTERFACE,
					req, value, (uint16_t)iface, NULL, 0, CTRL_TIMEOUT_MS);
	return r < 0 ? -usb_errno(r) : 0;
}

static int get_info(libusb_device_handle *h, int iface, struct dev_info *di)
{
	uint8_t b[MEAD_USB_INFO_BYTES] = { 0 };
	int r = vendor_in(h, iface, MEAD_USB_REQ_GET_INFO, b, sizeof(b));
	if (r < 0)
		return r;
	if (r < 32 || mead_usb_get32(b) != MEAD_USB_INFO_MAGIC)
		return -EPROTO;
	memset(di, 0, sizeof(*di));
	di->version = mead_usb_get16(b + 4);
	di->channels = mead_usb_get16(b + 6);
	di->rate = mead_usb_get32(b + 8);
	di->nv_per_count = mead_usb_get32(b + 12);
	di->spp = mead_usb_get16(b + 16);
	di->flags = mead_usb_get16(b + 18);
	di->max_na = mead_usb_get32(b + 20);
	di->max_phase_us = mead_usb_get32(b + 24);
	di->max_pulses = mead_usb_get16(b + 28);
	/* v1 kept offset 30 reserved (0): one stimulator, if any */
	di->stimulators = mead_usb_get16(b + 30);
	if ((di->flags & MEAD_USB_INFO_CAN_STIMULATE) && di->stimulators == 0)
		di->stimulators = 1;
	if (r >= 48)
		memcpy(di->serial, b + 32, 16);
	if (r >= 64)
		memcpy(di->model, b + 48, 16);
	return 0;
}

/* Why this driver cannot use the device (a sentence), or "" when it can. */
static void info_problem(const struct dev_info *di, char *why, size_t len)
{
	why[0] = '\0';
	if (di->version == 1)
		snprintf(why, len, "speaks the mead USB protocol v1; this driver needs v2 "
				   "(docs/usb-protocol.md says what changed)");
	else if (di->version != MEAD_USB_VERSION)
		snprintf(why, len, "speaks the mead USB protocol v%u; this driver knows v2", di->version);
	else if (di->channels == 0 || di->rate == 0 || di->spp == 0 || di->nv_per_count == 0)
		snprintf(why, len, "reports 0 %s in its info block",
			 di->channels == 0 ? "channels" : di->rate == 0 ? "sample rate" :
			 di->spp == 0 ? "samples per packet" : "nanovolts per count");
	else if ((di->flags & MEAD_USB_INFO_CAN_STIMULATE) && !(di->flags & MEAD_USB_INFO_REPORTS))
		snprintf(why, len, "says it can stimulate but not that it reports what it did "
				   "(info flags bit 1), which protocol v2 requires");
	else if ((di->flags & MEAD_USB_INFO_CAN_STIMULATE) && di->max_pulses == 0)
		snprintf(why, len, "says it can stimulate but takes 0 pulses per command");
}

/* The bulk IN and OUT endpoints of interface iface, from its descriptor:
 * the device controller, not the firmware, numbers them. */
static int find_endpoints(libusb_device_handle *h, int iface, uint8_t *in, uint8_t *out, uint16_t *in_mps,
			  char *why, size_t len)
{
	struct libusb_config_descriptor *cfg;
	int r = libusb_get_active_config_descriptor(libusb_get_device(h), &cfg);
	if (r < 0) {
		snprintf(why, len, "cannot read its configuration descriptor: %s", libusb_strerror(r));
		return -usb_errno(r);
	}
	const struct libusb_interface_descriptor *d = NULL;
	for (int i = 0; i < cfg->bNumInterfaces && !d; i++)
		if (cfg->interface[i].num_altsetting > 0 && cfg->interface[i].altsetting[0].bInterfaceNumber == iface)
			d = &cfg->interface[i].altsetting[0];
	*in = *out = 0;
	int n_in = 0, n_out = 0;
	for (int e = 0; d && e < d->bNumEndpoints; e++) {
		const struct libusb_endpoint_descriptor *ep = &d->endpoint[e];
		if ((ep->bmAttributes & LIBUSB_TRANSFER_TYPE_MASK) != LIBUSB_TRANSFER_TYPE_BULK)
			continue;
		if (ep->bEndpointAddress & LIBUSB_ENDPOINT_IN) {
			if (!n_in++) {
				*in = ep->bEndpointAddress;
				*in_mps = ep->wMaxPacketSize;
			}
		} else if (!n_out++) {
			*out = ep->bEndpointAddress;
		}
	}
	libusb_free_config_descriptor(cfg);
	if (!d) {
		snprintf(why, len, "has no interface %d", iface);
		return -ENOENT;
	}
	if (n_in != 1 || n_out != 1) {
		snprintf(why, len, "interface %d has %d bulk IN and %d bulk OUT endpoints, not one of each", iface, n_in,
			 n_out);
		return -EPROTO;
	}
	return 0;
}

struct found {
	libusb_device_handle *h;
	struct dev_info info;
	uint8_t ep_in, ep_out;
	uint16_t in_mps;
};

/* Opens the first matching device that this driver can use.  On failure
 * why says what was wrong with the last candidate. */
static int find_device(struct usb_state *st, libusb_context *ctx, struct found *f, char *why, size_t len)
{
	libusb_device **list;
	ssize_t n = libusb_get_device_list(ctx, &list);
	why[0] = '\0';
	if (n < 0) {
		snprintf(why, len, "cannot list USB devices: %s", libusb_strerror((int)n));
		return -usb_errno((int)n);
	}
	int r = -ENOENT;
	for (ssize_t i = 0; i < n; i++) {
		struct libusb_device_descriptor d;
		if (libusb_get_device_descriptor(list[i], &d) < 0 || d.idVendor != st->vid || d.idProduct != st->pid)
			continue;
		libusb_device_handle *h;
		int e = libusb_open(list[i], &h);
		if (e < 0) {
			r = -usb_errno(e);
			snprintf(why, len, "cannot open it: %s", libusb_strerror(e));
			continue;
		}
		e = libusb_claim_interface(h, st->iface);
		if (e < 0) {
			r = -usb_errno(e);
			snprintf(why, len, "cannot claim interface %d: %s", st->iface, libusb_strerror(e));
			libusb_close(h);
			continue;
		}
		memset(f, 0, sizeof(*f));
		r = get_info(h, st->iface, &f->info);
		if (r == -EPROTO)
			snprintf(why, len, "does not answer GET_INFO with a mead info block");
		else if (r < 0)
			snprintf(why, len, "GET_INFO failed: %s", strerror(-r));
		else if (st->serial[0] && strncmp(st->serial, f->info.serial, sizeof(f->info.serial)) != 0)
			r = -ENOENT;
		if (r == 0) {
			info_problem(&f->info, why, len);
			if (why[0])
				r = -EPROTO;
		}
		if (r == 0)
			r = find_endpoints(h, st->iface, &f->ep_in, &f->ep_out, &f->in_mps, why, len);
		if (r < 0) {
			libusb_release_interface(h, st->iface);
			libusb_close(h);
			continue;
		}
		f->h = h;
		break;
	}
	libusb_free_device_list(list, 1);
	return r;
}

static void drop_handle(struct usb_state *st, libusb_device_handle *h)
{
	if (!h)
		return;
	libusb_release_interface(h, st->iface);
	libusb_close(h);
}

static bool same_format(const struct dev_info *a, const struct dev_info *b)
{
	return a->channels == b->channels && a->rate == b->rate && a->spp == b->spp &&
	       a->nv_per_count == b->nv_per_count && a->flags == b->flags && a->max_pulses == b->max_pulses &&
	       a->stimulators == b->stimulators;
}

/* START with the device's watchdog off (a host before may have left it
 * on): it is set once the transfers are queued and commands can flow, so
 * the time queueing takes does not count against it. */
static int arm(struct usb_state *st, libusb_device_handle *h)
{
	if (st->info.flags & MEAD_USB_INFO_WATCHDOG) {
		int r = vendor_out(h, st->iface, MEAD_USB_REQ_SET_WATCHDOG, 0);
		if (r < 0)
			return r;
	}
	atomic_store(&st->start_ns, mead_now_ns());
	return vendor_out(h, st->iface, MEAD_USB_REQ_START, 0);
}

static void sleep_ms(uint32_t ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* Watcher, link live: clear what stalled and give back what a failed
 * resubmission left idle. */
static void repair(struct usb_state *st, uint64_t *parked_since)
{
	if (atomic_load(&st->out_halted)) {
		int r = libusb_clear_halt(st->h, st->ep_out);
		if (r == 0)
			atomic_store(&st->out_halted, false);
		else if (r == LIBUSB_ERROR_NO_DEVICE)
			usb_mark_gone(st);
	}
	if (atomic_load(&st->parked) > 0) {
		uint64_t now = mead_now_ns();
		if (!*parked_since)
			*parked_since = now;
		/* the halt is cleared once everything queued has come back
		 * stalled, or after a while if some never do */
		if (atomic_load(&st->inflight) > 0 && now - *parked_since < 100000000ull)
			return;
		int r = libusb_clear_halt(st->h, st->ep_in);
		if (r == LIBUSB_ERROR_NO_DEVICE) {
			usb_mark_gone(st);
			return;
		}
		if (r < 0) {
			atomic_fetch_add(&st->xfer_errors, 1);
			return;
		}
		*parked_since = 0;
		for (uint32_t i = 0; i < st->n_in; i++) {
			int expect = IN_PARKED;
			if (atomic_compare_exchange_strong(&st->in[i].state, &expect, IN_IDLE))
				atomic_fetch_sub(&st->parked, 1);
		}
		atomic_fetch_add(&st->stalls_cleared, 1);
	}
	for (uint32_t i = 0; i < st->n_in && atomic_load(&st->link) == LINK_LIVE; i++) {
		int expect = IN_IDLE;
		if (!atomic_compare_exchange_strong(&st->in[i].state, &expect, IN_FLIGHT))
			continue;
		atomic_fetch_add(&st->inflight, 1);
		int r = libusb_submit_transfer(st->in[i].x);
		if (r < 0) {
			atomic_store(&st->in[i].state, IN_IDLE);
			atomic_fetch_sub(&st->inflight, 1);
			if (r == LIBUSB_ERROR_NO_DEVICE)
				usb_mark_gone(st);
			break;
		}
	}
}

static libusb_context *new_context(void)
{
	libusb_context *c;
	if (libusb_init(&c) < 0)
		return NULL;
	libusb_set_option(c, LIBUSB_OPTION_LOG_LEVEL, LIBUSB_LOG_LEVEL_NONE);
	return c;
}

/*
 * A libusb transfer keeps a reference to the device it was last submitted
 * to until it is submitted again or freed, and a context must not go while
 * one does: before the old context is retired every transfer is made
 * afresh (same buffers), and the old ones, freed while their context is
 * still there, let go of the old device.  A failed allocation leaves the
 * rest for the next try.
 */
static int renew(struct libusb_transfer **x)
{
	struct libusb_transfer *n = libusb_alloc_transfer(0);
	if (!n)
		return -ENOMEM;
	n->buffer = (*x)->buffer;
	n->flags = (*x)->flags & ~LIBUSB_TRANSFER_FREE_BUFFER;
	(*x)->buffer = NULL;
	libusb_free_transfer(*x);
	*x = n;
	return 0;
}

static int renew_transfers(struct usb_state *st)
{
	for (uint32_t i = 0; i < st->n_in; i++)
		if (renew(&st->in[i].x) < 0)
			return -ENOMEM;
	for (int i = 0; i < N_OUT; i++)
		if (renew(&st->out[i].x) < 0)
			return -ENOMEM;
	if (renew(&st->sx.x) < 0 || renew(&st->sk.x) < 0 || renew(&st->ctl) < 0)
		return -ENOMEM;
	return 0;
}

/* Watcher, link REOPEN: once nothing is in flight on the old handle, look
 * for the device and start it again. */
static void reopen(struct usb_state *st)
{
	for (uint32_t i = 0; i < st->n_in; i++)
		if (atomic_load(&st->in[i].state) == IN_FLIGHT)
			libusb_cancel_transfer(st->in[i].x);
	for (int i = 0; i < N_OUT; i++)
		if (atomic_load(&st->out[i].busy))
			libusb_cancel_transfer(st->out[i].x);
	if (atomic_load(&st->inflight) > 0 || !usb_outputs_idle(st) || atomic_load(&st->users) > 0 ||
	    atomic_load(&st->ctx_next))
		return; /* the loop thread's event handling brings them back */
	if (st->h && renew_transfers(st) < 0)
		return;
	for (uint32_t i = 0; i < st->n_in; i++)
		atomic_store(&st->in[i].state, IN_IDLE);
	atomic_store(&st->parked, 0);
	drop_handle(st, st->h);
	st->h = NULL;
	/* Without udev's events libusb never sees a device come back on a
	 * context it already has: every look is on a fresh one. */
	libusb_context *ctx = new_context();
	if (!ctx)
		return;
	struct found f;
	char why[256];
	if (find_device(st, ctx, &f, why, sizeof(why)) < 0) {
		libusb_exit(ctx);
		return;
	}
	if (!same_format(&f.info, &st->info) || arm(st, f.h) < 0) {
		/* another device, or one that will not stream: not ours */
		drop_handle(st, f.h);
		libusb_exit(ctx);
		return;
	}
	st->h = f.h;
	st->ep_in = f.ep_in;
	st->ep_out = f.ep_out;
	atomic_store(&st->out_halted, false);
	atomic_store(&st->last_out_ns, mead_now_ns());
	atomic_store(&st->ctx_next, ctx);
	atomic_fetch_add(&st->gen, 1);
	atomic_fetch_add(&st->reattaches, 1);
	atomic_store(&st->link, LINK_LIVE);
	if (usb_submit_in(st) < 0)
		usb_mark_gone(st);
}

/* A context the loop thread has left. */
static void free_retired(struct usb_state *st)
{
	libusb_context *old = atomic_exchange(&st->ctx_retired, NULL);
	if (old)
		libusb_exit(old);
}

static void *watch(void *arg)
{
	struct usb_state *st = arg;
	uint64_t parked_since = 0;
	while (!atomic_load(&st->quit)) {
		sleep_ms(st->reattach_ms);
		free_retired(st);
		int l = atomic_load(&st->link);
		if (l == LINK_LIVE) {
			repair(st, &parked_since);
			continue;
		}
		parked_since = 0;
		if (l == LINK_GONE && st->reattach) {
			int expect = LINK_GONE;
			atomic_compare_exchange_strong(&st->link, &expect, LINK_REOPEN);
		}
		if (atomic_load(&st->link) == LINK_REOPEN)
			reopen(st);
	}
	return NULL;
}

static void usb_close_(void *state);

static int read_stim_map(struct usb_state *st, char *err, size_t err_len)
{
	uint32_t C = st->info.channels;
	uint8_t *b = calloc(C, 2);
	st->stim_map = calloc(C, sizeof(uint16_t));
	if (!b || !st->stim_map) {
		free(b);
		return -ENOMEM;
	}
	int r = vendor_in(st->h, st->iface, MEAD_USB_REQ_GET_STIM_MAP, b, (uint16_t)(2 * C));
	if (r >= 0 && r < (int)(2 * C))
		r = -EPROTO;
	for (uint32_t c = 0; r >= 0 && c < C; c++) {
		st->stim_map[c] = mead_usb_get16(b + 2 * c);
		if (st->stim_map[c] >= st->info.stimulators) {
			snprintf(err, err_len, "usb: GET_STIM_MAP wires channel %u to stimulator %u of %u", c,
				 st->stim_map[c], st->info.stimulators);
			r = -EPROTO;
		}
	}
	free(b);
	if (r < 0 && !err[0])
		snprintf(err, err_len, "usb: the device has %u stimulators but GET_STIM_MAP (0x06) failed: %s",
			 st->info.stimulators, strerror(-r));
	return r < 0 ? r : 0;
}

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
	err[0] = '\0';
	st->vid = (uint16_t)mead_driver_param_int(cfg, "vid", 0x1209);
	st->pid = (uint16_t)mead_driver_param_int(cfg, "pid", 0x4d45);
	st->iface = (int)mead_driver_param_int(cfg, "interface", 0);
	snprintf(st->serial, sizeof(st->serial), "%s", mead_driver_param_string(cfg, "serial", ""));
	st->queue_ms = (uint32_t)mead_driver_param_int(cfg, "queue_ms", 200);
	st->watchdog_ms = (uint32_t)mead_driver_param_int(cfg, "watchdog_ms", 100);
	st->reattach = mead_driver_param_bool(cfg, "reattach", true);
	st->reattach_ms = (uint32_t)mead_driver_param_int(cfg, "reattach_interval_ms", 20);
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
		r = -usb_errno(r);
		st->ctx = NULL;
		goto fail;
	}
	libusb_set_option(st->ctx, LIBUSB_OPTION_LOG_LEVEL, LIBUSB_LOG_LEVEL_NONE);
	struct found f;
	char why[256];
	r = find_device(st, st->ctx, &f, why, sizeof(why));
	if (r < 0) {
		if (!why[0])
			snprintf(err, err_len, "usb: no device %04x:%04x%s%s found", st->vid, st->pid,
				 st->serial[0] ? " with serial " : "", st->serial);
		else
			snprintf(err, err_len, "usb: device %04x:%04x %s", st->vid, st->pid, why);
		goto fail;
	}
	st->h = f.h;
	st->info = f.info;
	st->ep_in = f.ep_in;
	st->ep_out = f.ep_out;
	st->in_mps = f.in_mps;
	const struct dev_info *di = &st->info;
	if (di->channels < st->electrodes) {
		snprintf(err, err_len, "usb: the layout has %u electrodes but the device only %u channels",
			 st->electrodes, di->channels);
		r = -EINVAL;
		goto fail;
	}
	bool stim = di->flags & MEAD_USB_INFO_CAN_STIMULATE;
	if (stim && st->watchdog_ms && !(di->flags & MEAD_USB_INFO_WATCHDOG)) {
		snprintf(err, err_len, "usb: device %04x:%04x can stimulate but has no host watchdog (info flags bit 2): "
			 "set watchdog_ms = 0 to run it without one", st->vid, st->pid);
		r = -EOPNOTSUPP;
		goto fail;
	}
	if (!(di->flags & MEAD_USB_INFO_WATCHDOG))
		st->watchdog_ms = 0;
	if (stim && st->info.stimulators > 1 && (r = read_stim_map(st, err, err_len)) < 0)
		goto fail;

	st->uv_per_count = (float)(di->nv_per_count / 1000.0);
	st->pkt_bytes = MEAD_USB_SP_HEADER + (size_t)di->spp * di->channels * 2;
	/* Whole high-speed USB packets, and more than a sample packet: its
	 * short last USB packet, or the zero-length one after a packet of
	 * whole ones, ends each transfer (full speed divides 512 too). */
	st->in_bytes = (st->pkt_bytes / 512 + 1) * 512;
	/* a packet's duration is spp / rate; enough of them for queue_ms */
	uint64_t n_in = ((uint64_t)st->queue_ms * di->rate + 1000ull * di->spp - 1) / (1000ull * di->spp);
	if (n_in < 2)
		n_in = 2;
	if (n_in > MAX_IN) {
		snprintf(err, err_len, "usb: queue_ms = %u needs %llu transfers of %u samples in flight; at most %d", st->queue_ms,
			 (unsigned long long)n_in, di->spp, MAX_IN);
		r = -EINVAL;
		goto fail;
	}
	st->n_in = (uint32_t)n_in;
	/* The ring holds what queue_ms lets arrive at once, as much again
	 * from the device's own buffer, and half a second for the loop to
	 * catch up. */
	uint64_t want = ((uint64_t)2 * st->queue_ms + 500) * di->rate / 1000 + 4ull * di->spp;
	st->ring_scans = 1;
	while (st->ring_scans < want)
		st->ring_scans <<= 1;
	st->report_timeout = (uint64_t)REPORT_TIMEOUT_MS * di->rate / 1000;
	st->keepalive_ns = (uint64_t)st->watchdog_ms * 1000000ull / 4;
	st->keepalive_samples = (uint64_t)st->watchdog_ms * di->rate / 4000;
	if (st->keepalive_samples == 0)
		st->keepalive_samples = 1;
	if ((r = usb_stream_alloc(st)) < 0 || (r = usb_stim_alloc(st)) < 0) {
		snprintf(err, err_len, "usb: %s", strerror(-r));
		goto fail;
	}
	struct mead_sig_config sc;
	mead_sig_config_defaults(&sc, st->electrodes, di->rate);
	if ((r = mead_sig_config_from_params(&sc, cfg, &st->blank_all, err, err_len)) < 0)
		goto fail;
	st->sig = mead_sig_new(&sc);
	if (!st->sig) {
		r = -errno;
		snprintf(err, err_len, "usb: spike detector: %s", strerror(errno));
		goto fail;
	}
	/* the device sends 16-bit counts: their ends are the converter's rails */
	mead_sig_set_rail(st->sig, UINT32_MAX, -32768.0f * st->uv_per_count, 32767.0f * st->uv_per_count);
	if ((r = mead_sig_set_thresholds(st->sig, mead_driver_param_string(cfg, "thresholds", ""), err, err_len)) < 0)
		goto fail;
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
	if (atomic_load(&st->link) != LINK_IDLE || st->watcher_on)
		usb_stop_(st);
	usb_stream_free(st);
	usb_stim_free(st);
	drop_handle(st, st->h);
	if (st->ctx)
		libusb_exit(st->ctx);
	mead_sig_free(st->sig);
	free(st->stim_map);
	free(st);
}

static int usb_get_caps_(void *state, struct mead_driver_caps *c)
{
	struct usb_state *st = state;
	uint32_t pre, post;
	mead_sig_waveform_window(st->sig, &pre, &post);
	const bool wf = mead_sig_waveforms(st->sig);
	bool stim = st->info.flags & MEAD_USB_INFO_CAN_STIMULATE;
	*c = (struct mead_driver_caps){
		.waveform_pre = pre,
		.waveform_post = post,
		.electrode_count = st->electrodes,
		.sample_rate_hz = st->info.rate,
		.raw_channels = st->electrodes,
		.uv_per_count = st->uv_per_count,
		.flags = MEAD_CAP_RAW | MEAD_CAP_DEVICE_CLOCK | MEAD_CAP_THRESHOLDS | (pre || post || wf ? MEAD_CAP_WAVEFORMS : 0u) | (stim ? MEAD_CAP_STIMULATE : 0u),
		.max_amplitude_ua = stim ? st->info.max_na / 1000.0f : 0,
		.max_phase_us = stim ? st->info.max_phase_us : 0,
		.max_pulses_per_tick = stim ? st->info.max_pulses : 0,
		/* the device rounds a pulse's busy time up to whole samples and
		 * the loop's busy check does the same: no guard needed */
		.stimulators = stim ? st->info.stimulators : 0,
		.stimulator_of_electrode = stim ? st->stim_map : NULL,
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
	int r = arm(st, st->h);
	if (r < 0) {
		snprintf(err, err_len, "usb: SET_WATCHDOG or START refused: %s", strerror(-r));
		return r;
	}
	mead_sig_reset(st->sig);
	usb_stream_reset(st);
	usb_stim_reset(st);
	atomic_store(&st->quit, false);
	atomic_store(&st->link, LINK_LIVE);
	r = usb_submit_in(st);
	if (r == 0 && st->watchdog_ms) {
		r = vendor_out(st->h, st->iface, MEAD_USB_REQ_SET_WATCHDOG, (uint16_t)st->watchdog_ms);
		atomic_store(&st->last_out_ns, mead_now_ns());
	}
	if (r < 0) {
		atomic_store(&st->link, LINK_IDLE);
		for (uint32_t i = 0; i < st->n_in; i++)
			libusb_cancel_transfer(st->in[i].x);
		struct timeval tv = { 0, 20000 };
		for (int i = 0; i < 100 && atomic_load(&st->inflight) > 0; i++)
			libusb_handle_events_timeout_completed(st->ctx, &tv, NULL);
		vendor_out(st->h, st->iface, MEAD_USB_REQ_STOP, 0);
		snprintf(err, err_len, "usb: cannot queue %u sample transfers (queue_ms = %u) or set the watchdog: %s",
			 st->n_in, st->queue_ms, strerror(-r));
		return r;
	}
	if (pthread_create(&st->watcher, NULL, watch, st) != 0) {
		snprintf(err, err_len, "usb: cannot start the watcher thread");
		usb_stop_(st);
		return -EAGAIN;
	}
	st->watcher_on = true;
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
	libusb_context *next = atomic_exchange(&st->ctx_next, NULL);
	if (next) {
		atomic_store(&st->ctx_retired, st->ctx);
		st->ctx = next;
	}
	free_retired(st);
	bool live = atomic_load(&st->link) == LINK_LIVE;
	atomic_store(&st->link, LINK_STOPPING);
	for (uint32_t i = 0; i < st->n_in; i++) {
		int expect = IN_PARKED;
		atomic_compare_exchange_strong(&st->in[i].state, &expect, IN_IDLE);
		if (atomic_load(&st->in[i].state) == IN_FLIGHT)
			libusb_cancel_transfer(st->in[i].x);
	}
	atomic_store(&st->parked, 0);
	struct timeval tv = { 0, 20000 };
	for (int i = 0; i < 100 && (atomic_load(&st->inflight) > 0 || !usb_outputs_idle(st)); i++) {
		if (i == 10)
			for (int k = 0; k < N_OUT; k++)
				if (atomic_load(&st->out[k].busy))
					libusb_cancel_transfer(st->out[k].x);
		libusb_handle_events_timeout_completed(st->ctx, &tv, NULL);
	}
	int r = 0;
	if (live && st->h)
		r = vendor_out(st->h, st->iface, MEAD_USB_REQ_STOP, 0);
	st->n_pend = 0;
	atomic_store(&st->link, LINK_IDLE);
	return r == -ENODEV ? 0 : r;
}

static int usb_describe_(void *state, char *buf, size_t len)
{
	struct usb_state *st = state;
	/* the watcher looking for the device is still "gone" to a reader */
	static const char *names[] = { "idle", "live", "gone", "gone", "stopping" };
	int l = atomic_load(&st->link);
	bool stim = st->info.flags & MEAD_USB_INFO_CAN_STIMULATE;
#define C(x) (unsigned long long)atomic_load(&st->x)
	int n = snprintf(buf, len,
			 "{\"driver\":\"usb\",\"protocol\":%u,\"device\":\"%04x:%04x\",\"serial\":\"%.16s\",\"model\":\"%.16s\","
			 "\"link\":\"%s\",\"stimulation\":\"%s\",\"endpoint_in\":\"0x%02x\",\"endpoint_out\":\"0x%02x\","
			 "\"channels\":%u,\"sample_rate_hz\":%u,\"in_transfers\":%u,\"queue_ms\":%u,\"ring_samples\":%u,"
			 "\"watchdog_ms\":%u,\"stimulators\":%u,"
			 "\"gaps\":%llu,\"gap_samples\":%llu,\"overflows\":%llu,\"overflow_samples\":%llu,"
			 "\"ring_overruns\":%llu,\"late_ticks\":%llu,\"late_samples\":%llu,"
			 "\"stalls\":%llu,\"stalls_cleared\":%llu,\"out_stalls\":%llu,\"babbles\":%llu,\"transfer_errors\":%llu,"
			 "\"malformed\":%llu,\"stale_packets\":%llu,\"unplugs\":%llu,\"reattaches\":%llu,"
			 "\"pulses_sent\":%llu,\"pulses_delivered\":%llu,\"pulses_late\":%llu,\"pulses_refused_device\":%llu,"
			 "\"pulses_refused_here\":%llu,\"pulses_unknown\":%llu,\"reports\":%llu,\"reports_lost\":%llu,"
			 "\"reports_unmatched\":%llu,\"keepalives\":%llu,\"watchdog_fired\":%llu,\"events_dropped\":%llu}",
			 st->info.version, st->vid, st->pid, st->info.serial, st->info.model, names[l % 5],
			 !stim ? "none" : l == LINK_LIVE ? "on" : "off", st->ep_in, st->ep_out, st->info.channels,
			 st->info.rate, st->n_in, st->queue_ms, st->ring_scans, st->watchdog_ms,
			 stim ? st->info.stimulators : 0, C(gaps), C(gap_samples), C(overflows), C(overflow_samples),
			 C(ring_overruns), C(late_ticks), C(late_samples), C(stalls), C(stalls_cleared), C(out_stalls),
			 C(babbles), C(xfer_errors), C(malformed), C(stale_packets), C(unplugs), C(reattaches), C(pulses_sent),
			 C(pulses_delivered), C(pulses_late), C(pulses_refused_device), C(pulses_refused_here),
			 C(pulses_unknown), C(reports), C(reports_lost), C(reports_unmatched), C(keepalives),
			 C(watchdog_fired), C(events_dropped));
#undef C
	if (n < 0)
		return -EIO;
	if ((size_t)n >= len)
		return -ENOSPC;
	return mead_sig_describe(st->sig, buf, len, n);
}

static int usb_control_(void *state, enum mead_driver_control op, int64_t value)
{
	struct usb_state *st = state;
	return mead_sig_control(st->sig, op, value);
}

static const struct mead_driver_ops usb_ops = {
	.abi_version = MEAD_DRIVER_ABI_VERSION,
	.ops_size = sizeof(struct mead_driver_ops),
	.name = "usb",
	.description = "USB MEA front-end speaking the mead USB protocol v2 (docs/usb-protocol.md)",
	.params = usb_params,
	.open = usb_open_,
	.close = usb_close_,
	.get_caps = usb_get_caps_,
	.start = usb_start_,
	.write_stim = usb_write_stim,
	.read_frame = usb_read_frame,
	.control = usb_control_,
	.stop_outputs = usb_stop_outputs,
	.stop = usb_stop_,
	.describe = usb_describe_,
};

MEAD_DRIVER_EXPORT(usb_ops)
