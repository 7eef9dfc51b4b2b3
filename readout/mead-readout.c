/* SPDX-License-Identifier: MIT */
/*
 * mead-readout: subscribes to a mead daemon's streams (wire v1), assembles
 * trials, scores the culture's own decision rule, trains a Hebbian readout
 * on the culture's spike counts and the same readout on the stimulus pixels,
 * publishes one JSON object per trial and prints a summary.  docs/readout.md.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "mead/wire.h"
#include "readout/hebbian.h"
#include "readout/model.h"
#include "readout/pixels.h"
#include "readout/rig.h"
#include "readout/rule.h"
#include "readout/source.h"
#include "readout/trials.h"
#include "lib/core/time.h"

#if __has_include("mead-build-config.h")
#include "mead-build-config.h"
#endif

#define DEFAULT_IMAGES_NAME "mnist8k-images-idx3-ubyte.gz"
#define MEAD_READOUT_DEFAULT_IMAGES "data/mnist/" DEFAULT_IMAGES_NAME

#define SAVE_MAGIC "MEADREAD"
#define SAVE_VERSION 1u

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static int verbose;

static void logmsg(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("mead-readout: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* Which trials the readouts are fitted on (--fit-on). */
enum fit_on { FIT_TRAIN, FIT_UNLABELLED, FIT_BOTH };
/* Which earlier label-off blocks (--fit-blocks). */
enum fit_sel { SEL_BEST, SEL_LAST, SEL_ALL };

struct options {
	const char *connect;
	const char *recording;
	const char *publish;
	uint32_t classes;
	int label_cells;          /* -1 auto: on for 2..4 classes */
	uint32_t grid_rows, grid_cols;
	int label_col;            /* -1: last column */
	int features_all;         /* -1 auto: label cells left out when they exist */
	struct mead_model_options model;
	enum mead_transform pixel_transform; /* the culture's is model.transform */
	double label_fraction;
	const char *images;
	const char *test_images;
	uint32_t pixel_grid;      /* 0: the images' own size */
	bool pixels;
	uint64_t max_trials;
	double idle_timeout_s;
	uint32_t max_waiting;
	bool score_last;
	enum fit_on fit_on;
	enum fit_sel fit_sel;
	uint32_t fit_last;        /* SEL_LAST: how many blocks */
	int32_t class_values[1024]; /* label event value of class i; -1: identity */
	uint32_t n_class_values;
	const char *save, *load;
	bool json;
};

struct block {
	uint32_t id;
	bool pass;                /* training trials came before it since the previous test-phase block */
	uint32_t n;               /* labelled test trials */
	uint32_t culture_ok, culture_n, ties;
	uint32_t readout_ok, readout_n;
	uint32_t pixel_ok, pixel_n;
	/* With --test-images: the pixel readout on the test file's image of
	 * each item.  Only the run's last block is the held-out test (its items
	 * index the test file); every earlier test-phase block is a validation
	 * or readout pass over training-file items (pixel_ok, pixel_n). */
	uint32_t pixel_ok_tf, pixel_n_tf;
};

/* Stored trial features, kept so that each fit can choose its samples. */
struct store {
	uint32_t nc, np;          /* culture and pixel feature sizes */
	float *cx, *px;           /* n x nc, n x np */
	int32_t *cls;             /* class, -1: label not used */
	uint32_t *block;
	bool *has_px;
	uint32_t n, cap;
};

struct state {
	struct options o;
	struct mead_trials *trials;
	struct mead_source *src;
	void *zctx, *pub;

	/* Grid: from options, else from status "layout", else 6 x 10. */
	bool grid_from_status;
	uint32_t rows, cols;
	uint32_t neurons[MEAD_TRIALS_MAX_ELECTRODES];
	uint32_t n_neurons;       /* 0 until a status message carried them */

	bool ready;               /* layout, features and models built */
	struct mead_rule_layout rule;
	uint32_t feat_idx[MEAD_TRIALS_MAX_ELECTRODES];
	uint32_t n_feat;
	struct mead_model *culture, *pixel;
	struct mead_model *loaded_culture, *loaded_pixel;

	struct mead_pixels *img, *test_img;
	float *xbuf;
	float *xbuf_tf;           /* the test file's pixels (--test-images) */

	uint64_t train_seen, train_used, labelled, test_seen, other_phase, unlabelled, pixel_missing;
	uint64_t lossy;
	bool warned_label;
	bool warned_status;
	struct block *blocks;      /* test trials, one per block */
	uint32_t n_blocks, cap_blocks;
	struct block *vblocks;     /* validation trials */
	uint32_t n_vblocks, cap_vblocks;
	struct store train, off;   /* training trials; label-off (test-phase) trials */
	uint64_t fit_key;          /* the selection the models were last fitted on */
	bool fitted;
	uint32_t fit_train, fit_off, fit_blocks; /* samples and blocks of the last fit */
	int64_t cur_block;         /* test-phase block being scored, -1: none */
	bool train_since_block;    /* a training trial since the last test-phase block began */
	bool cur_block_pass;       /* the current test-phase block followed training trials */
	char json[8192];
};

/* ---- Status and metadata ------------------------------------------------ */

/* The neurons per electrode from any status message; the grid from the
 * first that carries one, unless --grid named it. */
static void take_rig_info(struct state *s, const char *what, const char *js, size_t len)
{
	struct mead_rig_info ri;
	char err[256];
	if (mead_rig_info_parse(js, len, &ri, err, sizeof(err)) < 0) {
		if (!s->warned_status || verbose)
			logmsg("%s: %s; ignored", what, err);
		s->warned_status = true;
		return;
	}
	if (ri.n_neurons > 0) {
		if (verbose && (s->n_neurons != ri.n_neurons ||
				memcmp(s->neurons, ri.neurons, ri.n_neurons * sizeof(uint32_t)) != 0))
			logmsg("status: neurons_per_electrode for %u electrodes", ri.n_neurons);
		memcpy(s->neurons, ri.neurons, ri.n_neurons * sizeof(uint32_t));
		s->n_neurons = ri.n_neurons;
	}
	if (ri.has_grid && !s->ready && s->o.grid_rows == 0) {
		s->rows = ri.rows;
		s->cols = ri.cols;
		s->grid_from_status = true;
	}
}

/* ---- Setup once the grid is known --------------------------------------- */

static int setup(struct state *s)
{
	char err[256] = "";
	uint32_t n_el = s->rows * s->cols;
	uint32_t label_col = s->o.label_col >= 0 ? (uint32_t)s->o.label_col : s->cols - 1;
	bool cells = s->o.label_cells < 0 ? (s->o.classes >= 2 && s->o.classes <= MEAD_RULE_MAX_CLASSES)
					  : s->o.label_cells > 0;
	int r = mead_rule_layout_build(s->rows, s->cols, label_col, cells ? s->o.classes : 0, &s->rule,
				       err, sizeof(err));
	if (r < 0) {
		logmsg("%s", err);
		return r;
	}
	bool all = s->o.features_all < 0 ? s->rule.n_classes == 0 : s->o.features_all > 0;
	s->n_feat = 0;
	for (uint32_t e = 0; e < n_el; e++)
		if (all || !mead_rule_is_label_cell(&s->rule, e))
			s->feat_idx[s->n_feat++] = e;

	if (s->loaded_culture) {
		if (mead_model_n_in(s->loaded_culture) != s->n_feat) {
			logmsg("%s: the saved culture readout has %u inputs, this grid gives %u", s->o.load,
			       mead_model_n_in(s->loaded_culture), s->n_feat);
			return -EINVAL;
		}
		s->culture = s->loaded_culture;
		s->loaded_culture = NULL;
	} else if ((r = mead_model_new(&s->o.model, s->n_feat, &s->culture)) < 0) {
		logmsg("readout model: %s", strerror(-r));
		return r;
	}
	if (s->img) {
		uint32_t pn = mead_pixels_n(s->img);
		if (s->loaded_pixel) {
			if (mead_model_n_in(s->loaded_pixel) != pn) {
				logmsg("%s: the saved pixel readout has %u inputs, the images give %u", s->o.load,
				       mead_model_n_in(s->loaded_pixel), pn);
				return -EINVAL;
			}
			s->pixel = s->loaded_pixel;
			s->loaded_pixel = NULL;
		} else {
			struct mead_model_options po = s->o.model;
			po.transform = s->o.pixel_transform;
			if ((r = mead_model_new(&po, pn, &s->pixel)) < 0)
				return r;
		}
	}
	s->train.nc = s->off.nc = s->n_feat;
	s->train.np = s->off.np = s->img ? mead_pixels_n(s->img) : 0;
	if (verbose)
		logmsg("grid %ux%u%s, %u label classes, %u culture features, pixel baseline %s", s->rows,
		       s->cols, s->grid_from_status ? " (status)" : "", s->rule.n_classes, s->n_feat,
		       s->img ? "on" : "off");
	s->ready = true;
	return 0;
}

/* ---- Per-trial work ----------------------------------------------------- */

static bool pixel_features(struct state *s, const struct mead_trial *t, bool test, float *x)
{
	struct mead_pixels *im = (test && s->test_img) ? s->test_img : s->img;
	return im && mead_pixels_features(im, t->item, x);
}

static void culture_features(const struct state *s, const struct mead_trial *t, float *x)
{
	for (uint32_t i = 0; i < s->n_feat; i++)
		x[i] = (float)t->counts[s->feat_idx[i]];
}

static bool take_label(struct state *s)
{
	/* Exactly floor(k * fraction) of the first k training trials carry
	 * their label, spread evenly over the run. */
	double f = s->o.label_fraction;
	uint64_t k = s->train_seen;
	return floor((double)(k + 1) * f) > floor((double)k * f);
}

static struct block *get_block(struct block **v, uint32_t *n, uint32_t *cap, uint32_t id)
{
	if (*n > 0 && (*v)[*n - 1].id == id)
		return &(*v)[*n - 1];
	if (*n == *cap) {
		uint32_t c = *cap ? *cap * 2 : 16;
		struct block *b = realloc(*v, c * sizeof(*b));
		if (!b)
			return NULL;
		*v = b;
		*cap = c;
	}
	struct block *b = &(*v)[(*n)++];
	memset(b, 0, sizeof(*b));
	b->id = id;
	return b;
}

/* Label event value -> class index, or -1. */
static int32_t class_of(struct state *s, int32_t value)
{
	if (value < 0)
		return -1;
	if (s->o.n_class_values == 0)
		return (uint32_t)value < s->o.classes ? value : -1;
	for (uint32_t i = 0; i < s->o.n_class_values; i++)
		if (s->o.class_values[i] == value)
			return (int32_t)i;
	return -1;
}

static int store_add(struct store *st, const float *cx, const float *px, int32_t cls, uint32_t block)
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

static void store_free(struct store *st)
{
	free(st->cx);
	free(st->px);
	free(st->cls);
	free(st->block);
	free(st->has_px);
	memset(st, 0, sizeof(*st));
}

static uint64_t key_mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
	return h * 0x100000001b3ull;
}

/* The label-off blocks a fit for block `before` may use: test-phase blocks
 * that ended before it, chosen by --fit-blocks.  sel[] gets their indices
 * into s->blocks; returns how many. */
static uint32_t select_blocks(const struct state *s, int64_t before, uint32_t *sel)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < s->n_blocks; i++)
		if ((int64_t)s->blocks[i].id < before && s->blocks[i].n > 0)
			sel[n++] = i;
	if (n == 0)
		return 0;
	switch (s->o.fit_sel) {
	case SEL_ALL:
		return n;
	case SEL_LAST: {
		uint32_t k = s->o.fit_last < n ? s->o.fit_last : n;
		memmove(sel, sel + (n - k), k * sizeof(*sel));
		return k;
	}
	case SEL_BEST: {
		/* Among the blocks that followed training (validation passes),
		 * the one the culture's own rule scored highest, the first of
		 * equals: the pass whose weights the protocol keeps for the test
		 * (docs/protocols.md); without a rule, the latest pass.  Then
		 * every block after the latest pass (a readout pass: no training
		 * since, so on the test's weights). */
		int64_t best = -1, last_pass = -1;
		double best_acc = -1;
		for (uint32_t k = 0; k < n; k++) {
			const struct block *b = &s->blocks[sel[k]];
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

static bool block_selected(const uint32_t *sel, uint32_t n_sel, const struct block *blocks, uint32_t id)
{
	for (uint32_t i = 0; i < n_sel; i++)
		if (blocks[sel[i]].id == id)
			return true;
	return false;
}

/* Fits both readouts for the trials of block `before` (INT64_MAX: the end
 * of the input) on the selection --fit-on names, if it differs from the
 * last fit's.  Only trials of earlier blocks are ever used. */
static void fit_models(struct state *s, int64_t before)
{
	uint32_t *sel = s->n_blocks ? malloc(s->n_blocks * sizeof(uint32_t)) : NULL;
	uint32_t n_sel = 0;
	if (s->o.fit_on != FIT_TRAIN && sel)
		n_sel = select_blocks(s, before, sel);
	/* Without an earlier label-off block, unlabelled falls back on the
	 * training trials (the first validation pass; a run without any). */
	bool use_train = s->o.fit_on != FIT_UNLABELLED || n_sel == 0;
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
	uint32_t n_train = 0, n_off = 0;
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
		mead_model_add(s->culture, s->off.cx + (size_t)i * s->off.nc, s->off.cls[i]);
		if (s->pixel && s->off.has_px[i])
			mead_model_add(s->pixel, s->off.px + (size_t)i * s->off.np, s->off.cls[i]);
		n_off++;
	}
	free(sel);
	int r = mead_model_fit(s->culture);
	if (r < 0 && r != -EAGAIN)
		logmsg("culture readout fit: %s", strerror(-r));
	if (s->pixel) {
		r = mead_model_fit(s->pixel);
		if (r < 0 && r != -EAGAIN)
			logmsg("pixel readout fit: %s", strerror(-r));
	}
	s->fit_key = key;
	s->fitted = true;
	s->fit_train = n_train;
	s->fit_off = n_off;
	s->fit_blocks = n_sel;
	if (verbose)
		logmsg("fitted on %u training trials (%u labelled) and %u label-off trials of %u earlier blocks "
		       "in %.0f ms", n_train, mead_model_n_labelled(s->culture) - n_off, n_off, n_sel,
		       (mead_now_s() - t0) * 1e3);
}

/* A block's pixel figures: the test file's when tf (the run's last block,
 * --test-images given), else the training file's. */
static void block_pixels(const struct block *b, bool tf, uint32_t *ok, uint32_t *n)
{
	*ok = tf ? b->pixel_ok_tf : b->pixel_ok;
	*n = tf ? b->pixel_n_tf : b->pixel_n;
}

/* last_tf: the last block's pixel figures come from the test file
 * (--test-images given). */
static void sum_blocks(const struct block *v, uint32_t n, bool all, bool last_tf, struct block *out)
{
	memset(out, 0, sizeof(*out));
	for (uint32_t i = 0; i < n; i++) {
		if (!all && i + 1 != n)
			continue;
		const struct block *b = &v[i];
		out->id = b->id;
		out->n += b->n;
		out->culture_ok += b->culture_ok;
		out->culture_n += b->culture_n;
		out->ties += b->ties;
		out->readout_ok += b->readout_ok;
		out->readout_n += b->readout_n;
		uint32_t pok, pn;
		block_pixels(b, last_tf && i + 1 == n, &pok, &pn);
		out->pixel_ok += pok;
		out->pixel_n += pn;
	}
}

static int jnum(char *buf, size_t len, uint32_t ok, uint32_t n)
{
	return n ? snprintf(buf, len, "%.6f", (double)ok / n) : snprintf(buf, len, "null");
}

static const char *phase_name(int32_t p)
{
	switch (p) {
	case MEAD_PHASE_TRAIN: return "train";
	case MEAD_PHASE_TEST: return "test";
	case MEAD_PHASE_REST: return "rest";
	case MEAD_TRIAL_PHASE_VALIDATION: return "validation";
	}
	return "unknown";
}

static void publish(struct state *s, const char *js, size_t len)
{
	if (!s->pub)
		return;
	if (zmq_send(s->pub, "readout", 7, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
		return;
	zmq_send(s->pub, js, len, ZMQ_DONTWAIT);
}

static void handle_trial(struct state *s, const struct mead_trial *t)
{
	float x[MEAD_TRIALS_MAX_ELECTRODES];
	int culture = -1, readout = -1, pixel = -1, pixel_tf = -1;
	bool tie = false, labelled = false;
	int32_t cls = class_of(s, t->label);
	bool label_ok = cls >= 0;
	if (t->lossy)
		s->lossy++;
	if (t->label >= 0 && !label_ok && !s->warned_label) {
		logmsg("label %d is not one of the %u classes (--classes, --class-values)", t->label,
		       s->o.classes);
		s->warned_label = true;
	}

	if (t->phase == MEAD_PHASE_TRAIN) {
		if (!label_ok) {
			s->unlabelled++;
		} else {
			labelled = take_label(s);
			s->train_seen++;
			s->train_used++;
			if (labelled)
				s->labelled++;
			culture_features(s, t, x);
			bool px = s->pixel && pixel_features(s, t, false, s->xbuf);
			if (s->pixel && !px)
				s->pixel_missing++;
			s->train_since_block = true;
			if (store_add(&s->train, x, px ? s->xbuf : NULL, labelled ? cls : -1, t->block) < 0)
				logmsg("out of memory storing a training trial");
		}
	} else if (t->phase == MEAD_PHASE_TEST || t->phase == MEAD_TRIAL_PHASE_VALIDATION) {
		bool test = t->phase == MEAD_PHASE_TEST;
		/* Validation passes come between training blocks: the readout
		 * is fitted for the test phase only, and scores validation
		 * trials when it already has a current fit. */
		if (test) {
			s->test_seen++;
			/* A new block: fit on what came before it, never on it. */
			if ((int64_t)t->block != s->cur_block) {
				s->cur_block = t->block;
				s->cur_block_pass = s->train_since_block;
				s->train_since_block = false;
				if (s->o.fit_on != FIT_TRAIN || !s->fitted || s->fit_train != s->train.n)
					fit_models(s, t->block);
			}
		}
		if (s->rule.n_classes >= 2)
			culture = mead_rule_predict(&s->rule, t->counts, s->n_neurons ? s->neurons : NULL,
						    s->n_neurons, NULL, &tie);
		culture_features(s, t, x);
		if (test || s->fitted)
			readout = mead_model_predict(s->culture, x, NULL);
		/* Training-file pixels: what a validation or readout pass shows,
		 * and what a later fit may learn from. */
		bool px = s->pixel && pixel_features(s, t, false, s->xbuf);
		if (px && (test || s->fitted))
			pixel = mead_model_predict(s->pixel, s->xbuf, NULL);
		if (test && s->pixel && s->test_img && pixel_features(s, t, true, s->xbuf_tf))
			pixel_tf = mead_model_predict(s->pixel, s->xbuf_tf, NULL);
		if (test && label_ok && store_add(&s->off, x, px ? s->xbuf : NULL, cls, t->block) < 0)
			logmsg("out of memory storing a test-phase trial");
		if (!label_ok) {
			s->unlabelled++;
		} else {
			struct block *b = test ? get_block(&s->blocks, &s->n_blocks, &s->cap_blocks, t->block)
					       : get_block(&s->vblocks, &s->n_vblocks, &s->cap_vblocks, t->block);
			if (b) {
				if (b->n == 0)
					b->pass = test && s->cur_block_pass;
				b->n++;
				if (culture >= 0) {
					b->culture_n++;
					b->culture_ok += culture == cls;
					b->ties += tie;
				}
				if (readout >= 0) {
					b->readout_n++;
					b->readout_ok += readout == cls;
				}
				if (pixel >= 0) {
					b->pixel_n++;
					b->pixel_ok += pixel == cls;
				}
				if (pixel_tf >= 0) {
					b->pixel_n_tf++;
					b->pixel_ok_tf += pixel_tf == cls;
				}
			}
		}
	} else {
		s->other_phase++;
	}

	if (!s->pub)
		return;
	/* Running figures: the test phase so far (as the summary counts it),
	 * or the current validation pass. */
	struct block cur;
	memset(&cur, 0, sizeof(cur));
	if (t->phase == MEAD_PHASE_TEST)
		sum_blocks(s->blocks, s->n_blocks, !s->o.score_last, s->test_img != NULL, &cur);
	else if (t->phase == MEAD_TRIAL_PHASE_VALIDATION && s->n_vblocks > 0 && s->vblocks[s->n_vblocks - 1].id == t->block)
		cur = s->vblocks[s->n_vblocks - 1];
	char a[32], b[32], c[32];
	jnum(a, sizeof(a), cur.culture_ok, cur.culture_n);
	jnum(b, sizeof(b), cur.readout_ok, cur.readout_n);
	jnum(c, sizeof(c), cur.pixel_ok, cur.pixel_n);
	char cul[16], rd[16], px[16];
	snprintf(cul, sizeof(cul), culture >= 0 ? "%d" : "null", culture);
	snprintf(rd, sizeof(rd), readout >= 0 ? "%d" : "null", readout);
	if (pixel_tf >= 0)
		pixel = pixel_tf; /* a test trial may be the held-out test's: its item is in the test file */
	snprintf(px, sizeof(px), pixel >= 0 ? "%d" : "null", pixel);
	int n = snprintf(s->json, sizeof(s->json),
			 "{\"trial\":%lld,\"phase\":\"%s\",\"block\":%u,\"start_sample\":%llu,"
			 "\"end_sample\":%llu,\"label\":%d,\"item\":%lld,\"spikes\":%u,\"lossy\":%s,"
			 "\"labelled\":%s,\"culture\":%s,\"culture_tie\":%s,\"readout\":%s,\"pixel\":%s,"
			 "\"n\":%u,\"accuracy\":%s,\"readout_accuracy\":%s,\"pixel_baseline\":%s}",
			 (long long)t->index, phase_name(t->phase), t->block,
			 (unsigned long long)t->start_sample, (unsigned long long)t->end_sample, t->label,
			 (long long)t->item, t->total_spikes, t->lossy ? "true" : "false",
			 labelled ? "true" : "false", cul, tie ? "true" : "false", rd, px, cur.n, a, b, c);
	if (n > 0 && (size_t)n < sizeof(s->json))
		publish(s, s->json, (size_t)n);
}

/* ---- Saved state -------------------------------------------------------- */

static int save_state(const struct state *s, const char *path)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "wb");
	if (!f)
		return -errno;
	uint32_t flags = (s->culture ? 1u : 0u) | (s->pixel ? 2u : 0u);
	uint32_t v = htole32(SAVE_VERSION), fl = htole32(flags);
	int r = 0;
	if (fwrite(SAVE_MAGIC, 8, 1, f) != 1 || fwrite(&v, 4, 1, f) != 1 || fwrite(&fl, 4, 1, f) != 1)
		r = -EIO;
	if (!r && s->culture)
		r = mead_model_write(s->culture, f);
	if (!r && s->pixel)
		r = mead_model_write(s->pixel, f);
	if (fclose(f) != 0 && !r)
		r = -EIO;
	if (!r && rename(tmp, path) < 0)
		r = -errno;
	if (r)
		remove(tmp);
	return r;
}

static int load_state(struct state *s, const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -errno;
	char magic[8];
	uint32_t v, fl;
	int r = 0;
	if (fread(magic, 8, 1, f) != 1 || memcmp(magic, SAVE_MAGIC, 8) != 0 || fread(&v, 4, 1, f) != 1 ||
	    fread(&fl, 4, 1, f) != 1)
		r = -EINVAL;
	else if (le32toh(v) != SAVE_VERSION)
		r = -EPROTO;
	fl = le32toh(fl);
	if (!r && (fl & 1u))
		r = mead_model_read(f, &s->o.model, &s->loaded_culture);
	if (!r && (fl & 2u))
		r = mead_model_read(f, &s->o.model, &s->loaded_pixel);
	fclose(f);
	return r;
}

/* ---- Summary ------------------------------------------------------------ */

static void fmt_acc(char *buf, size_t len, uint32_t ok, uint32_t n)
{
	if (n)
		snprintf(buf, len, "%.4f", (double)ok / n);
	else
		snprintf(buf, len, "nan");
}

static void print_summary(struct state *s, double elapsed)
{
	struct block tot;
	sum_blocks(s->blocks, s->n_blocks, !s->o.score_last, s->test_img != NULL, &tot);
	struct mead_trials_stats st;
	mead_trials_get_stats(s->trials, &st);
	if (!s->o.json) {
		char a[16], b[16], c[16];
		fmt_acc(a, sizeof(a), tot.culture_ok, tot.culture_n);
		fmt_acc(b, sizeof(b), tot.readout_ok, tot.readout_n);
		fmt_acc(c, sizeof(c), tot.pixel_ok, tot.pixel_n);
		printf("accuracy=%s readout_accuracy=%s pixel_baseline=%s n=%u\n", a, b, c, tot.n);
		fflush(stdout);
		return;
	}
	char a[32], b[32], c[32];
	jnum(a, sizeof(a), tot.culture_ok, tot.culture_n);
	jnum(b, sizeof(b), tot.readout_ok, tot.readout_n);
	jnum(c, sizeof(c), tot.pixel_ok, tot.pixel_n);
	printf("{\"accuracy\":%s,\"readout_accuracy\":%s,\"pixel_baseline\":%s,\"n\":%u,"
	       "\"culture_correct\":%u,\"culture_ties\":%u,\"readout_correct\":%u,\"pixel_correct\":%u,"
	       "\"pixel_n\":%u,\"score\":\"%s\",\"test_trials\":%llu,\"train_trials\":%llu,"
	       "\"labelled_trials\":%llu,\"unlabelled_trials\":%llu,\"other_phase_trials\":%llu,"
	       "\"lossy_trials\":%llu,\"pixel_missing\":%llu,",
	       a, b, c, tot.n, tot.culture_ok, tot.ties, tot.readout_ok, tot.pixel_ok, tot.pixel_n,
	       s->o.score_last ? "last" : "all", (unsigned long long)s->test_seen,
	       (unsigned long long)s->train_used, (unsigned long long)s->labelled,
	       (unsigned long long)s->unlabelled, (unsigned long long)s->other_phase,
	       (unsigned long long)s->lossy, (unsigned long long)s->pixel_missing);
	printf("\"test_blocks\":[");
	for (uint32_t i = 0; i < s->n_blocks; i++) {
		const struct block *bl = &s->blocks[i];
		uint32_t pok, pn;
		block_pixels(bl, s->test_img && i + 1 == s->n_blocks, &pok, &pn);
		jnum(a, sizeof(a), bl->culture_ok, bl->culture_n);
		jnum(b, sizeof(b), bl->readout_ok, bl->readout_n);
		jnum(c, sizeof(c), pok, pn);
		printf("%s{\"block\":%u,\"n\":%u,\"accuracy\":%s,\"readout_accuracy\":%s,\"pixel_baseline\":%s}",
		       i ? "," : "", bl->id, bl->n, a, b, c);
	}
	printf("],\"validation\":[");
	for (uint32_t i = 0; i < s->n_vblocks; i++) {
		const struct block *bl = &s->vblocks[i];
		jnum(a, sizeof(a), bl->culture_ok, bl->culture_n);
		jnum(b, sizeof(b), bl->readout_ok, bl->readout_n);
		jnum(c, sizeof(c), bl->pixel_ok, bl->pixel_n);
		printf("%s{\"block\":%u,\"n\":%u,\"accuracy\":%s,\"readout_accuracy\":%s,\"pixel_baseline\":%s}",
		       i ? "," : "", bl->id, bl->n, a, b, c);
	}
	char fit_blocks[16];
	if (s->o.fit_sel == SEL_LAST)
		snprintf(fit_blocks, sizeof(fit_blocks), "%u", s->o.fit_last);
	else
		snprintf(fit_blocks, sizeof(fit_blocks), "%s", s->o.fit_sel == SEL_ALL ? "all" : "best");
	printf("],\"trials_finished\":%llu,\"trials_dropped\":%llu,\"trials_forced\":%llu,"
	       "\"messages\":{\"spikes\":%llu,\"events\":%llu,\"status\":%llu},"
	       "\"seq_gaps\":{\"spikes\":%llu,\"events\":%llu,\"status\":%llu},"
	       "\"lost_messages\":{\"spikes\":%llu,\"events\":%llu,\"status\":%llu},"
	       "\"bad_messages\":%llu,\"spikes_out_of_range\":%llu,\"spikes_evicted\":%llu,"
	       "\"run_ended\":%s,\"fit_on\":\"%s\",\"fit_blocks\":\"%s\",\"fit_train_trials\":%u,"
	       "\"fit_label_off_trials\":%u,\"fit_label_off_blocks\":%u,\"layer\":\"%s\",\"units\":%u,\"classifier\":\"%s\",\"classes\":%u,"
	       "\"label_fraction\":%g,\"seed\":%llu,\"elapsed_s\":%.3f}\n",
	       (unsigned long long)st.trials_finished, (unsigned long long)st.trials_dropped,
	       (unsigned long long)st.trials_forced, (unsigned long long)st.messages[MEAD_KIND_SPIKES],
	       (unsigned long long)st.messages[MEAD_KIND_EVENTS],
	       (unsigned long long)st.messages[MEAD_KIND_STATUS],
	       (unsigned long long)st.seq_gaps[MEAD_KIND_SPIKES],
	       (unsigned long long)st.seq_gaps[MEAD_KIND_EVENTS],
	       (unsigned long long)st.seq_gaps[MEAD_KIND_STATUS],
	       (unsigned long long)st.lost[MEAD_KIND_SPIKES], (unsigned long long)st.lost[MEAD_KIND_EVENTS],
	       (unsigned long long)st.lost[MEAD_KIND_STATUS],
	       (unsigned long long)(st.bad_messages + (s->src ? s->src->bad : 0)),
	       (unsigned long long)st.spikes_out_of_range, (unsigned long long)st.spikes_evicted,
	       st.run_ended ? "true" : "false",
	       s->o.fit_on == FIT_TRAIN ? "train" : s->o.fit_on == FIT_BOTH ? "both" : "unlabelled", fit_blocks,
	       s->fit_train, s->fit_off, s->fit_blocks, mead_layer_kind_name(s->o.model.layer),
	       s->o.model.layer == MEAD_LAYER_NONE ? 0 : s->o.model.units, mead_clf_kind_name(s->o.model.clf),
	       s->o.classes, s->o.label_fraction, (unsigned long long)s->o.model.seed, elapsed);
	fflush(stdout);
}

/* ---- Options ------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mead-readout [options]\n"
		"  -c, --connect EP         daemon PUB endpoint (tcp://127.0.0.1:5555)\n"
		"  -r, --recording FILE     read a recording instead of the socket\n"
		"  -p, --publish EP         readout PUB endpoint, or \"none\" (tcp://127.0.0.1:5557)\n"
		"      --classes N          classes (2); labels are 0..N-1\n"
		"      --label-cells on|off|auto   score the culture rule on label cells (auto: 2..4 classes)\n"
		"      --grid RxC           electrode grid (from status \"layout\", else 6x10)\n"
		"      --label-column C     label column (last column)\n"
		"      --features all|no-label     culture features (no-label when label cells exist)\n"
		"      --layer swta|hpca|none      Hebbian feature layer (hpca)\n"
		"      --units N            layer size (128)\n"
		"      --temperature T      SWTA softmax temperature (0.02)\n"
		"      --eta-layer E        layer learning rate (0.05)\n"
		"      --layer-epochs N     layer epochs over the stored training trials (10)\n"
		"      --classifier delta|proto    supervised Hebbian rule (delta)\n"
		"      --eta E              classifier learning rate (0.05)\n"
		"      --epochs N           classifier epochs (200)\n"
		"      --norm l2|max|sum|none      feature normalisation (l2)\n"
		"      --transform sqrt|none       culture spike counts before normalising (sqrt)\n"
		"      --pixel-transform sqrt|none pixels before normalising (none)\n"
		"      --center, --no-center       subtract the training mean before the layer (on)\n"
		"      --seed S             seed (1)\n"
		"      --label-fraction F   fraction of training trials whose label is used (1)\n"
		"      --images FILE        IDX images for the pixel baseline (%s)\n"
		"      --test-images FILE   IDX images that test trials' items index (--images)\n"
		"      --pixel-grid N       resize images to NxN (6); 0 keeps their size\n"
		"      --no-pixels          no pixel baseline\n"
		"  -n, --trials N           stop after N trials\n"
		"      --idle-timeout S     stop after S seconds without a message (0: never)\n"
		"      --max-waiting N      ended trials that may wait for the spike stream (8)\n"
		"      --class-values V,..  label event value of class 0, 1, ... (identity)\n"
		"      --fit-on train|unlabelled|both  trials the readouts are fitted on (unlabelled)\n"
		"      --fit-blocks best|last|N|all    earlier label-off blocks fit-on uses (best)\n"
		"      --score all|last     summary over all test trials, or the last block of them (last)\n"
		"      --save FILE          save the trained state at the end\n"
		"      --load FILE          start from a saved state\n"
		"      --json               summary as one JSON object\n"
		"  -v, --verbose            progress on stderr\n"
		"  -h, --help\n",
		MEAD_READOUT_DEFAULT_IMAGES);
}

enum {
	OPT_CLASSES = 256, OPT_LABEL_CELLS, OPT_GRID, OPT_LABEL_COL, OPT_FEATURES, OPT_LAYER, OPT_UNITS,
	OPT_TEMP, OPT_ETA_LAYER, OPT_LAYER_EPOCHS, OPT_CLF, OPT_ETA, OPT_EPOCHS, OPT_NORM, OPT_CENTER,
	OPT_SEED, OPT_FRACTION, OPT_IMAGES, OPT_TEST_IMAGES, OPT_PIXEL_GRID, OPT_NO_PIXELS, OPT_IDLE,
	OPT_MAX_WAITING, OPT_SCORE, OPT_SAVE, OPT_LOAD, OPT_JSON, OPT_CLASS_VALUES, OPT_FIT_ON, OPT_FIT_BLOCKS,
	OPT_NO_CENTER, OPT_TRANSFORM, OPT_PIXEL_TRANSFORM,
};

static bool parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *v)
{
	char *e;
	errno = 0;
	unsigned long long x = strtoull(s, &e, 10);
	if (errno || e == s || *e || x < lo || x > hi)
		return false;
	*v = (uint32_t)x;
	return true;
}

static bool parse_f(const char *s, double lo, double hi, double *v)
{
	char *e;
	errno = 0;
	double x = strtod(s, &e);
	if (errno || e == s || *e || !(x >= lo && x <= hi))
		return false;
	*v = x;
	return true;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option lo[] = {
		{"connect", required_argument, NULL, 'c'},
		{"recording", required_argument, NULL, 'r'},
		{"publish", required_argument, NULL, 'p'},
		{"classes", required_argument, NULL, OPT_CLASSES},
		{"label-cells", required_argument, NULL, OPT_LABEL_CELLS},
		{"grid", required_argument, NULL, OPT_GRID},
		{"label-column", required_argument, NULL, OPT_LABEL_COL},
		{"features", required_argument, NULL, OPT_FEATURES},
		{"layer", required_argument, NULL, OPT_LAYER},
		{"units", required_argument, NULL, OPT_UNITS},
		{"temperature", required_argument, NULL, OPT_TEMP},
		{"eta-layer", required_argument, NULL, OPT_ETA_LAYER},
		{"layer-epochs", required_argument, NULL, OPT_LAYER_EPOCHS},
		{"classifier", required_argument, NULL, OPT_CLF},
		{"eta", required_argument, NULL, OPT_ETA},
		{"epochs", required_argument, NULL, OPT_EPOCHS},
		{"norm", required_argument, NULL, OPT_NORM},
		{"transform", required_argument, NULL, OPT_TRANSFORM},
		{"pixel-transform", required_argument, NULL, OPT_PIXEL_TRANSFORM},
		{"center", no_argument, NULL, OPT_CENTER},
		{"no-center", no_argument, NULL, OPT_NO_CENTER},
		{"seed", required_argument, NULL, OPT_SEED},
		{"label-fraction", required_argument, NULL, OPT_FRACTION},
		{"images", required_argument, NULL, OPT_IMAGES},
		{"test-images", required_argument, NULL, OPT_TEST_IMAGES},
		{"pixel-grid", required_argument, NULL, OPT_PIXEL_GRID},
		{"no-pixels", no_argument, NULL, OPT_NO_PIXELS},
		{"trials", required_argument, NULL, 'n'},
		{"idle-timeout", required_argument, NULL, OPT_IDLE},
		{"max-waiting", required_argument, NULL, OPT_MAX_WAITING},
		{"score", required_argument, NULL, OPT_SCORE},
		{"fit-on", required_argument, NULL, OPT_FIT_ON},
		{"fit-blocks", required_argument, NULL, OPT_FIT_BLOCKS},
		{"class-values", required_argument, NULL, OPT_CLASS_VALUES},
		{"save", required_argument, NULL, OPT_SAVE},
		{"load", required_argument, NULL, OPT_LOAD},
		{"json", no_argument, NULL, OPT_JSON},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int c, k, li;
	uint32_t u;
	double d;
	while ((li = -1, c = getopt_long(argc, argv, "c:r:p:n:vh", lo, &li)) != -1) {
		const char *a = optarg;
		switch (c) {
		case 'c': o->connect = a; break;
		case 'r': o->recording = a; break;
		case 'p': o->publish = strcmp(a, "none") == 0 ? NULL : a; break;
		case OPT_CLASSES:
			if (!parse_u32(a, 2, 1024, &o->classes))
				goto bad;
			o->model.n_classes = o->classes;
			break;
		case OPT_LABEL_CELLS:
			if (strcmp(a, "on") == 0)
				o->label_cells = 1;
			else if (strcmp(a, "off") == 0)
				o->label_cells = 0;
			else if (strcmp(a, "auto") == 0)
				o->label_cells = -1;
			else
				goto bad;
			break;
		case OPT_GRID: {
			unsigned r, cc;
			char tail;
			if (sscanf(a, "%ux%u%c", &r, &cc, &tail) != 2 || r == 0 || cc == 0 ||
			    r * cc > MEAD_TRIALS_MAX_ELECTRODES)
				goto bad;
			o->grid_rows = r;
			o->grid_cols = cc;
			break;
		}
		case OPT_LABEL_COL:
			if (!parse_u32(a, 0, MEAD_TRIALS_MAX_ELECTRODES - 1, &u))
				goto bad;
			o->label_col = (int)u;
			break;
		case OPT_FEATURES:
			if (strcmp(a, "all") == 0)
				o->features_all = 1;
			else if (strcmp(a, "no-label") == 0)
				o->features_all = 0;
			else
				goto bad;
			break;
		case OPT_LAYER:
			if ((k = mead_layer_kind_parse(a)) < 0)
				goto bad;
			o->model.layer = (enum mead_layer_kind)k;
			break;
		case OPT_UNITS:
			if (!parse_u32(a, 1, 65536, &o->model.units))
				goto bad;
			break;
		case OPT_TEMP:
			if (!parse_f(a, 1e-6, 1e6, &d))
				goto bad;
			o->model.temperature = (float)d;
			break;
		case OPT_ETA_LAYER:
			if (!parse_f(a, 0, 10, &d))
				goto bad;
			o->model.eta_layer = (float)d;
			break;
		case OPT_LAYER_EPOCHS:
			if (!parse_u32(a, 0, 100000, &o->model.layer_epochs))
				goto bad;
			break;
		case OPT_CLF:
			if ((k = mead_clf_kind_parse(a)) < 0)
				goto bad;
			o->model.clf = (enum mead_clf_kind)k;
			break;
		case OPT_ETA:
			if (!parse_f(a, 0, 10, &d))
				goto bad;
			o->model.eta = (float)d;
			break;
		case OPT_EPOCHS:
			if (!parse_u32(a, 0, 100000, &o->model.epochs))
				goto bad;
			break;
		case OPT_NORM:
			if ((k = mead_norm_parse(a)) < 0)
				goto bad;
			o->model.norm = (enum mead_norm)k;
			break;
		case OPT_TRANSFORM:
			if ((k = mead_transform_parse(a)) < 0)
				goto bad;
			o->model.transform = (enum mead_transform)k;
			break;
		case OPT_PIXEL_TRANSFORM:
			if ((k = mead_transform_parse(a)) < 0)
				goto bad;
			o->pixel_transform = (enum mead_transform)k;
			break;
		case OPT_CENTER: o->model.center = true; break;
		case OPT_NO_CENTER: o->model.center = false; break;
		case OPT_SEED: {
			char *e;
			errno = 0;
			o->model.seed = strtoull(a, &e, 0);
			if (errno || e == a || *e)
				goto bad;
			break;
		}
		case OPT_FRACTION:
			if (!parse_f(a, 0, 1, &o->label_fraction))
				goto bad;
			break;
		case OPT_IMAGES: o->images = a; break;
		case OPT_TEST_IMAGES: o->test_images = a; break;
		case OPT_PIXEL_GRID:
			if (!parse_u32(a, 0, 1024, &o->pixel_grid))
				goto bad;
			break;
		case OPT_NO_PIXELS: o->pixels = false; break;
		case 'n': {
			char *e;
			errno = 0;
			o->max_trials = strtoull(a, &e, 10);
			if (errno || e == a || *e)
				goto bad;
			break;
		}
		case OPT_IDLE:
			if (!parse_f(a, 0, 1e9, &o->idle_timeout_s))
				goto bad;
			break;
		case OPT_MAX_WAITING:
			if (!parse_u32(a, 1, 1u << 20, &o->max_waiting))
				goto bad;
			break;
		case OPT_SCORE:
			if (strcmp(a, "last") == 0)
				o->score_last = true;
			else if (strcmp(a, "all") == 0)
				o->score_last = false;
			else
				goto bad;
			break;
		case OPT_FIT_ON:
			if (strcmp(a, "train") == 0)
				o->fit_on = FIT_TRAIN;
			else if (strcmp(a, "unlabelled") == 0)
				o->fit_on = FIT_UNLABELLED;
			else if (strcmp(a, "both") == 0)
				o->fit_on = FIT_BOTH;
			else
				goto bad;
			break;
		case OPT_FIT_BLOCKS:
			if (strcmp(a, "best") == 0)
				o->fit_sel = SEL_BEST;
			else if (strcmp(a, "all") == 0)
				o->fit_sel = SEL_ALL;
			else if (strcmp(a, "last") == 0) {
				o->fit_sel = SEL_LAST;
				o->fit_last = 1;
			} else if (parse_u32(a, 1, UINT32_MAX, &o->fit_last))
				o->fit_sel = SEL_LAST;
			else
				goto bad;
			break;
		case OPT_CLASS_VALUES: {
			const char *q = a;
			o->n_class_values = 0;
			while (*q) {
				char *e;
				errno = 0;
				long v = strtol(q, &e, 10);
				if (errno || e == q || v < 0 || v > INT32_MAX || o->n_class_values >= 1024)
					goto bad;
				o->class_values[o->n_class_values++] = (int32_t)v;
				q = e;
				if (*q == ',')
					q++;
				else if (*q)
					goto bad;
			}
			if (o->n_class_values < 2)
				goto bad;
			break;
		}
		case OPT_SAVE: o->save = a; break;
		case OPT_LOAD: o->load = a; break;
		case OPT_JSON: o->json = true; break;
		case 'v': verbose++; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -EINVAL;
		}
		continue;
bad:
		if (li >= 0)
			logmsg("bad value for --%s: %s", lo[li].name, a ? a : "");
		else
			logmsg("bad value for -%c: %s", c, a ? a : "");
		return -EINVAL;
	}
	if (optind < argc) {
		logmsg("unexpected argument %s", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

/* ---- Main --------------------------------------------------------------- */

static int open_images(struct state *s)
{
	char err[512];
	int r;
	if (!s->o.pixels)
		return 0;
	const char *path = s->o.images;
	if (!path) {
		/* The bundled set: installed, else in the source tree, else
		 * relative to the working directory. */
		static const char *const candidates[] = {
#ifdef MEAD_DATADIR
			MEAD_DATADIR "/mnist/" DEFAULT_IMAGES_NAME,
#endif
#ifdef MEAD_SOURCE_ROOT
			MEAD_SOURCE_ROOT "/data/mnist/" DEFAULT_IMAGES_NAME,
#endif
			MEAD_READOUT_DEFAULT_IMAGES,
		};
		path = candidates[sizeof(candidates) / sizeof(candidates[0]) - 1];
		for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++)
			if (access(candidates[i], R_OK) == 0) {
				path = candidates[i];
				break;
			}
	}
	if ((r = mead_pixels_open(path, s->o.pixel_grid, &s->img, err, sizeof(err))) < 0) {
		/* The default set is a convenience: without it the baseline is off. */
		if (!s->o.images) {
			logmsg("%s; pixel baseline off (name the images with --images)", err);
			return 0;
		}
		logmsg("%s", err);
		return r;
	}
	if (s->o.test_images &&
	    (r = mead_pixels_open(s->o.test_images, s->o.pixel_grid, &s->test_img, err, sizeof(err))) < 0) {
		logmsg("%s", err);
		return r;
	}
	if (s->test_img && (mead_pixels_rows(s->test_img) != mead_pixels_rows(s->img) ||
			    mead_pixels_cols(s->test_img) != mead_pixels_cols(s->img))) {
		logmsg("%s and %s hold images of different sizes", path, s->o.test_images);
		return -EINVAL;
	}
	s->xbuf = malloc((size_t)mead_pixels_n(s->img) * sizeof(float));
	s->xbuf_tf = malloc((size_t)mead_pixels_n(s->img) * sizeof(float));
	if (!s->xbuf || !s->xbuf_tf)
		return -ENOMEM;
	return 0;
}

static void cleanup(struct state *s)
{
	mead_source_free(s->src);
	if (s->pub)
		zmq_close(s->pub);
	if (s->zctx)
		zmq_ctx_term(s->zctx);
	mead_trials_free(s->trials);
	mead_model_free(s->culture);
	mead_model_free(s->pixel);
	mead_model_free(s->loaded_culture);
	mead_model_free(s->loaded_pixel);
	mead_pixels_free(s->img);
	mead_pixels_free(s->test_img);
	free(s->xbuf);
	free(s->xbuf_tf);
	free(s->blocks);
	free(s->vblocks);
	store_free(&s->train);
	store_free(&s->off);
}

int main(int argc, char **argv)
{
	static struct state st;
	struct state *s = &st;
	s->o = (struct options){
		.connect = "tcp://127.0.0.1:5555",
		.publish = "tcp://127.0.0.1:5557",
		.classes = 2,
		.label_cells = -1,
		.label_col = -1,
		.features_all = -1,
		.label_fraction = 1.0,
		.pixel_grid = 6,
		.pixels = true,
		/* validation passes are test blocks on the wire; the held-out
		 * test set is the last one (docs/protocols.md) */
		.score_last = true,
		.fit_on = FIT_UNLABELLED,
		.fit_sel = SEL_BEST,
		.fit_last = 1,
	};
	s->cur_block = -1;
	mead_model_options_default(&s->o.model);
	/* HPCA on centred features: on the culture's spike counts a common
	 * component dominates every trial, and SWTA prototypes on the raw
	 * direction barely separate (docs/readout.md, docs/BENCHMARKS.md). */
	s->o.model.layer = MEAD_LAYER_HPCA;
	s->o.model.center = true;
	/* Spike counts are Poisson-like; pixels are not counts (hebbian.h). */
	s->o.model.transform = MEAD_TRANSFORM_SQRT;
	/* The delta rule creeps toward its least-squares solution: 20 epochs
	 * stop it short on 1,300 trials (docs/BENCHMARKS.md, readout choices). */
	s->o.model.epochs = 200;
	s->o.model.units = 128;
	s->o.pixel_transform = MEAD_TRANSFORM_NONE;
	/* Before the slow start-up (images, connect): a stop request then
	 * still ends with a summary. */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (parse_options(argc, argv, &s->o) < 0)
		return 2;
	if (s->o.n_class_values) {
		if (s->o.classes != 2 && s->o.classes != s->o.n_class_values) {
			logmsg("--classes %u but --class-values names %u", s->o.classes, s->o.n_class_values);
			return 2;
		}
		s->o.classes = s->o.n_class_values;
	}
	s->o.model.n_classes = s->o.classes;
	s->rows = s->o.grid_rows ? s->o.grid_rows : 6;
	s->cols = s->o.grid_cols ? s->o.grid_cols : 10;

	int r, rc = 1;
	char err[512] = "";
	if (s->o.load && (r = load_state(s, s->o.load)) < 0) {
		logmsg("%s: cannot load saved state: %s", s->o.load,
		       r == -EINVAL ? "not a mead-readout state file, or damaged" : strerror(-r));
		goto out;
	}
	if (open_images(s) < 0)
		goto out;
	struct mead_trials_options to = {
		.n_electrodes = MEAD_TRIALS_MAX_ELECTRODES,
		.max_waiting = s->o.max_waiting,
	};
	if ((r = mead_trials_new(&to, &s->trials)) < 0) {
		logmsg("trials: %s", strerror(-r));
		goto out;
	}
	if (s->o.recording)
		r = mead_source_recording_new(s->o.recording, &s->src, err, sizeof(err));
	else
		r = mead_source_zmq_new(s->o.connect, &s->src, err, sizeof(err));
	if (r < 0) {
		logmsg("%s", err);
		goto out;
	}
	if (s->src->meta)
		take_rig_info(s, "recording metadata", s->src->meta, s->src->meta_len);
	if (s->o.publish) {
		s->zctx = zmq_ctx_new();
		s->pub = s->zctx ? zmq_socket(s->zctx, ZMQ_PUB) : NULL;
		int linger = 1000;
		if (!s->pub || zmq_setsockopt(s->pub, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
		    zmq_bind(s->pub, s->o.publish) < 0) {
			logmsg("bind %s: %s", s->o.publish, zmq_strerror(errno));
			goto out;
		}
	}

	double t0 = mead_now_s(), last_msg = t0;
	uint64_t handled = 0;
	bool done = false;
	struct mead_trial *trial = malloc(sizeof(*trial));
	if (!trial)
		goto out;
	while (!done && !stop_signal) {
		struct mead_source_msg m;
		r = s->src->next(s->src, &m, 200);
		if (r == -ENODATA)
			break;
		if (r < 0) {
			logmsg("receive: %s", strerror(-r));
			break;
		}
		if (r == 0) {
			if (s->o.idle_timeout_s > 0 && mead_now_s() - last_msg > s->o.idle_timeout_s) {
				logmsg("no message for %.1f s; stopping", s->o.idle_timeout_s);
				break;
			}
			continue;
		}
		last_msg = mead_now_s();
		if (m.hdr.kind == MEAD_KIND_STATUS)
			take_rig_info(s, "status message", m.payload, m.payload_len);
		mead_trials_feed(s->trials, &m.hdr, m.payload, m.payload_len);
		while (mead_trials_next(s->trials, trial)) {
			if (!s->ready && setup(s) < 0) {
				free(trial);
				goto out;
			}
			handle_trial(s, trial);
			if (s->o.max_trials && ++handled >= s->o.max_trials) {
				done = true;
				break;
			}
		}
		struct mead_trials_stats tst;
		mead_trials_get_stats(s->trials, &tst);
		if (tst.run_ended)
			done = true;
	}
	if (!done || !s->o.max_trials || handled < s->o.max_trials) {
		/* Whatever ended and is still waiting for spikes is as complete
		 * as it will get. */
		mead_trials_flush(s->trials);
		while (mead_trials_next(s->trials, trial)) {
			if (s->o.max_trials && handled >= s->o.max_trials)
				break;
			if (!s->ready && setup(s) < 0) {
				free(trial);
				goto out;
			}
			handle_trial(s, trial);
			handled++;
		}
	}
	free(trial);
	if (stop_signal && verbose)
		logmsg("stopped by signal %d", (int)stop_signal);
	/* A run without test trials (or with training after the last test
	 * block) still ends with a fit, for --save; the models that scored the
	 * last block are otherwise kept as they are. */
	if (s->culture && (!s->fitted || (s->o.fit_on == FIT_TRAIN && s->fit_train != s->train.n)))
		fit_models(s, s->o.fit_on == FIT_TRAIN || s->cur_block < 0 ? INT64_MAX : s->cur_block);
	print_summary(s, mead_now_s() - t0);
	rc = 0;
	if (s->o.save) {
		if (!s->culture) {
			logmsg("%s: nothing to save: no trial was seen", s->o.save);
			rc = 1;
		} else if ((r = save_state(s, s->o.save)) < 0) {
			logmsg("%s: cannot save: %s", s->o.save, strerror(-r));
			rc = 1;
		}
	}
out:
	cleanup(s);
	return rc;
}
