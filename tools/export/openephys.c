/* SPDX-License-Identifier: MIT */
/*
 * --to openephys: an Open Ephys GUI 0.6 binary recording.
 *
 *   OUT/Record Node 101/experiment1/recording1/
 *     structure.oebin                          what is where (JSON)
 *     sync_messages.txt                        the stream's first sample
 *     mead-recording.json                      the export's account (recording.json of --to npy)
 *     continuous/mead-100.acquisition/         raw, when recorded: continuous.dat (int16 counts,
 *                                              interleaved; bit_volts = uV per count),
 *                                              sample_numbers.npy, timestamps.npy
 *     events/mead-100.acquisition/TTL/         stimulation: line e+1 rises at a pulse's first
 *                                              sample and falls at the sample its second phase
 *                                              ends in: states.npy, sample_numbers.npy, timestamps.npy
 *     events/mead-100.acquisition/TTL_1/       digital inputs, when recorded: line l rises as state l+1
 *                                              and falls as -(l+1) where its digital events change it
 *     events/MessageCenter/                    every event record as a text line: text.npy,
 *                                              sample_numbers.npy, timestamps.npy
 *     spikes/mead-100.acquisition/electrode<i>/ threshold crossings of electrode i: sample_numbers,
 *                                              timestamps, electrode_indices, clusters (0), waveforms
 *                                              (float32 µV, spikes x 1 x pre+1+post, when the
 *                                              recording has waveforms; else int16, spikes x 1 x 0)
 *
 * A waveform goes to the row of its spike (same electrode and sample); a
 * spike the recording has no waveform for (the run's last, one the rig
 * dropped) keeps a row of zeros.  Neo 0.11's OpenEphysBinaryRawIO reads
 * no spikes at all: these folders are for the GUI's own tools and numpy.
 *
 * Digital inputs are a second TTL folder of the stream (the GUI names it
 * TTL_1), one line per input: Neo 0.11 tells event folders apart by their
 * last path component, so it must not be another "TTL".  Every line starts
 * low (initial_state 0); an edge is written where a digital event says a
 * level other than the line's last one (the run's first events say every
 * line's level, so a line high from the start rises there).
 *
 * Sample numbers are the recording's (sample 0 = the run's first sample);
 * timestamps are sample / rate.  Two passes: the first counts spikes per
 * electrode so each electrode's files get their final headers at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mead-build-config.h"
#include "tools/export/export.h"
#include "tools/export/npyfile.h"

#define NODE "Record Node 101"
#define REC_DIR NODE "/experiment1/recording1"
#define STREAM "acquisition"
#define PROC "mead-100." STREAM
#define TEXT_LEN 128

/* Falling edges waiting for their sample (a min-heap on sample, then on
 * the order the pulses came in, so equal pulses fall in the order they
 * rose and a reader pairing edges in order pairs them right). */
struct edge {
	uint64_t sample, seq;
	int16_t state;
};

struct oe {
	struct exp_rec *x;
	const struct exp_counts *pre;
	char *dir;                   /* the recording folder */
	struct npy dat_samples, dat_times;
	FILE *dat;
	uint32_t channels;
	struct npy ttl_states, ttl_samples, ttl_times;
	struct edge *heap;
	size_t nheap, capheap;
	uint64_t seq, edges;
	struct npy msg_text, msg_samples, msg_times;
	struct npy di_states, di_samples, di_times;
	uint64_t di_edges;
	uint8_t di_level[65536 / 8];         /* the digital lines' last levels, a bit each */
	/* spikes: a buffer of sample numbers per electrode */
	uint32_t n, cap;
	uint64_t *buf;
	uint32_t *fill;
	uint64_t *written;
	int err;
	/* waveforms: per electrode the spikes still waiting for theirs */
	uint32_t wf_len;
	struct wq { uint64_t sample, row; } *wq;
	uint32_t *wq_head, *wq_n;
	uint64_t wf_written, wf_unmatched;
};
#define WQ 256

static int mkdirs(const char *path)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static char *join(const char *a, const char *b)
{
	char *p;
	return asprintf(&p, "%s/%s", a, b) < 0 ? NULL : p;
}

/* ---- TTL ------------------------------------------------------------ */

static bool edge_before(const struct edge *a, const struct edge *b)
{
	return a->sample < b->sample || (a->sample == b->sample && a->seq < b->seq);
}

static int heap_push(struct oe *o, struct edge e)
{
	if (o->nheap == o->capheap) {
		size_t cap = o->capheap ? 2 * o->capheap : 256;
		struct edge *h = realloc(o->heap, cap * sizeof(*h));
		if (!h)
			return -ENOMEM;
		o->heap = h;
		o->capheap = cap;
	}
	size_t i = o->nheap++;
	o->heap[i] = e;
	while (i && edge_before(&o->heap[i], &o->heap[(i - 1) / 2])) {
		struct edge t = o->heap[i];
		o->heap[i] = o->heap[(i - 1) / 2];
		o->heap[(i - 1) / 2] = t;
		i = (i - 1) / 2;
	}
	return 0;
}

static struct edge heap_pop(struct oe *o)
{
	struct edge top = o->heap[0];
	o->heap[0] = o->heap[--o->nheap];
	for (size_t i = 0;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < o->nheap && edge_before(&o->heap[l], &o->heap[m]))
			m = l;
		if (r < o->nheap && edge_before(&o->heap[r], &o->heap[m]))
			m = r;
		if (m == i)
			break;
		struct edge t = o->heap[i];
		o->heap[i] = o->heap[m];
		o->heap[m] = t;
		i = m;
	}
	return top;
}

static int ttl_write(struct oe *o, uint64_t sample, int16_t state)
{
	int64_t s = (int64_t)sample;
	double t = exp_seconds(o->x, sample);
	int rc = npy_write(&o->ttl_states, &state, 1);
	if (rc == 0)
		rc = npy_write(&o->ttl_samples, &s, 1);
	if (rc == 0)
		rc = npy_write(&o->ttl_times, &t, 1);
	o->edges++;
	return rc;
}

static int ttl_until(struct oe *o, uint64_t sample, bool all)
{
	while (o->nheap && (all || o->heap[0].sample <= sample)) {
		struct edge e = heap_pop(o);
		int rc = ttl_write(o, e.sample, e.state);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int on_stim(void *ctx, const struct mead_wire_stim *s, uint32_t n)
{
	struct oe *o = ctx;

	for (uint32_t i = 0; i < n; i++) {
		const struct mead_stim_pulse *p = &s[i].pulse;
		int16_t line = (int16_t)(p->electrode + 1);
		/* the sample in which the second phase ends */
		double us = 2.0 * p->phase_us + p->interphase_us;
		uint64_t len = (uint64_t)ceil(us * o->x->sample_rate_hz / 1e6);
		struct edge fall = { p->sample + (len ? len : 1), o->seq++, (int16_t)-line };
		int rc = ttl_until(o, p->sample, false);
		if (rc < 0 || (rc = ttl_write(o, p->sample, line)) < 0 || (rc = heap_push(o, fall)) < 0)
			return rc;
	}
	return 0;
}

/* ---- Digital inputs ------------------------------------------------ */

static int on_digital(struct oe *o, const struct mead_event *e)
{
	uint16_t l = e->electrode;
	uint8_t bit = (uint8_t)(1u << (l % 8));
	bool high = e->value != 0, was = (o->di_level[l / 8] & bit) != 0;
	if (high == was)
		return 0;
	o->di_level[l / 8] = (uint8_t)(high ? o->di_level[l / 8] | bit : o->di_level[l / 8] & ~bit);
	int16_t state = (int16_t)(high ? l + 1 : -(l + 1));
	int64_t s = (int64_t)e->sample;
	double t = exp_seconds(o->x, e->sample);
	int rc = npy_write(&o->di_states, &state, 1);
	if (rc == 0)
		rc = npy_write(&o->di_samples, &s, 1);
	if (rc == 0)
		rc = npy_write(&o->di_times, &t, 1);
	o->di_edges++;
	return rc;
}

/* ---- Messages ----------------------------------------------------- */

static int on_events(void *ctx, const struct mead_event *e, uint32_t n)
{
	struct oe *o = ctx;

	for (uint32_t i = 0; i < n; i++) {
		char text[TEXT_LEN], tail[96] = "";
		const char *name = mead_event_type_name(e[i].type);
		size_t at = 0;
		int64_t s = (int64_t)e[i].sample;
		double t = exp_seconds(o->x, e[i].sample);

		if (e[i].samples)
			at += (size_t)snprintf(tail + at, sizeof(tail) - at, " samples=%u", e[i].samples);
		if (e[i].type == MEAD_EVENT_STIM_REFUSED || e[i].type == MEAD_EVENT_BLANK) {
			if (e[i].electrode == MEAD_EVENT_ALL_ELECTRODES)
				at += (size_t)snprintf(tail + at, sizeof(tail) - at, " electrode=all");
			else
				at += (size_t)snprintf(tail + at, sizeof(tail) - at, " electrode=%u", e[i].electrode);
		}
		if (e[i].type == MEAD_EVENT_STIM_REFUSED) {
			const char *r = e[i].value >= 0 ? mead_stim_reason_name((uint32_t)e[i].value) : NULL;
			snprintf(tail + at, sizeof(tail) - at, " reason=%s", r ? r : "unknown");
		}
		if (e[i].type == MEAD_EVENT_DIGITAL) {
			snprintf(tail + at, sizeof(tail) - at, " line=%u", e[i].electrode);
			int rc = o->pre->event_types[MEAD_EVENT_DIGITAL] ? on_digital(o, &e[i]) : 0;
			if (rc < 0)
				return rc;
		}
		memset(text, 0, sizeof(text));
		if (name)
			snprintf(text, sizeof(text), "%s value=%d%s", name, e[i].value, tail);
		else
			snprintf(text, sizeof(text), "type_%u value=%d%s", e[i].type, e[i].value, tail);
		int rc = npy_write(&o->msg_text, text, 1);
		if (rc == 0)
			rc = npy_write(&o->msg_samples, &s, 1);
		if (rc == 0)
			rc = npy_write(&o->msg_times, &t, 1);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ---- Continuous ------------------------------------------------------ */

static int on_raw(void *ctx, uint64_t first, const int16_t *frames, uint32_t n, uint32_t channels)
{
	struct oe *o = ctx;
	int64_t s[1024];
	double t[1024];

	if (!o->dat || channels != o->channels)
		return 0;
	if (fwrite(frames, sizeof(int16_t) * channels, n, o->dat) != n)
		return -EIO;
	for (uint32_t i = 0; i < n; i += 1024) {
		uint32_t m = n - i < 1024 ? n - i : 1024;
		for (uint32_t j = 0; j < m; j++) {
			s[j] = (int64_t)(first + i + j);
			t[j] = exp_seconds(o->x, first + i + j);
		}
		int rc = npy_write(&o->dat_samples, s, m);
		if (rc == 0)
			rc = npy_write(&o->dat_times, t, m);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ---- Spikes -------------------------------------------------------- */

static char *spike_dir(const struct oe *o, uint32_t e)
{
	char *p;
	return asprintf(&p, "%s/spikes/" PROC "/electrode%u", o->dir, e) < 0 ? NULL : p;
}

/* Appends rows to one of an electrode's files, whose header already holds
 * its final shape. */
static int append(const char *dir, const char *name, const void *rows, size_t bytes)
{
	char *path = join(dir, name);
	FILE *f = path ? fopen(path, "ab") : NULL;
	int rc = f && (bytes == 0 || fwrite(rows, 1, bytes, f) == bytes) ? 0 : -EIO;
	if (f && fclose(f) != 0)
		rc = -EIO;
	if (rc < 0)
		fprintf(stderr, "mead-export: %s: %s\n", path ? path : dir, strerror(errno));
	free(path);
	return rc;
}

static int spikes_flush(struct oe *o, uint32_t e)
{
	uint32_t m = o->fill[e];
	const uint64_t *s = o->buf + (size_t)e * o->cap;
	double t[512];
	uint16_t idx[512], cl[512];
	char *dir = spike_dir(o, e);
	int rc = dir ? 0 : -ENOMEM;

	for (uint32_t i = 0; rc == 0 && i < m; i += 512) {
		uint32_t k = m - i < 512 ? m - i : 512;
		for (uint32_t j = 0; j < k; j++) {
			t[j] = exp_seconds(o->x, s[i + j]);
			idx[j] = (uint16_t)e;
			cl[j] = 0;
		}
		rc = append(dir, "sample_numbers.npy", s + i, (size_t)k * 8);
		if (rc == 0)
			rc = append(dir, "timestamps.npy", t, (size_t)k * 8);
		if (rc == 0)
			rc = append(dir, "electrode_indices.npy", idx, (size_t)k * 2);
		if (rc == 0)
			rc = append(dir, "clusters.npy", cl, (size_t)k * 2);
	}
	free(dir);
	o->written[e] += m;
	o->fill[e] = 0;
	return rc;
}

static int on_spikes(void *ctx, const struct mead_spike *s, uint32_t n)
{
	struct oe *o = ctx;

	for (uint32_t i = 0; i < n; i++) {
		uint32_t e = s[i].electrode;
		if (e >= o->n)
			continue;
		if (o->written[e] + o->fill[e] >= o->pre->spikes_per_electrode[e]) {
			fprintf(stderr, "mead-export: %s changed while it was read\n", o->x->path);
			return -EIO;
		}
		if (o->wq) {
			/* a full queue forgets its oldest: that spike keeps zeros */
			if (o->wq_n[e] == WQ) {
				o->wq_head[e] = (o->wq_head[e] + 1) % WQ;
				o->wq_n[e]--;
			}
			o->wq[(size_t)e * WQ + (o->wq_head[e] + o->wq_n[e]++) % WQ] =
				(struct wq){ s[i].sample, o->written[e] + o->fill[e] };
		}
		o->buf[(size_t)e * o->cap + o->fill[e]] = s[i].sample;
		if (++o->fill[e] == o->cap) {
			int rc = spikes_flush(o, e);
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

static int on_waveforms(void *ctx, const uint8_t *recs, uint32_t n, uint32_t size)
{
	struct oe *o = ctx;

	for (uint32_t i = 0; o->wq && i < n; i++) {
		struct mead_waveform h;
		memcpy(&h, recs + (size_t)i * size, sizeof(h));
		const uint32_t e = h.electrode;
		if (e >= o->n)
			continue;
		struct wq *q = o->wq + (size_t)e * WQ;
		while (o->wq_n[e] && q[o->wq_head[e]].sample < h.sample) {
			o->wq_head[e] = (o->wq_head[e] + 1) % WQ;
			o->wq_n[e]--;
		}
		if (!o->wq_n[e] || q[o->wq_head[e]].sample != h.sample) {
			o->wf_unmatched++;
			continue;
		}
		const uint64_t row = q[o->wq_head[e]].row;
		o->wq_head[e] = (o->wq_head[e] + 1) % WQ;
		o->wq_n[e]--;
		char *dir = spike_dir(o, e), *path = dir ? join(dir, "waveforms.npy") : NULL;
		int fd = path ? open(path, O_WRONLY) : -1;
		const size_t bytes = (size_t)o->wf_len * 4;
		int rc = fd >= 0 && pwrite(fd, recs + (size_t)i * size + sizeof(h), bytes,
					   (off_t)(NPY_HEADER + row * bytes)) == (ssize_t)bytes ? 0 : -EIO;
		if (fd >= 0 && close(fd) < 0)
			rc = -EIO;
		if (rc < 0)
			fprintf(stderr, "mead-export: %s: %s\n", path ? path : "waveforms.npy", strerror(errno));
		free(path);
		free(dir);
		if (rc < 0)
			return rc;
		o->wf_written++;
	}
	return 0;
}

static int header_file(const char *dir, const char *name, const char *descr, const char *shape)
{
	char *path = join(dir, name);
	FILE *f = path ? fopen(path, "wb") : NULL;
	int rc = f ? npy_header(f, descr, shape) : -EIO;
	if (f && fclose(f) != 0)
		rc = -EIO;
	if (rc < 0)
		fprintf(stderr, "mead-export: %s: cannot write\n", path ? path : dir);
	free(path);
	return rc;
}

static int spikes_open(struct oe *o)
{
	o->n = o->x->layout.count;
	o->cap = o->n ? (1u << 20) / 8 / o->n : 64;
	if (o->cap < 64)
		o->cap = 64;
	if (o->cap > 4096)
		o->cap = 4096;
	o->buf = malloc((size_t)(o->n ? o->n : 1) * o->cap * sizeof(uint64_t));
	o->fill = calloc(o->n + 1, sizeof(uint32_t));
	o->written = calloc(o->n + 1, sizeof(uint64_t));
	if (!o->buf || !o->fill || !o->written)
		return -ENOMEM;
	if (o->pre->waveforms && o->pre->waveform_size) {
		o->wf_len = o->pre->waveform_pre + 1 + o->pre->waveform_post;
		o->wq = malloc((size_t)(o->n ? o->n : 1) * WQ * sizeof(*o->wq));
		o->wq_head = calloc(o->n + 1, sizeof(uint32_t));
		o->wq_n = calloc(o->n + 1, sizeof(uint32_t));
		if (!o->wq || !o->wq_head || !o->wq_n)
			return -ENOMEM;
	}
	for (uint32_t e = 0; e < o->n; e++) {
		char *dir = spike_dir(o, e), s1[64], s3[64];
		uint64_t k = o->pre->spikes_per_electrode[e];
		int rc = dir ? mkdirs(dir) : -ENOMEM;
		snprintf(s1, sizeof(s1), "(%" PRIu64 ",)", k);
		snprintf(s3, sizeof(s3), "(%" PRIu64 ", 1, %u)", k, o->wf_len);
		if (rc == 0)
			rc = header_file(dir, "sample_numbers.npy", "'<i8'", s1);
		if (rc == 0)
			rc = header_file(dir, "timestamps.npy", "'<f8'", s1);
		if (rc == 0)
			rc = header_file(dir, "electrode_indices.npy", "'<u2'", s1);
		if (rc == 0)
			rc = header_file(dir, "clusters.npy", "'<u2'", s1);
		if (rc == 0)
			rc = header_file(dir, "waveforms.npy", o->wf_len ? "'<f4'" : "'<i2'", s3);
		if (rc == 0 && o->wf_len) {
			/* every row zero until its waveform comes */
			char *path = join(dir, "waveforms.npy");
			if (!path || truncate(path, (off_t)(NPY_HEADER + k * o->wf_len * 4)) < 0)
				rc = -EIO;
			free(path);
		}
		free(dir);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int spikes_close(struct oe *o)
{
	int rc = 0;
	for (uint32_t e = 0; e < o->n && rc == 0; e++) {
		rc = spikes_flush(o, e);
		if (rc == 0 && o->written[e] != o->pre->spikes_per_electrode[e]) {
			fprintf(stderr, "mead-export: %s changed while it was read\n", o->x->path);
			rc = -EIO;
		}
	}
	return rc;
}

/* ---- structure.oebin ------------------------------------------------ */

static void kv_str(struct mead_jw *w, const char *key, const char *v)
{
	mead_jw_key(w, key);
	mead_jw_str(w, v);
}

static void event_stream(struct mead_jw *w, const struct exp_rec *x, const char *folder, const char *channel,
			 const char *desc, const char *identifier, const char *type, const char *source, bool ttl)
{
	mead_jw_obj_begin(w);
	kv_str(w, "folder_name", folder);
	kv_str(w, "channel_name", channel);
	kv_str(w, "description", desc);
	kv_str(w, "identifier", identifier);
	mead_jw_key(w, "sample_rate");
	mead_jw_double(w, x->sample_rate_hz);
	kv_str(w, "type", type);
	kv_str(w, "source_processor", source);
	kv_str(w, "stream_name", STREAM);
	if (ttl) {
		mead_jw_key(w, "initial_state");
		mead_jw_u64(w, 0);
	}
	mead_jw_obj_end(w);
}

static char *oebin(const struct oe *o, bool raw)
{
	const struct exp_rec *x = o->x;
	const struct exp_layout *l = &x->layout;
	size_t cap = 65536 + (size_t)(l->count + o->channels) * 1024;
	char *buf = malloc(cap), text[512];
	struct mead_jw w;

	if (!buf)
		return NULL;
	mead_jw_init(&w, buf, cap);
	mead_jw_obj_begin(&w);
	kv_str(&w, "GUI version", "0.6.7");
	mead_jw_key(&w, "continuous");
	mead_jw_arr_begin(&w);
	if (raw) {
		mead_jw_obj_begin(&w);
		kv_str(&w, "folder_name", PROC "/");
		mead_jw_key(&w, "sample_rate");
		mead_jw_double(&w, x->sample_rate_hz);
		kv_str(&w, "source_processor_name", "mead");
		mead_jw_key(&w, "source_processor_id");
		mead_jw_u64(&w, 100);
		kv_str(&w, "stream_name", STREAM);
		kv_str(&w, "recorded_processor", "Record Node");
		mead_jw_key(&w, "recorded_processor_id");
		mead_jw_u64(&w, 101);
		mead_jw_key(&w, "num_channels");
		mead_jw_u64(&w, o->channels);
		mead_jw_key(&w, "channels");
		mead_jw_arr_begin(&w);
		for (uint32_t i = 0; i < o->channels; i++) {
			mead_jw_obj_begin(&w);
			kv_str(&w, "channel_name", l->labels[i]);
			mead_jw_key(&w, "description");
			if (isnan(l->x_um[i]))
				snprintf(text, sizeof(text), "electrode %u (label %s)%s", i, l->labels[i],
					 l->excluded[i] ? ", excluded (reference/ground)" : "");
			else
				snprintf(text, sizeof(text), "electrode %u (label %s) at x=%g y=%g um%s", i, l->labels[i],
					 l->x_um[i], l->y_um[i], l->excluded[i] ? ", excluded (reference/ground)" : "");
			mead_jw_str(&w, text);
			kv_str(&w, "identifier", "mead.raw");
			mead_jw_key(&w, "history");
			snprintf(text, sizeof(text), "mead %s driver -> mead-export " MEAD_VERSION,
				 x->driver_name[0] ? x->driver_name : "?");
			mead_jw_str(&w, text);
			mead_jw_key(&w, "bit_volts");
			mead_jw_double(&w, x->info->uv_per_count);
			kv_str(&w, "units", "uV");
			mead_jw_obj_end(&w);
		}
		mead_jw_arr_end(&w);
		mead_jw_obj_end(&w);
	}
	mead_jw_arr_end(&w);
	mead_jw_key(&w, "events");
	mead_jw_arr_begin(&w);
	if (o->pre->stim)
		event_stream(&w, x, PROC "/TTL/", "stimulation",
			     "stimulation pulses the device delivered: line e+1 is electrode e; on at the pulse's first "
			     "sample, off at the sample its second phase ends in",
			     "mead.stim", "int16", "mead", true);
	if (o->pre->event_types[MEAD_EVENT_DIGITAL])
		event_stream(&w, x, PROC "/TTL_1/", "digital inputs",
			     "the rig's digital input lines: line l is state l+1; on where a digital event says high, "
			     "off where one says low (the sample the lines were read at, once a tick)",
			     "mead.digital", "int16", "mead", true);
	event_stream(&w, x, "MessageCenter/", "Messages",
		     "every event record of the recording: \"name value=V [samples=N] [electrode=E|all] "
		     "[reason=R] [line=L]\" (docs/wire-v1.md)",
		     "mead.events", "string", "Message Center", false);
	mead_jw_arr_end(&w);
	mead_jw_key(&w, "spikes");
	mead_jw_arr_begin(&w);
	for (uint32_t e = 0; e < l->count; e++) {
		char name[32];
		snprintf(name, sizeof(name), "electrode%u", e);
		mead_jw_obj_begin(&w);
		kv_str(&w, "name", name);
		mead_jw_key(&w, "description");
		if (o->wf_len)
			snprintf(text, sizeof(text),
				 "threshold crossings of electrode %u (label %s), not sorted; waveforms float32 uV (zeros: none)",
				 e, l->labels[e]);
		else
			snprintf(text, sizeof(text), "threshold crossings of electrode %u (label %s), not sorted; no waveforms",
				 e, l->labels[e]);
		mead_jw_str(&w, text);
		kv_str(&w, "identifier", "mead.spikes");
		mead_jw_key(&w, "source_processor_id");
		mead_jw_u64(&w, 100);
		kv_str(&w, "stream_name", STREAM);
		mead_jw_key(&w, "sample_rate");
		mead_jw_double(&w, x->sample_rate_hz);
		mead_jw_key(&w, "num_channels");
		mead_jw_u64(&w, 1);
		mead_jw_key(&w, "pre_peak_samples");
		mead_jw_u64(&w, o->wf_len ? o->pre->waveform_pre : 0);
		mead_jw_key(&w, "post_peak_samples");
		mead_jw_u64(&w, o->wf_len ? o->pre->waveform_post : 0);
		mead_jw_key(&w, "folder");
		snprintf(text, sizeof(text), PROC "/%s/", name);
		mead_jw_str(&w, text);
		mead_jw_key(&w, "source_channels");
		mead_jw_arr_begin(&w);
		mead_jw_obj_begin(&w);
		kv_str(&w, "name", l->labels[e]);
		mead_jw_key(&w, "local_index");
		mead_jw_u64(&w, e);
		mead_jw_key(&w, "bit_volts");
		mead_jw_double(&w, x->info->uv_per_count);
		mead_jw_obj_end(&w);
		mead_jw_arr_end(&w);
		mead_jw_obj_end(&w);
	}
	mead_jw_arr_end(&w);
	mead_jw_obj_end(&w);
	return exp_jw_text(&w, buf);
}

static int sync_messages(const struct oe *o, const struct exp_counts *c)
{
	const char *from;
	char text[512];
	char *path = join(o->dir, "sync_messages.txt");
	uint64_t ns = exp_start_ns(o->x, c, &from);

	snprintf(text, sizeof(text),
		 "Software Time (milliseconds since midnight Jan 1st 1970 UTC): %" PRIu64 "\r\n"
		 "Start Time for mead (100) - " STREAM " @ %g Hz: %" PRIu64 "\r",
		 ns / 1000000u, o->x->sample_rate_hz, c->raw_frames ? c->raw_first_sample : 0);
	int rc = path ? exp_write_file(path, text) : -ENOMEM;
	free(path);
	return rc;
}

/* An event folder: its data file and its sample numbers and timestamps. */
static int event_files(struct oe *o, const char *sub, struct npy *data, const char *name, const char *descr,
		       size_t item, struct npy *samples, struct npy *times)
{
	char *d = join(o->dir, sub);
	int rc = d ? mkdirs(d) : -ENOMEM;
	if (rc == 0)
		rc = npy_open(data, d, name, descr, "", item);
	if (rc == 0)
		rc = npy_open(samples, d, "sample_numbers.npy", "'<i8'", "", 8);
	if (rc == 0)
		rc = npy_open(times, d, "timestamps.npy", "'<f8'", "", 8);
	free(d);
	return rc;
}

static int open_all(struct oe *o)
{
	char *d;
	int rc;

	if (o->pre->raw_frames) {
		o->channels = o->pre->raw_channels;
		if (o->channels > o->x->layout.count) {
			fprintf(stderr, "mead-export: raw frames have %u channels but the layout %u electrodes: "
					"raw not exported\n", o->channels, o->x->layout.count);
		} else {
			if (asprintf(&d, "%s/continuous/" PROC, o->dir) < 0)
				return -ENOMEM;
			rc = mkdirs(d);
			char *dat = rc == 0 ? join(d, "continuous.dat") : NULL;
			o->dat = dat ? fopen(dat, "wb") : NULL;
			if (!o->dat) {
				fprintf(stderr, "mead-export: %s: %s\n", dat ? dat : d, strerror(errno));
				free(dat);
				free(d);
				return -EIO;
			}
			free(dat);
			rc = npy_open(&o->dat_samples, d, "sample_numbers.npy", "'<i8'", "", 8);
			if (rc == 0)
				rc = npy_open(&o->dat_times, d, "timestamps.npy", "'<f8'", "", 8);
			free(d);
			if (rc < 0)
				return rc;
		}
	}
	if (o->pre->stim) {
		rc = event_files(o, "events/" PROC "/TTL", &o->ttl_states, "states.npy", "'<i2'", 2, &o->ttl_samples,
				 &o->ttl_times);
		if (rc < 0)
			return rc;
	}
	if (o->pre->event_types[MEAD_EVENT_DIGITAL]) {
		rc = event_files(o, "events/" PROC "/TTL_1", &o->di_states, "states.npy", "'<i2'", 2, &o->di_samples,
				 &o->di_times);
		if (rc < 0)
			return rc;
	}
	rc = event_files(o, "events/MessageCenter", &o->msg_text, "text.npy", "'|S128'", TEXT_LEN, &o->msg_samples,
			 &o->msg_times);
	if (rc < 0)
		return rc;
	return spikes_open(o);
}

static int close_all(struct oe *o)
{
	int rc = 0;
	struct npy *all[] = { &o->dat_samples, &o->dat_times, &o->ttl_states, &o->ttl_samples, &o->ttl_times,
			      &o->msg_text, &o->msg_samples, &o->msg_times, &o->di_states, &o->di_samples, &o->di_times };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (npy_close(all[i]) < 0)
			rc = -EIO;
	if (o->dat && fclose(o->dat) != 0)
		rc = -EIO;
	o->dat = NULL;
	free(o->heap);
	free(o->buf);
	free(o->fill);
	free(o->written);
	free(o->wq);
	free(o->wq_head);
	free(o->wq_n);
	o->wq = NULL;
	o->wq_head = o->wq_n = NULL;
	o->heap = NULL;
	o->buf = NULL;
	o->fill = NULL;
	o->written = NULL;
	o->nheap = o->capheap = 0;
	return rc;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

/* Removes what a failed export left in its .part folder. */
static void remove_tree(const char *path)
{
	if (nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
		fprintf(stderr, "mead-export: could not remove %s: %s\n", path, strerror(errno));
}

int exp_openephys(struct exp_rec *x, const char *out)
{
	struct oe o = { .x = x };
	struct exp_counts pre, post;
	char *part = NULL, *json = NULL, *path = NULL, damage[512];
	int status = 1, rc;
	bool walked = false;
	struct stat st;

	if (stat(out, &st) == 0) {
		fprintf(stderr, "mead-export: %s exists: choose another -o or remove it\n", out);
		return 1;
	}
	if (asprintf(&part, "%s.part", out) < 0)
		return 1;
	if (stat(part, &st) == 0) {
		fprintf(stderr, "mead-export: %s exists (left by an export that failed?): remove it first\n", part);
		free(part);
		return 1;
	}
	if (exp_count(x, &pre) < 0) {
		free(part);
		return 1;
	}
	o.pre = &pre;
	if (asprintf(&o.dir, "%s/" REC_DIR, part) < 0)
		goto done;
	rc = mkdirs(o.dir);
	if (rc < 0) {
		fprintf(stderr, "mead-export: %s: %s\n", o.dir, strerror(-rc));
		goto done;
	}
	if (open_all(&o) < 0)
		goto done;
	const struct exp_sink sink = { &o, on_spikes, o.pre->stim ? on_stim : NULL, on_events, on_raw, NULL,
				       on_waveforms };
	rc = exp_walk(x, "writing Open Ephys", &sink, &post);
	walked = true;
	if (rc == 0 && o.pre->stim)
		rc = ttl_until(&o, 0, true);
	if (rc == 0)
		rc = spikes_close(&o);
	if (rc < 0) {
		fprintf(stderr, "mead-export: writing %s: %s\n", out, strerror(-rc));
		goto done;
	}
	uint64_t edges = o.edges, messages = o.msg_text.rows, frames = o.dat_samples.rows;
	bool raw = o.dat != NULL;
	if (close_all(&o) < 0)
		goto done;
	char *ob = oebin(&o, raw);
	path = join(o.dir, "structure.oebin");
	rc = ob && path ? exp_write_file(path, ob) : -ENOMEM;
	free(ob);
	free(path);
	path = NULL;
	if (rc < 0)
		goto done;
	static const char *const files[] = { "structure", "structure.oebin", NULL };
	json = exp_summary_json(x, &post, files);
	path = join(o.dir, "mead-recording.json");
	if (!json || !path || exp_write_file(path, json) < 0 || sync_messages(&o, &post) < 0)
		goto done;
	if (rename(part, out) < 0) {
		fprintf(stderr, "mead-export: %s: %s\n", out, strerror(errno));
		goto done;
	}
	exp_damage(&post, damage, sizeof(damage));
	if (o.wf_unmatched)
		fprintf(stderr, "mead-export: %" PRIu64 " waveforms matched no spike record (not exported)\n", o.wf_unmatched);
	char wft[64] = "";
	if (o.wf_len)
		snprintf(wft, sizeof(wft), ", %" PRIu64 " waveforms", o.wf_written);
	printf("%s: %" PRIu64 " raw frames of %u channels, %" PRIu64 " spikes%s, %" PRIu64 " stim pulses (%" PRIu64
	       " TTL edges), %" PRIu64 " digital input edges, %" PRIu64 " events (messages) -> %s/" REC_DIR "%s%s\n",
	       x->path, frames, raw ? o.channels : 0, post.spikes - post.spikes_outside, wft, post.stim, edges, o.di_edges,
	       messages, out,
	       damage, raw ? "" : " (no raw samples: Neo's OpenEphysBinaryRawIO needs a continuous stream)");
	status = 0;
done:
	if (status != 0) {
		close_all(&o);
		remove_tree(part);
	}
	if (walked)
		exp_counts_free(&post);
	exp_counts_free(&pre);
	free(json);
	free(path);
	free(o.dir);
	free(part);
	return status;
}
