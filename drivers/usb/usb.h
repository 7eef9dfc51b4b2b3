/* SPDX-License-Identifier: MIT */
/*
 * mead-driver-usb's state, shared by its parts: usb.c (the ops, the device
 * found and started, the watcher thread), stream.c (sample and report
 * packets in, the sample ring, frames out) and stim.c (commands out, pulses
 * pending until the device reports them).
 *
 * Who touches what: everything under "rt" belongs to the thread that runs
 * libusb's event handling, which is the loop thread from start() to the
 * last tick and the main thread in stop(); the watcher only changes the
 * atomics and, while no transfer is in flight, the handle.
 */
#pragma once

#include <libusb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/signal/signal.h"
#include "mead/driver.h"

enum {
	N_OUT = 8,                 /* stimulation commands in flight */
	CTRL_TIMEOUT_MS = 1000,
	EVQ = 256,                 /* events waiting for a frame */
	UV_CHUNK = 256,            /* samples converted per mead_sig_process call */
	MAX_IN = 4096,
	FAIL_LIMIT = 64,           /* IN failures in a row before the link is given up */
	REPORT_TIMEOUT_MS = 500,   /* a pulse's report is this late: its fate is unknown */
};

/* LIVE: streaming; GONE: the device went away (transfers come back with
 * NO_DEVICE); REOPEN: the watcher owns the handle; STOPPING: stop() runs. */
enum link_state { LINK_IDLE, LINK_LIVE, LINK_GONE, LINK_REOPEN, LINK_STOPPING };

enum in_state { IN_IDLE, IN_FLIGHT, IN_PARKED };

/* Values of the GAP and OVERFLOW events this driver emits (docs/drivers.md). */
enum {
	GAP_DEVICE = 0,            /* the device's counters jumped */
	GAP_TRANSFER = 1,          /* an IN transfer failed; its packet was lost */
	OVF_DEVICE = 0,            /* the device's FIFO overran (SP flag bit 0) */
	OVF_BABBLE = 1,            /* a transfer overflowed its buffer (babble) */
	OVF_RING = 2,              /* the loop fell further behind than the ring holds */
};

struct dev_info {
	uint16_t version, channels;
	uint32_t rate, nv_per_count;
	uint16_t spp, flags;
	uint32_t max_na, max_phase_us;
	uint16_t max_pulses, stimulators;
	char serial[17], model[17];
};

/* A pulse handed to the device and not reported yet. */
struct pend {
	struct mead_stim_pulse pulse;
	uint64_t deadline;         /* loop sample: no report by then, fate unknown */
	uint32_t cmd_seq;
	uint16_t index;
	bool wd_watch;             /* pending when the device's watchdog fired */
};

struct in_xfer {
	struct usb_state *st;
	struct libusb_transfer *x;
	atomic_int state;          /* enum in_state */
};

struct out_xfer {
	struct usb_state *st;
	struct libusb_transfer *x;
	atomic_bool busy;
	uint32_t cmd_seq;          /* SC: its pulses are pending under this seq */
	uint16_t n;
	uint16_t magic;
};

struct usb_state {
	/* set in open() */
	libusb_context *ctx;       /* rt's: the one whose events it handles */
	/* A reattach opens the device on a fresh context (libusb's device
	 * list only changes with udev's events): the watcher puts it in
	 * ctx_next, rt takes it and leaves the old one in ctx_retired for
	 * the watcher to free. */
	_Atomic(libusb_context *) ctx_next;
	_Atomic(libusb_context *) ctx_retired;
	libusb_device_handle *h;
	uint16_t vid, pid;
	int iface;
	char serial[17];
	struct dev_info info;
	uint16_t *stim_map;        /* stimulator of each channel; NULL: one stimulator */
	uint8_t ep_in, ep_out;
	uint16_t in_mps;
	uint32_t electrodes;
	uint32_t period_ns;
	float uv_per_count;
	uint32_t queue_ms, watchdog_ms, reattach_ms;
	bool reattach;
	uint64_t report_timeout;   /* samples */
	uint64_t keepalive_samples;
	uint64_t keepalive_ns;

	/* IN transfers */
	uint32_t n_in;
	struct in_xfer *in;
	size_t pkt_bytes;          /* a sample packet */
	size_t in_bytes;           /* an IN transfer: whole USB packets, more than pkt_bytes */
	atomic_int inflight;       /* IN transfers submitted and not back for good */
	atomic_int parked;         /* back with STALL, waiting for the watcher */

	/* OUT transfers: stimulation, stop, keepalive */
	struct out_xfer out[N_OUT];
	struct out_xfer sx, sk;
	struct libusb_transfer *ctl;   /* SET_WATCHDOG from the loop thread after a reattach */
	atomic_bool ctl_busy;
	bool wd_arm_pending;       /* rt: a restarted stream's watchdog is still off */
	atomic_int users;          /* threads between a link check and a submit */
	atomic_bool out_halted;
	_Atomic uint64_t last_out_ns, last_out_head;
	uint32_t cmd_seq, sk_counter;

	/* rt: samples, indexed by loop sample modulo ring_scans */
	int16_t *ring;
	uint32_t ring_scans;
	uint64_t head;             /* one past the newest loop sample held */
	uint64_t acq;              /* the next loop sample to hand to the loop */
	uint64_t late_upto;        /* LATE already reported below this */
	uint64_t cur_end;          /* end of the frame being read */
	int64_t offset;            /* loop sample = device sample + offset */
	uint32_t seen_gen;         /* the stream generation packets are mapped for */
	bool resync_pending;       /* restarted: the first packet sets the offset */
	bool resynced;             /* a restarted stream's first packets came in this frame */
	bool stream_seen;          /* a packet of this stream (seq 0) has come */
	uint32_t stale;            /* packets of an older stream ignored since START */
	_Atomic uint64_t start_ns; /* host clock when the device took START */
	bool have_seq;
	uint32_t last_seq;
	uint32_t failed;           /* IN transfers lost since the last sample packet */
	bool failed_babble;
	uint32_t fail_run;         /* failures in a row */
	uint64_t completions;      /* IN transfers back */
	float *uv;                 /* UV_CHUNK x electrodes */

	/* rt: events waiting for a frame */
	struct mead_event evq[EVQ];
	uint32_t evq_head, evq_n;

	/* rt: pulses */
	struct pend *pend;
	uint32_t n_pend, pend_cap;
	struct mead_stim_result *done;   /* settled, waiting for a frame */
	uint32_t done_head, done_n, done_cap;
	bool have_rseq;
	uint32_t last_rseq;
	uint32_t drops_since_sp;   /* DROPPED reports since the last sample packet */
	bool wd_open;              /* the watchdog fired; its drops are being counted */
	uint64_t wd_sample, wd_deadline;
	uint32_t wd_left, wd_dropped;
	bool stall_open;
	uint64_t stall_sample;
	uint64_t stall_reported;
	bool gone_handled;

	struct mead_sig *sig;
	bool blank_all;

	atomic_int link;           /* enum link_state */
	_Atomic uint32_t gen;      /* bumped by every (re)start of the stream */
	pthread_t watcher;
	bool watcher_on;
	atomic_bool quit;

	/* counters for describe() */
	_Atomic uint64_t gaps, gap_samples, overflows, overflow_samples, late_ticks, late_samples, ring_overruns;
	_Atomic uint64_t stalls, stalls_cleared, out_stalls, babbles, xfer_errors, malformed, stale_packets, unplugs;
	_Atomic uint64_t reattaches, events_dropped;
	_Atomic uint64_t pulses_sent, pulses_delivered, pulses_late, pulses_refused_device, pulses_refused_here;
	_Atomic uint64_t pulses_unknown, reports, reports_lost, reports_unmatched, keepalives, watchdog_fired;
};

/* usb.c */
int usb_errno(int libusb_error);
/* A transfer with a buffer of its own, or NULL; and freeing both. */
struct libusb_transfer *usb_transfer_new(size_t bytes);
void usb_transfer_free(struct libusb_transfer *x);
void usb_mark_gone(struct usb_state *st);

/* stream.c */
bool usb_streaming(struct usb_state *st);
int usb_stream_alloc(struct usb_state *st);
void usb_stream_free(struct usb_state *st);
void usb_stream_reset(struct usb_state *st);
int usb_submit_in(struct usb_state *st);
bool usb_push_event(struct usb_state *st, uint32_t type, uint64_t sample, uint64_t samples, int32_t value);
int usb_read_frame(void *state, uint64_t tick, struct mead_frame *f);

/* stim.c */
int usb_stim_alloc(struct usb_state *st);
void usb_stim_free(struct usb_state *st);
void usb_stim_reset(struct usb_state *st);
void usb_stim_report(struct usb_state *st, const uint8_t *b, int len);
void usb_stim_watchdog(struct usb_state *st, uint64_t sample);
void usb_stim_settle_all(struct usb_state *st, uint16_t reason);
void usb_stim_tick(struct usb_state *st);
void usb_stim_drain(struct usb_state *st, struct mead_frame *f);
bool usb_outputs_idle(struct usb_state *st);
int usb_write_stim(void *state, uint64_t tick, const struct mead_stim_pulse *p, uint32_t n,
		   struct mead_stim_result *results);
int usb_stop_outputs(void *state);
