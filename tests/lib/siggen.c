/* SPDX-License-Identifier: MIT */
#include "tests/lib/siggen.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define TPL_PRE 8
#define TPL_POST 30

struct burst {
	uint16_t channel;
	uint64_t from, to;
	float rms;
};

struct siggen {
	uint32_t channels, rate;
	float noise;
	uint64_t rng;
	uint64_t pos;
	float *lp;              /* per-channel low-pass state (colouring) */
	float *phase;           /* per-channel hum phase offset */
	float *hum;             /* per-channel hum amplitude */
	struct siggen_spike *spikes;
	uint32_t n_spikes, cap_spikes;
	bool sorted;
	uint32_t next;          /* first spike that may still touch the output */
	struct burst bursts[16];
	uint32_t n_bursts;
};

static uint64_t rnd(struct siggen *g)
{
	/* xorshift64* */
	g->rng ^= g->rng >> 12;
	g->rng ^= g->rng << 25;
	g->rng ^= g->rng >> 27;
	return g->rng * 2685821657736338717ull;
}

static double uni(struct siggen *g)
{
	return ((rnd(g) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static float gauss(struct siggen *g)
{
	/* Box-Muller: exact Gaussian tails matter when false positives
	 * at 5 sigma are counted */
	double u1 = uni(g), u2 = uni(g);
	return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

struct siggen *siggen_new(uint32_t channels, uint32_t rate_hz, float noise_uv_rms, uint64_t seed)
{
	struct siggen *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	g->channels = channels;
	g->rate = rate_hz;
	g->noise = noise_uv_rms;
	g->rng = seed * 0x9E3779B97F4A7C15ull + 1;
	g->lp = calloc(channels, sizeof(float));
	g->phase = calloc(channels, sizeof(float));
	g->hum = calloc(channels, sizeof(float));
	if (!g->lp || !g->phase || !g->hum) {
		siggen_free(g);
		return NULL;
	}
	for (uint32_t c = 0; c < channels; c++) {
		g->phase[c] = (float)(uni(g) * 6.283185307179586);
		/* residual mains pickup after the amplifier's high-pass: a
		 * fraction of the noise, different per channel */
		g->hum[c] = (float)(noise_uv_rms * (0.1 + 0.3 * uni(g)));
	}
	g->sorted = true;
	return g;
}

void siggen_free(struct siggen *g)
{
	if (!g)
		return;
	free(g->lp);
	free(g->phase);
	free(g->hum);
	free(g->spikes);
	free(g);
}

int siggen_plant(struct siggen *g, const struct siggen_spike *s, uint32_t n)
{
	if (g->n_spikes + n > g->cap_spikes) {
		uint32_t cap = (g->n_spikes + n) * 2 + 64;
		struct siggen_spike *p = realloc(g->spikes, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		g->spikes = p;
		g->cap_spikes = cap;
	}
	memcpy(g->spikes + g->n_spikes, s, n * sizeof(*s));
	g->n_spikes += n;
	g->sorted = false;
	return 0;
}

static int cmp_spike(const void *a, const void *b)
{
	const struct siggen_spike *x = a, *y = b;
	if (x->sample != y->sample)
		return x->sample < y->sample ? -1 : 1;
	return (int)x->channel - (int)y->channel;
}

static void sort_spikes(struct siggen *g)
{
	if (!g->sorted) {
		qsort(g->spikes, g->n_spikes, sizeof(*g->spikes), cmp_spike);
		g->sorted = true;
		g->next = 0;
		while (g->next < g->n_spikes && g->spikes[g->next].sample + TPL_POST < g->pos)
			g->next++;
	}
}

uint32_t siggen_plant_poisson(struct siggen *g, double rate_hz, uint64_t from, uint64_t to,
			      uint32_t min_gap, float amp_uv)
{
	uint32_t n = 0;
	for (uint32_t c = 0; c < g->channels; c++) {
		double t = (double)from;
		for (;;) {
			t += -log(uni(g)) * g->rate / rate_hz + min_gap;
			if (t >= (double)to)
				break;
			struct siggen_spike s = { (uint64_t)t, (uint16_t)c, amp_uv };
			if (siggen_plant(g, &s, 1) < 0)
				return n;
			n++;
		}
	}
	return n;
}

const struct siggen_spike *siggen_spikes(const struct siggen *g, uint32_t *n)
{
	sort_spikes((struct siggen *)g);
	*n = g->n_spikes;
	return g->spikes;
}

void siggen_burst(struct siggen *g, uint16_t channel, uint64_t from, uint64_t to, float extra_rms_uv)
{
	if (g->n_bursts < sizeof(g->bursts) / sizeof(g->bursts[0]))
		g->bursts[g->n_bursts++] = (struct burst){ channel, from, to, extra_rms_uv };
}

float siggen_template(int d, float amp_uv)
{
	if (d < -TPL_PRE || d > TPL_POST)
		return 0.0f;
	/* fast negative peak, slower positive after-hyperpolarisation; at
	 * 25 kHz about 0.3 ms wide and 1.5 ms long */
	double x = d;
	double v = -exp(-x * x / 8.0) + 0.3 * exp(-(x - 10.0) * (x - 10.0) / 32.0) * (x > 0 ? 1.0 : exp(-x * x / 4.0));
	return (float)(amp_uv * v);
}

void siggen_fill(struct siggen *g, float *out, uint32_t n)
{
	sort_spikes(g);
	const uint32_t C = g->channels;
	/* one-pole low-pass at ~3 kHz colours the noise like a band-limited
	 * amplifier; the gain keeps the RMS at the requested value */
	const float a = (float)exp(-2.0 * 3.141592653589793 * 3000.0 / g->rate);
	const float gain = g->noise * sqrtf((1.0f - a * a));
	const double w = 2.0 * 3.141592653589793 * 50.0 / g->rate;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t t = g->pos + i;
		float *row = out + (size_t)i * C;
		for (uint32_t c = 0; c < C; c++) {
			g->lp[c] = a * g->lp[c] + gain * gauss(g);
			row[c] = g->lp[c] + g->hum[c] * (float)sin(w * (double)t + g->phase[c]);
		}
		for (uint32_t b = 0; b < g->n_bursts; b++)
			if (t >= g->bursts[b].from && t < g->bursts[b].to && g->bursts[b].channel < C)
				row[g->bursts[b].channel] += g->bursts[b].rms * gauss(g);
	}
	uint64_t lo = g->pos, hi = g->pos + n;
	while (g->next < g->n_spikes && g->spikes[g->next].sample + TPL_POST < lo)
		g->next++;
	for (uint32_t k = g->next; k < g->n_spikes && g->spikes[k].sample < hi + TPL_PRE; k++) {
		const struct siggen_spike *s = &g->spikes[k];
		if (s->channel >= C)
			continue;
		for (int d = -TPL_PRE; d <= TPL_POST; d++) {
			int64_t t = (int64_t)s->sample + d;
			if (t < (int64_t)lo || t >= (int64_t)hi)
				continue;
			out[(size_t)(t - (int64_t)lo) * C + s->channel] += siggen_template(d, s->amp_uv);
		}
	}
	g->pos = hi;
}

uint64_t siggen_position(const struct siggen *g)
{
	return g->pos;
}

void siggen_skip(struct siggen *g, uint32_t n)
{
	g->pos += n;
}
