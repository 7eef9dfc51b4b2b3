/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gadget/devclock.h"
#include "lib/core/rng.h"
#include "gadget/synth.h"

uint64_t mg_splitmix64_at(uint64_t seed, uint64_t n)
{
	/* the stream's n-th step, from any n: its state then is seed + n x golden */
	uint64_t x = seed + n * 0x9E3779B97F4A7C15ull;
	return mead_splitmix64(&x);
}

int32_t mg_noise_raw(uint64_t x)
{
	int32_t s = (int32_t)(x & 0xffff) + (int32_t)((x >> 16) & 0xffff) + (int32_t)((x >> 32) & 0xffff) +
		    (int32_t)(x >> 48);
	return s - 2 * 65535;
}

/* Smooth bump: (1 - u^2)^2 on |u| < 1.  Plain IEEE arithmetic only, so the
 * template is the same on every libm. */
static double bump(double u)
{
	if (u <= -1.0 || u >= 1.0)
		return 0.0;
	double v = 1.0 - u * u;
	return v * v;
}

/* A cortical-looking spike: a 0.3 ms trough and a slower quarter-height
 * rebound 0.55 ms after it; in units of the trough depth. */
static double shape(double t_us)
{
	return -bump(t_us / 300.0) + 0.25 * bump((t_us - 550.0) / 450.0);
}

static int16_t sat16(int64_t v)
{
	return v > 32767 ? 32767 : v < -32768 ? -32768 : (int16_t)v;
}

int mg_synth_init(struct mg_synth *s, const struct mg_synth_config *cfg, char *err, size_t err_len)
{
	memset(s, 0, sizeof(*s));
	s->cfg = *cfg;
	if (cfg->channels == 0 || cfg->rate == 0 || cfg->nv_per_count == 0) {
		snprintf(err, err_len, "channels, rate and nV per count must be above 0");
		return -EINVAL;
	}
	uint64_t peak_counts = cfg->spike_nv / cfg->nv_per_count;
	/* the raw noise is bounded at 3.47 sd: keep trough plus noise inside int16 */
	uint64_t noise_max = (uint64_t)cfg->noise_nv * 347 / 100 / cfg->nv_per_count + 1;
	if (noise_max > 32767 || peak_counts + noise_max > 32767) {
		snprintf(err, err_len, "noise (%u nV) and spike (%u nV) exceed the 16-bit range at %u nV per count",
			 cfg->noise_nv, cfg->spike_nv, cfg->nv_per_count);
		return -ERANGE;
	}
	s->noise_mul = (int64_t)mg_muldiv((uint64_t)cfg->noise_nv << 24, 1000,
					  (uint64_t)cfg->nv_per_count * MG_NOISE_RAW_SD_MILLI);

	s->pre = (uint32_t)(300ull * cfg->rate / 1000000u);
	s->post = (uint32_t)(1000ull * cfg->rate / 1000000u);
	s->tmpl = calloc((size_t)s->pre + s->post + 1, sizeof(int16_t));
	if (!s->tmpl)
		return -ENOMEM;
	for (uint32_t k = 0; k <= s->pre + s->post; k++) {
		double t_us = ((double)k - (double)s->pre) * 1e6 / (double)cfg->rate;
		double v = shape(t_us) * (double)cfg->spike_nv / (double)cfg->nv_per_count;
		s->tmpl[k] = sat16((int64_t)(v < 0 ? v - 0.5 : v + 0.5));
	}

	if (cfg->spike_every_us && cfg->n_electrodes) {
		s->period = (uint64_t)cfg->spike_every_us * cfg->rate / 1000000u;
		if (s->period < 2u * (s->pre + s->post + 1)) {
			snprintf(err, err_len, "spikes every %u us are closer than two spike lengths (%.2f ms)",
				 cfg->spike_every_us, 2.0 * (s->pre + s->post + 1) * 1000.0 / cfg->rate);
			mg_synth_free(s);
			return -EINVAL;
		}
		s->electrodes = calloc(cfg->n_electrodes, sizeof(uint16_t));
		s->phase = calloc(cfg->n_electrodes, sizeof(uint64_t));
		if (!s->electrodes || !s->phase) {
			mg_synth_free(s);
			return -ENOMEM;
		}
		for (uint32_t i = 0; i < cfg->n_electrodes; i++) {
			if (cfg->electrodes[i] >= cfg->channels) {
				snprintf(err, err_len, "spike electrode %u: the device has channels 0..%u",
					 cfg->electrodes[i], cfg->channels - 1u);
				mg_synth_free(s);
				return -EINVAL;
			}
			for (uint32_t j = 0; j < i; j++) {
				if (cfg->electrodes[j] == cfg->electrodes[i]) {
					snprintf(err, err_len, "spike electrode %u is listed twice", cfg->electrodes[i]);
					mg_synth_free(s);
					return -EINVAL;
				}
			}
			s->electrodes[i] = cfg->electrodes[i];
			/* staggered so that no two listed electrodes fire together */
			s->phase[i] = s->period / 2 + (uint64_t)i * s->period / cfg->n_electrodes;
		}
		s->cfg.electrodes = s->electrodes;
	} else {
		s->cfg.n_electrodes = 0;
		s->cfg.electrodes = NULL;
	}
	return 0;
}

void mg_synth_free(struct mg_synth *s)
{
	free(s->tmpl);
	free(s->electrodes);
	free(s->phase);
	s->tmpl = NULL;
	s->electrodes = NULL;
	s->phase = NULL;
}

static uint64_t first_at_or_after(const struct mg_synth *s, uint32_t i, uint64_t from)
{
	if (from <= s->phase[i])
		return s->phase[i];
	return s->phase[i] + (from - s->phase[i] + s->period - 1) / s->period * s->period;
}

uint32_t mg_synth_spikes(const struct mg_synth *s, uint64_t from, uint64_t to, struct mg_spike *out, uint32_t cap)
{
	uint32_t n = 0;
	if (!s->period || to <= from)
		return 0;
	/* merge the electrodes' arithmetic progressions in time order */
	const uint32_t ne = s->cfg.n_electrodes;
	for (;;) {
		uint64_t best = UINT64_MAX;
		uint32_t bi = 0;
		for (uint32_t i = 0; i < ne; i++) {
			uint64_t t = first_at_or_after(s, i, from);
			if (t < best) {
				best = t;
				bi = i;
			}
		}
		if (best >= to)
			break;
		/* the progressions are staggered, so best is unique: take every
		 * electrode firing at this sample anyway, in list order */
		for (uint32_t i = bi; i < ne; i++) {
			if (first_at_or_after(s, i, from) == best) {
				if (n < cap)
					out[n] = (struct mg_spike){ best, s->electrodes[i] };
				n++;
			}
		}
		from = best + 1;
	}
	return n;
}

void mg_synth_fill(const struct mg_synth *s, uint64_t first, uint32_t n, uint8_t *out)
{
	const uint32_t C = s->cfg.channels;
	uint64_t idx = first * C;
	uint8_t *p = out;
	for (uint32_t r = 0; r < n; r++) {
		for (uint32_t c = 0; c < C; c++, idx++, p += 2) {
			int64_t v = ((int64_t)mg_noise_raw(mg_splitmix64_at(s->cfg.seed, idx)) * s->noise_mul) >> 24;
			uint16_t u = (uint16_t)(int16_t)v;
			p[0] = (uint8_t)u;
			p[1] = (uint8_t)(u >> 8);
		}
	}
	if (!s->period)
		return;
	/* troughs from pre samples after the block to post samples before it
	 * reach into it */
	uint64_t from = first > s->post ? first - s->post : 0;
	uint64_t to = first + n + s->pre;
	for (uint32_t i = 0; i < s->cfg.n_electrodes; i++) {
		uint16_t e = s->electrodes[i];
		for (uint64_t t = first_at_or_after(s, i, from); t < to; t += s->period) {
			for (uint32_t k = 0; k <= s->pre + s->post; k++) {
				uint64_t smp = t + k - s->pre;
				if (t + k < s->pre || smp < first || smp >= first + n)
					continue;
				uint8_t *q = out + ((size_t)(smp - first) * C + e) * 2;
				int64_t v = (int16_t)(uint16_t)(q[0] | q[1] << 8);
				uint16_t u = (uint16_t)sat16(v + s->tmpl[k]);
				q[0] = (uint8_t)u;
				q[1] = (uint8_t)(u >> 8);
			}
		}
	}
}
