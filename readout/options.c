/* SPDX-License-Identifier: MIT */
#include "readout/options.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/core/err.h"
#include "readout/trials.h"

void mead_readout_options_default(struct mead_readout_options *o)
{
	*o = (struct mead_readout_options){
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
		.fit_on = MEAD_FIT_UNLABELLED,
		.fit_sel = MEAD_SEL_BEST,
		.fit_last = 1,
	};
	mead_model_options_default(&o->model);
	/* HPCA on centred features: on the culture's spike counts a common
	 * component dominates every trial, and SWTA prototypes on the raw
	 * direction barely separate (docs/readout.md, docs/BENCHMARKS.md). */
	o->model.layer = MEAD_LAYER_HPCA;
	o->model.center = true;
	/* Spike counts are Poisson-like; pixels are not counts (hebbian.h). */
	o->model.transform = MEAD_TRANSFORM_SQRT;
	/* The LMS rule creeps toward its least-squares solution: 20 epochs
	 * stop it short on 1,300 trials (docs/BENCHMARKS.md, readout choices). */
	o->model.epochs = 200;
	o->model.units = 128;
	o->pixel_transform = MEAD_TRANSFORM_NONE;
}

void mead_readout_usage(FILE *f)
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
		"      --layer swta|hpca|none|swta-softmax  Hebbian feature layer (hpca)\n"
		"      --units N            layer size (128)\n"
		"      --temperature T      SWTA softmax temperature (0.02)\n"
		"      --eta-layer E        layer learning rate (0.05)\n"
		"      --layer-epochs N     layer epochs over the stored training trials (10)\n"
		"      --classifier lms|hebbian|proto  supervised rule: LMS (error-driven; the old\n"
		"                           name delta), the supervised Hebbian rule, class means (lms)\n"
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

/* Every option, and what its value must be (for the error that names it). */
static const struct spec {
	const char *name;
	int key;
	bool has_arg;
	const char *want;
} specs[] = {
	{"connect", 'c', true, NULL},
	{"recording", 'r', true, NULL},
	{"publish", 'p', true, NULL},
	{"classes", OPT_CLASSES, true, "a whole number from 2 to 1024"},
	{"label-cells", OPT_LABEL_CELLS, true, "on, off or auto"},
	{"grid", OPT_GRID, true, "RxC with R, C >= 1 and at most 256 electrodes"},
	{"label-column", OPT_LABEL_COL, true, "a column from 0 to 255"},
	{"features", OPT_FEATURES, true, "all or no-label"},
	{"layer", OPT_LAYER, true, "swta, hpca, none or swta-softmax"},
	{"units", OPT_UNITS, true, "a whole number from 1 to 65536"},
	{"temperature", OPT_TEMP, true, "a number from 1e-6 to 1e6"},
	{"eta-layer", OPT_ETA_LAYER, true, "a number from 0 to 10"},
	{"layer-epochs", OPT_LAYER_EPOCHS, true, "a whole number from 0 to 100000"},
	{"classifier", OPT_CLF, true, "lms, hebbian or proto"},
	{"eta", OPT_ETA, true, "a number from 0 to 10"},
	{"epochs", OPT_EPOCHS, true, "a whole number from 0 to 100000"},
	{"norm", OPT_NORM, true, "l2, max, sum or none"},
	{"transform", OPT_TRANSFORM, true, "sqrt or none"},
	{"pixel-transform", OPT_PIXEL_TRANSFORM, true, "sqrt or none"},
	{"center", OPT_CENTER, false, NULL},
	{"no-center", OPT_NO_CENTER, false, NULL},
	{"seed", OPT_SEED, true, "a whole number, decimal or 0x hexadecimal"},
	{"label-fraction", OPT_FRACTION, true, "a number from 0 to 1"},
	{"images", OPT_IMAGES, true, NULL},
	{"test-images", OPT_TEST_IMAGES, true, NULL},
	{"pixel-grid", OPT_PIXEL_GRID, true, "a whole number from 0 to 1024"},
	{"no-pixels", OPT_NO_PIXELS, false, NULL},
	{"trials", 'n', true, "a whole number"},
	{"idle-timeout", OPT_IDLE, true, "seconds from 0 to 1e9"},
	{"max-waiting", OPT_MAX_WAITING, true, "a whole number from 1 to 1048576"},
	{"score", OPT_SCORE, true, "all or last"},
	{"fit-on", OPT_FIT_ON, true, "train, unlabelled or both"},
	{"fit-blocks", OPT_FIT_BLOCKS, true, "best, last, all or a number of blocks from 1"},
	{"class-values", OPT_CLASS_VALUES, true,
	 "2 to 1024 comma-separated values from 0 to 2147483647"},
	{"save", OPT_SAVE, true, NULL},
	{"load", OPT_LOAD, true, NULL},
	{"json", OPT_JSON, false, NULL},
	{"verbose", 'v', false, NULL},
	{"help", 'h', false, NULL},
};
#define N_SPECS (sizeof(specs) / sizeof(specs[0]))

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

static bool parse_u64(const char *s, int base, uint64_t *v)
{
	char *e;
	errno = 0;
	unsigned long long x = strtoull(s, &e, base);
	if (errno || e == s || *e)
		return false;
	*v = x;
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

static bool parse_float(const char *s, double lo, double hi, float *v)
{
	double d;
	if (!parse_f(s, lo, hi, &d))
		return false;
	*v = (float)d;
	return true;
}

/* One of names (NULL-terminated): its index, or -1. */
static int pick(const char *s, const char *const *names)
{
	for (int i = 0; names[i]; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

static bool parse_grid(const char *a, struct mead_readout_options *o)
{
	unsigned r, c;
	char tail;
	if (sscanf(a, "%ux%u%c", &r, &c, &tail) != 2 || r == 0 || c == 0 || r * c > MEAD_TRIALS_MAX_ELECTRODES)
		return false;
	o->grid_rows = r;
	o->grid_cols = c;
	return true;
}

static bool parse_fit_blocks(const char *a, struct mead_readout_options *o)
{
	if (strcmp(a, "best") == 0) {
		o->fit_sel = MEAD_SEL_BEST;
	} else if (strcmp(a, "all") == 0) {
		o->fit_sel = MEAD_SEL_ALL;
	} else if (strcmp(a, "last") == 0) {
		o->fit_sel = MEAD_SEL_LAST;
		o->fit_last = 1;
	} else if (parse_u32(a, 1, UINT32_MAX, &o->fit_last)) {
		o->fit_sel = MEAD_SEL_LAST;
	} else {
		return false;
	}
	return true;
}

static bool parse_class_values(const char *a, struct mead_readout_options *o)
{
	const char *q = a;
	o->n_class_values = 0;
	while (*q) {
		char *e;
		errno = 0;
		long v = strtol(q, &e, 10);
		if (errno || e == q || v < 0 || v > INT32_MAX || o->n_class_values >= MEAD_READOUT_MAX_CLASSES)
			return false;
		o->class_values[o->n_class_values++] = (int32_t)v;
		q = e;
		if (*q == ',')
			q++;
		else if (*q)
			return false;
	}
	return o->n_class_values >= 2;
}

/* Sets the option named by key from its value a; false: a is not a value it takes. */
static bool set_option(struct mead_readout_options *o, int key, const char *a)
{
	static const char *const on_off_auto[] = {"off", "on", "auto", NULL};
	static const char *const features[] = {"no-label", "all", NULL};
	static const char *const scores[] = {"all", "last", NULL};
	static const char *const fit_on[] = {"train", "unlabelled", "both", NULL};
	int k;

	switch (key) {
	case 'c': o->connect = a; return true;
	case 'r': o->recording = a; return true;
	case 'p': o->publish = strcmp(a, "none") == 0 ? NULL : a; return true;
	case OPT_CLASSES:
		if (!parse_u32(a, 2, MEAD_READOUT_MAX_CLASSES, &o->classes))
			return false;
		o->model.n_classes = o->classes;
		return true;
	case OPT_LABEL_CELLS:
		if ((k = pick(a, on_off_auto)) < 0)
			return false;
		o->label_cells = k == 2 ? -1 : k;
		return true;
	case OPT_GRID: return parse_grid(a, o);
	case OPT_LABEL_COL: {
		uint32_t c;
		if (!parse_u32(a, 0, MEAD_TRIALS_MAX_ELECTRODES - 1, &c))
			return false;
		o->label_col = (int)c;
		return true;
	}
	case OPT_FEATURES:
		if ((k = pick(a, features)) < 0)
			return false;
		o->features_all = k;
		return true;
	case OPT_LAYER:
		if ((k = mead_layer_kind_parse(a)) < 0)
			return false;
		o->model.layer = (enum mead_layer_kind)k;
		return true;
	case OPT_UNITS: return parse_u32(a, 1, 65536, &o->model.units);
	case OPT_TEMP: return parse_float(a, 1e-6, 1e6, &o->model.temperature);
	case OPT_ETA_LAYER: return parse_float(a, 0, 10, &o->model.eta_layer);
	case OPT_LAYER_EPOCHS: return parse_u32(a, 0, 100000, &o->model.layer_epochs);
	case OPT_CLF:
		if ((k = mead_clf_kind_parse(a)) < 0)
			return false;
		o->model.clf = (enum mead_clf_kind)k;
		return true;
	case OPT_ETA: return parse_float(a, 0, 10, &o->model.eta);
	case OPT_EPOCHS: return parse_u32(a, 0, 100000, &o->model.epochs);
	case OPT_NORM:
		if ((k = mead_norm_parse(a)) < 0)
			return false;
		o->model.norm = (enum mead_norm)k;
		return true;
	case OPT_TRANSFORM:
	case OPT_PIXEL_TRANSFORM:
		if ((k = mead_transform_parse(a)) < 0)
			return false;
		*(key == OPT_TRANSFORM ? &o->model.transform : &o->pixel_transform) = (enum mead_transform)k;
		return true;
	case OPT_CENTER: o->model.center = true; return true;
	case OPT_NO_CENTER: o->model.center = false; return true;
	case OPT_SEED: return parse_u64(a, 0, &o->model.seed);
	case OPT_FRACTION: return parse_f(a, 0, 1, &o->label_fraction);
	case OPT_IMAGES: o->images = a; return true;
	case OPT_TEST_IMAGES: o->test_images = a; return true;
	case OPT_PIXEL_GRID: return parse_u32(a, 0, 1024, &o->pixel_grid);
	case OPT_NO_PIXELS: o->pixels = false; return true;
	case 'n': return parse_u64(a, 10, &o->max_trials);
	case OPT_IDLE: return parse_f(a, 0, 1e9, &o->idle_timeout_s);
	case OPT_MAX_WAITING: return parse_u32(a, 1, 1u << 20, &o->max_waiting);
	case OPT_SCORE:
		if ((k = pick(a, scores)) < 0)
			return false;
		o->score_last = k == 1;
		return true;
	case OPT_FIT_ON:
		if ((k = pick(a, fit_on)) < 0)
			return false;
		o->fit_on = k == 0 ? MEAD_FIT_TRAIN : k == 1 ? MEAD_FIT_UNLABELLED : MEAD_FIT_BOTH;
		return true;
	case OPT_FIT_BLOCKS: return parse_fit_blocks(a, o);
	case OPT_CLASS_VALUES: return parse_class_values(a, o);
	case OPT_SAVE: o->save = a; return true;
	case OPT_LOAD: o->load = a; return true;
	case OPT_JSON: o->json = true; return true;
	case 'v': o->verbose++; return true;
	}
	return false;
}

/* What the options say together, once each is known to be well-formed. */
static int validate(struct mead_readout_options *o, char *err, size_t err_len)
{
	if (o->n_class_values) {
		if (o->classes != 2 && o->classes != o->n_class_values) {
			mead_set_err(err, err_len, "--classes %u but --class-values names %u", o->classes,
				     o->n_class_values);
			return -EINVAL;
		}
		o->classes = o->n_class_values;
	}
	o->model.n_classes = o->classes;
	return 0;
}

int mead_readout_options_parse(int argc, char **argv, struct mead_readout_options *o, char *err,
			       size_t err_len)
{
	struct option lo[N_SPECS + 1];
	for (size_t i = 0; i < N_SPECS; i++)
		lo[i] = (struct option){specs[i].name, specs[i].has_arg ? required_argument : no_argument, NULL,
					specs[i].key};
	lo[N_SPECS] = (struct option){0};
	mead_set_err(err, err_len, "%s", "");

	int c, li;
	while ((li = -1, c = getopt_long(argc, argv, "c:r:p:n:vh", lo, &li)) != -1) {
		if (c == 'h') {
			mead_readout_usage(stdout);
			return MEAD_READOUT_OPTIONS_HELP;
		}
		if (c == '?' || c == ':') {
			mead_readout_usage(stderr);
			return -EINVAL;
		}
		if (set_option(o, c, optarg))
			continue;
		/* named as it was given: --trials or -n */
		const char *want = "not a value it takes";
		for (size_t i = 0; i < N_SPECS; i++)
			if (specs[i].key == c && specs[i].want)
				want = specs[i].want;
		char name[32];
		if (li >= 0)
			snprintf(name, sizeof(name), "--%s", lo[li].name);
		else
			snprintf(name, sizeof(name), "-%c", c);
		mead_set_err(err, err_len, "bad value for %s: %s (%s)", name, optarg ? optarg : "", want);
		return -EINVAL;
	}
	if (optind < argc) {
		mead_set_err(err, err_len, "unexpected argument %s", argv[optind]);
		return -EINVAL;
	}
	return validate(o, err, err_len);
}
