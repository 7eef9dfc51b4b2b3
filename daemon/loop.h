/* SPDX-License-Identifier: MIT */
/*
 * The hard real-time loop: one thread per rig.  Each tick it applies queued
 * commands, lets the protocol decide the tick's stimulation, passes it through
 * the safety layer, writes it to the driver, reads the driver's frame and
 * pushes spikes/stim/events/raw into the output ring as framed messages.
 * Statistics are published through atomics any thread may read.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "mead/driver.h"
#include "mead/wire.h"

struct mead_ring;
struct mead_protocol;
struct mead_safety;

/* Every message the loop (or anyone else) pushes into an output ring starts
 * with this; records follow, host order (little-endian on every supported
 * host).  seq is per kind and counts every message produced, including ones
 * dropped because the ring was full, so a loss is a seq gap downstream. */
struct mead_msg {
	uint16_t kind;          /* enum mead_wire_kind */
	uint16_t flags;
	uint32_t count;
	uint32_t record_size;
	uint32_t reserved;
	uint64_t seq;
	uint64_t sample;        /* first sample of the tick that produced it */
	/* uint8_t records[count * record_size]; */
};
_Static_assert(sizeof(struct mead_msg) == 32, "message header is 32 bytes");

#define MEAD_LAT_BUCKETS 2000   /* 0..999 µs by 1 µs, 1..999 ms by 1 ms, then overflow (daemon/histogram.h) */

enum mead_loop_state {
	MEAD_LOOP_CREATED = 0,
	MEAD_LOOP_RUNNING,
	MEAD_LOOP_STOPPING,
	MEAD_LOOP_STOPPED,
	MEAD_LOOP_FAULTED,
};

enum mead_loop_exit {
	MEAD_EXIT_REQUESTED = 0,     /* stop asked for (signal, control) */
	MEAD_EXIT_MAX_TICKS,         /* configured tick budget used up */
	MEAD_EXIT_PROTOCOL_DONE,     /* loop.exit_when_done and the protocol finished */
	MEAD_EXIT_OVERRUN,           /* loop.overrun_fatal and a tick overran */
	MEAD_EXIT_DRIVER_FAULT,      /* read_frame said acquisition ended for good (-EPIPE) */
};

struct mead_loop_params {
	uint32_t period_ns;
	bool virtual_clock;
	int rt_priority;             /* SCHED_FIFO priority; 0: normal scheduling */
	int cpu;                     /* -1: no affinity */
	bool lock_memory;
	bool overrun_fatal;
	bool exit_when_done;
	uint64_t max_ticks;          /* 0: until stopped */
	uint32_t spike_capacity;     /* spike records per tick */
	uint32_t stim_capacity;      /* pulses per tick */
	bool want_raw;
	uint64_t prefault_stack_bytes;
	/* MEAD_CAP_DEVICE_CLOCK at the real-time clock: the loop wakes when a
	 * tick's samples are there by the device's clock.  Samples beyond the
	 * tick the device should have acquired by the wake-up (0: none), and
	 * how fast the schedule follows the device (Hz; 0: 0.5). */
	uint32_t device_margin_samples;
	double clock_bandwidth_hz;
};

/* Reasons a pulse was refused, by enum mead_stim_reason (safety verdicts
 * at MEAD_STIM_REASON_SAFETY + verdict). */
#define MEAD_LOOP_REASONS 80
/* Event types counted as data loss, by enum mead_event_type. */
#define MEAD_LOOP_EVENT_TYPES 24

/* What the running (or the last) protocol has scored itself, as
 * mead_protocol_results() says it.  Several fields describe one moment, so
 * the rt thread writes them under a sequence count (odd while it writes)
 * and readers take a copy with mead_loop_protocol_progress(). */
struct mead_loop_progress_cells {
	_Atomic uint64_t seq;
	_Atomic uint64_t trial, n_trials;
	_Atomic uint64_t last_validation_bits, best_validation_bits;   /* doubles, -1 when none */
	_Atomic uint32_t evaluations, screened_out;
	_Atomic uint32_t test_trials, test_correct;
};

struct mead_loop_progress {
	bool any;                    /* a protocol has run */
	uint64_t trial, n_trials;    /* n_trials: UINT64_MAX when unbounded */
	double last_validation, best_validation;
	uint32_t evaluations, screened_out;
	uint32_t test_trials, test_correct;
};

/* Live counters.  Written by the rt thread with relaxed atomics; read anywhere. */
struct mead_loop_stats {
	_Atomic uint64_t ticks;
	_Atomic uint64_t sample;             /* first sample of the last completed tick */
	_Atomic uint64_t overruns;
	_Atomic uint64_t worst_overrun_ns;
	_Atomic uint64_t sleep_errors;
	_Atomic uint64_t driver_errors;
	_Atomic uint64_t spikes;
	_Atomic uint64_t spikes_dropped;     /* frame capacity exceeded in the driver */
	_Atomic uint64_t waveforms;          /* spike waveforms the driver handed over */
	_Atomic uint64_t waveforms_dropped;  /* and those it could not (frame buffer or its own queue full) */
	_Atomic uint64_t stim_pulses;        /* delivered: started on the device */
	_Atomic uint64_t stim_late;          /* delivered after the sample they were asked for */
	_Atomic uint64_t stim_pending;       /* handed to the device, fate not known yet */
	_Atomic uint64_t stim_rejected;      /* refused, by the loop or the driver: every reason */
	_Atomic uint64_t stim_refused[MEAD_LOOP_REASONS];
	_Atomic uint64_t loss_events[MEAD_LOOP_EVENT_TYPES];   /* OVERFLOW, GAP, LATE, DEVICE_*, STALL ... */
	_Atomic uint64_t loss_samples[MEAD_LOOP_EVENT_TYPES];  /* samples those events cover */
	_Atomic uint64_t events_dropped;     /* a tick had more events than its buffer */
	_Atomic uint64_t thresholds_set;     /* threshold changes the driver took */
	_Atomic uint64_t thresholds_refused; /* and those it did not (no channel records the electrode) */
	/* the device's clock (MEAD_CAP_DEVICE_CLOCK) */
	_Atomic int device_clock;            /* 1: the schedule follows the device */
	_Atomic uint64_t acquired;           /* the device's sample count at the last read */
	_Atomic int64_t backlog;             /* samples acquired beyond the last tick's end, at its read */
	_Atomic int64_t backlog_max;
	_Atomic int64_t startup_backlog;     /* at tick 0: how far the device was ahead of the loop */
	_Atomic uint64_t drift_ppm_bits;     /* the device clock's rate against the host's, measured (double bits, ppm) */
	_Atomic uint64_t protocol_errors;
	_Atomic uint64_t produced[MEAD_KIND_COUNT + 1];
	_Atomic uint64_t dropped[MEAD_KIND_COUNT + 1];   /* ring full */
	_Atomic uint64_t virtual_waits;      /* virtual clock: times the loop waited for space */
	_Atomic uint64_t lat_hist[MEAD_LAT_BUCKETS];
	_Atomic uint64_t lat_max_ns;
	_Atomic int state;                   /* enum mead_loop_state */
	_Atomic int exit_reason;             /* enum mead_loop_exit */
	_Atomic int rt_active;               /* 1: SCHED_FIFO granted */
	_Atomic int memory_locked;
	_Atomic int protocol_active;         /* index of the running protocol, -1 none */
	_Atomic int device_gone;             /* 1 while the driver reports its device gone */
	_Atomic uint64_t device_losses;      /* times the device went away */
	_Atomic uint64_t progress;           /* bumped every tick: the watchdog pings while it moves */
	struct mead_loop_progress_cells protocol_progress;
};

/* Doubles travel through the progress cells as their bits. */
static inline uint64_t mead_loop_double_to_bits(double d)
{
	union { double d; uint64_t u; } v = { .d = d };
	return v.u;
}

static inline double mead_loop_bits_to_double(uint64_t bits)
{
	union { uint64_t u; double d; } v = { .u = bits };
	return v.d;
}

/* Any thread: a consistent copy of the protocol's progress; false (and
 * *ret untouched) when the loop was writing it every time we looked. */
static inline bool mead_loop_protocol_progress(const struct mead_loop_stats *s, struct mead_loop_progress *ret)
{
	struct mead_loop_progress_cells *c = (struct mead_loop_progress_cells *)&s->protocol_progress;
	for (int tries = 0; tries < 64; tries++) {
		uint64_t before = atomic_load_explicit(&c->seq, memory_order_acquire);
		if (before & 1)
			continue;
		struct mead_loop_progress p = {
			.any = before > 0,
			.trial = atomic_load_explicit(&c->trial, memory_order_relaxed),
			.n_trials = atomic_load_explicit(&c->n_trials, memory_order_relaxed),
			.last_validation = mead_loop_bits_to_double(
				atomic_load_explicit(&c->last_validation_bits, memory_order_relaxed)),
			.best_validation = mead_loop_bits_to_double(
				atomic_load_explicit(&c->best_validation_bits, memory_order_relaxed)),
			.evaluations = atomic_load_explicit(&c->evaluations, memory_order_relaxed),
			.screened_out = atomic_load_explicit(&c->screened_out, memory_order_relaxed),
			.test_trials = atomic_load_explicit(&c->test_trials, memory_order_relaxed),
			.test_correct = atomic_load_explicit(&c->test_correct, memory_order_relaxed),
		};
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&c->seq, memory_order_relaxed) == before) {
			*ret = p;
			return true;
		}
	}
	return false;
}

/* Commands from the control thread, applied between ticks. */
enum mead_command_type {
	MEAD_CMD_START_PROTOCOL = 1,   /* protocol: built by the sender, owned by the loop from then on */
	MEAD_CMD_STOP_PROTOCOL,
	MEAD_CMD_STIM_TRAIN,
	MEAD_CMD_STOP_ALL,             /* stop protocol and trains, zero outputs */
	MEAD_CMD_THRESHOLD,            /* an electrode's spike threshold (MEAD_CTL_THRESHOLD) */
};

#define MEAD_CMD_MAX_ELECTRODES 64

struct mead_command {
	uint32_t type;
	uint32_t id;
	union {
		struct {
			struct mead_protocol *protocol;
			int32_t index;
		} start;
		struct {
			uint16_t electrodes[MEAD_CMD_MAX_ELECTRODES];
			uint32_t n_electrodes;
			float amplitude_ua;
			uint32_t phase_us;
			uint32_t interphase_us;
			uint32_t pulses;
			double rate_hz;
		} train;
		struct {
			uint16_t electrode;      /* MEAD_EVENT_ALL_ELECTRODES: all */
			uint8_t mode;            /* enum mead_threshold_mode */
			float value;             /* k, or µV */
		} threshold;
	};
};

struct mead_loop;

struct mead_driver_handle {
	const struct mead_driver_ops *ops;
	void *state;
	struct mead_driver_caps caps;
};

/* main thread. out_ring receives framed messages (struct mead_msg + records). */
int mead_loop_new(const struct mead_loop_params *params, const struct mead_driver_handle *driver,
		  const struct mead_layout_view *layout, struct mead_ring *out_ring,
		  struct mead_safety *safety, struct mead_loop **ret);
void mead_loop_free(struct mead_loop *loop);

/* main thread, before any other thread exists: resolve loop.cpu.  -1 picks
 * the last CPU the process may run on; -2 means no pinning (returns -1).
 * With isolate, the calling thread (and so every thread it creates later)
 * is kept off the chosen CPU when another one is left, so the loop has its
 * core to itself.  Returns the CPU for mead_loop_params.cpu, or -1. */
int mead_loop_pick_cpu(int configured, bool isolate);

/* main thread: lock memory and hold the CPUs out of deep idle, before the
 * driver starts streaming (so nothing slow sits between its sample 0 and
 * tick 0).  warn gets what was degraded.  mead_loop_start() does it too if
 * it was not done. */
int mead_loop_prepare(struct mead_loop *loop, char *warn, size_t warn_len);
/* main thread: start the rt thread. warn (may be empty) tells what was
 * degraded (no SCHED_FIFO, no mlockall, no affinity). */
int mead_loop_start(struct mead_loop *loop, char *warn, size_t warn_len);
/* any thread, async-signal-safe. */
void mead_loop_request_stop(struct mead_loop *loop);
/* main thread: wait for the rt thread to end. */
int mead_loop_join(struct mead_loop *loop);

/* control thread only (single producer): queue a command.  -ENOBUFS if the
 * ring is full; -EBUSY for a train when every train slot is taken. */
int mead_loop_submit(struct mead_loop *loop, const struct mead_command *cmd);
/* control thread: train slots free now (exact for the control thread,
 * which alone starts trains). */
uint32_t mead_loop_trains_free(const struct mead_loop *loop);
/* control thread: protocols the loop let go of, for the sender to free. */
struct mead_protocol *mead_loop_reclaim(struct mead_loop *loop);

const struct mead_loop_stats *mead_loop_stats(const struct mead_loop *loop);
const struct mead_loop_params *mead_loop_params(const struct mead_loop *loop);

/* Latency percentile from the histogram, in µs (overflow bucket counts as max). */
double mead_loop_latency_percentile(const struct mead_loop_stats *s, double p);
