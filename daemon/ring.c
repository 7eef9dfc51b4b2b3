/* SPDX-License-Identifier: MIT */
#include "daemon/ring.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SLOT_ALIGN 8u
#define PAD_MARK UINT64_MAX

struct mead_ring {
	/* Producer and consumer indices live on their own cache lines so the
	 * two threads do not bounce one line between cores. */
	_Alignas(64) _Atomic uint64_t head;   /* written by producer */
	uint64_t reserved_at;                  /* producer only: where the open reservation starts */
	_Alignas(64) _Atomic uint64_t tail;   /* written by consumer */
	_Alignas(64) size_t capacity;
	size_t mask;
	uint8_t *buf;
};

static size_t round_up_pow2(size_t v)
{
	size_t p = 64;
	while (p < v)
		p <<= 1;
	return p;
}

static size_t slot_len(size_t len)
{
	return sizeof(uint64_t) + ((len + SLOT_ALIGN - 1) & ~(size_t)(SLOT_ALIGN - 1));
}

int mead_ring_new(size_t capacity, struct mead_ring **ret)
{
	struct mead_ring *r;

	if (!ret || capacity < 64 || capacity > ((size_t)1 << 34))
		return -EINVAL;
	r = aligned_alloc(64, sizeof(*r));
	if (!r)
		return -ENOMEM;
	memset(r, 0, sizeof(*r));
	r->capacity = round_up_pow2(capacity);
	r->mask = r->capacity - 1;
	r->buf = aligned_alloc(64, r->capacity);
	if (!r->buf) {
		free(r);
		return -ENOMEM;
	}
	/* Touch every page now so the real-time side never takes a page fault. */
	memset(r->buf, 0, r->capacity);
	atomic_init(&r->head, 0);
	atomic_init(&r->tail, 0);
	*ret = r;
	return 0;
}

void mead_ring_free(struct mead_ring *r)
{
	if (!r)
		return;
	free(r->buf);
	free(r);
}

size_t mead_ring_capacity(const struct mead_ring *r)
{
	return r->capacity;
}

size_t mead_ring_max_message(const struct mead_ring *r)
{
	return r->capacity / 2 - sizeof(uint64_t);
}

void *mead_ring_reserve(struct mead_ring *r, size_t len)
{
	uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
	uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
	size_t need = slot_len(len);
	size_t off = head & r->mask;
	size_t to_end = r->capacity - off;
	size_t free_bytes = r->capacity - (size_t)(head - tail);

	if (len > mead_ring_max_message(r))
		return NULL;
	if (need > to_end) {
		/* Would wrap: skip to the start, paying the tail bytes as padding. */
		if (need + to_end > free_bytes)
			return NULL;
		uint64_t mark = PAD_MARK;
		memcpy(r->buf + off, &mark, sizeof(mark));
		head += to_end;
		off = 0;
	} else if (need > free_bytes) {
		return NULL;
	}
	uint64_t l = len;
	memcpy(r->buf + off, &l, sizeof(l));
	r->reserved_at = head;
	return r->buf + off + sizeof(uint64_t);
}

void mead_ring_commit(struct mead_ring *r, size_t len)
{
	atomic_store_explicit(&r->head, r->reserved_at + slot_len(len), memory_order_release);
}

int mead_ring_push(struct mead_ring *r, const void *data, size_t len)
{
	void *p;

	if (len > mead_ring_max_message(r))
		return -EMSGSIZE;
	p = mead_ring_reserve(r, len);
	if (!p)
		return -ENOBUFS;
	if (len)
		memcpy(p, data, len);
	mead_ring_commit(r, len);
	return 0;
}

const void *mead_ring_peek(struct mead_ring *r, size_t *ret_len)
{
	uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
	uint64_t l;

	for (;;) {
		if (tail == head)
			return NULL;
		size_t off = tail & r->mask;
		memcpy(&l, r->buf + off, sizeof(l));
		if (l == PAD_MARK) {
			tail += r->capacity - off;
			atomic_store_explicit(&r->tail, tail, memory_order_release);
			continue;
		}
		if (ret_len)
			*ret_len = (size_t)l;
		return r->buf + off + sizeof(uint64_t);
	}
}

void mead_ring_release(struct mead_ring *r)
{
	uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	uint64_t l;

	memcpy(&l, r->buf + (tail & r->mask), sizeof(l));
	atomic_store_explicit(&r->tail, tail + slot_len((size_t)l), memory_order_release);
}

size_t mead_ring_used(const struct mead_ring *r)
{
	return (size_t)(atomic_load_explicit(&r->head, memory_order_acquire) -
			atomic_load_explicit(&r->tail, memory_order_acquire));
}

bool mead_ring_empty(const struct mead_ring *r)
{
	return mead_ring_used(r) == 0;
}
