/* SPDX-License-Identifier: MIT */
/*
 * mead-driver-comedi: an MEA amplifier wired to a DAQ board driven through
 * Comedi.  Acquisition is a streaming command on the analog-input subdevice
 * read without blocking; stimulation is a buffered analog-output command per
 * pulse, routed to an electrode by digital lines (binary electrode code plus
 * an enable line) with an optional blanking line for the amplifier.
 */
#include <comedilib.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mead/driver.h"
#include "lib/signal/signal.h"

#define MAX_ROUTE_LINES 16
#define CATCHUP_TICKS 64u  /* ticks of samples one read_frame may take in when catching up */

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
	{ "overflow", MEAD_PARAM_STRING, "continue", 1, 0, "on a buffer overflow: continue (re-arm, counted) or stop (read_frame fails)" },
	{ "buffer_kib", MEAD_PARAM_INT, "0", 0, 1048576, "kernel acquisition buffer size; 0 keeps the board's" },
	{ "stimulate", MEAD_PARAM_BOOL, "true", 1, 0, "drive the stimulator through AO and DIO" },
	{ "ao_subdevice", MEAD_PARAM_INT, "-1", -1, 255, "analog-output subdevice; -1: the first that streams" },
	{ "ao_channel", MEAD_PARAM_INT, "0", 0, 255, "analog output wired to the stimulator input" },
	{ "ao_rate_hz", MEAD_PARAM_INT, "100000", 1000, 10000000, "update rate of the pulse waveform" },
	{ "ao_ua_per_volt", MEAD_PARAM_DOUBLE, "100", 0.001, 1e6, "stimulator transconductance" },
	{ "max_phase_us", MEAD_PARAM_INT, "1000", 10, 100000, "longest phase accepted" },
	{ "dio_subdevice", MEAD_PARAM_INT, "-1", -1, 255, "digital I/O subdevice for routing; -1: the first DIO" },
	{ "route_lines", MEAD_PARAM_STRING, "0,1,2,3,4,5", 1, 0, "DIO lines carrying the electrode code, least significant bit first" },
	{ "route_enable_line", MEAD_PARAM_INT, "6", -1, 255, "DIO line that connects the stimulator while a pulse plays; -1: none" },
	{ "blank_line", MEAD_PARAM_INT, "7", -1, 255, "DIO line held high over the blanking window; -1: none" },
	MEAD_SIG_PARAM_SPECS,
	{ NULL, 0, NULL, 0, 0, NULL },
};

struct comedi_state {
	comedi_t *dev;
	int fd;
	uint32_t rate, period_ns;
	int ai_sub, ao_sub, dio_sub;
	unsigned ai_range, ao_range, aref;
	uint32_t nchan;                    /* channels in the scan */
	unsigned *ai_chanlist;
	uint16_t *electrode_of_chan;
	uint32_t electrodes;               /* layout count */
	float *cal_offset, *cal_scale;     /* per scan channel */
	float uv_per_count;                /* for caps and raw */
	double amp_gain;
	comedi_cmd ai_cmd;
	bool overflow_stop;
	unsigned buffer_bytes;

	/* acquisition staging */
	uint32_t stage_scans;
	uint16_t *stage;
	size_t stage_bytes;                /* partial scan bytes carried over */
	float *uv;
	uint64_t acq;                      /* scans processed since start */
	bool running, failed;

	/* stimulation */
	bool stim;
	unsigned ao_channel;
	uint32_t ao_rate;
	double ua_per_volt;
	uint32_t max_phase_us;
	float max_ua;
	lsampl_t ao_zero;
	comedi_polynomial_t ao_poly;
	bool ao_poly_ok;
	lsampl_t ao_maxdata;
	double ao_min_v, ao_max_v;
	comedi_cmd ao_cmd;
	unsigned ao_chanlist[1];
	sampl_t *wave;
	uint32_t wave_cap;
	int route_line[MAX_ROUTE_LINES];
	uint32_t n_route;
	int enable_line, blank_line;
	unsigned dio_mask;
	uint64_t lines_until;              /* sample at which enable/blank lines drop */
	bool lines_high;

	struct mead_sig *sig;
	bool blank_all;

	/* counters, read by describe() from another thread */
	_Atomic uint64_t overflows, late_ticks, pulses, stim_errors, rearms;
};

static int fail(char *err, size_t len, int e, const char *msg)
{
	snprintf(err, len, "%s", msg);
	return e;
}

static int errno_from_comedi(void)
{
	int e = comedi_errno();
	/* comedilib keeps libc errno values below its own codes */
	return e > 0 && e < 1000 ? e : EIO;
}

static void comedi_close_(void *state);

static int find_streaming(comedi_t *dev, int type, unsigned need_flag, long want)
{
	if (want >= 0) {
		if (comedi_get_subdevice_type(dev, (unsigned)want) != type)
			return -1;
		return (int)want;
	}
	for (unsigned s = 0; ; s++) {
		int i = comedi_find_subdevice_by_type(dev, type, s);
		if (i < 0)
			return -1;
		int fl = comedi_get_subdevice_flags(dev, (unsigned)i);
		if (fl >= 0 && (fl & need_flag))
			return i;
		s = (unsigned)i;
	}
}

/* Resolves one channel_map entry against the layout. */
static int map_entry(const struct mead_layout_view *lay, const char *tok, size_t len)
{
	char buf[16];
	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, tok, len);
	buf[len] = '\0';
	if (buf[0] == '#') {
		char *end;
		long i = strtol(buf + 1, &end, 10);
		return (*end || i < 0 || (uint32_t)i >= lay->count) ? -1 : (int)i;
	}
	for (uint32_t i = 0; i < lay->count; i++)
		if (strncmp(lay->electrodes[i].label, buf, sizeof(lay->electrodes[i].label)) == 0)
			return (int)i;
	return -1;
}

static int setup_channels(struct comedi_state *st, const struct mead_driver_config *cfg,
			  unsigned n_hw, char *err, size_t err_len)
{
	const struct mead_layout_view *lay = cfg->layout;
	st->electrodes = lay ? lay->count : 0;
	if (st->electrodes == 0)
		return fail(err, err_len, -EINVAL, "comedi: the layout has no electrodes");
	const char *map = mead_driver_param_get(cfg, "channel_map");
	st->ai_chanlist = calloc(n_hw, sizeof(unsigned));
	st->electrode_of_chan = calloc(n_hw, sizeof(uint16_t));
	if (!st->ai_chanlist || !st->electrode_of_chan)
		return -ENOMEM;
	bool *seen = calloc(st->electrodes, sizeof(bool));
	if (!seen)
		return -ENOMEM;
	int r = 0;
	st->nchan = 0;
	if (!map || !*map) {
		if (st->electrodes > n_hw) {
			snprintf(err, err_len, "comedi: layout has %u electrodes but the AI subdevice only %u channels",
				 st->electrodes, n_hw);
			r = -EINVAL;
			goto out;
		}
		for (uint32_t i = 0; i < st->electrodes; i++) {
			st->ai_chanlist[st->nchan] = i;
			st->electrode_of_chan[st->nchan++] = (uint16_t)i;
		}
		goto out;
	}
	unsigned hw = 0;
	for (const char *p = map; ; hw++) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		while (len && *p == ' ') { p++; len--; }
		while (len && p[len - 1] == ' ')
			len--;
		if (hw >= n_hw) {
			snprintf(err, err_len, "comedi: channel_map names more than the %u channels of the AI subdevice", n_hw);
			r = -EINVAL;
			goto out;
		}
		if (!(len == 1 && *p == '-')) {
			int el = map_entry(lay, p, len);
			if (el < 0) {
				snprintf(err, err_len, "comedi: channel_map entry %u ('%.*s') is no electrode of the layout",
					 hw, (int)len, p);
				r = -EINVAL;
				goto out;
			}
			if (seen[el]) {
				snprintf(err, err_len, "comedi: channel_map names electrode '%.*s' twice", (int)len, p);
				r = -EINVAL;
				goto out;
			}
			seen[el] = true;
			st->ai_chanlist[st->nchan] = hw;
			st->electrode_of_chan[st->nchan++] = (uint16_t)el;
		}
		if (!e)
			break;
		p = e + 1;
	}
	if (st->nchan == 0) {
		snprintf(err, err_len, "comedi: channel_map selects no channel");
		r = -EINVAL;
	}
out:
	free(seen);
	return r;
}

static int pick_range(comedi_t *dev, unsigned sub, double volts, unsigned *ret, double *min, double *max)
{
	int n = comedi_get_n_ranges(dev, sub, 0);
	int best = -1;
	double best_span = INFINITY;
	for (int i = 0; i < n; i++) {
		comedi_range *r = comedi_get_range(dev, sub, 0, (unsigned)i);
		if (!r || r->unit != UNIT_volt)
			continue;
		if (r->min <= -volts && r->max >= volts && r->max - r->min < best_span) {
			best = i;
			best_span = r->max - r->min;
		}
	}
	if (best < 0)
		return -ERANGE;
	*ret = (unsigned)best;
	comedi_range *r = comedi_get_range(dev, sub, 0, (unsigned)best);
	if (min)
		*min = r->min;
	if (max)
		*max = r->max;
	return 0;
}

static int setup_calibration(struct comedi_state *st, const struct mead_driver_config *cfg)
{
	st->cal_offset = calloc(st->nchan, sizeof(float));
	st->cal_scale = calloc(st->nchan, sizeof(float));
	if (!st->cal_offset || !st->cal_scale)
		return -ENOMEM;
	const char *file = mead_driver_param_get(cfg, "calibration_file");
	char *def = NULL;
	comedi_calibration_t *cal = NULL;
	if (file && *file) {
		cal = comedi_parse_calibration_file(file);
		if (!cal)
			return -ENOENT;
	} else if ((comedi_get_subdevice_flags(st->dev, (unsigned)st->ai_sub) & SDF_SOFT_CALIBRATED) &&
		   (def = comedi_get_default_calibration_path(st->dev)) && access(def, R_OK) == 0) {
		cal = comedi_parse_calibration_file(def);
	}
	free(def);
	lsampl_t maxdata = comedi_get_maxdata(st->dev, (unsigned)st->ai_sub, 0);
	comedi_range *rng = comedi_get_range(st->dev, (unsigned)st->ai_sub, 0, st->ai_range);
	for (uint32_t i = 0; i < st->nchan; i++) {
		comedi_polynomial_t p;
		int r = cal ? comedi_get_softcal_converter((unsigned)st->ai_sub, st->ai_chanlist[i], st->ai_range,
							   COMEDI_TO_PHYSICAL, cal, &p)
			    : comedi_get_hardcal_converter(st->dev, (unsigned)st->ai_sub, st->ai_chanlist[i],
							   st->ai_range, COMEDI_TO_PHYSICAL, &p);
		double c0, c1, origin;
		if (r == 0 && p.order >= 1 && p.coefficients[1] != 0) {
			/* Only the linear part: higher orders are tiny on MEA
			 * signals, which use a few percent of the range. */
			c0 = p.coefficients[0];
			c1 = p.coefficients[1];
			origin = p.expansion_origin;
		} else {
			c1 = (rng->max - rng->min) / maxdata;
			c0 = rng->min;
			origin = 0;
		}
		st->cal_offset[i] = (float)(origin - c0 / c1);
		st->cal_scale[i] = (float)(c1 * 1e6 / st->amp_gain);
	}
	if (cal)
		comedi_cleanup_calibration(cal);
	st->uv_per_count = st->cal_scale[0];
	return 0;
}

static int setup_ai_cmd(struct comedi_state *st, char *err, size_t err_len)
{
	comedi_cmd *c = &st->ai_cmd;
	memset(c, 0, sizeof(*c));
	for (uint32_t i = 0; i < st->nchan; i++)
		st->ai_chanlist[i] = CR_PACK(st->ai_chanlist[i], st->ai_range, st->aref);
	uint32_t period = (uint32_t)(1000000000ull / st->rate);
	c->subdev = (unsigned)st->ai_sub;
	c->start_src = TRIG_NOW;
	c->scan_begin_src = TRIG_TIMER;
	c->scan_begin_arg = period;
	c->convert_src = TRIG_TIMER;
	c->convert_arg = period / st->nchan;
	c->scan_end_src = TRIG_COUNT;
	c->scan_end_arg = st->nchan;
	c->stop_src = TRIG_NONE;
	c->chanlist = st->ai_chanlist;
	c->chanlist_len = st->nchan;
	int r = 0;
	for (int pass = 0; pass < 3; pass++) {
		r = comedi_command_test(st->dev, c);
		if (r <= 0)
			break;
		if (r == 1 || r == 2)
			break;
	}
	if (r < 0) {
		snprintf(err, err_len, "comedi: AI command test failed: %s", comedi_strerror(comedi_errno()));
		return -errno_from_comedi();
	}
	if (r == 1 || r == 2) {
		snprintf(err, err_len, "comedi: the AI subdevice cannot run a timed, continuous scan");
		return -EOPNOTSUPP;
	}
	if (c->scan_begin_arg != period) {
		snprintf(err, err_len,
			 "comedi: the board cannot scan %u channels at %u Hz (nearest it offers: %.1f Hz)",
			 st->nchan, st->rate, 1e9 / c->scan_begin_arg);
		return -EINVAL;
	}
	if (r != 0) {
		snprintf(err, err_len, "comedi: the board rejects the AI command (test stage %d)", r);
		return -EINVAL;
	}
	return 0;
}

static int setup_stim(struct comedi_state *st, const struct mead_driver_config *cfg, char *err, size_t err_len)
{
	long ao = mead_driver_param_int(cfg, "ao_subdevice", 0);
	st->ao_sub = find_streaming(st->dev, COMEDI_SUBD_AO, SDF_CMD_WRITE, ao);
	if (st->ao_sub < 0) {
		if (ao >= 0)
			snprintf(err, err_len, "comedi: subdevice %ld is not an analog output", ao);
		else
			snprintf(err, err_len, "comedi: the board has no analog output that streams (set stimulate: false to record only)");
		return -ENODEV;
	}
	if (!(comedi_get_subdevice_flags(st->dev, (unsigned)st->ao_sub) & SDF_CMD_WRITE)) {
		snprintf(err, err_len, "comedi: analog-output subdevice %d cannot run buffered commands", st->ao_sub);
		return -EOPNOTSUPP;
	}
	st->ao_channel = (unsigned)mead_driver_param_int(cfg, "ao_channel", 0);
	if ((int)st->ao_channel >= comedi_get_n_channels(st->dev, (unsigned)st->ao_sub)) {
		snprintf(err, err_len, "comedi: ao_channel %u does not exist", st->ao_channel);
		return -EINVAL;
	}
	st->ao_rate = (uint32_t)mead_driver_param_int(cfg, "ao_rate_hz", 0);
	st->ua_per_volt = mead_driver_param_double(cfg, "ao_ua_per_volt", 0);
	st->max_phase_us = (uint32_t)mead_driver_param_int(cfg, "max_phase_us", 0);
	if (pick_range(st->dev, (unsigned)st->ao_sub, 0.001, &st->ao_range, &st->ao_min_v, &st->ao_max_v) < 0) {
		snprintf(err, err_len, "comedi: the analog output has no bipolar voltage range");
		return -ERANGE;
	}
	/* widest bipolar range: pulses need headroom, not resolution */
	int n = comedi_get_n_ranges(st->dev, (unsigned)st->ao_sub, st->ao_channel);
	for (int i = 0; i < n; i++) {
		comedi_range *r = comedi_get_range(st->dev, (unsigned)st->ao_sub, st->ao_channel, (unsigned)i);
		if (r && r->unit == UNIT_volt && r->min < 0 && r->max - r->min > st->ao_max_v - st->ao_min_v) {
			st->ao_range = (unsigned)i;
			st->ao_min_v = r->min;
			st->ao_max_v = r->max;
		}
	}
	st->ao_maxdata = comedi_get_maxdata(st->dev, (unsigned)st->ao_sub, st->ao_channel);
	st->ao_poly_ok = comedi_get_hardcal_converter(st->dev, (unsigned)st->ao_sub, st->ao_channel, st->ao_range,
						      COMEDI_FROM_PHYSICAL, &st->ao_poly) == 0;
	st->max_ua = (float)(fmin(-st->ao_min_v, st->ao_max_v) * st->ua_per_volt);

	comedi_cmd *c = &st->ao_cmd;
	memset(c, 0, sizeof(*c));
	st->ao_chanlist[0] = CR_PACK(st->ao_channel, st->ao_range, AREF_GROUND);
	c->subdev = (unsigned)st->ao_sub;
	c->start_src = TRIG_INT;
	c->start_arg = 0;
	c->scan_begin_src = TRIG_TIMER;
	c->scan_begin_arg = (unsigned)(1000000000ull / st->ao_rate);
	c->convert_src = TRIG_NOW;
	c->scan_end_src = TRIG_COUNT;
	c->scan_end_arg = 1;
	c->stop_src = TRIG_COUNT;
	c->stop_arg = 2;
	c->chanlist = st->ao_chanlist;
	c->chanlist_len = 1;
	comedi_cmd probe = *c;
	int r = comedi_command_test(st->dev, &probe);
	if (r < 0 || r == 1 || r == 2) {
		snprintf(err, err_len, "comedi: the analog output cannot play a triggered, timed waveform");
		return -EOPNOTSUPP;
	}
	if (probe.scan_begin_arg != c->scan_begin_arg) {
		snprintf(err, err_len, "comedi: the analog output cannot update at %u Hz (nearest: %.1f Hz)",
			 st->ao_rate, 1e9 / probe.scan_begin_arg);
		return -EINVAL;
	}
	st->ao_zero = st->ao_poly_ok ? (lsampl_t)lround(comedi_from_physical(0.0, &st->ao_poly))
				     : (lsampl_t)lround(-st->ao_min_v / (st->ao_max_v - st->ao_min_v) * st->ao_maxdata);

	/* Longest waveform: a tick of lead plus two phases, a gap and a
	 * trailing zero so the output rests at 0 V. */
	uint64_t lead = (uint64_t)cfg->period_us * st->ao_rate / 1000000u + 2;
	uint64_t body = (uint64_t)(3 * st->max_phase_us) * st->ao_rate / 1000000u + 4;
	st->wave_cap = (uint32_t)(lead + body);
	st->wave = calloc(st->wave_cap, sizeof(sampl_t));
	if (!st->wave)
		return -ENOMEM;

	long dio = mead_driver_param_int(cfg, "dio_subdevice", 0);
	st->dio_sub = dio >= 0 ? (int)dio : comedi_find_subdevice_by_type(st->dev, COMEDI_SUBD_DIO, 0);
	if (st->dio_sub < 0 || (comedi_get_subdevice_type(st->dev, (unsigned)st->dio_sub) != COMEDI_SUBD_DIO &&
				comedi_get_subdevice_type(st->dev, (unsigned)st->dio_sub) != COMEDI_SUBD_DO)) {
		snprintf(err, err_len, "comedi: no digital I/O subdevice for electrode routing");
		return -ENODEV;
	}
	int n_lines = comedi_get_n_channels(st->dev, (unsigned)st->dio_sub);
	const char *lines = mead_driver_param_get(cfg, "route_lines");
	st->n_route = 0;
	for (const char *p = lines ? lines : ""; *p;) {
		char *end;
		long l = strtol(p, &end, 10);
		if (end == p || l < 0 || l >= n_lines || l >= 32 || st->n_route >= MAX_ROUTE_LINES) {
			snprintf(err, err_len, "comedi: route_lines '%s' names a line the DIO subdevice lacks", lines);
			return -EINVAL;
		}
		st->route_line[st->n_route++] = (int)l;
		p = *end == ',' ? end + 1 : end;
		if (*end && *end != ',') {
			snprintf(err, err_len, "comedi: route_lines '%s' is not a comma-separated list", lines);
			return -EINVAL;
		}
	}
	if (st->electrodes > (1u << st->n_route)) {
		snprintf(err, err_len, "comedi: %u routing lines cannot address %u electrodes", st->n_route, st->electrodes);
		return -EINVAL;
	}
	st->enable_line = (int)mead_driver_param_int(cfg, "route_enable_line", 0);
	st->blank_line = (int)mead_driver_param_int(cfg, "blank_line", 0);
	if (st->enable_line >= n_lines || st->blank_line >= n_lines || st->enable_line >= 32 || st->blank_line >= 32) {
		snprintf(err, err_len, "comedi: route_enable_line or blank_line beyond the %d DIO lines", n_lines);
		return -EINVAL;
	}
	st->dio_mask = 0;
	for (uint32_t i = 0; i < st->n_route; i++)
		st->dio_mask |= 1u << st->route_line[i];
	if (st->enable_line >= 0)
		st->dio_mask |= 1u << st->enable_line;
	if (st->blank_line >= 0)
		st->dio_mask |= 1u << st->blank_line;
	for (int l = 0; l < 32; l++)
		if ((st->dio_mask >> l) & 1u)
			comedi_dio_config(st->dev, (unsigned)st->dio_sub, (unsigned)l, COMEDI_OUTPUT);
	return 0;
}

static int comedi_open_(const struct mead_driver_config *cfg, void **ret_state, char *err, size_t err_len)
{
	if (cfg->abi_version != MEAD_DRIVER_ABI_VERSION)
		return fail(err, err_len, -EPROTO, "comedi: daemon ABI mismatch");
	comedi_loglevel(0);
	struct comedi_state *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->fd = -1;
	int r;
	const char *path = mead_driver_param_get(cfg, "device");
	if (!path)
		path = "/dev/comedi0";
	st->dev = comedi_open(path);
	if (!st->dev) {
		int e = errno_from_comedi();
		snprintf(err, err_len, "comedi: cannot open %s: %s", path, strerror(e));
		r = -e;
		goto fail;
	}
	st->fd = comedi_fileno(st->dev);
	st->rate = (uint32_t)mead_driver_param_int(cfg, "sample_rate_hz", 0);
	st->period_ns = cfg->period_ns ? cfg->period_ns : cfg->period_us * 1000u;
	st->amp_gain = mead_driver_param_double(cfg, "amp_gain", 0);
	const char *ov = mead_driver_param_get(cfg, "overflow");
	if (ov && strcmp(ov, "stop") == 0) {
		st->overflow_stop = true;
	} else if (ov && strcmp(ov, "continue") != 0) {
		snprintf(err, err_len, "comedi: overflow: '%s' is not one of continue, stop", ov);
		r = -EINVAL;
		goto fail;
	}

	long ai = mead_driver_param_int(cfg, "ai_subdevice", 0);
	st->ai_sub = find_streaming(st->dev, COMEDI_SUBD_AI, SDF_CMD_READ, ai);
	if (st->ai_sub < 0) {
		if (ai >= 0)
			snprintf(err, err_len, "comedi: %s: subdevice %ld is not an analog input", path, ai);
		else
			snprintf(err, err_len, "comedi: %s has no analog-input subdevice that supports streaming commands", path);
		r = -ENODEV;
		goto fail;
	}
	int flags = comedi_get_subdevice_flags(st->dev, (unsigned)st->ai_sub);
	if (!(flags & SDF_CMD_READ)) {
		snprintf(err, err_len, "comedi: %s: analog-input subdevice %d cannot stream (no command support)", path, st->ai_sub);
		r = -EOPNOTSUPP;
		goto fail;
	}
	const char *aref = mead_driver_param_get(cfg, "aref");
	static const struct { const char *name; unsigned aref; int flag; } arefs[] = {
		{ "ground", AREF_GROUND, SDF_GROUND }, { "common", AREF_COMMON, SDF_COMMON },
		{ "diff", AREF_DIFF, SDF_DIFF }, { "other", AREF_OTHER, SDF_OTHER },
	};
	bool aref_ok = false;
	for (size_t i = 0; i < sizeof(arefs) / sizeof(arefs[0]); i++) {
		if (aref && strcmp(aref, arefs[i].name) == 0) {
			if (!(flags & arefs[i].flag)) {
				snprintf(err, err_len, "comedi: the analog inputs do not support aref %s", aref);
				r = -EOPNOTSUPP;
				goto fail;
			}
			st->aref = arefs[i].aref;
			aref_ok = true;
		}
	}
	if (!aref_ok) {
		snprintf(err, err_len, "comedi: aref '%s' is not one of ground, common, diff, other", aref ? aref : "");
		r = -EINVAL;
		goto fail;
	}
	double want_v = mead_driver_param_double(cfg, "ai_range_v", 0);
	if (pick_range(st->dev, (unsigned)st->ai_sub, want_v, &st->ai_range, NULL, NULL) < 0) {
		snprintf(err, err_len, "comedi: no analog-input range covers +-%g V", want_v);
		r = -ERANGE;
		goto fail;
	}
	int n_hw = comedi_get_n_channels(st->dev, (unsigned)st->ai_sub);
	if ((r = setup_channels(st, cfg, (unsigned)n_hw, err, err_len)) < 0)
		goto fail;
	if ((r = setup_calibration(st, cfg)) < 0) {
		snprintf(err, err_len, "comedi: cannot read calibration: %s", strerror(-r));
		goto fail;
	}
	if ((r = setup_ai_cmd(st, err, err_len)) < 0)
		goto fail;
	long kib = mead_driver_param_int(cfg, "buffer_kib", 0);
	if (kib > 0 && comedi_set_buffer_size(st->dev, (unsigned)st->ai_sub, (unsigned)kib * 1024u) < 0) {
		snprintf(err, err_len, "comedi: cannot set the acquisition buffer to %ld KiB", kib);
		r = -errno_from_comedi();
		goto fail;
	}

	st->stim = mead_driver_param_bool(cfg, "stimulate", true);
	if (st->stim && (r = setup_stim(st, cfg, err, err_len)) < 0)
		goto fail;

	/* Staging for a tick and the catch-up after a late one. */
	uint64_t per_tick = ((uint64_t)st->period_ns * st->rate + 999999999u) / 1000000000u + 1;
	st->stage_scans = (uint32_t)(per_tick * CATCHUP_TICKS);
	if (st->stage_scans < 256)
		st->stage_scans = 256;
	st->stage = calloc((size_t)st->stage_scans * st->nchan + st->nchan, sizeof(uint16_t));
	st->uv = calloc((size_t)st->stage_scans * st->nchan, sizeof(float));
	if (!st->stage || !st->uv) {
		r = -ENOMEM;
		goto fail;
	}

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
	*ret_state = st;
	return 0;
fail:
	comedi_close_(st);
	return r;
}

static void set_lines(struct comedi_state *st, unsigned bits)
{
	unsigned b = bits;
	comedi_dio_bitfield2(st->dev, (unsigned)st->dio_sub, st->dio_mask, &b, 0);
}

static void comedi_close_(void *state)
{
	struct comedi_state *st = state;
	if (!st)
		return;
	if (st->dev) {
		comedi_cancel(st->dev, (unsigned)st->ai_sub);
		if (st->stim && st->wave) {
			comedi_cancel(st->dev, (unsigned)st->ao_sub);
			comedi_data_write(st->dev, (unsigned)st->ao_sub, st->ao_channel, st->ao_range, AREF_GROUND, st->ao_zero);
			set_lines(st, 0);
		}
		comedi_close(st->dev);
	}
	mead_sig_free(st->sig);
	free(st->ai_chanlist);
	free(st->electrode_of_chan);
	free(st->cal_offset);
	free(st->cal_scale);
	free(st->stage);
	free(st->uv);
	free(st->wave);
	free(st);
}

static int comedi_get_caps_(void *state, struct mead_driver_caps *c)
{
	struct comedi_state *st = state;
	*c = (struct mead_driver_caps){
		.electrode_count = st->electrodes,
		.sample_rate_hz = st->rate,
		.raw_channels = st->electrodes,
		.uv_per_count = st->uv_per_count,
		.flags = MEAD_CAP_RAW | (st->stim ? MEAD_CAP_STIMULATE : 0u),
		.max_amplitude_ua = st->stim ? st->max_ua : 0,
		.max_phase_us = st->stim ? st->max_phase_us : 0,
		/* one stimulator routed to one electrode at a time */
		.max_pulses_per_tick = st->stim ? 1 : 0,
	};
	return 0;
}

static int arm(struct comedi_state *st)
{
	comedi_cmd c = st->ai_cmd;
	if (comedi_command(st->dev, &c) < 0)
		return -errno_from_comedi();
	st->running = true;
	st->stage_bytes = 0;
	return 0;
}

static int comedi_start_(void *state, char *err, size_t err_len)
{
	struct comedi_state *st = state;
	int fl = fcntl(st->fd, F_GETFL);
	if (fl < 0 || fcntl(st->fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return fail(err, err_len, -errno, "comedi: cannot make the device non-blocking");
	if (st->stim) {
		comedi_cancel(st->dev, (unsigned)st->ao_sub);
		set_lines(st, 0);
		st->lines_high = false;
	}
	mead_sig_reset(st->sig);
	st->acq = 0;
	st->failed = false;
	int r = arm(st);
	if (r < 0) {
		snprintf(err, err_len, "comedi: cannot start acquisition: %s", comedi_strerror(comedi_errno()));
		return r;
	}
	return 0;
}

static uint64_t tick_first_sample(const struct comedi_state *st, uint64_t tick)
{
	__extension__ typedef unsigned __int128 u128;
	return (uint64_t)((u128)tick * st->period_ns * st->rate / 1000000000u);
}

static sampl_t ao_code(const struct comedi_state *st, double volts)
{
	double c = st->ao_poly_ok ? comedi_from_physical(volts, &st->ao_poly)
				  : (volts - st->ao_min_v) / (st->ao_max_v - st->ao_min_v) * st->ao_maxdata;
	if (c < 0)
		c = 0;
	if (c > st->ao_maxdata)
		c = st->ao_maxdata;
	return (sampl_t)lround(c);
}

static int comedi_write_stim_(void *state, uint64_t tick, const struct mead_stim_pulse *p, uint32_t n,
			      struct mead_stim_result *results)
{
	struct comedi_state *st = state;
	uint64_t now = tick_first_sample(st, tick);
	for (uint32_t i = 0; i < n; i++)
		results[i] = (struct mead_stim_result){ .pulse = p[i], .status = MEAD_STIM_REFUSED,
							.reason = MEAD_STIM_REASON_RANGE };
	if (n == 0)
		return 0;
	if (!st->stim) {
		for (uint32_t i = 0; i < n; i++)
			results[i].reason = MEAD_STIM_REASON_UNSUPPORTED;
		return -EOPNOTSUPP;
	}
	if (n > 1) {
		for (uint32_t i = 0; i < n; i++)
			results[i].reason = MEAD_STIM_REASON_BUSY;
		atomic_fetch_add(&st->stim_errors, 1);
		return -EINVAL;
	}
	if (p->electrode >= st->electrodes || p->phase_us > st->max_phase_us ||
	    fabsf(p->amplitude_ua) > st->max_ua) {
		atomic_fetch_add(&st->stim_errors, 1);
		return -EINVAL;
	}
	/* The device is ahead of what we have read by what waits in the
	 * kernel buffer; pulses are timed against that, not the tick. */
	int buffered = comedi_get_buffer_contents(st->dev, (unsigned)st->ai_sub);
	if (buffered >= 0 && st->running)
		now = st->acq + ((uint64_t)buffered + st->stage_bytes) / (st->nchan * sizeof(uint16_t));
	uint64_t lead = p->sample > now ? p->sample - now : 0;
	uint32_t pad = (uint32_t)(lead * st->ao_rate / st->rate);
	uint32_t ph = (uint32_t)(((uint64_t)p->phase_us * st->ao_rate + 500000u) / 1000000u);
	uint32_t gap = (uint32_t)(((uint64_t)p->interphase_us * st->ao_rate + 500000u) / 1000000u);
	if (ph == 0)
		ph = 1;
	uint32_t len = pad + 2 * ph + gap + 1;
	if (len > st->wave_cap) {
		pad = st->wave_cap - (2 * ph + gap + 1);
		len = st->wave_cap;
	}
	double v = p->amplitude_ua / st->ua_per_volt;
	sampl_t z = (sampl_t)st->ao_zero, a = ao_code(st, v), b = ao_code(st, -v);
	uint32_t k = 0;
	for (uint32_t i = 0; i < pad; i++)
		st->wave[k++] = z;
	for (uint32_t i = 0; i < ph; i++)
		st->wave[k++] = a;
	for (uint32_t i = 0; i < gap; i++)
		st->wave[k++] = z;
	for (uint32_t i = 0; i < ph; i++)
		st->wave[k++] = b;
	st->wave[k++] = z;

	/* Route first so the stimulator is connected before the DAC moves. */
	unsigned bits = 0;
	for (uint32_t i = 0; i < st->n_route; i++)
		if ((p->electrode >> i) & 1u)
			bits |= 1u << st->route_line[i];
	if (st->enable_line >= 0)
		bits |= 1u << st->enable_line;
	if (st->blank_line >= 0)
		bits |= 1u << st->blank_line;
	set_lines(st, bits);

	comedi_cancel(st->dev, (unsigned)st->ao_sub);
	comedi_cmd c = st->ao_cmd;
	c.stop_arg = len;
	int r = 0;
	if (comedi_command(st->dev, &c) < 0) {
		r = -errno_from_comedi();
	} else {
		ssize_t w = write(st->fd, st->wave, len * sizeof(sampl_t));
		if (w != (ssize_t)(len * sizeof(sampl_t)))
			r = w < 0 ? -errno : -EIO;
		else if (comedi_internal_trigger(st->dev, (unsigned)st->ao_sub, 0) < 0)
			r = -errno_from_comedi();
	}
	if (r < 0) {
		comedi_cancel(st->dev, (unsigned)st->ao_sub);
		set_lines(st, 0);
		st->lines_high = false;
		atomic_fetch_add(&st->stim_errors, 1);
		results[0].reason = MEAD_STIM_REASON_IO;
		return r;
	}
	atomic_fetch_add(&st->pulses, 1);
	uint64_t start = now + lead;
	results[0].status = MEAD_STIM_DELIVERED;
	results[0].sample = start;
	uint64_t dur = ((uint64_t)(2 * p->phase_us + p->interphase_us) * st->rate + 999999u) / 1000000u;
	uint64_t blank_end = start + dur;
	if (st->blank_all) {
		mead_sig_blank_pulse(st->sig, UINT32_MAX, start);
	} else {
		for (uint32_t i = 0; i < st->nchan; i++)
			if (st->electrode_of_chan[i] == p->electrode)
				mead_sig_blank_pulse(st->sig, i, start);
	}
	st->lines_until = blank_end + 1;
	st->lines_high = true;
	return 0;
}

static int comedi_read_frame_(void *state, uint64_t tick, struct mead_frame *f)
{
	struct comedi_state *st = state;
	f->flags = 0;
	f->n_spikes = 0;
	f->spikes_dropped = 0;
	f->raw_samples = 0;
	if (st->failed)
		return -EPIPE;
	const uint64_t end = f->first_sample + f->n_samples;
	const size_t scan_bytes = st->nchan * sizeof(uint16_t);
	uint8_t *stage = (uint8_t *)st->stage;

	if (!st->running) {
		/* re-arm after an overflow in continue mode; samples lost in
		 * between are skipped, the frame says so */
		if (arm(st) < 0)
			return -EIO;
		atomic_fetch_add(&st->rearms, 1);
		/* acquisition restarts now, i.e. with the next tick's samples */
		st->acq = f->first_sample + f->n_samples;
		f->flags |= MEAD_FRAME_GAP | MEAD_FRAME_LATE;
		return 0;
	}
	/* The kernel buffer holds every sample in order, so a reader that
	 * fell behind catches up a stage at a time rather than skipping. */
	const uint64_t upto = end <= st->acq ? st->acq : end - st->acq > st->stage_scans ? st->acq + st->stage_scans : end;
	if (upto > st->acq) {
		size_t want = (size_t)(upto - st->acq) * scan_bytes;
		size_t have = st->stage_bytes;
		for (int tries = 0; have < want && tries < 4; tries++) {
			ssize_t r = read(st->fd, stage + have, want - have);
			if (r > 0) {
				have += (size_t)r;
				continue;
			}
			if (r < 0 && errno == EPIPE) {
				/* the kernel buffer overflowed and the command ended */
				atomic_fetch_add(&st->overflows, 1);
				f->flags |= MEAD_FRAME_OVERFLOW;
				st->running = false;
				st->stage_bytes = 0;
				comedi_cancel(st->dev, (unsigned)st->ai_sub);
				if (st->overflow_stop) {
					st->failed = true;
					return -EPIPE;
				}
				return 0;
			}
			if (r < 0 && errno != EAGAIN && errno != EINTR)
				return errno == ENODEV ? -ENODEV : -EIO;
			break;
		}
		uint32_t scans = (uint32_t)(have / scan_bytes);
		size_t used = (size_t)scans * scan_bytes;
		if (scans) {
			size_t nvals = (size_t)scans * st->nchan;
			mead_sig_counts_to_uv_u16(st->stage, st->uv, nvals, st->cal_offset, st->cal_scale, st->nchan);
			mead_sig_process(st->sig, st->acq, st->uv, scans, f);
			if (f->raw && f->raw_channels) {
				for (uint32_t i = 0; i < scans; i++) {
					uint64_t s = st->acq + i;
					if (s < f->first_sample)
						continue;
					int16_t *row = f->raw + (size_t)(s - f->first_sample) * f->raw_channels;
					memset(row, 0, f->raw_channels * sizeof(int16_t));
					for (uint32_t k = 0; k < st->nchan; k++) {
						uint16_t e = st->electrode_of_chan[k];
						if (e < f->raw_channels)
							row[e] = mead_sig_uv_to_raw(st->uv[(size_t)i * st->nchan + k], st->uv_per_count);
					}
					f->raw_samples = (uint32_t)(s - f->first_sample + 1);
				}
			}
			st->acq += scans;
		}
		st->stage_bytes = have - used;
		if (st->stage_bytes)
			memmove(stage, stage + used, st->stage_bytes);
	}
	/* The loop calls write_stim only with pulses, so the routing and
	 * blanking lines drop here once the pulse is over. */
	if (st->lines_high && st->acq >= st->lines_until) {
		set_lines(st, 0);
		st->lines_high = false;
	}
	if (st->acq < end) {
		f->flags |= MEAD_FRAME_LATE;
		atomic_fetch_add(&st->late_ticks, 1);
	}
	return 0;
}

static int comedi_stop_outputs_(void *state)
{
	struct comedi_state *st = state;
	if (!st->stim)
		return 0;
	comedi_cancel(st->dev, (unsigned)st->ao_sub);
	comedi_data_write(st->dev, (unsigned)st->ao_sub, st->ao_channel, st->ao_range, AREF_GROUND, st->ao_zero);
	set_lines(st, 0);
	return 0;
}

static int comedi_stop_(void *state)
{
	struct comedi_state *st = state;
	comedi_cancel(st->dev, (unsigned)st->ai_sub);
	st->running = false;
	return comedi_stop_outputs_(st);
}

static int comedi_describe_(void *state, char *buf, size_t len)
{
	struct comedi_state *st = state;
	int n = snprintf(buf, len,
			 "{\"driver\":\"comedi\",\"board\":\"%s\",\"channels\":%u,\"sample_rate_hz\":%u,"
			 "\"overflows\":%llu,\"rearms\":%llu,\"late_ticks\":%llu,\"pulses\":%llu,\"stim_errors\":%llu,"
			 "\"stimulate\":%s}",
			 comedi_get_board_name(st->dev), st->nchan, st->rate,
			 (unsigned long long)atomic_load(&st->overflows), (unsigned long long)atomic_load(&st->rearms),
			 (unsigned long long)atomic_load(&st->late_ticks), (unsigned long long)atomic_load(&st->pulses),
			 (unsigned long long)atomic_load(&st->stim_errors), st->stim ? "true" : "false");
	if (n < 0)
		return -EIO;
	if ((size_t)n >= len)
		return -ENOSPC;
	return n;
}

static const struct mead_driver_ops comedi_ops = {
	.abi_version = MEAD_DRIVER_ABI_VERSION,
	.ops_size = sizeof(struct mead_driver_ops),
	.name = "comedi",
	.description = "MEA amplifier on a Comedi DAQ board: streaming AI, AO pulses routed by DIO",
	.params = comedi_params,
	.open = comedi_open_,
	.close = comedi_close_,
	.get_caps = comedi_get_caps_,
	.start = comedi_start_,
	.write_stim = comedi_write_stim_,
	.read_frame = comedi_read_frame_,
	.control = NULL,
	.stop_outputs = comedi_stop_outputs_,
	.stop = comedi_stop_,
	.describe = comedi_describe_,
};

MEAD_DRIVER_EXPORT(comedi_ops)
