/* SPDX-License-Identifier: MIT */
/*
 * A Comedi DAQ board behind an emulated /dev/comediN: the ioctls, read()
 * and write() that comedilib issues are answered here the way the kernel's
 * comedi core (drivers/comedi/comedi_fops.c) and a board driver would.
 *
 * Subdevices: 0 analog input (streaming, four bipolar ranges), 1 analog
 * output (+-10 V, streaming with an internal trigger; instruction writes
 * only while no command runs), 2 digital I/O (32 lines; optionally output
 * commands clocked by the analog output's updates, the "correlated DO" of
 * NI M-series boards), optionally 3 digital input (16 lines).  comedi_test's
 * shape is a configuration: no DIO, timings in whole microseconds, no poll
 * handler.
 *
 * Digital lines read by instructions: a DIO line configured as an output
 * reads back what was written to it, an input line (the default, as on NI
 * boards after reset) and every DI line read the level the test set for
 * that moment of the device clock (cmodel_set_input).
 *
 * What the kernel does and the model does too: a subdevice running a
 * command belongs to the open file that started it (others get EBUSY, its
 * buffer calls EINVAL), instructions on a busy subdevice fail with EBUSY,
 * closing the file cancels its commands; an AI command that fills its
 * buffer stops, its buffered samples stay readable and then read() and
 * COMEDI_BUFINFO fail with EPIPE (after which the subdevice is free); an
 * output command that runs out of data stops with the DAC holding its last
 * sample and the next write() or COMEDI_BUFINFO fails with EPIPE; the
 * write subdevice is per open file (COMEDI_SETWSUBD).
 *
 * Time: in virtual mode the test sets the clock in AI samples; AI sample k
 * is acquired at k x the scan period.  An output command's scan i plays
 * from trigger + i x its period.  Every output sample is logged, and pulses
 * are read back from the log (cmodel_stims) with the DIO lines they played
 * under.
 */
#include "tests/lib/devmodel.h"

#include <sys/ioctl.h>
#include <comedi.h>
#include <errno.h>
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <umockdev.h>

#define SUB_AI 0
#define SUB_AO 1
#define SUB_DIO 2
#define SUB_DI 3
#define MAX_SUB 4
#define DI_LINES 16
#define MAX_INPUT_CHANGES 4096
#define MAX_AO_CHAN 8
#define MAX_SEGS 1024
#define MAX_DIO_LOG 65536
#define DEFAULT_SCAN_NS 40000u
#define NEVER UINT64_MAX

static const int ai_ranges_uv[][2] = {
	{ -10000000, 10000000 }, { -5000000, 5000000 }, { -1000000, 1000000 }, { -200000, 200000 },
};

/* One open file of the device node. */
struct client {
	int rsub, wsub;
};

/* One output command of the analog output, from COMEDI_CMD to its end. */
struct ao_seg {
	uint64_t trig_ns;         /* model time of scan 0; NEVER until triggered */
	uint64_t trig_wall_ns;
	uint64_t trig_clock;
	uint32_t scan_ns;         /* the AI scan period when it was triggered */
	uint64_t end_ns;          /* cancelled or ran dry; NEVER while it runs */
	uint32_t period_ns;
	uint32_t nchan;
	unsigned chan[MAX_AO_CHAN];
	size_t log0;              /* its first code in ao_log */
	uint64_t written;         /* complete scans written */
	uint64_t stop_count;      /* 0: TRIG_NONE */
	bool settled;             /* ended, and the DAC took its last sample */
};

/* One output command of the DIO subdevice; its scans are clocked by the
 * analog output's updates once both are triggered. */
struct do_seg {
	int ao;                   /* the AO command it runs with; -1 until one is triggered */
	uint64_t offset;          /* AO scan at which its word 0 is output */
	size_t log0;
	uint64_t written;
	uint64_t end_ao;          /* AO scan at which it ended; NEVER while it runs */
	bool triggered;
};

struct dio_change {
	uint64_t t_ns;
	uint32_t value;
};

/* External levels on input lines from a device-clock sample on. */
struct input_change {
	uint64_t clock;
	bool di;                  /* the DI subdevice; else the DIO's lines */
	uint32_t mask, levels;
};

struct cmodel {
	struct cmodel_config cfg;
	UMockdevIoctlBase *handler;
	struct siggen *gen;
	GMutex lock;
	unsigned n_sub;
	bool gone, realtime, rt_started;
	void *busy[MAX_SUB];      /* the client whose command runs on a subdevice */
	struct cmodel_counts counts;

	/* time */
	uint64_t clock;           /* virtual clock (samples) */
	uint64_t rt_base_clock, rt_base_ns;
	uint64_t stream_start_ns;

	/* analog input */
	uint32_t ai_bps, ai_maxdata;
	bool ai_running, ai_error;
	uint64_t ai_start, ai_stop;   /* device clock of its first sample; where it stopped */
	uint32_t scan_ns, rate;
	uint32_t n_scan;
	unsigned chan[256], range[256];
	uint64_t delivered;       /* device clock of the next scan a read hands out */
	uint64_t polled;          /* scans moved to the buffer by COMEDI_POLL */
	uint32_t partial;         /* bytes of the current scan already read */
	uint8_t cur_scan[256 * 4];
	float *uvbuf;
	uint32_t ai_buf_bytes;
	struct cmodel_ai_cmd last_ai;

	/* analog output */
	uint32_t ao_bps, ao_maxdata, ao_nchan;
	uint32_t ao_buf_bytes;
	struct ao_seg segs[MAX_SEGS];
	uint32_t n_segs;
	bool ao_running, ao_error;
	uint32_t *ao_log;
	size_t ao_log_len, ao_log_cap;
	uint8_t ao_part[64];
	uint32_t ao_part_len;
	uint32_t dac[MAX_AO_CHAN];

	/* digital I/O */
	uint32_t dio;             /* lines set by instructions */
	struct dio_change dio_log[MAX_DIO_LOG];
	uint32_t n_dio_log;
	struct do_seg dsegs[MAX_SEGS];
	uint32_t n_dsegs;
	bool do_running, do_error;
	uint32_t *do_log;
	size_t do_log_len, do_log_cap;
	uint8_t do_part[4];
	uint32_t do_part_len;
	uint32_t dio_out;         /* DIO lines configured as outputs */
	struct input_change in_changes[MAX_INPUT_CHANGES];
	uint32_t n_in_changes;
};

static uint32_t scan_ns(const struct cmodel *m)
{
	return m->scan_ns ? m->scan_ns : DEFAULT_SCAN_NS;
}

/* Real time starts with the first AI command (a board's clock means
 * nothing before), then runs on whether a command runs or not. */
static uint64_t now_ns(const struct cmodel *m)
{
	if (m->realtime && m->rt_started)
		return m->rt_base_clock * scan_ns(m) + (mead_now_ns() - m->rt_base_ns);
	return m->clock * scan_ns(m);
}

static uint64_t clock_locked(const struct cmodel *m)
{
	return now_ns(m) / scan_ns(m);
}

/* Real time continues from the current clock under a new scan period. */
static void rebase(struct cmodel *m)
{
	if (m->realtime && !m->rt_started) {
		m->rt_started = true;
		m->rt_base_clock = m->clock;
		m->rt_base_ns = mead_now_ns();
	} else if (m->realtime) {
		m->rt_base_clock = clock_locked(m);
		m->rt_base_ns = mead_now_ns();
	}
}

static UMockdevIoctlData *res(UMockdevIoctlData *d, size_t off, size_t len)
{
	GError *e = NULL;
	UMockdevIoctlData *r = umockdev_ioctl_data_resolve(d, off, len, &e);
	if (e)
		g_error_free(e);
	return r;
}

static uint32_t bits_maxdata(uint32_t bits)
{
	return bits > 16 ? (1u << bits) - 1u : 65535u;
}

static uint32_t uv_to_code(const struct cmodel *m, float uv, unsigned range)
{
	double v = uv * 1e-6 * m->cfg.amp_gain;
	double lo = ai_ranges_uv[range][0] * 1e-6, hi = ai_ranges_uv[range][1] * 1e-6;
	double c = (v - lo) / (hi - lo) * m->ai_maxdata;
	if (c < 0)
		c = 0;
	if (c > m->ai_maxdata)
		c = m->ai_maxdata;
	return (uint32_t)lround(c);
}

double cmodel_ao_volts(struct cmodel *m, uint32_t code)
{
	return -10.0 + 20.0 * code / m->ao_maxdata;
}

/* 0 V lies between two codes; either is 0 V to half a code. */
bool cmodel_ao_is_zero(struct cmodel *m, uint32_t code)
{
	return fabs(2.0 * code - m->ao_maxdata) <= 1.0;
}

static int code_side(const struct cmodel *m, uint32_t code)
{
	double d = 2.0 * code - m->ao_maxdata;
	return fabs(d) <= 1.0 ? 0 : d > 0 ? 1 : -1;
}

static struct client *client_of(UMockdevIoctlClient *c)
{
	return g_object_get_data(G_OBJECT(c), "cmodel-client");
}

static void hold_lines(struct cmodel *m, uint32_t v)
{
	if (v == m->dio)
		return;
	m->dio = v;
	if (m->n_dio_log < MAX_DIO_LOG)
		m->dio_log[m->n_dio_log++] = (struct dio_change){ now_ns(m), v };
}

static void log_dio(struct cmodel *m, uint32_t v)
{
	if (v != m->dio)
		m->counts.dio_changes++;
	hold_lines(m, v);
}

/* ---------------------------------------------------------------- time passes */

/* The AI command: the buffer holds [delivered, visible); a scan that does
 * not fit ends the command. */
static uint64_t ai_acquired(const struct cmodel *m, uint64_t now)
{
	return m->ai_error && m->ai_stop < now ? m->ai_stop : now;
}

static uint64_t ai_visible(const struct cmodel *m, uint64_t now)
{
	uint64_t acq = ai_acquired(m, now);
	uint32_t blk = m->cfg.ai_block_scans;
	if (!blk)
		return acq;
	uint64_t v = m->ai_start + (acq - m->ai_start) / blk * blk;
	if (m->polled > v)
		v = m->polled;
	return v < acq ? v : acq;
}

static void ai_advance(struct cmodel *m)
{
	if (!m->ai_running || m->ai_error)
		return;
	uint64_t now = clock_locked(m);
	uint64_t cap = m->ai_buf_bytes / ((uint64_t)m->n_scan * m->ai_bps);
	if (now > m->delivered + cap) {
		m->ai_error = true;
		m->ai_stop = m->delivered + cap;
		m->counts.ai_overflows++;
	}
}

/* Scans that have begun playing by model time t. */
static uint64_t seg_played(const struct ao_seg *s, uint64_t t)
{
	if (s->trig_ns == NEVER || t < s->trig_ns)
		return 0;
	uint64_t n;
	if (s->end_ns != NEVER && t >= s->end_ns)
		n = (s->end_ns - s->trig_ns + s->period_ns - 1) / s->period_ns;
	else
		n = (t - s->trig_ns) / s->period_ns + 1;
	return n < s->written ? n : s->written;
}

static uint32_t seg_code(const struct cmodel *m, const struct ao_seg *s, uint64_t scan, uint32_t k)
{
	return m->ao_log[s->log0 + scan * s->nchan + k];
}

static void do_end(struct cmodel *m, uint64_t at_ao)
{
	if (!m->n_dsegs)
		return;
	struct do_seg *d = &m->dsegs[m->n_dsegs - 1];
	if (d->end_ao == NEVER)
		d->end_ao = at_ao;
}

static void ao_advance(struct cmodel *m)
{
	if (!m->n_segs)
		return;
	struct ao_seg *s = &m->segs[m->n_segs - 1];
	uint64_t now = now_ns(m);
	if (m->ao_running && s->trig_ns != NEVER) {
		uint64_t need = s->stop_count && s->stop_count <= s->written ? s->stop_count : s->written;
		uint64_t dry = s->trig_ns + need * s->period_ns;
		if (now >= dry) {
			s->end_ns = dry;
			m->ao_running = false;
			if (!(s->stop_count && s->stop_count <= s->written)) {
				m->ao_error = true;
				m->counts.ao_underruns++;
			}
		}
	}
	/* the DAC follows the command until it ends, then holds (an
	 * instruction write may change it afterwards) */
	uint64_t p = seg_played(s, now);
	if (p && !s->settled)
		for (uint32_t k = 0; k < s->nchan; k++)
			m->dac[s->chan[k]] = seg_code(m, s, p - 1, k);
	if (s->end_ns != NEVER)
		s->settled = true;
	/* the DIO command clocked by this one runs dry too */
	if (m->do_running && m->n_dsegs) {
		struct do_seg *d = &m->dsegs[m->n_dsegs - 1];
		if (d->ao == (int)(m->n_segs - 1) && p > d->offset + d->written) {
			d->end_ao = d->offset + d->written;
			m->do_running = false;
			m->do_error = true;
			if (d->written)
				hold_lines(m, m->do_log[d->log0 + d->written - 1]);
		}
	}
}

static void advance(struct cmodel *m)
{
	ai_advance(m);
	ao_advance(m);
}

/* The lines at AO scan i of segment si (or at model time t). */
static uint32_t lines_soft(const struct cmodel *m, uint64_t t)
{
	uint32_t v = 0;
	for (uint32_t i = 0; i < m->n_dio_log && m->dio_log[i].t_ns <= t; i++)
		v = m->dio_log[i].value;
	return v;
}

static uint32_t lines_at(const struct cmodel *m, uint32_t si, uint64_t scan)
{
	const struct ao_seg *s = &m->segs[si];
	uint64_t t = s->trig_ns + scan * s->period_ns;
	for (uint32_t i = m->n_dsegs; i-- > 0;) {
		const struct do_seg *d = &m->dsegs[i];
		if (d->ao != (int)si || scan < d->offset || !d->written)
			continue;
		uint64_t j = scan - d->offset;
		if (d->end_ao != NEVER && scan >= d->end_ao) {
			if (d->end_ao <= d->offset)
				continue;
			j = d->end_ao - 1 - d->offset;
		}
		if (j >= d->written)
			j = d->written - 1;
		return m->do_log[d->log0 + j];
	}
	return lines_soft(m, t);
}

/* ---------------------------------------------------------------- commands */

static int check_src(unsigned *src, unsigned ok)
{
	unsigned orig = *src;
	*src &= ok;
	return (*src == 0 || *src != orig) ? 1 : 0;
}

static bool unique(unsigned src)
{
	return (src & (src - 1)) == 0;
}

static int arg_is(unsigned *arg, unsigned v)
{
	if (*arg != v) {
		*arg = v;
		return 1;
	}
	return 0;
}

static int arg_min(unsigned *arg, unsigned v)
{
	if (*arg < v) {
		*arg = v;
		return 1;
	}
	return 0;
}

/* Step 3 of every command test: the channel list, the scan length, the stop. */
static int count_args(comedi_cmd *c, unsigned max_chan)
{
	int err = c->chanlist_len < 1 || c->chanlist_len > max_chan;
	err |= arg_is(&c->scan_end_arg, c->chanlist_len);
	if (c->stop_src == TRIG_COUNT)
		err |= arg_min(&c->stop_arg, 1);
	else
		err |= arg_is(&c->stop_arg, 0);
	return err;
}

static unsigned round_to(unsigned v, unsigned step)
{
	return (v + step / 2) / step * step;
}

static int ai_cmdtest(struct cmodel *m, comedi_cmd *c, const unsigned *chanlist)
{
	if (m->cfg.ai_no_cmd)
		return -EIO;
	int err = 0;
	err |= check_src(&c->start_src, TRIG_NOW);
	err |= check_src(&c->scan_begin_src, TRIG_TIMER);
	err |= check_src(&c->convert_src, m->cfg.us_timing ? TRIG_NOW | TRIG_TIMER : TRIG_TIMER);
	err |= check_src(&c->scan_end_src, TRIG_COUNT);
	err |= check_src(&c->stop_src, TRIG_COUNT | TRIG_NONE);
	if (err)
		return 1;
	if (!unique(c->convert_src) || !unique(c->stop_src))
		return 2;
	unsigned min_conv = m->cfg.us_timing ? 0 : (unsigned)((1000000000ull + m->cfg.max_aggregate_hz - 1) / m->cfg.max_aggregate_hz);
	err |= arg_is(&c->start_arg, 0);
	if (c->convert_src == TRIG_NOW)
		err |= arg_is(&c->convert_arg, 0);
	else
		err |= arg_min(&c->convert_arg, min_conv);
	err |= arg_min(&c->scan_begin_arg, 1000);
	err |= count_args(c, m->cfg.ai_channels);
	if (err)
		return 3;
	unsigned step = m->cfg.us_timing ? 1000 : 50;
	if (c->convert_src == TRIG_TIMER)
		err |= arg_is(&c->convert_arg, round_to(c->convert_arg, step));
	unsigned scan = round_to(c->scan_begin_arg, step);
	if (c->convert_src == TRIG_TIMER && scan < c->convert_arg * c->scan_end_arg)
		scan = c->convert_arg * c->scan_end_arg;
	err |= arg_is(&c->scan_begin_arg, scan);
	if (err)
		return 4;
	if (chanlist)
		for (unsigned i = 0; i < c->chanlist_len; i++)
			if (CR_CHAN(chanlist[i]) >= m->cfg.ai_channels || CR_RANGE(chanlist[i]) >= 4)
				return 5;
	return 0;
}

static int ao_cmdtest(struct cmodel *m, comedi_cmd *c, const unsigned *chanlist)
{
	int err = 0;
	err |= check_src(&c->start_src, TRIG_INT);
	err |= check_src(&c->scan_begin_src, TRIG_TIMER);
	err |= check_src(&c->convert_src, TRIG_NOW);
	err |= check_src(&c->scan_end_src, TRIG_COUNT);
	err |= check_src(&c->stop_src, TRIG_COUNT | TRIG_NONE);
	if (err)
		return 1;
	if (!unique(c->stop_src))
		return 2;
	err |= arg_is(&c->start_arg, 0);
	err |= arg_min(&c->scan_begin_arg, 1000);
	err |= arg_is(&c->convert_arg, 0);
	err |= count_args(c, m->ao_nchan);
	if (err)
		return 3;
	err |= arg_is(&c->scan_begin_arg, round_to(c->scan_begin_arg, m->cfg.us_timing ? 1000 : 50));
	if (err)
		return 4;
	if (chanlist)
		for (unsigned i = 0; i < c->chanlist_len; i++)
			if (CR_CHAN(chanlist[i]) >= m->ao_nchan || CR_RANGE(chanlist[i]) != 0)
				return 5;
	return 0;
}

static int do_cmdtest(struct cmodel *m, comedi_cmd *c, const unsigned *chanlist)
{
	if (!m->cfg.dio_cmd)
		return -EIO;
	int err = 0;
	err |= check_src(&c->start_src, TRIG_INT);
	err |= check_src(&c->scan_begin_src, TRIG_EXT);
	err |= check_src(&c->convert_src, TRIG_NOW);
	err |= check_src(&c->scan_end_src, TRIG_COUNT);
	err |= check_src(&c->stop_src, TRIG_NONE);
	if (err)
		return 1;
	err |= arg_is(&c->start_arg, 0);
	err |= arg_is(&c->scan_begin_arg, NI_CDIO_SCAN_BEGIN_SRC_AO_UPDATE);
	err |= arg_is(&c->convert_arg, 0);
	err |= count_args(c, 32);
	if (err)
		return 3;
	if (chanlist)
		for (unsigned i = 0; i < c->chanlist_len; i++)
			if (CR_CHAN(chanlist[i]) != i)
				return 5;
	return 0;
}

static int cmdtest(struct cmodel *m, comedi_cmd *c, const unsigned *chanlist)
{
	if (c->subdev >= m->n_sub)
		return -ENODEV;
	if (c->subdev == SUB_AI)
		return ai_cmdtest(m, c, chanlist);
	if (c->subdev == SUB_AO)
		return m->cfg.with_ao ? ao_cmdtest(m, c, chanlist) : -EIO;
	if (c->subdev == SUB_DI)
		return -EIO;
	return do_cmdtest(m, c, chanlist);
}

static void start_ai(struct cmodel *m, const comedi_cmd *c, const unsigned *chanlist)
{
	rebase(m);
	uint64_t now = clock_locked(m);
	m->n_scan = c->chanlist_len;
	for (unsigned i = 0; i < c->chanlist_len && i < 256; i++) {
		m->chan[i] = CR_CHAN(chanlist[i]);
		m->range[i] = CR_RANGE(chanlist[i]);
	}
	/* the clock stays in samples; real time continues under the new period */
	m->scan_ns = c->scan_begin_arg;
	m->rate = 1000000000u / c->scan_begin_arg;
	rebase(m);
	/* samples acquired while no command ran were never kept */
	if (now > m->delivered)
		siggen_skip(m->gen, (uint32_t)(now - m->delivered));
	m->delivered = now;
	m->ai_start = now;
	m->polled = now;
	m->partial = 0;
	m->ai_running = true;
	m->ai_error = false;
	m->counts.ai_commands++;
	m->last_ai = (struct cmodel_ai_cmd){ c->flags, c->convert_src, c->convert_arg, c->scan_begin_arg, c->chanlist_len };
	if (!m->stream_start_ns)
		m->stream_start_ns = mead_now_ns();
}

static void start_ao(struct cmodel *m, const comedi_cmd *c, const unsigned *chanlist)
{
	if (m->n_segs >= MAX_SEGS) {
		memmove(m->segs, m->segs + MAX_SEGS / 2, (MAX_SEGS / 2) * sizeof(m->segs[0]));
		m->n_segs -= MAX_SEGS / 2;
	}
	struct ao_seg *s = &m->segs[m->n_segs++];
	*s = (struct ao_seg){ .trig_ns = NEVER, .end_ns = NEVER, .period_ns = c->scan_begin_arg,
			      .nchan = c->chanlist_len, .log0 = m->ao_log_len,
			      .stop_count = c->stop_src == TRIG_COUNT ? c->stop_arg : 0 };
	for (unsigned i = 0; i < c->chanlist_len && i < MAX_AO_CHAN; i++)
		s->chan[i] = CR_CHAN(chanlist[i]);
	m->ao_running = true;
	m->ao_error = false;
	m->ao_part_len = 0;
	m->counts.ao_commands++;
}

static void start_do(struct cmodel *m)
{
	if (m->n_dsegs >= MAX_SEGS) {
		memmove(m->dsegs, m->dsegs + MAX_SEGS / 2, (MAX_SEGS / 2) * sizeof(m->dsegs[0]));
		m->n_dsegs -= MAX_SEGS / 2;
	}
	m->dsegs[m->n_dsegs++] = (struct do_seg){ .ao = -1, .log0 = m->do_log_len, .end_ao = NEVER };
	m->do_running = true;
	m->do_error = false;
	m->do_part_len = 0;
	m->counts.do_commands++;
}

static void cancel_sub(struct cmodel *m, unsigned sub)
{
	if (sub == SUB_AI) {
		m->ai_running = false;
		m->ai_error = false;
	} else if (sub == SUB_AO && m->n_segs) {
		ao_advance(m);
		struct ao_seg *s = &m->segs[m->n_segs - 1];
		if (s->end_ns == NEVER)
			s->end_ns = s->trig_ns == NEVER ? s->trig_ns : now_ns(m);
		if (m->n_dsegs)
			do_end(m, seg_played(s, now_ns(m)));
		m->ao_running = false;
		m->ao_error = false;
	} else if (sub == SUB_DIO && m->n_dsegs) {
		struct do_seg *d = &m->dsegs[m->n_dsegs - 1];
		if (d->end_ao == NEVER) {
			uint64_t at = 0;
			if (d->ao >= 0)
				at = seg_played(&m->segs[d->ao], now_ns(m));
			d->end_ao = at > d->offset ? at : d->offset;
			/* the lines hold the last word output */
			if (d->written && d->ao >= 0 && d->end_ao > d->offset)
				hold_lines(m, lines_at(m, (uint32_t)d->ao, d->end_ao - 1));
		}
		m->do_running = false;
		m->do_error = false;
	}
	m->busy[sub] = NULL;
}

/* ---------------------------------------------------------------- instructions */


static int trigger(struct cmodel *m, unsigned sub)
{
	if (sub == SUB_AO && m->ao_running && m->n_segs && m->segs[m->n_segs - 1].trig_ns == NEVER) {
		struct ao_seg *s = &m->segs[m->n_segs - 1];
		s->trig_ns = now_ns(m);
		s->trig_wall_ns = mead_now_ns();
		s->trig_clock = clock_locked(m);
		s->scan_ns = scan_ns(m);
		if (m->do_running && m->n_dsegs) {
			struct do_seg *d = &m->dsegs[m->n_dsegs - 1];
			if (d->triggered && d->ao < 0) {
				d->ao = (int)(m->n_segs - 1);
				d->offset = 0;
			}
		}
		return 1;
	}
	if (sub == SUB_DIO && m->do_running && m->n_dsegs && !m->dsegs[m->n_dsegs - 1].triggered) {
		struct do_seg *d = &m->dsegs[m->n_dsegs - 1];
		d->triggered = true;
		if (m->ao_running && m->n_segs && m->segs[m->n_segs - 1].trig_ns != NEVER) {
			d->ao = (int)(m->n_segs - 1);
			d->offset = seg_played(&m->segs[m->n_segs - 1], now_ns(m));
		}
		return 1;
	}
	return -EAGAIN;
}

/* The levels driven from outside onto a digital subdevice's lines now. */
static uint32_t input_levels(const struct cmodel *m, bool di)
{
	uint64_t now = clock_locked(m);
	uint32_t v = 0;
	for (uint32_t i = 0; i < m->n_in_changes; i++) {
		const struct input_change *c = &m->in_changes[i];
		if (c->di == di && c->clock <= now)
			v = (v & ~c->mask) | (c->levels & c->mask);
	}
	return v;
}

/* What reading a digital subdevice's lines gives: the DIO's outputs read
 * back what they drive. */
static uint32_t lines_read(const struct cmodel *m, unsigned sub)
{
	if (sub == SUB_DI)
		return input_levels(m, true) & ((1u << DI_LINES) - 1u);
	return (m->dio & m->dio_out) | (input_levels(m, false) & ~m->dio_out);
}

static int dio_config(struct cmodel *m, comedi_insn *in, lsampl_t *data)
{
	unsigned chan = CR_CHAN(in->chanspec);
	if (in->subdev != SUB_DIO || !data || in->n < 1 || chan >= 32)
		return -EINVAL;
	switch (data[0]) {
	case INSN_CONFIG_DIO_INPUT:
		m->dio_out &= ~(1u << chan);
		return (int)in->n;
	case INSN_CONFIG_DIO_OUTPUT:
		m->dio_out |= 1u << chan;
		return (int)in->n;
	case INSN_CONFIG_DIO_QUERY:
		if (in->n < 2)
			return -EINVAL;
		data[1] = (m->dio_out >> chan) & 1u ? COMEDI_OUTPUT : COMEDI_INPUT;
		return (int)in->n;
	default:
		return -EINVAL;
	}
}

static int do_insn(struct cmodel *m, comedi_insn *in, lsampl_t *data)
{
	switch (in->insn) {
	case INSN_GTOD:
		if (data && in->n >= 2) {
			data[0] = 0;
			data[1] = 0;
		}
		return (int)in->n;
	case INSN_INTTRIG:
		if (in->subdev >= m->n_sub)
			return -EINVAL;
		if (data && data[0] != 0)
			return -EINVAL;
		return trigger(m, in->subdev);
	default:
		break;
	}
	if (in->subdev >= m->n_sub || (in->subdev == SUB_AO && !m->cfg.with_ao))
		return -EIO;
	if (m->busy[in->subdev])
		return -EBUSY;
	switch (in->insn) {
	case INSN_BITS:
		if ((in->subdev != SUB_DIO && in->subdev != SUB_DI) || !data || in->n != 2 || CR_CHAN(in->chanspec) != 0)
			return -EINVAL;
		if (in->subdev == SUB_DIO)
			log_dio(m, (m->dio & ~data[0]) | (data[1] & data[0]));
		if (data[0] == 0)
			m->counts.di_reads++;
		data[1] = lines_read(m, in->subdev);
		return (int)in->n;
	case INSN_CONFIG:
		return dio_config(m, in, data);
	case INSN_WRITE:
		if (in->subdev != SUB_AO || !data)
			return -EINVAL;
		for (unsigned i = 0; i < in->n; i++) {
			if (data[i] > m->ao_maxdata)
				return -EINVAL;
			m->dac[CR_CHAN(in->chanspec) % MAX_AO_CHAN] = data[i];
			m->counts.insn_ao_writes++;
			m->counts.insn_ao_nonzero += !cmodel_ao_is_zero(m, data[i]);
		}
		return (int)in->n;
	case INSN_READ:
		if (!data)
			return -EINVAL;
		for (unsigned i = 0; i < in->n; i++) {
			if (in->subdev == SUB_DIO || in->subdev == SUB_DI)
				data[i] = (lines_read(m, in->subdev) >> CR_CHAN(in->chanspec)) & 1u;
			else if (in->subdev == SUB_AO)
				data[i] = m->dac[CR_CHAN(in->chanspec) % MAX_AO_CHAN];
			else
				data[i] = m->ai_maxdata / 2;
		}
		return (int)in->n;
	default:
		return -EINVAL;
	}
}

/* ---------------------------------------------------------------- ioctls */

static unsigned sub_flags(const struct cmodel *m, unsigned sub)
{
	unsigned f = 0;
	if (sub == SUB_AI) {
		f = SDF_READABLE | SDF_GROUND | SDF_DIFF | (m->cfg.ai_no_cmd ? 0u : (SDF_CMD | SDF_CMD_READ));
		if (m->ai_bps == 4)
			f |= SDF_LSAMPL;
		if (m->ai_running)
			f |= SDF_RUNNING;
	} else if (sub == SUB_AO) {
		f = SDF_WRITABLE | SDF_GROUND | SDF_CMD | SDF_CMD_WRITE;
		if (m->ao_bps == 4)
			f |= SDF_LSAMPL;
		if (m->ao_running)
			f |= SDF_RUNNING;
	} else if (sub == SUB_DI) {
		f = SDF_READABLE;
	} else {
		f = SDF_READABLE | SDF_WRITABLE;
		if (m->cfg.dio_cmd)
			f |= SDF_CMD | SDF_CMD_WRITE | SDF_LSAMPL;
		if (m->do_running)
			f |= SDF_RUNNING;
	}
	if (m->busy[sub])
		f |= SDF_BUSY;
	return f;
}

static void fill_subdinfo(const struct cmodel *m, comedi_subdinfo *s, void *client)
{
	memset(s, 0, m->n_sub * sizeof(*s));
	s[SUB_AI] = (comedi_subdinfo){
		.type = COMEDI_SUBD_AI, .n_chan = m->cfg.ai_channels, .subd_flags = sub_flags(m, SUB_AI),
		.len_chanlist = m->cfg.ai_channels, .maxdata = m->ai_maxdata, .range_type = (1u << 16) | 4u,
		.insn_bits_support = COMEDI_UNSUPPORTED,
	};
	s[SUB_AO] = m->cfg.with_ao ? (comedi_subdinfo){
		.type = COMEDI_SUBD_AO, .n_chan = m->ao_nchan, .subd_flags = sub_flags(m, SUB_AO),
		.len_chanlist = m->ao_nchan, .maxdata = m->ao_maxdata, .range_type = (2u << 16) | 1u,
		.insn_bits_support = COMEDI_UNSUPPORTED,
	} : (comedi_subdinfo){ .type = COMEDI_SUBD_UNUSED };
	if (m->n_sub > SUB_DIO)
		s[SUB_DIO] = (comedi_subdinfo){
			.type = COMEDI_SUBD_DIO, .n_chan = 32, .subd_flags = sub_flags(m, SUB_DIO),
			.len_chanlist = 32, .maxdata = 1, .range_type = (3u << 16) | 1u,
			.insn_bits_support = COMEDI_SUPPORTED,
		};
	if (m->n_sub > SUB_DI)
		s[SUB_DI] = (comedi_subdinfo){
			.type = COMEDI_SUBD_DI, .n_chan = DI_LINES, .subd_flags = sub_flags(m, SUB_DI),
			.len_chanlist = DI_LINES, .maxdata = 1, .range_type = (3u << 16) | 1u,
			.insn_bits_support = COMEDI_SUPPORTED,
		};
	for (unsigned i = 0; i < m->n_sub; i++)
		if (m->busy[i] == client)
			s[i].subd_flags |= SDF_BUSY_OWNER;
}

static int bufinfo(struct cmodel *m, void *client, comedi_bufinfo *bi)
{
	unsigned sub = bi->subdevice;
	if (sub >= m->n_sub)
		return -EINVAL;
	if (m->busy[sub] != client)
		return -EINVAL;
	unsigned ss = bi->subdevice;
	memset(bi, 0, sizeof(*bi));
	bi->subdevice = ss;
	if (sub == SUB_AI) {
		uint64_t vis = ai_visible(m, clock_locked(m));
		if (m->ai_error && m->delivered >= vis) {
			cancel_sub(m, SUB_AI);
			return -EPIPE;
		}
		uint64_t sb = (uint64_t)m->n_scan * m->ai_bps;
		bi->buf_write_count = (unsigned)((vis - m->ai_start) * sb);
		bi->buf_read_count = (unsigned)((m->delivered - m->ai_start) * sb + m->partial);
		return 0;
	}
	if (sub == SUB_AO) {
		if (!m->ao_running) {
			bool e = m->ao_error;
			cancel_sub(m, SUB_AO);
			return e ? -EPIPE : 0;
		}
		struct ao_seg *s = &m->segs[m->n_segs - 1];
		uint64_t sb = (uint64_t)s->nchan * m->ao_bps;
		bi->buf_write_count = (unsigned)(s->written * sb + m->ao_part_len);
		bi->buf_read_count = (unsigned)(seg_played(s, now_ns(m)) * sb);
		return 0;
	}
	if (!m->do_running) {
		bool e = m->do_error;
		cancel_sub(m, SUB_DIO);
		return e ? -EPIPE : 0;
	}
	bi->buf_write_count = (unsigned)(m->dsegs[m->n_dsegs - 1].written * 4u);
	return 0;
}

static gboolean on_ioctl(UMockdevIoctlBase *base, UMockdevIoctlClient *client, gpointer user)
{
	struct cmodel *m = user;
	struct client *cl_state = client_of(client);
	gulong req = umockdev_ioctl_client_get_request(client);
	UMockdevIoctlData *arg = umockdev_ioctl_client_get_arg(client);
	long ret = 0;
	int err = 0;
	g_mutex_lock(&m->lock);
	advance(m);
	if (m->gone) {
		ret = -1;
		err = ENODEV;
		goto out;
	}
	switch (req) {
	case COMEDI_DEVINFO: {
		UMockdevIoctlData *d = res(arg, 0, sizeof(comedi_devinfo));
		comedi_devinfo *di = (comedi_devinfo *)d->data;
		memset(di, 0, sizeof(*di));
		di->version_code = (0u << 16) | (7u << 8) | 76u;
		di->n_subdevs = m->n_sub;
		snprintf(di->driver_name, sizeof(di->driver_name), "mead_model");
		snprintf(di->board_name, sizeof(di->board_name), "mea-daq-model");
		di->read_subdevice = cl_state ? cl_state->rsub : SUB_AI;
		di->write_subdevice = cl_state ? cl_state->wsub : -1;
		g_object_unref(d);
		break;
	}
	case COMEDI_SUBDINFO: {
		UMockdevIoctlData *d = res(arg, 0, m->n_sub * sizeof(comedi_subdinfo));
		fill_subdinfo(m, (comedi_subdinfo *)d->data, client);
		g_object_unref(d);
		break;
	}
	case COMEDI_CHANINFO:
		break;
	case COMEDI_RANGEINFO: {
		UMockdevIoctlData *d = res(arg, 0, sizeof(comedi_rangeinfo));
		comedi_rangeinfo *ri = (comedi_rangeinfo *)d->data;
		unsigned id = (ri->range_type >> 16) & 0xffff, len = ri->range_type & 0xffff;
		UMockdevIoctlData *k = res(d, offsetof(comedi_rangeinfo, range_ptr), len * sizeof(comedi_krange));
		comedi_krange *kr = k ? (comedi_krange *)k->data : NULL;
		for (unsigned i = 0; kr && i < len; i++) {
			if (id == 1 && i < 4)
				kr[i] = (comedi_krange){ ai_ranges_uv[i][0], ai_ranges_uv[i][1], UNIT_volt };
			else if (id == 2)
				kr[i] = (comedi_krange){ -10000000, 10000000, UNIT_volt };
			else
				kr[i] = (comedi_krange){ 0, 5000000, UNIT_volt };
		}
		if (k)
			g_object_unref(k);
		g_object_unref(d);
		break;
	}
	case COMEDI_CMD:
	case COMEDI_CMDTEST: {
		UMockdevIoctlData *d = res(arg, 0, sizeof(comedi_cmd));
		comedi_cmd *c = (comedi_cmd *)d->data;
		UMockdevIoctlData *cl = c->chanlist && c->chanlist_len
			? res(d, offsetof(comedi_cmd, chanlist), c->chanlist_len * sizeof(unsigned)) : NULL;
		unsigned *chanlist = cl ? (unsigned *)cl->data : NULL;
		if (req == COMEDI_CMD && c->subdev < m->n_sub && m->busy[c->subdev]) {
			ret = -1;
			err = EBUSY;
		} else {
			int r = cmdtest(m, c, chanlist);
			if (r < 0) {
				ret = -1;
				err = -r;
			} else if (req == COMEDI_CMDTEST) {
				ret = r;
			} else if (r != 0) {
				ret = -1;
				err = EAGAIN;
			} else {
				m->busy[c->subdev] = client;
				if (c->subdev == SUB_AI)
					start_ai(m, c, chanlist);
				else if (c->subdev == SUB_AO)
					start_ao(m, c, chanlist);
				else
					start_do(m);
			}
		}
		if (cl)
			g_object_unref(cl);
		g_object_unref(d);
		break;
	}
	case COMEDI_CANCEL: {
		unsigned long sub = *(unsigned long *)arg->data;
		if (sub >= m->n_sub) {
			ret = -1;
			err = EINVAL;
		} else if (m->busy[sub] && m->busy[sub] != client) {
			ret = -1;
			err = EBUSY;
		} else if (m->busy[sub]) {
			cancel_sub(m, (unsigned)sub);
		}
		break;
	}
	case COMEDI_POLL: {
		unsigned long sub = *(unsigned long *)arg->data;
		if (sub >= m->n_sub) {
			ret = -1;
			err = EINVAL;
		} else if (!m->busy[sub]) {
			ret = 0;
		} else if (m->busy[sub] != client) {
			ret = -1;
			err = EBUSY;
		} else if (m->cfg.no_poll || sub != SUB_AI) {
			ret = -1;
			err = EINVAL;
		} else {
			m->polled = ai_acquired(m, clock_locked(m));
			m->counts.polls++;
		}
		break;
	}
	case COMEDI_SETRSUBD:
	case COMEDI_SETWSUBD: {
		unsigned long sub = *(unsigned long *)arg->data;
		bool w = req == COMEDI_SETWSUBD;
		if (sub >= m->n_sub || !(sub_flags(m, (unsigned)sub) & (w ? SDF_CMD_WRITE : SDF_CMD_READ))) {
			ret = -1;
			err = EINVAL;
		} else if (cl_state) {
			int old = w ? cl_state->wsub : cl_state->rsub;
			if (old >= 0 && old != (int)sub && m->busy[old] == client) {
				ret = -1;
				err = EBUSY;
			} else if (w) {
				cl_state->wsub = (int)sub;
			} else {
				cl_state->rsub = (int)sub;
			}
		}
		break;
	}
	case COMEDI_INSN: {
		UMockdevIoctlData *d = res(arg, 0, sizeof(comedi_insn));
		comedi_insn *in = (comedi_insn *)d->data;
		UMockdevIoctlData *dd = in->n && in->data ? res(d, offsetof(comedi_insn, data), in->n * sizeof(lsampl_t)) : NULL;
		int r = do_insn(m, in, dd ? (lsampl_t *)dd->data : NULL);
		if (r < 0) {
			ret = -1;
			err = -r;
		} else {
			ret = r;
		}
		if (dd)
			g_object_unref(dd);
		g_object_unref(d);
		break;
	}
	case COMEDI_INSNLIST: {
		UMockdevIoctlData *d = res(arg, 0, sizeof(comedi_insnlist));
		comedi_insnlist *il = (comedi_insnlist *)d->data;
		UMockdevIoctlData *ins = res(d, offsetof(comedi_insnlist, insns), il->n_insns * sizeof(comedi_insn));
		unsigned done = 0;
		for (unsigned i = 0; ins && i < il->n_insns; i++) {
			comedi_insn *in = (comedi_insn *)ins->data + i;
			size_t off = i * sizeof(comedi_insn) + offsetof(comedi_insn, data);
			UMockdevIoctlData *dd = in->n && in->data ? res(ins, off, in->n * sizeof(lsampl_t)) : NULL;
			int r = do_insn(m, in, dd ? (lsampl_t *)dd->data : NULL);
			if (dd)
				g_object_unref(dd);
			if (r < 0) {
				ret = -1;
				err = -r;
				break;
			}
			done++;
		}
		if (ret == 0)
			ret = done;
		if (ins)
			g_object_unref(ins);
		g_object_unref(d);
		break;
	}
	case COMEDI_BUFINFO: {
		UMockdevIoctlData *d = res(arg, 0, sizeof(comedi_bufinfo));
		int r = bufinfo(m, client, (comedi_bufinfo *)d->data);
		if (r < 0) {
			ret = -1;
			err = -r;
		}
		g_object_unref(d);
		break;
	}
	case COMEDI_BUFCONFIG: {
		UMockdevIoctlData *d = res(arg, 0, sizeof(comedi_bufconfig));
		comedi_bufconfig *bc = (comedi_bufconfig *)d->data;
		uint32_t *size = bc->subdevice == SUB_AI ? &m->ai_buf_bytes : &m->ao_buf_bytes;
		if (bc->size) {
			if (m->busy[bc->subdevice]) {
				ret = -1;
				err = EBUSY;
				g_object_unref(d);
				break;
			}
			*size = bc->size > (1u << 24) ? 1u << 24 : bc->size;
		}
		bc->size = *size;
		bc->maximum_size = 1u << 24;
		g_object_unref(d);
		break;
	}
	case COMEDI_LOCK:
	case COMEDI_UNLOCK:
		break;
	default:
		ret = -1;
		err = ENOTTY;
	}
out:
	g_mutex_unlock(&m->lock);
	umockdev_ioctl_client_complete(client, ret, err);
	return TRUE;
}

static void fill_scan(struct cmodel *m)
{
	siggen_fill(m->gen, m->uvbuf, 1);
	for (uint32_t i = 0; i < m->n_scan; i++) {
		uint32_t code = uv_to_code(m, m->uvbuf[m->chan[i]], m->range[i]);
		if (m->ai_bps == 4)
			memcpy(m->cur_scan + 4 * i, &code, 4);
		else {
			uint16_t c16 = (uint16_t)code;
			memcpy(m->cur_scan + 2 * i, &c16, 2);
		}
	}
}

static gboolean on_read(UMockdevIoctlBase *base, UMockdevIoctlClient *client, gpointer user)
{
	struct cmodel *m = user;
	struct client *cs = client_of(client);
	UMockdevIoctlData *arg = umockdev_ioctl_client_get_arg(client);
	uint8_t *out = arg->data;
	size_t want = (size_t)arg->data_len;
	long ret;
	int err = 0;
	g_mutex_lock(&m->lock);
	advance(m);
	if (m->gone) {
		ret = -1;
		err = ENODEV;
	} else if (!cs || cs->rsub != SUB_AI || m->busy[SUB_AI] != client) {
		ret = -1;
		err = EINVAL;
	} else {
		uint64_t vis = ai_visible(m, clock_locked(m));
		size_t done = 0;
		const size_t scan_bytes = (size_t)m->n_scan * m->ai_bps;
		while (done < want) {
			if (m->partial == 0) {
				if (m->delivered >= vis)
					break;
				fill_scan(m);
			}
			size_t n = scan_bytes - m->partial;
			if (n > want - done)
				n = want - done;
			memcpy(out + done, m->cur_scan + m->partial, n);
			done += n;
			m->partial += (uint32_t)n;
			if (m->partial == scan_bytes) {
				m->partial = 0;
				m->delivered++;
			}
		}
		if (done > 0) {
			ret = (long)done;
		} else if (m->ai_error) {
			cancel_sub(m, SUB_AI);
			ret = -1;
			err = EPIPE;
		} else {
			ret = -1;
			err = EAGAIN;
		}
	}
	g_mutex_unlock(&m->lock);
	umockdev_ioctl_client_complete(client, ret, err);
	return TRUE;
}

static void log_push(uint32_t **log, size_t *len, size_t *cap, uint32_t v)
{
	if (*len == *cap) {
		*cap = *cap ? *cap * 2 : 1u << 16;
		*log = realloc(*log, *cap * sizeof(uint32_t));
	}
	(*log)[(*len)++] = v;
}

/* Bytes into an output command's buffer; whole scans reach the log. */
static long write_ao(struct cmodel *m, const uint8_t *p, size_t len, int *err)
{
	struct ao_seg *s = &m->segs[m->n_segs - 1];
	const size_t sb = (size_t)s->nchan * m->ao_bps;
	uint64_t queued = s->written * sb + m->ao_part_len - seg_played(s, now_ns(m)) * sb;
	size_t room = queued >= m->ao_buf_bytes ? 0 : m->ao_buf_bytes - (size_t)queued;
	size_t n = len < room ? len : room;
	if (n == 0) {
		*err = EAGAIN;
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		m->ao_part[m->ao_part_len++] = p[i];
		if (m->ao_part_len == sb) {
			for (uint32_t k = 0; k < s->nchan; k++) {
				uint32_t v;
				if (m->ao_bps == 4)
					memcpy(&v, m->ao_part + 4 * k, 4);
				else {
					uint16_t c;
					memcpy(&c, m->ao_part + 2 * k, 2);
					v = c;
				}
				log_push(&m->ao_log, &m->ao_log_len, &m->ao_log_cap, v);
			}
			s->written++;
			m->ao_part_len = 0;
		}
	}
	return (long)n;
}

static long write_do(struct cmodel *m, const uint8_t *p, size_t len)
{
	struct do_seg *d = &m->dsegs[m->n_dsegs - 1];
	for (size_t i = 0; i < len; i++) {
		m->do_part[m->do_part_len++] = p[i];
		if (m->do_part_len == 4) {
			uint32_t v;
			memcpy(&v, m->do_part, 4);
			log_push(&m->do_log, &m->do_log_len, &m->do_log_cap, v);
			d->written++;
			m->do_part_len = 0;
		}
	}
	return (long)len;
}

static gboolean on_write(UMockdevIoctlBase *base, UMockdevIoctlClient *client, gpointer user)
{
	struct cmodel *m = user;
	struct client *cs = client_of(client);
	UMockdevIoctlData *arg = umockdev_ioctl_client_get_arg(client);
	long ret = -1;
	int err = 0;
	g_mutex_lock(&m->lock);
	advance(m);
	if (m->gone) {
		err = ENODEV;
	} else if (!cs || cs->wsub < 0 || m->busy[cs->wsub] != client) {
		err = EINVAL;
	} else if (cs->wsub == SUB_AO) {
		if (!m->ao_running) {
			bool e = m->ao_error;
			cancel_sub(m, SUB_AO);
			if (e)
				err = EPIPE;
			else
				ret = 0;
		} else {
			ret = write_ao(m, arg->data, (size_t)arg->data_len, &err);
		}
	} else if (cs->wsub == SUB_DIO) {
		if (!m->do_running) {
			bool e = m->do_error;
			cancel_sub(m, SUB_DIO);
			if (e)
				err = EPIPE;
			else
				ret = 0;
		} else {
			ret = write_do(m, arg->data, (size_t)arg->data_len);
		}
	} else {
		err = EINVAL;
	}
	g_mutex_unlock(&m->lock);
	umockdev_ioctl_client_complete(client, ret, err);
	return TRUE;
}

static void on_connected(UMockdevIoctlBase *base, UMockdevIoctlClient *client, gpointer user)
{
	struct cmodel *m = user;
	struct client *c = calloc(1, sizeof(*c));
	c->rsub = SUB_AI;
	c->wsub = m->cfg.with_ao ? SUB_AO : -1;
	g_object_set_data_full(G_OBJECT(client), "cmodel-client", c, free);
}

/* Closing the file cancels the commands it started. */
static void on_vanished(UMockdevIoctlBase *base, UMockdevIoctlClient *client, gpointer user)
{
	struct cmodel *m = user;
	g_mutex_lock(&m->lock);
	advance(m);
	for (unsigned s = 0; s < m->n_sub; s++)
		if (m->busy[s] == client)
			cancel_sub(m, s);
	g_mutex_unlock(&m->lock);
}

struct cmodel *cmodel_new(void *tbv, const struct cmodel_config *cfg, struct siggen *gen, char *err, size_t err_len)
{
	UMockdevTestbed *tb = tbv;
	struct cmodel *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->cfg = *cfg;
	m->gen = gen;
	m->n_sub = cfg->no_dio ? 2 : cfg->with_di ? 4 : 3;
	m->ai_bps = cfg->ai_bits > 16 ? 4 : 2;
	m->ao_bps = cfg->ao_bits > 16 ? 4 : 2;
	m->ai_maxdata = bits_maxdata(cfg->ai_bits);
	m->ao_maxdata = bits_maxdata(cfg->ao_bits);
	m->ao_nchan = cfg->ao_channels ? cfg->ao_channels : 2;
	if (m->ao_nchan > MAX_AO_CHAN)
		m->ao_nchan = MAX_AO_CHAN;
	m->ai_buf_bytes = cfg->ai_buffer_bytes ? cfg->ai_buffer_bytes : 1u << 20;
	m->ao_buf_bytes = cfg->ao_buffer_bytes ? cfg->ao_buffer_bytes : 1u << 20;
	for (unsigned k = 0; k < MAX_AO_CHAN; k++)
		m->dac[k] = (m->ao_maxdata + 1) / 2;
	m->uvbuf = calloc(cfg->ai_channels, sizeof(float));
	g_mutex_init(&m->lock);
	const char *name = strrchr(cfg->devnode, '/');
	name = name ? name + 1 : cfg->devnode;
	char *rec = g_strdup_printf("P: /devices/virtual/comedi/%s\nN: %s\nE: DEVNAME=%s\nE: SUBSYSTEM=comedi\nE: MAJOR=98\nE: MINOR=0\n\n",
				    name, name, cfg->devnode);
	GError *e = NULL;
	if (!umockdev_testbed_add_from_string(tb, rec, &e)) {
		snprintf(err, err_len, "add comedi device: %s", e ? e->message : "?");
		g_free(rec);
		goto fail;
	}
	g_free(rec);
	m->handler = umockdev_ioctl_base_new();
	g_signal_connect(m->handler, "handle-ioctl", G_CALLBACK(on_ioctl), m);
	g_signal_connect(m->handler, "handle-read", G_CALLBACK(on_read), m);
	g_signal_connect(m->handler, "handle-write", G_CALLBACK(on_write), m);
	g_signal_connect(m->handler, "client-connected", G_CALLBACK(on_connected), m);
	g_signal_connect(m->handler, "client-vanished", G_CALLBACK(on_vanished), m);
	if (!umockdev_testbed_attach_ioctl(tb, cfg->devnode, m->handler, &e)) {
		snprintf(err, err_len, "attach ioctl handler: %s", e ? e->message : "?");
		goto fail;
	}
	return m;
fail:
	if (e)
		g_error_free(e);
	cmodel_free(m);
	return NULL;
}

void cmodel_free(struct cmodel *m)
{
	if (!m)
		return;
	if (m->handler)
		g_object_unref(m->handler);
	free(m->uvbuf);
	free(m->ao_log);
	free(m->do_log);
	g_mutex_clear(&m->lock);
	free(m);
}

void cmodel_set_clock(struct cmodel *m, uint64_t samples)
{
	g_mutex_lock(&m->lock);
	m->clock = samples;
	g_mutex_unlock(&m->lock);
}

void cmodel_set_realtime(struct cmodel *m, bool on)
{
	g_mutex_lock(&m->lock);
	if (on && !m->realtime) {
		m->rt_base_clock = m->clock;
		m->rt_base_ns = mead_now_ns();
		m->rt_started = m->ai_running;
	} else if (!on && m->realtime) {
		m->clock = clock_locked(m);
	}
	m->realtime = on;
	g_mutex_unlock(&m->lock);
}

uint64_t cmodel_clock(struct cmodel *m)
{
	g_mutex_lock(&m->lock);
	uint64_t c = clock_locked(m);
	g_mutex_unlock(&m->lock);
	return c;
}

void cmodel_force_overflow(struct cmodel *m)
{
	g_mutex_lock(&m->lock);
	advance(m);
	if (m->ai_running && !m->ai_error) {
		m->ai_error = true;
		m->ai_stop = clock_locked(m);
		m->counts.ai_overflows++;
	}
	g_mutex_unlock(&m->lock);
}

void cmodel_remove(struct cmodel *m)
{
	g_mutex_lock(&m->lock);
	advance(m);
	/* detaching cancels every command; the outputs hold what they had */
	for (unsigned s = 0; s < m->n_sub; s++)
		if (m->busy[s])
			cancel_sub(m, s);
	m->gone = true;
	g_mutex_unlock(&m->lock);
}

/* Pulses of one channel of one output command, from its log. */
static uint32_t seg_pulses(struct cmodel *m, uint32_t si, uint32_t k, uint64_t now, struct cmodel_stim *out,
			   uint32_t n, uint32_t cap)
{
	const struct ao_seg *s = &m->segs[si];
	uint64_t played = seg_played(s, now);
	uint64_t i = 0;
	while (i < played && n < cap) {
		uint32_t c = seg_code(m, s, i, k);
		int side = code_side(m, c);
		if (side == 0) {
			i++;
			continue;
		}
		struct cmodel_stim *st = &out[n++];
		memset(st, 0, sizeof(*st));
		uint64_t start = i;
		st->channel = (uint16_t)s->chan[k];
		st->ao_period_ns = s->period_ns;
		st->trigger_sample = s->trig_clock;
		st->start_ns = s->trig_ns + start * s->period_ns;
		st->start_sample = (st->start_ns + s->scan_ns - 1) / s->scan_ns;
		st->t_ns = s->trig_wall_ns + start * s->period_ns;
		st->dio = lines_at(m, si, start);
		st->phase1_v = cmodel_ao_volts(m, c);
		while (i < played && seg_code(m, s, i, k) == c)
			i++;
		st->phase1_ao = (uint32_t)(i - start);
		uint64_t g0 = i;
		while (i < played && code_side(m, seg_code(m, s, i, k)) == 0 && i - g0 < 100000)
			i++;
		uint64_t end = g0;
		if (i < played && code_side(m, seg_code(m, s, i, k)) == -side) {
			st->gap_ao = (uint32_t)(i - g0);
			uint32_t c2 = seg_code(m, s, i, k);
			st->phase2_v = cmodel_ao_volts(m, c2);
			uint64_t p2 = i;
			while (i < played && seg_code(m, s, i, k) == c2)
				i++;
			st->phase2_ao = (uint32_t)(i - p2);
			end = i;
		} else {
			i = g0;
		}
		/* the command ended while it was still off 0 V */
		st->cut = end >= played && s->end_ns != NEVER;
		st->dio_steady = true;
		for (uint64_t j = start; j < end; j++)
			if (lines_at(m, si, j) != st->dio) {
				st->dio_steady = false;
				break;
			}
	}
	return n;
}

static int cmp_stim(const void *a, const void *b)
{
	const struct cmodel_stim *x = a, *y = b;
	return x->start_ns < y->start_ns ? -1 : x->start_ns > y->start_ns;
}

uint32_t cmodel_stims(struct cmodel *m, struct cmodel_stim *out, uint32_t cap)
{
	g_mutex_lock(&m->lock);
	advance(m);
	uint64_t now = now_ns(m);
	uint32_t n = 0;
	for (uint32_t si = 0; si < m->n_segs; si++)
		for (uint32_t k = 0; k < m->segs[si].nchan; k++)
			n = seg_pulses(m, si, k, now, out, n, cap);
	g_mutex_unlock(&m->lock);
	qsort(out, n, sizeof(*out), cmp_stim);
	return n;
}

uint32_t cmodel_dio(struct cmodel *m)
{
	g_mutex_lock(&m->lock);
	advance(m);
	uint32_t d = m->dio;
	if (m->n_dsegs && m->n_segs) {
		const struct do_seg *ds = &m->dsegs[m->n_dsegs - 1];
		if (ds->ao >= 0 && ds->end_ao == NEVER) {
			uint64_t p = seg_played(&m->segs[ds->ao], now_ns(m));
			if (p > ds->offset)
				d = lines_at(m, (uint32_t)ds->ao, p - 1);
		}
	}
	g_mutex_unlock(&m->lock);
	return d;
}

void cmodel_set_input(struct cmodel *m, bool di, uint64_t clock, uint32_t mask, uint32_t levels)
{
	g_mutex_lock(&m->lock);
	if (m->n_in_changes < MAX_INPUT_CHANGES)
		m->in_changes[m->n_in_changes++] = (struct input_change){ clock, di, mask, levels };
	g_mutex_unlock(&m->lock);
}

void cmodel_clear_inputs(struct cmodel *m)
{
	g_mutex_lock(&m->lock);
	m->n_in_changes = 0;
	g_mutex_unlock(&m->lock);
}

uint32_t cmodel_dio_outputs(struct cmodel *m)
{
	g_mutex_lock(&m->lock);
	uint32_t o = m->dio_out;
	g_mutex_unlock(&m->lock);
	return o;
}

uint32_t cmodel_ao_code(struct cmodel *m, unsigned chan)
{
	g_mutex_lock(&m->lock);
	advance(m);
	uint32_t c = m->dac[chan % MAX_AO_CHAN];
	g_mutex_unlock(&m->lock);
	return c;
}

void cmodel_counts(struct cmodel *m, struct cmodel_counts *out)
{
	g_mutex_lock(&m->lock);
	advance(m);
	*out = m->counts;
	g_mutex_unlock(&m->lock);
}

void cmodel_last_ai_cmd(struct cmodel *m, struct cmodel_ai_cmd *out)
{
	g_mutex_lock(&m->lock);
	*out = m->last_ai;
	g_mutex_unlock(&m->lock);
}

uint64_t cmodel_ai_start(struct cmodel *m)
{
	g_mutex_lock(&m->lock);
	uint64_t s = m->ai_start;
	g_mutex_unlock(&m->lock);
	return s;
}

uint64_t cmodel_ai_overflow_at(struct cmodel *m)
{
	g_mutex_lock(&m->lock);
	uint64_t s = m->ai_stop;
	g_mutex_unlock(&m->lock);
	return s;
}

uint64_t cmodel_ai_rate(struct cmodel *m)
{
	return m->rate;
}

uint64_t cmodel_stream_start_ns(struct cmodel *m)
{
	return m->stream_start_ns;
}
