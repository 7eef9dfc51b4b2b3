/* SPDX-License-Identifier: MIT */
/*
 * The reference device's signal: per-channel noise from a counter-based
 * splitmix64 stream (sample n of channel c is a pure function of the seed,
 * n and c, so dropped packets, restarts and libc do not change it) plus
 * negative spikes planted at known samples on known electrodes.
 */
#ifndef MEAD_GADGET_SYNTH_H
#define MEAD_GADGET_SYNTH_H

#include <stddef.h>
#include <stdint.h>

/* The n-th output (from 0) of the splitmix64 generator seeded with seed. */
uint64_t mg_splitmix64_at(uint64_t seed, uint64_t n);
/* Sum of four uniform 16-bit lanes, centred: mean 0, sd 37837.2. */
int32_t mg_noise_raw(uint64_t x);

#define MG_NOISE_RAW_SD_MILLI 37837227u   /* sqrt(4 * (65536^2 - 1) / 12) * 1000 */

struct mg_synth_config {
	uint16_t channels;
	uint32_t rate;
	uint64_t seed;
	uint32_t nv_per_count;
	uint32_t noise_nv;        /* rms */
	uint32_t spike_nv;        /* depth of the trough */
	uint32_t spike_every_us;  /* 0: no spikes */
	const uint16_t *electrodes;
	uint32_t n_electrodes;
};

struct mg_spike {
	uint64_t sample;          /* of the trough */
	uint16_t electrode;
};

struct mg_synth {
	struct mg_synth_config cfg;
	uint16_t *electrodes;
	uint64_t *phase;          /* first trough of each listed electrode */
	uint64_t period;          /* samples between two spikes of one electrode */
	int16_t *tmpl;            /* counts, from trough - pre to trough + post */
	uint32_t pre, post;
	int64_t noise_mul;        /* counts per raw noise unit, Q24 */
};

/* Checks the configuration; on error says what was wrong in err. */
int mg_synth_init(struct mg_synth *s, const struct mg_synth_config *cfg, char *err, size_t err_len);
void mg_synth_free(struct mg_synth *s);

/* Samples first .. first+n-1, channel-interleaved, little-endian int16. */
void mg_synth_fill(const struct mg_synth *s, uint64_t first, uint32_t n, uint8_t *out);

/* Spikes whose trough lies in [from, to), in time order; returns how many
 * there are (at most cap are written). */
uint32_t mg_synth_spikes(const struct mg_synth *s, uint64_t from, uint64_t to, struct mg_spike *out, uint32_t cap);

#endif
