/* SPDX-License-Identifier: MIT */
/*
 * The reference device's sample clock: a crystal that runs ppb parts per
 * billion fast (+) or slow (-), read against CLOCK_MONOTONIC.  Everything is
 * integer so that a 32-bit board (no __int128) gives the same samples.
 */
#ifndef MEAD_GADGET_DEVCLOCK_H
#define MEAD_GADGET_DEVCLOCK_H

#include <stdint.h>

/* floor(a * b / c) and ceil(a * b / c) without overflow of the product;
 * c > 0, and the result must fit in 64 bits. */
uint64_t mg_muldiv(uint64_t a, uint64_t b, uint64_t c);
uint64_t mg_muldiv_ceil(uint64_t a, uint64_t b, uint64_t c);

#define MG_PPB_LIMIT 100000000ll   /* +-10 %: beyond that it is not a crystal */

struct mg_clock {
	uint32_t rate;      /* nominal samples per second */
	int64_t ppb;        /* the device's oscillator error */
};

/* Device nanoseconds elapsed after true_ns host nanoseconds. */
uint64_t mg_clock_dev_ns(const struct mg_clock *c, uint64_t true_ns);
/* The first host nanosecond at which the device clock shows dev_ns. */
uint64_t mg_clock_true_ns(const struct mg_clock *c, uint64_t dev_ns);
/* Samples completed after true_ns host nanoseconds. */
uint64_t mg_clock_samples(const struct mg_clock *c, uint64_t true_ns);
/* The first host nanosecond at which `samples` samples are complete. */
uint64_t mg_clock_true_ns_of(const struct mg_clock *c, uint64_t samples);

#endif
