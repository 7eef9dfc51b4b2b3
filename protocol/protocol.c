/* SPDX-License-Identifier: MIT */
#include "protocol/protocol_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint16_t proto_electrode_at(const struct mead_layout_view *l, uint32_t row, uint32_t col, bool skip_excluded)
{
	for (uint32_t i = 0; i < l->count && i < NO_ELECTRODE; i++) {
		const struct mead_electrode *e = &l->electrodes[i];
		if (e->row == row && e->col == col) {
			if (skip_excluded && e->excluded)
				return NO_ELECTRODE;
			return (uint16_t)i;
		}
	}
	return NO_ELECTRODE;
}

int proto_alloc_buffers(struct mead_protocol *p, char *err, size_t err_len)
{
	uint64_t cap = (uint64_t)p->max_cells * p->max_duration_ms;
	if (cap == 0)
		cap = 1;
	if (cap > (1u << 26)) {
		mead_set_err(err, err_len, "%u electrodes over %u ms is too many pulses for one trial",
			      p->max_cells, p->max_duration_ms);
		return -E2BIG;
	}
	p->spike_capacity = (uint32_t)cap;
	p->spikes = calloc(cap, sizeof(*p->spikes));
	p->sorted = calloc(cap, sizeof(*p->sorted));
	p->bucket = calloc((size_t)p->max_duration_ms + 1, sizeof(*p->bucket));
	p->scratch = calloc((size_t)p->max_duration_ms + 1, sizeof(*p->scratch));
	if (!p->spikes || !p->sorted || !p->bucket || !p->scratch) {
		mead_set_err(err, err_len, "out of memory for the protocol's trial buffers");
		return -ENOMEM;
	}
	return 0;
}

void mead_protocol_free(struct mead_protocol *p)
{
	if (!p)
		return;
	if (p->kind && p->kind->free)
		p->kind->free(p->state);
	free(p->spikes);
	free(p->sorted);
	free(p->bucket);
	free(p->scratch);
	free(p->electrode_class);
	free(p);
}

/* Label electrodes per class and their unit counts: the decision rule's
 * denominators.  A class whose cells hold no unit scores 0. */
static int setup_scoring(struct mead_protocol *p, char *err, size_t err_len)
{
	if (p->n_classes < 2)
		return 0;
	p->electrode_class = calloc(p->layout->count ? p->layout->count : 1, 1);
	if (!p->electrode_class) {
		mead_set_err(err, err_len, "out of memory");
		return -ENOMEM;
	}
	bool any = false;
	for (uint32_t c = 0; c < p->n_classes; c++) {
		double units = 0;
		for (uint32_t k = 0; k < p->n_label_el[c]; k++) {
			uint16_t e = p->label_el[c][k];
			if (e == NO_ELECTRODE || e >= p->layout->count)
				continue;
			p->electrode_class[e] = (uint8_t)(c + 1);
			units += p->units_per_electrode ? p->units_per_electrode[e] : 0.0;
			any = true;
		}
		/* hardware knows no units: raw counts decide */
		p->label_units[c] = p->units_per_electrode ? units : 1.0;
	}
	p->can_score = any;
	return 0;
}

int mead_protocol_new(const struct mead_protocol_config *cfg, const char *name,
		      const struct mead_protocol_env *env, struct mead_protocol **ret,
		      char *err, size_t err_len)
{
	if (!cfg || !name || !env || !ret) {
		mead_set_err(err, err_len, "protocol: missing argument");
		return -EINVAL;
	}
	if (!env->layout || !env->layout->electrodes || env->layout->count == 0) {
		mead_set_err(err, err_len, "protocol %s: no electrode layout", name);
		return -EINVAL;
	}
	if (env->sample_rate_hz < 1000) {
		mead_set_err(err, err_len, "protocol %s: sample rate %u Hz: pulses are placed on a 1 ms grid, "
			      "which needs at least 1000 Hz", name, env->sample_rate_hz);
		return -EINVAL;
	}
	if (env->period_ns == 0) {
		mead_set_err(err, err_len, "protocol %s: tick period of 0 ns", name);
		return -EINVAL;
	}

	struct mead_protocol *p = calloc(1, sizeof(*p));
	if (!p) {
		mead_set_err(err, err_len, "out of memory");
		return -ENOMEM;
	}
	p->layout = env->layout;
	p->sample_rate_hz = env->sample_rate_hz;
	p->period_ns = env->period_ns;
	p->cap_flags = env->cap_flags;
	p->units_per_electrode = env->units_per_electrode;
	p->seed = cfg->seed;
	p->cur_phase = PHASE_NONE;
	p->learning = -1;
	p->last_val = -1;
	p->best_val = -1;

	int r;
	if (strcmp(name, "mnist") == 0)
		r = proto_mnist_init(p, cfg, env, err, err_len);
	else if (strcmp(name, "random") == 0)
		r = proto_random_init(p, cfg, env, err, err_len);
	else if (strcmp(name, "ruaro") == 0)
		r = proto_ruaro_init(p, cfg, env, err, err_len);
	else if (strcmp(name, "respond") == 0)
		r = proto_respond_init(p, cfg, env, err, err_len);
	else {
		mead_set_err(err, err_len, "unknown protocol \"%s\": expected mnist, random, ruaro or respond", name);
		r = -ENOENT;
	}
	if (r == 0 && (uint64_t)p->min_duration_ms * 1000000ull < p->period_ns) {
		mead_set_err(err, err_len, "protocol %s: a tick period of %u ns is longer than its shortest "
			      "trial (%u ms)", name, p->period_ns, p->min_duration_ms);
		r = -EINVAL;
	}
	if (r == 0)
		r = proto_alloc_buffers(p, err, err_len);
	if (r == 0)
		r = setup_scoring(p, err, err_len);
	if (r < 0) {
		mead_protocol_free(p);
		return r;
	}
	*ret = p;
	return 0;
}

static inline uint64_t ms_to_samples(const struct mead_protocol *p, uint64_t ms)
{
	return ms * p->sample_rate_hz / 1000u;
}

static int push_event(struct mead_tick_io *io, uint64_t sample, uint32_t type, int64_t value)
{
	if (io->n_events >= io->event_capacity || !io->events)
		return -ENOBUFS;
	io->events[io->n_events++] = (struct mead_event){ .sample = sample, .type = type, .value = (int32_t)value };
	return 0;
}

static int push_ctl(struct mead_tick_io *io, uint32_t op, int64_t value)
{
	if (io->n_ctl >= MEAD_PROTOCOL_MAX_CTL)
		return -ENOBUFS;
	io->ctl[io->n_ctl].op = op;
	io->ctl[io->n_ctl].value = value;
	io->n_ctl++;
	return 0;
}

/* Counting sort on ms: stable, so spikes of one ms keep the kind's cell
 * order; no allocation. */
static void sort_spikes(struct mead_protocol *p, uint32_t duration_ms)
{
	uint32_t *b = p->bucket;
	memset(b, 0, ((size_t)duration_ms + 1) * sizeof(*b));
	for (uint32_t i = 0; i < p->n_spikes; i++)
		b[p->spikes[i].ms + 1]++;
	for (uint32_t m = 1; m <= duration_ms; m++)
		b[m] += b[m - 1];
	for (uint32_t i = 0; i < p->n_spikes; i++)
		p->sorted[b[p->spikes[i].ms]++] = p->spikes[i];
}

static int32_t predict(const struct mead_protocol *p)
{
	int32_t best = -1;
	double best_score = -1.0;
	for (uint32_t c = 0; c < p->n_classes; c++) {
		double s = p->label_units[c] > 0 ? (double)p->counts[c] / p->label_units[c] : 0.0;
		/* strict: ties go to the lowest class, as an argmax does */
		if (s > best_score) {
			best_score = s;
			best = (int32_t)c;
		}
	}
	return best;
}

static int begin_trial(struct mead_protocol *p, struct mead_tick_io *io, uint64_t f)
{
	const struct trial_desc *t = &p->td;
	int r = 0;

	if (t->phase != PHASE_NONE && t->phase != p->cur_phase) {
		if ((t->phase == MEAD_PHASE_TEST || t->phase == MEAD_PROTOCOL_PHASE_READOUT) && p->snapshot_saved &&
		    !p->restored) {
			/* the test phase sees the best validated weights */
			r |= push_ctl(io, MEAD_CTL_SNAPSHOT_RESTORE, 0);
			p->restored = true;
		}
		/* wire v1 knows train, test and rest: validation trials are test
		 * trials on the wire (label and learning off); the held-out test
		 * block is the last test block of the run (docs/protocols.md). */
		r |= push_event(io, f, MEAD_EVENT_PHASE,
				t->phase == MEAD_PROTOCOL_PHASE_VALIDATION || t->phase == MEAD_PROTOCOL_PHASE_READOUT
					? MEAD_PHASE_TEST
					: t->phase);
		p->cur_phase = t->phase;
	}
	if (p->reset_between && (p->cap_flags & MEAD_CAP_RESETTABLE))
		r |= push_ctl(io, MEAD_CTL_RESET_STATE, 0);
	if (t->learning_ctl) {
		int want = (t->flags & TRIAL_LEARNING) ? 1 : 0;
		if (want != p->learning) {
			r |= push_ctl(io, MEAD_CTL_LEARNING, want);
			p->learning = want;
		}
	}
	r |= push_event(io, f, MEAD_EVENT_TRIAL_START, (int64_t)(p->trial & INT32_MAX));
	if (t->item >= 0)
		r |= push_event(io, f, MEAD_EVENT_ITEM, t->item);
	if (t->label >= 0)
		r |= push_event(io, f, MEAD_EVENT_LABEL, t->label);

	p->n_spikes = 0;
	p->cursor = 0;
	p->kind->fill(p, p->plan_pos, t);
	/* the buffers hold max_duration_ms: a kind that draws nothing ahead
	 * (respond) may run one trial far longer */
	sort_spikes(p, t->duration_ms < p->max_duration_ms ? t->duration_ms : p->max_duration_ms);
	memset(p->counts, 0, sizeof(p->counts));

	p->in_trial = true;
	p->start_sample = f;
	p->end_sample = f + ms_to_samples(p, t->duration_ms);
	return r ? -ENOBUFS : 0;
}

static int end_trial(struct mead_protocol *p, struct mead_tick_io *io)
{
	const struct trial_desc *t = &p->td;
	uint64_t e = p->end_sample;
	int r = 0;

	r |= push_event(io, e, MEAD_EVENT_TRIAL_END, (int64_t)(p->trial & INT32_MAX));
	if (p->sample_end)
		r |= push_ctl(io, MEAD_CTL_SAMPLE_END, 0);

	if ((t->flags & TRIAL_SCORED) && p->can_score && t->class_pos >= 0) {
		bool ok = predict(p) == t->class_pos;
		if (t->phase == MEAD_PROTOCOL_PHASE_VALIDATION) {
			p->val_n++;
			p->val_correct += ok;
		} else if (t->phase == MEAD_PHASE_TEST) {
			p->test_n++;
			p->test_correct += ok;
		}
	}
	/* A screened pass goes on to the whole validation set only while its
	 * screen does as well as the best whole pass so far: most passes of a
	 * swinging culture are far from the best, and a screen shows it at a
	 * fraction of the cost (docs/protocols.md). */
	uint64_t next_pos = p->plan_pos + 1;
	if ((t->flags & TRIAL_SCREEN_END) && p->val_n > 0 &&
	    (double)p->val_correct / p->val_n < p->best_val) {
		p->screened_out++;
		p->val_n = p->val_correct = 0;
		next_pos = t->skip_to;
	}
	if ((t->flags & TRIAL_BLOCK_END) && p->val_n > 0) {
		double acc = (double)p->val_correct / p->val_n;
		p->evaluations++;
		p->last_val = acc;
		if (acc > p->best_val) {
			p->best_val = acc;
			/* weights are final here: the pass ran with learning off and
			 * SAMPLE_END (scaling) was sent just before */
			if (p->cap_flags & MEAD_CAP_PLASTICITY) {
				r |= push_ctl(io, MEAD_CTL_SNAPSHOT_SAVE, 0);
				p->snapshot_saved = true;
			}
		}
		p->val_n = p->val_correct = 0;
	}

	p->in_trial = false;
	uint32_t rest = t->rest_ms;
	p->trial++;
	p->plan_pos = next_pos;
	if (p->plan_pos >= p->n_trials || !p->kind->trial(p, p->plan_pos, &p->td)) {
		p->finished = true;
		return r ? -ENOBUFS : 0;
	}
	if (p->reset_between && !(p->cap_flags & MEAD_CAP_RESETTABLE))
		rest += p->reset_rest_ms;
	p->next_start = e + ms_to_samples(p, rest);
	/* A rest within a block is just the gap before the next trial_start; a
	 * rest between blocks is announced, so every PHASE event opens a block. */
	if (rest > 0 && p->cur_phase != MEAD_PHASE_REST && p->td.phase != p->cur_phase) {
		r |= push_event(io, e, MEAD_EVENT_PHASE, MEAD_PHASE_REST);
		p->cur_phase = MEAD_PHASE_REST;
	}
	return r ? -ENOBUFS : 0;
}

static void score_frame(struct mead_protocol *p, const struct mead_frame *fr)
{
	if (!fr || !p->in_trial || !(p->td.flags & TRIAL_SCORED) || !p->can_score)
		return;
	uint32_t n = fr->n_spikes < fr->spike_capacity ? fr->n_spikes : fr->spike_capacity;
	for (uint32_t i = 0; i < n; i++) {
		const struct mead_spike *s = &fr->spikes[i];
		if (s->sample < p->start_sample || s->sample >= p->end_sample || s->electrode >= p->layout->count)
			continue;
		uint8_t c = p->electrode_class[s->electrode];
		if (c)
			p->counts[c - 1]++;
	}
}

int mead_protocol_tick(struct mead_protocol *p, struct mead_tick_io *io)
{
	io->n_ctl = 0;
	io->n_stim = 0;
	io->n_events = 0;
	if (p->finished) {
		io->finished = true;
		return 0;
	}
	const uint64_t f = io->first_sample;
	int r = 0;

	if (!p->started) {
		p->started = true;
		p->trial = 0;
		p->plan_pos = 0;
		if (p->n_trials == 0 || !p->kind->trial(p, 0, &p->td)) {
			p->finished = true;
			io->finished = true;
			return 0;
		}
		p->next_start = f;
	}

	score_frame(p, io->frame);

	/* at most one end and one begin per tick: the period is no longer
	 * than the shortest trial (checked in _new) */
	for (int guard = 0; guard < 4 && !p->finished; guard++) {
		int rr;
		if (p->in_trial) {
			if (f < p->end_sample)
				break;
			rr = end_trial(p, io);
		} else {
			if (f < p->next_start)
				break;
			rr = begin_trial(p, io, f);
		}
		if (rr < 0)
			r = rr;
	}

	if (p->in_trial) {
		const uint64_t lim = f + io->n_samples;
		const uint64_t end = p->end_sample < lim ? p->end_sample : lim;
		while (p->cursor < p->n_spikes) {
			const struct spike_ms *s = &p->sorted[p->cursor];
			uint64_t sample = p->start_sample + ms_to_samples(p, s->ms);
			if (sample >= end)
				break;
			if (io->n_stim >= io->stim_capacity || !io->stim) {
				r = -ENOBUFS;
				break;
			}
			struct mead_stim_pulse *o = &io->stim[io->n_stim++];
			o->sample = sample;
			o->electrode = s->electrode;
			o->flags = 0;
			o->amplitude_ua = (float)p->stim.amplitude_ua;
			o->phase_us = p->stim.phase_us;
			o->interphase_us = p->stim.interphase_us;
			p->cursor++;
		}
	}
	if (p->kind->react && !p->finished)
		p->kind->react(p, io);
	io->finished = p->finished;
	return r;
}

uint32_t mead_protocol_max_stim_per_tick(const struct mead_protocol *p)
{
	/* pulses sit on a 1 ms grid, one per electrode and ms */
	uint64_t ms = p->period_ns / 1000000u + 2;
	uint64_t n = ms * p->max_cells;
	return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

uint32_t mead_protocol_max_events_per_tick(const struct mead_protocol *p)
{
	(void)p;
	/* TRIAL_END + PHASE(rest) + PHASE + TRIAL_START + ITEM + LABEL */
	return 8;
}

int mead_protocol_bounds(const struct mead_protocol *p, struct mead_protocol_bounds *ret)
{
	if (!p || !ret)
		return -EINVAL;
	struct mead_protocol_bounds b = {
		.max_abs_amplitude_ua = (float)fabs(p->stim.amplitude_ua),
		.max_phase_us = p->stim.phase_us,
		.max_interphase_us = p->stim.interphase_us,
		.max_rate_hz = p->max_rate_hz,
		/* every kind draws its trains on a 1 ms grid with at least one
		 * step between spikes (encode.h) */
		.min_interval_us = 1000,
		.electrode_mask_lo = p->mask_lo,
		.electrode_mask_hi = p->mask_hi,
	};
	*ret = b;
	return 0;
}

int mead_protocol_results(const struct mead_protocol *p, struct mead_protocol_results *ret)
{
	if (!p || !ret)
		return -EINVAL;
	struct mead_protocol_results r = {
		.trial = p->trial + (p->in_trial ? 1 : 0),
		.n_trials = p->n_trials,
		.evaluations = p->evaluations,
		.screened_out = p->screened_out,
		.last_validation_accuracy = p->last_val,
		.best_validation_accuracy = p->best_val,
		.snapshot_saved = p->snapshot_saved,
		.test_trials = p->test_n,
		.test_correct = p->test_correct,
	};
	if (p->finished)
		r.trial = p->trial;
	*ret = r;
	return 0;
}

static const char *phase_name(int32_t ph)
{
	switch (ph) {
	case MEAD_PHASE_TRAIN: return "train";
	case MEAD_PHASE_TEST: return "test";
	case MEAD_PHASE_REST: return "rest";
	case MEAD_PROTOCOL_PHASE_VALIDATION: return "validation";
	case MEAD_PROTOCOL_PHASE_READOUT: return "readout";
	}
	return "none";
}

int mead_protocol_describe(const struct mead_protocol *p, char *buf, size_t len)
{
	if (!p || !buf || len == 0)
		return -EINVAL;
	struct mead_protocol_results res;
	mead_protocol_results(p, &res);
	int n = snprintf(buf, len, "{\"protocol\": \"%s\", \"state\": \"%s\", \"phase\": \"%s\", "
			 "\"trial\": %" PRIu64 ", \"trials\": ",
			 p->kind->name, p->finished ? "finished" : p->started ? "running" : "ready",
			 phase_name(p->cur_phase), res.trial);
	if (n < 0)
		return -EIO;
	size_t used = (size_t)n;
#define APPEND(...) do { \
		int k_ = snprintf(buf + (used < len ? used : len), used < len ? len - used : 0, __VA_ARGS__); \
		if (k_ < 0) \
			return -EIO; \
		used += (size_t)k_; \
	} while (0)
	if (p->n_trials == UINT64_MAX)
		APPEND("null");
	else
		APPEND("%" PRIu64, p->n_trials);
	if (p->n_classes >= 2 && p->can_score) {
		APPEND(", \"validation\": {\"evaluations\": %u, \"screened_out\": %u, \"last\": ", p->evaluations,
		       p->screened_out);
		if (p->last_val < 0)
			APPEND("null, \"best\": null");
		else
			APPEND("%.4f, \"best\": %.4f", p->last_val, p->best_val);
		APPEND(", \"snapshot\": %s}, \"test\": {\"trials\": %u, \"correct\": %u, \"accuracy\": ",
		       p->snapshot_saved ? "true" : "false", p->test_n, p->test_correct);
		if (p->test_n)
			APPEND("%.4f}", (double)p->test_correct / p->test_n);
		else
			APPEND("null}");
	}
	if (p->kind->describe) {
		int k = p->kind->describe(p, buf + (used < len ? used : len), used < len ? len - used : 0);
		if (k < 0)
			return k;
		used += (size_t)k;
	}
	APPEND("}");
#undef APPEND
	if (used >= len)
		return -ENOBUFS;
	return (int)used;
}
