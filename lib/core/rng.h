/* SPDX-License-Identifier: MIT */
/*
 * Seeded generators of our own: results must not depend on the C library.
 * splitmix64 seeds everything (and is itself the generator where a stream
 * of 64-bit values is all that is needed); xoshiro256** is the general one.
 */
#pragma once

#include <stdint.h>

/* One step of splitmix64: advances *x and returns the next value. */
static inline uint64_t mead_splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform double in [0, 1) with 53 bits from a splitmix64 stream. */
static inline double mead_splitmix64_uniform(uint64_t *x)
{
	return (double)(mead_splitmix64(x) >> 11) * 0x1.0p-53;
}

/* Poisson variate of mean lam by Knuth's multiplication method on a
 * splitmix64 stream: exact, O(lam) draws. */
long mead_splitmix64_poisson(uint64_t *x, double lam);

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

