/* SPDX-License-Identifier: MIT */
/*
 * mead-readout's command line (docs/readout.md, "Options"): the defaults,
 * and parsing with every value checked before anything starts, so a typo
 * fails at once with the option named instead of after a run.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "readout/hebbian.h"
#include "readout/model.h"

#define MEAD_READOUT_DEFAULT_IMAGES_NAME "mnist8k-images-idx3-ubyte.gz"
#define MEAD_READOUT_DEFAULT_IMAGES "data/mnist/" MEAD_READOUT_DEFAULT_IMAGES_NAME

#define MEAD_READOUT_MAX_CLASSES 1024u

/* Which trials the readouts are fitted on (--fit-on). */
enum mead_fit_on { MEAD_FIT_TRAIN, MEAD_FIT_UNLABELLED, MEAD_FIT_BOTH };
/* Which earlier label-off blocks (--fit-blocks). */
enum mead_fit_sel { MEAD_SEL_BEST, MEAD_SEL_LAST, MEAD_SEL_ALL };

struct mead_readout_options {
	const char *connect;
	const char *recording;
	const char *publish;      /* NULL: none */
	uint32_t classes;
	int label_cells;          /* -1 auto: on for 2..4 classes */
	uint32_t grid_rows, grid_cols; /* 0: from status, else 6 x 10 */
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
	enum mead_fit_on fit_on;
	enum mead_fit_sel fit_sel;
	uint32_t fit_last;        /* MEAD_SEL_LAST: how many blocks */
	int32_t class_values[MEAD_READOUT_MAX_CLASSES]; /* label event value of class i */
	uint32_t n_class_values;  /* 0: the value is the class */
	const char *save, *load;
	bool json;
	int verbose;
};

void mead_readout_options_default(struct mead_readout_options *o);

#define MEAD_READOUT_OPTIONS_HELP 1

/* Parses argv over the defaults in *o.  0; MEAD_READOUT_OPTIONS_HELP once
 * the usage is on stdout (-h); -EINVAL with err naming the option, the
 * value and what it must be (empty err: getopt has said it, and the usage
 * is on stderr). */
int mead_readout_options_parse(int argc, char **argv, struct mead_readout_options *o, char *err,
			       size_t err_len);

void mead_readout_usage(FILE *f);
