/* SPDX-License-Identifier: MIT */
/*
 * One readout pipeline: normalise -> (centre) -> Hebbian feature layer ->
 * Hebbian classifier.  Training features are stored, so the layer and the
 * classifier can run several epochs over them once the training phase
 * ends; fitting again after more training trials starts from the same seed.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "readout/hebbian.h"

struct mead_model_options {
	enum mead_layer_kind layer;
	uint32_t units;          /* layer outputs (ignored for none) */
	float temperature;       /* SWTA */
	float eta_layer;
	uint32_t layer_epochs;
	enum mead_clf_kind clf;
	float eta;               /* classifier */
	uint32_t epochs;         /* classifier */
	enum mead_transform transform; /* before normalising */
	enum mead_norm norm;
	bool center;             /* subtract the training mean after normalising */
	uint64_t seed;
	uint32_t n_classes;
};

void mead_model_options_default(struct mead_model_options *o);

struct mead_model;

int mead_model_new(const struct mead_model_options *o, uint32_t n_in, struct mead_model **ret);
void mead_model_free(struct mead_model *m);

uint32_t mead_model_n_in(const struct mead_model *m);
uint32_t mead_model_n_train(const struct mead_model *m);    /* stored samples */
uint32_t mead_model_n_labelled(const struct mead_model *m);
bool mead_model_trained(const struct mead_model *m);
/* New training samples since the last fit. */
bool mead_model_stale(const struct mead_model *m);

/* Stores one training sample (copied, normalised); label -1: unlabelled,
 * used by the layer only. */
int mead_model_add(struct mead_model *m, const float *x, int32_t label);

/* Forgets every stored sample (the weights stay until the next fit), so
 * the next fit can run on another selection of samples. */
void mead_model_clear(struct mead_model *m);

/* Trains the layer on every stored sample, then the classifier on the
 * labelled ones.  A model restored by mead_model_read continues from its
 * restored weights; otherwise weights start afresh from the seed. */
int mead_model_fit(struct mead_model *m);

/* Class for x, or -EAGAIN before any fit or load.  scores: n_classes or NULL. */
int mead_model_predict(struct mead_model *m, const float *x, float *scores);

/* Versioned little-endian binary; see docs/readout.md. */
int mead_model_write(const struct mead_model *m, FILE *f);
/* Builds a model from f: the architecture (layer, units, classifier, norm,
 * centring, classes, n_in) comes from the file, the training schedule from o. */
int mead_model_read(FILE *f, const struct mead_model_options *o, struct mead_model **ret);
