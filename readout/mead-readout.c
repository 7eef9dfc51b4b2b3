/* SPDX-License-Identifier: MIT */
/*
 * mead-readout: subscribes to a mead daemon's streams (wire v1), assembles
 * trials, scores the culture's own decision rule, trains a Hebbian readout
 * on the culture's spike counts and the same readout on the stimulus pixels,
 * publishes one JSON object per trial and prints a summary.  docs/readout.md.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "lib/core/time.h"
#include "readout/fit.h"
#include "readout/readout.h"
#include "readout/rig.h"
#include "readout/score.h"
#include "readout/state.h"

#include "mead-build-config.h"

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

void mead_readout_log(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("mead-readout: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* ---- Status and metadata ------------------------------------------------ */

/* The neurons per electrode from any status message; the grid from the
 * first that carries one, unless --grid named it. */
static void take_rig_info(struct mead_readout *s, const char *what, const char *js, size_t len)
{
	struct mead_rig_info ri;
	char err[256];
	if (mead_rig_info_parse(js, len, &ri, err, sizeof(err)) < 0) {
		if (!s->warned_status || s->o.verbose)
			mead_readout_log("%s: %s; ignored", what, err);
		s->warned_status = true;
		return;
	}
	if (ri.n_neurons > 0) {
		if (s->o.verbose && (s->n_neurons != ri.n_neurons ||
				memcmp(s->neurons, ri.neurons, ri.n_neurons * sizeof(uint32_t)) != 0))
			mead_readout_log("status: neurons_per_electrode for %u electrodes", ri.n_neurons);
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

static int setup(struct mead_readout *s)
{
	char err[256] = "";
	uint32_t n_el = s->rows * s->cols;
	uint32_t label_col = s->o.label_col >= 0 ? (uint32_t)s->o.label_col : s->cols - 1;
	bool cells = s->o.label_cells < 0 ? (s->o.classes >= 2 && s->o.classes <= MEAD_RULE_MAX_CLASSES)
					  : s->o.label_cells > 0;
	int r = mead_rule_layout_build(s->rows, s->cols, label_col, cells ? s->o.classes : 0, &s->rule,
				       err, sizeof(err));
	if (r < 0) {
		mead_readout_log("%s", err);
		return r;
	}
	bool all = s->o.features_all < 0 ? s->rule.n_classes == 0 : s->o.features_all > 0;
	s->n_feat = 0;
	for (uint32_t e = 0; e < n_el; e++)
		if (all || !mead_rule_is_label_cell(&s->rule, e))
			s->feat_idx[s->n_feat++] = e;

	if (s->loaded_culture) {
		if (mead_model_n_in(s->loaded_culture) != s->n_feat) {
			mead_readout_log("%s: the saved culture readout has %u inputs, this grid gives %u",
					 s->o.load, mead_model_n_in(s->loaded_culture), s->n_feat);
			return -EINVAL;
		}
		s->culture = s->loaded_culture;
		s->loaded_culture = NULL;
	} else if ((r = mead_model_new(&s->o.model, s->n_feat, &s->culture)) < 0) {
		mead_readout_log("readout model: %s", strerror(-r));
		return r;
	}
	if (s->img) {
		uint32_t pn = mead_pixels_n(s->img);
		if (s->loaded_pixel) {
			if (mead_model_n_in(s->loaded_pixel) != pn) {
				mead_readout_log("%s: the saved pixel readout has %u inputs, the images give %u",
						 s->o.load, mead_model_n_in(s->loaded_pixel), pn);
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
	if (s->o.verbose)
		mead_readout_log("grid %ux%u%s, %u label classes, %u culture features, pixel baseline %s", s->rows,
				 s->cols, s->grid_from_status ? " (status)" : "", s->rule.n_classes, s->n_feat,
				 s->img ? "on" : "off");
	s->ready = true;
	return 0;
}

static int open_images(struct mead_readout *s)
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
			MEAD_DATADIR "/mnist/" MEAD_READOUT_DEFAULT_IMAGES_NAME,
			MEAD_SOURCE_ROOT "/data/mnist/" MEAD_READOUT_DEFAULT_IMAGES_NAME,
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
			mead_readout_log("%s; pixel baseline off (name the images with --images)", err);
			return 0;
		}
		mead_readout_log("%s", err);
		return r;
	}
	if (s->o.test_images &&
	    (r = mead_pixels_open(s->o.test_images, s->o.pixel_grid, &s->test_img, err, sizeof(err))) < 0) {
		mead_readout_log("%s", err);
		return r;
	}
	if (s->test_img && (mead_pixels_rows(s->test_img) != mead_pixels_rows(s->img) ||
			    mead_pixels_cols(s->test_img) != mead_pixels_cols(s->img))) {
		mead_readout_log("%s and %s hold images of different sizes", path, s->o.test_images);
		return -EINVAL;
	}
	s->xbuf = malloc((size_t)mead_pixels_n(s->img) * sizeof(float));
	s->xbuf_tf = malloc((size_t)mead_pixels_n(s->img) * sizeof(float));
	if (!s->xbuf || !s->xbuf_tf)
		return -ENOMEM;
	return 0;
}

/* ---- Start-up ----------------------------------------------------------- */

/* Everything before the first message: saved state, images, the source
 * and the publisher. */
static int start(struct mead_readout *s)
{
	char err[512] = "";
	int r;
	if (s->o.load && (r = mead_readout_state_load(s->o.load, &s->o.model, &s->loaded_culture,
						       &s->loaded_pixel, err, sizeof(err))) < 0) {
		mead_readout_log("%s", err);
		return r;
	}
	if ((r = open_images(s)) < 0)
		return r;
	struct mead_trials_options to = {
		.n_electrodes = MEAD_TRIALS_MAX_ELECTRODES,
		.max_waiting = s->o.max_waiting,
	};
	if ((r = mead_trials_new(&to, &s->trials)) < 0) {
		mead_readout_log("trials: %s", strerror(-r));
		return r;
	}
	if (s->o.recording)
		r = mead_source_recording_new(s->o.recording, &s->src, err, sizeof(err));
	else
		r = mead_source_zmq_new(s->o.connect, &s->src, err, sizeof(err));
	if (r < 0) {
		mead_readout_log("%s", err);
		return r;
	}
	if (s->src->meta)
		take_rig_info(s, "recording metadata", s->src->meta, s->src->meta_len);
	if (s->o.publish) {
		s->zctx = zmq_ctx_new();
		s->pub = s->zctx ? zmq_socket(s->zctx, ZMQ_PUB) : NULL;
		int linger = 1000;
		if (!s->pub || zmq_setsockopt(s->pub, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
		    zmq_bind(s->pub, s->o.publish) < 0) {
			mead_readout_log("bind %s: %s", s->o.publish, zmq_strerror(errno));
			return -EIO;
		}
	}
	return 0;
}

/* ---- The run ------------------------------------------------------------ */

/* One finished trial; false when the readouts could not be set up. */
static bool take_trial(struct mead_readout *s, const struct mead_trial *trial)
{
	if (!s->ready && setup(s) < 0)
		return false;
	mead_readout_score_trial(s, trial);
	return true;
}

/* Messages until the run ends, the input ends, --trials, --idle-timeout
 * or a signal; then whatever ended and is still waiting for spikes, as
 * complete as it will get.  -1: the readouts could not be set up. */
static int run(struct mead_readout *s, struct mead_trial *trial)
{
	double last_msg = mead_now_s();
	uint64_t handled = 0;
	bool done = false;
	while (!done && !stop_signal) {
		struct mead_source_msg m;
		int r = s->src->next(s->src, &m, 200);
		if (r == -ENODATA)
			break;
		if (r < 0) {
			mead_readout_log("receive: %s", strerror(-r));
			break;
		}
		if (r == 0) {
			if (s->o.idle_timeout_s > 0 && mead_now_s() - last_msg > s->o.idle_timeout_s) {
				mead_readout_log("no message for %.1f s; stopping", s->o.idle_timeout_s);
				break;
			}
			continue;
		}
		last_msg = mead_now_s();
		if (m.hdr.kind == MEAD_KIND_STATUS)
			take_rig_info(s, "status message", m.payload, m.payload_len);
		mead_trials_feed(s->trials, &m.hdr, m.payload, m.payload_len);
		while (!done && mead_trials_next(s->trials, trial)) {
			if (!take_trial(s, trial))
				return -1;
			done = s->o.max_trials && ++handled >= s->o.max_trials;
		}
		struct mead_trials_stats tst;
		mead_trials_get_stats(s->trials, &tst);
		done = done || tst.run_ended;
	}
	if (s->o.max_trials && handled >= s->o.max_trials)
		return 0;
	mead_trials_flush(s->trials);
	while (mead_trials_next(s->trials, trial)) {
		if (s->o.max_trials && handled >= s->o.max_trials)
			break;
		if (!take_trial(s, trial))
			return -1;
		handled++;
	}
	return 0;
}

/* A run without test trials (or with training after the last test block)
 * still ends with a fit, for --save; the models that scored the last block
 * are otherwise kept as they are.  Then the summary, then --save. */
static int finish(struct mead_readout *s, double elapsed)
{
	if (s->culture && (!s->fitted || (s->o.fit_on == MEAD_FIT_TRAIN && s->fit_train != s->train.n)))
		mead_readout_fit(s, s->o.fit_on == MEAD_FIT_TRAIN || s->cur_block < 0 ? INT64_MAX : s->cur_block);
	mead_readout_print_summary(s, elapsed);
	if (!s->o.save)
		return 0;
	if (!s->culture) {
		mead_readout_log("%s: nothing to save: no trial was seen", s->o.save);
		return 1;
	}
	char err[512];
	if (mead_readout_state_save(s->o.save, s->culture, s->pixel, err, sizeof(err)) < 0) {
		mead_readout_log("%s", err);
		return 1;
	}
	return 0;
}

static void cleanup(struct mead_readout *s)
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
	mead_readout_store_free(&s->train);
	mead_readout_store_free(&s->off);
}

int main(int argc, char **argv)
{
	static struct mead_readout st;
	struct mead_readout *s = &st;
	char err[512];
	mead_readout_options_default(&s->o);
	s->cur_block = -1;
	/* Before the slow start-up (images, connect): a stop request then
	 * still ends with a summary. */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	int r = mead_readout_options_parse(argc, argv, &s->o, err, sizeof(err));
	if (r == MEAD_READOUT_OPTIONS_HELP)
		return 0;
	if (r < 0) {
		if (err[0])
			mead_readout_log("%s", err);
		return 2;
	}
	s->rows = s->o.grid_rows ? s->o.grid_rows : 6;
	s->cols = s->o.grid_cols ? s->o.grid_cols : 10;

	int rc = 1;
	struct mead_trial *trial = NULL;
	if (start(s) == 0 && (trial = malloc(sizeof(*trial)))) {
		double t0 = mead_now_s();
		if (run(s, trial) == 0) {
			if (stop_signal && s->o.verbose)
				mead_readout_log("stopped by signal %d", (int)stop_signal);
			rc = finish(s, mead_now_s() - t0);
		}
	}
	free(trial);
	cleanup(s);
	return rc;
}
