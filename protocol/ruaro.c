/* SPDX-License-Identifier: MIT */
/*
 * The Ruaro tetanisation experiment: probes of two L-shaped patterns
 * ("regL": left column + bottom row; "upsL": top row + right column of the
 * layout), a tetanus of Poisson input on regL with plasticity on, then the
 * same probes again.  A probe trial is probe_delay_ms of silence, then
 * burst_ms during which every pattern electrode fires every ms.
 */
#include "protocol/protocol_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STREAM_TETANUS 0x74657461ull   /* "teta" */
#define MAX_PATTERN 256

enum { PATTERN_REGL = 0, PATTERN_UPSL = 1, CONTENT_TETANUS = 2 };

struct ruaro_state {
	struct mead_spike_encoder *enc;   /* NULL without tetanus */
	uint16_t pat[2][MAX_PATTERN];
	uint32_t n_pat[2];
	uint32_t probes, probe_ms, delay_ms, burst_ms, tetanus_trials, tetanus_ms;
};

static void ruaro_free(void *state)
{
	struct ruaro_state *s = state;
	if (!s)
		return;
	mead_spike_encoder_free(s->enc);
	free(s);
}

static bool ruaro_trial(const struct mead_protocol *p, uint64_t i, struct trial_desc *ret)
{
	const struct ruaro_state *s = p->state;
	uint64_t probe_block = 2ull * s->probes;
	struct trial_desc t = { .label = -1, .class_pos = -1, .learning_ctl = true };
	if (i < probe_block || (i >= probe_block + s->tetanus_trials && i < 2 * probe_block + s->tetanus_trials)) {
		uint64_t j = i < probe_block ? i : i - probe_block - s->tetanus_trials;
		t.phase = MEAD_PHASE_TEST;
		t.content = (uint32_t)(j % 2);
		t.item = (int32_t)t.content;
		t.duration_ms = s->probe_ms;
	} else if (i < probe_block + s->tetanus_trials) {
		t.phase = MEAD_PHASE_TRAIN;
		t.flags = TRIAL_LEARNING;
		t.content = CONTENT_TETANUS;
		t.item = PATTERN_REGL;
		t.duration_ms = s->tetanus_ms;
	} else {
		return false;
	}
	*ret = t;
	return true;
}

static void ruaro_fill(struct mead_protocol *p, uint64_t i, const struct trial_desc *t)
{
	const struct ruaro_state *s = p->state;
	if (t->content == CONTENT_TETANUS) {
		struct mead_rng rng;
		mead_rng_seed_stream(&rng, p->seed, STREAM_TETANUS + i);
		for (uint32_t k = 0; k < s->n_pat[PATTERN_REGL]; k++) {
			uint32_t n = mead_spike_encoder_draw(s->enc, 0, &rng, p->scratch);
			for (uint32_t j = 0; j < n; j++)
				proto_add_spike(p, p->scratch[j], s->pat[PATTERN_REGL][k]);
		}
		return;
	}
	uint32_t end = s->delay_ms + s->burst_ms;
	if (end > s->probe_ms)
		end = s->probe_ms;
	for (uint32_t ms = s->delay_ms; ms < end; ms++)
		for (uint32_t k = 0; k < s->n_pat[t->content]; k++)
			proto_add_spike(p, (uint16_t)ms, s->pat[t->content][k]);
}

static const struct protocol_kind ruaro_kind = {
	.name = "ruaro",
	.trial = ruaro_trial,
	.fill = ruaro_fill,
	.free = ruaro_free,
};

static void add_el(struct mead_protocol *p, struct ruaro_state *s, int pat, uint32_t row, uint32_t col)
{
	uint16_t e = proto_electrode_at(p->layout, row, col, true);
	if (e == NO_ELECTRODE || s->n_pat[pat] >= MAX_PATTERN)
		return;
	for (uint32_t k = 0; k < s->n_pat[pat]; k++)
		if (s->pat[pat][k] == e)
			return;
	s->pat[pat][s->n_pat[pat]++] = e;
	proto_mask_add(p, e);
}

int proto_ruaro_init(struct mead_protocol *p, const struct mead_protocol_config *cfg,
		     const struct mead_protocol_env *env, char *err, size_t err_len)
{
	const struct mead_protocol_ruaro_config *c = &cfg->ruaro;
	const struct mead_layout_view *L = env->layout;
	struct ruaro_state *s = calloc(1, sizeof(*s));
	if (!s) {
		mead_set_err(err, err_len, "out of memory");
		return -ENOMEM;
	}
	p->kind = &ruaro_kind;
	p->state = s;
	if (L->rows < 2 || L->cols < 2) {
		mead_set_err(err, err_len, "protocol.ruaro: the L patterns need a layout of at least 2x2");
		return -EINVAL;
	}
	if (c->probes == 0 || c->probe_ms == 0 || c->burst_ms == 0 || c->tetanus_ms == 0) {
		mead_set_err(err, err_len, "protocol.ruaro: probes, probe_ms, burst_ms and tetanus_ms must be at least 1");
		return -EINVAL;
	}
	if (c->probe_delay_ms >= c->probe_ms) {
		mead_set_err(err, err_len, "protocol.ruaro.probe_delay_ms: %u ms leaves no burst in a %u ms probe",
			      c->probe_delay_ms, c->probe_ms);
		return -EINVAL;
	}
	for (uint32_t r = 0; r < L->rows; r++)
		add_el(p, s, PATTERN_REGL, r, 0);
	for (uint32_t col = 0; col < L->cols; col++)
		add_el(p, s, PATTERN_REGL, L->rows - 1, col);
	for (uint32_t col = 0; col < L->cols; col++)
		add_el(p, s, PATTERN_UPSL, 0, col);
	for (uint32_t r = 0; r < L->rows; r++)
		add_el(p, s, PATTERN_UPSL, r, L->cols - 1);
	if (!s->n_pat[0] || !s->n_pat[1]) {
		mead_set_err(err, err_len, "protocol.ruaro: a pattern has no stimulable electrode in this layout");
		return -EINVAL;
	}
	s->probes = c->probes;
	s->probe_ms = c->probe_ms;
	s->delay_ms = c->probe_delay_ms;
	s->burst_ms = c->burst_ms;
	s->tetanus_trials = c->tetanus_trials;
	s->tetanus_ms = c->tetanus_ms;
	if (c->tetanus_trials) {
		int r = mead_spike_encoder_new(MEAD_ENCODER_POISSON, c->tetanus_ms, &c->tetanus_rate_hz, 1, &s->enc,
					       err, err_len);
		if (r < 0)
			return r;
	}
	p->n_trials = 4ull * c->probes + c->tetanus_trials;
	p->max_cells = s->n_pat[0] > s->n_pat[1] ? s->n_pat[0] : s->n_pat[1];
	p->max_duration_ms = c->tetanus_trials && c->tetanus_ms > c->probe_ms ? c->tetanus_ms : c->probe_ms;
	p->min_duration_ms = c->tetanus_trials && c->tetanus_ms < c->probe_ms ? c->tetanus_ms : c->probe_ms;
	p->max_rate_hz = 1000.0;   /* the probe burst fires every ms */
	p->stim = c->stim;
	p->reset_between = c->reset_between_trials;
	p->reset_rest_ms = 0;
	p->sample_end = true;
	return 0;
}
