/* SPDX-License-Identifier: MIT */
/*
 * Trial assembly from decoded wire-v1 messages.  Topics arrive independently
 * (a subscriber may see a tick's events before the spikes of earlier ticks),
 * so spikes are buffered by sample and counted into a trial's window
 * [trial_start, trial_end) only once the spike stream is known to have
 * passed trial_end.  No I/O; allocation only when a buffer has to grow.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mead/wire.h"

#define MEAD_TRIALS_MAX_ELECTRODES 256u

/* A trial's phase: enum mead_phase (wire.h), or what it gets before any
 * phase event. */
#define MEAD_TRIAL_PHASE_UNKNOWN (-1)
/* Not a wire v1 phase: the value the protocol gives its validation passes
 * inside the daemon (protocol/protocol.h, "next after enum mead_phase").
 * The daemon sends them as MEAD_PHASE_TEST; trials a publisher does send
 * with this value are scored apart from the test (docs/readout.md). */
#define MEAD_TRIAL_PHASE_VALIDATION (MEAD_PHASE_REST + 1)

struct mead_trial {
	int64_t index;          /* trial_start's value */
	uint64_t start_sample;  /* window [start_sample, end_sample) */
	uint64_t end_sample;
	int32_t phase;          /* last phase event before trial_start, or MEAD_TRIAL_PHASE_UNKNOWN */
	uint32_t block;         /* increments at every phase event: a new block of trials */
	int32_t label;          /* -1: no label event */
	int64_t item;           /* -1: no item event */
	bool lossy;             /* a seq gap may have taken spikes or events of this trial */
	uint32_t total_spikes;  /* in the window, all electrodes */
	uint32_t counts[MEAD_TRIALS_MAX_ELECTRODES];
};

struct mead_trials_options {
	uint32_t n_electrodes;  /* spikes on electrodes >= this are counted as out of range */
	/* A trial that ended waits for the spike stream to pass its end; with a
	 * silent spike stream, at most this many ended trials wait before the
	 * oldest is finalised anyway (0: 8). */
	uint32_t max_waiting;
	/* Buffered spikes are capped (0: 4M records); beyond it the oldest go. */
	uint32_t max_buffered_spikes;
};

struct mead_trials_stats {
	uint64_t messages[MEAD_KIND_COUNT + 1];   /* by kind */
	uint64_t seq_gaps[MEAD_KIND_COUNT + 1];   /* gaps seen */
	uint64_t lost[MEAD_KIND_COUNT + 1];       /* messages missing in the gaps */
	uint64_t seq_resets[MEAD_KIND_COUNT + 1]; /* seq went back: a publisher restart */
	uint64_t bad_messages;                    /* short payload, wrong record size */
	uint64_t trials_finished;                 /* handed out by mead_trials_next */
	uint64_t trials_dropped;                  /* started but never ended, or ended unstarted */
	uint64_t trials_forced;                   /* finalised by max_waiting, not by the spike stream */
	uint64_t spikes_out_of_range;             /* electrode >= n_electrodes */
	uint64_t spikes_evicted;                  /* dropped by the buffer cap */
	uint32_t sample_rate_hz;                  /* from run_start, 0 if none seen */
	bool run_started, run_ended;
};

struct mead_trials;

int mead_trials_new(const struct mead_trials_options *opt, struct mead_trials **ret);
void mead_trials_free(struct mead_trials *t);

/* Feed one message: hdr decoded (host order), payload = frame 2.  Returns 0,
 * or -EBADMSG when the payload does not match the header (counted; the
 * assembler stays usable). */
int mead_trials_feed(struct mead_trials *t, const struct mead_wire_header *hdr,
		     const void *payload, size_t len);

/* Pops the oldest finished trial into *out: 1 if there was one, else 0. */
int mead_trials_next(struct mead_trials *t, struct mead_trial *out);

/* End of input (source ended, signal): every ended trial is finalised with
 * the spikes that arrived; a trial still open is dropped. */
void mead_trials_flush(struct mead_trials *t);

void mead_trials_get_stats(const struct mead_trials *t, struct mead_trials_stats *ret);
