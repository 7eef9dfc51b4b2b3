/* SPDX-License-Identifier: MIT */
#include "lib/signal/signal.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "lib/core/parse.h"

/* A hard blanking window on one channel, [from, until). */
struct win {
	uint64_t from, until;
	uint64_t max_end;         /* SALPA: subtraction ends by then */
	bool all;                 /* from a pulse that blanks every channel */
};
/* Pending windows per channel: pulses registered ahead of the samples
 * they blank, plus (with SALPA) those inside the fit's look-ahead.  Eight
 * disjoint windows within a few milliseconds on one channel is far beyond
 * any stimulation protocol; more are joined to a neighbour and counted. */
#define CH_WINDOWS 8

/* Flags of a sample, fixed when it arrives. */
enum {
	F_HARD = 1,               /* inside a hard window */
	F_PEG = 2,                /* at the rail inside a SALPA window's reach */
	F_BAD = 4,                /* no fit may use it */
	F_ALL = 8,                /* its window blanks every channel */
};

/* Where a channel's SALPA output stands. */
enum {
	S_IDLE,                   /* plain signal minus the slow baseline */
	S_WAIT,                   /* blanked until a fit window free of bad samples is in */
	S_CHECK,                  /* anchored fit, blanked until its start matches the data */
	S_FIT,                    /* subtracting: anchored at first, then centred */
	S_TAIL,                   /* a bad sample ahead: the last fit, extrapolated up to it */
};

#define NO_SAMPLE UINT64_MAX

static inline uint32_t float_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof(u));
	return u;
}

static inline float bits_float(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

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
	bool armed;               /* the last sample looked at was inside the threshold */
	bool in_search;
	int sign;                 /* -1 or +1 while searching */
	float peak;
	uint64_t peak_sample;
	uint64_t search_end;
	uint64_t dead_until;
	/* hard windows not over yet, sorted, disjoint (one spare for merging) */
	struct win win[CH_WINDOWS + 1];
	uint32_t n_win;
	/* SALPA, input side: the next fit window, accumulated as samples arrive */
	uint64_t max_end;         /* of the windows arrived so far */
	bool last_all;
	bool acc_on;
	uint64_t acc_a;           /* first sample of that window */
	uint32_t acc_n;
	double acc[4];            /* moments about its centre */
	/* SALPA, output side */
	uint8_t state;
	uint64_t tc;              /* next sample to clean */
	uint64_t cc;              /* centre of the fit window in use */
	double X[4];              /* its moments: sum of k^j x(cc + k), |k| <= N */
	double al[4];             /* its cubic: al0 + al1 d + al2 d^2 + al3 d^3 */
	uint64_t tail_end;
	uint32_t passes, calm;
	uint64_t run_from;        /* first sample of this window after the hard blank */
	bool run_all;
	/* waveforms */
	uint64_t hist_from;       /* first sample of the history with no gap after it */
	uint32_t pend_head, n_pend;
};

/* A spike waiting for the post samples of its waveform. */
struct pend {
	uint64_t sample;
	float amplitude;
};
/* Spikes of one channel whose waveform is not complete yet: with the
 * default dead time at most post / dead + 1 of them. */
#define WF_PENDING 32

/* A BLANK event not yet handed to a frame. */
struct note {
	uint64_t from;
	uint64_t samples;
	uint16_t electrode;
	int32_t value;
};
/* 256 events of 32 bytes: a frame's event buffer full for several ticks of
 * pulses on every electrode before anything is lost. */
#define NOTES 256

struct mead_sig {
	struct mead_sig_config cfg;
	struct note notes[NOTES];
	uint32_t note_head, n_notes;
	uint32_t win_len, dead, peak_win, blank_pre, blank_post;
	float dc_alpha;
	struct chan *ch;
	float *rings;             /* channels x noise_windows */
	float *scratch;           /* noise_windows */
	uint16_t *electrode;      /* channels */
	float *rail_lo, *rail_hi; /* channels */
	/* per channel, kept across resets: how the threshold is set */
	uint8_t *thr_mode;        /* enum mead_threshold_mode */
	float *thr_value;         /* k, or µV */
	/* per channel, for other threads (status): the last estimate and
	 * threshold, float bits */
	_Atomic uint32_t *pub_noise, *pub_thr;
	uint64_t next;            /* first sample not yet handed in */
	/* SALPA */
	bool salpa;
	uint32_t half;            /* N */
	uint32_t ring_len;        /* power of two */
	float *rx;                /* channels x ring_len: recent samples */
	uint8_t *rf;              /* channels x ring_len: their flags */
	uint32_t salpa_max, check_n, check_passes, calm_n;
	double T[7];              /* sum of k^j over |k| <= N */
	double d02, d13;
	uint32_t all_runs;        /* channels in a window that blanks every channel */
	uint64_t all_from, all_until;
	/* waveforms: per channel the detector's signal of the last hist_len
	 * samples (hist_len a power of two) and whether each was blanked */
	bool wf;
	uint32_t wf_pre, wf_post, hist_len;
	float *hist;              /* channels x hist_len */
	uint8_t *hblank;          /* channels x hist_len */
	struct pend *pend;        /* channels x WF_PENDING */
	/* for other threads (describe): cut, dropped, unfinished, pending,
	 * as of the end of the last block */
	_Atomic uint64_t pub_wf[4];
	struct mead_sig_counts n;
};

static void publish_waveform_counts(struct mead_sig *s);

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
		.artifact = MEAD_SIG_ARTIFACT_BLANK,
		.salpa_half_width_us = 3000,
		.salpa_max_us = 20000,
		.salpa_threshold = 1.0,
		.salpa_rail_uv = 0,
		.waveforms = false,
		.waveform_pre_us = 1000,
		.waveform_post_us = 2000,
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

int mead_sig_parse_artifact(const char *text, enum mead_sig_artifact *ret)
{
	if (!text)
		return -EINVAL;
	if (strcmp(text, "blank") == 0)
		*ret = MEAD_SIG_ARTIFACT_BLANK;
	else if (strcmp(text, "salpa") == 0)
		*ret = MEAD_SIG_ARTIFACT_SALPA;
	else
		return -EINVAL;
	return 0;
}

static uint32_t us_to_samples(uint32_t us, uint32_t rate)
{
	return (uint32_t)(((uint64_t)us * rate + 999999u) / 1000000u);
}

/* The longest fit window half the ring is sized for. */
#define SALPA_MAX_HALF 2048u
/* The start of an anchored fit must match the data over this long ... */
#define CHECK_US 600u
/* ... at this many positions in a row (SALPA's "too poor" test). */
#define CHECK_PASSES 5u
/* Outputs a lagging channel may produce per sample handed in: the work per
 * sample stays bounded, and after a SALPA window (lag N, at most 2N + 2)
 * the channel is back in step within a third of that. */
#define DRAIN 4

struct mead_sig *mead_sig_new(const struct mead_sig_config *cfg)
{
	if (!cfg || cfg->channels == 0 || cfg->channels > 65535 || cfg->sample_rate_hz == 0 ||
	    !(cfg->threshold_k > 0) || cfg->noise_windows == 0 || cfg->noise_window_us == 0 ||
	    !(cfg->noise_percentile >= 0 && cfg->noise_percentile <= 1) ||
	    (cfg->polarity & MEAD_SIG_BOTH) == 0 ||
	    (cfg->artifact != MEAD_SIG_ARTIFACT_BLANK && cfg->artifact != MEAD_SIG_ARTIFACT_SALPA)) {
		errno = EINVAL;
		return NULL;
	}
	const uint32_t rate = cfg->sample_rate_hz;
	const bool salpa = cfg->artifact == MEAD_SIG_ARTIFACT_SALPA;
	uint32_t half = 0, ring_len = 0;
	if (salpa) {
		half = us_to_samples(cfg->salpa_half_width_us, rate);
		/* a cubic needs more than four points; the window must end
		 * before the subtraction does */
		if (half < 2 || half > SALPA_MAX_HALF || !(cfg->salpa_threshold > 0) ||
		    cfg->salpa_max_us <= cfg->blank_us || !(cfg->salpa_rail_uv >= 0)) {
			errno = EINVAL;
			return NULL;
		}
		/* The output lags input by at most 2N + 2 and a centred fit
		 * reaches N behind the output. */
		ring_len = 16;
		while (ring_len < 3 * half + 8 + DRAIN)
			ring_len *= 2;
	}
	uint32_t wf_pre = 0, wf_post = 0, hist_len = 0;
	if (cfg->waveforms) {
		if (mead_sig_waveform_samples(cfg->waveform_pre_us, cfg->sample_rate_hz, &wf_pre) < 0 ||
		    mead_sig_waveform_samples(cfg->waveform_post_us, cfg->sample_rate_hz, &wf_post) < 0 ||
		    wf_pre + 1 + wf_post > MEAD_WAVEFORM_MAX_SAMPLES) {
			errno = EINVAL;
			return NULL;
		}
		/* a spike comes out up to a peak window after its sample, and
		 * its waveform reaches pre samples before that */
		uint32_t need = wf_pre + 1 + wf_post + us_to_samples(cfg->peak_window_us, rate) + 2;
		hist_len = 16;
		while (hist_len < need)
			hist_len *= 2;
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
	s->rail_lo = calloc(cfg->channels, sizeof(float));
	s->rail_hi = calloc(cfg->channels, sizeof(float));
	s->thr_mode = calloc(cfg->channels, 1);
	s->thr_value = calloc(cfg->channels, sizeof(float));
	s->pub_noise = calloc(cfg->channels, sizeof(*s->pub_noise));
	s->pub_thr = calloc(cfg->channels, sizeof(*s->pub_thr));
	if (salpa) {
		s->rx = calloc((size_t)cfg->channels * ring_len, sizeof(float));
		s->rf = calloc((size_t)cfg->channels * ring_len, 1);
	}
	if (cfg->waveforms) {
		s->wf = true;
		s->wf_pre = wf_pre;
		s->wf_post = wf_post;
		s->hist_len = hist_len;
		s->hist = calloc((size_t)cfg->channels * hist_len, sizeof(float));
		s->hblank = calloc((size_t)cfg->channels * hist_len, 1);
		s->pend = calloc((size_t)cfg->channels * WF_PENDING, sizeof(*s->pend));
	}
	if (!s->ch || !s->rings || !s->scratch || !s->electrode || !s->rail_lo || !s->rail_hi || !s->thr_mode ||
	    !s->thr_value || !s->pub_noise || !s->pub_thr || (salpa && (!s->rx || !s->rf)) ||
	    (s->wf && (!s->hist || !s->hblank || !s->pend))) {
		mead_sig_free(s);
		errno = ENOMEM;
		return NULL;
	}
	for (uint32_t i = 0; i < cfg->channels; i++) {
		s->electrode[i] = cfg->electrode_of_channel ? cfg->electrode_of_channel[i] : (uint16_t)i;
		s->rail_lo[i] = -INFINITY;
		s->rail_hi[i] = INFINITY;
		s->thr_mode[i] = MEAD_THRESHOLD_NOISE;
		s->thr_value[i] = (float)cfg->threshold_k;
	}
	mead_sig_set_rail(s, UINT32_MAX, -INFINITY, INFINITY);
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
	if (salpa) {
		s->salpa = true;
		s->half = half;
		s->ring_len = ring_len;
		s->salpa_max = us_to_samples(cfg->salpa_max_us, rate);
		s->check_n = us_to_samples(CHECK_US, rate);
		if (s->check_n < 4)
			s->check_n = 4;
		if (s->check_n > half)
			s->check_n = half;
		s->check_passes = CHECK_PASSES;
		/* the fit must stay at the baseline for half a window: one
		 * sample of a fast artifact crossing zero is not its end */
		s->calm_n = half;
		for (int64_t k = -(int64_t)half; k <= (int64_t)half; k++) {
			double p = 1;
			for (int j = 0; j < 7; j++, p *= (double)k)
				s->T[j] += p;
		}
		s->d02 = s->T[0] * s->T[4] - s->T[2] * s->T[2];
		s->d13 = s->T[2] * s->T[6] - s->T[4] * s->T[4];
	}
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
	free(s->rail_lo);
	free(s->rail_hi);
	free(s->thr_mode);
	free(s->thr_value);
	free(s->pub_noise);
	free(s->pub_thr);
	free(s->rx);
	free(s->rf);
	free(s->hist);
	free(s->hblank);
	free(s->pend);
	free(s);
}

void mead_sig_reset(struct mead_sig *s)
{
	uint64_t unfinished = s->n.waveforms_unfinished;
	for (uint32_t i = 0; i < s->cfg.channels; i++)
		unfinished += s->ch[i].n_pend;
	memset(s->ch, 0, s->cfg.channels * sizeof(*s->ch));
	for (uint32_t i = 0; i < s->cfg.channels; i++) {
		s->ch[i].run_from = NO_SAMPLE;
		/* a fixed threshold needs no noise estimate: it holds from the
		 * first sample */
		s->ch[i].thr = s->thr_mode[i] == MEAD_THRESHOLD_UV ? s->thr_value[i] : 0.0f;
		atomic_store_explicit(&s->pub_noise[i], 0, memory_order_relaxed);
		atomic_store_explicit(&s->pub_thr[i], float_bits(s->ch[i].thr), memory_order_relaxed);
	}
	/* what earlier runs left unfinished stays counted: the end of a run
	 * is where a waveform's post samples never come */
	s->n = (struct mead_sig_counts){ .waveforms_unfinished = unfinished };
	if (s->wf)
		publish_waveform_counts(s);
	s->note_head = s->n_notes = 0;
	s->next = 0;
	s->all_runs = 0;
	s->all_from = NO_SAMPLE;
	s->all_until = 0;
}

void mead_sig_set_rail(struct mead_sig *s, uint32_t ch, float lo_uv, float hi_uv)
{
	uint32_t lo = ch == UINT32_MAX ? 0 : ch, hi = ch == UINT32_MAX ? s->cfg.channels : ch + 1;
	const float r = s->cfg.salpa_rail_uv;
	for (uint32_t i = lo; i < hi && i < s->cfg.channels; i++) {
		s->rail_lo[i] = r > 0 && -r > lo_uv ? -r : lo_uv;
		s->rail_hi[i] = r > 0 && r < hi_uv ? r : hi_uv;
	}
}

/* Queues a BLANK event; one identical to a queued one is reported once
 * (a driver blanking each channel of an electrode in turn). */
static void note(struct mead_sig *s, uint64_t from, uint64_t samples, uint16_t electrode, int32_t value)
{
	for (uint32_t i = 0; i < s->n_notes; i++) {
		const struct note *q = &s->notes[(s->note_head + i) % NOTES];
		if (q->from == from && q->samples == samples && q->electrode == electrode && q->value == value)
			return;
	}
	if (s->n_notes == NOTES) {
		s->n.events_lost++;
		return;
	}
	s->notes[(s->note_head + s->n_notes++) % NOTES] = (struct note){ from, samples, electrode, value };
}

static void flush_notes(struct mead_sig *s, struct mead_frame *f)
{
	while (s->n_notes) {
		const struct note *q = &s->notes[s->note_head];
		if (!mead_frame_event(f, MEAD_EVENT_BLANK, q->from, q->samples, q->electrode, q->value)) {
			s->n.events_deferred += s->n_notes;
			return;
		}
		s->note_head = (s->note_head + 1) % NOTES;
		s->n_notes--;
	}
}

/* Adds [w.from, w.until) to a channel's windows, joining those it
 * overlaps or touches. */
static void add_window(struct mead_sig *s, struct chan *c, struct win w)
{
	uint32_t out = 0;
	for (uint32_t i = 0; i < c->n_win; i++) {
		struct win *e = &c->win[i];
		if (e->until >= w.from && e->from <= w.until) {
			if (e->from < w.from)
				w.from = e->from;
			if (e->until > w.until)
				w.until = e->until;
			if (e->max_end > w.max_end)
				w.max_end = e->max_end;
			w.all |= e->all;
		} else {
			c->win[out++] = *e;
		}
	}
	uint32_t at = out;
	while (at > 0 && c->win[at - 1].from > w.from) {
		c->win[at] = c->win[at - 1];
		at--;
	}
	c->win[at] = w;
	c->n_win = out + 1;
	if (c->n_win <= CH_WINDOWS)
		return;
	/* Too many: close the narrowest gap.  More is blanked than the
	 * events say, which the count makes visible. */
	s->n.windows_merged++;
	uint32_t best = 0;
	for (uint32_t i = 1; i + 1 < c->n_win; i++)
		if (c->win[i + 1].from - c->win[i].until < c->win[best + 1].from - c->win[best].until)
			best = i;
	struct win *a = &c->win[best], *b = &c->win[best + 1];
	a->until = b->until;
	if (b->max_end > a->max_end)
		a->max_end = b->max_end;
	a->all |= b->all;
	memmove(b, b + 1, (c->n_win - best - 2) * sizeof(*b));
	c->n_win--;
}

void mead_sig_blank_pulse(struct mead_sig *s, uint32_t ch, uint64_t pulse_sample)
{
	uint32_t lo = ch == UINT32_MAX ? 0 : ch, hi = ch == UINT32_MAX ? s->cfg.channels : ch + 1;
	if (lo >= s->cfg.channels)
		return;
	uint64_t from = pulse_sample > s->blank_pre ? pulse_sample - s->blank_pre : 0;
	uint64_t until = pulse_sample + s->blank_post;
	/* SALPA's window starts at a hard blank: the pulse's own sample at least */
	if (s->salpa && until <= pulse_sample)
		until = pulse_sample + 1;
	if (until <= from)
		return;
	if (from < s->next) {
		s->n.windows_late++;
		from = s->next;
		if (until <= from)
			return;
	}
	const bool all = ch == UINT32_MAX;
	note(s, from, until - from, all ? MEAD_EVENT_ALL_ELECTRODES : s->electrode[ch], 0);
	const struct win w = { from, until, pulse_sample + s->salpa_max, all };
	for (uint32_t i = lo; i < hi; i++)
		add_window(s, &s->ch[i], w);
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
			if (s->thr_mode[idx] == MEAD_THRESHOLD_NOISE)
				c->thr = s->thr_value[idx] * c->noise;
			atomic_store_explicit(&s->pub_noise[idx], float_bits(c->noise), memory_order_relaxed);
			atomic_store_explicit(&s->pub_thr[idx], float_bits(c->thr), memory_order_relaxed);
		}
	}
	c->sum = c->sum2 = 0;
	c->win_n = 0;
	c->win_blanked = false;
}

/* Writes the waveform of the spike at sample to the frame, from the
 * history up to sample last (samples beyond it, or before the history's
 * start, are missing). */
static void wf_cut(struct mead_sig *s, uint32_t idx, struct chan *c, const struct pend *p, uint64_t last,
		   struct mead_frame *f)
{
	s->n.waveforms++;
	if (!f->waveforms || f->n_waveforms >= f->waveform_capacity ||
	    f->waveform_size < mead_waveform_size(s->wf_pre, s->wf_post)) {
		s->n.waveforms_dropped++;
		f->waveforms_dropped++;
		return;
	}
	uint8_t *rec = (uint8_t *)f->waveforms + (size_t)f->n_waveforms++ * f->waveform_size;
	float *out = (float *)(rec + sizeof(struct mead_waveform));
	const float *h = s->hist + (size_t)idx * s->hist_len;
	const uint8_t *hb = s->hblank + (size_t)idx * s->hist_len;
	const uint32_t mask = s->hist_len - 1;
	uint16_t flags = 0;
	for (uint32_t i = 0; i < s->wf_pre + 1 + s->wf_post; i++) {
		const int64_t u = (int64_t)p->sample - (int64_t)s->wf_pre + (int64_t)i;
		if (u < 0 || (uint64_t)u < c->hist_from || (uint64_t)u > last) {
			out[i] = 0;
			flags |= MEAD_WAVEFORM_MISSING;
			continue;
		}
		out[i] = h[(uint64_t)u & mask];
		if (hb[(uint64_t)u & mask])
			flags |= MEAD_WAVEFORM_BLANKED;
	}
	const struct mead_waveform w = {
		.sample = p->sample, .electrode = s->electrode[idx], .flags = flags,
		.pre = (uint16_t)s->wf_pre, .post = (uint16_t)s->wf_post, .amplitude_uv = p->amplitude,
	};
	memcpy(rec, &w, sizeof(w));
}

/* Sample t of channel idx has been looked at, as y (0 when blanked):
 * into the history, and the waveforms it completes out. */
static void wf_sample(struct mead_sig *s, uint32_t idx, struct chan *c, uint64_t t, float y, bool blanked,
		      struct mead_frame *f)
{
	const size_t k = (size_t)idx * s->hist_len + (size_t)(t & (s->hist_len - 1));
	s->hist[k] = y;
	s->hblank[k] = blanked;
	while (c->n_pend) {
		const struct pend *p = &s->pend[(size_t)idx * WF_PENDING + c->pend_head];
		if (p->sample + s->wf_post > t)
			break;
		wf_cut(s, idx, c, p, t, f);
		c->pend_head = (c->pend_head + 1) % WF_PENDING;
		c->n_pend--;
	}
}

/* The stream jumps past sample last: what is pending is cut with what
 * there is, its missing samples flagged. */
static void wf_gap(struct mead_sig *s, uint32_t idx, struct chan *c, uint64_t last, uint64_t next_first,
		   struct mead_frame *f)
{
	while (c->n_pend) {
		wf_cut(s, idx, c, &s->pend[(size_t)idx * WF_PENDING + c->pend_head], last, f);
		c->pend_head = (c->pend_head + 1) % WF_PENDING;
		c->n_pend--;
	}
	c->hist_from = next_first;
}

static void emit(struct mead_sig *s, uint32_t idx, struct chan *c, uint64_t t, struct mead_frame *f)
{
	c->in_search = false;
	c->dead_until = c->peak_sample + s->dead;
	s->n.spikes++;
	if (s->wf) {
		const struct pend p = { c->peak_sample, c->peak };
		if (p.sample + s->wf_post <= t) {
			wf_cut(s, idx, c, &p, t, f);
		} else if (c->n_pend == WF_PENDING) {
			s->n.waveforms++;
			s->n.waveforms_dropped++;
			f->waveforms_dropped++;
		} else {
			s->pend[(size_t)idx * WF_PENDING + (c->pend_head + c->n_pend++) % WF_PENDING] = p;
		}
	}
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

/* Sample t of channel idx is not looked at: an artifact is not a spike, so
 * a search in progress is abandoned, and the window is not noise. */
static void out_blank(struct mead_sig *s, uint32_t idx, struct chan *c, uint64_t t, struct mead_frame *f)
{
	if (s->wf)
		wf_sample(s, idx, c, t, 0.0f, true, f);
	s->n.blanked++;
	c->in_search = false;
	c->armed = false;
	c->win_blanked = true;
	if (++c->win_n >= s->win_len)
		close_window(s, idx, c);
}

/* Detection on y, the signal at sample t with its baseline or artifact
 * removed. */
static void detect(struct mead_sig *s, uint32_t idx, struct chan *c, uint64_t t, float y, struct mead_frame *f)
{
	if (s->wf)
		wf_sample(s, idx, c, t, y, false, f);
	c->sum += y;
	c->sum2 += (double)y * y;
	const float thr = c->thr;
	if (thr > 0 && !c->armed) {
		/* Back from a blank, a signal already beyond the threshold is
		 * no crossing: a spike whose start was blanked would be stamped
		 * at the wrong sample, an artifact's tail would count. */
		c->armed = !((s->cfg.polarity & MEAD_SIG_NEG) && y <= -thr) && !((s->cfg.polarity & MEAD_SIG_POS) && y >= thr);
	} else if (thr > 0) {
		if (c->in_search) {
			if (c->sign * y > c->sign * c->peak) {
				c->peak = y;
				c->peak_sample = t;
			}
			if (c->sign * y < thr || t >= c->search_end)
				emit(s, idx, c, t, f);
		} else if (t >= c->dead_until) {
			int sign = 0;
			if ((s->cfg.polarity & MEAD_SIG_NEG) && y < -thr)
				sign = -1;
			else if ((s->cfg.polarity & MEAD_SIG_POS) && y > thr)
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
		close_window(s, idx, c);
}

static void out_plain(struct mead_sig *s, uint32_t idx, struct chan *c, uint64_t t, float x, struct mead_frame *f)
{
	if (!c->dc_init) {
		c->dc = x;
		c->dc_init = true;
	}
	const float y = x - c->dc;
	c->dc += s->dc_alpha * (x - c->dc);
	detect(s, idx, c, t, y, f);
}

/* The flags of sample t as it arrives: windows over by then are dropped. */
static uint8_t arrival_flags(struct mead_sig *s, struct chan *c, uint64_t t, float x, uint32_t idx)
{
	while (c->n_win && c->win[0].until <= t) {
		memmove(c->win, c->win + 1, (c->n_win - 1) * sizeof(c->win[0]));
		c->n_win--;
	}
	if (c->n_win && t >= c->win[0].from) {
		const struct win *w = &c->win[0];
		if (w->max_end > c->max_end)
			c->max_end = w->max_end;
		c->last_all = w->all;
		return F_HARD | F_BAD | (w->all ? F_ALL : 0);
	}
	/* The rail matters only where a fit would otherwise use it: a
	 * saturated amplifier after a pulse. */
	if (s->salpa && t < c->max_end && (x <= s->rail_lo[idx] || x >= s->rail_hi[idx]))
		return F_PEG | F_BAD | (c->last_all ? F_ALL : 0);
	return 0;
}

static inline size_t at(const struct mead_sig *s, uint32_t idx, uint64_t t)
{
	return (size_t)idx * s->ring_len + (size_t)(t & (s->ring_len - 1));
}

/* Input side of SALPA: keep the sample, and accumulate the moments of the
 * window that starts after the latest bad sample, so that the fit is ready
 * the moment its last sample is in (no pass over the window). */
static void arrive(struct mead_sig *s, uint32_t idx, struct chan *c, uint64_t t, float x, uint8_t fl)
{
	s->rx[at(s, idx, t)] = x;
	s->rf[at(s, idx, t)] = fl;
	if (fl & F_BAD) {
		c->acc_on = true;
		c->acc_a = t + 1;
		c->acc_n = 0;
		c->acc[0] = c->acc[1] = c->acc[2] = c->acc[3] = 0;
		return;
	}
	if (c->acc_on && c->acc_n < 2 * s->half + 1) {
		const double k = (double)((int64_t)(t - c->acc_a) - (int64_t)s->half), xd = x;
		c->acc[0] += xd;
		c->acc[1] += k * xd;
		c->acc[2] += k * k * xd;
		c->acc[3] += k * k * k * xd;
		c->acc_n++;
	}
}

/* Least-squares cubic over |k| <= N from the moments: the even and odd
 * parts of the normal equations separate on a symmetric window. */
static void fit(struct mead_sig *s, struct chan *c)
{
	const double *T = s->T, *X = c->X;
	c->al[0] = (T[4] * X[0] - T[2] * X[2]) / s->d02;
	c->al[2] = (T[0] * X[2] - T[2] * X[0]) / s->d02;
	c->al[1] = (T[6] * X[1] - T[4] * X[3]) / s->d13;
	c->al[3] = (T[2] * X[3] - T[4] * X[1]) / s->d13;
}

static inline double poly(const double *al, double d)
{
	return al[0] + d * (al[1] + d * (al[2] + d * al[3]));
}

enum { SLID, BLOCKED, HIT_BAD };

/* Moves the fit window one sample on, in O(1): with y = x(cc + m),
 * sum_m (m - 1)^j y over the new window expands binomially into the old
 * moments, less the sample that left, plus the one that came in. */
static int slide(struct mead_sig *s, uint32_t idx, struct chan *c, uint64_t avail)
{
	const uint64_t in = c->cc + s->half + 1;
	if (in >= avail)
		return BLOCKED;
	if (s->rf[at(s, idx, in)] & F_BAD)
		return HIT_BAD;
	const double n = s->half, n1 = n + 1;
	const double xo = s->rx[at(s, idx, c->cc - s->half)], xi = s->rx[at(s, idx, in)];
	double *X = c->X;
	const double y0 = X[0] - xo + xi;
	const double y1 = X[1] + n * xo + n1 * xi;
	const double y2 = X[2] - n * n * xo + n1 * n1 * xi;
	const double y3 = X[3] + n * n * n * xo + n1 * n1 * n1 * xi;
	X[0] = y0;
	X[1] = y1 - y0;
	X[2] = y2 - 2 * y1 + y0;
	X[3] = y3 - 3 * y2 + 3 * y1 - y0;
	c->cc++;
	fit(s, c);
	return SLID;
}

static void run_sample(struct mead_sig *s, struct chan *c, uint8_t fl, uint64_t t)
{
	if (!(fl & F_HARD) && c->run_from == NO_SAMPLE)
		c->run_from = t;
	if ((fl & F_ALL) && !c->run_all) {
		c->run_all = true;
		s->all_runs++;
	}
}

/* The window ends before sample t: reported, per channel or, for windows
 * on every channel, once the last channel is done. */
static void end_run(struct mead_sig *s, uint32_t idx, struct chan *c, uint64_t t)
{
	const bool had = c->run_from != NO_SAMPLE && t > c->run_from;
	if (had)
		s->n.salpa_runs++;
	if (c->run_all) {
		if (had) {
			if (c->run_from < s->all_from)
				s->all_from = c->run_from;
			if (t > s->all_until)
				s->all_until = t;
		}
		if (--s->all_runs == 0) {
			if (s->all_until > s->all_from && s->all_from != NO_SAMPLE)
				note(s, s->all_from, s->all_until - s->all_from, MEAD_EVENT_ALL_ELECTRODES, 1);
			s->all_from = NO_SAMPLE;
			s->all_until = 0;
		}
	} else if (had) {
		note(s, c->run_from, t - c->run_from, s->electrode[idx], 1);
	}
	c->state = S_IDLE;
	c->run_from = NO_SAMPLE;
	c->run_all = false;
}

/* Past salpa_max_us: back to the plain signal, the baseline picking up
 * where the fit left off rather than where it was before the pulse. */
static void force_end(struct mead_sig *s, uint32_t idx, struct chan *c, uint64_t t, bool have_fit, double fitted)
{
	s->n.salpa_forced++;
	if (have_fit)
		c->dc = (float)fitted;
	/* no bad sample lies ahead: a pulse's would have moved max_end */
	c->acc_on = false;
	end_run(s, idx, c, t);
}

/* Output side of SALPA: cleans sample tc if what it needs is in; false
 * when it must wait for more samples. */
static bool step(struct mead_sig *s, uint32_t idx, struct chan *c, uint64_t avail, struct mead_frame *f)
{
	const uint64_t t = c->tc;
	const uint32_t N = s->half;
	const float x = s->rx[at(s, idx, t)];
	const uint8_t fl = s->rf[at(s, idx, t)];
	for (;;) {
		switch (c->state) {
		case S_IDLE:
			if (!(fl & F_BAD)) {
				out_plain(s, idx, c, t, x, f);
				goto done;
			}
			c->state = S_WAIT;
			c->run_from = NO_SAMPLE;
			c->run_all = false;
			continue;
		case S_WAIT:
			run_sample(s, c, fl, t);
			if (t >= c->max_end) {
				force_end(s, idx, c, t, false, 0);
				out_plain(s, idx, c, t, x, f);
				goto done;
			}
			if (!c->acc_on || t < c->acc_a) {
				out_blank(s, idx, c, t, f);
				goto done;
			}
			if (c->acc_n < 2 * N + 1)
				return false;
			memcpy(c->X, c->acc, sizeof(c->X));
			c->cc = c->acc_a + N;
			c->acc_on = false;
			fit(s, c);
			c->state = S_CHECK;
			c->passes = 0;
			continue;
		case S_CHECK: {
			run_sample(s, c, fl, t);
			if (t >= c->max_end) {
				force_end(s, idx, c, t, false, 0);
				out_plain(s, idx, c, t, x, f);
				goto done;
			}
			if (c->cc < t + N) {
				int r = slide(s, idx, c, avail);
				if (r == BLOCKED)
					return false;
				if (r == HIT_BAD) {
					c->state = S_WAIT;
					continue;
				}
			}
			/* SALPA's test of an anchored fit: right after the
			 * blank its residuals must not lean, by more than
			 * chance allows (95 %), to the side spikes are
			 * detected on; a lean that way would cross the
			 * threshold, one the other way only hides spikes a
			 * little.  Samples beyond the threshold are left out,
			 * so that a spike here does not fail the fit and get
			 * blanked: a misfit that large lies beside smaller ones
			 * that do fail it, and cannot start a spike either
			 * (detection re-arms only inside the threshold). */
			double sum = 0;
			uint32_t used = 0;
			for (uint32_t i = 0; i < s->check_n; i++) {
				const double r = s->rx[at(s, idx, t + i)] - poly(c->al, (double)i - N);
				if (fabs(r) < c->thr) {
					sum += r;
					used++;
				}
			}
			const double lim = 2.0 * c->noise * sqrt((double)used);
			const bool pass = 2 * used >= s->check_n && !((s->cfg.polarity & MEAD_SIG_NEG) && sum < -lim) &&
					  !((s->cfg.polarity & MEAD_SIG_POS) && sum > lim);
			c->passes = pass ? c->passes + 1 : 0;
			if (c->passes >= s->check_passes) {
				c->state = S_FIT;
				c->calm = 0;
				continue;
			}
			out_blank(s, idx, c, t, f);
			goto done;
		}
		case S_FIT: {
			run_sample(s, c, fl, t);
			if (t > c->cc) {
				int r = slide(s, idx, c, avail);
				if (r == BLOCKED)
					return false;
				if (r == HIT_BAD) {
					c->tail_end = c->cc + N + 1;
					c->state = S_TAIL;
					continue;
				}
			}
			const double fitted = t < c->cc ? poly(c->al, -(double)(c->cc - t)) : c->al[0];
			if (t >= c->max_end) {
				force_end(s, idx, c, t, true, fitted);
				out_plain(s, idx, c, t, x, f);
				goto done;
			}
			if (t == c->cc) {
				if (fabs(fitted - c->dc) <= s->cfg.salpa_threshold * c->noise) {
					if (++c->calm >= s->calm_n) {
						end_run(s, idx, c, t);
						out_plain(s, idx, c, t, x, f);
						goto done;
					}
				} else {
					c->calm = 0;
				}
			}
			s->n.subtracted++;
			detect(s, idx, c, t, (float)(x - fitted), f);
			goto done;
		}
		case S_TAIL: {
			run_sample(s, c, fl, t);
			const double fitted = poly(c->al, (double)(t - c->cc));
			if (t >= c->max_end) {
				force_end(s, idx, c, t, true, fitted);
				out_plain(s, idx, c, t, x, f);
				goto done;
			}
			if (t >= c->tail_end) {
				c->state = S_WAIT;
				continue;
			}
			s->n.subtracted++;
			detect(s, idx, c, t, (float)(x - fitted), f);
			goto done;
		}
		}
	}
done:
	c->tc = t + 1;
	return true;
}

/* The stream jumped (samples lost, or a new start): what was waiting for
 * samples after the jump is let go. */
static void resync(struct mead_sig *s, uint64_t first, struct mead_frame *f)
{
	for (uint32_t k = 0; k < s->cfg.channels && s->salpa; k++) {
		struct chan *c = &s->ch[k];
		for (; c->tc < s->next; c->tc++) {
			const uint8_t fl = s->rf[at(s, k, c->tc)];
			if (c->state == S_IDLE && !(fl & F_BAD)) {
				out_plain(s, k, c, c->tc, s->rx[at(s, k, c->tc)], f);
			} else {
				if (c->state != S_IDLE)
					run_sample(s, c, fl, c->tc);
				out_blank(s, k, c, c->tc, f);
			}
		}
		if (c->state != S_IDLE)
			end_run(s, k, c, s->next);
		c->acc_on = false;
		c->tc = first;
	}
	for (uint32_t k = 0; k < s->cfg.channels && s->wf; k++)
		if (s->next > 0 || first > 0)
			wf_gap(s, k, &s->ch[k], s->next ? s->next - 1 : 0, first, f);
	s->next = first;
}

static void publish_waveform_counts(struct mead_sig *s)
{
	uint64_t pending = 0;
	for (uint32_t i = 0; i < s->cfg.channels; i++)
		pending += s->ch[i].n_pend;
	const uint64_t v[4] = { s->n.waveforms, s->n.waveforms_dropped, s->n.waveforms_unfinished, pending };
	for (int i = 0; i < 4; i++)
		atomic_store_explicit(&s->pub_wf[i], v[i], memory_order_relaxed);
}

void mead_sig_process(struct mead_sig *s, uint64_t first_sample, const float *uv, uint32_t n,
		      struct mead_frame *f)
{
	const uint32_t C = s->cfg.channels;
	const uint32_t start_out = f->n_spikes;
	struct mead_spike *out = f->spikes;

	if (first_sample != s->next && n)
		resync(s, first_sample, f);
	for (uint32_t i = 0; i < n; i++) {
		const uint64_t t = first_sample + i;
		const float *row = uv + (size_t)i * C;
		for (uint32_t k = 0; k < C; k++) {
			struct chan *c = &s->ch[k];
			const float x = row[k];
			const uint8_t fl = arrival_flags(s, c, t, x, k);
			if (!s->salpa) {
				if (fl & F_HARD)
					out_blank(s, k, c, t, f);
				else
					out_plain(s, k, c, t, x, f);
				continue;
			}
			arrive(s, k, c, t, x, fl);
			for (int j = 0; j < DRAIN && c->tc <= t; j++)
				if (!step(s, k, c, t + 1, f))
					break;
		}
	}
	if (n)
		s->next = first_sample + n;
	flush_notes(s, f);
	if (s->wf)
		publish_waveform_counts(s);

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
	return ch < s->cfg.channels ? bits_float(atomic_load_explicit(&s->pub_thr[ch], memory_order_relaxed)) : 0.0f;
}

float mead_sig_noise_uv(const struct mead_sig *s, uint32_t ch)
{
	return ch < s->cfg.channels ? bits_float(atomic_load_explicit(&s->pub_noise[ch], memory_order_relaxed)) : 0.0f;
}

int mead_sig_set_threshold(struct mead_sig *s, uint32_t electrode, int mode, double value)
{
	if ((mode == MEAD_THRESHOLD_NOISE && !(value >= MEAD_THRESHOLD_K_MIN && value <= MEAD_THRESHOLD_K_MAX)) ||
	    (mode == MEAD_THRESHOLD_UV && !(value > 0 && value <= MEAD_THRESHOLD_UV_MAX)) ||
	    (mode != MEAD_THRESHOLD_NOISE && mode != MEAD_THRESHOLD_UV))
		return -EINVAL;
	int n = 0;
	for (uint32_t i = 0; i < s->cfg.channels; i++) {
		if (electrode != MEAD_EVENT_ALL_ELECTRODES && s->electrode[i] != electrode)
			continue;
		struct chan *c = &s->ch[i];
		s->thr_mode[i] = (uint8_t)mode;
		s->thr_value[i] = (float)value;
		if (mode == MEAD_THRESHOLD_UV)
			c->thr = (float)value;
		else if (c->noise > 0)
			c->thr = (float)value * c->noise;   /* else still warming up */
		atomic_store_explicit(&s->pub_thr[i], float_bits(c->thr), memory_order_relaxed);
		n++;
	}
	return n ? n : -ENOENT;
}

int mead_sig_get_threshold(const struct mead_sig *s, uint32_t ch, int *ret_mode, double *ret_value)
{
	if (ch >= s->cfg.channels)
		return -EINVAL;
	*ret_mode = s->thr_mode[ch];
	*ret_value = s->thr_value[ch];
	return 0;
}

int mead_sig_set_thresholds(struct mead_sig *s, const char *spec, char *err, size_t err_len)
{
	char buf[1024];
	size_t len = spec ? strlen(spec) : 0;

	if (len == 0)
		return 0;
	if (len >= sizeof(buf)) {
		snprintf(err, err_len, "thresholds: longer than %zu characters", sizeof(buf) - 1);
		return -EINVAL;
	}
	memcpy(buf, spec, len + 1);
	char *save = NULL;
	for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		while (*item == ' ')
			item++;
		char *eq = strchr(item, '=');
		if (!eq) {
			snprintf(err, err_len, "thresholds: '%s' is not ELECTRODE=VALUE (e.g. 12=6x or 12=-40uV)", item);
			return -EINVAL;
		}
		*eq = '\0';
		char *end;
		uint32_t e;
		if (!strcmp(item, "all")) {
			e = MEAD_EVENT_ALL_ELECTRODES;
		} else {
			unsigned long v = strtoul(item, &end, 10);
			while (*end == ' ')
				end++;
			if (end == item || *end || v >= MEAD_EVENT_ALL_ELECTRODES) {
				snprintf(err, err_len, "thresholds: '%s' is not an electrode index or all", item);
				return -EINVAL;
			}
			e = (uint32_t)v;
		}
		int mode;
		double value;
		if (mead_parse_threshold(eq + 1, &mode, &value) < 0) {
			snprintf(err, err_len, "thresholds: electrode %s: '%s' is not a threshold (%g to %gx the noise, or up to %g uV)",
				 item, eq + 1, MEAD_THRESHOLD_K_MIN, MEAD_THRESHOLD_K_MAX, MEAD_THRESHOLD_UV_MAX);
			return -EINVAL;
		}
		if (mead_sig_set_threshold(s, e, mode, value) == -ENOENT) {
			snprintf(err, err_len, "thresholds: electrode %s is not recorded by any channel", item);
			return -EINVAL;
		}
	}
	return 0;
}

uint64_t mead_sig_spike_count(const struct mead_sig *s)
{
	return s->n.spikes;
}

uint64_t mead_sig_blanked_samples(const struct mead_sig *s)
{
	return s->n.blanked;
}

uint64_t mead_sig_events_lost(const struct mead_sig *s)
{
	return s->n.events_lost;
}

/* The thread that processes (or, stopped, any). */
void mead_sig_get_counts(const struct mead_sig *s, struct mead_sig_counts *ret)
{
	*ret = s->n;
	for (uint32_t i = 0; i < s->cfg.channels; i++)
		ret->waveforms_pending += s->ch[i].n_pend;
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
	const char *art = mead_driver_param_get(cfg, "artifact");
	if (art && mead_sig_parse_artifact(art, &sc->artifact) < 0) {
		snprintf(err, err_len, "artifact: '%s' is not one of blank, salpa", art);
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
	sc->salpa_half_width_us = (uint32_t)mead_driver_param_double(cfg, "salpa_half_width_us", sc->salpa_half_width_us);
	sc->salpa_max_us = (uint32_t)mead_driver_param_double(cfg, "salpa_max_us", sc->salpa_max_us);
	sc->salpa_threshold = mead_driver_param_double(cfg, "salpa_threshold", sc->salpa_threshold);
	sc->salpa_rail_uv = (float)mead_driver_param_double(cfg, "salpa_rail_uv", sc->salpa_rail_uv);
	if (!(sc->threshold_k > 0) || sc->noise_windows == 0 || sc->noise_window_us == 0) {
		snprintf(err, err_len, "spike detection options out of range");
		return -EINVAL;
	}
	sc->waveforms = mead_driver_param_bool(cfg, "waveforms", sc->waveforms);
	sc->waveform_pre_us = (uint32_t)mead_driver_param_int(cfg, "waveform_pre_us", sc->waveform_pre_us);
	sc->waveform_post_us = (uint32_t)mead_driver_param_int(cfg, "waveform_post_us", sc->waveform_post_us);
	if (sc->waveforms) {
		const char *key[2] = { "waveform_pre_us", "waveform_post_us" };
		const uint32_t us[2] = { sc->waveform_pre_us, sc->waveform_post_us };
		uint32_t n[2] = { 0, 0 };
		for (int i = 0; i < 2; i++)
			if (mead_sig_waveform_samples(us[i], sc->sample_rate_hz, &n[i]) < 0) {
				const double per = 1e6 / sc->sample_rate_hz;
				const uint32_t lo = (uint32_t)((uint64_t)us[i] * sc->sample_rate_hz / 1000000u);
				snprintf(err, err_len, "%s: %u us is not a whole number of samples at %u Hz (%g us each): %g or %g us would be",
					 key[i], us[i], sc->sample_rate_hz, per, lo * per, (lo + 1) * per);
				return -EINVAL;
			}
		if (n[0] + 1 + n[1] > MEAD_WAVEFORM_MAX_SAMPLES) {
			snprintf(err, err_len, "waveform_pre_us + waveform_post_us: %u + 1 + %u samples at %u Hz; a waveform holds at most %u",
				 n[0], n[1], sc->sample_rate_hz, MEAD_WAVEFORM_MAX_SAMPLES);
			return -EINVAL;
		}
	}
	if (sc->artifact == MEAD_SIG_ARTIFACT_SALPA) {
		uint32_t half = us_to_samples(sc->salpa_half_width_us, sc->sample_rate_hz);
		if (half < 2 || half > SALPA_MAX_HALF) {
			snprintf(err, err_len, "salpa_half_width_us: %u us at %u Hz gives a half window of %u samples; the fit needs 2 to %u",
				 sc->salpa_half_width_us, sc->sample_rate_hz, half, SALPA_MAX_HALF);
			return -EINVAL;
		}
		if (sc->salpa_max_us <= sc->blank_us) {
			snprintf(err, err_len, "salpa_max_us (%u) must be longer than blank_us (%u): subtraction follows the hard blank",
				 sc->salpa_max_us, sc->blank_us);
			return -EINVAL;
		}
		if (!(sc->salpa_threshold > 0)) {
			snprintf(err, err_len, "salpa_threshold must be above 0");
			return -EINVAL;
		}
	}
	return 0;
}

int mead_sig_waveform_samples(uint32_t us, uint32_t rate_hz, uint32_t *ret)
{
	const uint64_t num = (uint64_t)us * rate_hz;
	if (rate_hz == 0 || num % 1000000u)
		return -EINVAL;
	*ret = (uint32_t)(num / 1000000u);
	return 0;
}

bool mead_sig_waveforms(const struct mead_sig *s)
{
	return s->wf;
}

void mead_sig_waveform_window(const struct mead_sig *s, uint32_t *ret_pre, uint32_t *ret_post)
{
	*ret_pre = s->wf_pre;
	*ret_post = s->wf_post;
}

int mead_sig_control(struct mead_sig *s, enum mead_driver_control op, int64_t value)
{
	if (op != MEAD_CTL_THRESHOLD)
		return -EOPNOTSUPP;
	uint16_t e;
	enum mead_threshold_mode mode;
	float v;
	mead_ctl_threshold_unpack(value, &e, &mode, &v);
	int r = mead_sig_set_threshold(s, e, (int)mode, v);
	return r < 0 ? r : 0;
}

int mead_sig_describe(const struct mead_sig *s, char *buf, size_t len, int n)
{
	static const char *const keys[] = { "electrodes", "noise_uv", "threshold_uv", "threshold" };
	size_t at;

	if (n < 1 || (size_t)n >= len || buf[n - 1] != '}')
		return -EINVAL;
	at = (size_t)n - 1;
	int w = snprintf(buf + at, len - at, ",\"detector\":{");
	if (w < 0 || (size_t)w >= len - at)
		goto full;
	at += (size_t)w;
	for (size_t k = 0; k < 4; k++) {
		w = snprintf(buf + at, len - at, "%s\"%s\":[", k ? "," : "", keys[k]);
		if (w < 0 || (size_t)w >= len - at)
			goto full;
		at += (size_t)w;
		for (uint32_t i = 0; i < s->cfg.channels; i++) {
			const char *sep = i ? "," : "";
			if (k == 0)
				w = snprintf(buf + at, len - at, "%s%u", sep, s->electrode[i]);
			else if (k == 1)
				w = snprintf(buf + at, len - at, "%s%.2f", sep, mead_sig_noise_uv(s, i));
			else if (k == 2)
				w = snprintf(buf + at, len - at, "%s%.2f", sep, mead_sig_threshold_uv(s, i));
			else if (s->thr_mode[i] == MEAD_THRESHOLD_UV)
				w = snprintf(buf + at, len - at, "%s\"%guV\"", sep, (double)s->thr_value[i]);
			else
				w = snprintf(buf + at, len - at, "%s\"%gx\"", sep, (double)s->thr_value[i]);
			if (w < 0 || (size_t)w >= len - at)
				goto full;
			at += (size_t)w;
		}
		if (at + 1 >= len)
			goto full;
		buf[at++] = ']';
	}
	if (s->wf) {
		/* what the processing thread last published, not its own counters */
		unsigned long long k[4];
		for (int i = 0; i < 4; i++)
			k[i] = (unsigned long long)atomic_load_explicit(&s->pub_wf[i], memory_order_relaxed);
		w = snprintf(buf + at, len - at,
			     ",\"waveforms\":{\"pre\":%u,\"post\":%u,\"cut\":%llu,\"dropped\":%llu,\"unfinished\":%llu,\"pending\":%llu}",
			     s->wf_pre, s->wf_post, k[0], k[1], k[2], k[3]);
		if (w < 0 || (size_t)w >= len - at)
			goto full;
		at += (size_t)w;
	}
	if (at + 3 > len)
		goto full;
	buf[at++] = '}';
	buf[at++] = '}';
	buf[at] = '\0';
	return (int)at;
full:
	buf[n - 1] = '}';
	buf[n] = '\0';
	return -ENOSPC;
}
