/* SPDX-License-Identifier: MIT */
/*
 * A Comedi DAQ board behind an emulated /dev/comediN: the ioctls, read()
 * and write() that comedilib issues are answered here, the way the kernel's
 * comedi core and a board driver would.  Subdevices: 0 analog input (16 bit,
 * four bipolar ranges, streaming), 1 analog output (16 bit, +-10 V,
 * streaming with an internal trigger), 2 digital I/O (32 lines).
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

#define N_SUB 3
#define SUB_AI 0
#define SUB_AO 1
#define SUB_DIO 2
#define AO_WAVE_MAX 65536
#define MAX_STIMS 4096

static const int ai_ranges_uv[][2] = {
	{ -10000000, 10000000 }, { -5000000, 5000000 }, { -1000000, 1000000 }, { -200000, 200000 },
};

struct cmodel {
	struct cmodel_config cfg;
	UMockdevIoctlBase *handler;
	struct siggen *gen;
	GMutex lock;
	/* acquisition */
	bool running, overflowed, realtime;
	uint64_t clock;              /* virtual clock (samples) */
	uint64_t t0_ns;              /* real-time origin */
	uint64_t stream_start_ns;
	uint32_t scan_ns, rate;
	uint32_t n_scan;
	unsigned chan[256], range[256];
	uint64_t delivered;          /* scans handed to the reader */
	uint32_t partial;            /* bytes of the current scan already read */
	uint16_t cur_scan[256];
	float *uvbuf;
	/* analog output */
	bool ao_armed;
	uint32_t ao_period_ns, ao_stop;
	uint16_t ao_wave[AO_WAVE_MAX];
	uint32_t ao_len;
	uint32_t dio;
	struct cmodel_stim stims[MAX_STIMS];
	uint32_t n_stims;
};

static uint64_t clock_locked(struct cmodel *m)
{
	if (m->realtime && m->running)
		return (mead_now_ns() - m->t0_ns) / m->scan_ns;
	return m->clock;
}

static UMockdevIoctlData *res(UMockdevIoctlData *d, size_t off, size_t len)
{
	GError *e = NULL;
	UMockdevIoctlData *r = umockdev_ioctl_data_resolve(d, off, len, &e);
	if (e)
		g_error_free(e);
	return r;
}

static uint16_t uv_to_code(const struct cmodel *m, float uv, unsigned range)
{
	double v = uv * 1e-6 * m->cfg.amp_gain;
	double lo = ai_ranges_uv[range][0] * 1e-6, hi = ai_ranges_uv[range][1] * 1e-6;
	double c = (v - lo) / (hi - lo) * 65535.0;
	if (c < 0)
		c = 0;
	if (c > 65535)
		c = 65535;
	return (uint16_t)lround(c);
}

static double ao_volts(uint16_t code)
{
	return -10.0 + 20.0 * code / 65535.0;
}

static int cmd_test(struct cmodel *m, comedi_cmd *c, unsigned *chanlist)
{
	if (c->subdev == SUB_AI) {
		if (m->cfg.ai_no_cmd)
			return -EIO;
		if (c->start_src != TRIG_NOW || c->scan_begin_src != TRIG_TIMER ||
		    (c->convert_src != TRIG_TIMER && c->convert_src != TRIG_NOW) ||
		    c->scan_end_src != TRIG_COUNT || (c->stop_src != TRIG_NONE && c->stop_src != TRIG_COUNT))
			return 1;
		int r = 0;
		if (c->chanlist_len == 0 || c->chanlist_len > m->cfg.ai_channels || c->scan_end_arg != c->chanlist_len)
			return 3;
		/* fastest scan the converter allows, rounded up to 100 ns steps */
		uint64_t min_ns = ((uint64_t)c->chanlist_len * 1000000000ull + m->cfg.max_aggregate_hz - 1) /
				  m->cfg.max_aggregate_hz;
		min_ns = (min_ns + 99) / 100 * 100;
		if (c->scan_begin_arg < min_ns) {
			c->scan_begin_arg = (unsigned)min_ns;
			r = 4;
		}
		if (c->scan_begin_arg % 100) {
			c->scan_begin_arg = c->scan_begin_arg / 100 * 100;
			r = 4;
		}
		if (c->convert_src == TRIG_TIMER && c->convert_arg * c->chanlist_len > c->scan_begin_arg) {
			c->convert_arg = c->scan_begin_arg / c->chanlist_len;
			r = 4;
		}
		if (chanlist) {
			for (unsigned i = 0; i < c->chanlist_len; i++)
				if (CR_CHAN(chanlist[i]) >= m->cfg.ai_channels || CR_RANGE(chanlist[i]) >= 4)
					return 5;
		}
		return r;
	}
	if (c->subdev == SUB_AO && m->cfg.with_ao) {
		if (c->start_src != TRIG_INT || c->scan_begin_src != TRIG_TIMER || c->stop_src != TRIG_COUNT)
			return 1;
		if (c->scan_begin_arg < 1000) {
			c->scan_begin_arg = 1000;
			return 4;
		}
		return 0;
	}
	return -EINVAL;
}

static void start_ai(struct cmodel *m, comedi_cmd *c, unsigned *chanlist)
{
	m->n_scan = c->chanlist_len;
	for (unsigned i = 0; i < c->chanlist_len && i < 256; i++) {
		m->chan[i] = CR_CHAN(chanlist[i]);
		m->range[i] = CR_RANGE(chanlist[i]);
	}
	m->scan_ns = c->scan_begin_arg;
	m->rate = 1000000000u / c->scan_begin_arg;
	/* samples lost while the board was stopped are skipped */
	uint64_t now = clock_locked(m);
	if (now > m->delivered && !m->realtime)
		siggen_skip(m->gen, (uint32_t)(now - m->delivered));
	if (!m->realtime)
		m->delivered = now;
	m->partial = 0;
	m->running = true;
	m->overflowed = false;
	m->t0_ns = mead_now_ns();
	if (m->realtime) {
		/* the device clock restarts from what has been delivered */
		m->t0_ns -= m->delivered * m->scan_ns;
	}
	if (!m->stream_start_ns)
		m->stream_start_ns = m->t0_ns;
}

static void record_stim(struct cmodel *m)
{
	if (m->n_stims >= MAX_STIMS)
		return;
	struct cmodel_stim *s = &m->stims[m->n_stims++];
	memset(s, 0, sizeof(*s));
	s->t_ns = mead_now_ns();
	s->trigger_sample = clock_locked(m);
	s->dio = m->dio;
	s->ao_period_ns = m->ao_period_ns;
	uint16_t zero = 32768;
	uint32_t i = 0, n = m->ao_len;
	while (i < n && abs((int)m->ao_wave[i] - zero) <= 1)
		i++;
	uint32_t pad = i;
	if (i < n)
		s->phase1_v = ao_volts(m->ao_wave[i]);
	while (i < n && m->ao_wave[i] == m->ao_wave[pad])
		i++;
	s->phase1_ao = i - pad;
	uint32_t g0 = i;
	while (i < n && abs((int)m->ao_wave[i] - zero) <= 1)
		i++;
	s->gap_ao = i - g0;
	uint32_t p2 = i;
	if (i < n)
		s->phase2_v = ao_volts(m->ao_wave[i]);
	while (i < n && m->ao_wave[i] == m->ao_wave[p2])
		i++;
	s->phase2_ao = i - p2;
	uint64_t ai_ns = m->scan_ns ? m->scan_ns : 40000;
	s->start_sample = s->trigger_sample + ((uint64_t)pad * m->ao_period_ns + ai_ns / 2) / ai_ns;
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
	case INSN_BITS:
		if (in->subdev != SUB_DIO || !data || in->n < 2)
			return -EINVAL;
		m->dio = (m->dio & ~data[0]) | (data[1] & data[0]);
		data[1] = m->dio;
		return (int)in->n;
	case INSN_CONFIG:
		return in->subdev == SUB_DIO ? (int)in->n : -EINVAL;
	case INSN_WRITE:
		if (in->subdev != SUB_AO || !m->cfg.with_ao)
			return -EINVAL;
		return (int)in->n;
	case INSN_READ:
		if (in->subdev == SUB_DIO && data && in->n >= 1) {
			data[0] = (m->dio >> CR_CHAN(in->chanspec)) & 1u;
			return (int)in->n;
		}
		return -EINVAL;
	case INSN_INTTRIG:
		if (in->subdev != SUB_AO || !m->ao_armed)
			return -EAGAIN;
		record_stim(m);
		m->ao_armed = false;
		return (int)in->n;
	default:
		return -EINVAL;
	}
}

static gboolean on_ioctl(UMockdevIoctlBase *base, UMockdevIoctlClient *client, gpointer user)
{
	struct cmodel *m = user;
	gulong req = umockdev_ioctl_client_get_request(client);
	UMockdevIoctlData *arg = umockdev_ioctl_client_get_arg(client);
	long ret = 0;
	int err = 0;
	g_mutex_lock(&m->lock);
	switch (req) {
	case COMEDI_DEVINFO: {
		UMockdevIoctlData *d = res(arg, 0, sizeof(comedi_devinfo));
		comedi_devinfo *di = (comedi_devinfo *)d->data;
		memset(di, 0, sizeof(*di));
		di->version_code = (0u << 16) | (7u << 8) | 76u;
		di->n_subdevs = N_SUB;
		snprintf(di->driver_name, sizeof(di->driver_name), "mead_model");
		snprintf(di->board_name, sizeof(di->board_name), "mea-daq-model");
		di->read_subdevice = SUB_AI;
		di->write_subdevice = m->cfg.with_ao ? SUB_AO : -1;
		g_object_unref(d);
		break;
	}
	case COMEDI_SUBDINFO: {
		UMockdevIoctlData *d = res(arg, 0, N_SUB * sizeof(comedi_subdinfo));
		comedi_subdinfo *s = (comedi_subdinfo *)d->data;
		memset(s, 0, N_SUB * sizeof(*s));
		s[SUB_AI] = (comedi_subdinfo){
			.type = COMEDI_SUBD_AI, .n_chan = m->cfg.ai_channels,
			.subd_flags = SDF_READABLE | SDF_GROUND | SDF_DIFF |
				      (m->cfg.ai_no_cmd ? 0u : (SDF_CMD | SDF_CMD_READ)) | (m->running ? SDF_RUNNING | SDF_BUSY : 0u),
			.len_chanlist = m->cfg.ai_channels, .maxdata = 65535, .range_type = (1u << 16) | 4u,
			.insn_bits_support = COMEDI_UNSUPPORTED,
		};
		s[SUB_AO] = m->cfg.with_ao ? (comedi_subdinfo){
			.type = COMEDI_SUBD_AO, .n_chan = 2,
			.subd_flags = SDF_WRITABLE | SDF_GROUND | SDF_CMD | SDF_CMD_WRITE,
			.len_chanlist = 2, .maxdata = 65535, .range_type = (2u << 16) | 1u,
			.insn_bits_support = COMEDI_UNSUPPORTED,
		} : (comedi_subdinfo){ .type = COMEDI_SUBD_UNUSED };
		s[SUB_DIO] = (comedi_subdinfo){
			.type = COMEDI_SUBD_DIO, .n_chan = 32, .subd_flags = SDF_READABLE | SDF_WRITABLE,
			.len_chanlist = 32, .maxdata = 1, .range_type = (3u << 16) | 1u,
			.insn_bits_support = COMEDI_SUPPORTED,
		};
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
		int r = cmd_test(m, c, chanlist);
		if (r < 0) {
			ret = -1;
			err = -r;
		} else if (req == COMEDI_CMDTEST) {
			ret = r;
		} else if (r != 0) {
			ret = -1;
			err = EINVAL;
		} else if (c->subdev == SUB_AI) {
			if (m->running) {
				ret = -1;
				err = EBUSY;
			} else {
				start_ai(m, c, chanlist);
			}
		} else {
			m->ao_armed = true;
			m->ao_period_ns = c->scan_begin_arg;
			m->ao_stop = c->stop_arg;
			m->ao_len = 0;
		}
		if (cl)
			g_object_unref(cl);
		g_object_unref(d);
		break;
	}
	case COMEDI_CANCEL: {
		unsigned long sub = *(unsigned long *)arg->data;
		if (sub == SUB_AI) {
			m->running = false;
			m->overflowed = false;
		} else if (sub == SUB_AO) {
			m->ao_armed = false;
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
		comedi_bufinfo *bi = (comedi_bufinfo *)d->data;
		unsigned sub = bi->subdevice;
		memset(bi, 0, sizeof(*bi));
		bi->subdevice = sub;
		if (sub == SUB_AI && m->running) {
			uint64_t avail = clock_locked(m) - m->delivered;
			bi->buf_write_count = (unsigned)(avail * m->n_scan * 2 + m->delivered * m->n_scan * 2);
			bi->buf_read_count = (unsigned)(m->delivered * m->n_scan * 2 + m->partial);
		}
		g_object_unref(d);
		break;
	}
	case COMEDI_BUFCONFIG: {
		UMockdevIoctlData *d = res(arg, 0, sizeof(comedi_bufconfig));
		comedi_bufconfig *bc = (comedi_bufconfig *)d->data;
		if (bc->size == 0)
			bc->size = 1u << 20;
		bc->maximum_size = 1u << 24;
		g_object_unref(d);
		break;
	}
	case COMEDI_LOCK:
	case COMEDI_UNLOCK:
	case COMEDI_POLL:
		break;
	default:
		ret = -1;
		err = ENOTTY;
	}
	g_mutex_unlock(&m->lock);
	umockdev_ioctl_client_complete(client, ret, err);
	return TRUE;
}

static gboolean on_read(UMockdevIoctlBase *base, UMockdevIoctlClient *client, gpointer user)
{
	struct cmodel *m = user;
	UMockdevIoctlData *arg = umockdev_ioctl_client_get_arg(client);
	uint8_t *out = arg->data;
	size_t want = (size_t)arg->data_len;
	long ret;
	int err = 0;
	g_mutex_lock(&m->lock);
	if (m->overflowed) {
		ret = -1;
		err = EPIPE;
	} else if (!m->running) {
		ret = 0;
	} else {
		uint64_t now = clock_locked(m);
		size_t done = 0;
		const size_t scan_bytes = m->n_scan * 2u;
		while (done < want) {
			if (m->partial == 0) {
				if (m->delivered >= now)
					break;
				siggen_fill(m->gen, m->uvbuf, 1);
				for (uint32_t i = 0; i < m->n_scan; i++)
					m->cur_scan[i] = uv_to_code(m, m->uvbuf[m->chan[i]], m->range[i]);
			}
			size_t n = scan_bytes - m->partial;
			if (n > want - done)
				n = want - done;
			memcpy(out + done, (uint8_t *)m->cur_scan + m->partial, n);
			done += n;
			m->partial += (uint32_t)n;
			if (m->partial == scan_bytes) {
				m->partial = 0;
				m->delivered++;
			}
		}
		if (done == 0) {
			ret = -1;
			err = EAGAIN;
		} else {
			ret = (long)done;
		}
	}
	g_mutex_unlock(&m->lock);
	umockdev_ioctl_client_complete(client, ret, err);
	return TRUE;
}

static gboolean on_write(UMockdevIoctlBase *base, UMockdevIoctlClient *client, gpointer user)
{
	struct cmodel *m = user;
	UMockdevIoctlData *arg = umockdev_ioctl_client_get_arg(client);
	long ret;
	int err = 0;
	g_mutex_lock(&m->lock);
	if (!m->ao_armed) {
		ret = -1;
		err = EINVAL;
	} else {
		size_t n = (size_t)arg->data_len / 2;
		if (m->ao_len + n > AO_WAVE_MAX)
			n = AO_WAVE_MAX - m->ao_len;
		memcpy(m->ao_wave + m->ao_len, arg->data, n * 2);
		m->ao_len += (uint32_t)n;
		ret = (long)(n * 2);
	}
	g_mutex_unlock(&m->lock);
	umockdev_ioctl_client_complete(client, ret, err);
	return TRUE;
}

struct cmodel *cmodel_new(void *tbv, const struct cmodel_config *cfg, struct siggen *gen, char *err, size_t err_len)
{
	UMockdevTestbed *tb = tbv;
	struct cmodel *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->cfg = *cfg;
	m->gen = gen;
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
	if (m->running) {
		m->overflowed = true;
		m->running = false;
	}
	g_mutex_unlock(&m->lock);
}

uint32_t cmodel_stims(struct cmodel *m, struct cmodel_stim *out, uint32_t cap)
{
	g_mutex_lock(&m->lock);
	uint32_t n = m->n_stims < cap ? m->n_stims : cap;
	memcpy(out, m->stims, n * sizeof(*out));
	g_mutex_unlock(&m->lock);
	return n;
}

uint32_t cmodel_dio(struct cmodel *m)
{
	g_mutex_lock(&m->lock);
	uint32_t d = m->dio;
	g_mutex_unlock(&m->lock);
	return d;
}

uint64_t cmodel_ai_rate(struct cmodel *m)
{
	return m->rate;
}

uint64_t cmodel_stream_start_ns(struct cmodel *m)
{
	return m->stream_start_ns;
}
