/* SPDX-License-Identifier: MIT */
/*
 * One run of mead-readout: what its parts share.  mead-readout.c starts
 * and ends the run and feeds it trials; score.c scores each trial and
 * reports; fit.c fits the two readouts on the stored trials; state.c saves
 * and loads them.  One thread.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "readout/model.h"
#include "readout/options.h"
#include "readout/pixels.h"
#include "readout/rule.h"
#include "readout/source.h"
#include "readout/trials.h"

/* The scores of one test-phase (or validation) block. */
struct mead_readout_block {
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
struct mead_readout_store {
	uint32_t nc, np;          /* culture and pixel feature sizes */
	float *cx, *px;           /* n x nc, n x np */
	int32_t *cls;             /* class, -1: label not used */
	uint32_t *block;
	bool *has_px;
	uint32_t n, cap;
};

struct mead_readout {
	struct mead_readout_options o;
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
	struct mead_readout_block *blocks;  /* test trials, one per block */
	uint32_t n_blocks, cap_blocks;
	struct mead_readout_block *vblocks; /* validation trials */
	uint32_t n_vblocks, cap_vblocks;
	struct mead_readout_store train, off; /* training trials; label-off (test-phase) trials */
	uint64_t fit_key;          /* the selection the models were last fitted on */
	bool fitted;
	uint32_t fit_train, fit_off, fit_blocks; /* samples and blocks of the last fit */
	uint32_t fit_labelled;     /* of those samples, the ones whose label the classifier learnt */
	int64_t cur_block;         /* test-phase block being scored, -1: none */
	bool train_since_block;    /* a training trial since the last test-phase block began */
	bool cur_block_pass;       /* the current test-phase block followed training trials */
	char json[8192];
};

/* "mead-readout: " and a line on stderr. */
void mead_readout_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
