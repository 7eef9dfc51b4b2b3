/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gadget/devclock.h"
#include "gadget/stim.h"

int mg_stim_init(struct mg_stim *s, const struct mg_stim_limits *lim, uint32_t cap)
{
	memset(s, 0, sizeof(*s));
	if (cap == 0 || lim->rate == 0)
		return -EINVAL;
	s->q = calloc(cap, sizeof(*s->q));
	if (!s->q)
		return -ENOMEM;
	s->lim = *lim;
	s->cap = cap;
	return 0;
}

void mg_stim_free(struct mg_stim *s)
{
	free(s->q);
	s->q = NULL;
	s->cap = s->n = 0;
}

void mg_stim_reset(struct mg_stim *s)
{
	s->n = 0;
	s->done_upto = 0;
}

uint64_t mg_stim_busy(const struct mg_stim_limits *lim, uint32_t phase_us, uint32_t interphase_us)
{
	uint64_t us = 2ull * phase_us + interphase_us;
	uint64_t n = mg_muldiv_ceil(us, lim->rate, 1000000u);
	return n ? n : 1;
}

bool mg_stim_in_range(const struct mg_stim_limits *lim, const struct mg_pulse *p, uint64_t now)
{
	uint32_t mag = p->amp_na < 0 ? (uint32_t)-(int64_t)p->amp_na : (uint32_t)p->amp_na;
	if (p->electrode >= lim->channels || p->flags != 0)
		return false;
	if (mag == 0 || mag > lim->max_na)
		return false;
	if (p->phase_us == 0 || p->phase_us > lim->max_phase_us || p->interphase_us > lim->max_interphase_us)
		return false;
	if (p->start > now && p->start - now > lim->max_lead)
		return false;
	return true;
}

/* Drops pulses that have started, been reported and ended by `now`. */
static void purge(struct mg_stim *s, uint64_t now)
{
	uint32_t k = 0;
	for (uint32_t i = 0; i < s->n; i++)
		if (!(s->q[i].reported && s->q[i].end <= now))
			s->q[k++] = s->q[i];
	s->n = k;
}

unsigned mg_stim_offer(struct mg_stim *s, const struct mg_pulse *p, uint64_t now, uint64_t *start)
{
	if (now < s->done_upto)
		now = s->done_upto;
	if (!mg_stim_in_range(&s->lim, p, now))
		return MEAD_USB_ST_RANGE;
	unsigned status = p->start < now ? MEAD_USB_ST_LATE : MEAD_USB_ST_DELIVERED;
	uint64_t b = p->start < now ? now : p->start;
	uint64_t e = b + mg_stim_busy(&s->lim, p->phase_us, p->interphase_us);
	for (uint32_t i = 0; i < s->n; i++)
		if (b < s->q[i].end && s->q[i].start < e)
			return MEAD_USB_ST_OVERLAP;
	purge(s, now);
	if (s->n >= s->cap)
		return MEAD_USB_ST_QUEUE_FULL;
	uint32_t at = s->n;
	for (uint32_t i = 0; i < s->n; i++) {
		if (s->q[i].start > b) {
			at = i;
			break;
		}
	}
	memmove(&s->q[at + 1], &s->q[at], (s->n - at) * sizeof(s->q[0]));
	s->q[at] = (struct mg_stim_entry){ .p = *p, .start = b, .end = e, .status = (uint8_t)status };
	s->n++;
	*start = b;
	return status;
}

static struct mg_record started_record(const struct mg_stim_entry *e)
{
	return (struct mg_record){
		.started = e->start,
		.cmd_seq = e->p.cmd_seq,
		.index = e->p.index,
		.status = e->status,
		.requested = e->p.start,
	};
}

uint32_t mg_stim_advance(struct mg_stim *s, uint64_t upto, struct mg_record *out, uint32_t cap)
{
	uint32_t n = 0;
	bool all = true;
	for (uint32_t i = 0; i < s->n; i++) {
		struct mg_stim_entry *e = &s->q[i];
		if (e->start >= upto)
			break;
		if (e->reported)
			continue;
		if (n == cap) {
			all = false;
			break;
		}
		out[n++] = started_record(e);
		e->reported = true;
	}
	if (all && upto > s->done_upto)
		s->done_upto = upto;
	purge(s, upto);
	return n;
}

uint32_t mg_stim_cancel(struct mg_stim *s, uint64_t now, struct mg_record *out, uint32_t cap, bool *cut)
{
	uint32_t n = 0;
	*cut = false;
	for (uint32_t i = 0; i < s->n; i++) {
		struct mg_stim_entry *e = &s->q[i];
		if (e->start < now) {
			if (e->end > now)
				*cut = true;
			if (!e->reported && n < cap)
				out[n++] = started_record(e);
		} else if (n < cap) {
			out[n++] = (struct mg_record){
				.started = 0,
				.cmd_seq = e->p.cmd_seq,
				.index = e->p.index,
				.status = MEAD_USB_ST_DROPPED,
				.requested = e->p.start,
			};
		}
	}
	s->n = 0;
	if (now > s->done_upto)
		s->done_upto = now;
	return n;
}

bool mg_stim_active(const struct mg_stim *s, uint64_t at)
{
	for (uint32_t i = 0; i < s->n; i++)
		if (s->q[i].start <= at && at < s->q[i].end)
			return true;
	return false;
}
