/* SPDX-License-Identifier: MIT */
#include "readout/fit.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lib/core/time.h"

int mead_readout_store_add(struct mead_readout_store *st, const float *cx, const float *px, int32_t cls,
			   uint32_t block)
{
	if (st->n == st->cap) {
		uint32_t cap = st->cap ? st->cap * 2 : 1024;
		float *ncx = realloc(st->cx, (size_t)cap * st->nc * sizeof(float));
		if (!ncx)
			return -ENOMEM;
		st->cx = ncx;
		if (st->np) {
			float *npx = realloc(st->px, (size_t)cap * st->np * sizeof(float));
			if (!npx)
				return -ENOMEM;
			st->px = npx;
		}
		int32_t *nl = realloc(st->cls, (size_t)cap * sizeof(int32_t));
		if (!nl)
			return -ENOMEM;
		st->cls = nl;
		uint32_t *nb = realloc(st->block, (size_t)cap * sizeof(uint32_t));
		if (!nb)
			return -ENOMEM;
		st->block = nb;
		bool *nh = realloc(st->has_px, (size_t)cap * sizeof(bool));
		if (!nh)
			return -ENOMEM;
		st->has_px = nh;
		st->cap = cap;
	}
	memcpy(st->cx + (size_t)st->n * st->nc, cx, st->nc * sizeof(float));
	st->has_px[st->n] = px != NULL && st->np > 0;
	if (st->has_px[st->n])
		memcpy(st->px + (size_t)st->n * st->np, px, st->np * sizeof(float));
	st->cls[st->n] = cls;
	st->block[st->n] = block;
	st->n++;
	return 0;
}

void mead_readout_store_free(struct mead_readout_store *st)
{
	free(st->cx);
	free(st->px);
	free(st->cls);
	free(st->block);
	free(st->has_px);
	memset(st, 0, sizeof(*st));
}

bool mead_readout_keeps_label(uint64_t k, double f)
{
	return floor((double)(k + 1) * f) > floor((double)k * f);
}

static uint64_t key_mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
	return h * 0x100000001b3ull;
}

/* The label-off blocks a fit for block `before` may use: test-phase blocks
 * that ended before it, chosen by --fit-blocks.  sel[] gets their indices
 * into s->blocks; returns how many. */
static uint32_t select_blocks(const struct mead_readout *s, int64_t before, uint32_t *sel)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < s->n_blocks; i++)
		if ((int64_t)s->blocks[i].id < before && s->blocks[i].n > 0)
			sel[n++] = i;
	if (n == 0)
		return 0;
	switch (s->o.fit_sel) {
	case MEAD_SEL_ALL:
		return n;
	case MEAD_SEL_LAST: {
		uint32_t k = s->o.fit_last < n ? s->o.fit_last : n;
		memmove(sel, sel + (n - k), k * sizeof(*sel));
		return k;
	}
	case MEAD_SEL_BEST: {
		/* Among the blocks that followed training (validation passes),
		 * the one the culture's own rule scored highest, the first of
		 * equals: the pass whose weights the protocol keeps for the test
		 * (docs/protocols.md); without a rule, the latest pass.  Then
		 * every block after the latest pass (a readout pass: no training
		 * since, so on the test's weights). */
		int64_t best = -1, last_pass = -1;
		double best_acc = -1;
		for (uint32_t k = 0; k < n; k++) {
			const struct mead_readout_block *b = &s->blocks[sel[k]];
			if (!b->pass)
				continue;
			last_pass = k;
			if (b->culture_n == 0)
				continue;
			double a = (double)b->culture_ok / b->culture_n;
			if (a > best_acc) {
				best_acc = a;
				best = sel[k];
			}
		}
		if (last_pass < 0)
			return n; /* no block followed training: all are on the test's weights */
		uint32_t out = 0, first_after = (uint32_t)last_pass + 1;
		uint32_t chosen = best >= 0 ? (uint32_t)best : sel[last_pass];
		for (uint32_t k = first_after; k < n; k++)
			sel[out++] = sel[k];
		sel[out++] = chosen;
		return out;
	}
	}
	return n;
}

static bool block_selected(const uint32_t *sel, uint32_t n_sel, const struct mead_readout_block *blocks,
			   uint32_t id)
{
	for (uint32_t i = 0; i < n_sel; i++)
		if (blocks[sel[i]].id == id)
			return true;
	return false;
}

void mead_readout_fit(struct mead_readout *s, int64_t before)
{
	uint32_t *sel = s->n_blocks ? malloc(s->n_blocks * sizeof(uint32_t)) : NULL;
	uint32_t n_sel = 0;
	if (s->o.fit_on != MEAD_FIT_TRAIN && sel)
		n_sel = select_blocks(s, before, sel);
	/* Without an earlier label-off block, unlabelled falls back on the
	 * training trials (the first validation pass; a run without any). */
	bool use_train = s->o.fit_on != MEAD_FIT_UNLABELLED || n_sel == 0;
	uint64_t key = 0xcbf29ce484222325ull;
	key = key_mix(key, use_train ? s->train.n : UINT64_MAX);
	for (uint32_t i = 0; i < n_sel; i++)
		key = key_mix(key, s->blocks[sel[i]].id);
	if (s->fitted && key == s->fit_key) {
		free(sel);
		return;
	}
	double t0 = mead_now_s();
	mead_model_clear(s->culture);
	if (s->pixel)
		mead_model_clear(s->pixel);
	uint32_t n_train = 0, n_off = 0, n_off_lab = 0;
	if (use_train)
		for (uint32_t i = 0; i < s->train.n; i++) {
			mead_model_add(s->culture, s->train.cx + (size_t)i * s->train.nc, s->train.cls[i]);
			if (s->pixel && s->train.has_px[i])
				mead_model_add(s->pixel, s->train.px + (size_t)i * s->train.np, s->train.cls[i]);
			n_train++;
		}
	for (uint32_t i = 0; i < s->off.n && n_sel > 0; i++) {
		if ((int64_t)s->off.block[i] >= before || !block_selected(sel, n_sel, s->blocks, s->off.block[i]))
			continue;
		/* the same fraction of these labels as of the training trials' */
		int32_t cls = mead_readout_keeps_label(n_off, s->o.label_fraction) ? s->off.cls[i] : -1;
		n_off_lab += cls >= 0;
		mead_model_add(s->culture, s->off.cx + (size_t)i * s->off.nc, cls);
		if (s->pixel && s->off.has_px[i])
			mead_model_add(s->pixel, s->off.px + (size_t)i * s->off.np, cls);
		n_off++;
	}
	free(sel);
	int r = mead_model_fit(s->culture);
	if (r < 0 && r != -EAGAIN)
		mead_readout_log("culture readout fit: %s", strerror(-r));
	if (s->pixel) {
		r = mead_model_fit(s->pixel);
		if (r < 0 && r != -EAGAIN)
			mead_readout_log("pixel readout fit: %s", strerror(-r));
	}
	s->fit_key = key;
	s->fitted = true;
	s->fit_train = n_train;
	s->fit_off = n_off;
	s->fit_blocks = n_sel;
	s->fit_labelled = mead_model_n_labelled(s->culture);
	if (s->o.verbose)
		mead_readout_log("fitted on %u training trials (%u labelled) and %u label-off trials (%u labelled) of %u "
				 "earlier blocks in %.0f ms", n_train, mead_model_n_labelled(s->culture) - n_off_lab, n_off,
				 n_off_lab, n_sel,
				 (mead_now_s() - t0) * 1e3);
}
