/* SPDX-License-Identifier: MIT */
/*
 * mead-bench closed-loop, shared between the bench proper (the daemon run
 * and the analysis, bench_closed_loop.c) and its device sources: the
 * emulated devices of the driver tests (bench_closed_loop_emul.c) and a
 * device that writes its own truth and log (the reference USB device).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the device knows, in samples of the run (sample 0: the device's
 * first sample after the daemon's driver start). */
struct cl_spike {
	uint64_t sample;             /* planted trough */
	uint16_t electrode;
};

struct cl_pulse {
	uint64_t requested;          /* the sample the host asked for (has_requested) */
	uint64_t started;            /* the sample it started on (played) */
	uint64_t arrival;            /* device clock when the command arrived (has_arrival) */
	uint64_t wall_ns;            /* wall clock of the arrival (USB) or of the start (Comedi); 0: unknown */
	uint32_t cmd_seq;            /* the device's numbering of the command and pulse, where it has one */
	uint16_t cmd_index;
	uint16_t electrode;
	bool played, has_requested, has_arrival;
};

struct cl_truth {
	struct cl_spike *spikes;
	uint32_t n_spikes, cap_spikes;
	struct cl_pulse *pulses;
	uint32_t n_pulses, cap_pulses;
	uint64_t wall0_ns;           /* wall clock at which the device acquired run sample 0; 0: unknown */
};

void cl_truth_spike(struct cl_truth *t, uint64_t sample, uint16_t electrode);
struct cl_pulse *cl_truth_pulse(struct cl_truth *t);
void cl_truth_clear(struct cl_truth *t);

struct cl_opts {
	const char *driver;          /* comedi, usb, both; null: no device */
	double seconds;
	uint32_t period_us;
	uint32_t rate;
	double spike_hz;
	uint32_t channels;
	uint16_t target;             /* electrode the respond protocol stimulates */
	uint32_t priority;           /* the daemon's loop */
	const char *gadget_log, *gadget_truth;
	const char *keep;            /* folder to keep the run's files in; NULL: a temporary one */
	const char *extra[16];       /* -o KEY=VALUE for the daemon */
	int n_extra;
};

/* The daemon on driver_yaml (the `driver:` block, indented) for the run
 * the options say, in folder dir: writes dir/mead.yaml, runs the daemon to
 * its end (its output in dir/mead.log).  0, or -1 with the reason printed. */
int cl_run_daemon(const struct cl_opts *o, const char *dir, const char *driver_yaml);

/* Compares the daemon's recording in dir with the device's truth (NULL: no
 * device; the record's own spikes and asked-for pulses) and prints the
 * figures under `name`.  Returns 0 when the record agrees with the
 * device (every pulse played is recorded at its sample, nothing else is),
 * 1 when it does not, -1 when there was nothing to measure. */
int cl_report(const struct cl_opts *o, const char *name, const char *dir, const struct cl_truth *t,
	      uint32_t *ret_ticks_p99);

#ifdef MEAD_BENCH_CLOSED_LOOP
/* The emulated Comedi board or USB front-end (under umockdev-wrapper). */
int cl_emulated(const struct cl_opts *o, const char *driver, const char *dir, uint32_t *ret_ticks_p99);
#endif
