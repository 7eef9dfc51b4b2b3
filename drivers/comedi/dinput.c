/* SPDX-License-Identifier: MIT */
/*
 * The digital inputs: lines of a DI (or DIO) subdevice read once a tick
 * with one INSN_BITS instruction, every change a DIGITAL event at the
 * sample the device was at when the lines were read, and every line's
 * level at the run's start, so a camera's frame clock, a pump or a
 * behaviour rig lines up with the spikes.  The board samples nothing on
 * its own clock here: a change is seen by the first read after it, up to
 * a tick late.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "drivers/comedi/state.h"
#include "lib/core/time.h"

static const char *subd_type_name(int type)
{
	switch (type) {
	case COMEDI_SUBD_UNUSED: return "unused";
	case COMEDI_SUBD_AI: return "analog input";
	case COMEDI_SUBD_AO: return "analog output";
	case COMEDI_SUBD_DI: return "digital input";
	case COMEDI_SUBD_DO: return "digital output";
	case COMEDI_SUBD_DIO: return "digital I/O";
	case COMEDI_SUBD_COUNTER: return "counter";
	case COMEDI_SUBD_TIMER: return "timer";
	default: return "other";
	}
}

/* What a line of the routing DIO does for the stimulator; NULL: nothing. */
static const char *routing_role(const struct comedi_state *st, int line)
{
	for (uint32_t i = 0; i < st->n_route; i++)
		if (st->route_line[i] == line)
			return "routing line (route_lines)";
	if (st->enable_line == line)
		return "enable line (route_enable_line)";
	if (st->blank_line == line)
		return "blanking line (blank_line)";
	return NULL;
}

static int pick_subdevice(struct comedi_state *st, const struct mead_driver_config *cfg, char *err, size_t err_len)
{
	long want = mead_driver_param_int(cfg, "di_subdevice", -1);
	int n_sub = comedi_get_n_subdevices(st->dev);
	if (want < 0) {
		int sub = comedi_find_subdevice_by_type(st->dev, COMEDI_SUBD_DI, 0);
		if (sub < 0)
			sub = comedi_find_subdevice_by_type(st->dev, COMEDI_SUBD_DIO, 0);
		if (sub < 0) {
			snprintf(err, err_len, "comedi: di_lines is set but the board has no digital input or digital I/O "
				 "subdevice (set di_lines to empty)");
			return -ENODEV;
		}
		return sub;
	}
	if (want >= n_sub) {
		snprintf(err, err_len, "comedi: di_subdevice %ld does not exist (the board has %d subdevices)", want, n_sub);
		return -ENODEV;
	}
	int type = comedi_get_subdevice_type(st->dev, (unsigned)want);
	if (type != COMEDI_SUBD_DI && type != COMEDI_SUBD_DIO) {
		snprintf(err, err_len, "comedi: di_subdevice %ld is not a digital input or digital I/O subdevice (it is: %s)",
			 want, subd_type_name(type));
		return -ENODEV;
	}
	return (int)want;
}

int di_setup(struct comedi_state *st, const struct mead_driver_config *cfg, char *err, size_t err_len)
{
	const char *text = mead_driver_param_string(cfg, "di_lines", "");
	int line[32];
	int n = comedi_parse_lines(text, line, 32);
	st->di_mask = 0;
	if (n < 0) {
		snprintf(err, err_len, "comedi: di_lines '%s' is not a comma-separated list of lines 0..31", text);
		return -EINVAL;
	}
	if (n == 0)
		return 0;
	int sub = pick_subdevice(st, cfg, err, err_len);
	if (sub < 0)
		return sub;
	int type = comedi_get_subdevice_type(st->dev, (unsigned)sub);
	int n_lines = comedi_get_n_channels(st->dev, (unsigned)sub);
	/* the routing lines are driven by this driver: reading them back
	 * would record the stimulator, and configuring them as inputs would
	 * stop it routing */
	bool shared = st->stim && st->route != ROUTE_NONE && sub == st->dio_sub;
	if (shared && st->route == ROUTE_STREAM) {
		snprintf(err, err_len, "comedi: di_subdevice %d is the DIO whose lines run as the routing stream: the board "
			 "takes no instructions on it while that command runs (read the inputs from another subdevice, or "
			 "set route_stream: off)", sub);
		return -EINVAL;
	}
	uint32_t mask = 0;
	for (int i = 0; i < n; i++) {
		int l = line[i];
		if (l >= n_lines) {
			snprintf(err, err_len, "comedi: di_lines: line %d is beyond the %d lines of %s subdevice %d", l, n_lines,
				 subd_type_name(type), sub);
			return -EINVAL;
		}
		if ((mask >> l) & 1u) {
			snprintf(err, err_len, "comedi: di_lines names line %d twice", l);
			return -EINVAL;
		}
		const char *role = shared ? routing_role(st, l) : NULL;
		if (role) {
			snprintf(err, err_len, "comedi: digital input line %d of subdevice %d is also the stimulator's %s",
				 l, sub, role);
			return -EINVAL;
		}
		mask |= 1u << l;
	}
	if (type == COMEDI_SUBD_DIO) {
		for (int l = 0; l < 32; l++) {
			if (!((mask >> l) & 1u))
				continue;
			if (comedi_dio_config(st->dev, (unsigned)sub, (unsigned)l, COMEDI_INPUT) < 0) {
				int e = comedi_errno_();
				snprintf(err, err_len, "comedi: cannot make line %d of DIO subdevice %d an input: %s", l, sub,
					 strerror(e));
				return -e;
			}
		}
	}
	unsigned bits = 0;
	if (comedi_dio_bitfield2(st->dev, (unsigned)sub, 0, &bits, 0) < 0) {
		int e = comedi_errno_();
		snprintf(err, err_len, "comedi: cannot read the lines of %s subdevice %d: %s", subd_type_name(type), sub,
			 strerror(e));
		return -e;
	}
	st->di_sub = sub;
	st->di_mask = mask;
	return 0;
}

/* The sample the device was at in the middle of the read: with a virtual
 * clock, where the frame's read found it. */
static uint64_t read_sample(const struct comedi_state *st, uint64_t t0, uint64_t t1)
{
	if (st->virtual_clock)
		return st->acquired;
	uint64_t s = acq_sample_at(st, t0 + (t1 - t0) / 2, st->acquired);
	return s > st->acquired ? s : st->acquired;
}

static int read_lines(struct comedi_state *st, uint32_t *ret_bits, uint64_t *ret_sample)
{
	unsigned bits = 0;
	uint64_t t0 = mead_now_ns();
	int r = comedi_dio_bitfield2(st->dev, (unsigned)st->di_sub, 0, &bits, 0);
	uint64_t t1 = mead_now_ns();
	if (r < 0) {
		atomic_fetch_add(&st->di_errors, 1);
		return -1;
	}
	*ret_bits = bits & st->di_mask;
	*ret_sample = read_sample(st, t0, t1);
	return 0;
}

/* Right after the AI command started: the levels at the run's first
 * sample (the clock starts within the command's call, just before). */
void di_start(struct comedi_state *st)
{
	st->di_known = false;
	st->di_start_owed = false;
	if (!st->di_mask)
		return;
	if (read_lines(st, &st->di_levels, &st->di_start_sample) == 0)
		st->di_known = st->di_start_owed = true;
}

void di_tick(struct comedi_state *st, struct mead_frame *f)
{
	if (!st->di_mask)
		return;
	if (st->di_start_owed) {
		for (uint32_t m = st->di_mask; m; m &= m - 1) {
			unsigned l = (unsigned)__builtin_ctz(m);
			mead_frame_event(f, MEAD_EVENT_DIGITAL, st->di_start_sample, 0, (uint16_t)l,
					 (int32_t)((st->di_levels >> l) & 1u));
		}
		st->di_start_owed = false;
	}
	/* the catch-up for late samples after the last tick: the run is over */
	if (f->n_samples == 0)
		return;
	uint32_t now;
	uint64_t at;
	if (read_lines(st, &now, &at) < 0)
		return;
	/* a start whose read failed: the first read says every level */
	uint32_t changed = st->di_known ? now ^ st->di_levels : st->di_mask;
	if (st->di_known)
		atomic_fetch_add(&st->di_changes, (uint64_t)__builtin_popcount(changed));
	st->di_known = true;
	st->di_levels = now;
	for (uint32_t m = changed; m; m &= m - 1) {
		unsigned l = (unsigned)__builtin_ctz(m);
		mead_frame_event(f, MEAD_EVENT_DIGITAL, at, 0, (uint16_t)l, (int32_t)((now >> l) & 1u));
	}
}
