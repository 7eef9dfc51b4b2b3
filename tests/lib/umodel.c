/* SPDX-License-Identifier: MIT */
/*
 * A USB MEA front-end speaking docs/usb-protocol.md, behind an emulated
 * usbdevfs node of a umockdev testbed: URBs submitted by libusb are queued
 * and completed here the way the kernel's usbfs would.  Packing follows the
 * document byte by byte (little endian) and shares no code with the driver.
 *
 * Unplug is emulated as the kernel presents it to usbfs: outstanding URBs
 * complete with -ESHUTDOWN, then every ioctl fails with ENODEV.  The sysfs
 * entry stays (no uevents), so libusb finds the same device when it returns.
 */
#include "tests/lib/devmodel.h"

#include <errno.h>
#include <glib.h>
#include <linux/usbdevice_fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <umockdev.h>

#define MAX_URBS 64
#define MAX_STIMS 4096

struct urb {
	UMockdevIoctlData *urb, *buf;
	bool done;
};

struct umodel {
	struct umodel_config cfg;
	UMockdevIoctlBase *handler;
	struct siggen *gen;
	GMutex lock;
	bool plugged, streaming, realtime;
	uint64_t clock, start_at, t0_ns, stream_start_ns;
	uint64_t next_sample;     /* first sample of the next packet */
	uint32_t seq;
	uint32_t drop;
	bool overrun;
	struct urb urbs[MAX_URBS];
	uint32_t n_urbs;
	float *uv;
	struct umodel_stim stims[MAX_STIMS];
	uint32_t n_stims, stops, opens;
	char devnode[64];
};

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) { return get16(p) | (uint32_t)get16(p + 2) << 16; }
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }

static uint64_t u_clock_locked(struct umodel *m)
{
	if (m->realtime)
		return (mead_now_ns() - m->t0_ns) * m->cfg.rate_hz / 1000000000ull;
	return m->clock - m->start_at;
}

static size_t packet_bytes(const struct umodel *m)
{
	return 16 + (size_t)m->cfg.samples_per_packet * m->cfg.channels * 2;
}

/* Fill a sample packet if the samples exist yet. */
static int make_packet(struct umodel *m, uint8_t *buf, size_t len)
{
	uint32_t spp = m->cfg.samples_per_packet, C = m->cfg.channels;
	if (!m->streaming || u_clock_locked(m) < m->next_sample + spp || len < packet_bytes(m))
		return -1;
	while (m->drop) {
		/* lost on the device side: the counter still moves */
		siggen_fill(m->gen, m->uv, spp);
		m->next_sample += spp;
		m->seq++;
		m->drop--;
		if (u_clock_locked(m) < m->next_sample + spp)
			return -1;
	}
	put16(buf, 0x5053);
	put16(buf + 2, m->overrun ? 1 : 0);
	m->overrun = false;
	put32(buf + 4, m->seq++);
	put64(buf + 8, m->next_sample);
	siggen_fill(m->gen, m->uv, spp);
	double per_count = m->cfg.nv_per_count / 1000.0;
	for (size_t i = 0; i < (size_t)spp * C; i++) {
		double c = m->uv[i] / per_count;
		c = c > 32767 ? 32767 : c < -32768 ? -32768 : c;
		put16(buf + 16 + 2 * i, (uint16_t)(int16_t)(c >= 0 ? c + 0.5 : c - 0.5));
	}
	m->next_sample += spp;
	return (int)packet_bytes(m);
}

static void start_stream(struct umodel *m)
{
	m->streaming = true;
	m->seq = 0;
	/* the device counts samples from its own start; samples it produced
	 * before are not sent */
	m->t0_ns = mead_now_ns();
	m->start_at = m->clock;
	m->next_sample = 0;
	if (!m->stream_start_ns)
		m->stream_start_ns = m->t0_ns;
}

/* Control transfer: setup packet then data. */
static int control(struct umodel *m, uint8_t *b, int len)
{
	if (len < 8)
		return -EINVAL;
	uint8_t type = b[0], req = b[1];
	uint16_t wlen = get16(b + 6);
	uint8_t *d = b + 8;
	if (type == 0xC1 && req == 0x01) {
		uint8_t info[64] = { 0 };
		put32(info, 0x3141454D);               /* "MEA1" */
		put16(info + 4, 1);                    /* protocol version */
		put16(info + 6, m->cfg.channels);
		put32(info + 8, m->cfg.rate_hz);
		put32(info + 12, m->cfg.nv_per_count);
		put16(info + 16, m->cfg.samples_per_packet);
		put16(info + 18, 1);                   /* can stimulate */
		put32(info + 20, 150000);              /* max amplitude, nA */
		put32(info + 24, 1000);                /* max phase, µs */
		put16(info + 28, 16);                  /* pulses per command */
		memcpy(info + 32, "MODEL-0001", 10);
		memcpy(info + 48, "mead usb model", 14);
		int n = wlen < 64 ? wlen : 64;
		memcpy(d, info, (size_t)n);
		return n;
	}
	if (type == 0x41 && req == 0x02) {
		start_stream(m);
		return 0;
	}
	if (type == 0x41 && req == 0x03) {
		m->streaming = false;
		m->stops++;
		return 0;
	}
	if (type == 0xC1 && req == 0x04) {
		if (wlen < 16)
			return -EINVAL;
		put64(d, u_clock_locked(m));
		put64(d + 8, (mead_now_ns() - m->t0_ns) / 1000);
		return 16;
	}
	return -EPIPE; /* stall */
}

static void command(struct umodel *m, const uint8_t *b, int len)
{
	if (len < 8)
		return;
	uint16_t magic = get16(b), n = get16(b + 2);
	if (magic == 0x5853) {
		m->stops++;
		return;
	}
	if (magic != 0x4353 || len < 8 + 24 * n)
		return;
	uint64_t now = u_clock_locked(m);
	for (uint16_t i = 0; i < n && m->n_stims < MAX_STIMS; i++) {
		const uint8_t *p = b + 8 + 24 * i;
		struct umodel_stim *s = &m->stims[m->n_stims++];
		s->requested_sample = get64(p);
		s->received_at = now;
		s->start_sample = s->requested_sample > now ? s->requested_sample : now;
		s->electrode = get16(p + 8);
		s->amplitude_na = (int32_t)get32(p + 12);
		s->phase_us = get32(p + 16);
		s->interphase_us = get32(p + 20);
		s->t_ns = mead_now_ns();
	}
}

static UMockdevIoctlData *u_res(UMockdevIoctlData *d, size_t off, size_t len)
{
	GError *e = NULL;
	UMockdevIoctlData *r = umockdev_ioctl_data_resolve(d, off, len, &e);
	if (e)
		g_error_free(e);
	return r;
}

static void drop_urb(struct umodel *m, uint32_t i)
{
	g_object_unref(m->urbs[i].urb);
	if (m->urbs[i].buf)
		g_object_unref(m->urbs[i].buf);
	m->urbs[i] = m->urbs[--m->n_urbs];
}

/* Completes what can complete; returns the index of a reapable URB or -1. */
static int reapable(struct umodel *m)
{
	for (uint32_t i = 0; i < m->n_urbs; i++)
		if (m->urbs[i].done)
			return (int)i;
	for (uint32_t i = 0; i < m->n_urbs; i++) {
		struct usbdevfs_urb *u = (struct usbdevfs_urb *)m->urbs[i].urb->data;
		if (u->type == USBDEVFS_URB_TYPE_BULK && (u->endpoint & 0x80) && m->urbs[i].buf) {
			int n = make_packet(m, m->urbs[i].buf->data, (size_t)u->buffer_length);
			if (n < 0)
				return -1; /* IN URBs complete in order */
			u->actual_length = n;
			u->status = 0;
			m->urbs[i].done = true;
			return (int)i;
		}
	}
	return -1;
}

static gboolean u_on_ioctl(UMockdevIoctlBase *base, UMockdevIoctlClient *client, gpointer user)
{
	struct umodel *m = user;
	gulong req = umockdev_ioctl_client_get_request(client);
	UMockdevIoctlData *arg = umockdev_ioctl_client_get_arg(client);
	long ret = 0;
	int err = 0;
	g_mutex_lock(&m->lock);
	if (!m->plugged && req != USBDEVFS_REAPURB && req != USBDEVFS_REAPURBNDELAY) {
		ret = -1;
		err = ENODEV;
		goto out;
	}
	switch (req) {
	case USBDEVFS_GET_CAPABILITIES: {
		UMockdevIoctlData *d = u_res(arg, 0, 4);
		uint32_t caps = USBDEVFS_CAP_ZERO_PACKET | USBDEVFS_CAP_BULK_CONTINUATION | USBDEVFS_CAP_NO_PACKET_SIZE_LIM |
				USBDEVFS_CAP_REAP_AFTER_DISCONNECT;
		memcpy(d->data, &caps, 4);
		g_object_unref(d);
		break;
	}
	case USBDEVFS_CLAIMINTERFACE:
	case USBDEVFS_RELEASEINTERFACE:
	case USBDEVFS_SETINTERFACE:
	case USBDEVFS_CLEAR_HALT:
	case USBDEVFS_RESETEP:
	case USBDEVFS_RESET:
	case USBDEVFS_SETCONFIGURATION:
		break;
	case USBDEVFS_GETDRIVER:
	case USBDEVFS_IOCTL:
		ret = -1;
		err = ENODATA;
		break;
	case USBDEVFS_SUBMITURB: {
		UMockdevIoctlData *d = u_res(arg, 0, sizeof(struct usbdevfs_urb));
		struct usbdevfs_urb *u = (struct usbdevfs_urb *)d->data;
		if (m->n_urbs >= MAX_URBS) {
			g_object_unref(d);
			ret = -1;
			err = ENOMEM;
			break;
		}
		UMockdevIoctlData *b = u->buffer_length > 0 ? u_res(d, offsetof(struct usbdevfs_urb, buffer), (size_t)u->buffer_length) : NULL;
		struct urb *e = &m->urbs[m->n_urbs++];
		e->urb = d;
		e->buf = b;
		e->done = false;
		if (u->type == USBDEVFS_URB_TYPE_CONTROL) {
			int n = b ? control(m, b->data, u->buffer_length) : -EINVAL;
			u->status = n < 0 ? n : 0;
			u->actual_length = n < 0 ? 0 : n;
			e->done = true;
		} else if (u->type == USBDEVFS_URB_TYPE_BULK && !(u->endpoint & 0x80)) {
			if (b)
				command(m, b->data, u->buffer_length);
			u->status = 0;
			u->actual_length = u->buffer_length;
			e->done = true;
		}
		break;
	}
	case USBDEVFS_DISCARDURB: {
		unsigned long addr = *(unsigned long *)arg->data;
		ret = -1;
		err = EINVAL;
		for (uint32_t i = 0; i < m->n_urbs; i++)
			if (m->urbs[i].urb->client_addr == addr && !m->urbs[i].done) {
				struct usbdevfs_urb *u = (struct usbdevfs_urb *)m->urbs[i].urb->data;
				u->status = -ENOENT;
				u->actual_length = 0;
				m->urbs[i].done = true;
				ret = 0;
				err = 0;
				break;
			}
		break;
	}
	case USBDEVFS_REAPURB:
	case USBDEVFS_REAPURBNDELAY: {
		int i = reapable(m);
		if (i < 0) {
			ret = -1;
			err = m->plugged ? EAGAIN : ENODEV;
			break;
		}
		UMockdevIoctlData *d = u_res(arg, 0, sizeof(void *));
		umockdev_ioctl_data_set_ptr(d, 0, m->urbs[i].urb);
		g_object_unref(d);
		drop_urb(m, (uint32_t)i);
		break;
	}
	default:
		ret = -1;
		err = ENOTTY;
	}
out:
	g_mutex_unlock(&m->lock);
	umockdev_ioctl_client_complete(client, ret, err);
	return TRUE;
}

static void on_connected(UMockdevIoctlBase *base, UMockdevIoctlClient *client, gpointer user)
{
	struct umodel *m = user;
	g_mutex_lock(&m->lock);
	m->opens++;
	g_mutex_unlock(&m->lock);
}

static void on_vanished(UMockdevIoctlBase *base, UMockdevIoctlClient *client, gpointer user)
{
	struct umodel *m = user;
	g_mutex_lock(&m->lock);
	/* a closed file descriptor takes its URBs with it */
	while (m->n_urbs)
		drop_urb(m, 0);
	m->streaming = false;
	g_mutex_unlock(&m->lock);
}

static char *hex(const uint8_t *b, size_t n)
{
	char *s = g_malloc(2 * n + 1);
	for (size_t i = 0; i < n; i++)
		snprintf(s + 2 * i, 3, "%02x", b[i]);
	return s;
}

struct umodel *umodel_new(void *tbv, const struct umodel_config *cfg, struct siggen *gen, char *err, size_t err_len)
{
	UMockdevTestbed *tb = tbv;
	struct umodel *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->cfg = *cfg;
	m->gen = gen;
	m->plugged = true;
	m->uv = calloc((size_t)cfg->samples_per_packet * cfg->channels, sizeof(float));
	g_mutex_init(&m->lock);
	const uint8_t desc[] = {
		/* device: USB 2.0, vendor class, ep0 64 bytes, one configuration */
		0x12, 0x01, 0x00, 0x02, 0xff, 0x00, 0x00, 0x40, (uint8_t)cfg->vid, (uint8_t)(cfg->vid >> 8),
		(uint8_t)cfg->pid, (uint8_t)(cfg->pid >> 8), 0x00, 0x01, 0x00, 0x00, 0x00, 0x01,
		/* configuration 1: one interface, bus powered */
		0x09, 0x02, 0x20, 0x00, 0x01, 0x01, 0x00, 0x80, 0x32,
		/* interface 0: vendor class, two endpoints */
		0x09, 0x04, 0x00, 0x00, 0x02, 0xff, 0x00, 0x00, 0x00,
		/* 0x81 bulk IN, 0x01 bulk OUT, 512 bytes */
		0x07, 0x05, 0x81, 0x02, 0x00, 0x02, 0x00,
		0x07, 0x05, 0x01, 0x02, 0x00, 0x02, 0x00,
	};
	char *h = hex(desc, sizeof(desc));
	unsigned dn = cfg->devnum ? cfg->devnum : 2;
	char *rec = g_strdup_printf(
		"P: /devices/pci0000:00/0000:00:14.0/usb1/1-%u\n"
		"N: bus/usb/001/%03u\n"
		"E: DEVNAME=/dev/bus/usb/001/%03u\nE: DEVTYPE=usb_device\nE: DRIVER=usb\nE: SUBSYSTEM=usb\n"
		"E: BUSNUM=001\nE: DEVNUM=%03u\nE: PRODUCT=%x/%x/100\n"
		"A: busnum=1\nA: devnum=%u\nA: speed=480\nA: bConfigurationValue=1\nA: bNumConfigurations=1\n"
		"A: idVendor=%04x\nA: idProduct=%04x\nA: devpath=%u\n"
		"H: descriptors=%s\n\n",
		dn - 1, dn, dn, dn, cfg->vid, cfg->pid, dn, cfg->vid, cfg->pid, dn - 1, h);
	snprintf(m->devnode, sizeof(m->devnode), "/dev/bus/usb/001/%03u", dn);
	g_free(h);
	GError *e = NULL;
	if (!umockdev_testbed_add_from_string(tb, rec, &e)) {
		snprintf(err, err_len, "add usb device: %s", e ? e->message : "?");
		g_free(rec);
		goto fail;
	}
	g_free(rec);
	m->handler = umockdev_ioctl_base_new();
	g_signal_connect(m->handler, "handle-ioctl", G_CALLBACK(u_on_ioctl), m);
	g_signal_connect(m->handler, "client-connected", G_CALLBACK(on_connected), m);
	g_signal_connect(m->handler, "client-vanished", G_CALLBACK(on_vanished), m);
	if (!umockdev_testbed_attach_ioctl(tb, m->devnode, m->handler, &e)) {
		snprintf(err, err_len, "attach usbfs handler: %s", e ? e->message : "?");
		goto fail;
	}
	return m;
fail:
	if (e)
		g_error_free(e);
	umodel_free(m);
	return NULL;
}

void umodel_free(struct umodel *m)
{
	if (!m)
		return;
	if (m->handler)
		g_object_unref(m->handler);
	free(m->uv);
	g_mutex_clear(&m->lock);
	free(m);
}

void umodel_set_clock(struct umodel *m, uint64_t samples)
{
	g_mutex_lock(&m->lock);
	m->clock = samples;
	g_mutex_unlock(&m->lock);
}

void umodel_set_realtime(struct umodel *m, bool on)
{
	g_mutex_lock(&m->lock);
	m->realtime = on;
	g_mutex_unlock(&m->lock);
}

uint64_t umodel_clock(struct umodel *m)
{
	g_mutex_lock(&m->lock);
	uint64_t c = u_clock_locked(m);
	g_mutex_unlock(&m->lock);
	return c;
}

void umodel_unplug(struct umodel *m)
{
	g_mutex_lock(&m->lock);
	m->plugged = false;
	m->streaming = false;
	/* the host controller gives back every URB in flight */
	for (uint32_t i = 0; i < m->n_urbs; i++) {
		if (!m->urbs[i].done) {
			struct usbdevfs_urb *u = (struct usbdevfs_urb *)m->urbs[i].urb->data;
			u->status = -ESHUTDOWN;
			u->actual_length = 0;
			m->urbs[i].done = true;
		}
	}
	g_mutex_unlock(&m->lock);
}

void umodel_replug(struct umodel *m)
{
	g_mutex_lock(&m->lock);
	m->plugged = true;
	g_mutex_unlock(&m->lock);
}

void umodel_drop_packets(struct umodel *m, uint32_t n)
{
	g_mutex_lock(&m->lock);
	m->drop += n;
	g_mutex_unlock(&m->lock);
}

void umodel_overrun(struct umodel *m)
{
	g_mutex_lock(&m->lock);
	m->overrun = true;
	g_mutex_unlock(&m->lock);
}

uint32_t umodel_stims(struct umodel *m, struct umodel_stim *out, uint32_t cap)
{
	g_mutex_lock(&m->lock);
	uint32_t n = m->n_stims < cap ? m->n_stims : cap;
	memcpy(out, m->stims, n * sizeof(*out));
	g_mutex_unlock(&m->lock);
	return n;
}

uint32_t umodel_stops(struct umodel *m)
{
	g_mutex_lock(&m->lock);
	uint32_t n = m->stops;
	g_mutex_unlock(&m->lock);
	return n;
}

uint32_t umodel_opens(struct umodel *m)
{
	g_mutex_lock(&m->lock);
	uint32_t n = m->opens;
	g_mutex_unlock(&m->lock);
	return n;
}

uint64_t umodel_stream_start_ns(struct umodel *m)
{
	return m->stream_start_ns;
}
