/* SPDX-License-Identifier: MIT */
/*
 * Device models for the driver tests and the closed-loop bench.  Each plays
 * the kernel's part behind an emulated device node of a umockdev testbed
 * (the process must run under umockdev-wrapper): a Comedi DAQ board behind
 * /dev/comediN and a USB MEA front-end behind usbdevfs.  Both stream the
 * known signal of a siggen and record the stimulation they receive.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <stddef.h>

#include "lib/core/time.h"
#include "tests/lib/siggen.h"


/* ---- Comedi board ---- */

struct cmodel;

/* The first six fields describe the default board (an NI M-series-like
 * card); the rest default to it when zero. */
struct cmodel_config {
	const char *devnode;         /* "/dev/comedi0" */
	uint32_t ai_channels;        /* 64 */
	uint32_t max_aggregate_hz;   /* AI conversions per second the board can do */
	double amp_gain;             /* electrode -> board input */
	bool with_ao;                /* false: no analog output subdevice */
	bool ai_no_cmd;              /* AI subdevice without streaming support */
	bool no_dio;                 /* no digital I/O subdevice at all (comedi_test) */
	bool dio_cmd;                /* the DIO subdevice runs output commands clocked by AO updates (correlated DO) */
	bool us_timing;              /* comedi_test's timing: whole microseconds, convert TRIG_NOW accepted, no minimum */
	bool no_poll;                /* COMEDI_POLL answers EINVAL (a board without a poll handler) */
	uint32_t ai_bits, ao_bits;   /* 0: 16-bit sampl_t; above 16: lsampl_t samples (SDF_LSAMPL) */
	uint32_t ai_block_scans;     /* samples reach the kernel buffer in blocks of this many scans (DMA); COMEDI_POLL moves the rest */
	uint32_t ao_channels;        /* 0: 2 */
	uint32_t ai_buffer_bytes;    /* kernel buffer of the AI command; 0: 1 MiB */
	uint32_t ao_buffer_bytes;    /* 0: 1 MiB */
	bool with_di;                /* a digital input subdevice (16 lines) after the DIO */
};

/* A pulse as the analog output played it (the board's truth). */
struct cmodel_stim {
	uint64_t trigger_sample;     /* device clock when its output command was triggered */
	uint64_t start_sample;       /* AI sample (device clock) at or after its first non-zero AO sample */
	uint32_t dio;                /* DIO lines when it started */
	double phase1_v, phase2_v;   /* volts of the two phases */
	uint32_t phase1_ao, gap_ao, phase2_ao; /* lengths in AO samples */
	uint32_t ao_period_ns;
	uint64_t t_ns;               /* wall clock when it started (meaningful in real-time mode) */
	uint64_t start_ns;           /* model time of its first sample (AI sample k starts at k x scan period) */
	uint16_t channel;            /* AO channel */
	bool cut;                    /* the output command ended inside it */
	bool dio_steady;             /* the DIO lines did not change while it played */
};

struct cmodel_counts {
	uint32_t ai_commands, ao_commands, do_commands;
	uint32_t ao_underruns, ai_overflows, polls;
	uint32_t insn_ao_writes;     /* instruction writes to the analog output */
	uint32_t insn_ao_nonzero;    /* of them, codes other than 0 V */
	uint32_t dio_changes;        /* software writes that changed the lines */
	uint32_t di_reads;           /* INSN_BITS that wrote nothing (reads of the lines) */
};

/* The last AI command started (what the driver asked for). */
struct cmodel_ai_cmd {
	unsigned flags, convert_src, convert_arg, scan_begin_arg, chanlist_len;
};

/* tb is a UMockdevTestbed *. */
struct cmodel *cmodel_new(void *tb, const struct cmodel_config *cfg, struct siggen *gen, char *err, size_t err_len);
void cmodel_free(struct cmodel *m);
void cmodel_set_clock(struct cmodel *m, uint64_t samples);
void cmodel_set_realtime(struct cmodel *m, bool on);
uint64_t cmodel_clock(struct cmodel *m);
/* The kernel buffer is full now: the AI command stops (its buffered samples
 * stay readable, then reads fail with EPIPE). */
void cmodel_force_overflow(struct cmodel *m);
/* The board goes away (detached): every call fails with ENODEV. */
void cmodel_remove(struct cmodel *m);
/* Pulses played so far, in start order. */
uint32_t cmodel_stims(struct cmodel *m, struct cmodel_stim *out, uint32_t cap);
uint32_t cmodel_dio(struct cmodel *m);
/* From device-clock sample `clock` on, the input lines in mask of the DI
 * subdevice (di) or of the DIO are at levels; changes add up in the order
 * given. */
void cmodel_set_input(struct cmodel *m, bool di, uint64_t clock, uint32_t mask, uint32_t levels);
void cmodel_clear_inputs(struct cmodel *m);
/* The DIO lines configured as outputs. */
uint32_t cmodel_dio_outputs(struct cmodel *m);
/* The code an analog output channel holds now, and what a code means. */
uint32_t cmodel_ao_code(struct cmodel *m, unsigned chan);
double cmodel_ao_volts(struct cmodel *m, uint32_t code);
bool cmodel_ao_is_zero(struct cmodel *m, uint32_t code);
void cmodel_counts(struct cmodel *m, struct cmodel_counts *out);
void cmodel_last_ai_cmd(struct cmodel *m, struct cmodel_ai_cmd *out);
/* Device clock of sample 0 of the running AI command, and of the first
 * sample the last overflowed one could not keep. */
uint64_t cmodel_ai_start(struct cmodel *m);
uint64_t cmodel_ai_overflow_at(struct cmodel *m);
uint64_t cmodel_ai_rate(struct cmodel *m);
uint64_t cmodel_stream_start_ns(struct cmodel *m);

/* ---- USB front-end (see docs/usb-protocol.md, protocol v2) ---- */

struct umodel;

/* Zero fields take the defaults in the comments; the first seven keep
 * their order so that older positional initialisers still read right. */
struct umodel_config {
	uint16_t vid, pid;
	uint16_t channels;
	uint32_t rate_hz;
	uint32_t nv_per_count;
	uint16_t samples_per_packet;
	uint8_t devnum;              /* 2..9: /dev/bus/usb/001/00N, port 1-(N-1) */
	uint8_t ep_in, ep_out;       /* endpoint addresses in the descriptor (0x81, 0x02) */
	uint16_t version;            /* protocol version in the info block (2) */
	uint16_t flags_clear;        /* info flag bits taken away from 7 (stimulate, report, watchdog) */
	uint16_t max_pulses;         /* pulses per command (16) */
	uint16_t stimulators;        /* 0 or 1: one stimulator; more: channel c on c % n, GET_STIM_MAP */
	uint32_t stim_queue;         /* pulses the stimulator queue holds (64) */
	uint32_t fifo_packets;       /* sample packets the device buffers for the host (64) */
	uint16_t max_packet;         /* bulk wMaxPacketSize (512) */
	double clock_ppm;            /* the sample clock runs this fast (+) or slow (-) */
};

/* What became of one pulse the device received (SR status). */
enum umodel_status {
	UMODEL_DELIVERED = 0,
	UMODEL_LATE = 1,
	UMODEL_OVERLAP = 2,
	UMODEL_RANGE = 3,
	UMODEL_DROPPED = 4,
	UMODEL_QUEUE_FULL = 5,
	UMODEL_QUEUED = 255,         /* accepted, not started yet */
};

struct umodel_stim {
	uint64_t start_sample;       /* when the device played it (0: never) */
	uint64_t requested_sample;
	uint64_t received_at;        /* device clock when the command arrived */
	uint16_t electrode;
	uint16_t status;             /* enum umodel_status */
	int32_t amplitude_na;
	uint32_t phase_us, interphase_us;
	uint32_t cmd_seq;
	uint16_t index;
	uint64_t t_ns;
};

/* Counts of what the device saw. */
struct umodel_counts {
	uint32_t starts, stops, opens;
	uint32_t sc, sx, sk, malformed;
	uint32_t set_watchdog, watchdog_ms;   /* SET_WATCHDOG requests, the last value */
	uint32_t watchdog_fired;
	uint64_t watchdog_sample;             /* device sample of the last firing */
	uint64_t out_gap_max;                 /* longest silence between commands since START, samples */
	uint32_t clear_halts, stalls;
	uint64_t packets, packets_overrun, packets_dropped, reports, records;
	uint32_t sk_last;                     /* counter of the last SK */
	uint64_t gen_at_start;                /* siggen position at the last START */
};

struct umodel *umodel_new(void *tb, const struct umodel_config *cfg, struct siggen *gen, char *err, size_t err_len);
void umodel_free(struct umodel *m);
/* The signal the device streams from its next START on. */
void umodel_set_gen(struct umodel *m, struct siggen *gen);
/* Emulated time, in nominal samples since the model was made; the device
 * clock runs clock_ppm off it.  Everything due by then happens now. */
void umodel_set_clock(struct umodel *m, uint64_t samples);
uint64_t umodel_world(struct umodel *m);
void umodel_set_realtime(struct umodel *m, bool on);
/* The device's sample counter now (since its last START). */
uint64_t umodel_clock(struct umodel *m);
/* The device streams as if a host had sent START and gone away. */
void umodel_start(struct umodel *m);
/* A host nobody sees reads (and discards) every packet the device makes. */
void umodel_phantom_reader(struct umodel *m, bool on);
/* At the next START the device keeps the newest n packets it still has
 * queued from the stream before, and sends them first. */
void umodel_keep_stale(struct umodel *m, uint32_t n);
void umodel_unplug(struct umodel *m);
void umodel_replug(struct umodel *m);
/* An unplug ends the URBs in flight with -EPROTO (a transaction error), as
 * dummy_hcd does at times, rather than -ESHUTDOWN. */
void umodel_unplug_errors(struct umodel *m, bool on);
/* Drop the next n packets on the device side (their counter still advances). */
void umodel_drop_packets(struct umodel *m, uint32_t n);
/* The next n IN transfers fail with -err (EOVERFLOW: babble; EPROTO: an
 * error) and the packet each would have carried is lost. */
void umodel_fail_in(struct umodel *m, uint32_t n, int err);
/* Halt the IN endpoint: every IN transfer stalls until the host clears it. */
void umodel_stall_in(struct umodel *m);
/* Halt the OUT endpoint: commands stall until the host clears it. */
void umodel_stall_out(struct umodel *m);
/* Hold OUT transfers (the device NAKs them) until released. */
void umodel_hold_out(struct umodel *m, bool hold);
/* The next n SUBMITURB of OUT transfers fail with ENOMEM. */
void umodel_refuse_out(struct umodel *m, uint32_t n);
/* The last pulses received (at most cap, oldest first); returns how many. */
uint32_t umodel_stims(struct umodel *m, struct umodel_stim *out, uint32_t cap);
void umodel_counts(struct umodel *m, struct umodel_counts *out);
uint64_t umodel_stream_start_ns(struct umodel *m);
