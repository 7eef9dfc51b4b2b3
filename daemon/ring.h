/* SPDX-License-Identifier: MIT */
/*
 * Single-producer single-consumer ring of variable-length messages.
 * Preallocated and pre-faulted at creation; push and pop never allocate,
 * lock or call into the kernel, so the real-time thread can produce and a
 * normal thread consume (or the other way round).  Each message is a
 * 8-byte length word followed by its bytes, padded to 8; a message never
 * wraps: when it would not fit before the end, a padding marker sends the
 * reader back to the start.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mead_ring;

/* capacity is rounded up to a power of two; max message = capacity / 2 - 8. */
int mead_ring_new(size_t capacity, struct mead_ring **ret);
void mead_ring_free(struct mead_ring *r);

size_t mead_ring_capacity(const struct mead_ring *r);
size_t mead_ring_max_message(const struct mead_ring *r);

/* Producer: reserve len bytes; NULL when the ring has no room (nothing changes). */
void *mead_ring_reserve(struct mead_ring *r, size_t len);
/* Producer: publish what was reserved (len must equal the reserved length). */
void mead_ring_commit(struct mead_ring *r, size_t len);
/* Producer: reserve+copy+commit; -ENOBUFS when full, -EMSGSIZE when too large. */
int mead_ring_push(struct mead_ring *r, const void *data, size_t len);

/* Consumer: the next message or NULL when empty. */
const void *mead_ring_peek(struct mead_ring *r, size_t *ret_len);
/* Consumer: done with the message returned by peek. */
void mead_ring_release(struct mead_ring *r);

/* Either side: bytes in use (approximate for the other side). */
size_t mead_ring_used(const struct mead_ring *r);
bool mead_ring_empty(const struct mead_ring *r);
