/* SPDX-License-Identifier: MIT */
/*
 * Commands out, reports in.  A pulse handed to the device is pending until
 * the device's report (SR) says when it started or why it did not; reports
 * that never come (the device went away, a report was lost) settle it as
 * unknown, never as delivered.  The keepalive keeps the device's host
 * watchdog fed while the loop runs and sends nothing else.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lib/core/usbproto.h"
#include "drivers/usb/usb.h"
#include "lib/core/time.h"

static void settle(struct usb_state *st, uint32_t i, uint16_t status, uint16_t reason, uint64_t sample)
{
	struct pend *p = &st->pend[i];
	if (p->wd_watch && st->wd_open && st->wd_left)
		st->wd_left--;
	/* write_stim keeps pending + settled within done_cap */
	st->done[(st->done_head + st->done_n++) % st->done_cap] = (struct mead_stim_result){
		.pulse = p->pulse, .sample = sample, .status = status, .reason = reason,
	};
	st->pend[i] = st->pend[--st->n_pend];
}

static void refuse(struct usb_state *st, uint32_t i, uint16_t reason)
{
	if (reason == MEAD_STIM_REASON_UNKNOWN)
		atomic_fetch_add(&st->pulses_unknown, 1);
	else if (reason == MEAD_STIM_REASON_IO)
		atomic_fetch_add(&st->pulses_refused_here, 1);
	else
		atomic_fetch_add(&st->pulses_refused_device, 1);
	settle(st, i, MEAD_STIM_REFUSED, reason, 0);
}

/* Spike detection off around a pulse's artifact. */
static void blank(struct usb_state *st, uint16_t electrode, uint64_t sample)
{
	if (st->blank_all)
		mead_sig_blank_pulse(st->sig, UINT32_MAX, sample);
	else if (electrode < st->electrodes)
		mead_sig_blank_pulse(st->sig, electrode, sample);
}

static void close_watchdog(struct usb_state *st)
{
	if (!st->wd_open)
		return;
	usb_push_event(st, MEAD_EVENT_STIM_LOST, st->wd_sample, 0, (int32_t)st->wd_dropped);
	st->wd_open = false;
	for (uint32_t i = 0; i < st->n_pend; i++)
		st->pend[i].wd_watch = false;
}

void usb_stim_settle_all(struct usb_state *st, uint16_t reason)
{
	while (st->n_pend)
		refuse(st, st->n_pend - 1, reason);
	close_watchdog(st);
}

/*
 * The device's watchdog fired (SP flag bit 1) near loop sample `sample`.
 * What it dropped comes as DROPPED reports, just before or soon after
 * this packet: the event waits until every pulse pending now has its
 * report.
 */
void usb_stim_watchdog(struct usb_state *st, uint64_t sample)
{
	atomic_fetch_add(&st->watchdog_fired, 1);
	close_watchdog(st);
	st->wd_open = true;
	st->wd_sample = sample;
	st->wd_dropped = st->drops_since_sp;
	st->wd_left = st->n_pend;
	st->wd_deadline = st->head + st->report_timeout;
	for (uint32_t i = 0; i < st->n_pend; i++)
		st->pend[i].wd_watch = true;
	if (st->wd_left == 0)
		close_watchdog(st);
}

/* The device's refusals, by SR status. */
static const uint16_t refusal[] = {
	[MEAD_USB_ST_OVERLAP] = MEAD_STIM_REASON_BUSY,
	[MEAD_USB_ST_RANGE] = MEAD_STIM_REASON_RANGE,
	[MEAD_USB_ST_DROPPED] = MEAD_STIM_REASON_CANCELLED,
	[MEAD_USB_ST_QUEUE_FULL] = MEAD_STIM_REASON_QUEUE_FULL,
};

void usb_stim_report(struct usb_state *st, const uint8_t *b, int len)
{
	if (len < MEAD_USB_SR_HEADER) {
		atomic_fetch_add(&st->malformed, 1);
		return;
	}
	uint32_t n = mead_usb_get16(b + 2), rseq = mead_usb_get32(b + 4);
	if ((size_t)len < MEAD_USB_SR_HEADER + (size_t)n * MEAD_USB_SR_RECORD) {
		atomic_fetch_add(&st->malformed, 1);
		n = (uint32_t)(len - MEAD_USB_SR_HEADER) / MEAD_USB_SR_RECORD;
	}
	if (st->have_rseq && rseq != st->last_rseq + 1)
		atomic_fetch_add(&st->reports_lost, rseq - st->last_rseq - 1);
	st->have_rseq = true;
	st->last_rseq = rseq;
	atomic_fetch_add(&st->reports, 1);
	for (uint32_t k = 0; k < n; k++) {
		const uint8_t *r = b + MEAD_USB_SR_HEADER + (size_t)k * MEAD_USB_SR_RECORD;
		uint64_t started = mead_usb_get64(r);
		uint32_t seq = mead_usb_get32(r + 8);
		uint16_t index = mead_usb_get16(r + 12), status = mead_usb_get16(r + 14);
		if (status == MEAD_USB_ST_DROPPED)
			st->drops_since_sp++;
		uint32_t i = 0;
		while (i < st->n_pend && (st->pend[i].cmd_seq != seq || st->pend[i].index != index))
			i++;
		if (i == st->n_pend) {
			atomic_fetch_add(&st->reports_unmatched, 1);
			continue;
		}
		if (st->pend[i].wd_watch && st->wd_open && status == MEAD_USB_ST_DROPPED)
			st->wd_dropped++;
		switch (status) {
		case MEAD_USB_ST_DELIVERED:
		case MEAD_USB_ST_LATE: {
			int64_t s = (int64_t)started + st->offset;
			uint64_t at = s > 0 ? (uint64_t)s : 0;
			const struct mead_stim_pulse *p = &st->pend[i].pulse;
			atomic_fetch_add(&st->pulses_delivered, 1);
			if (at > p->sample)
				atomic_fetch_add(&st->pulses_late, 1);
			/* write_stim blanked the asked-for sample; a late start
			 * moves the artifact, blanked too if not read yet */
			if (at != p->sample && at >= st->acq)
				blank(st, p->electrode, at);
			settle(st, i, MEAD_STIM_DELIVERED, MEAD_STIM_REASON_NONE, at);
			break;
		}
		default:
			refuse(st, i, status < sizeof(refusal) / sizeof(refusal[0]) && refusal[status] ?
				   refusal[status] : MEAD_STIM_REASON_UNKNOWN);
			break;
		}
	}
	if (st->wd_open && st->wd_left == 0)
		close_watchdog(st);
}

static void LIBUSB_CALL out_cb(struct libusb_transfer *x)
{
	struct out_xfer *o = x->user_data;
	struct usb_state *st = o->st;
	bool failed = false;
	switch (x->status) {
	case LIBUSB_TRANSFER_COMPLETED:
		failed = x->actual_length != x->length;
		break;
	case LIBUSB_TRANSFER_NO_DEVICE:
		/* it may have arrived: its pulses settle as unknown */
		usb_mark_gone(st);
		break;
	case LIBUSB_TRANSFER_CANCELLED:
		break;
	case LIBUSB_TRANSFER_STALL:
		atomic_fetch_add(&st->out_stalls, 1);
		atomic_store(&st->out_halted, true);
		failed = true;
		break;
	default:
		/* it may have arrived (an unplug ends transfers so too): its
		 * pulses wait for their reports, or settle as unknown */
		atomic_fetch_add(&st->xfer_errors, 1);
		break;
	}
	if (failed && o->magic == MEAD_USB_SC_MAGIC) {
		/* the device never took the command */
		for (uint32_t i = 0; i < st->n_pend;) {
			if (st->pend[i].cmd_seq == o->cmd_seq)
				refuse(st, i, MEAD_STIM_REASON_IO);
			else
				i++;
		}
	}
	atomic_store(&o->busy, false);
}

static int alloc_out(struct usb_state *st, struct out_xfer *o, size_t bytes)
{
	o->st = st;
	atomic_init(&o->busy, false);
	o->x = usb_transfer_new(bytes);
	if (!o->x)
		return -ENOMEM;
	/* a command of whole USB packets would otherwise wait in a device
	 * that reads larger buffers until the next one came */
	o->x->flags = LIBUSB_TRANSFER_ADD_ZERO_PACKET;
	return 0;
}

int usb_stim_alloc(struct usb_state *st)
{
	uint32_t maxp = st->info.max_pulses ? st->info.max_pulses : 1;
	st->pend_cap = maxp * 64u < 256u ? 256u : maxp * 64u;
	st->done_cap = st->pend_cap;
	st->pend = calloc(st->pend_cap, sizeof(*st->pend));
	st->done = calloc(st->done_cap, sizeof(*st->done));
	if (!st->pend || !st->done)
		return -ENOMEM;
	for (int i = 0; i < N_OUT; i++)
		if (alloc_out(st, &st->out[i], MEAD_USB_CMD_HEADER + (size_t)MEAD_USB_PULSE_BYTES * maxp) < 0)
			return -ENOMEM;
	if (alloc_out(st, &st->sx, MEAD_USB_CMD_HEADER) < 0 || alloc_out(st, &st->sk, MEAD_USB_CMD_HEADER) < 0)
		return -ENOMEM;
	st->ctl = usb_transfer_new(LIBUSB_CONTROL_SETUP_SIZE);
	atomic_init(&st->ctl_busy, false);
	return st->ctl ? 0 : -ENOMEM;
}

void usb_stim_free(struct usb_state *st)
{
	for (int i = 0; i < N_OUT; i++)
		usb_transfer_free(st->out[i].x);
	usb_transfer_free(st->sx.x);
	usb_transfer_free(st->sk.x);
	usb_transfer_free(st->ctl);
	free(st->pend);
	free(st->done);
}

void usb_stim_reset(struct usb_state *st)
{
	st->n_pend = 0;
	st->done_head = st->done_n = 0;
	st->have_rseq = false;
	st->drops_since_sp = 0;
	st->wd_open = false;
	st->wd_arm_pending = false;
	atomic_store(&st->out_halted, false);
	atomic_store(&st->last_out_ns, mead_now_ns());
	atomic_store(&st->last_out_head, 0);
}

bool usb_outputs_idle(struct usb_state *st)
{
	for (int i = 0; i < N_OUT; i++)
		if (atomic_load(&st->out[i].busy))
			return false;
	return !atomic_load(&st->sx.busy) && !atomic_load(&st->sk.busy) && !atomic_load(&st->ctl_busy);
}

/* Every OUT command feeds the device's watchdog.  rt only: head is its. */
static void fed(struct usb_state *st)
{
	atomic_store(&st->last_out_ns, mead_now_ns());
	atomic_store(&st->last_out_head, st->head);
}

static bool enter(struct usb_state *st)
{
	atomic_fetch_add(&st->users, 1);
	if (atomic_load(&st->link) == LINK_LIVE)
		return true;
	atomic_fetch_sub(&st->users, 1);
	return false;
}

static void leave(struct usb_state *st)
{
	atomic_fetch_sub(&st->users, 1);
}

static void LIBUSB_CALL ctl_cb(struct libusb_transfer *x)
{
	struct usb_state *st = x->user_data;
	if (x->status != LIBUSB_TRANSFER_COMPLETED && x->status != LIBUSB_TRANSFER_NO_DEVICE &&
	    x->status != LIBUSB_TRANSFER_CANCELLED)
		st->wd_arm_pending = true;
	atomic_store(&st->ctl_busy, false);
}

/* A reattached device streams with its watchdog off until this: the
 * watcher cannot wait for a control transfer once the loop thread handles
 * the new context's events. */
static void arm_watchdog(struct usb_state *st)
{
	bool expect = false;
	if (!st->wd_arm_pending || !atomic_compare_exchange_strong(&st->ctl_busy, &expect, true))
		return;
	if (!enter(st)) {
		atomic_store(&st->ctl_busy, false);
		return;
	}
	libusb_fill_control_setup(st->ctl->buffer,
				  LIBUSB_ENDPOINT_OUT | LIBUSB_REQUEST_TYPE_VENDOR | LIBUSB_RECIPIENT_INTERFACE,
				  MEAD_USB_REQ_SET_WATCHDOG, (uint16_t)st->watchdog_ms, (uint16_t)st->iface, 0);
	libusb_fill_control_transfer(st->ctl, st->h, st->ctl->buffer, ctl_cb, st, CTRL_TIMEOUT_MS);
	int r = libusb_submit_transfer(st->ctl);
	leave(st);
	if (r < 0) {
		atomic_store(&st->ctl_busy, false);
		return;
	}
	st->wd_arm_pending = false;
	fed(st);
}

/* Sends an 8-byte command (SX, SK) on its own transfer; 1 when one of its
 * kind is still on its way. */
static int short_cmd(struct usb_state *st, struct out_xfer *o, uint16_t magic, uint32_t value)
{
	bool expect = false;
	if (!atomic_compare_exchange_strong(&o->busy, &expect, true))
		return 1;
	if (!enter(st)) {
		atomic_store(&o->busy, false);
		return -ENODEV;
	}
	o->magic = magic;
	mead_usb_put16(o->x->buffer, magic);
	mead_usb_put16(o->x->buffer + 2, 0);
	mead_usb_put32(o->x->buffer + 4, value);
	libusb_fill_bulk_transfer(o->x, st->h, st->ep_out, o->x->buffer, MEAD_USB_CMD_HEADER, out_cb, o, 0);
	int r = libusb_submit_transfer(o->x);
	leave(st);
	if (r < 0) {
		atomic_store(&o->busy, false);
		if (r == LIBUSB_ERROR_NO_DEVICE)
			usb_mark_gone(st);
		return -usb_errno(r);
	}
	return 0;
}

void usb_stim_tick(struct usb_state *st)
{
	for (uint32_t i = 0; i < st->n_pend;) {
		if (st->pend[i].deadline <= st->head)
			refuse(st, i, MEAD_STIM_REASON_UNKNOWN);
		else
			i++;
	}
	if (st->wd_open && (st->wd_left == 0 || st->head >= st->wd_deadline))
		close_watchdog(st);
	if (!st->watchdog_ms)
		return;
	arm_watchdog(st);
	/* fed by the device's clock or the host's, whichever has moved more:
	 * an emulated or stalled stream and a wall clock alike */
	uint64_t now = mead_now_ns();
	if (now - atomic_load(&st->last_out_ns) >= st->keepalive_ns ||
	    st->head - atomic_load(&st->last_out_head) >= st->keepalive_samples) {
		if (short_cmd(st, &st->sk, MEAD_USB_SK_MAGIC, st->sk_counter) == 0) {
			st->sk_counter++;
			atomic_fetch_add(&st->keepalives, 1);
			fed(st);
		}
	}
}

void usb_stim_drain(struct usb_state *st, struct mead_frame *f)
{
	while (st->done_n && f->stim_results && f->n_stim_results < f->stim_result_capacity) {
		f->stim_results[f->n_stim_results++] = st->done[st->done_head];
		st->done_head = (st->done_head + 1) % st->done_cap;
		st->done_n--;
	}
}

int usb_write_stim(void *state, uint64_t tick, const struct mead_stim_pulse *p, uint32_t n,
		   struct mead_stim_result *results)
{
	struct usb_state *st = state;
	(void)tick;
	for (uint32_t i = 0; i < n; i++)
		results[i] = (struct mead_stim_result){ .pulse = p[i], .status = MEAD_STIM_REFUSED,
							.reason = MEAD_STIM_REASON_IO };
	if (n == 0)
		return 0;
	if (!(st->info.flags & MEAD_USB_INFO_CAN_STIMULATE)) {
		for (uint32_t i = 0; i < n; i++)
			results[i].reason = MEAD_STIM_REASON_UNSUPPORTED;
		return -EOPNOTSUPP;
	}
	bool in = enter(st);
	if (!in || !usb_streaming(st)) {
		/* away, or back but not streaming yet: no sample to time it by */
		if (in)
			leave(st);
		for (uint32_t i = 0; i < n; i++)
			results[i].reason = MEAD_STIM_REASON_DEVICE_GONE;
		return -ENODEV;
	}
	uint32_t m = n < st->info.max_pulses ? n : st->info.max_pulses;
	struct out_xfer *o = NULL;
	if (st->n_pend + st->done_n + m <= st->pend_cap) {
		for (int i = 0; i < N_OUT && !o; i++) {
			bool expect = false;
			if (atomic_compare_exchange_strong(&st->out[i].busy, &expect, true))
				o = &st->out[i];
		}
	}
	if (!o) {
		leave(st);
		for (uint32_t i = 0; i < n; i++)
			results[i].reason = MEAD_STIM_REASON_QUEUE_FULL;
		atomic_fetch_add(&st->pulses_refused_here, n);
		return -EBUSY;
	}
	uint8_t *b = o->x->buffer;
	o->magic = MEAD_USB_SC_MAGIC;
	o->cmd_seq = st->cmd_seq++;
	o->n = (uint16_t)m;
	mead_usb_put16(b, MEAD_USB_SC_MAGIC);
	mead_usb_put16(b + 2, (uint16_t)m);
	mead_usb_put32(b + 4, o->cmd_seq);
	for (uint32_t i = 0; i < m; i++) {
		uint8_t *q = b + MEAD_USB_CMD_HEADER + (size_t)i * MEAD_USB_PULSE_BYTES;
		int64_t dev = (int64_t)p[i].sample - st->offset;
		mead_usb_put64(q, dev > 0 ? (uint64_t)dev : 0);
		mead_usb_put16(q + 8, p[i].electrode);
		mead_usb_put16(q + 10, 0);
		mead_usb_put32(q + 12, (uint32_t)(int32_t)lroundf(p[i].amplitude_ua * 1000.0f));
		mead_usb_put32(q + 16, p[i].phase_us);
		mead_usb_put32(q + 20, p[i].interphase_us);
	}
	libusb_fill_bulk_transfer(o->x, st->h, st->ep_out, b, (int)(MEAD_USB_CMD_HEADER + m * MEAD_USB_PULSE_BYTES), out_cb, o, 0);
	int r = libusb_submit_transfer(o->x);
	leave(st);
	if (r < 0) {
		atomic_store(&o->busy, false);
		atomic_fetch_add(&st->pulses_refused_here, n);
		if (r == LIBUSB_ERROR_NO_DEVICE) {
			usb_mark_gone(st);
			for (uint32_t i = 0; i < n; i++)
				results[i].reason = MEAD_STIM_REASON_DEVICE_GONE;
			return -ENODEV;
		}
		return -usb_errno(r);
	}
	fed(st);
	atomic_fetch_add(&st->pulses_sent, m);
	const uint64_t base = st->head;
	for (uint32_t i = 0; i < m; i++) {
		uint64_t from = p[i].sample > base ? p[i].sample : base;
		st->pend[st->n_pend++] = (struct pend){
			.pulse = p[i], .deadline = from + st->report_timeout, .cmd_seq = o->cmd_seq, .index = (uint16_t)i,
		};
		results[i].status = MEAD_STIM_PENDING;
		results[i].reason = MEAD_STIM_REASON_NONE;
		blank(st, p[i].electrode, p[i].sample);
	}
	for (uint32_t i = m; i < n; i++)
		results[i].reason = MEAD_STIM_REASON_QUEUE_FULL;
	if (m < n) {
		atomic_fetch_add(&st->pulses_refused_here, n - m);
		return -E2BIG;
	}
	return 0;
}

int usb_stop_outputs(void *state)
{
	struct usb_state *st = state;
	int r = short_cmd(st, &st->sx, MEAD_USB_SX_MAGIC, 0);
	if (r == 0)
		atomic_store(&st->last_out_ns, mead_now_ns());
	/* a device that is gone drives nothing; one already on its way will do */
	return r == -ENODEV || r == 1 ? 0 : r;
}
