/* SPDX-License-Identifier: MIT */
#include "lib/core/rng.h"

#include <math.h>

void mead_rng_seed(struct mead_rng *r, uint64_t seed)
{
	uint64_t x = seed;
	for (int i = 0; i < 4; i++)
		r->s[i] = mead_splitmix64(&x);
	/* all-zero state is the one fixed point of xoshiro */
	if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3]))
		r->s[0] = 1;
}

void mead_rng_seed_stream(struct mead_rng *r, uint64_t seed, uint64_t stream)
{
	uint64_t x = stream;
	mead_rng_seed(r, seed ^ mead_splitmix64(&x));
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t mead_rng_next(struct mead_rng *r)
{
	uint64_t *s = r->s;
	const uint64_t result = rotl(s[1] * 5, 7) * 9;
	const uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

uint32_t mead_rng_below(struct mead_rng *r, uint32_t n)
{
	/* Lemire's multiply-shift with rejection: no modulo bias */
	uint64_t m = (uint64_t)(uint32_t)(mead_rng_next(r) >> 32) * n;
	uint32_t low = (uint32_t)m;
	if (low < n) {
		uint32_t t = (uint32_t)(-n) % n;
		while (low < t) {
			m = (uint64_t)(uint32_t)(mead_rng_next(r) >> 32) * n;
			low = (uint32_t)m;
		}
	}
	return (uint32_t)(m >> 32);
}

double mead_rng_uniform(struct mead_rng *r)
{
	return (double)(mead_rng_next(r) >> 11) * 0x1.0p-53;
}

void mead_rng_shuffle_u32(struct mead_rng *r, uint32_t *v, uint32_t n)
{
	for (uint32_t i = n; i > 1; i--) {
		uint32_t j = mead_rng_below(r, i);
		uint32_t t = v[i - 1];
		v[i - 1] = v[j];
		v[j] = t;
	}
}


long mead_splitmix64_poisson(uint64_t *x, double lam)
{
	double l = exp(-lam), p = 1.0;
	long k = 0;

	do {
		k++;
		p *= mead_splitmix64_uniform(x);
	} while (p > l);
	return k - 1;
}
