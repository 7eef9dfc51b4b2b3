/* SPDX-License-Identifier: MIT */
/*
 * Known MEA signal for the device models: coloured noise with mains hum per
 * channel plus spikes planted at chosen samples.  Generation is sequential
 * (each block follows the last) and deterministic for a seed.
 */
#pragma once

#include <stdint.h>

struct siggen_spike {
	uint64_t sample;   /* sample of the negative peak */
	uint16_t channel;
	float amp_uv;      /* peak depth, positive */
};

struct siggen;

struct siggen *siggen_new(uint32_t channels, uint32_t rate_hz, float noise_uv_rms, uint64_t seed);
void siggen_free(struct siggen *g);

/* Plant spikes; samples need not be sorted.  Returns 0 or -ENOMEM. */
int siggen_plant(struct siggen *g, const struct siggen_spike *s, uint32_t n);

/* Plants Poisson spikes of `amp_uv` on every channel at `rate_hz` each in
 * [from, to), at least `min_gap` samples apart on a channel.  Returns the
 * number planted. */
uint32_t siggen_plant_poisson(struct siggen *g, double rate_hz, uint64_t from, uint64_t to,
			      uint32_t min_gap, float amp_uv);

/* Sorted view of everything planted. */
const struct siggen_spike *siggen_spikes(const struct siggen *g, uint32_t *n);

/* Adds a burst of the given extra noise RMS on a channel over [from, to). */
void siggen_burst(struct siggen *g, uint16_t channel, uint64_t from, uint64_t to, float extra_rms_uv);

/* Next n sample frames (n x channels µV, interleaved). */
void siggen_fill(struct siggen *g, float *out, uint32_t n);
uint64_t siggen_position(const struct siggen *g);

/* Skip n frames without producing them (samples lost by the device). */
void siggen_skip(struct siggen *g, uint32_t n);

/* Spike waveform value d samples after the peak. */
float siggen_template(int d, float amp_uv);
