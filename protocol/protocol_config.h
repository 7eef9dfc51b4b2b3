/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "lib/cfg/cfg.h"

/* Values of the "encoder" keys (see protocol/encode.h). */
enum mead_protocol_encoder {
	MEAD_PROTOCOL_ENCODER_REFERENCE = 0,
	MEAD_PROTOCOL_ENCODER_POISSON = 1,
};

/* The biphasic pulse every spike of a protocol becomes. */
struct mead_protocol_stim_config {
	double amplitude_ua;      /* first phase, signed: negative = cathodic */
	uint32_t phase_us;
	uint32_t interphase_us;
};

enum mead_protocol_train_order {
	MEAD_PROTOCOL_ORDER_SHUFFLED = 0,
	MEAD_PROTOCOL_ORDER_INTERLEAVED = 1,
};

/* protocol.mnist: digits on the grid, the label on the label column. */
struct mead_protocol_mnist_config {
	char *train_images, *train_labels;    /* relative paths resolve against the data directory */
	char *test_images, *test_labels;
	struct mead_cfg_uint_list classes;
	uint32_t train_size, validation_size, test_size;  /* 0: see docs/protocols.md */
	uint32_t presentation_ms;
	uint32_t rest_ms;
	bool label_train, label_test;
	bool learning_train, learning_test;
	bool reset_between_trials;
	uint32_t reset_rest_ms;   /* rest instead of a reset on a driver that cannot reset */
	bool sample_end;          /* SAMPLE_END after every trial */
	uint32_t eval_every;      /* validation after this many training trials; 0: none */
	int train_order;          /* enum mead_protocol_train_order */
	uint32_t eval_screen;     /* validation digits a pass starts with; 0: whole passes only */
	uint32_t train_epochs;    /* times the training digits are shown; 0 counts as 1 */
	bool readout_pass;        /* a frozen, label-off pass over the training digits before the test */
	uint32_t grid_rows, grid_cols;
	uint32_t grid_row0, grid_col0;        /* top-left electrode position of the grid */
	uint32_t label_column;
	double max_rate_hz;
	double label_rate_hz;
	int encoder;              /* enum mead_protocol_encoder */
	struct mead_protocol_stim_config stim;
};

/* protocol.random: random patterns that keep a culture active. */
struct mead_protocol_random_config {
	uint32_t electrodes;      /* pattern size N */
	double rate_hz;           /* per pattern electrode */
	uint32_t pattern_ms;      /* a new pattern every P ms */
	uint32_t duration_ms;     /* 0: until stopped */
	struct mead_cfg_uint_list pool;  /* electrode indices to draw from; empty: every stimulable one */
	int encoder;
	struct mead_protocol_stim_config stim;
};

/* protocol.ruaro: probe / tetanus / probe on two L-shaped patterns. */
struct mead_protocol_ruaro_config {
	uint32_t probes;          /* probe trials per pattern, before and after */
	uint32_t probe_ms;        /* length of one probe trial */
	uint32_t probe_delay_ms;  /* silence before the burst */
	uint32_t burst_ms;        /* every pattern electrode fires every ms for this long */
	uint32_t tetanus_trials;
	uint32_t tetanus_ms;
	double tetanus_rate_hz;
	bool reset_between_trials;
	struct mead_protocol_stim_config stim;
};

/* protocol.respond: a spike on a trigger electrode answered by a pulse. */
struct mead_protocol_respond_config {
	struct mead_cfg_uint_list trigger;   /* empty: any electrode */
	uint32_t target;
	uint32_t dead_ms;
	uint32_t duration_ms;     /* 0: until stopped */
	struct mead_protocol_stim_config stim;
};

/* The "protocol:" section of the configuration. */
struct mead_protocol_config {
	char *autostart;          /* name of the protocol to run at start, "" for none */
	uint64_t seed;
	struct mead_protocol_mnist_config mnist;
	struct mead_protocol_random_config random;
	struct mead_protocol_ruaro_config ruaro;
	struct mead_protocol_respond_config respond;
};

/* Keys relative to "protocol." */
extern const struct mead_cfg_key mead_protocol_config_keys[];
