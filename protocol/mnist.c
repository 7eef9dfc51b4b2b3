/* SPDX-License-Identifier: MIT */
/*
 * The digit protocol: each digit is resized to the stimulated grid, its
 * pixels become firing rates, the label drives its block of the label
 * column; training with validation passes, then test.  Everything heavy
 * (files, resize, split, plan) happens here on the main thread; a trial's
 * spike trains are drawn at its start from a per-trial PRNG stream, so the
 * output depends on the seed and the trial index only, not on the tick.
 */
#include "protocol/protocol_internal.h"
#include "lib/core/idx.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LABEL_RATE_INDEX 256u
#define STREAM_SPLIT 0x73706c6974ull          /* "split" */
#define STREAM_TRIAL 0x747269616c000000ull    /* "trial" << 24 */

struct plan_entry {
	uint32_t item;          /* index into the selected items */
	int8_t phase;
	uint8_t flags;
	uint64_t draw;          /* PRNG stream of its spike trains */
};

/* Readout-pass trials draw from streams of their own, so the other trials
 * get the same spike trains with or without the pass. */
#define READOUT_DRAW_BASE (1ull << 32)

struct mnist_state {
	struct mead_spike_encoder *enc;
	uint32_t gr, gc;
	uint16_t *grid_el;      /* gr * gc electrode per cell, NO_ELECTRODE when silent */
	uint32_t n_items;
	uint8_t *pixels;        /* n_items * gr * gc */
	int32_t *item_index;    /* index in its file */
	uint8_t *item_class;    /* class position */
	uint8_t *item_label;    /* label value */
	struct plan_entry *plan;
	uint64_t n_plan;
	uint32_t n_train, n_val, n_test;
	uint32_t n_screen;      /* first validation digits of a pass that decide whether it goes on */
	uint32_t presentation_ms, rest_ms;
	uint32_t n_label_el[MEAD_LABEL_MAX_CLASSES];
	uint16_t label_el[MEAD_LABEL_MAX_CLASSES][MEAD_LABEL_MAX_CELLS];
};

static void mnist_free(void *state)
{
	struct mnist_state *s = state;
	if (!s)
		return;
	mead_spike_encoder_free(s->enc);
	free(s->grid_el);
	free(s->pixels);
	free(s->item_index);
	free(s->item_class);
	free(s->item_label);
	free(s->plan);
	free(s);
}

static bool mnist_trial(const struct mead_protocol *p, uint64_t i, struct trial_desc *ret)
{
	const struct mnist_state *s = p->state;
	if (i >= s->n_plan)
		return false;
	const struct plan_entry *pe = &s->plan[i];
	struct trial_desc t = {
		.phase = pe->phase,
		.flags = pe->flags,
		.item = s->item_index[pe->item],
		.label = s->item_label[pe->item],
		.class_pos = s->item_class[pe->item],
		.duration_ms = s->presentation_ms,
		.rest_ms = s->rest_ms,
		.content = pe->item,
		.learning_ctl = true,
		.skip_to = (pe->flags & TRIAL_SCREEN_END) ? i + 1 + (s->n_val - s->n_screen) : 0,
	};
	*ret = t;
	return true;
}

static void mnist_fill(struct mead_protocol *p, uint64_t i, const struct trial_desc *t)
{
	const struct mnist_state *s = p->state;
	struct mead_rng rng;
	mead_rng_seed_stream(&rng, p->seed, STREAM_TRIAL + s->plan[i].draw);

	uint16_t *scratch = p->scratch;
	const uint8_t *px = s->pixels + (size_t)t->content * s->gr * s->gc;
	for (uint32_t c = 0; c < s->gr * s->gc; c++) {
		uint16_t e = s->grid_el[c];
		if (e == NO_ELECTRODE)
			continue;
		uint32_t n = mead_spike_encoder_draw(s->enc, px[c], &rng, scratch);
		for (uint32_t k = 0; k < n; k++)
			proto_add_spike(p, scratch[k], e);
	}
	if ((t->flags & TRIAL_LABEL) && t->class_pos >= 0 && (uint32_t)t->class_pos < MEAD_LABEL_MAX_CLASSES) {
		uint32_t cp = (uint32_t)t->class_pos;
		for (uint32_t k = 0; k < s->n_label_el[cp]; k++) {
			uint16_t e = s->label_el[cp][k];
			if (e == NO_ELECTRODE)
				continue;
			uint32_t n = mead_spike_encoder_draw(s->enc, LABEL_RATE_INDEX, &rng, scratch);
			for (uint32_t j = 0; j < n; j++)
				proto_add_spike(p, scratch[j], e);
		}
	}
}

static int mnist_describe(const struct mead_protocol *p, char *buf, size_t len)
{
	const struct mnist_state *s = p->state;
	int n = snprintf(buf, len, ", \"split\": {\"train\": %u, \"validation\": %u, \"test\": %u, \"screen\": %u}",
			 s->n_train, s->n_val, s->n_test, s->n_screen);
	return n < 0 ? -EIO : n;
}

static const struct protocol_kind mnist_kind = {
	.name = "mnist",
	.trial = mnist_trial,
	.fill = mnist_fill,
	.free = mnist_free,
	.describe = mnist_describe,
};

static int resolve(const char *data_dir, const char *path, char *out, size_t out_len)
{
	int n;
	if (path[0] == '/' || !data_dir || !*data_dir)
		n = snprintf(out, out_len, "%s", path);
	else
		n = snprintf(out, out_len, "%s/%s", data_dir, path);
	return (n < 0 || (size_t)n >= out_len) ? -ENAMETOOLONG : 0;
}

static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	if (stat(a, &sa) < 0 || stat(b, &sb) < 0)
		return strcmp(a, b) == 0;
	return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Indices of the digits whose label is in the class list, shuffled. */
static int class_pool(const struct mead_digits *d, const struct mead_cfg_uint_list *classes,
		      struct mead_rng *rng, uint32_t **ret, uint32_t *ret_n)
{
	uint32_t n = 0, count = mead_digits_count(d);
	uint32_t *v = malloc((size_t)(count ? count : 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (uint32_t i = 0; i < count; i++) {
		uint8_t l = mead_digits_label(d, i);
		for (uint32_t c = 0; c < classes->n; c++)
			if (classes->v[c] == l) {
				v[n++] = i;
				break;
			}
	}
	mead_rng_shuffle_u32(rng, v, n);
	*ret = v;
	*ret_n = n;
	return 0;
}

static int class_of(const struct mead_cfg_uint_list *classes, uint8_t label)
{
	for (uint32_t c = 0; c < classes->n; c++)
		if (classes->v[c] == label)
			return (int)c;
	return -1;
}

/* Classes take turns (class 0, 1, ..., 0, 1, ...), each class's digits in
 * their shuffled order; when a class runs out the others go on.  Same
 * digits, same count: only the order changes. */
static int interleave_classes(const struct mead_digits *d, const struct mead_cfg_uint_list *classes,
			      uint32_t *idx, uint32_t n)
{
	uint32_t nc = classes->n, *out = malloc((size_t)(n ? n : 1) * sizeof(*out));
	uint32_t next[MEAD_CFG_LIST_MAX];
	if (!out)
		return -ENOMEM;
	for (uint32_t c = 0; c < nc; c++)
		next[c] = 0;
	for (uint32_t k = 0; k < n;) {
		for (uint32_t c = 0; c < nc && k < n; c++) {
			while (next[c] < n && class_of(classes, mead_digits_label(d, idx[next[c]])) != (int)c)
				next[c]++;
			if (next[c] < n)
				out[k++] = idx[next[c]++];
		}
	}
	memcpy(idx, out, (size_t)n * sizeof(*out));
	free(out);
	return 0;
}

struct sel {
	const struct mead_digits *d;
	const uint32_t *idx;
	uint32_t n;
};

static int add_items(struct mnist_state *s, const struct mead_protocol_mnist_config *m, struct sel sel,
		     uint32_t *pos)
{
	uint32_t cells = s->gr * s->gc;
	for (uint32_t k = 0; k < sel.n; k++) {
		uint32_t i = sel.idx[k], at = (*pos)++;
		int r = mead_resize_u8(mead_digits_image(sel.d, i), mead_digits_cols(sel.d), mead_digits_rows(sel.d),
				       s->pixels + (size_t)at * cells, s->gc, s->gr);
		if (r < 0)
			return r;
		uint8_t l = mead_digits_label(sel.d, i);
		s->item_index[at] = (int32_t)i;
		s->item_label[at] = l;
		s->item_class[at] = (uint8_t)class_of(&m->classes, l);
	}
	return 0;
}

int proto_mnist_init(struct mead_protocol *p, const struct mead_protocol_config *cfg,
		     const struct mead_protocol_env *env, char *err, size_t err_len)
{
	const struct mead_protocol_mnist_config *m = &cfg->mnist;
	const struct mead_layout_view *L = env->layout;
	struct mead_digits *dtrain = NULL, *dtest = NULL;
	uint32_t *pool = NULL, *tpool = NULL, *epoch_order = NULL;
	int r;

	struct mnist_state *s = calloc(1, sizeof(*s));
	if (!s) {
		mead_set_err(err, err_len, "out of memory");
		return -ENOMEM;
	}
	p->kind = &mnist_kind;
	p->state = s;
	s->gr = m->grid_rows;
	s->gc = m->grid_cols;
	s->presentation_ms = m->presentation_ms;
	s->rest_ms = m->rest_ms;

	/* ---- checks that need no file ---- */
	if (m->classes.n == 0 || m->classes.n > 10) {
		mead_set_err(err, err_len, "protocol.mnist.classes: %u classes, expected 1..10", m->classes.n);
		return -EINVAL;
	}
	for (uint32_t a = 0; a < m->classes.n; a++) {
		if (m->classes.v[a] > 255) {
			mead_set_err(err, err_len, "protocol.mnist.classes: %u is not a byte label", m->classes.v[a]);
			return -EINVAL;
		}
		for (uint32_t b = 0; b < a; b++)
			if (m->classes.v[a] == m->classes.v[b]) {
				mead_set_err(err, err_len, "protocol.mnist.classes: %u listed twice", m->classes.v[a]);
				return -EINVAL;
			}
	}
	if (s->gr == 0 || s->gc == 0 || m->grid_row0 + s->gr > L->rows || m->grid_col0 + s->gc > L->cols) {
		mead_set_err(err, err_len, "protocol.mnist: a %ux%u grid at row %u, column %u does not fit the "
			      "%ux%u layout", s->gr, s->gc, m->grid_row0, m->grid_col0, L->rows, L->cols);
		return -EINVAL;
	}
	if (m->presentation_ms == 0) {
		mead_set_err(err, err_len, "protocol.mnist.presentation_ms: must be at least 1");
		return -EINVAL;
	}
	bool uses_label = m->label_train || m->label_test;
	bool wants_layout = uses_label || m->eval_every > 0;
	struct mead_label_layout ll;
	memset(&ll, 0, sizeof(ll));
	if (m->classes.n > MEAD_LABEL_MAX_CLASSES) {
		if (wants_layout) {
			mead_set_err(err, err_len, "protocol.mnist: %u classes have no label layout (2..4): set "
				      "label_train, label_test to false and eval_every to 0", m->classes.n);
			return -EINVAL;
		}
	} else if (m->classes.n >= 2 && (wants_layout || m->label_column < L->cols)) {
		/* without label input or validation the layout only serves to
		 * score the test trials: a layout without that column skips it */
		if (m->label_column >= L->cols) {
			mead_set_err(err, err_len, "protocol.mnist.label_column: column %u is outside the %u-column layout",
				      m->label_column, L->cols);
			return -EINVAL;
		}
		r = mead_label_layout_build(m->classes.n, s->gr, m->label_column, &ll, err, err_len);
		if (r < 0)
			return r;
		for (uint32_t c = 0; c < ll.n_classes; c++)
			for (uint32_t k = 0; k < ll.n_cells[c]; k++) {
				uint32_t col = ll.cells[c][k].col;
				if (col >= m->grid_col0 && col < m->grid_col0 + s->gc) {
					mead_set_err(err, err_len, "protocol.mnist.label_column: label cells in column %u "
						      "overlap the image grid (columns %u..%u)", col, m->grid_col0,
						      m->grid_col0 + s->gc - 1);
					return -EINVAL;
				}
			}
	}

	/* ---- electrodes ---- */
	s->grid_el = calloc((size_t)s->gr * s->gc, sizeof(*s->grid_el));
	if (!s->grid_el)
		goto nomem;
	uint32_t cells = 0;
	for (uint32_t rr = 0; rr < s->gr; rr++)
		for (uint32_t cc = 0; cc < s->gc; cc++) {
			uint16_t e = proto_electrode_at(L, m->grid_row0 + rr, m->grid_col0 + cc, true);
			s->grid_el[rr * s->gc + cc] = e;
			if (e != NO_ELECTRODE) {
				cells++;
				proto_mask_add(p, e);
			}
		}
	uint32_t max_label_cells = 0;
	p->n_classes = ll.n_classes >= 2 ? ll.n_classes : 0;
	for (uint32_t c = 0; c < p->n_classes; c++) {
		for (uint32_t k = 0; k < ll.n_cells[c]; k++) {
			uint16_t e = proto_electrode_at(L, m->grid_row0 + ll.cells[c][k].row, ll.cells[c][k].col, true);
			s->label_el[c][k] = e;
			p->label_el[c][k] = e;
			if (e != NO_ELECTRODE && uses_label)
				proto_mask_add(p, e);
		}
		s->n_label_el[c] = ll.n_cells[c];
		p->n_label_el[c] = ll.n_cells[c];
		if (ll.n_cells[c] > max_label_cells)
			max_label_cells = ll.n_cells[c];
	}
	p->max_cells = cells + (uses_label ? max_label_cells : 0);
	p->max_duration_ms = m->presentation_ms;
	p->min_duration_ms = m->presentation_ms;
	p->max_rate_hz = m->max_rate_hz;
	if (uses_label && m->label_rate_hz > p->max_rate_hz)
		p->max_rate_hz = m->label_rate_hz;
	p->stim = m->stim;
	p->reset_between = m->reset_between_trials;
	p->reset_rest_ms = m->reset_rest_ms;
	p->sample_end = m->sample_end;

	/* ---- encoder: 256 pixel levels, then the label rate ---- */
	double rates[LABEL_RATE_INDEX + 1];
	for (uint32_t v = 0; v < 256; v++)
		rates[v] = mead_pixel_rate_hz((uint8_t)v, m->max_rate_hz);
	rates[LABEL_RATE_INDEX] = m->label_rate_hz;
	r = mead_spike_encoder_new(m->encoder == MEAD_PROTOCOL_ENCODER_POISSON ? MEAD_ENCODER_POISSON
									    : MEAD_ENCODER_REFERENCE,
				   m->presentation_ms, rates, LABEL_RATE_INDEX + 1, &s->enc, err, err_len);
	if (r < 0)
		return r;

	/* ---- data ---- */
	char tri[PATH_MAX], trl[PATH_MAX], tei[PATH_MAX], tel[PATH_MAX];
	if (!m->train_images || !m->train_labels || !m->test_images || !m->test_labels) {
		mead_set_err(err, err_len, "protocol.mnist: train_images, train_labels, test_images and "
			      "test_labels must name IDX files");
		return -EINVAL;
	}
	if (resolve(env->data_dir, m->train_images, tri, sizeof(tri)) < 0 ||
	    resolve(env->data_dir, m->train_labels, trl, sizeof(trl)) < 0 ||
	    resolve(env->data_dir, m->test_images, tei, sizeof(tei)) < 0 ||
	    resolve(env->data_dir, m->test_labels, tel, sizeof(tel)) < 0) {
		mead_set_err(err, err_len, "protocol.mnist: a data path is too long");
		return -ENAMETOOLONG;
	}
	r = mead_digits_new(tri, trl, &dtrain, err, err_len);
	if (r < 0)
		goto out;
	bool shared = same_file(tri, tei) && same_file(trl, tel);
	if (!shared) {
		r = mead_digits_new(tei, tel, &dtest, err, err_len);
		if (r < 0)
			goto out;
	}

	struct mead_rng rng;
	mead_rng_seed_stream(&rng, cfg->seed, STREAM_SPLIT);
	uint32_t n_pool = 0, n_tpool = 0;
	if ((r = class_pool(dtrain, &m->classes, &rng, &pool, &n_pool)) < 0)
		goto nomem_out;
	uint32_t n_test, n_val, n_train;
	uint32_t val_auto = m->eval_every ? (m->validation_size ? m->validation_size : n_pool / 4) : 0;
	const uint32_t *test_idx, *val_idx, *train_idx;
	if (shared) {
		n_test = m->test_size ? m->test_size : n_pool / 4;
		n_val = val_auto;
		uint64_t claimed = (uint64_t)n_test + n_val;
		if (claimed > n_pool) {
			mead_set_err(err, err_len, "protocol.mnist: %u test + %u validation digits asked, %s holds "
				      "%u of the chosen classes", n_test, n_val, tri, n_pool);
			r = -EINVAL;
			goto out;
		}
		n_train = m->train_size ? m->train_size : n_pool - (uint32_t)claimed;
		if (claimed + n_train > n_pool) {
			mead_set_err(err, err_len, "protocol.mnist: %u train + %u validation + %u test digits "
				      "asked, %s holds %u of the chosen classes", n_train, n_val, n_test, tri, n_pool);
			r = -EINVAL;
			goto out;
		}
		test_idx = pool;
		val_idx = pool + n_test;
		train_idx = pool + n_test + n_val;
	} else {
		if ((r = class_pool(dtest, &m->classes, &rng, &tpool, &n_tpool)) < 0)
			goto nomem_out;
		n_test = m->test_size ? m->test_size : n_tpool;
		if (n_test > n_tpool) {
			mead_set_err(err, err_len, "protocol.mnist.test_size: %u asked, %s holds %u of the chosen "
				      "classes", n_test, tei, n_tpool);
			r = -EINVAL;
			goto out;
		}
		n_val = val_auto;
		if (n_val > n_pool) {
			mead_set_err(err, err_len, "protocol.mnist.validation_size: %u asked, %s holds %u of the "
				      "chosen classes", n_val, tri, n_pool);
			r = -EINVAL;
			goto out;
		}
		n_train = m->train_size ? m->train_size : n_pool - n_val;
		if ((uint64_t)n_train + n_val > n_pool) {
			mead_set_err(err, err_len, "protocol.mnist: %u train + %u validation digits asked, %s holds "
				      "%u of the chosen classes", n_train, n_val, tri, n_pool);
			r = -EINVAL;
			goto out;
		}
		test_idx = tpool;
		val_idx = pool;
		train_idx = pool + n_val;
	}
	if (n_train == 0 || n_test == 0) {
		mead_set_err(err, err_len, "protocol.mnist: %u training and %u test digits of the chosen classes: "
			      "both must be at least 1", n_train, n_test);
		r = -EINVAL;
		goto out;
	}
	if (m->train_order == MEAD_PROTOCOL_ORDER_INTERLEAVED &&
	    (r = interleave_classes(dtrain, &m->classes, pool + (train_idx - pool), n_train)) < 0)
		goto nomem_out;
	s->n_train = n_train;
	s->n_val = n_val;
	s->n_test = n_test;
	s->n_screen = m->eval_screen < n_val ? m->eval_screen : 0;

	/* ---- resized images of every selected digit ---- */
	s->n_items = n_train + n_val + n_test;
	s->pixels = malloc((size_t)s->n_items * s->gr * s->gc);
	s->item_index = malloc((size_t)s->n_items * sizeof(*s->item_index));
	s->item_class = malloc(s->n_items);
	s->item_label = malloc(s->n_items);
	if (!s->pixels || !s->item_index || !s->item_class || !s->item_label)
		goto nomem_out;
	uint32_t pos = 0;
	if ((r = add_items(s, m, (struct sel){ dtrain, train_idx, n_train }, &pos)) < 0 ||
	    (r = add_items(s, m, (struct sel){ dtrain, val_idx, n_val }, &pos)) < 0 ||
	    (r = add_items(s, m, (struct sel){ shared ? dtrain : dtest, test_idx, n_test }, &pos)) < 0) {
		mead_set_err(err, err_len, "protocol.mnist: cannot resize the digits to %ux%u", s->gr, s->gc);
		goto out;
	}

	/* ---- the plan ---- */
	uint32_t epochs = m->train_epochs ? m->train_epochs : 1;
	uint64_t n_train_trials = (uint64_t)n_train * epochs;
	uint64_t n_readout = m->readout_pass ? n_train : 0;
	uint64_t passes = (m->eval_every && n_val) ? (n_train_trials + m->eval_every - 1) / m->eval_every : 0;
	uint64_t n_plan = n_train_trials + n_readout + passes * n_val + n_test;
	if (n_plan > INT32_MAX) {
		mead_set_err(err, err_len, "protocol.mnist: %llu trials planned, at most %d",
			      (unsigned long long)n_plan, INT32_MAX);
		r = -E2BIG;
		goto out;
	}
	s->plan = malloc((size_t)n_plan * sizeof(*s->plan));
	epoch_order = malloc((size_t)n_train * sizeof(*epoch_order));
	if (!s->plan || !epoch_order)
		goto nomem_out;
	uint64_t k = 0;
	uint8_t train_flags = (m->label_train ? TRIAL_LABEL : 0) | (m->learning_train ? TRIAL_LEARNING : 0);
	uint8_t test_flags = TRIAL_SCORED | (m->label_test ? TRIAL_LABEL : 0) | (m->learning_test ? TRIAL_LEARNING : 0);
	uint64_t draw = 0, t = 0;
	for (uint32_t i = 0; i < n_train; i++)
		epoch_order[i] = i;
	for (uint32_t e = 0; e < epochs; e++) {
		/* Later epochs are reshuffled from the split's stream, so the first
		 * epoch is the same trial for trial whatever the count. */
		if (e > 0 && m->train_order == MEAD_PROTOCOL_ORDER_SHUFFLED)
			mead_rng_shuffle_u32(&rng, epoch_order, n_train);
		for (uint32_t i = 0; i < n_train; i++) {
			s->plan[k++] = (struct plan_entry){ epoch_order[i], MEAD_PHASE_TRAIN, train_flags, draw++ };
			t++;
			if (passes && (t % m->eval_every == 0 || t == n_train_trials))
				for (uint32_t v = 0; v < n_val; v++)
					s->plan[k++] = (struct plan_entry){ n_train + v, MEAD_PROTOCOL_PHASE_VALIDATION,
						TRIAL_SCORED | (v + 1 == n_val ? TRIAL_BLOCK_END : 0) |
							(v + 1 == s->n_screen ? TRIAL_SCREEN_END : 0), draw++ };
		}
	}
	for (uint32_t i = 0; i < n_readout; i++)
		s->plan[k++] = (struct plan_entry){ i, MEAD_PROTOCOL_PHASE_READOUT, 0, READOUT_DRAW_BASE + i };
	for (uint32_t i = 0; i < n_test; i++)
		s->plan[k++] = (struct plan_entry){ n_train + n_val + i, MEAD_PHASE_TEST, test_flags, draw++ };
	s->n_plan = k;
	p->n_trials = k;
	r = 0;
	goto out;

nomem_out:
	r = -ENOMEM;
	mead_set_err(err, err_len, "protocol.mnist: out of memory");
out:
	free(pool);
	free(tpool);
	free(epoch_order);
	mead_digits_free(dtrain);
	mead_digits_free(dtest);
	return r;
nomem:
	mead_set_err(err, err_len, "protocol.mnist: out of memory");
	return -ENOMEM;
}
