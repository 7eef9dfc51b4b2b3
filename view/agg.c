/* SPDX-License-Identifier: MIT */
#include "view/agg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/core/json.h"
#include "lib/signal/signal.h"

#define STATUS_LIMITS ((struct mead_json_limits){ 4u << 20, 64, 1u << 20, 1u << 20 })
#define FRAME_LIST_MAX 100000u   /* pulses or events listed per frame; more are counted */

struct mv_agg {
	struct mv_agg_params p;

	bool have_status;
	uint32_t rate_hz, electrodes, raw_channels;
	float uv_per_count;
	char *status;
	size_t status_len, status_cap;
	float *driver_thr;               /* status.driver.thresholds_uv, when a driver reports them */
	uint32_t n_driver_thr;

	uint64_t counts[MV_MAX_ELECTRODES];
	uint32_t max_electrode_seen;     /* + 1 */
	uint64_t out_of_range, bad, spikes_total, stim_total, events_total;
	struct mv_seq seq[MEAD_KIND_COUNT + 1];
	bool spikes_any;
	uint64_t latest_sample;
	bool behind;
	uint64_t detail_skipped;

	uint64_t frame_no;
	struct listed_spike {
		uint64_t sample;
		uint16_t electrode;
	} *fs;
	uint32_t fs_n, fs_cap;
	uint64_t fs_unlisted, list_unlisted;
	struct mv_stim *st;
	uint32_t st_n, st_cap;
	struct mead_event *ev;
	uint32_t ev_n, ev_cap;

	uint32_t channels, bin_samples;  /* raw as it is being binned */
	bool bin_open;
	uint64_t bin_start;
	int16_t *bmin, *bmax, *rec;
	uint64_t *ob_sample;
	int16_t *ob;                     /* ob_n x channels x (min, max) */
	uint32_t ob_n, ob_cap;

	struct mead_sig *sig;
	float *uv;
	size_t uv_cap;
	float *thr;
	struct mead_spike sig_spikes[512];
	struct mead_event sig_events[64];
};

int mv_agg_new(const struct mv_agg_params *p, struct mv_agg **ret)
{
	struct mv_agg *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	if (p)
		a->p = *p;
	if (!a->p.max_frame_spikes)
		a->p.max_frame_spikes = 20000;
	*ret = a;
	return 0;
}

static void raw_reset(struct mv_agg *a)
{
	mead_sig_free(a->sig);
	a->sig = NULL;
	free(a->bmin);
	free(a->bmax);
	free(a->rec);
	free(a->ob_sample);
	free(a->ob);
	free(a->uv);
	free(a->thr);
	a->bmin = a->bmax = a->rec = a->ob = NULL;
	a->ob_sample = NULL;
	a->uv = a->thr = NULL;
	a->uv_cap = 0;
	a->ob_n = a->ob_cap = 0;
	a->channels = 0;
	a->bin_open = false;
}

void mv_agg_free(struct mv_agg *a)
{
	if (!a)
		return;
	raw_reset(a);
	free(a->status);
	free(a->driver_thr);
	free(a->fs);
	free(a->st);
	free(a->ev);
	free(a);
}

void mv_agg_set_behind(struct mv_agg *a, bool behind)
{
	a->behind = behind;
}

void mv_agg_bad_message(struct mv_agg *a)
{
	a->bad++;
}

static int grow(void **p, uint32_t *cap, uint32_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	uint32_t n = *cap ? *cap : 256;
	while (n < need)
		n *= 2;
	void *q = realloc(*p, (size_t)n * elem);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = n;
	return 0;
}

static void take_status(struct mv_agg *a, const char *json, size_t len)
{
	struct mead_json *doc;
	const struct mead_json_limits lim = STATUS_LIMITS;

	if (mead_json_parse(json, len, &lim, &doc, NULL, 0) < 0) {
		a->bad++;
		return;
	}
	const struct mead_json_value *root = mead_json_root(doc);
	if (root->type != MEAD_JSON_OBJECT) {
		mead_json_free(doc);
		a->bad++;
		return;
	}
	if (len + 1 > a->status_cap) {
		char *n = realloc(a->status, len + 1);
		if (!n) {
			mead_json_free(doc);
			return;
		}
		a->status = n;
		a->status_cap = len + 1;
	}
	memcpy(a->status, json, len);
	a->status[len] = '\0';
	a->status_len = len;
	a->have_status = true;
	a->rate_hz = (uint32_t)mead_json_number_at(doc, root, "sample_rate_hz", 0);
	a->uv_per_count = (float)mead_json_number_at(doc, root, "uv_per_count", 1);
	a->raw_channels = (uint32_t)mead_json_number_at(doc, root, "raw_channels", 0);
	double ne = mead_json_number_at(doc, root, "layout.count", mead_json_number_at(doc, root, "electrode_count", 0));
	a->electrodes = ne > MV_MAX_ELECTRODES ? MV_MAX_ELECTRODES : (uint32_t)ne;
	/* thresholds a driver reports itself win over the estimate */
	const struct mead_json_value *t = mead_json_path(doc, root, "driver.thresholds_uv");
	free(a->driver_thr);
	a->driver_thr = NULL;
	a->n_driver_thr = 0;
	if (t && t->type == MEAD_JSON_ARRAY && t->n && t->n <= MV_MAX_CHANNELS) {
		a->driver_thr = calloc(t->n, sizeof(float));
		if (a->driver_thr) {
			uint32_t i = 0;
			for (const struct mead_json_value *v = mead_json_first(doc, t); v; v = mead_json_next(doc, v), i++)
				a->driver_thr[i] = v->type == MEAD_JSON_NUMBER ? (float)v->num : 0.0f;
			a->n_driver_thr = t->n;
		}
	}
	mead_json_free(doc);
}

static void seq_see(struct mv_seq *s, uint64_t seq)
{
	if (s->have && seq > s->last + 1)
		s->gaps += seq - s->last - 1;
	/* a seq that goes back is a daemon that started again, not a loss */
	s->have = true;
	s->last = seq;
	s->messages++;
}

static void take_spikes(struct mv_agg *a, const struct mead_wire_header *h, const uint8_t *p)
{
	uint32_t limit = a->electrodes ? a->electrodes : MV_MAX_ELECTRODES;

	a->spikes_any = true;
	for (uint32_t i = 0; i < h->count; i++) {
		struct mead_spike s;
		memcpy(&s, p + (size_t)i * h->record_size, sizeof(s));
		a->spikes_total++;
		if (s.electrode >= limit) {
			a->out_of_range++;
			continue;
		}
		a->counts[s.electrode]++;
		if (s.electrode + 1u > a->max_electrode_seen)
			a->max_electrode_seen = s.electrode + 1u;
		if (a->behind || a->fs_n >= a->p.max_frame_spikes ||
		    grow((void **)&a->fs, &a->fs_cap, a->fs_n + 1, sizeof(*a->fs)) < 0) {
			a->fs_unlisted++;
			continue;
		}
		a->fs[a->fs_n++] = (struct listed_spike){ s.sample, s.electrode };
	}
}

static void take_stim(struct mv_agg *a, const struct mead_wire_header *h, const uint8_t *p)
{
	for (uint32_t i = 0; i < h->count; i++) {
		struct mead_stim_pulse sp;
		const uint8_t *r = p + (size_t)i * h->record_size;
		memcpy(&sp, r, sizeof(sp));
		uint64_t req = sp.sample;
		if (h->record_size >= sizeof(struct mead_wire_stim))
			memcpy(&req, r + offsetof(struct mead_wire_stim, requested_sample), sizeof(req));
		a->stim_total++;
		if (a->sig)
			mead_sig_blank_pulse(a->sig, UINT32_MAX, sp.sample);
		if (a->st_n >= FRAME_LIST_MAX || grow((void **)&a->st, &a->st_cap, a->st_n + 1, sizeof(*a->st)) < 0) {
			a->list_unlisted++;
			continue;
		}
		a->st[a->st_n++] = (struct mv_stim){ .sample = sp.sample, .requested = req, .electrode = sp.electrode,
						     .flags = sp.flags, .amplitude_ua = sp.amplitude_ua,
						     .phase_us = sp.phase_us, .interphase_us = sp.interphase_us };
	}
}

static void take_events(struct mv_agg *a, const struct mead_wire_header *h, const uint8_t *p)
{
	for (uint32_t i = 0; i < h->count; i++) {
		struct mead_event e = { 0 };
		/* a 1.0 record is the first 16 bytes: no range, no electrode */
		memcpy(&e, p + (size_t)i * h->record_size,
		       h->record_size < sizeof(e) ? h->record_size : sizeof(e));
		a->events_total++;
		if (a->ev_n >= FRAME_LIST_MAX || grow((void **)&a->ev, &a->ev_cap, a->ev_n + 1, sizeof(*a->ev)) < 0) {
			a->list_unlisted++;
			continue;
		}
		a->ev[a->ev_n++] = e;
	}
}

static int raw_setup(struct mv_agg *a, uint32_t ch)
{
	raw_reset(a);
	a->channels = ch;
	a->bin_samples = a->rate_hz >= 2000 ? a->rate_hz / 1000 : 1;
	a->bmin = calloc(ch, sizeof(int16_t));
	a->bmax = calloc(ch, sizeof(int16_t));
	a->rec = calloc(ch, sizeof(int16_t));
	a->thr = calloc(ch, sizeof(float));
	if (!a->bmin || !a->bmax || !a->rec || !a->thr)
		return -ENOMEM;
	if (a->p.threshold_k > 0 && a->rate_hz) {
		struct mead_sig_config c;
		mead_sig_config_defaults(&c, ch, a->rate_hz);
		c.threshold_k = a->p.threshold_k;
		a->sig = mead_sig_new(&c);   /* NULL: no estimate (a rate it cannot take) */
	}
	return 0;
}

static void bin_close(struct mv_agg *a)
{
	if (!a->bin_open)
		return;
	a->bin_open = false;
	if (grow((void **)&a->ob_sample, &a->ob_cap, a->ob_n + 1, sizeof(uint64_t)) < 0)
		return;
	uint32_t cap = a->ob_cap;
	int16_t *n = realloc(a->ob, (size_t)cap * a->channels * 2 * sizeof(int16_t));
	if (!n)
		return;
	a->ob = n;
	a->ob_sample[a->ob_n] = a->bin_start;
	int16_t *o = a->ob + (size_t)a->ob_n * a->channels * 2;
	for (uint32_t c = 0; c < a->channels; c++) {
		o[2 * c] = a->bmin[c];
		o[2 * c + 1] = a->bmax[c];
	}
	a->ob_n++;
}

static void take_raw(struct mv_agg *a, const struct mead_wire_header *h, const uint8_t *p)
{
	uint32_t ch = h->record_size / 2;

	if (!a->have_status || !ch || ch > MV_MAX_CHANNELS)
		return;
	if (ch != a->channels && raw_setup(a, ch) < 0)
		return;
	if (a->behind) {
		a->bin_open = false;
		return;
	}
	for (uint32_t i = 0; i < h->count; i++) {
		uint64_t s = h->sample + i, b = s - s % a->bin_samples;
		memcpy(a->rec, p + (size_t)i * h->record_size, (size_t)ch * 2);
		if (!a->bin_open || b != a->bin_start) {
			bin_close(a);
			a->bin_open = true;
			a->bin_start = b;
			memcpy(a->bmin, a->rec, (size_t)ch * 2);
			memcpy(a->bmax, a->rec, (size_t)ch * 2);
			continue;
		}
		for (uint32_t c = 0; c < ch; c++) {
			if (a->rec[c] < a->bmin[c])
				a->bmin[c] = a->rec[c];
			if (a->rec[c] > a->bmax[c])
				a->bmax[c] = a->rec[c];
		}
	}
	if (!a->sig || !h->count)
		return;
	size_t need = (size_t)h->count * ch;
	if (need > a->uv_cap) {
		float *n = realloc(a->uv, need * sizeof(float));
		if (!n)
			return;
		a->uv = n;
		a->uv_cap = need;
	}
	for (uint32_t i = 0; i < h->count; i++) {
		memcpy(a->rec, p + (size_t)i * h->record_size, (size_t)ch * 2);
		for (uint32_t c = 0; c < ch; c++)
			a->uv[(size_t)i * ch + c] = (float)a->rec[c] * a->uv_per_count;
	}
	struct mead_frame f = { .first_sample = h->sample, .n_samples = h->count, .spikes = a->sig_spikes,
				.spike_capacity = 512, .events = a->sig_events, .event_capacity = 64 };
	mead_sig_process(a->sig, h->sample, a->uv, h->count, &f);
	for (uint32_t c = 0; c < ch; c++)
		a->thr[c] = mead_sig_threshold_uv(a->sig, c);
}

int mv_agg_message(struct mv_agg *a, const struct mead_wire_header *h, const void *payload, size_t len)
{
	unsigned k = h->kind;
	static const uint32_t min_record[MEAD_KIND_COUNT + 1] = { 0, 16, 24, 16, 2, 1, 24 };

	if (k < 1 || k > MEAD_KIND_COUNT || (uint64_t)h->count * h->record_size != len ||
	    (h->count && h->record_size < min_record[k])) {
		a->bad++;
		return -EBADMSG;
	}
	seq_see(&a->seq[k], h->seq);
	if (k != MEAD_KIND_STATUS && h->sample > a->latest_sample)
		a->latest_sample = h->sample;
	if (a->behind && (k == MEAD_KIND_SPIKES || k == MEAD_KIND_RAW))
		a->detail_skipped++;
	switch (k) {
	case MEAD_KIND_SPIKES: take_spikes(a, h, payload); break;
	case MEAD_KIND_STIM: take_stim(a, h, payload); break;
	case MEAD_KIND_EVENTS: take_events(a, h, payload); break;
	case MEAD_KIND_RAW: take_raw(a, h, payload); break;
	case MEAD_KIND_STATUS: take_status(a, payload, len); break;
	}
	return 0;
}

static uint32_t n_counts(const struct mv_agg *a)
{
	return a->electrodes ? a->electrodes : a->max_electrode_seen;
}

size_t mv_agg_frame_size(const struct mv_agg *a)
{
	return 1024 + (size_t)n_counts(a) * 22 + (size_t)a->fs_n * 28 + (size_t)a->st_n * 140 + (size_t)a->ev_n * 110 +
	       (size_t)a->channels * 18;
}

static void seq_json(struct mead_jw *w, const struct mv_agg *a, const char *key, int what)
{
	mead_jw_key(w, key);
	mead_jw_obj_begin(w);
	for (int k = 1; k <= MEAD_KIND_COUNT; k++) {
		mead_jw_key(w, mead_wire_topic((enum mead_wire_kind)k));
		mead_jw_u64(w, what ? a->seq[k].gaps : a->seq[k].messages);
	}
	mead_jw_obj_end(w);
}

/* A frame's lists start again; its raw bins wait for mv_agg_raw_done(). */
static void lists_reset(struct mv_agg *a)
{
	a->frame_no++;
	a->fs_n = a->st_n = a->ev_n = 0;
	a->fs_unlisted = a->list_unlisted = 0;
}

int mv_agg_frame_json(struct mv_agg *a, char *buf, size_t len)
{
	struct mead_jw w;
	uint32_t ne = n_counts(a);

	mead_jw_init(&w, buf, len);
	mead_jw_obj_begin(&w);
	mead_jw_key(&w, "type");
	mead_jw_str(&w, "frame");
	mead_jw_key(&w, "n");
	mead_jw_u64(&w, a->frame_no);
	mead_jw_key(&w, "sample");
	mead_jw_u64(&w, a->latest_sample);
	/* counts since the view started, through this spikes seq: a page that
	 * missed frames still shows exact totals */
	mead_jw_key(&w, "spikes_seq");
	if (a->spikes_any)
		mead_jw_u64(&w, a->seq[MEAD_KIND_SPIKES].last);
	else
		mead_jw_null(&w);
	mead_jw_key(&w, "counts");
	mead_jw_arr_begin(&w);
	for (uint32_t e = 0; e < ne; e++)
		mead_jw_u64(&w, a->counts[e]);
	mead_jw_arr_end(&w);
	mead_jw_key(&w, "spikes");
	mead_jw_obj_begin(&w);
	uint64_t t0 = a->fs_n ? a->fs[0].sample : 0;
	for (uint32_t i = 1; i < a->fs_n; i++)
		if (a->fs[i].sample < t0)
			t0 = a->fs[i].sample;
	mead_jw_key(&w, "t0");
	mead_jw_u64(&w, t0);
	mead_jw_key(&w, "d");
	mead_jw_arr_begin(&w);
	for (uint32_t i = 0; i < a->fs_n; i++) {
		mead_jw_u64(&w, a->fs[i].sample - t0);
		mead_jw_u64(&w, a->fs[i].electrode);
	}
	mead_jw_arr_end(&w);
	mead_jw_key(&w, "unlisted");
	mead_jw_u64(&w, a->fs_unlisted);
	mead_jw_obj_end(&w);
	mead_jw_key(&w, "stim");
	mead_jw_arr_begin(&w);
	for (uint32_t i = 0; i < a->st_n; i++) {
		const struct mv_stim *s = &a->st[i];
		mead_jw_arr_begin(&w);
		mead_jw_u64(&w, s->sample);
		mead_jw_u64(&w, s->electrode);
		mead_jw_float(&w, s->amplitude_ua);
		mead_jw_u64(&w, s->phase_us);
		mead_jw_u64(&w, s->interphase_us);
		mead_jw_u64(&w, s->requested);
		mead_jw_u64(&w, s->flags);
		mead_jw_arr_end(&w);
	}
	mead_jw_arr_end(&w);
	mead_jw_key(&w, "events");
	mead_jw_arr_begin(&w);
	for (uint32_t i = 0; i < a->ev_n; i++) {
		const struct mead_event *e = &a->ev[i];
		mead_jw_arr_begin(&w);
		mead_jw_u64(&w, e->sample);
		mead_jw_u64(&w, e->type);
		mead_jw_i64(&w, e->value);
		mead_jw_u64(&w, e->samples);
		mead_jw_u64(&w, e->electrode);
		mead_jw_arr_end(&w);
	}
	mead_jw_arr_end(&w);
	mead_jw_key(&w, "unlisted");
	mead_jw_u64(&w, a->list_unlisted);
	seq_json(&w, a, "gaps", 1);
	mead_jw_key(&w, "behind");
	mead_jw_bool(&w, a->behind);
	if (a->channels) {
		mead_jw_key(&w, "raw");
		mead_jw_obj_begin(&w);
		mead_jw_key(&w, "channels");
		mead_jw_u64(&w, a->channels);
		mead_jw_key(&w, "bins");
		mead_jw_u64(&w, a->ob_n);
		mead_jw_key(&w, "bin_samples");
		mead_jw_u64(&w, a->bin_samples);
		mead_jw_key(&w, "uv_per_count");
		mead_jw_float(&w, a->uv_per_count);
		bool driver = a->n_driver_thr == a->channels;
		mead_jw_key(&w, "threshold_source");
		mead_jw_str(&w, driver ? "driver" : a->sig ? "recomputed" : "none");
		if (driver || a->sig) {
			mead_jw_key(&w, "threshold_k");
			if (driver)
				mead_jw_null(&w);
			else
				mead_jw_double(&w, a->p.threshold_k);
			mead_jw_key(&w, "thresholds_uv");
			mead_jw_arr_begin(&w);
			for (uint32_t c = 0; c < a->channels; c++)
				mead_jw_float(&w, driver ? a->driver_thr[c] : a->thr[c]);
			mead_jw_arr_end(&w);
		}
		mead_jw_obj_end(&w);
	}
	mead_jw_obj_end(&w);
	int n = mead_jw_finish(&w);
	if (n < 0)
		return n;
	lists_reset(a);
	return n;
}

void mv_agg_frame_drop(struct mv_agg *a)
{
	lists_reset(a);
	a->ob_n = 0;
}

size_t mv_agg_raw_binary_size(const struct mv_agg *a, uint32_t n)
{
	return 16 + ((size_t)n * 2 + 3) / 4 * 4 + (size_t)a->ob_n * 8 + (size_t)a->ob_n * n * 4;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

size_t mv_agg_raw_binary(const struct mv_agg *a, const uint16_t *channels, uint32_t n, uint8_t *out, size_t len)
{
	size_t need = mv_agg_raw_binary_size(a, n), off;

	if (!a->ob_n || !n || len < need)
		return 0;
	memcpy(out, "MVRW", 4);
	put32(out + 4, n);
	put32(out + 8, a->bin_samples);
	put32(out + 12, a->ob_n);
	off = 16;
	for (uint32_t i = 0; i < n; i++) {
		out[off++] = (uint8_t)channels[i];
		out[off++] = (uint8_t)(channels[i] >> 8);
	}
	while (off % 4)
		out[off++] = 0;
	for (uint32_t b = 0; b < a->ob_n; b++) {
		double s = (double)a->ob_sample[b];
		uint64_t u;
		memcpy(&u, &s, 8);
		for (int i = 0; i < 8; i++)
			out[off++] = (uint8_t)(u >> (8 * i));
	}
	for (uint32_t b = 0; b < a->ob_n; b++) {
		const int16_t *o = a->ob + (size_t)b * a->channels * 2;
		for (uint32_t i = 0; i < n; i++) {
			uint32_t c = channels[i];
			int16_t mn = c < a->channels ? o[2 * c] : 0, mx = c < a->channels ? o[2 * c + 1] : 0;
			out[off++] = (uint8_t)mn;
			out[off++] = (uint8_t)((uint16_t)mn >> 8);
			out[off++] = (uint8_t)mx;
			out[off++] = (uint8_t)((uint16_t)mx >> 8);
		}
	}
	return off;
}

void mv_agg_raw_done(struct mv_agg *a)
{
	a->ob_n = 0;
}

const char *mv_agg_status(const struct mv_agg *a, size_t *len)
{
	if (len)
		*len = a->status_len;
	return a->have_status ? a->status : NULL;
}

static void bridge_obj(struct mead_jw *w, const struct mv_agg *a)
{
	mead_jw_obj_begin(w);
	seq_json(w, a, "messages", 0);
	seq_json(w, a, "gaps", 1);
	mead_jw_key(w, "bad_messages");
	mead_jw_u64(w, a->bad);
	mead_jw_key(w, "spikes");
	mead_jw_u64(w, a->spikes_total);
	mead_jw_key(w, "spikes_out_of_range");
	mead_jw_u64(w, a->out_of_range);
	mead_jw_key(w, "pulses");
	mead_jw_u64(w, a->stim_total);
	mead_jw_key(w, "events");
	mead_jw_u64(w, a->events_total);
	mead_jw_key(w, "detail_skipped");
	mead_jw_u64(w, a->detail_skipped);
	mead_jw_key(w, "behind");
	mead_jw_bool(w, a->behind);
	mead_jw_obj_end(w);
}

int mv_agg_bridge_json(const struct mv_agg *a, char *buf, size_t len)
{
	struct mead_jw w;
	mead_jw_init(&w, buf, len);
	bridge_obj(&w, a);
	return mead_jw_finish(&w);
}

int mv_agg_hello_json(const struct mv_agg *a, char *buf, size_t len)
{
	struct mead_jw w;
	mead_jw_init(&w, buf, len);
	mead_jw_obj_begin(&w);
	mead_jw_key(&w, "type");
	mead_jw_str(&w, "hello");
	mead_jw_key(&w, "wire");
	mead_jw_str(&w, MEAD_WIRE_VERSION_TEXT);
	mead_jw_key(&w, "status");
	if (a->have_status)
		mead_jw_raw(&w, a->status, a->status_len);
	else
		mead_jw_null(&w);
	mead_jw_key(&w, "bridge");
	bridge_obj(&w, a);
	mead_jw_obj_end(&w);
	return mead_jw_finish(&w);
}

uint32_t mv_agg_electrodes(const struct mv_agg *a)
{
	return n_counts(a);
}

uint64_t mv_agg_count(const struct mv_agg *a, uint32_t electrode)
{
	return electrode < MV_MAX_ELECTRODES ? a->counts[electrode] : 0;
}

const struct mv_seq *mv_agg_seq(const struct mv_agg *a, unsigned kind)
{
	return kind >= 1 && kind <= MEAD_KIND_COUNT ? &a->seq[kind] : NULL;
}

uint64_t mv_agg_bad_messages(const struct mv_agg *a)
{
	return a->bad;
}

uint32_t mv_agg_raw_channels(const struct mv_agg *a)
{
	return a->channels;
}
