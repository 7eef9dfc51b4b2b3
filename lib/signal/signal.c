/* SPDX-License-Identifier: MIT */
#include "lib/signal/signal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

struct chan {
	float dc;                 /* slow baseline, removed before detection */
	bool dc_init;
	/* current noise window */
	double sum, sum2;
	uint32_t win_n;
	bool win_blanked;
	/* ring of window RMS values */
	uint32_t ring_pos, ring_count;
	float noise, thr;
	/* detection */
	bool in_search;
	int sign;                 /* -1 or +1 while searching */
	float peak;
	uint64_t peak_sample;
	uint64_t search_end;
	uint64_t dead_until;
	/* blanking */
	uint64_t blank_from, blank_until;
};

/* A blanking window not yet reported as a BLANK event. */
struct blank_note {
	uint64_t from, until;
	uint16_t electrode;
};
#define BLANK_NOTES 64

struct mead_sig {
	struct mead_sig_config cfg;
	struct blank_note notes[BLANK_NOTES];
	uint32_t n_notes;
	uint64_t notes_lost;
	uint32_t win_len, dead, peak_win, blank_pre, blank_post;
	float dc_alpha;
	struct chan *ch;
	float *rings;             /* channels x noise_windows */
	float *scratch;           /* noise_windows */
	uint16_t *electrode;      /* channels */
	uint64_t spikes, blanked;
};

void mead_sig_config_defaults(struct mead_sig_config *cfg, uint32_t channels, uint32_t rate_hz)
{
	*cfg = (struct mead_sig_config){
		.channels = channels,
		.sample_rate_hz = rate_hz,
		.threshold_k = 5.0,
		.polarity = MEAD_SIG_NEG,
		.dead_time_us = 1000,
		.peak_window_us = 500,
		.noise_window_us = 10000,
		.noise_windows = 500,
		.noise_percentile = 0.5,
		.warmup_windows = 10,
		.blank_us = 2000,
		.blank_pre_us = 0,
	};
}

int mead_sig_parse_polarity(const char *text, enum mead_sig_polarity *ret)
{
	if (!text)
		return -EINVAL;
	if (strcmp(text, "neg") == 0)
		*ret = MEAD_SIG_NEG;
	else if (strcmp(text, "pos") == 0)
		*ret = MEAD_SIG_POS;
	else if (strcmp(text, "both") == 0)
		*ret = MEAD_SIG_BOTH;
	else
		return -EINVAL;
	return 0;
}

static uint32_t us_to_samples(uint32_t us, uint32_t rate)
{
	return (uint32_t)(((uint64_t)us * rate + 999999u) / 1000000u);
}

struct mead_sig *mead_sig_new(const struct mead_sig_config *cfg)
{
	if (!cfg || cfg->channels == 0 || cfg->channels > 65535 || cfg->sample_rate_hz == 0 ||
	    !(cfg->threshold_k > 0) || cfg->noise_windows == 0 || cfg->noise_window_us == 0 ||
	    !(cfg->noise_percentile >= 0 && cfg->noise_percentile <= 1) ||
	    (cfg->polarity & MEAD_SIG_BOTH) == 0) {
		errno = EINVAL;
		return NULL;
	}
	struct mead_sig *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->cfg = *cfg;
	s->cfg.electrode_of_channel = NULL;
	s->ch = calloc(cfg->channels, sizeof(*s->ch));
	s->rings = calloc((size_t)cfg->channels * cfg->noise_windows, sizeof(float));
	s->scratch = calloc(cfg->noise_windows, sizeof(float));
	s->electrode = calloc(cfg->channels, sizeof(uint16_t));
	if (!s->ch || !s->rings || !s->scratch || !s->electrode) {
		mead_sig_free(s);
		errno = ENOMEM;
		return NULL;
	}
	for (uint32_t i = 0; i < cfg->channels; i++)
		s->electrode[i] = cfg->electrode_of_channel ? cfg->electrode_of_channel[i] : (uint16_t)i;
	uint32_t rate = cfg->sample_rate_hz;
	s->win_len = us_to_samples(cfg->noise_window_us, rate);
	if (s->win_len < 2)
		s->win_len = 2;
	s->dead = us_to_samples(cfg->dead_time_us, rate);
	s->peak_win = us_to_samples(cfg->peak_window_us, rate);
	if (s->peak_win < 1)
		s->peak_win = 1;
	s->blank_pre = us_to_samples(cfg->blank_pre_us, rate);
	s->blank_post = us_to_samples(cfg->blank_us, rate);
	/* 50 ms baseline time constant: far slower than a spike (~1 ms), so
	 * spike shapes pass, while amplifier offsets and drift are removed. */
	s->dc_alpha = (float)(1.0 / (0.05 * rate));
	if (s->dc_alpha > 1.0f)
		s->dc_alpha = 1.0f;
	mead_sig_reset(s);
	return s;
}

void mead_sig_free(struct mead_sig *s)
{
	if (!s)
		return;
	free(s->ch);
	free(s->rings);
	free(s->scratch);
	free(s->electrode);
	free(s);
}

void mead_sig_reset(struct mead_sig *s)
{
	memset(s->ch, 0, s->cfg.channels * sizeof(*s->ch));
	s->spikes = 0;
	s->blanked = 0;
	s->n_notes = 0;
}

void mead_sig_blank_pulse(struct mead_sig *s, uint32_t ch, uint64_t pulse_sample)
{
	uint64_t from = pulse_sample > s->blank_pre ? pulse_sample - s->blank_pre : 0;
	uint64_t until = pulse_sample + s->blank_post;
	uint32_t lo = ch == UINT32_MAX ? 0 : ch, hi = ch == UINT32_MAX ? s->cfg.channels : ch + 1;
	if (lo >= s->cfg.channels)
		return;
	if (until > from) {
		if (s->n_notes < BLANK_NOTES)
			s->notes[s->n_notes++] = (struct blank_note){ from, until,
				ch == UINT32_MAX ? MEAD_EVENT_ALL_ELECTRODES : s->electrode[ch] };
		else
			s->notes_lost++;
	}
	for (uint32_t i = lo; i < hi; i++) {
		struct chan *c = &s->ch[i];
		/* Overlapping or adjacent pulses merge into one window; a later
		 * separate pulse replaces a window already over. */
		if (c->blank_until >= from && c->blank_from <= until && c->blank_until != 0) {
			if (from < c->blank_from)
				c->blank_from = from;
			if (until > c->blank_until)
				c->blank_until = until;
		} else {
			c->blank_from = from;
			c->blank_until = until;
		}
	}
}

/* k-th smallest of a[0..n) (Hoare's selection, reorders a). */
static float select_kth(float *a, uint32_t n, uint32_t k)
{
	uint32_t lo = 0, hi = n - 1;
	while (lo < hi) {
		float pivot = a[lo + (hi - lo) / 2];
		uint32_t i = lo, j = hi;
		while (i <= j) {
			while (a[i] < pivot)
				i++;
			while (a[j] > pivot)
				j--;
			if (i <= j) {
				float t = a[i];
				a[i] = a[j];
				a[j] = t;
				i++;
				if (j == 0)
					break;
				j--;
			}
		}
		if (k <= j)
			hi = j;
		else if (k >= i)
			lo = i;
		else
			break;
	}
	return a[k];
}

static void close_window(struct mead_sig *s, uint32_t idx, struct chan *c)
{
	if (!c->win_blanked) {
		double n = c->win_n;
		double var = (c->sum2 - c->sum * c->sum / n) / n;
		float *ring = s->rings + (size_t)idx * s->cfg.noise_windows;
		ring[c->ring_pos] = (float)sqrt(var > 0 ? var : 0);
		c->ring_pos = (c->ring_pos + 1) % s->cfg.noise_windows;
		if (c->ring_count < s->cfg.noise_windows)
			c->ring_count++;
		if (c->ring_count >= s->cfg.warmup_windows && c->ring_count > 0) {
			memcpy(s->scratch, ring, c->ring_count * sizeof(float));
			uint32_t k = (uint32_t)(s->cfg.noise_percentile * (c->ring_count - 1) + 0.5);
			c->noise = select_kth(s->scratch, c->ring_count, k);
			c->thr = (float)(s->cfg.threshold_k * c->noise);
		}
	}
	c->sum = c->sum2 = 0;
	c->win_n = 0;
	c->win_blanked = false;
}

static void emit(struct mead_sig *s, uint32_t idx, struct chan *c, struct mead_frame *f)
{
	c->in_search = false;
	c->dead_until = c->peak_sample + s->dead;
	s->spikes++;
	if (f->n_spikes >= f->spike_capacity) {
		f->spikes_dropped++;
		return;
	}
	f->spikes[f->n_spikes++] = (struct mead_spike){
		.sample = c->peak_sample,
		.electrode = s->electrode[idx],
		.flags = 0,
		.amplitude_uv = c->peak,
	};
}

void mead_sig_process(struct mead_sig *s, uint64_t first_sample, const float *uv, uint32_t n,
		      struct mead_frame *f)
{
	const uint32_t C = s->cfg.channels;
	const bool neg = s->cfg.polarity & MEAD_SIG_NEG, pos = s->cfg.polarity & MEAD_SIG_POS;
	const uint32_t start_out = f->n_spikes;
	struct mead_spike *out = f->spikes;

	/* Windows of pulses written since the last block, as BLANK events:
	 * the data inside them stays in raw, marked rather than erased. */
	for (uint32_t i = 0; i < s->n_notes; i++)
		mead_frame_event(f, MEAD_EVENT_BLANK, s->notes[i].from, s->notes[i].until - s->notes[i].from,
				 s->notes[i].electrode, 0);
	s->n_notes = 0;

	for (uint32_t i = 0; i < n; i++) {
		const uint64_t t = first_sample + i;
		const float *row = uv + (size_t)i * C;
		for (uint32_t k = 0; k < C; k++) {
			struct chan *c = &s->ch[k];
			if (t >= c->blank_from && t < c->blank_until) {
				s->blanked++;
				/* An artifact is not a spike: a search in progress
				 * is abandoned and the window is not noise. */
				c->in_search = false;
				c->win_blanked = true;
				if (++c->win_n >= s->win_len)
					close_window(s, k, c);
				continue;
			}
			const float x = row[k];
			if (!c->dc_init) {
				c->dc = x;
				c->dc_init = true;
			}
			const float y = x - c->dc;
			c->dc += s->dc_alpha * (x - c->dc);
			c->sum += y;
			c->sum2 += (double)y * y;

			const float thr = c->thr;
			if (thr > 0) {
				if (c->in_search) {
					if (c->sign * y > c->sign * c->peak) {
						c->peak = y;
						c->peak_sample = t;
					}
					if (c->sign * y < thr || t >= c->search_end)
						emit(s, k, c, f);
				} else if (t >= c->dead_until) {
					int sign = 0;
					if (neg && y < -thr)
						sign = -1;
					else if (pos && y > thr)
						sign = 1;
					if (sign) {
						c->in_search = true;
						c->sign = sign;
						c->peak = y;
						c->peak_sample = t;
						c->search_end = t + s->peak_win;
					}
				}
			}
			if (++c->win_n >= s->win_len)
				close_window(s, k, c);
		}
	}

	/* Spikes leave a channel when its peak search ends, so across channels
	 * they may come out of order; the block is short and nearly sorted. */
	for (uint32_t i = start_out + 1; i < f->n_spikes; i++) {
		struct mead_spike v = out[i];
		uint32_t j = i;
		while (j > start_out && (out[j - 1].sample > v.sample ||
		       (out[j - 1].sample == v.sample && out[j - 1].electrode > v.electrode))) {
			out[j] = out[j - 1];
			j--;
		}
		out[j] = v;
	}
}

float mead_sig_threshold_uv(const struct mead_sig *s, uint32_t ch)
{
	return ch < s->cfg.channels ? s->ch[ch].thr : 0.0f;
}

float mead_sig_noise_uv(const struct mead_sig *s, uint32_t ch)
{
	return ch < s->cfg.channels ? s->ch[ch].noise : 0.0f;
}

uint64_t mead_sig_spike_count(const struct mead_sig *s)
{
	return s->spikes;
}

uint64_t mead_sig_blanked_samples(const struct mead_sig *s)
{
	return s->blanked;
}

int mead_sig_config_from_params(struct mead_sig_config *sc, const struct mead_driver_config *cfg,
				 bool *blank_all, char *err, size_t err_len)
{
	const char *pol = mead_driver_param_get(cfg, "polarity");
	if (pol && mead_sig_parse_polarity(pol, &sc->polarity) < 0) {
		snprintf(err, err_len, "polarity: '%s' is not one of neg, pos, both", pol);
		return -EINVAL;
	}
	const char *bc = mead_driver_param_get(cfg, "blank_channels");
	if (!bc || strcmp(bc, "all") == 0) {
		*blank_all = true;
	} else if (strcmp(bc, "stimulated") == 0) {
		*blank_all = false;
	} else {
		snprintf(err, err_len, "blank_channels: '%s' is not one of all, stimulated", bc);
		return -EINVAL;
	}
	sc->threshold_k = mead_driver_param_double(cfg, "threshold_k", sc->threshold_k);
	sc->dead_time_us = (uint32_t)mead_driver_param_double(cfg, "dead_time_us", sc->dead_time_us);
	sc->peak_window_us = (uint32_t)mead_driver_param_double(cfg, "peak_window_us", sc->peak_window_us);
	sc->noise_window_us = (uint32_t)mead_driver_param_double(cfg, "noise_window_ms", sc->noise_window_us / 1000.0) * 1000u;
	sc->noise_windows = (uint32_t)mead_driver_param_double(cfg, "noise_windows", sc->noise_windows);
	sc->noise_percentile = mead_driver_param_double(cfg, "noise_percentile", sc->noise_percentile);
	sc->warmup_windows = (uint32_t)mead_driver_param_double(cfg, "warmup_windows", sc->warmup_windows);
	sc->blank_us = (uint32_t)mead_driver_param_double(cfg, "blank_us", sc->blank_us);
	sc->blank_pre_us = (uint32_t)mead_driver_param_double(cfg, "blank_pre_us", sc->blank_pre_us);
	if (!(sc->threshold_k > 0) || sc->noise_windows == 0 || sc->noise_window_us == 0) {
		snprintf(err, err_len, "spike detection options out of range");
		return -EINVAL;
	}
	return 0;
}
