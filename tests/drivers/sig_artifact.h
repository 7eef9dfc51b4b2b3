/* SPDX-License-Identifier: MIT */
/*
 * A stimulation artifact on top of tests/lib/siggen's signal, for the
 * signal path's test and benchmark: after each pulse every channel sits at
 * the amplifier's rail for a while, then comes back along a fast and a slow
 * exponential of opposite signs (so the tail crosses its baseline once),
 * of a size and sign that differ per channel.  Samples beyond the rail are
 * clipped to it, as a saturated amplifier does.
 */
#pragma once

#include <math.h>
#include <stdint.h>

struct sig_artifact {
	uint32_t channels;
	float rail_uv;           /* the amplifier's rail, ± */
	uint32_t pegged;         /* samples at the rail after the pulse on channel 0 */
	uint32_t pegged_extra;   /* channel c stays pegged pegged + c % (pegged_extra + 1) samples */
	float amp_uv;            /* fast component at the end of pegging, channel 0 */
	float tau_fast, tau_slow; /* in samples */
	float slow_frac;         /* slow component, opposite sign, as a fraction of amp */
	const uint64_t *pulses;  /* sorted */
	uint32_t n_pulses;
};

/* The artifact of channel c, d samples after its pulse (no rail). */
static inline float sig_artifact_at(const struct sig_artifact *a, uint32_t c, uint64_t d)
{
	/* sizes 0.7..1.3 x amp, signs alternating, so that both a negative
	 * detector's false crossings and spikes masked by a positive tail
	 * show up */
	float size = a->amp_uv * (0.7f + 0.6f * (float)((c * 7u) % 11u) / 10.0f);
	float sign = (c & 1u) ? -1.0f : 1.0f;
	uint32_t peg = a->pegged + c % (a->pegged_extra + 1);
	if (d < peg)
		return sign * 1e9f;
	float u = (float)(d - peg);
	return sign * size * (expf(-u / a->tau_fast) - a->slow_frac * expf(-u / a->tau_slow));
}

/* Adds the artifacts of every pulse to n frames of interleaved µV whose
 * first frame is sample first, and clips to the rail. */
static inline void sig_artifact_add(const struct sig_artifact *a, float *uv, uint64_t first, uint32_t n)
{
	const uint64_t reach = (uint64_t)(12.0f * (a->tau_fast > a->tau_slow ? a->tau_fast : a->tau_slow)) + 64;
	for (uint32_t p = 0; p < a->n_pulses; p++) {
		const uint64_t at = a->pulses[p];
		if (at >= first + n || at + reach <= first)
			continue;
		for (uint32_t i = 0; i < n; i++) {
			uint64_t t = first + i;
			if (t < at || t >= at + reach)
				continue;
			for (uint32_t c = 0; c < a->channels; c++)
				uv[(size_t)i * a->channels + c] += sig_artifact_at(a, c, t - at);
		}
	}
	for (uint32_t i = 0; i < n * a->channels; i++) {
		if (uv[i] > a->rail_uv)
			uv[i] = a->rail_uv;
		else if (uv[i] < -a->rail_uv)
			uv[i] = -a->rail_uv;
	}
}
