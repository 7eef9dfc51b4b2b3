/* SPDX-License-Identifier: MIT */
/*
 * Closed-loop stimulation: a spike on a trigger electrode is answered by a
 * pulse on the target electrode, as early as the loop can (the window after
 * the tick that read the spike), then the trigger rests for dead_ms.  It
 * is the simplest closed loop a lab runs (and what mead-bench closed-loop
 * times on a rig): one trial for the whole run, no trains drawn ahead.
 */
#include "protocol/protocol_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

struct respond_state {
	bool trigger[128];            /* electrodes whose spikes trigger */
	bool any;                     /* no trigger list: every electrode */
	uint16_t target;
	uint32_t dead_samples;
	uint64_t quiet_until;         /* no response before this sample */
	uint32_t duration_ms;
	uint64_t responses;
};

static void respond_free(void *state)
{
	free(state);
}

static bool respond_trial(const struct mead_protocol *p, uint64_t i, struct trial_desc *ret)
{
	const struct respond_state *s = p->state;
	if (i > 0)
		return false;
	*ret = (struct trial_desc){
		.phase = PHASE_NONE, .item = -1, .label = -1, .class_pos = -1,
		.duration_ms = s->duration_ms ? s->duration_ms : UINT32_MAX,
	};
	return true;
}

static void respond_fill(struct mead_protocol *p, uint64_t i, const struct trial_desc *t)
{
	(void)p;
	(void)i;
	(void)t;   /* nothing drawn ahead: the culture decides */
}

static void respond_react(struct mead_protocol *p, struct mead_tick_io *io)
{
	struct respond_state *s = p->state;
	const struct mead_frame *f = io->frame;
	if (!f || !p->in_trial)
		return;
	for (uint32_t i = 0; i < f->n_spikes; i++) {
		const struct mead_spike *sp = &f->spikes[i];
		if (sp->sample < s->quiet_until || !(s->any || (sp->electrode < 128 && s->trigger[sp->electrode])))
			continue;
		if (io->n_stim >= io->stim_capacity || !io->stim)
			return;
		io->stim[io->n_stim++] = (struct mead_stim_pulse){
			.sample = io->first_sample, .electrode = s->target,
			.amplitude_ua = (float)p->stim.amplitude_ua, .phase_us = p->stim.phase_us,
			.interphase_us = p->stim.interphase_us,
		};
		s->quiet_until = sp->sample + s->dead_samples;
		s->responses++;
		return;   /* one response per window */
	}
}

static int respond_describe(const struct mead_protocol *p, char *buf, size_t len)
{
	const struct respond_state *s = p->state;
	return snprintf(buf, len, ", \"target\": %u, \"responses\": %llu", s->target, (unsigned long long)s->responses);
}

static const struct protocol_kind respond_kind = {
	.name = "respond",
	.trial = respond_trial,
	.fill = respond_fill,
	.react = respond_react,
	.free = respond_free,
	.describe = respond_describe,
};

int proto_respond_init(struct mead_protocol *p, const struct mead_protocol_config *cfg,
		       const struct mead_protocol_env *env, char *err, size_t err_len)
{
	const struct mead_protocol_respond_config *c = &cfg->respond;
	const struct mead_layout_view *L = env->layout;
	struct respond_state *s = calloc(1, sizeof(*s));
	if (!s) {
		mead_set_err(err, err_len, "out of memory");
		return -ENOMEM;
	}
	p->kind = &respond_kind;
	p->state = s;
	if (c->target >= L->count || c->target >= 128) {
		mead_set_err(err, err_len, "protocol.respond.target: electrode %u does not exist (%u electrodes)",
			     c->target, L->count);
		return -EINVAL;
	}
	if (L->electrodes[c->target].excluded) {
		mead_set_err(err, err_len, "protocol.respond.target: electrode %u (%s) is excluded from stimulation",
			     c->target, L->electrodes[c->target].label);
		return -EINVAL;
	}
	for (uint32_t k = 0; k < c->trigger.n; k++) {
		uint32_t e = c->trigger.v[k];
		if (e >= L->count || e >= 128) {
			mead_set_err(err, err_len, "protocol.respond.trigger: electrode %u does not exist (%u electrodes)",
				     e, L->count);
			return -EINVAL;
		}
		s->trigger[e] = true;
	}
	s->any = c->trigger.n == 0;
	s->target = (uint16_t)c->target;
	s->dead_samples = (uint32_t)((uint64_t)c->dead_ms * env->sample_rate_hz / 1000u);
	s->duration_ms = c->duration_ms;
	proto_mask_add(p, s->target);
	p->n_trials = 1;
	p->max_cells = 1;
	p->max_duration_ms = 1;      /* nothing drawn ahead: no trial buffers to speak of */
	p->min_duration_ms = s->duration_ms ? s->duration_ms : UINT32_MAX;
	/* at most one response per dead time */
	p->max_rate_hz = c->dead_ms ? 1000.0 / c->dead_ms : 1000.0;
	p->stim = c->stim;
	return 0;
}
