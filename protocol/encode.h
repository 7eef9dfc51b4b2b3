/* SPDX-License-Identifier: MIT */
/*
 * Stimulus encoders: a seeded PRNG of our own (results must not depend on
 * the C library), image resize bit-exact with Pillow's antialiased bilinear
 * filter for 8-bit images, rate -> spike trains, and the label-column layout.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- PRNG: xoshiro256**, seeded through splitmix64 ---------------------- */

struct mead_rng {
	uint64_t s[4];
};

void mead_rng_seed(struct mead_rng *r, uint64_t seed);
uint64_t mead_rng_next(struct mead_rng *r);
/* Uniform integer in [0, n); n > 0.  Unbiased. */
uint32_t mead_rng_below(struct mead_rng *r, uint32_t n);
/* Uniform double in [0, 1) with 53 random bits. */
double mead_rng_uniform(struct mead_rng *r);
/* Derive an independent stream: the same (seed, stream) gives the same
 * sequence whatever else was drawn before. */
void mead_rng_seed_stream(struct mead_rng *r, uint64_t seed, uint64_t stream);
/* Fisher-Yates shuffle of n uint32 values. */
void mead_rng_shuffle_u32(struct mead_rng *r, uint32_t *v, uint32_t n);

/* ---- Resize -------------------------------------------------------------- */

/*
 * Resize an 8-bit single-channel image as Pillow's Image.resize(size,
 * BILINEAR) does for mode "L" (what torchvision's Resize applies to a PIL
 * image): triangle filter widened by the scale factor when shrinking,
 * horizontal pass then vertical pass, fixed-point coefficients with 22
 * fractional bits and rounding to 8 bits after each pass.  Main thread
 * (allocates its coefficient tables).  Returns 0 or -EINVAL / -ENOMEM.
 */
int mead_resize_u8(const uint8_t *src, uint32_t src_w, uint32_t src_h,
		   uint8_t *dst, uint32_t dst_w, uint32_t dst_h);

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

/* ---- Label layout ------------------------------------------------------- */

#define MEAD_LABEL_MAX_CLASSES 4
#define MEAD_LABEL_MAX_CELLS 64

struct mead_label_cell {
	uint16_t row, col;
};

/*
 * Which grid cells carry each class's label.  2 classes: the label column
 * split into a top and a bottom half (class 0 on top; an odd middle row is
 * left silent).  3 classes: three blocks of rows/3 rows (with rows % 3 == 2
 * the two spare rows separate the blocks).  4 classes: with rows % 4 == 0,
 * four equal blocks; with 6 rows, the reference's layout of 3 cells per
 * class over the label column and the one left of it.  0 or 1 class: no
 * label cells (no-label mode).
 */
struct mead_label_layout {
	uint32_t n_classes;
	uint32_t n_cells[MEAD_LABEL_MAX_CLASSES];
	struct mead_label_cell cells[MEAD_LABEL_MAX_CLASSES][MEAD_LABEL_MAX_CELLS];
};

/* -EINVAL with a message when the combination has no layout. */
int mead_label_layout_build(uint32_t n_classes, uint32_t rows, uint32_t label_column,
			    struct mead_label_layout *ret, char *err, size_t err_len);
