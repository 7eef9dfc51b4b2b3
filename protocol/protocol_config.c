/* SPDX-License-Identifier: MIT */
#include "protocol/protocol_config.h"

#include <stddef.h>

#define P(field) offsetof(struct mead_protocol_config, field)
#define M(field) offsetof(struct mead_protocol_mnist_config, field)
#define R(field) offsetof(struct mead_protocol_random_config, field)
#define U(field) offsetof(struct mead_protocol_ruaro_config, field)
#define S(field) offsetof(struct mead_protocol_stim_config, field)
#define Q(field) offsetof(struct mead_protocol_respond_config, field)

static const char *const encoders[] = { "reference", "poisson", NULL };
static const char *const train_orders[] = { "shuffled", "interleaved", NULL };

/* Default pulse: -10 uA cathodic-first, 200 us per phase, 50 us gap; the
 * wet-lab amplitudes are not known, so every protocol exposes them. */
static const struct mead_cfg_key stim_keys[] = {
	{ "amplitude_ua", MEAD_CFG_DOUBLE, S(amplitude_ua), -1000, 1000, NULL, "-10",
	  "first-phase current of every pulse in microamperes, negative = cathodic first", NULL },
	{ "phase_us", MEAD_CFG_UINT, S(phase_us), 1, 10000, NULL, "200",
	  "duration of each phase of the biphasic pulse in microseconds", NULL },
	{ "interphase_us", MEAD_CFG_UINT, S(interphase_us), 0, 10000, NULL, "50",
	  "gap between the two phases in microseconds", NULL },
	{ 0 },
};

static const struct mead_cfg_key mnist_keys[] = {
	{ "train_images", MEAD_CFG_STRING, M(train_images), MEAD_CFG_NO_RANGE, NULL,
	  "mnist/mnist8k-images-idx3-ubyte.gz",
	  "IDX image file (gzip or plain) for training and validation; relative to the data directory", NULL },
	{ "train_labels", MEAD_CFG_STRING, M(train_labels), MEAD_CFG_NO_RANGE, NULL,
	  "mnist/mnist8k-labels-idx1-ubyte.gz", "IDX label file matching train_images", NULL },
	{ "test_images", MEAD_CFG_STRING, M(test_images), MEAD_CFG_NO_RANGE, NULL,
	  "mnist/mnist8k-images-idx3-ubyte.gz",
	  "IDX image file for the test phase; the same file as train_images is split disjointly", NULL },
	{ "test_labels", MEAD_CFG_STRING, M(test_labels), MEAD_CFG_NO_RANGE, NULL,
	  "mnist/mnist8k-labels-idx1-ubyte.gz", "IDX label file matching test_images", NULL },
	{ "classes", MEAD_CFG_UINT_LIST, M(classes), 0, 255, NULL, "[0, 1]",
	  "labels used, in class order (class 0 = first); 2..4 with a label column, up to 10 without", NULL },
	{ "train_size", MEAD_CFG_UINT, M(train_size), 0, 10000000, NULL, "0",
	  "training trials, 0 for every digit left after the test and validation sets", NULL },
	{ "validation_size", MEAD_CFG_UINT, M(validation_size), 0, 10000000, NULL, "0",
	  "validation digits (taken from the training file), 0 for a quarter of its pool", NULL },
	{ "test_size", MEAD_CFG_UINT, M(test_size), 0, 10000000, NULL, "0",
	  "test trials, 0 for the whole test file (a quarter of the pool when it is the training file)", NULL },
	{ "presentation_ms", MEAD_CFG_UINT, M(presentation_ms), 1, 10000, NULL, "100",
	  "how long each digit is shown, in milliseconds", NULL },
	{ "rest_ms", MEAD_CFG_UINT, M(rest_ms), 0, 600000, NULL, "0",
	  "silence after each trial, in milliseconds", NULL },
	{ "label_train", MEAD_CFG_BOOL, M(label_train), MEAD_CFG_NO_RANGE, NULL, "true",
	  "drive the label cells while training", NULL },
	{ "label_test", MEAD_CFG_BOOL, M(label_test), MEAD_CFG_NO_RANGE, NULL, "false",
	  "drive the label cells while testing", NULL },
	{ "learning_train", MEAD_CFG_BOOL, M(learning_train), MEAD_CFG_NO_RANGE, NULL, "true",
	  "plasticity on while training (a marker on a rig)", NULL },
	{ "learning_test", MEAD_CFG_BOOL, M(learning_test), MEAD_CFG_NO_RANGE, NULL, "false",
	  "plasticity on while testing", NULL },
	{ "reset_between_trials", MEAD_CFG_BOOL, M(reset_between_trials), MEAD_CFG_NO_RANGE, NULL, "true",
	  "reset the culture's state at every trial start (a driver that cannot gets reset_rest_ms of rest)", NULL },
	{ "reset_rest_ms", MEAD_CFG_UINT, M(reset_rest_ms), 0, 600000, NULL, "1000",
	  "rest between trials in place of a state reset, on a driver that cannot reset", NULL },
	{ "sample_end", MEAD_CFG_BOOL, M(sample_end), MEAD_CFG_NO_RANGE, NULL, "true",
	  "send SAMPLE_END after every trial (the twin's synaptic scaling)", NULL },
	{ "eval_every", MEAD_CFG_UINT, M(eval_every), 0, 10000000, NULL, "10",
	  "run the validation set after this many training trials (and after the last), "
	  "keep the best weights; 0 for no validation", NULL },
	{ "train_order", MEAD_CFG_ENUM, M(train_order), MEAD_CFG_NO_RANGE, train_orders, "shuffled",
	  "order of the training digits: shuffled (the seeded shuffle of the pool) or interleaved (the same "
	  "digits, classes taking turns)", NULL },
	{ "eval_screen", MEAD_CFG_UINT, M(eval_screen), 0, 10000000, NULL, "100",
	  "validation digits a pass starts with; it goes on to the whole set only when they score at least "
	  "the best whole pass so far; 0: every pass runs the whole set", NULL },
	{ "train_epochs", MEAD_CFG_UINT, M(train_epochs), 1, 1000, NULL, "1",
	  "times the training digits are shown, each time in a fresh seeded order (shuffled) or the same "
	  "turns (interleaved), with fresh spike trains", NULL },
	{ "readout_pass", MEAD_CFG_BOOL, M(readout_pass), MEAD_CFG_NO_RANGE, NULL, "false",
	  "after training, show the training digits again with label and learning off (on the test's "
	  "weights) for a readout to learn from; a test-phase block on the wire", NULL },
	{ "grid_rows", MEAD_CFG_UINT, M(grid_rows), 1, 64, NULL, "6", "rows of the stimulated image grid", NULL },
	{ "grid_cols", MEAD_CFG_UINT, M(grid_cols), 1, 64, NULL, "6", "columns of the stimulated image grid", NULL },
	{ "grid_row0", MEAD_CFG_UINT, M(grid_row0), 0, 63, NULL, "0", "layout row of the grid's top row", NULL },
	{ "grid_col0", MEAD_CFG_UINT, M(grid_col0), 0, 63, NULL, "0", "layout column of the grid's left column", NULL },
	{ "label_column", MEAD_CFG_UINT, M(label_column), 0, 63, NULL, "9",
	  "layout column that carries the label", NULL },
	{ "max_rate_hz", MEAD_CFG_DOUBLE, M(max_rate_hz), 0, 1000, NULL, "200",
	  "firing rate of a white pixel; a pixel fires at value/255 of it", NULL },
	{ "label_rate_hz", MEAD_CFG_DOUBLE, M(label_rate_hz), 0, 1000, NULL, "200",
	  "firing rate of the label cells", NULL },
	{ "encoder", MEAD_CFG_ENUM, M(encoder), MEAD_CFG_NO_RANGE, encoders, "reference",
	  "reference (Poisson-drawn integer intervals) or poisson (independent 1 ms bins)", NULL },
	{ "stim", MEAD_CFG_TABLE, M(stim), MEAD_CFG_NO_RANGE, NULL, NULL, "pulse of every spike", stim_keys },
	{ 0 },
};

static const struct mead_cfg_key random_keys[] = {
	{ "electrodes", MEAD_CFG_UINT, R(electrodes), 1, 128, NULL, "8", "electrodes in each pattern", NULL },
	{ "rate_hz", MEAD_CFG_DOUBLE, R(rate_hz), 0, 1000, NULL, "20", "firing rate of each pattern electrode", NULL },
	{ "pattern_ms", MEAD_CFG_UINT, R(pattern_ms), 1, 60000, NULL, "500",
	  "a new pattern is drawn every this many milliseconds", NULL },
	{ "duration_ms", MEAD_CFG_UINT, R(duration_ms), 0, UINT32_MAX, NULL, "0",
	  "total length in milliseconds, 0 for until stopped", NULL },
	{ "pool", MEAD_CFG_UINT_LIST, R(pool), 0, 127, NULL, NULL,
	  "electrode indices patterns are drawn from; empty for every electrode that is not excluded", NULL },
	{ "encoder", MEAD_CFG_ENUM, R(encoder), MEAD_CFG_NO_RANGE, encoders, "poisson",
	  "reference or poisson spike trains", NULL },
	{ "stim", MEAD_CFG_TABLE, R(stim), MEAD_CFG_NO_RANGE, NULL, NULL, "pulse of every spike", stim_keys },
	{ 0 },
};

static const struct mead_cfg_key ruaro_keys[] = {
	{ "probes", MEAD_CFG_UINT, U(probes), 1, 100000, NULL, "20",
	  "probe trials per pattern before and after the tetanus", NULL },
	{ "probe_ms", MEAD_CFG_UINT, U(probe_ms), 1, 60000, NULL, "400", "length of one probe trial", NULL },
	{ "probe_delay_ms", MEAD_CFG_UINT, U(probe_delay_ms), 0, 60000, NULL, "50",
	  "silence at the start of a probe trial", NULL },
	{ "burst_ms", MEAD_CFG_UINT, U(burst_ms), 1, 60000, NULL, "10",
	  "every pattern electrode fires every millisecond for this long", NULL },
	{ "tetanus_trials", MEAD_CFG_UINT, U(tetanus_trials), 0, 100000, NULL, "40", "tetanus trials", NULL },
	{ "tetanus_ms", MEAD_CFG_UINT, U(tetanus_ms), 1, 60000, NULL, "400", "length of one tetanus trial", NULL },
	{ "tetanus_rate_hz", MEAD_CFG_DOUBLE, U(tetanus_rate_hz), 0, 1000, NULL, "250",
	  "Poisson rate on the trained pattern during the tetanus", NULL },
	{ "reset_between_trials", MEAD_CFG_BOOL, U(reset_between_trials), MEAD_CFG_NO_RANGE, NULL, "true",
	  "reset the culture's state at every trial start (where the driver can)", NULL },
	{ "stim", MEAD_CFG_TABLE, U(stim), MEAD_CFG_NO_RANGE, NULL, NULL, "pulse of every spike", stim_keys },
	{ 0 },
};

static const struct mead_cfg_key respond_keys[] = {
	{ "trigger", MEAD_CFG_UINT_LIST, Q(trigger), 0, 127, NULL, NULL,
	  "electrode indices whose spikes are answered; empty for any electrode", NULL },
	{ "target", MEAD_CFG_UINT, Q(target), 0, 127, NULL, "0", "electrode index stimulated in answer", NULL },
	{ "dead_ms", MEAD_CFG_UINT, Q(dead_ms), 0, 60000, NULL, "50",
	  "after an answer, spikes this many milliseconds later are answered again, not earlier", NULL },
	{ "duration_ms", MEAD_CFG_UINT, Q(duration_ms), 0, UINT32_MAX, NULL, "0",
	  "total length in milliseconds, 0 for until stopped", NULL },
	{ "stim", MEAD_CFG_TABLE, Q(stim), MEAD_CFG_NO_RANGE, NULL, NULL, "pulse of every answer", stim_keys },
	{ 0 },
};

const struct mead_cfg_key mead_protocol_config_keys[] = {
	{ "autostart", MEAD_CFG_STRING, P(autostart), MEAD_CFG_NO_RANGE, NULL, "",
	  "protocol started with the loop: mnist, random, ruaro, respond, or empty for none", NULL },
	{ "seed", MEAD_CFG_U64, P(seed), MEAD_CFG_NO_RANGE, NULL, "1",
	  "seed of every random draw of the protocols (split, order, spike trains)", NULL },
	{ "mnist", MEAD_CFG_TABLE, P(mnist), MEAD_CFG_NO_RANGE, NULL, NULL, "digit recognition protocol", mnist_keys },
	{ "random", MEAD_CFG_TABLE, P(random), MEAD_CFG_NO_RANGE, NULL, NULL, "random patterned stimulation", random_keys },
	{ "ruaro", MEAD_CFG_TABLE, P(ruaro), MEAD_CFG_NO_RANGE, NULL, NULL,
	  "probe / tetanus / probe on the regL and upsL patterns", ruaro_keys },
	{ "respond", MEAD_CFG_TABLE, P(respond), MEAD_CFG_NO_RANGE, NULL, NULL,
	  "closed loop: a spike on a trigger electrode answered by a pulse", respond_keys },
	{ 0 },
};
