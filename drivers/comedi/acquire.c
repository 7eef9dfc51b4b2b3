/* SPDX-License-Identifier: MIT */
/*
 * The analog inputs: one streaming command (TRIG_TIMER scans, conversions
 * back to back at the fastest rate the board accepts) read without
 * blocking.  read_frame takes the tick's samples from the kernel buffer
 * after asking DMA boards to hand over what they hold (COMEDI_POLL), and
 * reports what it could not deliver: late samples (they come in a later
 * frame), samples lost to an overflow (a range; the sample index goes on
 * in step with the device), the board gone.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drivers/comedi/state.h"
#include "lib/core/time.h"

int comedi_find_streaming(comedi_t *dev, int type, unsigned need_flag, long want)
{
	if (want >= 0) {
		if (want >= comedi_get_n_subdevices(dev) || comedi_get_subdevice_type(dev, (unsigned)want) != type)
			return -1;
		return (int)want;
	}
	for (unsigned s = 0;; s++) {
		int i = comedi_find_subdevice_by_type(dev, type, s);
		if (i < 0)
			return -1;
		int fl = comedi_get_subdevice_flags(dev, (unsigned)i);
		if (fl >= 0 && (fl & need_flag))
			return i;
		s = (unsigned)i;
	}
}

int comedi_electrode_index(const struct mead_layout_view *lay, const char *tok, size_t len)
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

static int setup_channels(struct comedi_state *st, const struct mead_driver_config *cfg, unsigned n_hw, char *err,
			  size_t err_len)
{
	const struct mead_layout_view *lay = cfg->layout;
	st->electrodes = lay ? lay->count : 0;
	if (st->electrodes == 0)
		return fail_(err, err_len, -EINVAL, "comedi: the layout has no electrodes");
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
	for (const char *p = map;; hw++) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		while (len && *p == ' ') {
			p++;
			len--;
		}
		while (len && p[len - 1] == ' ')
			len--;
		if (hw >= n_hw) {
			snprintf(err, err_len, "comedi: channel_map names more than the %u channels of the AI subdevice", n_hw);
			r = -EINVAL;
			goto out;
		}
		if (!(len == 1 && *p == '-')) {
			int el = comedi_electrode_index(lay, p, len);
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

static int pick_range(comedi_t *dev, unsigned sub, double volts, unsigned *ret)
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
	st->ai_maxdata = maxdata;
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
	/* frame.raw is 16 bits: a wider board is scaled so its range fits */
	st->raw_uv_per_count = maxdata > 65535 ? (float)(st->uv_per_count * ((double)maxdata + 1) / 65536.0)
					       : st->uv_per_count;
	return 0;
}

static int test_cmd(comedi_t *dev, comedi_cmd *c)
{
	int r = 0;
	for (int pass = 0; pass < 5; pass++) {
		r = comedi_command_test(dev, c);
		if (r <= 0 || r == 1 || r == 2)
			break;
	}
	return r;
}

/* Scans at the configured rate, conversions back to back: the board's
 * shortest convert_arg (what command_test raises a zero to), or TRIG_NOW
 * where the board takes no convert timer. */
static int setup_ai_cmd(struct comedi_state *st, char *err, size_t err_len)
{
	for (uint32_t i = 0; i < st->nchan; i++)
		st->ai_chanlist[i] = CR_PACK(st->ai_chanlist[i], st->ai_range, st->aref);
	uint32_t period = (uint32_t)(1000000000ull / st->rate);
	static const unsigned convert_srcs[] = { TRIG_TIMER, TRIG_NOW };
	comedi_cmd *c = &st->ai_cmd;
	int r = -1;
	for (size_t k = 0; k < 2; k++) {
		memset(c, 0, sizeof(*c));
		c->subdev = (unsigned)st->ai_sub;
		c->flags = st->wake_eos ? CMDF_WAKE_EOS : 0;
		c->start_src = TRIG_NOW;
		c->scan_begin_src = TRIG_TIMER;
		c->scan_begin_arg = period;
		c->convert_src = convert_srcs[k];
		c->convert_arg = 0;
		c->scan_end_src = TRIG_COUNT;
		c->scan_end_arg = st->nchan;
		c->stop_src = TRIG_NONE;
		c->chanlist = st->ai_chanlist;
		c->chanlist_len = st->nchan;
		r = test_cmd(st->dev, c);
		if (r == 0 || r > 2)
			break;
	}
	if (r < 0) {
		snprintf(err, err_len, "comedi: AI command test failed: %s", comedi_strerror(comedi_errno()));
		return -comedi_errno_();
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
	st->ai_ns = period;
	return 0;
}

/* The kernel refuses a buffer above the subdevice's maximum (EPERM; the
 * comedi module's default maximum is 20480 KiB) and lets only
 * CAP_SYS_ADMIN raise that maximum: a larger buffer raises it first. */
static int set_buffer(struct comedi_state *st, unsigned bytes, char *err, size_t err_len)
{
	unsigned sub = (unsigned)st->ai_sub;
	int max = comedi_get_max_buffer_size(st->dev, sub);
	if (max >= 0 && (unsigned)max < bytes && comedi_set_max_buffer_size(st->dev, sub, bytes) < 0) {
		int e = comedi_errno_();
		snprintf(err, err_len,
			 "comedi: buffer_kib %u is above the kernel's limit for the analog inputs (%d KiB): raising it needs "
			 "CAP_SYS_ADMIN (or the comedi module's comedi_default_buf_maxsize_kb): %s",
			 bytes / 1024u, max / 1024, strerror(e));
		return -e;
	}
	if (comedi_set_buffer_size(st->dev, sub, bytes) < 0) {
		int e = comedi_errno_();
		snprintf(err, err_len, "comedi: cannot set the acquisition buffer to %u KiB: %s", bytes / 1024u, strerror(e));
		return -e;
	}
	return 0;
}

int acq_setup(struct comedi_state *st, const struct mead_driver_config *cfg, char *err, size_t err_len)
{
	const char *path = mead_driver_param_string(cfg, "device", "/dev/comedi0");
	long ai = mead_driver_param_int(cfg, "ai_subdevice", -1);
	st->ai_sub = comedi_find_streaming(st->dev, COMEDI_SUBD_AI, SDF_CMD_READ, ai);
	if (st->ai_sub < 0) {
		if (ai >= 0)
			snprintf(err, err_len, "comedi: %s: subdevice %ld is not an analog input", path, ai);
		else
			snprintf(err, err_len, "comedi: %s has no analog-input subdevice that supports streaming commands", path);
		return -ENODEV;
	}
	int flags = comedi_get_subdevice_flags(st->dev, (unsigned)st->ai_sub);
	if (!(flags & SDF_CMD_READ)) {
		snprintf(err, err_len, "comedi: %s: analog-input subdevice %d cannot stream (no command support)", path,
			 st->ai_sub);
		return -EOPNOTSUPP;
	}
	st->ai_bps = (flags & SDF_LSAMPL) ? sizeof(lsampl_t) : sizeof(sampl_t);
	const char *aref = mead_driver_param_string(cfg, "aref", "ground");
	static const struct { const char *name; unsigned aref; int flag; } arefs[] = {
		{ "ground", AREF_GROUND, SDF_GROUND }, { "common", AREF_COMMON, SDF_COMMON },
		{ "diff", AREF_DIFF, SDF_DIFF }, { "other", AREF_OTHER, SDF_OTHER },
	};
	bool aref_ok = false;
	for (size_t i = 0; i < sizeof(arefs) / sizeof(arefs[0]); i++) {
		if (strcmp(aref, arefs[i].name) == 0) {
			if (!(flags & arefs[i].flag)) {
				snprintf(err, err_len, "comedi: the analog inputs do not support aref %s", aref);
				return -EOPNOTSUPP;
			}
			st->aref = arefs[i].aref;
			aref_ok = true;
		}
	}
	if (!aref_ok) {
		snprintf(err, err_len, "comedi: aref '%s' is not one of ground, common, diff, other", aref);
		return -EINVAL;
	}
	double want_v = mead_driver_param_double(cfg, "ai_range_v", 1.0);
	if (pick_range(st->dev, (unsigned)st->ai_sub, want_v, &st->ai_range) < 0) {
		snprintf(err, err_len, "comedi: no analog-input range covers +-%g V", want_v);
		return -ERANGE;
	}
	int n_hw = comedi_get_n_channels(st->dev, (unsigned)st->ai_sub);
	int r;
	if ((r = setup_channels(st, cfg, (unsigned)n_hw, err, err_len)) < 0)
		return r;
	if ((r = setup_calibration(st, cfg)) < 0) {
		snprintf(err, err_len, "comedi: cannot read calibration: %s", strerror(-r));
		return r;
	}
	if ((r = setup_ai_cmd(st, err, err_len)) < 0)
		return r;
	long kib = mead_driver_param_int(cfg, "buffer_kib", 0);
	if (kib > 0 && (r = set_buffer(st, (unsigned)kib * 1024u, err, err_len)) < 0)
		return r;
	int bsz = comedi_get_buffer_size(st->dev, (unsigned)st->ai_sub);
	st->ai_buf_bytes = bsz > 0 ? (unsigned)bsz : 1u << 20;

	/* Staging for a tick and the catch-up after a late one. */
	uint64_t per_tick = ((uint64_t)st->period_ns * st->rate + 999999999u) / 1000000000u + 1;
	st->stage_scans = (uint32_t)(per_tick * CATCHUP_TICKS);
	if (st->stage_scans < 256)
		st->stage_scans = 256;
	size_t scan_bytes = (size_t)st->nchan * st->ai_bps;
	st->stage = calloc((size_t)st->stage_scans + 1, scan_bytes);
	st->uv = calloc((size_t)st->stage_scans * st->nchan, sizeof(float));
	if (!st->stage || !st->uv)
		return -ENOMEM;
	st->poll_ok = true;
	return 0;
}

int acq_arm(struct comedi_state *st)
{
	comedi_cmd c = st->ai_cmd;
	if (comedi_command(st->dev, &c) < 0)
		return -comedi_errno_();
	st->running = true;
	st->ai_ended = false;
	st->stage_bytes = 0;
	return 0;
}

uint64_t tick_first_sample(const struct comedi_state *st, uint64_t tick)
{
	__extension__ typedef unsigned __int128 u128;
	return (uint64_t)((u128)tick * st->period_ns * st->rate / 1000000000u);
}

static void counts_to_uv(const struct comedi_state *st, size_t nvals)
{
	if (st->ai_bps == sizeof(sampl_t)) {
		mead_sig_counts_to_uv_u16((const uint16_t *)st->stage, st->uv, nvals, st->cal_offset, st->cal_scale,
					  st->nchan);
		return;
	}
	const lsampl_t *in = (const lsampl_t *)st->stage;
	for (size_t i = 0; i < nvals; i++) {
		uint32_t ch = (uint32_t)(i % st->nchan);
		st->uv[i] = ((float)in[i] - st->cal_offset[ch]) * st->cal_scale[ch];
	}
}

/* Where the device is now, from the last observation of it running: with
 * the wall clock, the time since then at the sample rate; with a virtual
 * clock, the end of the tick being read. */
static uint64_t device_position(const struct comedi_state *st, uint64_t floor, uint64_t end)
{
	uint64_t pos = floor;
	if (st->virtual_clock) {
		if (end > pos)
			pos = end;
	} else if (st->have_obs) {
		uint64_t est = acq_sample_at(st, mead_now_ns(), pos);
		if (est > pos)
			pos = est;
	}
	return pos;
}

uint64_t acq_sample_at(const struct comedi_state *st, uint64_t t_ns, uint64_t floor)
{
	if (!st->have_obs || t_ns <= st->obs_ns)
		return floor;
	return st->obs_sample + (t_ns - st->obs_ns) * st->rate / 1000000000u;
}

/* The command ended on a full buffer and everything it kept has been read:
 * start a new one and go on with the sample the device is at; what lies
 * between is an OVERFLOW range, never delivered. */
static int overflow_rearm(struct comedi_state *st, struct mead_frame *f, uint64_t end)
{
	int r = acq_arm(st);
	if (r < 0)
		return r;
	uint64_t at = st->acq;
	uint64_t pos = device_position(st, at, end);
	mead_frame_event(f, MEAD_EVENT_OVERFLOW, at, pos - at, 0, 0);
	atomic_fetch_add(&st->lost_samples, pos - at);
	atomic_fetch_add(&st->rearms, 1);
	st->acq = pos;
	st->acquired = pos;
	st->obs_sample = pos;
	st->obs_ns = mead_now_ns();
	st->obs_half_ns = 0;
	st->have_obs = true;
	return 0;
}

static int ended_on_overflow(struct comedi_state *st, struct mead_frame *f, uint64_t end)
{
	atomic_fetch_add(&st->overflows, 1);
	f->flags |= MEAD_FRAME_OVERFLOW;
	st->running = false;
	st->stage_bytes = 0;
	comedi_cancel(st->dev, (unsigned)st->ai_sub);
	if (st->overflow_stop) {
		mead_frame_event(f, MEAD_EVENT_OVERFLOW, st->acq, 0, 0, 0);
		st->failed = true;
		return -EPIPE;
	}
	return overflow_rearm(st, f, end) < 0 ? -EIO : 0;
}

static void deliver(struct comedi_state *st, struct mead_frame *f, uint32_t scans)
{
	size_t nvals = (size_t)scans * st->nchan;
	counts_to_uv(st, nvals);
	mead_sig_process(st->sig, st->acq, st->uv, scans, f);
	if (f->raw && f->raw_channels) {
		f->raw_first_sample = st->acq;
		for (uint32_t i = 0; i < scans; i++) {
			int16_t *row = f->raw + (size_t)i * f->raw_channels;
			memset(row, 0, f->raw_channels * sizeof(int16_t));
			for (uint32_t k = 0; k < st->nchan; k++) {
				uint16_t e = st->electrode_of_chan[k];
				if (e < f->raw_channels)
					row[e] = mead_sig_uv_to_raw(st->uv[(size_t)i * st->nchan + k], st->raw_uv_per_count);
			}
		}
		f->raw_samples = scans;
	}
	st->acq += scans;
}

/* Takes in everything the kernel holds (as far as the staging goes), then
 * delivers what the tick needs, at most `limit` scans; the rest stays
 * staged.  *drained: the kernel buffer is empty now (the read came back
 * short).  Returns 1 when the command ended on an overflow, <0 when the
 * board failed or went away. */
static int read_samples(struct comedi_state *st, struct mead_frame *f, uint64_t end, uint32_t limit, bool *drained)
{
	const size_t scan_bytes = (size_t)st->nchan * st->ai_bps;
	const size_t room = (size_t)st->stage_scans * scan_bytes;
	int ret = 0;
	uint64_t want = end > st->acq ? end - st->acq : 0;
	if (want > limit)
		want = limit;
	*drained = st->ai_ended;
	/* One read takes all there is.  Only when the tick is still short is
	 * the kernel asked again: nothing yet (EAGAIN), or the command ended
	 * (EPIPE), which must not pass for late samples. */
	for (int tries = 0; !st->ai_ended && st->stage_bytes < room && tries < 3; tries++) {
		size_t asked = room - st->stage_bytes;
		uint64_t t0 = mead_now_ns();
		ssize_t r = read(st->fd, st->stage + st->stage_bytes, asked);
		/* a short read saw the whole buffer: when, is the device's clock */
		uint64_t t1 = mead_now_ns();
		st->read_ns = t0 + (t1 - t0) / 2;
		st->read_half_ns = (t1 - t0) / 2;
		if (r > 0) {
			st->stage_bytes += (size_t)r;
			*drained = (size_t)r < asked;
			if (st->stage_bytes / scan_bytes >= want || !*drained)
				break;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN) {
			*drained = true;
		} else if (r < 0 && errno == EPIPE) {
			/* the command ended on a full buffer and gave all it kept */
			st->ai_ended = true;
			*drained = true;
		} else if (r < 0 && errno == ENODEV) {
			ret = -ENODEV;
		} else if (r < 0) {
			ret = -EIO;
		}
		break;
	}
	uint64_t staged = st->stage_bytes / scan_bytes;
	uint32_t scans = (uint32_t)(staged < want ? staged : want);
	if (scans) {
		deliver(st, f, scans);
		size_t used = (size_t)scans * scan_bytes;
		st->stage_bytes -= used;
		if (st->stage_bytes)
			memmove(st->stage, st->stage + used, st->stage_bytes);
	}
	/* the overflow comes once every sample before it is delivered */
	if (ret == 0 && st->ai_ended && st->stage_bytes < scan_bytes)
		ret = 1;
	return ret;
}

int comedi_read_frame_(void *state, uint64_t tick, struct mead_frame *f)
{
	struct comedi_state *st = state;
	(void)tick;
	f->flags = 0;
	f->n_spikes = 0;
	f->spikes_dropped = 0;
	f->raw_samples = 0;
	f->n_stim_results = 0;
	const uint64_t end = f->first_sample + f->n_samples;
	if (st->failed) {
		f->acquired = st->acquired;
		return -EPIPE;
	}
	if (st->gone) {
		f->flags |= MEAD_FRAME_DEVICE_GONE;
		f->acquired = st->acquired;
		stim_tick(st, f, -ENODEV);
		return -ENODEV;
	}
	int r = 0;
	if (!st->running) {
		/* a re-arm that failed on an earlier tick */
		if (overflow_rearm(st, f, end) < 0) {
			f->acquired = st->acquired;
			return -EIO;
		}
	}
	if (st->poll_ok && comedi_poll(st->dev, (unsigned)st->ai_sub) < 0) {
		if (errno == EINVAL)
			st->poll_ok = false;   /* no poll handler: the board delivers by itself */
		else if (errno == ENODEV)
			r = -ENODEV;
	}
	uint32_t limit = st->stage_scans;
	if (f->raw && f->raw_channels) {
		uint32_t cap = f->raw_capacity ? f->raw_capacity : f->n_samples;
		if (cap < limit)
			limit = cap;
	}
	bool drained = false;
	if (r == 0)
		r = read_samples(st, f, end, limit, &drained);
	const size_t scan_bytes = (size_t)st->nchan * st->ai_bps;
	if (r == 0) {
		/* a short read took all the kernel had: the clock is what is staged */
		int buffered = 0;
		uint64_t obs_ns = st->read_ns, obs_half_ns = st->read_half_ns;
		if (!drained) {
			uint64_t t0 = mead_now_ns();
			buffered = comedi_get_buffer_contents(st->dev, (unsigned)st->ai_sub);
			if (buffered < 0) {
				r = errno == EPIPE ? 1 : errno == ENODEV ? -ENODEV : 0;
				buffered = 0;
			}
			uint64_t t1 = mead_now_ns();
			obs_ns = t0 + (t1 - t0) / 2;
			obs_half_ns = (t1 - t0) / 2;
		}
		uint64_t before = st->acquired;
		st->acquired = st->acq + ((uint64_t)buffered + st->stage_bytes) / scan_bytes;
		/* the device surely ran if its clock moved on and its buffer
		 * is less than half full (a command stopped by an overflow
		 * leaves a full buffer and a clock that stands still) */
		if (r == 0 && !st->ai_ended && (unsigned)buffered + st->stage_bytes < st->ai_buf_bytes / 2 &&
		    st->acquired > before) {
			st->obs_sample = st->acquired;
			st->obs_ns = obs_ns;
			st->obs_half_ns = obs_half_ns;
			st->have_obs = true;
		}
	}
	if (r == -ENODEV) {
		st->gone = true;
		st->running = false;
		f->flags |= MEAD_FRAME_DEVICE_GONE;
		f->acquired = st->acquired;
		stim_tick(st, f, -ENODEV);
		return -ENODEV;
	}
	int ret = 0;
	if (r == 1)
		ret = ended_on_overflow(st, f, end);
	else if (r < 0)
		ret = r;
	if (st->acquired < st->acq)
		st->acquired = st->acq;
	if (st->acq < end && !st->failed) {
		uint64_t from = st->acq > f->first_sample ? st->acq : f->first_sample;
		f->flags |= MEAD_FRAME_LATE;
		atomic_fetch_add(&st->late_ticks, 1);
		/* each late sample is announced once; a catch-up read with no
		 * samples of its own announces none */
		if (from < end)
			mead_frame_event(f, MEAD_EVENT_LATE, from, end - from, 0, 0);
	}
	if (!st->failed)
		di_tick(st, f);
	f->acquired = st->acquired;
	stim_tick(st, f, ret);
	return ret;
}
