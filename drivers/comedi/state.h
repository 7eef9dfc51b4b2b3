/* SPDX-License-Identifier: MIT */
/*
 * mead-driver-comedi, inside: the state the three parts share (named so
 * that it does not hide the system <comedi.h> comedilib includes).
 *   comedi.c   options, open/close, caps, start/stop, describe
 *   acquire.c  the analog-input command and read_frame's samples
 *   stim.c     the stimulator: one continuous analog-output command,
 *              pulses written ahead into it, routing lines, stop_outputs
 */
#pragma once

#include <comedilib.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "mead/driver.h"
#include "lib/signal/signal.h"

#define MAX_ROUTE_LINES 16
#define MAX_STIMULATORS 8
#define CATCHUP_TICKS 64u          /* ticks of samples one read_frame may take in when catching up */
#define PENDING_CAP 256u           /* pulses placed and not yet finished (power of two) */

/* A pulse placed on the stimulator stream. */
struct cpulse {
	struct mead_stim_pulse pulse;
	uint64_t a_start, a_end;       /* AO scans of its stream generation: [start, end) is off 0 V */
	uint64_t start, end;           /* the same in AI samples */
	uint32_t gen;
	uint16_t stim;                 /* stimulator (index into the AO scan) */
	uint8_t state;                 /* enum cpulse_state */
	uint8_t status, reason;        /* the outcome once known */
};

enum cpulse_state {
	CP_PENDING = 0,                /* placed, outcome not known yet */
	CP_READY,                      /* outcome known, not yet handed to the loop */
	CP_REPORTED,                   /* handed over; kept until it has finished (routing) */
};

enum route_mode {
	ROUTE_NONE = 0,                /* no lines: the stimulator needs no routing */
	ROUTE_LINES,                   /* DIO lines set by instructions between pulses */
	ROUTE_STREAM,                  /* DIO lines as a buffered command clocked by the AO updates */
};

struct comedi_state {
	comedi_t *dev;
	int fd;
	uint32_t rate, period_ns;
	uint32_t ai_ns;                /* scan period of the AI command */
	bool virtual_clock;
	int ai_sub, ao_sub, dio_sub;
	unsigned ai_range, ao_range, aref;
	uint32_t nchan;                /* channels in the scan */
	unsigned *ai_chanlist;
	uint16_t *electrode_of_chan;
	uint32_t electrodes;           /* layout count */
	float *cal_offset, *cal_scale; /* per scan channel */
	float uv_per_count;            /* of the signal path (full resolution) */
	float raw_uv_per_count;        /* of frame.raw (16 bits over the input range) */
	double amp_gain;
	comedi_cmd ai_cmd;
	bool overflow_stop, wake_eos;
	uint32_t ai_bps;               /* bytes per AI sample: 2, or 4 with SDF_LSAMPL */
	unsigned ai_buf_bytes;

	/* acquisition */
	uint32_t stage_scans;
	uint8_t *stage;
	size_t stage_bytes;            /* partial scan bytes carried over */
	float *uv;
	uint64_t acq;                  /* sample index of the next sample to process */
	uint64_t acquired;             /* device clock: samples acquired (processed + buffered) */
	uint64_t obs_sample, obs_ns;   /* last observation of a running device */
	bool have_obs;
	bool running, failed, gone;
	bool ai_ended;                 /* the command ended on an overflow: only staged samples are left */
	bool poll_ok;                  /* the board has a poll handler */

	/* stimulation */
	bool stim;
	uint32_t n_ao;                 /* AO channels in the scan = stimulators */
	unsigned ao_chan[MAX_STIMULATORS];
	unsigned ao_chanlist[MAX_STIMULATORS];
	uint16_t *stim_of_electrode;   /* caps; UINT16_MAX: not wired */
	uint32_t ao_ns;                /* AO scan period */
	uint32_t ao_rate;
	uint32_t ao_bps;
	uint32_t ao_scan_bytes;
	double ua_per_volt;
	uint32_t max_phase_us;
	float max_ua;
	lsampl_t ao_zero[MAX_STIMULATORS];
	comedi_polynomial_t ao_poly[MAX_STIMULATORS];
	bool ao_poly_ok[MAX_STIMULATORS];
	bool ao_ready;                 /* zero codes known: the outputs may be written */
	lsampl_t ao_maxdata;
	lsampl_t ai_maxdata;
	double ao_min_v, ao_max_v;
	comedi_cmd ao_cmd;
	uint32_t lead_samples;         /* AI samples of stream kept written ahead of the device */
	uint32_t tick_samples;         /* AI samples of one tick (rounded up) */
	bool fed;                      /* write_stim wrote the lead since the last read_frame */
	uint32_t guard_us, switch_us;
	uint32_t guard_samples, switch_samples;
	uint32_t max_per_tick;

	/* the stream: generation, mapping to AI samples, what is written */
	uint32_t gen;
	bool ao_live;                  /* the command runs and is ours */
	uint64_t ao_s0;                /* AI sample at which AO scan 0 of this generation plays */
	uint64_t ao_wbytes;            /* bytes handed to the kernel in this generation */
	uint8_t *plan;                 /* ring of scans from the written position on */
	uint32_t plan_scans;
	uint64_t stim_free[MAX_STIMULATORS];  /* first AO scan a next pulse may use */
	int last_el[MAX_STIMULATORS];
	int64_t ao_skew_ns;            /* uncertainty of the AO stream's start on the AI clock (half the two calls' durations) */
	uint64_t obs_half_ns;
	uint64_t read_ns, read_half_ns;  /* middle and half length of the last read() of the samples */          /* half the duration of the call the observation was made in */
	bool lost_pending;             /* a stream ran dry or was cut: STIM_LOST once a new one runs */
	uint64_t lost_at;
	uint32_t lost_dropped;

	/* routing */
	enum route_mode route;
	int route_line[MAX_ROUTE_LINES];
	uint32_t n_route;
	int enable_line, blank_line;
	unsigned dio_mask;
	int routed_el;                 /* electrode on the lines; -1: lines low */
	comedi_t *dev_do;              /* second open file: its write subdevice is the DIO */
	int fd_do;
	unsigned do_chanlist[32];
	uint32_t do_nlines, do_bps, do_scan_bytes;
	unsigned do_clock;
	comedi_cmd do_cmd;
	uint8_t *do_plan;
	uint64_t do_wbytes;

	struct cpulse pend[PENDING_CAP];
	uint32_t pend_head, pend_tail;

	/* stop_outputs, from any thread */
	_Atomic uint32_t stop_req, stop_done, stop_seen;
	_Atomic uint64_t stop_ns;
	_Atomic bool ao_armed;         /* what stop_outputs may cancel */

	/* digital inputs (dinput.c) */
	int di_sub;                    /* -1: none configured */
	uint32_t di_mask;              /* the lines read; 0: off */
	uint32_t di_levels;            /* at the last read */
	uint64_t di_start_sample;      /* where the run's first read saw them */
	bool di_start_owed;            /* the first frame says every line's level at the start */
	bool di_known;                 /* di_levels came from a read of this run */

	struct mead_sig *sig;
	bool blank_all;

	/* counters, read by describe() from another thread */
	_Atomic uint64_t overflows, late_ticks, pulses, stim_errors, rearms;
	_Atomic uint64_t lost_samples, pulses_late, pulses_cancelled, ao_underruns, ao_rearms, misrouted;
	_Atomic uint64_t di_changes, di_errors;
};

int comedi_errno_(void);
int fail_(char *err, size_t len, int e, const char *msg);

/* A comma-separated list of lines 0..31 into out (at most max); the count,
 * -EINVAL when it is not such a list, -E2BIG when it names more. */
int comedi_parse_lines(const char *text, int *out, uint32_t max);

/* acquire.c */
/* The subdevice of a type that runs commands with need_flag (want >= 0:
 * that one, if it is of the type); -1 if none. */
int comedi_find_streaming(comedi_t *dev, int type, unsigned need_flag, long want);
/* An electrode named by its layout label or "#index"; -1 if none. */
int comedi_electrode_index(const struct mead_layout_view *lay, const char *tok, size_t len);
int acq_setup(struct comedi_state *st, const struct mead_driver_config *cfg, char *err, size_t err_len);
int acq_arm(struct comedi_state *st);
int comedi_read_frame_(void *state, uint64_t tick, struct mead_frame *f);
uint64_t tick_first_sample(const struct comedi_state *st, uint64_t tick);
/* The device's sample at host time t_ns, from the last observation of its
 * clock (not before it: `floor` otherwise). */
uint64_t acq_sample_at(const struct comedi_state *st, uint64_t t_ns, uint64_t floor);

/* stim.c */
int stim_setup(struct comedi_state *st, const struct mead_driver_config *cfg, char *err, size_t err_len);
void stim_free_all(struct comedi_state *st);
int stim_start_prepare(struct comedi_state *st, char *err, size_t err_len);
int stim_start_fire(struct comedi_state *st, char *err, size_t err_len);
void stim_tick(struct comedi_state *st, struct mead_frame *f, int acq_result);
void stim_outputs_off(struct comedi_state *st);
int comedi_write_stim_(void *state, uint64_t tick, const struct mead_stim_pulse *pulses, uint32_t n,
		       struct mead_stim_result *results);
int comedi_stop_outputs_(void *state);

/* dinput.c: the digital input lines, read once a tick */
int di_setup(struct comedi_state *st, const struct mead_driver_config *cfg, char *err, size_t err_len);
void di_start(struct comedi_state *st);
void di_tick(struct comedi_state *st, struct mead_frame *f);
