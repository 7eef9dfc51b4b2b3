/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mead/wire.h"
#include "readout/rule.h"
#include "readout/trials.h"

struct feeder {
	struct mead_trials *t;
	uint64_t seq[MEAD_KIND_COUNT + 1];
};

static void send_msg(struct feeder *f, uint16_t kind, uint64_t sample, const void *rec, uint32_t count,
		     uint32_t size)
{
	uint8_t raw[32];
	struct mead_wire_header h;
	mead_wire_header_encode((struct mead_wire_header *)raw, kind, f->seq[kind]++, sample, count, size);
	assert_int_equal(mead_wire_header_decode(raw, 32, &h), 0);
	assert_int_equal(mead_trials_feed(f->t, &h, rec, (size_t)count * size), 0);
}

static void spikes(struct feeder *f, uint64_t hdr_sample, const struct mead_spike *s, uint32_t n)
{
	send_msg(f, MEAD_KIND_SPIKES, hdr_sample, s, n, sizeof(*s));
}

static void events(struct feeder *f, uint64_t hdr_sample, const struct mead_event *e, uint32_t n)
{
	send_msg(f, MEAD_KIND_EVENTS, hdr_sample, e, n, sizeof(*e));
}

static struct mead_trials *new_trials(uint32_t max_waiting)
{
	struct mead_trials_options o = {.n_electrodes = 60, .max_waiting = max_waiting};
	struct mead_trials *t;
	assert_int_equal(mead_trials_new(&o, &t), 0);
	return t;
}

#define EV(s, ty, v) {.sample = (s), .type = (ty), .value = (v)}
#define SP(s, e) {.sample = (s), .electrode = (e)}

/* Events for a trial on [100, 200) arrive after its spikes (the publisher
 * drained the spike ring first); spikes outside the window do not count. */
static void test_spikes_before_events(void **state)
{
	(void)state;
	struct feeder f = {.t = new_trials(0)};
	struct mead_trial tr;
	struct mead_spike s1[] = {SP(50, 1), SP(100, 2), SP(150, 2), SP(150, 9)};
	struct mead_spike s2[] = {SP(199, 59), SP(200, 3), SP(250, 3)};
	spikes(&f, 50, s1, 4);
	spikes(&f, 199, s2, 3);
	assert_int_equal(mead_trials_next(f.t, &tr), 0);
	struct mead_event e[] = {
		EV(100, MEAD_EVENT_PHASE, MEAD_PHASE_TRAIN), EV(100, MEAD_EVENT_TRIAL_START, 0),
		EV(100, MEAD_EVENT_ITEM, 42), EV(100, MEAD_EVENT_LABEL, 1), EV(200, MEAD_EVENT_TRIAL_END, 0),
	};
	events(&f, 100, e, 5);
	/* The spike stream already passed 200. */
	assert_int_equal(mead_trials_next(f.t, &tr), 1);
	assert_int_equal(tr.index, 0);
	assert_int_equal(tr.start_sample, 100);
	assert_int_equal(tr.end_sample, 200);
	assert_int_equal(tr.phase, MEAD_PHASE_TRAIN);
	assert_int_equal(tr.label, 1);
	assert_int_equal(tr.item, 42);
	assert_false(tr.lossy);
	assert_int_equal(tr.total_spikes, 4);
	assert_int_equal(tr.counts[2], 2);
	assert_int_equal(tr.counts[9], 1);
	assert_int_equal(tr.counts[59], 1);
	assert_int_equal(tr.counts[1], 0);
	assert_int_equal(tr.counts[3], 0);
	assert_int_equal(mead_trials_next(f.t, &tr), 0);
	mead_trials_free(f.t);
}

/* Events first: the trial waits until a spikes message shows the stream
 * has passed its end, then counts the late spikes. */
static void test_events_before_spikes_waits(void **state)
{
	(void)state;
	struct feeder f = {.t = new_trials(0)};
	struct mead_trial tr;
	struct mead_event e[] = {
		EV(0, MEAD_EVENT_PHASE, MEAD_PHASE_TEST), EV(10, MEAD_EVENT_LABEL, 0),
		EV(10, MEAD_EVENT_TRIAL_START, 5), EV(20, MEAD_EVENT_TRIAL_END, 5),
	};
	events(&f, 0, e, 4);
	assert_int_equal(mead_trials_next(f.t, &tr), 0);
	struct mead_spike s1[] = {SP(12, 7), SP(13, 7)};
	spikes(&f, 12, s1, 2);
	assert_int_equal(mead_trials_next(f.t, &tr), 0);
	struct mead_spike s2[] = {SP(19, 8)};
	spikes(&f, 19, s2, 1);
	assert_int_equal(mead_trials_next(f.t, &tr), 0);
	/* An empty spikes message at sample 20 closes the window. */
	spikes(&f, 20, NULL, 0);
	assert_int_equal(mead_trials_next(f.t, &tr), 1);
	assert_int_equal(tr.index, 5);
	assert_int_equal(tr.label, 0); /* label before trial_start still counts */
	assert_int_equal(tr.item, -1);
	assert_int_equal(tr.phase, MEAD_PHASE_TEST);
	assert_int_equal(tr.counts[7], 2);
	assert_int_equal(tr.counts[8], 1);
	assert_int_equal(tr.total_spikes, 3);
	mead_trials_free(f.t);
}

/* Interleaved topics over several trials, a seq gap on spikes inside one
 * trial, a gap on events, and out-of-range electrodes. */
static void test_interleaved_with_gaps(void **state)
{
	(void)state;
	struct feeder f = {.t = new_trials(0)};
	struct mead_trial tr;
	struct mead_event ph = EV(0, MEAD_EVENT_PHASE, MEAD_PHASE_TRAIN);
	events(&f, 0, &ph, 1);
	for (int k = 0; k < 4; k++) {
		uint64_t s0 = 100 + 100 * (uint64_t)k;
		struct mead_event st[] = {EV(s0, MEAD_EVENT_TRIAL_START, k), EV(s0, MEAD_EVENT_LABEL, k % 2)};
		struct mead_event en = EV(s0 + 50, MEAD_EVENT_TRIAL_END, k);
		if (k == 2)
			f.seq[MEAD_KIND_SPIKES]++; /* a spikes message of trial 2 is lost */
		struct mead_spike sp[] = {SP(s0 + 1, (uint16_t)k), SP(s0 + 2, 100)};
		if (k % 2) {
			events(&f, s0, st, 2);
			spikes(&f, s0 + 1, sp, 2);
			events(&f, s0 + 50, &en, 1);
		} else {
			spikes(&f, s0 + 1, sp, 2);
			events(&f, s0, st, 2);
			events(&f, s0 + 50, &en, 1);
		}
		spikes(&f, s0 + 60, NULL, 0);
		assert_int_equal(mead_trials_next(f.t, &tr), 1);
		assert_int_equal(tr.index, k);
		assert_int_equal(tr.label, k % 2);
		assert_int_equal(tr.total_spikes, 1);
		assert_int_equal(tr.counts[k], 1);
		assert_int_equal(tr.lossy, k == 2);
	}
	struct mead_trials_stats st;
	mead_trials_get_stats(f.t, &st);
	assert_int_equal(st.seq_gaps[MEAD_KIND_SPIKES], 1);
	assert_int_equal(st.lost[MEAD_KIND_SPIKES], 1);
	assert_int_equal(st.seq_gaps[MEAD_KIND_EVENTS], 0);
	assert_int_equal(st.spikes_out_of_range, 4);

	/* Three events messages lost while no trial is open: the next trial
	 * may miss its label or item, so it is marked. */
	f.seq[MEAD_KIND_EVENTS] += 3;
	struct mead_event st5[] = {EV(600, MEAD_EVENT_TRIAL_START, 5), EV(640, MEAD_EVENT_TRIAL_END, 5)};
	events(&f, 600, st5, 2);
	spikes(&f, 700, NULL, 0);
	assert_int_equal(mead_trials_next(f.t, &tr), 1);
	assert_true(tr.lossy);
	assert_int_equal(tr.label, -1);
	mead_trials_get_stats(f.t, &st);
	assert_int_equal(st.seq_gaps[MEAD_KIND_EVENTS], 1);
	assert_int_equal(st.lost[MEAD_KIND_EVENTS], 3);
	mead_trials_free(f.t);
}

/* With a silent spike stream, trials wait at most max_waiting deep, and
 * run_end finalises the rest. */
static void test_silent_spikes_forced_and_run_end(void **state)
{
	(void)state;
	struct feeder f = {.t = new_trials(2)};
	struct mead_trial tr;
	struct mead_event ph = EV(0, MEAD_EVENT_PHASE, MEAD_PHASE_TEST);
	events(&f, 0, &ph, 1);
	struct mead_spike sp = SP(15, 4);
	spikes(&f, 15, &sp, 1);
	for (int k = 0; k < 5; k++) {
		struct mead_event e[] = {EV(10 + 100 * (uint64_t)k, MEAD_EVENT_TRIAL_START, k),
					 EV(60 + 100 * (uint64_t)k, MEAD_EVENT_TRIAL_END, k)};
		events(&f, 10 + 100 * (uint64_t)k, e, 2);
	}
	/* 5 ended, 2 may wait: trials 0, 1, 2 were forced out. */
	int got = 0;
	while (mead_trials_next(f.t, &tr)) {
		assert_int_equal(tr.index, got);
		assert_int_equal(tr.total_spikes, got == 0 ? 1 : 0);
		got++;
	}
	assert_int_equal(got, 3);
	struct mead_event end = EV(600, MEAD_EVENT_RUN_END, 0);
	events(&f, 600, &end, 1);
	while (mead_trials_next(f.t, &tr))
		assert_int_equal(tr.index, got++);
	assert_int_equal(got, 5);
	struct mead_trials_stats st;
	mead_trials_get_stats(f.t, &st);
	assert_int_equal(st.trials_forced, 3);
	assert_true(st.run_ended);
	mead_trials_free(f.t);
}

/* A trial_start while one is open (its end was lost) drops the open one;
 * a trial_end with no open trial is dropped; flush drops what is open. */
static void test_dropped_trials(void **state)
{
	(void)state;
	struct feeder f = {.t = new_trials(0)};
	struct mead_trial tr;
	struct mead_event e[] = {
		EV(10, MEAD_EVENT_TRIAL_START, 0), EV(110, MEAD_EVENT_TRIAL_START, 1),
		EV(160, MEAD_EVENT_TRIAL_END, 1), EV(170, MEAD_EVENT_TRIAL_END, 1),
		EV(200, MEAD_EVENT_TRIAL_START, 2),
	};
	events(&f, 10, e, 5);
	spikes(&f, 300, NULL, 0);
	assert_int_equal(mead_trials_next(f.t, &tr), 1);
	assert_int_equal(tr.index, 1);
	assert_int_equal(tr.phase, MEAD_TRIAL_PHASE_UNKNOWN);
	mead_trials_flush(f.t);
	assert_int_equal(mead_trials_next(f.t, &tr), 0);
	struct mead_trials_stats st;
	mead_trials_get_stats(f.t, &st);
	assert_int_equal(st.trials_dropped, 3);
	assert_int_equal(st.trials_finished, 1);
	mead_trials_free(f.t);
}

static void test_bad_payload(void **state)
{
	(void)state;
	struct mead_trials *t = new_trials(0);
	uint8_t raw[32];
	struct mead_wire_header h;
	mead_wire_header_encode((struct mead_wire_header *)raw, MEAD_KIND_SPIKES, 0, 0, 3, 16);
	mead_wire_header_decode(raw, 32, &h);
	uint8_t small[20] = {0};
	assert_int_equal(mead_trials_feed(t, &h, small, sizeof(small)), -EBADMSG);
	struct mead_trials_stats st;
	mead_trials_get_stats(t, &st);
	assert_int_equal(st.bad_messages, 1);
	mead_trials_free(t);
}

/* Records may grow at the end (wire v1): a 24-byte spike record is read
 * by its first 16 bytes. */
static void test_longer_records(void **state)
{
	(void)state;
	struct feeder f = {.t = new_trials(0)};
	struct mead_trial tr;
	uint8_t rec[2][24];
	memset(rec, 0xee, sizeof(rec));
	for (int i = 0; i < 2; i++) {
		struct mead_spike s = SP(5 + (uint64_t)i, (uint16_t)(30 + i));
		memcpy(rec[i], &s, sizeof(s));
	}
	struct mead_event e[] = {EV(0, MEAD_EVENT_TRIAL_START, 0), EV(10, MEAD_EVENT_TRIAL_END, 0)};
	events(&f, 0, e, 2);
	send_msg(&f, MEAD_KIND_SPIKES, 5, rec, 2, 24);
	spikes(&f, 10, NULL, 0);
	assert_int_equal(mead_trials_next(f.t, &tr), 1);
	assert_int_equal(tr.counts[30], 1);
	assert_int_equal(tr.counts[31], 1);
	mead_trials_free(f.t);
}

/* ---- The culture's decision rule ------------------------------------- */

static void test_rule_layouts(void **state)
{
	(void)state;
	struct mead_rule_layout l;
	char err[128];
	assert_int_equal(mead_rule_layout_build(6, 10, 9, 2, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n_classes, 2);
	assert_int_equal(l.n_cells[0], 3);
	assert_int_equal(l.n_cells[1], 3);
	/* rows 0..2 of column 9 for class 0, rows 3..5 for class 1 */
	static const uint16_t c0[] = {9, 19, 29}, c1[] = {39, 49, 59};
	assert_memory_equal(l.cells[0], c0, sizeof(c0));
	assert_memory_equal(l.cells[1], c1, sizeof(c1));
	assert_true(mead_rule_is_label_cell(&l, 49));
	assert_false(mead_rule_is_label_cell(&l, 48));

	assert_int_equal(mead_rule_layout_build(6, 10, 9, 3, &l, err, sizeof(err)), 0);
	static const uint16_t t2[] = {49, 59};
	assert_int_equal(l.n_cells[2], 2);
	assert_memory_equal(l.cells[2], t2, sizeof(t2));

	/* 4 classes on 6 rows: 3 cells each over columns 8 and 9. */
	assert_int_equal(mead_rule_layout_build(6, 10, 9, 4, &l, err, sizeof(err)), 0);
	for (int c = 0; c < 4; c++)
		assert_int_equal(l.n_cells[c], 3);
	static const uint16_t f0[] = {8, 18, 9}, f3[] = {58, 49, 59};
	assert_memory_equal(l.cells[0], f0, sizeof(f0));
	assert_memory_equal(l.cells[3], f3, sizeof(f3));

	/* No-label mode. */
	assert_int_equal(mead_rule_layout_build(6, 10, 9, 10, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n_classes, 0);
	uint32_t counts[60] = {0};
	assert_int_equal(mead_rule_predict(&l, counts, NULL, 0, NULL, NULL), -EINVAL);

	assert_true(mead_rule_layout_build(6, 10, 10, 2, &l, err, sizeof(err)) < 0);
	assert_true(mead_rule_layout_build(5, 10, 0, 4, &l, err, sizeof(err)) < 0);
}

/* Per-neuron rates decide, not raw counts: class 0's cells hold more
 * spikes but many more neurons. */
static void test_rule_prediction(void **state)
{
	(void)state;
	struct mead_rule_layout l;
	assert_int_equal(mead_rule_layout_build(6, 10, 9, 2, &l, NULL, 0), 0);
	uint32_t counts[60] = {0}, neurons[60];
	for (int e = 0; e < 60; e++)
		neurons[e] = 4;
	counts[9] = 10;
	counts[19] = 10; /* class 0: 20 spikes over 4+4+12 neurons = 1.0 */
	neurons[29] = 12;
	counts[39] = 15; /* class 1: 15 spikes over 12 neurons = 1.25 */
	counts[0] = 500; /* input electrodes do not vote */
	double sc[2];
	bool tie = true;
	assert_int_equal(mead_rule_predict(&l, counts, neurons, 60, sc, &tie), 1);
	assert_false(tie);
	assert_true(sc[0] > 0.99 && sc[0] < 1.01);
	assert_true(sc[1] > 1.24 && sc[1] < 1.26);
	/* Without neuron counts every cell holds one: raw sums decide. */
	assert_int_equal(mead_rule_predict(&l, counts, NULL, 0, sc, &tie), 0);
	/* Silence: a tie, resolved to the lowest class. */
	uint32_t zero[60] = {0};
	assert_int_equal(mead_rule_predict(&l, zero, neurons, 60, sc, &tie), 0);
	assert_true(tie);
	/* Cells holding no neuron: the raw count, not a division by zero. */
	neurons[39] = neurons[49] = neurons[59] = 0;
	assert_int_equal(mead_rule_predict(&l, counts, neurons, 60, sc, &tie), 1);
	assert_true(sc[1] > 14.9 && sc[1] < 15.1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spikes_before_events),
		cmocka_unit_test(test_events_before_spikes_waits),
		cmocka_unit_test(test_interleaved_with_gaps),
		cmocka_unit_test(test_silent_spikes_forced_and_run_end),
		cmocka_unit_test(test_dropped_trials),
		cmocka_unit_test(test_bad_payload),
		cmocka_unit_test(test_longer_records),
		cmocka_unit_test(test_rule_layouts),
		cmocka_unit_test(test_rule_prediction),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
