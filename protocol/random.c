/* SPDX-License-Identifier: MIT */
/*
 * Random patterned stimulation, to keep a culture (or the twin) active:
 * every pattern_ms a new set of N electrodes is drawn from the pool and
 * each fires at rate_hz for the pattern's length.  Each pattern is a trial
 * (TRIAL_START/END, ITEM = pattern index) so subscribers can align to it.
 */
#include "protocol/protocol_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STREAM_PATTERN 0x72616e646f6d0000ull   /* "random" << 16 */

struct random_state {
	struct mead_spike_encoder *enc;
	uint16_t *pool, *work;
	uint32_t n_pool, n_pick, pattern_ms;
};

static void random_free(void *state)
{
	struct random_state *s = state;
	if (!s)
		return;
	mead_spike_encoder_free(s->enc);
	free(s->pool);
	free(s->work);
	free(s);
}

static bool random_trial(const struct mead_protocol *p, uint64_t i, struct trial_desc *ret)
{
	const struct random_state *s = p->state;
	if (i >= p->n_trials)
		return false;
	struct trial_desc t = {
		.phase = PHASE_NONE,
		.item = (int32_t)(i & INT32_MAX),
		.label = -1,
		.class_pos = -1,
		.duration_ms = s->pattern_ms,
	};
	*ret = t;
	return true;
}

static void random_fill(struct mead_protocol *p, uint64_t i, const struct trial_desc *t)
{
	struct random_state *s = p->state;
	struct mead_rng rng;
	(void)t;
	mead_rng_seed_stream(&rng, p->seed, STREAM_PATTERN + i);
	memcpy(s->work, s->pool, s->n_pool * sizeof(*s->work));
	/* partial Fisher-Yates: the first n_pick entries are the pattern */
	for (uint32_t k = 0; k < s->n_pick; k++) {
		uint32_t j = k + mead_rng_below(&rng, s->n_pool - k);
		uint16_t tmp = s->work[k];
		s->work[k] = s->work[j];
		s->work[j] = tmp;
	}
	for (uint32_t k = 0; k < s->n_pick; k++) {
		uint32_t n = mead_spike_encoder_draw(s->enc, 0, &rng, p->scratch);
		for (uint32_t j = 0; j < n; j++)
			proto_add_spike(p, p->scratch[j], s->work[k]);
	}
}

static const struct protocol_kind random_kind = {
	.name = "random",
	.trial = random_trial,
	.fill = random_fill,
	.free = random_free,
};

int proto_random_init(struct mead_protocol *p, const struct mead_protocol_config *cfg,
		      const struct mead_protocol_env *env, char *err, size_t err_len)
{
	const struct mead_protocol_random_config *c = &cfg->random;
	const struct mead_layout_view *L = env->layout;
	struct random_state *s = calloc(1, sizeof(*s));
	if (!s) {
		mead_set_err(err, err_len, "out of memory");
		return -ENOMEM;
	}
	p->kind = &random_kind;
	p->state = s;
	s->pool = calloc(L->count, sizeof(*s->pool));
	s->work = calloc(L->count, sizeof(*s->work));
	if (!s->pool || !s->work) {
		mead_set_err(err, err_len, "out of memory");
		return -ENOMEM;
	}
	if (c->pool.n) {
		for (uint32_t k = 0; k < c->pool.n; k++) {
			uint32_t e = c->pool.v[k];
			if (e >= L->count || e >= 128) {
				mead_set_err(err, err_len, "protocol.random.pool: electrode %u does not exist (%u electrodes)",
					      e, L->count);
				return -EINVAL;
			}
			if (L->electrodes[e].excluded) {
				mead_set_err(err, err_len, "protocol.random.pool: electrode %u (%s) is excluded from "
					      "stimulation", e, L->electrodes[e].label);
				return -EINVAL;
			}
			for (uint32_t j = 0; j < s->n_pool; j++)
				if (s->pool[j] == e) {
					mead_set_err(err, err_len, "protocol.random.pool: electrode %u listed twice", e);
					return -EINVAL;
				}
			s->pool[s->n_pool++] = (uint16_t)e;
		}
	} else {
		for (uint32_t e = 0; e < L->count && e < 128; e++)
			if (!L->electrodes[e].excluded)
				s->pool[s->n_pool++] = (uint16_t)e;
	}
	if (c->electrodes == 0 || c->electrodes > s->n_pool) {
		mead_set_err(err, err_len, "protocol.random.electrodes: %u per pattern, the pool holds %u",
			      c->electrodes, s->n_pool);
		return -EINVAL;
	}
	if (c->pattern_ms == 0) {
		mead_set_err(err, err_len, "protocol.random.pattern_ms: must be at least 1");
		return -EINVAL;
	}
	for (uint32_t k = 0; k < s->n_pool; k++)
		proto_mask_add(p, s->pool[k]);
	s->n_pick = c->electrodes;
	s->pattern_ms = c->pattern_ms;
	int r = mead_spike_encoder_new(c->encoder == MEAD_PROTOCOL_ENCODER_REFERENCE ? MEAD_ENCODER_REFERENCE
										       : MEAD_ENCODER_POISSON,
				       c->pattern_ms, &c->rate_hz, 1, &s->enc, err, err_len);
	if (r < 0)
		return r;
	/* a partial last pattern is rounded up to a whole one */
	p->n_trials = c->duration_ms ? ((uint64_t)c->duration_ms + c->pattern_ms - 1) / c->pattern_ms : UINT64_MAX;
	p->max_cells = s->n_pick;
	p->max_duration_ms = c->pattern_ms;
	p->min_duration_ms = c->pattern_ms;
	p->max_rate_hz = c->rate_hz;
	p->stim = c->stim;
	p->reset_between = false;
	p->sample_end = false;
	return 0;
}
