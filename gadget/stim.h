/* SPDX-License-Identifier: MIT */
/*
 * The reference device's stimulator: ONE current source switched between
 * electrodes, so pulses play one at a time in time order.  A pulse keeps the
 * stimulator busy for 2 x phase + interphase, rounded up to whole samples.
 * Pure bookkeeping over device sample numbers; the caller says what "now"
 * is and turns the records into SR packets.
 */
#ifndef MEAD_GADGET_STIM_H
#define MEAD_GADGET_STIM_H

#include <stdbool.h>
#include <stdint.h>

#include "gadget/proto.h"

struct mg_stim_limits {
	uint16_t channels;
	uint32_t rate;
	uint32_t max_na, max_phase_us, max_interphase_us;
	uint64_t max_lead;        /* samples a start may lie ahead of its arrival */
};

struct mg_stim_entry {
	struct mg_pulse p;
	uint64_t start, end;      /* planned: the stimulator is busy in [start, end) */
	uint8_t status;           /* MEAD_USB_ST_DELIVERED or MEAD_USB_ST_LATE */
	bool reported;            /* it has started and its record went out */
};

struct mg_stim {
	struct mg_stim_limits lim;
	struct mg_stim_entry *q;  /* accepted pulses by start; never overlapping */
	uint32_t cap, n;
	uint64_t done_upto;       /* every pulse starting before this is reported */
};

int mg_stim_init(struct mg_stim *s, const struct mg_stim_limits *lim, uint32_t cap);
void mg_stim_free(struct mg_stim *s);
/* Empty queue, sample 0: a new START. */
void mg_stim_reset(struct mg_stim *s);

/* Samples the stimulator is busy with one pulse; at least 1. */
uint64_t mg_stim_busy(const struct mg_stim_limits *lim, uint32_t phase_us, uint32_t interphase_us);
bool mg_stim_in_range(const struct mg_stim_limits *lim, const struct mg_pulse *p, uint64_t now);

/*
 * A pulse arriving at device sample `now`.  Accepted: returns MEAD_USB_ST_DELIVERED
 * (it will start at its sample) or MEAD_USB_ST_LATE (its sample had passed; it
 * starts at `now`), and *start says when.  Refused: returns MEAD_USB_ST_RANGE,
 * MEAD_USB_ST_OVERLAP or MEAD_USB_ST_QUEUE_FULL, checked in that order; the caller
 * reports it at once.
 */
unsigned mg_stim_offer(struct mg_stim *s, const struct mg_pulse *p, uint64_t now, uint64_t *start);

/*
 * The sample clock reached `upto`: every pulse starting before it has
 * started; one record each (status 0 or 1) in time order, at most cap (the
 * rest come with the next call).  Pulses that ended leave the queue.
 */
uint32_t mg_stim_advance(struct mg_stim *s, uint64_t upto, struct mg_record *out, uint32_t cap);

/*
 * Outputs stop at `now` (SX, STOP, watchdog): pulses that started before it
 * are reported as started, the others dropped (status 4, started 0), and the
 * queue is empty afterwards.  *cut: a pulse was playing at `now`.  Returns
 * the records written; cap must be at least s->n.
 */
uint32_t mg_stim_cancel(struct mg_stim *s, uint64_t now, struct mg_record *out, uint32_t cap, bool *cut);

/* A pulse plays at sample `at`. */
bool mg_stim_active(const struct mg_stim *s, uint64_t at);

#endif
