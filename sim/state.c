/* SPDX-License-Identifier: MIT */
/*
 * The learned weights out of the model and back in: to a file
 * (mead_sim_save/load) and to in-memory slots (snapshots).  A file holds
 * no positions and its pruning pattern is only checked, never applied:
 * both come from the seed (model.c), so a file fits only the network built
 * with the same parameters and seed, and load refuses any other.
 */
#include "sim/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * File layout (little-endian), see docs/twin.md:
 *   0  char[8]  "MEADSIMW"
 *   8  u32      version (1)
 *  12  u32      header size (64)
 *  16  u32      neurons
 *  20  u32      electrodes
 *  24  u64      seed
 *  32  u64      input, excitatory, inhibitory synapse counts
 *  56  u64      FNV-1a 64 of the payload
 *  64  payload: input weights (electrodes x neurons f32, pruned = -0.0),
 *      excitatory (neurons x neurons f32, row = presynaptic, pruned = -0.0),
 *      inhibitory CSR: row offsets (neurons + 1 u32), columns (u32),
 *      magnitudes (f32, the weight is minus the magnitude).
 */
#define HDR_SIZE 64u
#define FNV_OFF 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t fnv(uint64_t h, const void *buf, size_t len)
{
	const unsigned char *b = buf;
	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * FNV_PRIME;
	return h;
}

static void put32(unsigned char *b, uint32_t v) { for (int i = 0; i < 4; i++) b[i] = (unsigned char)(v >> (8 * i)); }
static void put64(unsigned char *b, uint64_t v) { for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i)); }
static uint32_t get32(const unsigned char *b) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | b[i]; return v; }
static uint64_t get64(const unsigned char *b) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | b[i]; return v; }

/* What load checks in each part before taking a file: the dense matrices'
 * sign bits (the pruning pattern) and the CSR structure must be this
 * network's; the magnitudes are what the file brings. */
enum part { PART_DENSE, PART_STRUCTURE, PART_VALUES };

typedef int (*walk_fn)(void *ctx, enum part part, void *ptr, size_t len);

/* Save, its checksum and both passes of load walk the payload here, so
 * they cannot disagree on its order.  The padding columns of the dense
 * matrices are not written. */
static int walk_payload(struct mead_sim *s, walk_fn fn, void *ctx)
{
	int r;
	for (uint32_t e = 0; e < s->ne; e++)
		if ((r = fn(ctx, PART_DENSE, s->win + (size_t)e * s->np, s->n * sizeof(float))) < 0)
			return r;
	for (uint32_t i = 0; i < s->n; i++)
		if ((r = fn(ctx, PART_DENSE, s->wex + (size_t)i * s->np, s->n * sizeof(float))) < 0)
			return r;
	if ((r = fn(ctx, PART_STRUCTURE, s->irow, (s->n + 1) * sizeof(uint32_t))) < 0)
		return r;
	if ((r = fn(ctx, PART_STRUCTURE, s->icol, s->irow[s->n] * sizeof(uint32_t))) < 0)
		return r;
	return fn(ctx, PART_VALUES, s->ival, s->irow[s->n] * sizeof(float));
}

struct wctx { FILE *f; uint64_t h; };

static int w_hash(void *ctx, enum part part, void *ptr, size_t len)
{
	struct wctx *w = ctx;
	w->h = fnv(w->h, ptr, len);
	return 0;
}

static int w_write(void *ctx, enum part part, void *ptr, size_t len)
{
	struct wctx *w = ctx;
	return fwrite(ptr, 1, len, w->f) == len ? 0 : -EIO;
}

static void header(struct mead_sim *s, unsigned char *h, uint64_t sum)
{
	memset(h, 0, HDR_SIZE);
	memcpy(h, MEAD_SIM_WEIGHTS_MAGIC, 8);
	put32(h + 8, MEAD_SIM_WEIGHTS_VERSION);
	put32(h + 12, HDR_SIZE);
	put32(h + 16, s->n);
	put32(h + 20, s->ne);
	put64(h + 24, s->p.seed);
	put64(h + 32, s->nsyn[0]);
	put64(h + 40, s->nsyn[1]);
	put64(h + 48, s->nsyn[2]);
	put64(h + 56, sum);
}

int mead_sim_save(struct mead_sim *s, const char *path)
{
	if (!s || !path)
		return -EINVAL;
	/* Pending potentiation belongs to the weights. */
	sim_sync_all(s, NULL);
	struct wctx w = { .h = FNV_OFF };
	walk_payload(s, w_hash, &w);
	unsigned char h[HDR_SIZE];
	header(s, h, w.h);
	char tmpp[4096];
	if (snprintf(tmpp, sizeof(tmpp), "%s.tmp", path) >= (int)sizeof(tmpp))
		return -ENAMETOOLONG;
	w.f = fopen(tmpp, "wb");
	if (!w.f)
		return -errno;
	int r = fwrite(h, 1, HDR_SIZE, w.f) == HDR_SIZE ? 0 : -EIO;
	if (r == 0)
		r = walk_payload(s, w_write, &w);
	if (fflush(w.f) != 0 && r == 0)
		r = -errno;
	if (fclose(w.f) != 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmpp, path) != 0)
		r = -errno;
	if (r < 0)
		remove(tmpp);
	return r;
}

struct rctx {
	FILE *f;
	uint64_t h;
	bool apply;
	bool mismatch;
	unsigned char buf[1 << 16];
};

static int r_read(void *ctx, enum part part, void *ptr, size_t len)
{
	struct rctx *c = ctx;
	unsigned char *dst = ptr;
	while (len) {
		size_t m = len < sizeof(c->buf) ? len : sizeof(c->buf);
		if (fread(c->buf, 1, m, c->f) != m)
			return -EBADMSG;
		c->h = fnv(c->h, c->buf, m);
		if (c->apply) {
			memcpy(dst, c->buf, m);
		} else if (part == PART_DENSE) {
			for (size_t i = 0; i + 4 <= m; i += 4)
				if ((c->buf[i + 3] ^ dst[i + 3]) & 0x80)
					c->mismatch = true;
		} else if (part == PART_STRUCTURE) {
			if (memcmp(dst, c->buf, m))
				c->mismatch = true;
		}
		dst += m;
		len -= m;
	}
	return 0;
}

int mead_sim_load(struct mead_sim *s, const char *path)
{
	if (!s || !path)
		return -EINVAL;
	struct rctx *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	int r = 0;
	c->f = fopen(path, "rb");
	if (!c->f) {
		r = -errno;
		free(c);
		return r;
	}
	unsigned char h[HDR_SIZE];
	if (fread(h, 1, HDR_SIZE, c->f) != HDR_SIZE || memcmp(h, MEAD_SIM_WEIGHTS_MAGIC, 8)) {
		r = -EBADMSG;
		goto out;
	}
	if (get32(h + 8) != MEAD_SIM_WEIGHTS_VERSION) {
		r = -EPROTONOSUPPORT;
		goto out;
	}
	if (get32(h + 12) != HDR_SIZE) {
		r = -EBADMSG;
		goto out;
	}
	if (get32(h + 16) != s->n || get32(h + 20) != s->ne || get64(h + 24) != s->p.seed ||
	    get64(h + 32) != s->nsyn[0] || get64(h + 40) != s->nsyn[1] || get64(h + 48) != s->nsyn[2]) {
		r = -ESTALE;
		goto out;
	}
	uint64_t want = get64(h + 56);
	/* First pass: verify without touching the model. */
	c->h = FNV_OFF;
	c->apply = false;
	if ((r = walk_payload(s, r_read, c)) < 0)
		goto out;
	if (fgetc(c->f) != EOF || c->h != want) {
		r = -EBADMSG;
		goto out;
	}
	if (c->mismatch) {
		r = -ESTALE;
		goto out;
	}
	/* Second pass: apply. */
	if (fseek(c->f, HDR_SIZE, SEEK_SET) != 0) {
		r = -errno;
		goto out;
	}
	c->h = FNV_OFF;
	c->apply = true;
	if ((r = walk_payload(s, r_read, c)) < 0)
		goto out;
	if (c->h != want) {
		/* the file changed under us; the weights are now whatever it held */
		r = -EBADMSG;
		goto out;
	}
	/* Pending potentiation belonged to the weights just replaced. */
	sim_rebase(s);
out:
	fclose(c->f);
	free(c);
	return r;
}

/* Snapshots: the same weights, copied into slots reserved up front so
 * that saving and restoring never allocate (training picks its best
 * checkpoint with them, between steps). */

static size_t snap_floats(const struct mead_sim *s)
{
	return (size_t)s->ne * s->np + (size_t)s->n * s->np + s->irow[s->n];
}

size_t mead_sim_snapshot_bytes(const struct mead_sim *s)
{
	return snap_floats(s) * sizeof(float);
}

int mead_sim_snapshots_alloc(struct mead_sim *s, uint32_t slots)
{
	if (s->nsnap)
		return -EALREADY;
	if (slots == 0)
		return 0;
	if (slots > 64)
		return -EINVAL;
	s->snap = calloc(slots, sizeof(float *));
	s->snap_full = calloc(slots, sizeof(bool));
	if (!s->snap || !s->snap_full)
		goto fail;
	for (uint32_t q = 0; q < slots; q++)
		if (!(s->snap[q] = sim_zalloc(snap_floats(s) * sizeof(float))))
			goto fail;
	s->nsnap = slots;
	return 0;
fail:
	for (uint32_t q = 0; q < slots && s->snap; q++)
		free(s->snap[q]);
	free(s->snap);
	free(s->snap_full);
	s->snap = NULL;
	s->snap_full = NULL;
	return -ENOMEM;
}

int mead_sim_snapshot_save(struct mead_sim *s, uint32_t slot)
{
	if (slot >= s->nsnap)
		return s->nsnap ? -ERANGE : -EOPNOTSUPP;
	sim_sync_all(s, NULL);
	float *d = s->snap[slot];
	size_t a = (size_t)s->ne * s->np, b = (size_t)s->n * s->np;
	memcpy(d, s->win, a * sizeof(float));
	memcpy(d + a, s->wex, b * sizeof(float));
	memcpy(d + a + b, s->ival, s->irow[s->n] * sizeof(float));
	s->snap_full[slot] = true;
	return 0;
}

int mead_sim_snapshot_restore(struct mead_sim *s, uint32_t slot)
{
	if (slot >= s->nsnap)
		return s->nsnap ? -ERANGE : -EOPNOTSUPP;
	if (!s->snap_full[slot])
		return -ENOENT;
	const float *d = s->snap[slot];
	size_t a = (size_t)s->ne * s->np, b = (size_t)s->n * s->np;
	memcpy(s->win, d, a * sizeof(float));
	memcpy(s->wex, d + a, b * sizeof(float));
	memcpy(s->ival, d + a + b, s->irow[s->n] * sizeof(float));
	/* pending potentiation belonged to the weights just replaced */
	sim_rebase(s);
	return 0;
}
