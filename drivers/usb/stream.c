/* SPDX-License-Identifier: MIT */
/*
 * Packets in, frames out.  Every IN transfer carries one packet: a sample
 * packet goes into the ring at its loop samples, a report packet to stim.c.
 * The ring holds every sample from acq (the next one the loop gets) to head
 * (one past the newest received); whatever breaks that run - a counter
 * jump, a failed transfer, the ring itself overrunning - becomes an event
 * with its sample range, and the missing samples read as zeros.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/core/usbproto.h"
#include "drivers/usb/usb.h"
#include "lib/core/time.h"

bool usb_push_event(struct usb_state *st, uint32_t type, uint64_t sample, uint64_t samples, int32_t value)
{
	if (st->evq_n) {
		/* a loss that goes on where the last one ended is one range */
		struct mead_event *last = &st->evq[(st->evq_head + st->evq_n - 1) % EVQ];
		if (last->type == type && last->value == value && samples && last->samples &&
		    last->sample + last->samples == sample && (uint64_t)last->samples + samples <= UINT32_MAX) {
			last->samples += (uint32_t)samples;
			return false;
		}
	}
	if (st->evq_n == EVQ) {
		atomic_fetch_add(&st->events_dropped, 1);
		return false;
	}
	struct mead_event *e = &st->evq[(st->evq_head + st->evq_n++) % EVQ];
	*e = (struct mead_event){
		.sample = sample, .type = type, .value = value,
		.samples = samples > UINT32_MAX ? UINT32_MAX : (uint32_t)samples,
	};
	return true;
}

/* Counted as ranges: one that continues the last is the same loss. */
static bool lose(struct usb_state *st, uint32_t type, uint64_t from, uint64_t to, int32_t value)
{
	bool added = usb_push_event(st, type, from, to - from, value);
	if (type == MEAD_EVENT_GAP) {
		atomic_fetch_add(&st->gaps, added);
		atomic_fetch_add(&st->gap_samples, to - from);
	} else {
		atomic_fetch_add(&st->overflows, added);
		atomic_fetch_add(&st->overflow_samples, to - from);
	}
	return added;
}

static int16_t *row(struct usb_state *st, uint64_t s)
{
	return st->ring + (size_t)(s & (st->ring_scans - 1)) * st->info.channels;
}

static void zero(struct usb_state *st, uint64_t from, uint64_t to)
{
	for (uint64_t s = from; s < to; s++)
		memset(row(st, s), 0, st->info.channels * sizeof(int16_t));
}

static void store_sp(struct usb_state *st, const uint8_t *b, uint32_t n)
{
	const uint32_t C = st->info.channels;
	const uint16_t flags = mead_usb_get16(b + 2);
	const uint32_t seq = mead_usb_get32(b + 4);
	const uint64_t dev_first = mead_usb_get64(b + 8);
	const uint32_t gen = atomic_load(&st->gen);

	if (st->seen_gen != gen) {
		st->seen_gen = gen;
		st->resync_pending = true;
		st->stream_seen = false;
		st->stale = 0;
		st->have_seq = false;
		st->have_rseq = false;
		st->failed = 0;
		st->failed_babble = false;
	}
	if (!st->stream_seen) {
		/* A device may still hold packets of a stream before this
		 * START.  This one's begin with seq 0; one that claims more
		 * packets than the device can have made since START (10 %
		 * and a packet of slack) is older.  So a lost seq 0 costs
		 * nothing but its own samples. */
		if (seq != 0) {
			uint64_t since = mead_now_ns() - atomic_load(&st->start_ns);
			double made = (double)since * 1e-9 * st->info.rate / st->info.spp;
			if ((double)seq > made * 1.1 + 1.0) {
				st->stale++;
				atomic_fetch_add(&st->stale_packets, 1);
				return;
			}
		}
		st->stream_seen = true;
		if (st->resync_pending) {
			/* a restarted device counts from 0 again; its first
			 * packet goes where the loop stands */
			st->offset = (int64_t)st->head - (int64_t)dev_first;
			st->resync_pending = false;
			st->resynced = true;
			st->wd_arm_pending = st->watchdog_ms > 0;
		}
	}
	int64_t lfs = (int64_t)dev_first + st->offset;
	if (lfs < 0) {
		atomic_fetch_add(&st->malformed, 1);
		return;
	}
	st->have_seq = true;
	st->last_seq = seq;
	const uint64_t lf = (uint64_t)lfs, le = lf + n;
	if (flags & MEAD_USB_SP_WATCHDOG)
		usb_stim_watchdog(st, lf);
	st->drops_since_sp = 0;
	if (le <= st->head) {
		/* nothing new: a packet the stream had already moved past */
		atomic_fetch_add(&st->malformed, 1);
		return;
	}

	uint32_t type = MEAD_EVENT_GAP;
	int32_t value = GAP_DEVICE;
	if (flags & MEAD_USB_SP_OVERRUN) {
		type = MEAD_EVENT_OVERFLOW;
		value = OVF_DEVICE;
	} else if (st->failed) {
		type = st->failed_babble ? MEAD_EVENT_OVERFLOW : MEAD_EVENT_GAP;
		value = st->failed_babble ? OVF_BABBLE : GAP_TRANSFER;
	}
	bool flagged = st->failed || (flags & MEAD_USB_SP_OVERRUN);
	st->failed = 0;
	st->failed_babble = false;
	/* Never more than the ring ahead of the loop: the oldest samples
	 * the loop has not taken yet are the ones lost, half a ring of them,
	 * so that a loop that cannot keep up reads fresh samples between
	 * the losses rather than always the oldest. */
	if (le > st->acq + st->ring_scans) {
		uint64_t na = le - st->ring_scans / 2;
		atomic_fetch_add(&st->ring_overruns, lose(st, MEAD_EVENT_OVERFLOW, st->acq, na, OVF_RING));
		st->acq = na;
		if (st->late_upto < na)
			st->late_upto = na;
		if (st->head < na)
			st->head = na;
	}
	if (lf > st->head) {
		lose(st, type, st->head, lf, value);
		zero(st, st->head, lf);
		st->head = lf;
	} else if (flagged) {
		/* the lost transfer held no samples (a report, or nothing):
		 * still said */
		lose(st, type, lf, lf, value);
	}
	const uint8_t *src = b + MEAD_USB_SP_HEADER;
	for (uint64_t s = lf; s < le; s++, src += 2 * C) {
		if (s < st->head)
			continue;
		int16_t *r = row(st, s);
		for (uint32_t c = 0; c < C; c++)
			r[c] = (int16_t)mead_usb_get16(src + 2 * c);
	}
	st->head = le;
}

static void handle_packet(struct usb_state *st, const uint8_t *b, int len)
{
	if (len == 0)
		return; /* the zero-length packet ending a packet of whole USB packets */
	const uint32_t C = st->info.channels;
	uint16_t magic = len >= 2 ? mead_usb_get16(b) : 0;
	if (magic == MEAD_USB_SP_MAGIC && len >= MEAD_USB_SP_HEADER && (len - MEAD_USB_SP_HEADER) % (2 * C) == 0) {
		uint32_t n = (uint32_t)(len - MEAD_USB_SP_HEADER) / (2 * C);
		if (n > 0 && n <= st->info.spp) {
			store_sp(st, b, n);
			return;
		}
	} else if (magic == MEAD_USB_SR_MAGIC) {
		usb_stim_report(st, b, len);
		return;
	}
	/* what could not be read is lost like a failed transfer */
	atomic_fetch_add(&st->malformed, 1);
	st->failed++;
}

static void LIBUSB_CALL in_cb(struct libusb_transfer *x)
{
	struct in_xfer *ix = x->user_data;
	struct usb_state *st = ix->st;
	st->completions++;
	switch (x->status) {
	case LIBUSB_TRANSFER_COMPLETED:
		st->fail_run = 0;
		handle_packet(st, x->buffer, x->actual_length);
		break;
	case LIBUSB_TRANSFER_STALL:
		/* Resubmitting into a halted endpoint only stalls again: the
		 * transfer waits for the watcher to clear the halt. */
		atomic_fetch_add(&st->stalls, 1);
		if (!st->stall_open) {
			st->stall_open = true;
			st->stall_sample = st->head;
		}
		atomic_store(&ix->state, IN_PARKED);
		atomic_fetch_add(&st->parked, 1);
		atomic_fetch_sub(&st->inflight, 1);
		return;
	case LIBUSB_TRANSFER_NO_DEVICE:
		usb_mark_gone(st);
		break;
	case LIBUSB_TRANSFER_CANCELLED:
		break;
	case LIBUSB_TRANSFER_OVERFLOW:
		atomic_fetch_add(&st->babbles, 1);
		st->failed++;
		st->failed_babble = true;
		st->fail_run++;
		break;
	default:
		atomic_fetch_add(&st->xfer_errors, 1);
		st->failed++;
		st->fail_run++;
		break;
	}
	if (x->status != LIBUSB_TRANSFER_CANCELLED && atomic_load(&st->link) == LINK_LIVE) {
		if (st->fail_run >= FAIL_LIMIT) {
			/* a device that fails every transfer is reset by the
			 * watcher rather than fed transfers forever */
			usb_mark_gone(st);
		} else {
			int r = libusb_submit_transfer(x);
			if (r == 0)
				return;
			if (r == LIBUSB_ERROR_NO_DEVICE)
				usb_mark_gone(st);
			else
				atomic_fetch_add(&st->xfer_errors, 1); /* the watcher submits it again */
		}
	}
	atomic_store(&ix->state, IN_IDLE);
	atomic_fetch_sub(&st->inflight, 1);
}

/* Samples flow, mapped to the loop's: not away, nor back but waiting for
 * the restarted stream's first packet. */
bool usb_streaming(struct usb_state *st)
{
	return atomic_load(&st->link) == LINK_LIVE && st->seen_gen == atomic_load(&st->gen) && !st->resync_pending;
}

int usb_stream_alloc(struct usb_state *st)
{
	st->in = calloc(st->n_in, sizeof(*st->in));
	if (!st->in)
		return -ENOMEM;
	for (uint32_t i = 0; i < st->n_in; i++) {
		struct in_xfer *ix = &st->in[i];
		ix->st = st;
		atomic_init(&ix->state, IN_IDLE);
		ix->x = usb_transfer_new(st->in_bytes);
		if (!ix->x)
			return -ENOMEM;
	}
	st->ring = calloc((size_t)st->ring_scans * st->info.channels, sizeof(int16_t));
	st->uv = calloc((size_t)UV_CHUNK * st->electrodes, sizeof(float));
	return st->ring && st->uv ? 0 : -ENOMEM;
}

void usb_stream_free(struct usb_state *st)
{
	for (uint32_t i = 0; st->in && i < st->n_in; i++)
		usb_transfer_free(st->in[i].x);
	free(st->in);
	free(st->ring);
	free(st->uv);
}

void usb_stream_reset(struct usb_state *st)
{
	st->head = st->acq = st->late_upto = st->cur_end = 0;
	st->offset = 0;
	st->seen_gen = atomic_load(&st->gen);
	st->resync_pending = st->resynced = false;
	st->stream_seen = false;
	st->stale = 0;
	st->have_seq = false;
	st->failed = st->fail_run = 0;
	st->failed_babble = false;
	st->evq_head = st->evq_n = 0;
	st->stall_open = false;
	st->stall_reported = atomic_load(&st->stalls_cleared);
	st->gone_handled = false;
	atomic_store(&st->parked, 0);
}

int usb_submit_in(struct usb_state *st)
{
	for (uint32_t i = 0; i < st->n_in; i++) {
		struct in_xfer *ix = &st->in[i];
		libusb_fill_bulk_transfer(ix->x, st->h, st->ep_in, ix->x->buffer, (int)st->in_bytes, in_cb, ix, 0);
		atomic_store(&ix->state, IN_FLIGHT);
		atomic_fetch_add(&st->inflight, 1);
		int r = libusb_submit_transfer(ix->x);
		if (r < 0) {
			atomic_store(&ix->state, IN_IDLE);
			atomic_fetch_sub(&st->inflight, 1);
			return -usb_errno(r);
		}
	}
	return 0;
}

/* Hands the loop the samples [acq, upto), as many as its raw buffer takes. */
static void deliver(struct usb_state *st, struct mead_frame *f, uint64_t upto)
{
	const uint32_t C = st->info.channels, E = st->electrodes;
	const bool raw = f->raw && f->raw_capacity && f->raw_channels;
	if (raw && upto > st->acq + (f->raw_capacity - f->raw_samples))
		upto = st->acq + (f->raw_capacity - f->raw_samples);
	if (f->raw_samples == 0)
		f->raw_first_sample = st->acq;
	while (st->acq < upto) {
		uint32_t idx = (uint32_t)(st->acq & (st->ring_scans - 1));
		uint64_t left = upto - st->acq;
		uint32_t n = left < UV_CHUNK ? (uint32_t)left : UV_CHUNK;
		if (n > st->ring_scans - idx)
			n = st->ring_scans - idx;
		for (uint32_t i = 0; i < n; i++)
			mead_sig_counts_to_uv_s16(st->ring + (size_t)(idx + i) * C, st->uv + (size_t)i * E, E,
						  st->uv_per_count);
		mead_sig_process(st->sig, st->acq, st->uv, n, f);
		if (raw) {
			uint32_t rc = f->raw_channels < E ? f->raw_channels : E;
			for (uint32_t i = 0; i < n; i++) {
				int16_t *dst = f->raw + (size_t)(f->raw_samples + i) * f->raw_channels;
				memcpy(dst, st->ring + (size_t)(idx + i) * C, rc * sizeof(int16_t));
				memset(dst + rc, 0, (f->raw_channels - rc) * sizeof(int16_t));
			}
			f->raw_samples += n;
		}
		st->acq += n;
	}
}

/*
 * A restarted device's first packets were placed from where the loop
 * stood; what else arrived with them had piled up while the transfers were
 * being queued.  The newest sample is now: the older ones fall into the
 * time the device was away, and the mapping moves so that pulses for the
 * next tick land ahead of the device, not behind it.
 */
static void realign(struct usb_state *st)
{
	st->resynced = false;
	if (st->head <= st->cur_end)
		return;
	const uint64_t shift = st->head - st->cur_end;
	const size_t bytes = st->info.channels * sizeof(int16_t);
	for (uint64_t s = st->acq; s < st->cur_end; s++)
		memcpy(row(st, s), row(st, s + shift), bytes);
	for (uint32_t i = 0; i < st->evq_n; i++) {
		struct mead_event *e = &st->evq[(st->evq_head + i) % EVQ];
		e->sample = e->sample >= st->acq + shift ? e->sample - shift : st->acq;
	}
	st->offset -= (int64_t)shift;
	st->head = st->cur_end;
}

static void drain_events(struct usb_state *st, struct mead_frame *f)
{
	while (st->evq_n && f->events && f->n_events < f->event_capacity) {
		f->events[f->n_events++] = st->evq[st->evq_head];
		st->evq_head = (st->evq_head + 1) % EVQ;
		st->evq_n--;
	}
}

static void frame_flags(struct mead_frame *f)
{
	for (uint32_t i = 0; i < f->n_events; i++) {
		if (f->events[i].type == MEAD_EVENT_GAP)
			f->flags |= MEAD_FRAME_GAP;
		else if (f->events[i].type == MEAD_EVENT_OVERFLOW)
			f->flags |= MEAD_FRAME_OVERFLOW;
		else if (f->events[i].type == MEAD_EVENT_LATE)
			f->flags |= MEAD_FRAME_LATE;
	}
}

int usb_read_frame(void *state, uint64_t tick, struct mead_frame *f)
{
	struct usb_state *st = state;
	(void)tick;
	const uint64_t end = f->first_sample + f->n_samples;
	f->flags = 0;
	f->n_spikes = 0;
	f->spikes_dropped = 0;
	f->raw_samples = 0;
	f->raw_first_sample = st->acq;
	f->n_stim_results = 0;
	f->n_events = 0;
	st->cur_end = end;
	libusb_context *next = atomic_exchange(&st->ctx_next, NULL);
	if (next) {
		atomic_store(&st->ctx_retired, st->ctx);
		st->ctx = next;
	}
	/* libusb reaps at most 26 URBs of a device per call: after a stall
	 * the kernel holds up to queue_ms of them, all due now */
	struct timeval zero_tv = { 0, 0 };
	for (uint32_t i = 0; i <= st->n_in / 16 + 1; i++) {
		uint64_t before = st->completions;
		libusb_handle_events_timeout_completed(st->ctx, &zero_tv, NULL);
		if (st->completions - before < 16)
			break;
	}

	if (st->resynced)
		realign(st);
	if (!usb_streaming(st)) {
		/* Away, or back but not streaming yet: what came before the
		 * loss still goes out; the loop's clock goes on, so the
		 * stream resumes where the loop stands.  Transfers that
		 * failed on the way out are the loss itself. */
		if (!st->gone_handled) {
			usb_stim_settle_all(st, MEAD_STIM_REASON_UNKNOWN);
			st->failed = 0;
			st->failed_babble = false;
			st->stall_open = false;
			st->gone_handled = true;
		}
		drain_events(st, f);
		deliver(st, f, st->head < f->first_sample ? st->head : f->first_sample);
		uint64_t to = st->acq > end ? st->acq : end;
		st->acq = st->head = to;
		if (st->late_upto < to)
			st->late_upto = to;
		f->acquired = to;
		usb_stim_drain(st, f);
		frame_flags(f);
		f->flags |= MEAD_FRAME_DEVICE_GONE;
		return -ENODEV;
	}
	st->gone_handled = false;
	usb_stim_tick(st);
	uint64_t cleared = atomic_load(&st->stalls_cleared);
	if (cleared != st->stall_reported) {
		usb_push_event(st, MEAD_EVENT_STALL, st->stall_open ? st->stall_sample : st->head, 0,
			       (int32_t)(cleared > INT32_MAX ? INT32_MAX : cleared));
		st->stall_reported = cleared;
		st->stall_open = false;
	}
	drain_events(st, f);
	deliver(st, f, st->head < end ? st->head : end);
	if (st->acq < end) {
		uint64_t from = st->acq > st->late_upto ? st->acq : st->late_upto;
		if (from < end) {
			mead_frame_event(f, MEAD_EVENT_LATE, from, end - from, 0, 0);
			atomic_fetch_add(&st->late_samples, end - from);
		}
		st->late_upto = end;
		atomic_fetch_add(&st->late_ticks, 1);
		f->flags |= MEAD_FRAME_LATE;
	}
	f->acquired = st->head;
	usb_stim_drain(st, f);
	frame_flags(f);
	return 0;
}
