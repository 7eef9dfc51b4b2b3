/* SPDX-License-Identifier: MIT */
/*
 * Stimulus encoders: rate -> spike trains (the reference's and a Poisson
 * process), and the pixel -> rate map.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/core/rng.h"

/* ---- Rate -> spike trains ------------------------------------------------ */

enum mead_encoder_kind {
	/* The reference's "Poisson" encoder: integer inter-spike intervals drawn
	 * from Poisson(1000/rate) ms, 0 bumped to 1, spike at the cumulative
	 * sums that are <= T, shifted one ms earlier. */
	MEAD_ENCODER_REFERENCE = 0,
	/* A Poisson process in 1 ms bins: each ms spikes with probability
	 * rate/1000, independently. */
	MEAD_ENCODER_POISSON = 1,
};

/*
 * A spike-train source for a fixed set of rates (an index selects the rate)
 * and a fixed window of duration_ms.  Built on the main thread; drawing is
 * allocation-free and bounded (at most duration_ms spikes per draw).
 */
struct mead_spike_encoder;

int mead_spike_encoder_new(enum mead_encoder_kind kind, uint32_t duration_ms,
			   const double *rates_hz, uint32_t n_rates,
			   struct mead_spike_encoder **ret, char *err, size_t err_len);
void mead_spike_encoder_free(struct mead_spike_encoder *e);

/* Spike times (ms in [0, duration_ms), strictly increasing) for rate
 * rate_index into out_ms (room for duration_ms entries); returns the count. */
uint32_t mead_spike_encoder_draw(const struct mead_spike_encoder *e, uint32_t rate_index,
				 struct mead_rng *rng, uint16_t *out_ms);

uint32_t mead_spike_encoder_duration_ms(const struct mead_spike_encoder *e);

/* The pixel -> rate map of the reference: level/255 * max_rate_hz. */
double mead_pixel_rate_hz(uint8_t level, double max_rate_hz);

