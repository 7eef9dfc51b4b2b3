/* SPDX-License-Identifier: MIT */
/* The protocols driven tick by tick as the loop drives them, with a fake
 * culture answering through the frame of the tick before. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/core/idx.h"
#include "protocol/protocol.h"

#define ROWS 6
#define COLS 10
#define NEL (ROWS * COLS)
#define EXCL_GRID 11   /* row 1, col 1: inside the image grid */
#define EXCL_LABEL 49  /* row 4, col 9: a class-1 label cell */

static struct mead_electrode electrodes[NEL];
static struct mead_layout_view layout;
static char data_dir[512];

static void make_layout(void)
{
	for (uint32_t i = 0; i < NEL; i++) {
		electrodes[i] = (struct mead_electrode){ .row = (uint16_t)(i / COLS), .col = (uint16_t)(i % COLS),
							 .x_um = 500.0f * (i % COLS), .y_um = 500.0f * (i / COLS) };
		snprintf(electrodes[i].label, sizeof(electrodes[i].label), "%u", i);
	}
	electrodes[EXCL_GRID].excluded = true;
	electrodes[EXCL_LABEL].excluded = true;
	layout = (struct mead_layout_view){ .rows = ROWS, .cols = COLS, .count = NEL, .pitch_um = 500,
					    .electrodes = electrodes };
}

static void mnist_cfg(struct mead_protocol_config *c)
{
	memset(c, 0, sizeof(*c));
	c->seed = 11;
	struct mead_protocol_mnist_config *m = &c->mnist;
	m->train_images = "mnist/mnist8k-images-idx3-ubyte.gz";
	m->train_labels = "mnist/mnist8k-labels-idx1-ubyte.gz";
	m->test_images = "mnist/mnist8k-images-idx3-ubyte.gz";
	m->test_labels = "mnist/mnist8k-labels-idx1-ubyte.gz";
	m->classes.n = 2;
	m->classes.v[0] = 0;
	m->classes.v[1] = 1;
	m->train_size = 20;
	m->validation_size = 6;
	m->test_size = 10;
	m->presentation_ms = 100;
	m->label_train = true;
	m->learning_train = true;
	m->reset_between_trials = true;
	m->reset_rest_ms = 50;
	m->sample_end = true;
	m->eval_every = 10;
	m->grid_rows = 6;
	m->grid_cols = 6;
	m->label_column = 9;
	m->max_rate_hz = 200;
	m->label_rate_hz = 200;
	m->encoder = MEAD_PROTOCOL_ENCODER_REFERENCE;
	m->stim = (struct mead_protocol_stim_config){ -10, 200, 50 };
}

static struct mead_protocol_env env_of(uint32_t rate, uint32_t period_ns, uint32_t caps, const uint32_t *units)
{
	return (struct mead_protocol_env){ .layout = &layout, .sample_rate_hz = rate, .period_ns = period_ns,
					   .cap_flags = caps, .units_per_electrode = units, .data_dir = data_dir };
}

/* ---- a recorded run ---- */

enum culture { SILENT, CORRECT, WRONG, BOTH, CORRECT_THEN_WRONG };

/* CORRECT_THEN_WRONG: the culture answers right in trials (wire index)
 * below this one and wrong from it on. */
static int64_t culture_turns_at;

struct ctl_rec {
	uint64_t tick, sample;
	uint32_t op;
	int64_t value;
};

struct run {
	struct mead_stim_pulse *pulses;
	size_t n_pulses, cap_pulses;
	struct mead_event *events;
	size_t n_events, cap_events;
	uint64_t *event_tick;
	struct ctl_rec *ctls;
	size_t n_ctls, cap_ctls;
	uint64_t ticks;
	struct mead_protocol_results res;
};

#define PUSH(arr, n, cap, v) do { \
		if ((n) == (cap)) { \
			(cap) = (cap) ? 2 * (cap) : 1024; \
			(arr) = realloc((arr), (cap) * sizeof(*(arr))); \
			assert_non_null(arr); \
		} \
		(arr)[(n)++] = (v); \
	} while (0)

static void run_free(struct run *r)
{
	free(r->pulses);
	free(r->events);
	free(r->event_tick);
	free(r->ctls);
	memset(r, 0, sizeof(*r));
}

static uint64_t first_sample_of(uint64_t tick, uint32_t rate, uint32_t period_ns)
{
	return (uint64_t)((unsigned __int128)tick * period_ns * rate / 1000000000u);
}

/* Drive p to the end; the culture answers on label electrodes of the class
 * shown (CORRECT), of the other class (WRONG) or of both. */
static void drive(struct mead_protocol *p, uint32_t rate, uint32_t period_ns, enum culture cu, struct run *out)
{
	memset(out, 0, sizeof(*out));
	uint32_t max_stim = mead_protocol_max_stim_per_tick(p);
	uint32_t max_ev = mead_protocol_max_events_per_tick(p);
	assert_true(max_stim > 0 && max_ev >= 6);
	struct mead_stim_pulse *stim = calloc(max_stim, sizeof(*stim));
	struct mead_event *ev = calloc(max_ev, sizeof(*ev));
	struct mead_spike spikes[2][64];
	struct mead_frame frames[2];
	int32_t shown = -1;
	int64_t cur_trial = -1;
	bool in_trial = false;
	uint64_t spms = rate / 1000;
	for (uint64_t t = 0; t < 100000000; t++) {
		uint64_t f = first_sample_of(t, rate, period_ns);
		uint32_t n = (uint32_t)(first_sample_of(t + 1, rate, period_ns) - f);
		struct mead_tick_io io = {
			.tick = t, .first_sample = f, .n_samples = n,
			.frame = t ? &frames[(t - 1) % 2] : NULL,
			.stim = stim, .stim_capacity = max_stim,
			.events = ev, .event_capacity = max_ev,
		};
		assert_int_equal(mead_protocol_tick(p, &io), 0);
		assert_true(io.n_ctl <= MEAD_PROTOCOL_MAX_CTL);
		for (uint32_t k = 0; k < io.n_ctl; k++) {
			struct ctl_rec c = { t, f, io.ctl[k].op, io.ctl[k].value };
			PUSH(out->ctls, out->n_ctls, out->cap_ctls, c);
		}
		for (uint32_t k = 0; k < io.n_events; k++) {
			size_t cap = out->cap_events;
			PUSH(out->events, out->n_events, out->cap_events, ev[k]);
			if (cap != out->cap_events) {
				out->event_tick = realloc(out->event_tick, out->cap_events * sizeof(*out->event_tick));
				assert_non_null(out->event_tick);
			}
			out->event_tick[out->n_events - 1] = t;
			if (ev[k].type == MEAD_EVENT_LABEL)
				shown = ev[k].value;
			if (ev[k].type == MEAD_EVENT_TRIAL_START) {
				in_trial = true;
				cur_trial = ev[k].value;
			}
			if (ev[k].type == MEAD_EVENT_TRIAL_END) {
				in_trial = false;
				shown = -1;
			}
		}
		for (uint32_t k = 0; k < io.n_stim; k++) {
			/* inside this tick, sample-ordered */
			assert_true(stim[k].sample >= f && stim[k].sample < f + n);
			if (k)
				assert_true(stim[k].sample >= stim[k - 1].sample);
			PUSH(out->pulses, out->n_pulses, out->cap_pulses, stim[k]);
		}
		/* what this tick "records": one spike per ms on a label electrode */
		struct mead_frame *fr = &frames[t % 2];
		*fr = (struct mead_frame){ .first_sample = f, .n_samples = n, .spikes = spikes[t % 2],
					   .spike_capacity = 64 };
		if (in_trial && shown >= 0 && cu != SILENT) {
			for (uint64_t s = f; s < f + n; s++) {
				if (s % spms)
					continue;
				bool right = cu == CORRECT || (cu == CORRECT_THEN_WRONG && cur_trial < culture_turns_at);
				bool c0 = right == (shown == 0);
				if (cu == BOTH || c0)
					fr->spikes[fr->n_spikes++] = (struct mead_spike){ .sample = s, .electrode = 9 };
				if (cu == BOTH || !c0)
					fr->spikes[fr->n_spikes++] = (struct mead_spike){ .sample = s, .electrode = 39 };
				/* an excluded cell's spikes are never counted */
				fr->spikes[fr->n_spikes++] = (struct mead_spike){ .sample = s, .electrode = EXCL_LABEL };
			}
		}
		if (io.finished) {
			out->ticks = t + 1;
			break;
		}
	}
	assert_true(out->ticks > 0);
	assert_int_equal(mead_protocol_results(p, &out->res), 0);
	free(stim);
	free(ev);
}

static struct mead_protocol *new_mnist(const struct mead_protocol_config *c, uint32_t rate, uint32_t period_ns,
				       uint32_t caps, const uint32_t *units)
{
	struct mead_protocol_env env = env_of(rate, period_ns, caps, units);
	struct mead_protocol *p = NULL;
	char err[512] = "";
	int r = mead_protocol_new(c, "mnist", &env, &p, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "%s\n", err);
	assert_int_equal(r, 0);
	return p;
}

#define TWIN_CAPS (MEAD_CAP_STIMULATE | MEAD_CAP_SIMULATED | MEAD_CAP_PLASTICITY | MEAD_CAP_RESETTABLE)

static bool is_grid(uint16_t e)
{
	return e / COLS < 6 && e % COLS < 6;
}

static bool class_cell(uint16_t e, int32_t cls)
{
	if (e % COLS != 9)
		return false;
	return cls == 0 ? e / COLS < 3 : e / COLS >= 3;
}

/* ---- the MNIST sequence ---- */

static void check_sequence(const struct run *r, uint32_t rate, bool twin, const struct mead_digits *d)
{
	uint64_t spms = rate / 1000;
	int32_t phase = -1, label = -1, item = -1;
	int64_t trial = -1;
	uint64_t start = 0, end = 0, prev_end = 0;
	int learning = -1;
	size_t pi = 0, ci = 0;
	uint32_t n_train = 0, n_val = 0, n_test = 0, label_pulses = 0, restores = 0, saves = 0;
	bool in = false, seen_test = false;
	uint32_t train_since_val = 0;
	size_t last_phase = 0;

	/* Wire v1 has no validation phase: validation passes go out as test
	 * blocks, each opened by its own PHASE event, and the held-out test set
	 * is the last block of the run. */
	for (size_t i = 0; i < r->n_events; i++)
		if (r->events[i].type == MEAD_EVENT_PHASE && r->events[i].value != MEAD_PHASE_REST)
			last_phase = i;

	for (size_t i = 0; i < r->n_events; i++) {
		const struct mead_event *e = &r->events[i];
		uint64_t tick = r->event_tick[i];
		/* driver commands of this tick */
		while (ci < r->n_ctls && r->ctls[ci].tick <= tick) {
			const struct ctl_rec *c = &r->ctls[ci++];
			if (c->op == MEAD_CTL_LEARNING)
				learning = (int)c->value;
			if (c->op == MEAD_CTL_SNAPSHOT_SAVE) {
				assert_int_equal(c->value, 0);
				saves++;
			}
			if (c->op == MEAD_CTL_SNAPSHOT_RESTORE) {
				assert_int_equal(c->value, 0);
				restores++;
			}
			if (c->op == MEAD_CTL_RESET_STATE)
				assert_true(twin);
		}
		switch (e->type) {
		case MEAD_EVENT_PHASE:
			assert_false(in);
			assert_true(e->value == MEAD_PHASE_TRAIN || e->value == MEAD_PHASE_TEST ||
				    e->value == MEAD_PHASE_REST);
			phase = e->value;
			if (phase == MEAD_PHASE_TEST && i != last_phase)
				phase = MEAD_PROTOCOL_PHASE_VALIDATION;
			if (phase == MEAD_PHASE_TEST)
				seen_test = true;
			break;
		case MEAD_EVENT_TRIAL_START:
			assert_false(in);
			assert_int_equal(e->value, trial + 1);
			trial = e->value;
			in = true;
			start = e->sample;
			end = start + 100 * spms;
			if (trial > 0)
				assert_int_equal(start - prev_end, twin ? 0 : 50 * spms);
			assert_true(phase == MEAD_PHASE_TRAIN || phase == MEAD_PHASE_TEST ||
				    phase == MEAD_PROTOCOL_PHASE_VALIDATION);
			assert_int_equal(learning, phase == MEAD_PHASE_TRAIN ? 1 : 0);
			if (phase == MEAD_PHASE_TRAIN) {
				n_train++;
				train_since_val++;
			} else if (phase == MEAD_PHASE_TEST) {
				n_test++;
				/* the best weights are back before the first test trial */
				assert_int_equal(restores, twin ? 1 : 0);
			} else {
				n_val++;
				assert_true(train_since_val == 10 || train_since_val == 0);
			}
			/* twin: reset and (at trial 0) learning come in this tick */
			if (twin) {
				bool reset = false;
				for (size_t k = 0; k < r->n_ctls; k++)
					if (r->ctls[k].tick == tick && r->ctls[k].op == MEAD_CTL_RESET_STATE)
						reset = true;
				assert_true(reset);
			}
			break;
		case MEAD_EVENT_ITEM:
			assert_true(in);
			item = e->value;
			break;
		case MEAD_EVENT_LABEL:
			assert_true(in);
			label = e->value;
			assert_true(label == 0 || label == 1);
			if (d)
				assert_int_equal(mead_digits_label(d, (uint32_t)item), label);
			break;
		case MEAD_EVENT_TRIAL_END: {
			assert_true(in);
			assert_int_equal(e->value, trial);
			assert_int_equal(e->sample, end);
			/* pulses of the trial */
			for (; pi < r->n_pulses && r->pulses[pi].sample < end; pi++) {
				const struct mead_stim_pulse *s = &r->pulses[pi];
				assert_true(s->sample >= start);
				assert_int_equal((s->sample - start) % spms, 0);
				assert_true(s->electrode != EXCL_GRID && s->electrode != EXCL_LABEL);
				assert_true(s->amplitude_ua == -10.0f && s->phase_us == 200 && s->interphase_us == 50);
				if (!is_grid(s->electrode)) {
					assert_int_equal(phase, MEAD_PHASE_TRAIN);
					assert_true(class_cell(s->electrode, label));
					label_pulses++;
				}
			}
			bool sample_end = false;
			for (size_t k = 0; k < r->n_ctls; k++)
				if (r->ctls[k].tick == tick && r->ctls[k].op == MEAD_CTL_SAMPLE_END)
					sample_end = true;
			assert_true(sample_end);
			if (phase == MEAD_PROTOCOL_PHASE_VALIDATION)
				train_since_val = 0;
			prev_end = e->sample;
			in = false;
			break;
		}
		default:
			fail_msg("unexpected event %u", e->type);
		}
	}
	assert_false(in);
	assert_true(seen_test);
	assert_int_equal(pi, r->n_pulses);         /* no pulse outside a trial */
	assert_int_equal(n_train, 20);
	assert_int_equal(n_val, 12);                /* 2 passes of 6 */
	assert_int_equal(n_test, 10);
	assert_int_equal(trial + 1, 42);
	assert_true(label_pulses > 20 * 2 * 10);    /* 2 label cells x ~20 spikes per training trial */
	assert_int_equal(saves, twin ? 1 : 0);      /* second pass is not strictly better */
	assert_int_equal(restores, twin ? 1 : 0);
}

static void test_mnist_sequence_twin(void **state)
{
	(void)state;
	struct mead_protocol_config c;
	mnist_cfg(&c);
	char im[600], lb[600], err[256];
	snprintf(im, sizeof(im), "%s/mnist/mnist8k-images-idx3-ubyte.gz", data_dir);
	snprintf(lb, sizeof(lb), "%s/mnist/mnist8k-labels-idx1-ubyte.gz", data_dir);
	struct mead_digits *d = NULL;
	assert_int_equal(mead_digits_new(im, lb, &d, err, sizeof(err)), 0);

	struct mead_protocol *p = new_mnist(&c, 1000, 1000000, TWIN_CAPS, NULL);
	struct run r;
	drive(p, 1000, 1000000, CORRECT, &r);
	check_sequence(&r, 1000, true, d);
	assert_int_equal(r.res.evaluations, 2);
	assert_true(r.res.best_validation_accuracy == 1.0);
	assert_true(r.res.snapshot_saved);
	assert_int_equal(r.res.test_trials, 10);
	assert_int_equal(r.res.test_correct, 10);
	assert_int_equal(r.ticks, 4200 + 1);
	char js[1024];
	int n = mead_protocol_describe(p, js, sizeof(js));
	assert_true(n > 0 && (size_t)n == strlen(js));
	assert_non_null(strstr(js, "\"state\": \"finished\""));
	assert_non_null(strstr(js, "\"accuracy\": 1.0000"));
	assert_non_null(strstr(js, "\"train\": 20, \"validation\": 6, \"test\": 10"));
	assert_int_equal(mead_protocol_describe(p, js, 10), -ENOBUFS);
	/* finished stays finished */
	struct mead_tick_io io = { .first_sample = 99999999 };
	assert_int_equal(mead_protocol_tick(p, &io), 0);
	assert_true(io.finished);
	assert_int_equal(io.n_stim + io.n_events + io.n_ctl, 0);
	mead_protocol_free(p);
	run_free(&r);

	/* the culture answering wrong scores 0 */
	p = new_mnist(&c, 1000, 1000000, TWIN_CAPS, NULL);
	drive(p, 1000, 1000000, WRONG, &r);
	assert_true(r.res.best_validation_accuracy == 0.0);
	assert_int_equal(r.res.test_correct, 0);
	mead_protocol_free(p);
	run_free(&r);
	mead_digits_free(d);
}

/* Pulses of the trials after event `from`, as (offset in its trial,
 * electrode) pairs, in order; returns how many. */
static size_t trial_pulses(const struct run *r, size_t from, uint64_t *out, size_t cap)
{
	size_t n = 0;
	for (size_t i = from; i < r->n_events; i++) {
		if (r->events[i].type != MEAD_EVENT_TRIAL_START)
			continue;
		uint64_t st = r->events[i].sample, en = st + 100;
		for (size_t k = 0; k < r->n_pulses; k++)
			if (r->pulses[k].sample >= st && r->pulses[k].sample < en && n < cap)
				out[n++] = ((r->pulses[k].sample - st) << 16) | r->pulses[k].electrode;
	}
	return n;
}

static size_t last_phase_event(const struct run *r)
{
	size_t last = 0;
	for (size_t i = 0; i < r->n_events; i++)
		if (r->events[i].type == MEAD_EVENT_PHASE && r->events[i].value == MEAD_PHASE_TEST)
			last = i;
	return last;
}

/* protocol.mnist.readout_pass: the training digits again after the last
 * validation pass, label and learning off, on the restored weights, as a
 * test-phase block of its own before the test; the test's spike trains and
 * scores are those of the same run without it. */
static void test_mnist_readout_pass(void **state)
{
	(void)state;
	struct mead_protocol_config c;
	mnist_cfg(&c);
	struct run plain, withp;
	struct mead_protocol *p = new_mnist(&c, 1000, 1000000, TWIN_CAPS, NULL);
	drive(p, 1000, 1000000, CORRECT, &plain);
	mead_protocol_free(p);
	c.mnist.readout_pass = true;
	p = new_mnist(&c, 1000, 1000000, TWIN_CAPS, NULL);
	drive(p, 1000, 1000000, CORRECT, &withp);
	mead_protocol_free(p);

	assert_int_equal(withp.res.test_trials, 10);
	assert_int_equal(withp.res.test_correct, plain.res.test_correct);
	assert_int_equal(withp.res.evaluations, 2);
	assert_int_equal(withp.ticks, plain.ticks + 20 * 100);

	/* blocks: train, validation, train, validation, readout pass, test */
	int32_t phases[16];
	uint32_t n_ph = 0, per_block[16] = { 0 };
	int32_t train_items[20], pass_items[20];
	uint32_t n_ti = 0, n_pi = 0;
	int learning = -1;
	uint32_t restores = 0;
	size_t ci = 0;
	for (size_t i = 0; i < withp.n_events; i++) {
		const struct mead_event *e = &withp.events[i];
		while (ci < withp.n_ctls && withp.ctls[ci].tick <= withp.event_tick[i]) {
			const struct ctl_rec *cr = &withp.ctls[ci++];
			if (cr->op == MEAD_CTL_LEARNING)
				learning = (int)cr->value;
			if (cr->op == MEAD_CTL_SNAPSHOT_RESTORE)
				restores++;
		}
		if (e->type == MEAD_EVENT_PHASE) {
			assert_true(n_ph < 16);
			phases[n_ph++] = e->value;
		} else if (e->type == MEAD_EVENT_TRIAL_START) {
			per_block[n_ph - 1]++;
			if (n_ph == 5) {
				/* the weights of the best pass, frozen */
				assert_int_equal(restores, 1);
				assert_int_equal(learning, 0);
			}
		} else if (e->type == MEAD_EVENT_ITEM) {
			if (phases[n_ph - 1] == MEAD_PHASE_TRAIN && n_ti < 20)
				train_items[n_ti++] = e->value;
			if (n_ph == 5 && n_pi < 20)
				pass_items[n_pi++] = e->value;
		}
	}
	assert_int_equal(n_ph, 6);
	int32_t want[6] = { MEAD_PHASE_TRAIN, MEAD_PHASE_TEST, MEAD_PHASE_TRAIN, MEAD_PHASE_TEST, MEAD_PHASE_TEST,
			    MEAD_PHASE_TEST };
	uint32_t want_n[6] = { 10, 6, 10, 6, 20, 10 };
	for (int k = 0; k < 6; k++) {
		assert_int_equal(phases[k], want[k]);
		assert_int_equal(per_block[k], want_n[k]);
	}
	assert_int_equal(n_ti, 20);
	assert_int_equal(n_pi, 20);
	assert_memory_equal(train_items, pass_items, sizeof(train_items));

	/* no label pulse in the readout pass */
	size_t pass_start = 0;
	for (size_t i = 0, k = 0; i < withp.n_events; i++)
		if (withp.events[i].type == MEAD_EVENT_PHASE && ++k == 5)
			pass_start = i;
	uint64_t from = withp.events[pass_start].sample, to = withp.events[last_phase_event(&withp)].sample;
	for (size_t k = 0; k < withp.n_pulses; k++)
		if (withp.pulses[k].sample >= from && withp.pulses[k].sample < to)
			assert_true(is_grid(withp.pulses[k].electrode));

	/* the test's spike trains do not move */
	static uint64_t a[20000], b[20000];
	size_t na = trial_pulses(&plain, last_phase_event(&plain), a, 20000);
	size_t nb = trial_pulses(&withp, last_phase_event(&withp), b, 20000);
	assert_true(na > 100);
	assert_int_equal(na, nb);
	assert_memory_equal(a, b, na * sizeof(a[0]));
	run_free(&plain);
	run_free(&withp);
}

/* protocol.mnist.eval_screen: a pass starts with its first eval_screen
 * digits and goes on to the whole validation set only when they score at
 * least the best whole pass so far; a pass cut short is a shorter block on
 * the wire, the trial index stays contiguous, and nothing is saved. */
static void test_mnist_screen(void **state)
{
	(void)state;
	struct mead_protocol_config c;
	mnist_cfg(&c);
	c.mnist.eval_screen = 2;
	struct run r;

	/* right throughout: every screen matches the best, every pass is whole */
	struct mead_protocol *p = new_mnist(&c, 1000, 1000000, TWIN_CAPS, NULL);
	drive(p, 1000, 1000000, CORRECT, &r);
	assert_int_equal(r.res.evaluations, 2);
	assert_int_equal(r.res.screened_out, 0);
	assert_int_equal(r.res.trial, 42);
	mead_protocol_free(p);
	run_free(&r);

	/* right for the first 16 trials (10 training + the first whole pass),
	 * wrong after: the second pass stops after its screen of 2 */
	culture_turns_at = 16;
	p = new_mnist(&c, 1000, 1000000, TWIN_CAPS, NULL);
	drive(p, 1000, 1000000, CORRECT_THEN_WRONG, &r);
	assert_int_equal(r.res.evaluations, 1);
	assert_int_equal(r.res.screened_out, 1);
	assert_true(r.res.best_validation_accuracy == 1.0);
	assert_int_equal(r.res.trial, 10 + 6 + 10 + 2 + 10);
	assert_int_equal(r.ticks, (10 + 6 + 10 + 2 + 10) * 100 + 1);
	assert_true(r.res.n_trials >= r.res.trial);
	assert_int_equal(r.res.test_trials, 10);
	assert_int_equal(r.res.test_correct, 0);

	int32_t phases[8];
	uint32_t n_ph = 0, per_block[8] = { 0 }, saves = 0, restores = 0;
	int64_t last_trial = -1;
	for (size_t i = 0; i < r.n_events; i++) {
		const struct mead_event *e = &r.events[i];
		if (e->type == MEAD_EVENT_PHASE) {
			assert_true(n_ph < 8);
			phases[n_ph++] = e->value;
		} else if (e->type == MEAD_EVENT_TRIAL_START) {
			assert_int_equal(e->value, last_trial + 1);
			last_trial = e->value;
			per_block[n_ph - 1]++;
		}
	}
	for (size_t k = 0; k < r.n_ctls; k++) {
		saves += r.ctls[k].op == MEAD_CTL_SNAPSHOT_SAVE;
		restores += r.ctls[k].op == MEAD_CTL_SNAPSHOT_RESTORE;
	}
	int32_t want[5] = { MEAD_PHASE_TRAIN, MEAD_PHASE_TEST, MEAD_PHASE_TRAIN, MEAD_PHASE_TEST, MEAD_PHASE_TEST };
	uint32_t want_n[5] = { 10, 6, 10, 2, 10 };
	assert_int_equal(n_ph, 5);
	for (int k = 0; k < 5; k++) {
		assert_int_equal(phases[k], want[k]);
		assert_int_equal(per_block[k], want_n[k]);
	}
	assert_int_equal(saves, 1);
	assert_int_equal(restores, 1);
	char js[1024];
	assert_true(mead_protocol_describe(p, js, sizeof(js)) > 0);
	assert_non_null(strstr(js, "\"screened_out\": 1"));
	assert_non_null(strstr(js, "\"test\": 10, \"screen\": 2}"));
	mead_protocol_free(p);
	run_free(&r);

	/* the screen's spike trains are those of the whole pass's first digits */
	struct run whole;
	c.mnist.eval_screen = 0;
	p = new_mnist(&c, 1000, 1000000, TWIN_CAPS, NULL);
	drive(p, 1000, 1000000, CORRECT_THEN_WRONG, &whole);
	assert_int_equal(whole.res.screened_out, 0);
	assert_int_equal(whole.res.trial, 42);
	mead_protocol_free(p);
	/* the test is the same digits with the same trains either way */
	static uint64_t a[20000], b[20000];
	c.mnist.eval_screen = 2;
	p = new_mnist(&c, 1000, 1000000, TWIN_CAPS, NULL);
	drive(p, 1000, 1000000, CORRECT_THEN_WRONG, &r);
	mead_protocol_free(p);
	size_t na = trial_pulses(&whole, last_phase_event(&whole), a, 20000);
	size_t nb = trial_pulses(&r, last_phase_event(&r), b, 20000);
	assert_true(na > 100);
	assert_int_equal(na, nb);
	assert_memory_equal(a, b, na * sizeof(a[0]));
	run_free(&whole);
	run_free(&r);
}

/* protocol.mnist.train_order: interleaved shows the same training digits,
 * classes taking turns while both last. */
static void test_mnist_interleaved(void **state)
{
	(void)state;
	struct mead_protocol_config c;
	mnist_cfg(&c);
	struct run sh, il;
	struct mead_protocol *p = new_mnist(&c, 1000, 1000000, TWIN_CAPS, NULL);
	drive(p, 1000, 1000000, CORRECT, &sh);
	mead_protocol_free(p);
	c.mnist.train_order = MEAD_PROTOCOL_ORDER_INTERLEAVED;
	p = new_mnist(&c, 1000, 1000000, TWIN_CAPS, NULL);
	drive(p, 1000, 1000000, CORRECT, &il);
	mead_protocol_free(p);

	int32_t items[2][20], labels[2][20];
	uint32_t n[2] = { 0, 0 };
	const struct run *runs[2] = { &sh, &il };
	for (int k = 0; k < 2; k++) {
		int32_t phase = -1;
		for (size_t i = 0; i < runs[k]->n_events; i++) {
			const struct mead_event *e = &runs[k]->events[i];
			if (e->type == MEAD_EVENT_PHASE)
				phase = e->value;
			else if (e->type == MEAD_EVENT_ITEM && phase == MEAD_PHASE_TRAIN)
				items[k][n[k]] = e->value;
			else if (e->type == MEAD_EVENT_LABEL && phase == MEAD_PHASE_TRAIN)
				labels[k][n[k]++] = e->value;
		}
		assert_int_equal(n[k], 20);
	}
	/* the same digits */
	for (int i = 0; i < 20; i++) {
		bool found = false;
		for (int j = 0; j < 20; j++)
			found |= items[0][i] == items[1][j];
		assert_true(found);
	}
	/* turns while both classes last, then the rest of one class */
	uint32_t zeros = 0;
	for (int i = 0; i < 20; i++)
		zeros += labels[1][i] == 0;
	uint32_t pairs = zeros < 20 - zeros ? zeros : 20 - zeros;
	assert_true(pairs > 0);
	for (uint32_t i = 0; i < 2 * pairs; i++)
		assert_int_equal(labels[1][i], (int32_t)(i % 2));
	for (uint32_t i = 2 * pairs + 1; i < 20; i++)
		assert_int_equal(labels[1][i], labels[1][2 * pairs]);
	/* each class keeps its shuffled order */
	for (int cls = 0; cls < 2; cls++) {
		int32_t a[20], b[20];
		uint32_t na = 0, nb = 0;
		for (int i = 0; i < 20; i++) {
			if (labels[0][i] == cls)
				a[na++] = items[0][i];
			if (labels[1][i] == cls)
				b[nb++] = items[1][i];
		}
		assert_int_equal(na, nb);
		assert_memory_equal(a, b, na * sizeof(a[0]));
	}
	run_free(&sh);
	run_free(&il);
}

/* The item events of the trials in `phase`, in order; returns how many. */
static uint32_t phase_items(const struct run *r, int32_t phase, int32_t *items, uint32_t cap)
{
	uint32_t n = 0;
	int32_t cur = -1;
	for (size_t i = 0; i < r->n_events; i++) {
		const struct mead_event *e = &r->events[i];
		if (e->type == MEAD_EVENT_PHASE)
			cur = e->value;
		else if (e->type == MEAD_EVENT_ITEM && cur == phase && n < cap)
			items[n++] = e->value;
	}
	return n;
}

static int cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	return (x > y) - (x < y);
}

/* protocol.mnist.train_epochs: the training digits shown again, each epoch
 * in a fresh order (shuffled) with fresh spike trains, validation passes on
 * the same cadence across the epochs; the first epoch is that of a
 * one-epoch run. */
static void test_mnist_epochs(void **state)
{
	(void)state;
	struct mead_protocol_config c;
	mnist_cfg(&c);
	struct run one, three;
	struct mead_protocol *p = new_mnist(&c, 1000, 1000000, TWIN_CAPS, NULL);
	drive(p, 1000, 1000000, CORRECT, &one);
	mead_protocol_free(p);
	c.mnist.train_epochs = 3;
	p = new_mnist(&c, 1000, 1000000, TWIN_CAPS, NULL);
	drive(p, 1000, 1000000, CORRECT, &three);
	mead_protocol_free(p);

	assert_int_equal(one.res.evaluations, 2);
	assert_int_equal(three.res.evaluations, 6);
	assert_int_equal(three.res.test_trials, 10);
	assert_int_equal(three.ticks, one.ticks + 2 * (20 + 2 * 6) * 100);

	int32_t a[64], b[64];
	assert_int_equal(phase_items(&one, MEAD_PHASE_TRAIN, a, 64), 20);
	assert_int_equal(phase_items(&three, MEAD_PHASE_TRAIN, b, 64), 60);
	/* the first epoch is the one-epoch run's, every epoch the same digits */
	assert_memory_equal(a, b, 20 * sizeof(a[0]));
	assert_memory_not_equal(b, b + 20, 20 * sizeof(b[0]));
	assert_memory_not_equal(b + 20, b + 40, 20 * sizeof(b[0]));
	qsort(a, 20, sizeof(a[0]), cmp_i32);
	for (int e = 1; e < 3; e++) {
		qsort(b + 20 * e, 20, sizeof(b[0]), cmp_i32);
		assert_memory_equal(a, b + 20 * e, 20 * sizeof(a[0]));
	}

	/* the first training trials' spike trains match */
	static uint64_t x[20000], y[20000];
	size_t nx = trial_pulses(&one, 0, x, 20000);
	size_t ny = trial_pulses(&three, 0, y, 20000);
	assert_true(nx > 100 && ny > nx);
	size_t first = 0;  /* pulses of the first ten training trials */
	for (size_t i = 0, k = 0; i < one.n_events; i++)
		if (one.events[i].type == MEAD_EVENT_TRIAL_START && ++k == 11) {
			for (size_t j = 0; j < one.n_pulses; j++)
				first += one.pulses[j].sample < one.events[i].sample;
			break;
		}
	assert_true(first > 10);
	assert_memory_equal(x, y, first * sizeof(x[0]));
	run_free(&one);
	run_free(&three);

	/* interleaved: every epoch takes the same turns */
	c.mnist.train_order = MEAD_PROTOCOL_ORDER_INTERLEAVED;
	c.mnist.train_epochs = 2;
	p = new_mnist(&c, 1000, 1000000, TWIN_CAPS, NULL);
	drive(p, 1000, 1000000, CORRECT, &three);
	mead_protocol_free(p);
	assert_int_equal(phase_items(&three, MEAD_PHASE_TRAIN, b, 64), 40);
	assert_memory_equal(b, b + 20, 20 * sizeof(b[0]));
	run_free(&three);
}

static void test_mnist_rig(void **state)
{
	(void)state;
	struct mead_protocol_config c;
	mnist_cfg(&c);
	/* a rig: no reset (rest instead), no plasticity (no snapshots) */
	struct mead_protocol *p = new_mnist(&c, 25000, 40000, MEAD_CAP_STIMULATE, NULL);
	struct run r;
	drive(p, 25000, 40000, CORRECT, &r);
	check_sequence(&r, 25000, false, NULL);
	size_t rests = 0;
	for (size_t i = 0; i < r.n_events; i++)
		if (r.events[i].type == MEAD_EVENT_PHASE && r.events[i].value == MEAD_PHASE_REST)
			rests++;
	/* rest is announced between blocks only: train|val|train|val|test */
	assert_int_equal(rests, 4);
	for (size_t i = 0; i < r.n_ctls; i++) {
		assert_true(r.ctls[i].op != MEAD_CTL_RESET_STATE);
		assert_true(r.ctls[i].op != MEAD_CTL_SNAPSHOT_SAVE);
		assert_true(r.ctls[i].op != MEAD_CTL_SNAPSHOT_RESTORE);
	}
	/* still scored, without weights to keep */
	assert_true(r.res.best_validation_accuracy == 1.0);
	assert_false(r.res.snapshot_saved);
	mead_protocol_free(p);
	run_free(&r);
}

/* Pulses and events in ms: identical whatever the rate and the period. */
static void same_in_ms(const struct run *a, uint32_t ra, const struct run *b, uint32_t rb)
{
	assert_int_equal(a->n_pulses, b->n_pulses);
	assert_int_equal(a->n_events, b->n_events);
	for (size_t i = 0; i < a->n_pulses; i++) {
		assert_true(a->pulses[i].sample * 1000 / ra == b->pulses[i].sample * 1000 / rb);
		assert_int_equal(a->pulses[i].electrode, b->pulses[i].electrode);
	}
	for (size_t i = 0; i < a->n_events; i++) {
		assert_true(a->events[i].sample * 1000 / ra == b->events[i].sample * 1000 / rb);
		assert_int_equal(a->events[i].type, b->events[i].type);
		assert_int_equal(a->events[i].value, b->events[i].value);
	}
	assert_int_equal(a->n_ctls, b->n_ctls);
	for (size_t i = 0; i < a->n_ctls; i++) {
		assert_int_equal(a->ctls[i].op, b->ctls[i].op);
		assert_int_equal(a->ctls[i].value, b->ctls[i].value);
		assert_true(a->ctls[i].sample * 1000 / ra == b->ctls[i].sample * 1000 / rb);
	}
}

static void test_mnist_periods_and_seeds(void **state)
{
	(void)state;
	struct mead_protocol_config c;
	mnist_cfg(&c);
	static const struct { uint32_t rate, period_ns; } cases[] = {
		{ 1000, 1000000 }, { 1000, 40000 }, { 25000, 1000000 }, { 25000, 40000 }, { 1000, 5000000 },
	};
	struct run base, r;
	struct mead_protocol *p = new_mnist(&c, 1000, 1000000, TWIN_CAPS, NULL);
	drive(p, 1000, 1000000, CORRECT, &base);
	mead_protocol_free(p);
	assert_true(base.n_pulses > 1000);
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		p = new_mnist(&c, cases[k].rate, cases[k].period_ns, TWIN_CAPS, NULL);
		drive(p, cases[k].rate, cases[k].period_ns, CORRECT, &r);
		check_sequence(&r, cases[k].rate, true, NULL);
		same_in_ms(&base, 1000, &r, cases[k].rate);
		assert_int_equal(r.res.test_correct, 10);
		mead_protocol_free(p);
		run_free(&r);
	}
	/* another seed: another split and other trains */
	c.seed = 12;
	p = new_mnist(&c, 1000, 1000000, TWIN_CAPS, NULL);
	drive(p, 1000, 1000000, CORRECT, &r);
	bool differ = r.n_pulses != base.n_pulses;
	for (size_t i = 0; !differ && i < r.n_pulses; i++)
		differ = r.pulses[i].sample != base.pulses[i].sample || r.pulses[i].electrode != base.pulses[i].electrode;
	assert_true(differ);
	mead_protocol_free(p);
	run_free(&r);
	run_free(&base);
}

static void test_mnist_poisson_encoder(void **state)
{
	(void)state;
	struct mead_protocol_config c;
	mnist_cfg(&c);
	c.mnist.encoder = MEAD_PROTOCOL_ENCODER_POISSON;
	struct mead_protocol *p = new_mnist(&c, 1000, 1000000, TWIN_CAPS, NULL);
	struct run r, ref;
	drive(p, 1000, 1000000, CORRECT, &r);
	check_sequence(&r, 1000, true, NULL);
	mead_protocol_free(p);
	c.mnist.encoder = MEAD_PROTOCOL_ENCODER_REFERENCE;
	p = new_mnist(&c, 1000, 1000000, TWIN_CAPS, NULL);
	drive(p, 1000, 1000000, CORRECT, &ref);
	mead_protocol_free(p);
	/* same digits, same rates: similar totals, different trains */
	assert_true(r.n_pulses != ref.n_pulses);
	double ratio = (double)r.n_pulses / ref.n_pulses;
	assert_true(ratio > 0.8 && ratio < 1.3);
	run_free(&r);
	run_free(&ref);
}

static void test_mnist_units_rule(void **state)
{
	(void)state;
	struct mead_protocol_config c;
	mnist_cfg(&c);
	c.mnist.eval_every = 0;
	/* class 0's cells hold 10 units each, class 1's one: with equal counts
	 * the per-unit score picks class 1 every time */
	uint32_t units[NEL];
	for (uint32_t i = 0; i < NEL; i++)
		units[i] = 4;
	units[9] = units[19] = units[29] = 10;
	units[39] = units[59] = 1;
	units[EXCL_LABEL] = 1000;   /* excluded: neither counted nor weighed */
	struct mead_protocol *p = new_mnist(&c, 1000, 1000000, TWIN_CAPS, units);
	struct run r;
	drive(p, 1000, 1000000, BOTH, &r);
	uint32_t ones = 0;
	int32_t phase = -1;
	for (size_t i = 0; i < r.n_events; i++) {
		if (r.events[i].type == MEAD_EVENT_PHASE)
			phase = r.events[i].value;
		if (r.events[i].type == MEAD_EVENT_LABEL && phase == MEAD_PHASE_TEST)
			ones += r.events[i].value == 1;
	}
	assert_int_equal(r.res.evaluations, 0);
	assert_true(r.res.best_validation_accuracy < 0);
	assert_int_equal(r.res.test_trials, 10);
	assert_int_equal(r.res.test_correct, ones);
	assert_true(ones > 0 && ones < 10);
	mead_protocol_free(p);
	run_free(&r);

	/* without units (hardware), raw counts decide: a tie goes to class 0,
	 * though class 1 has one cell fewer (49 is excluded) */
	p = new_mnist(&c, 1000, 1000000, TWIN_CAPS, NULL);
	drive(p, 1000, 1000000, BOTH, &r);
	assert_int_equal(r.res.test_correct, 10 - ones);
	mead_protocol_free(p);
	run_free(&r);
}

static void test_mnist_split(void **state)
{
	(void)state;
	struct mead_protocol_config c;
	mnist_cfg(&c);
	c.mnist.train_size = c.mnist.validation_size = c.mnist.test_size = 0;
	c.mnist.eval_every = 50;
	struct mead_protocol_env env = env_of(1000, 1000000, TWIN_CAPS, NULL);
	struct mead_protocol *p = NULL;
	char err[512], js[1024];
	/* 812 zeros + 925 ones: a quarter each for test and validation */
	assert_int_equal(mead_protocol_new(&c, "mnist", &env, &p, err, sizeof(err)), 0);
	assert_true(mead_protocol_describe(p, js, sizeof(js)) > 0);
	assert_non_null(strstr(js, "\"train\": 869, \"validation\": 434, \"test\": 434"));
	assert_non_null(strstr(js, "\"state\": \"ready\""));
	struct mead_protocol_results res;
	assert_int_equal(mead_protocol_results(p, &res), 0);
	assert_int_equal(res.n_trials, 869 + 18 * 434 + 434);
	mead_protocol_free(p);

	/* items of the three sets never overlap */
	mnist_cfg(&c);
	c.mnist.train_size = 300;
	c.mnist.validation_size = 100;
	c.mnist.test_size = 200;
	c.mnist.eval_every = 300;
	p = new_mnist(&c, 1000, 10000000, TWIN_CAPS, NULL);
	struct run r;
	drive(p, 1000, 10000000, SILENT, &r);
	static uint8_t set_of[8000];
	memset(set_of, 0, sizeof(set_of));
	int32_t phase = -1;
	uint32_t seen = 0;
	for (size_t i = 0; i < r.n_events; i++) {
		if (r.events[i].type == MEAD_EVENT_PHASE)
			phase = r.events[i].value;
		if (r.events[i].type != MEAD_EVENT_ITEM)
			continue;
		uint8_t tag = (uint8_t)(phase + 1);
		int32_t it = r.events[i].value;
		assert_true(it >= 0 && it < 8000);
		assert_true(set_of[it] == 0 || set_of[it] == tag);
		if (!set_of[it])
			seen++;
		set_of[it] = tag;
	}
	assert_int_equal(seen, 600);
	assert_int_equal(r.res.test_trials, 200);
	mead_protocol_free(p);
	run_free(&r);

	/* too many asked */
	c.mnist.train_size = 1500;
	struct mead_protocol *sentinel = (struct mead_protocol *)(uintptr_t)0x77;
	p = sentinel;
	assert_int_equal(mead_protocol_new(&c, "mnist", &env, &p, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "1737"));
	assert_ptr_equal(p, sentinel);
}

static void test_mnist_errors(void **state)
{
	(void)state;
	struct mead_protocol_config c;
	struct mead_protocol_env env = env_of(1000, 1000000, TWIN_CAPS, NULL);
	struct mead_protocol *sentinel = (struct mead_protocol *)(uintptr_t)0x55, *p = sentinel;
	char err[512];

	mnist_cfg(&c);
	assert_int_equal(mead_protocol_new(&c, "nope", &env, &p, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "nope"));

	c.mnist.train_images = "mnist/missing.gz";
	assert_int_equal(mead_protocol_new(&c, "mnist", &env, &p, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "missing.gz"));

	mnist_cfg(&c);
	c.mnist.classes.n = 5;
	for (uint32_t i = 0; i < 5; i++)
		c.mnist.classes.v[i] = i;
	assert_int_equal(mead_protocol_new(&c, "mnist", &env, &p, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "label"));
	/* without label and validation, 10 classes run */
	c.mnist.classes.n = 10;
	for (uint32_t i = 0; i < 10; i++)
		c.mnist.classes.v[i] = i;
	c.mnist.label_train = false;
	c.mnist.eval_every = 0;
	assert_int_equal(mead_protocol_new(&c, "mnist", &env, &p, err, sizeof(err)), 0);
	struct mead_protocol_bounds b;
	assert_int_equal(mead_protocol_bounds(p, &b), 0);
	assert_true(b.electrode_mask_lo & (1ull << 0));
	assert_false(b.electrode_mask_lo & (1ull << EXCL_GRID));
	assert_false(b.electrode_mask_lo & (1ull << 9));    /* no label column */
	mead_protocol_free(p);
	p = sentinel;

	mnist_cfg(&c);
	c.mnist.grid_cols = 10;
	assert_int_equal(mead_protocol_new(&c, "mnist", &env, &p, err, sizeof(err)), -EINVAL);
	mnist_cfg(&c);
	c.mnist.grid_rows = 7;
	assert_int_equal(mead_protocol_new(&c, "mnist", &env, &p, err, sizeof(err)), -EINVAL);
	mnist_cfg(&c);
	c.mnist.classes.v[1] = 0;
	assert_int_equal(mead_protocol_new(&c, "mnist", &env, &p, err, sizeof(err)), -EINVAL);

	mnist_cfg(&c);
	struct mead_protocol_env slow = env_of(1000, 200000000, TWIN_CAPS, NULL);
	assert_int_equal(mead_protocol_new(&c, "mnist", &slow, &p, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "period"));
	struct mead_protocol_env low = env_of(500, 1000000, TWIN_CAPS, NULL);
	assert_int_equal(mead_protocol_new(&c, "mnist", &low, &p, err, sizeof(err)), -EINVAL);
	assert_ptr_equal(p, sentinel);
	mead_protocol_free(NULL);

	/* bounds of a default protocol */
	p = new_mnist(&c, 1000, 1000000, TWIN_CAPS, NULL);
	assert_int_equal(mead_protocol_bounds(p, &b), 0);
	assert_true(b.max_abs_amplitude_ua == 10.0f);
	assert_int_equal(b.max_phase_us, 200);
	assert_int_equal(b.max_interphase_us, 50);
	assert_true(b.max_rate_hz == 200.0);
	uint64_t want = 0;
	for (uint32_t e = 0; e < NEL; e++)
		if ((is_grid((uint16_t)e) || e % COLS == 9) && e != EXCL_GRID && e != EXCL_LABEL)
			want |= 1ull << e;
	assert_true(b.electrode_mask_lo == want);
	assert_true(b.electrode_mask_hi == 0);
	mead_protocol_free(p);
}

/* ---- random ---- */

static void test_random(void **state)
{
	(void)state;
	struct mead_protocol_config c;
	memset(&c, 0, sizeof(c));
	c.seed = 3;
	c.random = (struct mead_protocol_random_config){ .electrodes = 8, .rate_hz = 50, .pattern_ms = 200,
							 .duration_ms = 2000, .encoder = MEAD_PROTOCOL_ENCODER_POISSON,
							 .stim = { -20, 100, 20 } };
	struct mead_protocol_env env = env_of(25000, 40000, MEAD_CAP_STIMULATE, NULL);
	struct mead_protocol *p = NULL;
	char err[512];
	assert_int_equal(mead_protocol_new(&c, "random", &env, &p, err, sizeof(err)), 0);
	struct run r;
	drive(p, 25000, 40000, SILENT, &r);
	uint32_t starts = 0;
	for (size_t i = 0; i < r.n_events; i++)
		if (r.events[i].type == MEAD_EVENT_TRIAL_START) {
			assert_int_equal(r.events[i].sample, starts * 200 * 25);
			starts++;
		}
	assert_int_equal(starts, 10);
	/* each pattern: 8 distinct electrodes, never the excluded ones */
	size_t pi = 0;
	for (uint32_t t = 0; t < 10; t++) {
		uint64_t mask = 0;
		for (; pi < r.n_pulses && r.pulses[pi].sample < (t + 1) * 200 * 25; pi++) {
			uint16_t e = r.pulses[pi].electrode;
			assert_true(e < NEL && e != EXCL_GRID && e != EXCL_LABEL);
			assert_true(r.pulses[pi].amplitude_ua == -20.0f);
			mask |= 1ull << e;
		}
		assert_true(__builtin_popcountll(mask) <= 8 && __builtin_popcountll(mask) >= 6);
	}
	/* 8 electrodes x 50 Hz x 2 s = 800 pulses */
	assert_true(r.n_pulses > 700 && r.n_pulses < 900);
	mead_protocol_free(p);
	run_free(&r);

	/* a pool, and errors */
	c.random.pool.n = 3;
	c.random.pool.v[0] = 1;
	c.random.pool.v[1] = 2;
	c.random.pool.v[2] = 3;
	c.random.electrodes = 2;
	assert_int_equal(mead_protocol_new(&c, "random", &env, &p, err, sizeof(err)), 0);
	struct mead_protocol_bounds b;
	mead_protocol_bounds(p, &b);
	assert_true(b.electrode_mask_lo == 0xe && b.max_rate_hz == 50.0);
	mead_protocol_free(p);
	c.random.electrodes = 4;
	assert_int_equal(mead_protocol_new(&c, "random", &env, &p, err, sizeof(err)), -EINVAL);
	c.random.electrodes = 2;
	c.random.pool.v[2] = EXCL_GRID;
	assert_int_equal(mead_protocol_new(&c, "random", &env, &p, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "excluded"));
}

/* ---- respond ---- */

/* A spike on a trigger electrode is answered in the very next window, on
 * the target, once per dead time; spikes elsewhere are not. */
static void test_respond(void **state)
{
	(void)state;
	struct mead_protocol_config c;
	memset(&c, 0, sizeof(c));
	c.respond = (struct mead_protocol_respond_config){ .target = 5, .dead_ms = 10, .duration_ms = 1000,
							   .stim = { -15, 100, 20 } };
	c.respond.trigger.n = 1;
	c.respond.trigger.v[0] = 12;
	struct mead_protocol_env env = env_of(25000, 1000000, MEAD_CAP_STIMULATE, NULL);
	struct mead_protocol *p = NULL;
	char err[512];
	assert_int_equal(mead_protocol_new(&c, "respond", &env, &p, err, sizeof(err)), 0);
	struct mead_stim_pulse stim[16];
	struct mead_event ev[16];
	struct mead_spike sp[4];
	uint32_t answered = 0;
	for (uint64_t t = 0; t < 100; t++) {
		uint32_t nsp = 0;
		/* the tick before window t read a spike on 12 every 3 ticks, and
		 * one on 13 (no trigger) every tick */
		if (t % 3 == 1)
			sp[nsp++] = (struct mead_spike){ .sample = (t - 1) * 25 + 7, .electrode = 12 };
		sp[nsp++] = (struct mead_spike){ .sample = (t - 1) * 25 + 9, .electrode = 13 };
		struct mead_frame fr = { .first_sample = t ? (t - 1) * 25 : 0, .n_samples = 25, .spikes = sp,
					 .n_spikes = t ? nsp : 0 };
		struct mead_tick_io io = { .tick = t, .first_sample = t * 25, .n_samples = 25, .frame = t ? &fr : NULL,
					   .stim = stim, .stim_capacity = 16, .events = ev, .event_capacity = 16 };
		assert_int_equal(mead_protocol_tick(p, &io), 0);
		for (uint32_t k = 0; k < io.n_stim; k++) {
			/* answered at the window's first sample: the earliest there is */
			assert_int_equal(stim[k].sample, t * 25);
			assert_int_equal(stim[k].electrode, 5);
			assert_true(stim[k].amplitude_ua == -15.0f);
			answered++;
		}
		/* every trigger spike is 3 ms after the last, inside the 10 ms
		 * dead time unless 12 ms have gone by */
	}
	/* triggers at ms 0, 3, 6, ...: answered at 0, 12, 24, ... (dead 10 ms) */
	print_message("respond: %u answers in 100 ms\n", answered);
	assert_int_equal(answered, 9);
	mead_protocol_free(p);

	c.respond.target = EXCL_GRID;
	assert_int_equal(mead_protocol_new(&c, "respond", &env, &p, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "excluded"));
	c.respond.target = 500;
	assert_int_equal(mead_protocol_new(&c, "respond", &env, &p, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "protocol.respond.target"));
}

/* ---- ruaro ---- */

static void test_ruaro(void **state)
{
	(void)state;
	struct mead_protocol_config c;
	memset(&c, 0, sizeof(c));
	c.seed = 5;
	c.ruaro = (struct mead_protocol_ruaro_config){ .probes = 2, .probe_ms = 400, .probe_delay_ms = 50,
						       .burst_ms = 10, .tetanus_trials = 3, .tetanus_ms = 400,
						       .tetanus_rate_hz = 250, .reset_between_trials = true,
						       .stim = { -10, 200, 50 } };
	struct mead_protocol_env env = env_of(1000, 1000000, TWIN_CAPS, NULL);
	struct mead_protocol *p = NULL;
	char err[512];
	assert_int_equal(mead_protocol_new(&c, "ruaro", &env, &p, err, sizeof(err)), 0);
	struct run r;
	drive(p, 1000, 1000000, SILENT, &r);
	/* regL: column 0 + row 5; upsL: row 0 + column 9 (minus excluded 49) */
	uint64_t regl = 0, upsl = 0;
	for (uint32_t e = 0; e < NEL; e++) {
		if (e % COLS == 0 || e / COLS == 5)
			regl |= 1ull << e;
		if ((e / COLS == 0 || e % COLS == 9) && e != EXCL_LABEL)
			upsl |= 1ull << e;
	}
	int32_t phase = -1, item = -1;
	uint32_t trial = 0, phases = 0, probe = 0;
	uint64_t start = 0;
	size_t pi = 0;
	int learning = -1;
	size_t ci = 0;
	for (size_t i = 0; i < r.n_events; i++) {
		const struct mead_event *e = &r.events[i];
		while (ci < r.n_ctls && r.ctls[ci].tick <= r.event_tick[i]) {
			if (r.ctls[ci].op == MEAD_CTL_LEARNING)
				learning = (int)r.ctls[ci].value;
			ci++;
		}
		if (e->type == MEAD_EVENT_PHASE) {
			phase = e->value;
			phases++;
		} else if (e->type == MEAD_EVENT_TRIAL_START) {
			start = e->sample;
			assert_int_equal(learning, phase == MEAD_PHASE_TRAIN);
		} else if (e->type == MEAD_EVENT_ITEM) {
			item = e->value;
		} else if (e->type == MEAD_EVENT_TRIAL_END) {
			uint64_t mask = 0;
			size_t n = 0;
			for (; pi < r.n_pulses && r.pulses[pi].sample < e->sample; pi++, n++) {
				mask |= 1ull << r.pulses[pi].electrode;
				if (phase == MEAD_PHASE_TEST)
					assert_true(r.pulses[pi].sample - start >= 50 && r.pulses[pi].sample - start < 60);
			}
			if (phase == MEAD_PHASE_TEST) {
				assert_int_equal(item, (int32_t)(probe++ % 2));
				assert_true(mask == (item == 0 ? regl : upsl));
				assert_int_equal(n, 10 * (size_t)__builtin_popcountll(mask));
			} else {
				assert_int_equal(phase, MEAD_PHASE_TRAIN);
				assert_true((mask & ~regl) == 0);
				/* 15 electrodes x 250 Hz x 0.4 s = 1500 */
				assert_true(n > 1300 && n < 1700);
			}
			trial++;
		}
	}
	assert_int_equal(trial, 11);
	assert_int_equal(phases, 3);   /* test, train, test */
	struct mead_protocol_bounds b;
	mead_protocol_bounds(p, &b);
	assert_true(b.electrode_mask_lo == (regl | upsl));
	mead_protocol_free(p);
	run_free(&r);
}

static int setup(void **state)
{
	(void)state;
	const char *root = getenv("MEAD_SOURCE_ROOT");
	snprintf(data_dir, sizeof(data_dir), "%s/data", root ? root : ".");
	make_layout();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mnist_sequence_twin),
		cmocka_unit_test(test_mnist_readout_pass),
		cmocka_unit_test(test_mnist_screen),
		cmocka_unit_test(test_mnist_interleaved),
		cmocka_unit_test(test_mnist_epochs),
		cmocka_unit_test(test_mnist_rig),
		cmocka_unit_test(test_mnist_periods_and_seeds),
		cmocka_unit_test(test_mnist_poisson_encoder),
		cmocka_unit_test(test_mnist_units_rule),
		cmocka_unit_test(test_mnist_split),
		cmocka_unit_test(test_mnist_errors),
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_respond),
		cmocka_unit_test(test_ruaro),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
