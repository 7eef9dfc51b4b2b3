/* SPDX-License-Identifier: MIT */
/*
 * mead-driver-comedi: an MEA amplifier wired to a DAQ board driven through
 * Comedi.  Acquisition is a streaming command on the analog-input subdevice
 * read without blocking (acquire.c).  The stimulator is the board's own
 * clocked stream: one analog-output command runs from start() to stop(),
 * idle at the code of 0 V, and pulses are written into it ahead of time at
 * their sample positions (stim.c); electrodes are routed by digital lines,
 * set between pulses or, on boards whose DIO runs output commands, clocked
 * with the analog output.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drivers/comedi/state.h"
#include "lib/core/time.h"

static const struct mead_param_spec comedi_params[] = {
	{ "device", MEAD_PARAM_STRING, "/dev/comedi0", 1, 0, "Comedi device node" },
	{ "sample_rate_hz", MEAD_PARAM_INT, "25000", 1000, 100000, "scan rate of the analog inputs" },
	{ "ai_subdevice", MEAD_PARAM_INT, "-1", -1, 255, "analog-input subdevice; -1: the first that streams" },
	{ "ai_range_v", MEAD_PARAM_DOUBLE, "1.0", 0.0001, 100, "narrowest bipolar input range covering +-this many volts is used" },
	{ "aref", MEAD_PARAM_STRING, "ground", 1, 0, "analog reference: ground, common, diff or other" },
	{ "amp_gain", MEAD_PARAM_DOUBLE, "1100", 1, 100000, "amplifier gain from electrode to board input" },
	{ "channel_map", MEAD_PARAM_STRING, "", 1, 0,
	  "comma-separated: electrode label (or #index) recorded by hardware channel 0, 1, ...; '-' skips a channel; empty: channel i is electrode i" },
	{ "calibration_file", MEAD_PARAM_STRING, "", 1, 0, "comedi_soft_calibrate file; empty: the board's default if present, else hardware calibration" },
	{ "overflow", MEAD_PARAM_STRING, "continue", 1, 0, "on a buffer overflow: continue (re-arm, the lost samples reported) or stop (read_frame fails)" },
	{ "buffer_kib", MEAD_PARAM_INT, "0", 0, 1048576, "kernel acquisition buffer size; 0 keeps the board's" },
	{ "wake_eos", MEAD_PARAM_BOOL, "false", 1, 0, "ask the board to hand over every scan (CMDF_WAKE_EOS), for boards without a poll handler that deliver in FIFO-sized blocks" },
	{ "stimulate", MEAD_PARAM_BOOL, "true", 1, 0, "drive the stimulator through the analog output" },
	{ "ao_subdevice", MEAD_PARAM_INT, "-1", -1, 255, "analog-output subdevice; -1: the first that streams" },
	{ "ao_channel", MEAD_PARAM_INT, "0", 0, 255, "analog output wired to the stimulator input" },
	{ "ao_electrodes", MEAD_PARAM_STRING, "", 1, 0,
	  "one stimulator per analog output: comma-separated electrode:channel pairs (label or #index); empty: one stimulator on ao_channel, routed" },
	{ "ao_rate_hz", MEAD_PARAM_INT, "100000", 1000, 10000000, "update rate of the stimulator stream" },
	{ "ao_lead_us", MEAD_PARAM_INT, "0", 0, 1000000, "stream kept written ahead of the device; 0: one and a half tick periods" },
	{ "ao_ua_per_volt", MEAD_PARAM_DOUBLE, "100", 0.001, 1e6, "stimulator transconductance" },
	{ "max_phase_us", MEAD_PARAM_INT, "1000", 10, 100000, "longest phase accepted" },
	{ "max_pulses_per_tick", MEAD_PARAM_INT, "8", 1, 64, "pulses one tick may ask for" },
	{ "stim_guard_us", MEAD_PARAM_INT, "100", 0, 100000, "settle time after a pulse before the stimulator takes the next one" },
	{ "dio_subdevice", MEAD_PARAM_INT, "-1", -1, 255, "digital I/O subdevice for routing; -1: the first DIO" },
	{ "route_lines", MEAD_PARAM_STRING, "0,1,2,3,4,5", 1, 0, "DIO lines carrying the electrode code, least significant bit first; empty: no routing" },
	{ "route_enable_line", MEAD_PARAM_INT, "6", -1, 31, "DIO line that connects the stimulator while a pulse plays; -1: none" },
	{ "blank_line", MEAD_PARAM_INT, "7", -1, 31, "DIO line held high while a pulse plays (amplifier blanking); -1: none" },
	{ "route_stream", MEAD_PARAM_STRING, "auto", 1, 0,
	  "drive the lines as an output command clocked by the analog output (correlated DO): auto (when the DIO runs output commands), on, off" },
	{ "route_clock", MEAD_PARAM_INT, "31", 0, 1023, "scan_begin_arg of the DIO command: the AO update clock (NI M-series: 31)" },
	{ "di_subdevice", MEAD_PARAM_INT, "-1", -1, 255, "subdevice of the digital inputs; -1: the first digital input (DI), else the first DIO" },
	{ "di_lines", MEAD_PARAM_STRING, "", 1, 0,
	  "digital input lines (0..31, comma-separated) read every tick, each change a digital event; empty: none" },
	MEAD_SIG_PARAM_SPECS,
	{ NULL, 0, NULL, 0, 0, NULL },
};

int fail_(char *err, size_t len, int e, const char *msg)
{
	snprintf(err, len, "%s", msg);
	return e;
}

int comedi_parse_lines(const char *text, int *out, uint32_t max)
{
	uint32_t n = 0;
	for (const char *p = text; *p;) {
		char *end;
		long l = strtol(p, &end, 10);
		if (end == p || l < 0 || l >= 32 || (*end && *end != ','))
			return -EINVAL;
		if (n >= max)
			return -E2BIG;
		out[n++] = (int)l;
		p = *end == ',' ? end + 1 : end;
	}
	return (int)n;
}

int comedi_errno_(void)
{
	int e = comedi_errno();
	/* comedilib keeps libc errno values below its own codes */
	return e > 0 && e < 1000 ? e : EIO;
}

static void comedi_close_(void *state);

static int comedi_open_(const struct mead_driver_config *cfg, void **ret_state, char *err, size_t err_len)
{
	if (cfg->abi_version != MEAD_DRIVER_ABI_VERSION)
		return fail_(err, err_len, -EPROTO, "comedi: daemon ABI mismatch");
	comedi_loglevel(0);
	struct comedi_state *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->fd = -1;
	st->fd_do = -1;
	st->ai_sub = st->ao_sub = st->dio_sub = st->di_sub = -1;
	int r;
	const char *path = mead_driver_param_string(cfg, "device", "/dev/comedi0");
	st->dev = comedi_open(path);
	if (!st->dev) {
		int e = comedi_errno_();
		snprintf(err, err_len, "comedi: cannot open %s: %s", path, strerror(e));
		r = -e;
		goto fail;
	}
	st->fd = comedi_fileno(st->dev);
	st->rate = (uint32_t)mead_driver_param_int(cfg, "sample_rate_hz", 25000);
	st->period_ns = cfg->period_ns ? cfg->period_ns : cfg->period_us * 1000u;
	st->virtual_clock = cfg->virtual_clock;
	st->amp_gain = mead_driver_param_double(cfg, "amp_gain", 1100);
	st->wake_eos = mead_driver_param_bool(cfg, "wake_eos", false);
	const char *ov = mead_driver_param_string(cfg, "overflow", "continue");
	if (strcmp(ov, "stop") == 0) {
		st->overflow_stop = true;
	} else if (strcmp(ov, "continue") != 0) {
		snprintf(err, err_len, "comedi: overflow: '%s' is not one of continue, stop", ov);
		r = -EINVAL;
		goto fail;
	}
	if ((r = acq_setup(st, cfg, err, err_len)) < 0)
		goto fail;

	st->stim = mead_driver_param_bool(cfg, "stimulate", true);
	if (st->stim && (r = stim_setup(st, cfg, err, err_len)) < 0)
		goto fail;
	if ((r = di_setup(st, cfg, err, err_len)) < 0)
		goto fail;

	struct mead_sig_config sc;
	mead_sig_config_defaults(&sc, st->nchan, st->rate);
	if ((r = mead_sig_config_from_params(&sc, cfg, &st->blank_all, err, err_len)) < 0)
		goto fail;
	sc.electrode_of_channel = st->electrode_of_chan;
	st->sig = mead_sig_new(&sc);
	if (!st->sig) {
		r = -errno;
		snprintf(err, err_len, "comedi: spike detector: %s", strerror(errno));
		goto fail;
	}
	/* a sample at the converter's ends is pegged (SALPA does not fit it) */
	for (uint32_t i = 0; i < st->nchan; i++) {
		float lo = (0.0f - st->cal_offset[i]) * st->cal_scale[i];
		float hi = ((float)st->ai_maxdata - st->cal_offset[i]) * st->cal_scale[i];
		mead_sig_set_rail(st->sig, i, lo < hi ? lo : hi, lo < hi ? hi : lo);
	}
	if ((r = mead_sig_set_thresholds(st->sig, mead_driver_param_string(cfg, "thresholds", ""), err, err_len)) < 0)
		goto fail;
	if (st->stim)
		stim_outputs_off(st);
	*ret_state = st;
	return 0;
fail:
	comedi_close_(st);
	return r;
}

static void comedi_close_(void *state)
{
	struct comedi_state *st = state;
	if (!st)
		return;
	if (st->dev) {
		if (st->ai_sub >= 0)
			comedi_cancel(st->dev, (unsigned)st->ai_sub);
		if (st->stim)
			stim_outputs_off(st);
	}
	stim_free_all(st);
	if (st->dev)
		comedi_close(st->dev);
	mead_sig_free(st->sig);
	free(st->ai_chanlist);
	free(st->electrode_of_chan);
	free(st->cal_offset);
	free(st->cal_scale);
	free(st->stage);
	free(st->uv);
	free(st);
}

static int comedi_get_caps_(void *state, struct mead_driver_caps *c)
{
	struct comedi_state *st = state;
	uint32_t pre, post;
	mead_sig_waveform_window(st->sig, &pre, &post);
	const bool wf = mead_sig_waveforms(st->sig);
	*c = (struct mead_driver_caps){
		.waveform_pre = pre,
		.waveform_post = post,
		.electrode_count = st->electrodes,
		.sample_rate_hz = st->rate,
		.raw_channels = st->electrodes,
		.uv_per_count = st->raw_uv_per_count,
		.flags = MEAD_CAP_RAW | MEAD_CAP_DEVICE_CLOCK | MEAD_CAP_THRESHOLDS | (pre || post || wf ? MEAD_CAP_WAVEFORMS : 0u) | (st->stim ? MEAD_CAP_STIMULATE : 0u),
		.max_amplitude_ua = st->stim ? st->max_ua : 0,
		.max_phase_us = st->stim ? st->max_phase_us : 0,
		.max_pulses_per_tick = st->stim ? st->max_per_tick : 0,
		.stimulators = st->stim ? st->n_ao : 0,
		.stimulator_of_electrode = st->stim && st->n_ao > 1 ? st->stim_of_electrode : NULL,
		.stim_guard_us = st->stim ? st->guard_us : 0,
		.stim_switch_us = st->stim ? st->switch_us : 0,
	};
	return 0;
}

static int comedi_start_(void *state, char *err, size_t err_len)
{
	struct comedi_state *st = state;
	int fl = fcntl(st->fd, F_GETFL);
	if (fl < 0 || fcntl(st->fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return fail_(err, err_len, -errno, "comedi: cannot make the device non-blocking");
	comedi_cancel(st->dev, (unsigned)st->ai_sub);
	mead_sig_reset(st->sig);
	st->acq = 0;
	st->acquired = 0;
	st->stage_bytes = 0;
	st->failed = false;
	st->gone = false;
	st->have_obs = false;
	int r;
	if (st->stim && (r = stim_start_prepare(st, err, err_len)) < 0)
		return r;
	uint64_t t0 = mead_now_ns();
	if ((r = acq_arm(st)) < 0) {
		snprintf(err, err_len, "comedi: cannot start acquisition: %s", comedi_strerror(comedi_errno()));
		if (st->stim)
			stim_outputs_off(st);
		return r;
	}
	/* the command starts the clock somewhere inside the call: its middle */
	uint64_t t1 = mead_now_ns();
	st->obs_sample = 0;
	st->obs_ns = t0 + (t1 - t0) / 2;
	st->obs_half_ns = (t1 - t0) / 2;
	st->have_obs = true;
	di_start(st);
	if (st->stim && (r = stim_start_fire(st, err, err_len)) < 0) {
		comedi_cancel(st->dev, (unsigned)st->ai_sub);
		st->running = false;
		return r;
	}
	return 0;
}

static int comedi_stop_(void *state)
{
	struct comedi_state *st = state;
	comedi_cancel(st->dev, (unsigned)st->ai_sub);
	st->running = false;
	return comedi_stop_outputs_(st);
}

static const char *route_name(enum route_mode m)
{
	return m == ROUTE_STREAM ? "stream" : m == ROUTE_LINES ? "lines" : "none";
}

static int comedi_describe_(void *state, char *buf, size_t len)
{
	struct comedi_state *st = state;
	int n = snprintf(buf, len,
			 "{\"driver\":\"comedi\",\"board\":\"%s\",\"channels\":%u,\"sample_rate_hz\":%u,"
			 "\"sample_bits\":%u,\"poll\":%s,"
			 "\"overflows\":%llu,\"rearms\":%llu,\"lost_samples\":%llu,\"late_ticks\":%llu,"
			 "\"pulses\":%llu,\"pulses_late\":%llu,\"pulses_cancelled\":%llu,\"stim_errors\":%llu,"
			 "\"ao_underruns\":%llu,\"ao_rearms\":%llu,\"misrouted\":%llu,"
			 "\"stimulate\":%s,\"stimulators\":%u,\"route\":\"%s\",\"ao_rate_hz\":%u,"
			 "\"ao_lead_us\":%.0f,\"ao_skew_us\":%.1f,\"di_subdevice\":%d,\"di_lines\":%u,"
			 "\"di_changes\":%llu,\"di_errors\":%llu}",
			 comedi_get_board_name(st->dev), st->nchan, st->rate, st->ai_bps == 4 ? 32u : 16u,
			 st->poll_ok ? "true" : "false",
			 (unsigned long long)atomic_load(&st->overflows), (unsigned long long)atomic_load(&st->rearms),
			 (unsigned long long)atomic_load(&st->lost_samples), (unsigned long long)atomic_load(&st->late_ticks),
			 (unsigned long long)atomic_load(&st->pulses), (unsigned long long)atomic_load(&st->pulses_late),
			 (unsigned long long)atomic_load(&st->pulses_cancelled), (unsigned long long)atomic_load(&st->stim_errors),
			 (unsigned long long)atomic_load(&st->ao_underruns), (unsigned long long)atomic_load(&st->ao_rearms),
			 (unsigned long long)atomic_load(&st->misrouted),
			 st->stim ? "true" : "false", st->stim ? st->n_ao : 0u, route_name(st->route), st->stim ? st->ao_rate : 0u,
			 st->stim ? st->lead_samples * 1e6 / st->rate : 0.0, st->ao_skew_ns / 1000.0,
			 st->di_mask ? st->di_sub : -1, (unsigned)__builtin_popcount(st->di_mask),
			 (unsigned long long)atomic_load(&st->di_changes), (unsigned long long)atomic_load(&st->di_errors));
	if (n < 0)
		return -EIO;
	if ((size_t)n >= len)
		return -ENOSPC;
	return mead_sig_describe(st->sig, buf, len, n);
}

static int comedi_control_(void *state, enum mead_driver_control op, int64_t value)
{
	struct comedi_state *st = state;
	return mead_sig_control(st->sig, op, value);
}

static const struct mead_driver_ops comedi_ops = {
	.abi_version = MEAD_DRIVER_ABI_VERSION,
	.ops_size = sizeof(struct mead_driver_ops),
	.name = "comedi",
	.description = "MEA amplifier on a Comedi DAQ board: streaming AI, a continuous AO stimulator stream, DIO routing, digital inputs",
	.params = comedi_params,
	.open = comedi_open_,
	.close = comedi_close_,
	.get_caps = comedi_get_caps_,
	.start = comedi_start_,
	.write_stim = comedi_write_stim_,
	.read_frame = comedi_read_frame_,
	.control = comedi_control_,
	.stop_outputs = comedi_stop_outputs_,
	.stop = comedi_stop_,
	.describe = comedi_describe_,
};

MEAD_DRIVER_EXPORT(comedi_ops)
