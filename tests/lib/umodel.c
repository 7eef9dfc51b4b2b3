/* SPDX-License-Identifier: MIT */
/*
 * A USB MEA front-end speaking docs/usb-protocol.md v2, behind an emulated
 * usbdevfs node of a umockdev testbed: URBs submitted by libusb are queued
 * and completed here the way the kernel's usbfs would.  Packing follows the
 * document byte by byte (little endian) and shares no code with the driver.
 *
 * The device runs on its own sample clock (clock_ppm off the emulated
 * time).  Whatever is due by the time of an ioctl happens first, in device
 * time order: sample packets are made (into a waiting IN URB, else the
 * device's FIFO, else lost with the overrun flag on the next one sent),
 * pulses start, the host watchdog fires.  One stimulator plays one pulse at
 * a time (2 x phase + interphase, rounded up to whole samples); every pulse
 * gets a report (SR) on the IN endpoint: when it started, or why not.
 *
 * Unplug is emulated as the kernel presents it to usbfs: outstanding URBs
 * complete with -ESHUTDOWN, then every ioctl fails with ENODEV.  The sysfs
 * entry stays (no uevents), so libusb finds the same device when it returns.
 * A host that closes its file descriptor takes its URBs with it and tells
 * the device nothing, as on a real bus.
 */
#include "tests/lib/devmodel.h"

#include <errno.h>
#include <glib.h>
#include <linux/usbdevice_fs.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <umockdev.h>

#define MAX_URBS 1024
#define MAX_STIMS 8192
#define MAX_QUEUE 1024
#define MAX_LEAD_S 3600
#define MAX_INTERPHASE_US 1000
#define MAX_NA 150000
#define MAX_PHASE_US 1000

struct urb {
	UMockdevIoctlClient *client;
	UMockdevIoctlData *urb, *buf;
	uint64_t order;            /* submission */
	uint64_t done;             /* completion order, 0 while pending */
};

/* A packet waiting in the device for an IN URB. */
struct msg {
	uint8_t *buf;
	uint32_t len;
	bool sp;
};

struct pulse {
	uint64_t start, end;       /* the stimulator is busy over [start, end) */
	uint32_t log;              /* index in stims */
	uint16_t stimulator;
	bool reported;
};

struct umodel {
	struct umodel_config cfg;
	UMockdevIoctlBase *handler;
	struct siggen *gen;
	GMutex lock;
	bool plugged, streaming, realtime, halted, halted_out, hold_out;
	uint64_t world;            /* emulated time, nominal samples */
	uint64_t start_world;      /* world at START */
	uint64_t start_ns;         /* wall clock at START (realtime) */
	uint64_t frozen_sample, frozen_us;
	uint64_t produced;         /* packets made since START, sent or not */
	uint32_t report_seq;
	uint16_t flags_pending;
	uint32_t drop, fail_in, refuse_out, keep_stale;
	bool unplug_errors, phantom;
	int fail_err;
	uint32_t wd_ms;
	uint64_t wd_last_out;      /* device sample of the last command */
	bool wd_tripped;
	size_t sp_bytes;
	uint32_t sr_max;           /* records per SR packet */

	struct msg q[MAX_QUEUE];   /* packets for the host, oldest first */
	uint32_t q_head, q_n, q_sp;
	uint8_t *recs;             /* records waiting to be packed, 24 bytes each */
	uint32_t n_recs, recs_cap;

	struct pulse pulses[MAX_QUEUE];  /* accepted, by start */
	uint32_t n_pulses;

	struct urb urbs[MAX_URBS];
	uint32_t n_urbs;
	UMockdevIoctlClient *owner;   /* the file descriptor that claimed interface 0 */
	uint64_t next_order, next_done;
	float *uv;
	struct umodel_stim stims[MAX_STIMS];
	uint32_t n_stims;
	struct umodel_counts counts;
	uint64_t stream_start_ns;
	char devnode[64];
};

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) { return get16(p) | (uint32_t)get16(p + 2) << 16; }
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }

static uint16_t info_flags(const struct umodel *m)
{
	return (uint16_t)(7u & ~m->cfg.flags_clear);
}

static uint64_t nominal_elapsed(const struct umodel *m)
{
	if (m->realtime)
		return (mead_now_ns() - m->start_ns) * m->cfg.rate_hz / 1000000000ull;
	return m->world - m->start_world;
}

/* The device's sample counter: its crystal is clock_ppm off. */
static uint64_t dev_now(const struct umodel *m)
{
	if (!m->streaming)
		return m->frozen_sample;
	return (uint64_t)floor((double)nominal_elapsed(m) * (1.0 + m->cfg.clock_ppm * 1e-6));
}

static uint64_t dev_us(const struct umodel *m)
{
	if (!m->streaming)
		return m->frozen_us;
	return (uint64_t)((double)nominal_elapsed(m) * 1e6 / m->cfg.rate_hz * (1.0 + m->cfg.clock_ppm * 1e-6));
}

static uint64_t busy(const struct umodel *m, uint32_t phase_us, uint32_t interphase_us)
{
	uint64_t us = 2ull * phase_us + interphase_us;
	uint64_t n = (us * m->cfg.rate_hz + 999999) / 1000000;
	return n ? n : 1;
}

static struct usbdevfs_urb *U(const struct urb *u)
{
	return (struct usbdevfs_urb *)u->urb->data;
}

static void complete(struct umodel *m, struct urb *u, int status, int len)
{
	U(u)->status = status;
	U(u)->actual_length = len;
	u->done = ++m->next_done;
}

/* The oldest IN URB still waiting for data, or NULL. */
static struct urb *waiting_in(struct umodel *m)
{
	struct urb *best = NULL;
	for (uint32_t i = 0; i < m->n_urbs; i++) {
		struct urb *u = &m->urbs[i];
		if (!u->done && U(u)->type == USBDEVFS_URB_TYPE_BULK && (U(u)->endpoint & 0x80) &&
		    (!best || u->order < best->order))
			best = u;
	}
	return best;
}

static void pop(struct umodel *m)
{
	if (m->q[m->q_head].sp)
		m->q_sp--;
	m->q_head = (m->q_head + 1) % MAX_QUEUE;
	m->q_n--;
}

/* Packets from the FIFO into the IN URBs that wait for them. */
static void pump(struct umodel *m)
{
	if (!m->plugged)
		return;
	while (m->phantom && m->q_n)
		pop(m);
	if (m->halted) {
		struct urb *u;
		while ((u = waiting_in(m)))
			complete(m, u, -EPIPE, 0);
		return;
	}
	struct urb *u;
	while (m->q_n && (u = waiting_in(m))) {
		struct msg *g = &m->q[m->q_head];
		int cap = U(u)->buffer_length;
		if (m->fail_in) {
			m->fail_in--;
			complete(m, u, -m->fail_err, 0);
			pop(m);
			continue;
		}
		if ((int)g->len > cap) {
			/* more than the host asked for: babble */
			complete(m, u, -EOVERFLOW, cap);
			pop(m);
			continue;
		}
		if (g->len && u->buf)
			memcpy(u->buf->data, g->buf, g->len);
		complete(m, u, 0, (int)g->len);
		/* a packet of whole USB packets ends with a zero-length one;
		 * a URB it filled exactly ends without it, and the next gets it */
		if (g->len && g->len % m->cfg.max_packet == 0 && (int)g->len == cap) {
			if (g->sp)
				m->q_sp--;
			g->sp = false;
			g->len = 0;
			continue;
		}
		pop(m);
	}
}

static struct msg *push(struct umodel *m, bool sp)
{
	if (m->q_n == MAX_QUEUE || (sp && m->q_sp >= m->cfg.fifo_packets))
		return NULL;
	struct msg *g = &m->q[(m->q_head + m->q_n++) % MAX_QUEUE];
	g->sp = sp;
	m->q_sp += sp;
	return g;
}

static void record(struct umodel *m, uint64_t started, const struct umodel_stim *s, uint16_t status)
{
	if (m->n_recs == m->recs_cap)
		return;
	uint8_t *r = m->recs + (size_t)m->n_recs++ * 24;
	put64(r, started);
	put32(r + 8, s->cmd_seq);
	put16(r + 12, s->index);
	put16(r + 14, status);
	put64(r + 16, s->requested_sample);
}

/* The waiting records go out, as many SR packets as they need. */
static void flush_records(struct umodel *m)
{
	uint32_t k = 0;
	while (k < m->n_recs) {
		uint32_t n = m->n_recs - k < m->sr_max ? m->n_recs - k : m->sr_max;
		struct msg *g = push(m, false);
		if (!g)
			break;
		put16(g->buf, 0x5253);
		put16(g->buf + 2, (uint16_t)n);
		put32(g->buf + 4, m->report_seq++);
		memcpy(g->buf + 8, m->recs + (size_t)k * 24, (size_t)n * 24);
		g->len = 8 + 24 * n;
		k += n;
		m->counts.reports++;
		m->counts.records += n;
	}
	m->n_recs = 0;
}

/* Outputs off at device sample `now`: what had started is reported as
 * started, the rest dropped; the queue is empty after. */
static void cancel(struct umodel *m, uint64_t now, bool send)
{
	for (uint32_t i = 0; i < m->n_pulses; i++) {
		struct pulse *p = &m->pulses[i];
		struct umodel_stim *s = &m->stims[p->log];
		if (p->start < now) {
			if (!p->reported) {
				s->start_sample = p->start;
				s->status = s->status == UMODEL_QUEUED ? UMODEL_DELIVERED : s->status;
				if (send)
					record(m, p->start, s, s->status);
			}
		} else {
			s->status = UMODEL_DROPPED;
			s->start_sample = 0;
			if (send)
				record(m, 0, s, UMODEL_DROPPED);
		}
	}
	m->n_pulses = 0;
	if (send)
		flush_records(m);
	else
		m->n_recs = 0;
}

static void produce(struct umodel *m)
{
	const uint32_t spp = m->cfg.samples_per_packet, C = m->cfg.channels;
	const uint64_t k = m->produced++, first = k * spp;
	for (uint32_t i = 0; i < m->n_pulses; i++) {
		struct pulse *p = &m->pulses[i];
		if (!p->reported && p->start < first + spp) {
			struct umodel_stim *s = &m->stims[p->log];
			s->start_sample = p->start;
			s->status = s->status == UMODEL_QUEUED ? UMODEL_DELIVERED : s->status;
			record(m, p->start, s, s->status);
			p->reported = true;
		}
	}
	siggen_fill(m->gen, m->uv, spp);
	m->counts.packets++;
	if (m->drop) {
		/* lost on the way: the counter still moves */
		m->drop--;
		m->counts.packets_dropped++;
	} else {
		pump(m);
		struct msg *g = push(m, true);
		if (!g) {
			/* the FIFO is full: lost inside the device */
			m->flags_pending |= 1;
			m->counts.packets_overrun++;
		} else {
			put16(g->buf, 0x5053);
			put16(g->buf + 2, m->flags_pending);
			m->flags_pending = 0;
			put32(g->buf + 4, (uint32_t)k);
			put64(g->buf + 8, first);
			double per_count = m->cfg.nv_per_count / 1000.0;
			for (size_t i = 0; i < (size_t)spp * C; i++) {
				double c = m->uv[i] / per_count;
				c = c > 32767 ? 32767 : c < -32768 ? -32768 : c;
				put16(g->buf + 16 + 2 * i, (uint16_t)(int16_t)(c >= 0 ? c + 0.5 : c - 0.5));
			}
			g->len = (uint32_t)m->sp_bytes;
		}
	}
	flush_records(m);
}

static uint64_t wd_samples(const struct umodel *m)
{
	return (uint64_t)m->wd_ms * m->cfg.rate_hz / 1000;
}

/* Everything due by the device's clock now, in order. */
static void advance(struct umodel *m)
{
	if (!m->streaming || !m->plugged)
		return;
	const uint64_t now = dev_now(m);
	for (;;) {
		uint64_t ready = (m->produced + 1) * m->cfg.samples_per_packet;
		uint64_t fire = m->wd_ms && !m->wd_tripped ? m->wd_last_out + wd_samples(m) + 1 : UINT64_MAX;
		if (fire <= now && fire <= ready) {
			m->wd_tripped = true;
			m->counts.watchdog_fired++;
			m->counts.watchdog_sample = fire;
			m->flags_pending |= 2;
			cancel(m, fire, true);
		} else if (ready <= now) {
			produce(m);
		} else {
			break;
		}
	}
	pump(m);
}

/* Packets of an earlier stream never reach the host after START, unless
 * the device is told to keep its newest few (one that does not cancel what
 * it had queued). */
static void flush_queue(struct umodel *m)
{
	if (m->keep_stale >= m->q_n)
		return;
	m->q_head = (m->q_head + m->q_n - m->keep_stale) % MAX_QUEUE;
	m->q_n = m->keep_stale;
	m->q_sp = 0;
	for (uint32_t i = 0; i < m->q_n; i++)
		m->q_sp += m->q[(m->q_head + i) % MAX_QUEUE].sp;
}

static void start_stream(struct umodel *m)
{
	m->streaming = true;
	m->start_world = m->world;
	m->start_ns = mead_now_ns();
	if (!m->stream_start_ns)
		m->stream_start_ns = m->start_ns;
	m->produced = 0;
	m->report_seq = 0;
	m->flags_pending = 0;
	flush_queue(m);
	m->keep_stale = 0;
	m->n_recs = 0;
	m->n_pulses = 0;
	m->wd_last_out = 0;
	m->wd_tripped = false;
	m->counts.out_gap_max = 0;
	m->counts.starts++;
	m->counts.gen_at_start = m->gen ? siggen_position(m->gen) : 0;
}

static void end_stream(struct umodel *m)
{
	if (!m->streaming)
		return;
	advance(m);
	m->frozen_sample = dev_now(m);
	m->frozen_us = dev_us(m);
	cancel(m, m->frozen_sample, false);
	m->streaming = false;
	flush_queue(m);
}

static uint16_t stimulator_of(const struct umodel *m, uint16_t electrode)
{
	return m->cfg.stimulators > 1 ? (uint16_t)(electrode % m->cfg.stimulators) : 0;
}

/* A pulse arriving at device sample `now`: queued, or refused at once. */
static void offer(struct umodel *m, struct umodel_stim *s, uint16_t flags, uint32_t log)
{
	const uint64_t now = s->received_at;
	uint32_t mag = s->amplitude_na < 0 ? (uint32_t)-(int64_t)s->amplitude_na : (uint32_t)s->amplitude_na;
	uint16_t status;
	uint64_t b = s->requested_sample < now ? now : s->requested_sample;
	uint64_t e = b + busy(m, s->phase_us, s->interphase_us);
	uint16_t stim = stimulator_of(m, s->electrode);
	if (s->electrode >= m->cfg.channels || flags != 0 || mag == 0 || mag > MAX_NA || s->phase_us == 0 ||
	    s->phase_us > MAX_PHASE_US || s->interphase_us > MAX_INTERPHASE_US ||
	    (s->requested_sample > now && s->requested_sample - now > (uint64_t)MAX_LEAD_S * m->cfg.rate_hz)) {
		status = UMODEL_RANGE;
	} else {
		status = s->requested_sample < now ? UMODEL_LATE : UMODEL_QUEUED;
		for (uint32_t i = 0; i < m->n_pulses; i++)
			if (m->pulses[i].stimulator == stim && b < m->pulses[i].end && m->pulses[i].start < e)
				status = UMODEL_OVERLAP;
		if (status != UMODEL_OVERLAP) {
			uint32_t k = 0;
			for (uint32_t i = 0; i < m->n_pulses; i++)
				if (!(m->pulses[i].reported && m->pulses[i].end <= now))
					m->pulses[k++] = m->pulses[i];
			m->n_pulses = k;
			if (m->n_pulses >= m->cfg.stim_queue)
				status = UMODEL_QUEUE_FULL;
		}
	}
	s->status = status;
	if (status != UMODEL_QUEUED && status != UMODEL_LATE) {
		record(m, 0, s, status);
		return;
	}
	uint32_t at = m->n_pulses;
	while (at > 0 && m->pulses[at - 1].start > b)
		at--;
	memmove(&m->pulses[at + 1], &m->pulses[at], (m->n_pulses - at) * sizeof(m->pulses[0]));
	m->pulses[at] = (struct pulse){ .start = b, .end = e, .log = log, .stimulator = stim };
	m->n_pulses++;
}

/* Commands on bulk OUT; any of them feeds the watchdog. */
static void command(struct umodel *m, const uint8_t *b, int len)
{
	advance(m);
	uint64_t now = dev_now(m);
	uint64_t done = m->produced * m->cfg.samples_per_packet;
	if (now < done)
		now = done;
	if (m->streaming) {
		if (now - m->wd_last_out > m->counts.out_gap_max)
			m->counts.out_gap_max = now - m->wd_last_out;
		m->wd_last_out = now;
		m->wd_tripped = false;
	}
	int off = 0;
	while (off + 8 <= len) {
		const uint8_t *c = b + off;
		uint16_t magic = get16(c), n = get16(c + 2);
		uint32_t seq = get32(c + 4);
		if (magic == 0x4353 && n > 0 && n <= (m->cfg.max_pulses) && off + 8 + 24 * n <= len) {
			m->counts.sc++;
			for (uint16_t i = 0; i < n && m->streaming && m->n_stims < MAX_STIMS; i++) {
				const uint8_t *p = c + 8 + 24 * i;
				uint32_t log = m->n_stims++;
				struct umodel_stim *s = &m->stims[log];
				*s = (struct umodel_stim){
					.requested_sample = get64(p), .received_at = now, .electrode = get16(p + 8),
					.amplitude_na = (int32_t)get32(p + 12), .phase_us = get32(p + 16),
					.interphase_us = get32(p + 20), .cmd_seq = seq, .index = i, .t_ns = mead_now_ns(),
				};
				offer(m, s, get16(p + 10), log);
			}
			off += 8 + 24 * n;
		} else if (magic == 0x5853) {
			m->counts.sx++;
			if (m->streaming)
				cancel(m, now, true);
			off += 8;
		} else if (magic == 0x4B53) {
			m->counts.sk++;
			m->counts.sk_last = seq;
			off += 8;
		} else {
			m->counts.malformed++;
			break;
		}
	}
	if (off < len && off + 8 > len)
		m->counts.malformed++;
	flush_records(m);
	pump(m);
}

/* Control transfer: setup packet then data. */
static int control(struct umodel *m, uint8_t *b, int len)
{
	if (len < 8)
		return -EINVAL;
	uint8_t type = b[0], req = b[1];
	uint16_t value = get16(b + 2), wlen = get16(b + 6);
	uint8_t *d = b + 8;
	advance(m);
	if (type == 0xC1 && req == 0x01) {
		uint8_t info[64] = { 0 };
		put32(info, 0x3141454D);               /* "MEA1" */
		put16(info + 4, m->cfg.version);
		put16(info + 6, m->cfg.channels);
		put32(info + 8, m->cfg.rate_hz);
		put32(info + 12, m->cfg.nv_per_count);
		put16(info + 16, m->cfg.samples_per_packet);
		put16(info + 18, info_flags(m));
		put32(info + 20, MAX_NA);
		put32(info + 24, MAX_PHASE_US);
		put16(info + 28, m->cfg.max_pulses);
		put16(info + 30, m->cfg.stimulators);
		memcpy(info + 32, "MODEL-0001", 10);
		memcpy(info + 48, "mead usb model", 14);
		int n = wlen < 64 ? wlen : 64;
		memcpy(d, info, (size_t)n);
		return n;
	}
	if (type == 0x41 && req == 0x02) {
		end_stream(m);
		start_stream(m);
		return 0;
	}
	if (type == 0x41 && req == 0x03) {
		end_stream(m);
		m->counts.stops++;
		return 0;
	}
	if (type == 0xC1 && req == 0x04) {
		if (wlen < 16)
			return -EPIPE;
		put64(d, dev_now(m));
		put64(d + 8, dev_us(m));
		return 16;
	}
	if (type == 0x41 && req == 0x05 && (info_flags(m) & 4)) {
		m->wd_ms = value;
		m->wd_last_out = dev_now(m);
		m->wd_tripped = false;
		m->counts.set_watchdog++;
		m->counts.watchdog_ms = value;
		return 0;
	}
	if (type == 0xC1 && req == 0x06 && m->cfg.stimulators > 1) {
		int n = 0;
		for (uint16_t c = 0; c < m->cfg.channels && n + 2 <= wlen; c++, n += 2)
			put16(d + n, stimulator_of(m, c));
		return n;
	}
	return -EPIPE; /* stall */
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

/* The client's URB completed first, or -1. */
static int reapable(struct umodel *m, UMockdevIoctlClient *client)
{
	int best = -1;
	for (uint32_t i = 0; i < m->n_urbs; i++)
		if (m->urbs[i].client == client && m->urbs[i].done &&
		    (best < 0 || m->urbs[i].done < m->urbs[best].done))
			best = (int)i;
	return best;
}

static void run_out(struct umodel *m, struct urb *u)
{
	if (u->buf)
		command(m, u->buf->data, U(u)->buffer_length);
	complete(m, u, 0, U(u)->buffer_length);
}

static int submit(struct umodel *m, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
	UMockdevIoctlData *d = u_res(arg, 0, sizeof(struct usbdevfs_urb));
	struct usbdevfs_urb *u = (struct usbdevfs_urb *)d->data;
	bool in = u->endpoint & 0x80;
	if (m->n_urbs >= MAX_URBS) {
		g_object_unref(d);
		return ENOMEM;
	}
	if (u->type == USBDEVFS_URB_TYPE_BULK && m->owner != client) {
		/* usbfs claims the interface for the first user; another has it */
		g_object_unref(d);
		return EBUSY;
	}
	if (u->type == USBDEVFS_URB_TYPE_BULK &&
	    !(in ? u->endpoint == m->cfg.ep_in : u->endpoint == m->cfg.ep_out)) {
		/* usbfs knows the active configuration's endpoints */
		g_object_unref(d);
		return ENOENT;
	}
	if (u->type == USBDEVFS_URB_TYPE_BULK && !in && m->refuse_out) {
		m->refuse_out--;
		g_object_unref(d);
		return ENOMEM;
	}
	UMockdevIoctlData *b = u->buffer_length > 0 ? u_res(d, offsetof(struct usbdevfs_urb, buffer), (size_t)u->buffer_length) : NULL;
	struct urb *e = &m->urbs[m->n_urbs++];
	*e = (struct urb){ .client = client, .urb = d, .buf = b, .order = ++m->next_order };
	if (u->type == USBDEVFS_URB_TYPE_CONTROL) {
		int n = b ? control(m, b->data, u->buffer_length) : -EINVAL;
		complete(m, e, n < 0 ? n : 0, n < 0 ? 0 : n);
	} else if (u->type == USBDEVFS_URB_TYPE_BULK && !in) {
		if (m->halted_out)
			complete(m, e, -EPIPE, 0);
		else if (!m->hold_out)
			run_out(m, e);
	} else {
		advance(m);
		pump(m);
	}
	return 0;
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
	case USBDEVFS_CLEAR_HALT: {
		UMockdevIoctlData *d = u_res(arg, 0, sizeof(unsigned int));
		unsigned int ep = 0;
		memcpy(&ep, d->data, sizeof(ep));
		g_object_unref(d);
		if (ep == m->cfg.ep_in && m->halted) {
			m->halted = false;
			m->counts.clear_halts++;
		} else if (ep == m->cfg.ep_out && m->halted_out) {
			m->halted_out = false;
			m->counts.clear_halts++;
		} else if (ep != m->cfg.ep_in && ep != m->cfg.ep_out) {
			ret = -1;
			err = ENOENT;
			break;
		}
		advance(m);
		pump(m);
		break;
	}
	case USBDEVFS_CLAIMINTERFACE:
		if (m->owner && m->owner != client) {
			ret = -1;
			err = EBUSY;
		} else {
			m->owner = client;
		}
		break;
	case USBDEVFS_RELEASEINTERFACE:
		if (m->owner == client)
			m->owner = NULL;
		break;
	case USBDEVFS_SETINTERFACE:
	case USBDEVFS_RESETEP:
	case USBDEVFS_RESET:
	case USBDEVFS_SETCONFIGURATION:
		break;
	case USBDEVFS_GETDRIVER:
	case USBDEVFS_IOCTL:
		ret = -1;
		err = ENODATA;
		break;
	case USBDEVFS_SUBMITURB:
		err = submit(m, client, arg);
		ret = err ? -1 : 0;
		break;
	case USBDEVFS_DISCARDURB: {
		unsigned long addr = *(unsigned long *)arg->data;
		ret = -1;
		err = EINVAL;
		for (uint32_t i = 0; i < m->n_urbs; i++)
			if (m->urbs[i].client == client && m->urbs[i].urb->client_addr == addr && !m->urbs[i].done) {
				complete(m, &m->urbs[i], -ENOENT, 0);
				ret = 0;
				err = 0;
				break;
			}
		break;
	}
	case USBDEVFS_REAPURB:
	case USBDEVFS_REAPURBNDELAY: {
		advance(m);
		int i = reapable(m, client);
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
	m->counts.opens++;
	g_mutex_unlock(&m->lock);
}

static void on_vanished(UMockdevIoctlBase *base, UMockdevIoctlClient *client, gpointer user)
{
	struct umodel *m = user;
	g_mutex_lock(&m->lock);
	/* a closed file descriptor takes its URBs and its claim with it */
	for (uint32_t i = 0; i < m->n_urbs;) {
		if (m->urbs[i].client == client)
			drop_urb(m, i);
		else
			i++;
	}
	if (m->owner == client)
		m->owner = NULL;
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
	struct umodel_config *c = &m->cfg;
	c->ep_in = c->ep_in ? c->ep_in : 0x81;
	c->ep_out = c->ep_out ? c->ep_out : 0x02;
	c->version = c->version ? c->version : 2;
	c->max_pulses = c->max_pulses ? c->max_pulses : 16;
	c->stim_queue = c->stim_queue ? c->stim_queue : 64;
	if (c->stim_queue > MAX_QUEUE)
		c->stim_queue = MAX_QUEUE;
	c->fifo_packets = c->fifo_packets ? c->fifo_packets : 64;
	if (c->fifo_packets > MAX_QUEUE / 2)
		c->fifo_packets = MAX_QUEUE / 2;
	c->max_packet = c->max_packet ? c->max_packet : 512;
	m->gen = gen;
	m->plugged = true;
	m->sp_bytes = 16 + (size_t)c->samples_per_packet * c->channels * 2;
	m->sr_max = (uint32_t)((m->sp_bytes - 8) / 24);
	m->recs_cap = 4 * MAX_QUEUE;
	m->recs = calloc(m->recs_cap, 24);
	m->uv = calloc((size_t)c->samples_per_packet * c->channels, sizeof(float));
	for (uint32_t i = 0; i < MAX_QUEUE; i++)
		m->q[i].buf = calloc(1, m->sp_bytes < 64 ? 64 : m->sp_bytes);
	g_mutex_init(&m->lock);
	const uint8_t mps_lo = (uint8_t)c->max_packet, mps_hi = (uint8_t)(c->max_packet >> 8);
	const uint8_t desc[] = {
		/* device: USB 2.0, vendor class, ep0 64 bytes, one configuration */
		0x12, 0x01, 0x00, 0x02, 0xff, 0x00, 0x00, 0x40, (uint8_t)c->vid, (uint8_t)(c->vid >> 8),
		(uint8_t)c->pid, (uint8_t)(c->pid >> 8), 0x00, 0x02, 0x00, 0x00, 0x00, 0x01,
		/* configuration 1: one interface, bus powered */
		0x09, 0x02, 0x20, 0x00, 0x01, 0x01, 0x00, 0x80, 0x32,
		/* interface 0: vendor class, two endpoints */
		0x09, 0x04, 0x00, 0x00, 0x02, 0xff, 0x00, 0x00, 0x00,
		/* bulk IN and bulk OUT, numbered as the device controller chose */
		0x07, 0x05, c->ep_in, 0x02, mps_lo, mps_hi, 0x00,
		0x07, 0x05, c->ep_out, 0x02, mps_lo, mps_hi, 0x00,
	};
	char *h = hex(desc, sizeof(desc));
	unsigned dn = c->devnum ? c->devnum : 2;
	char *rec = g_strdup_printf(
		"P: /devices/pci0000:00/0000:00:14.0/usb1/1-%u\n"
		"N: bus/usb/001/%03u\n"
		"E: DEVNAME=/dev/bus/usb/001/%03u\nE: DEVTYPE=usb_device\nE: DRIVER=usb\nE: SUBSYSTEM=usb\n"
		"E: BUSNUM=001\nE: DEVNUM=%03u\nE: PRODUCT=%x/%x/200\n"
		"A: busnum=1\nA: devnum=%u\nA: speed=480\nA: bConfigurationValue=1\nA: bNumConfigurations=1\n"
		"A: idVendor=%04x\nA: idProduct=%04x\nA: devpath=%u\n"
		"H: descriptors=%s\n\n",
		dn - 1, dn, dn, dn, c->vid, c->pid, dn, c->vid, c->pid, dn - 1, h);
	snprintf(m->devnode, sizeof(m->devnode), "/dev/bus/usb/001/%03u", dn);
	g_free(h);
	GError *e = NULL;
	if (!m->recs || !m->uv || !umockdev_testbed_add_from_string(tb, rec, &e)) {
		snprintf(err, err_len, "add usb device: %s", e ? e->message : "no memory");
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
	for (uint32_t i = 0; i < MAX_QUEUE; i++)
		free(m->q[i].buf);
	free(m->recs);
	free(m->uv);
	g_mutex_clear(&m->lock);
	free(m);
}

void umodel_set_gen(struct umodel *m, struct siggen *gen)
{
	g_mutex_lock(&m->lock);
	m->gen = gen;
	g_mutex_unlock(&m->lock);
}

void umodel_set_clock(struct umodel *m, uint64_t samples)
{
	g_mutex_lock(&m->lock);
	m->world = samples;
	advance(m);
	g_mutex_unlock(&m->lock);
}

uint64_t umodel_world(struct umodel *m)
{
	g_mutex_lock(&m->lock);
	uint64_t w = m->world;
	g_mutex_unlock(&m->lock);
	return w;
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
	uint64_t c = dev_now(m);
	g_mutex_unlock(&m->lock);
	return c;
}

void umodel_start(struct umodel *m)
{
	g_mutex_lock(&m->lock);
	end_stream(m);
	start_stream(m);
	g_mutex_unlock(&m->lock);
}

void umodel_phantom_reader(struct umodel *m, bool on)
{
	g_mutex_lock(&m->lock);
	m->phantom = on;
	g_mutex_unlock(&m->lock);
}

void umodel_keep_stale(struct umodel *m, uint32_t n)
{
	g_mutex_lock(&m->lock);
	m->keep_stale = n;
	g_mutex_unlock(&m->lock);
}

void umodel_unplug(struct umodel *m)
{
	g_mutex_lock(&m->lock);
	end_stream(m);
	m->plugged = false;
	m->halted = m->halted_out = false;
	/* the interface goes with the device, and its claim */
	m->owner = NULL;
	/* the host controller gives back every URB in flight: as shut down,
	 * or (seen with dummy_hcd) as failed transactions */
	for (uint32_t i = 0; i < m->n_urbs; i++)
		if (!m->urbs[i].done)
			complete(m, &m->urbs[i], m->unplug_errors ? -EPROTO : -ESHUTDOWN, 0);
	g_mutex_unlock(&m->lock);
}

void umodel_unplug_errors(struct umodel *m, bool on)
{
	g_mutex_lock(&m->lock);
	m->unplug_errors = on;
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

void umodel_fail_in(struct umodel *m, uint32_t n, int err)
{
	g_mutex_lock(&m->lock);
	m->fail_in = n;
	m->fail_err = err;
	g_mutex_unlock(&m->lock);
}

void umodel_stall_in(struct umodel *m)
{
	g_mutex_lock(&m->lock);
	advance(m);
	m->halted = true;
	m->counts.stalls++;
	pump(m);
	g_mutex_unlock(&m->lock);
}

void umodel_stall_out(struct umodel *m)
{
	g_mutex_lock(&m->lock);
	m->halted_out = true;
	m->counts.stalls++;
	g_mutex_unlock(&m->lock);
}

void umodel_hold_out(struct umodel *m, bool hold)
{
	g_mutex_lock(&m->lock);
	m->hold_out = hold;
	while (!hold) {
		struct urb *first = NULL;
		for (uint32_t i = 0; i < m->n_urbs; i++) {
			struct urb *u = &m->urbs[i];
			if (!u->done && U(u)->type == USBDEVFS_URB_TYPE_BULK && !(U(u)->endpoint & 0x80) &&
			    (!first || u->order < first->order))
				first = u;
		}
		if (!first)
			break;
		run_out(m, first);
	}
	g_mutex_unlock(&m->lock);
}

void umodel_refuse_out(struct umodel *m, uint32_t n)
{
	g_mutex_lock(&m->lock);
	m->refuse_out = n;
	g_mutex_unlock(&m->lock);
}

uint32_t umodel_stims(struct umodel *m, struct umodel_stim *out, uint32_t cap)
{
	g_mutex_lock(&m->lock);
	advance(m);
	uint32_t n = m->n_stims < cap ? m->n_stims : cap;
	memcpy(out, m->stims + (m->n_stims - n), n * sizeof(*out));
	g_mutex_unlock(&m->lock);
	return n;
}

void umodel_counts(struct umodel *m, struct umodel_counts *out)
{
	g_mutex_lock(&m->lock);
	advance(m);
	*out = m->counts;
	g_mutex_unlock(&m->lock);
}

uint64_t umodel_stream_start_ns(struct umodel *m)
{
	g_mutex_lock(&m->lock);
	uint64_t t = m->stream_start_ns;
	g_mutex_unlock(&m->lock);
	return t;
}
