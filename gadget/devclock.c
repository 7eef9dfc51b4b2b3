/* SPDX-License-Identifier: MIT */
#include "gadget/devclock.h"

#if defined(__SIZEOF_INT128__) && !defined(MG_NO_INT128)
static void mul_div(uint64_t a, uint64_t b, uint64_t c, uint64_t *q, uint64_t *r)
{
	unsigned __int128 p = (unsigned __int128)a * b;
	*q = (uint64_t)(p / c);
	*r = (uint64_t)(p % c);
}
#else
/* Schoolbook 64x64 -> 128, then bit-at-a-time division: slow, but it runs
 * once per packet on the boards that lack __int128. */
static void mul_div(uint64_t a, uint64_t b, uint64_t c, uint64_t *q, uint64_t *r)
{
	uint64_t al = (uint32_t)a, ah = a >> 32, bl = (uint32_t)b, bh = b >> 32;
	uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
	uint64_t mid = (ll >> 32) + (uint32_t)lh + (uint32_t)hl;
	uint64_t lo = (mid << 32) | (uint32_t)ll;
	uint64_t hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
	uint64_t quo = 0, rem = 0;
	for (int i = 127; i >= 0; i--) {
		uint64_t bit = i >= 64 ? (hi >> (i - 64)) & 1u : (lo >> i) & 1u;
		uint64_t top = rem >> 63;
		rem = rem << 1 | bit;
		if (top || rem >= c) {
			rem -= c;
			if (i < 64)
				quo |= 1ull << i;
		}
	}
	*q = quo;
	*r = rem;
}
#endif

uint64_t mg_muldiv(uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t q, r;
	mul_div(a, b, c, &q, &r);
	return q;
}

uint64_t mg_muldiv_ceil(uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t q, r;
	mul_div(a, b, c, &q, &r);
	return q + (r != 0);
}

static uint64_t dev_per_billion(const struct mg_clock *c)
{
	return (uint64_t)(1000000000ll + c->ppb);
}

uint64_t mg_clock_dev_ns(const struct mg_clock *c, uint64_t true_ns)
{
	return mg_muldiv(true_ns, dev_per_billion(c), 1000000000u);
}

uint64_t mg_clock_true_ns(const struct mg_clock *c, uint64_t dev_ns)
{
	return mg_muldiv_ceil(dev_ns, 1000000000u, dev_per_billion(c));
}

uint64_t mg_clock_samples(const struct mg_clock *c, uint64_t true_ns)
{
	return mg_muldiv(mg_clock_dev_ns(c, true_ns), c->rate, 1000000000u);
}

uint64_t mg_clock_true_ns_of(const struct mg_clock *c, uint64_t samples)
{
	/* The smallest t with samples(t) >= n: dev_ns(t) must reach
	 * ceil(n * 1e9 / rate), and true_ns() is the smallest t that does. */
	return mg_clock_true_ns(c, mg_muldiv_ceil(samples, 1000000000u, c->rate));
}
