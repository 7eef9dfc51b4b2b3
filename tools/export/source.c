/* SPDX-License-Identifier: MIT */
/*
 * The recording side of every export: opening the file, reading its
 * header's metadata and configuration, the reading loop, the account of
 * losses.
 */
#include "tools/export/export.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "config/layout.h"
#include "lib/core/time.h"
#include "mead-build-config.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "records are copied as they are stored, little-endian");

static void copy_str(const struct mead_json *doc, const struct mead_json_value *root, const char *key, char *out,
		     size_t len)
{
	const struct mead_json_value *v = doc ? mead_json_get(doc, root, key) : NULL;
	if (v && v->type == MEAD_JSON_STRING)
		snprintf(out, len, "%s", v->s);
}

static int layout_alloc(struct exp_layout *l, uint32_t n)
{
	l->count = n;
	l->labels = calloc(n ? n : 1, sizeof(*l->labels));
	l->excluded = calloc(n ? n : 1, sizeof(*l->excluded));
	l->x_um = calloc(n ? n : 1, sizeof(*l->x_um));
	l->y_um = calloc(n ? n : 1, sizeof(*l->y_um));
	if (!l->labels || !l->excluded || !l->x_um || !l->y_um)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		snprintf(l->labels[i], EXP_LABEL_MAX, "%u", i);
		l->x_um[i] = l->y_um[i] = NAN;
	}
	return 0;
}

/* Positions: the layout is rebuilt from the configuration the file carries
 * with the daemon's own code, which knows the presets' geometry (an MCS
 * grid without its corners numbers electrodes column by column); it is
 * used only if it agrees with the header's labels.  Otherwise a full grid
 * in the header can only be row-major (the custom layout); anything else
 * stays unknown. */
static void layout_positions(struct exp_rec *x, const struct mead_config *cfg, bool have_cfg)
{
	struct exp_layout *l = &x->layout;

	if (have_cfg) {
		static struct mead_layout built;
		char err[256];
		if (mead_layout_build(cfg, &built, err, sizeof(err)) == 0 && built.view.count == l->count) {
			bool same = true;
			for (uint32_t i = 0; i < l->count && same; i++)
				same = strncmp(built.electrodes[i].label, l->labels[i], sizeof(built.electrodes[i].label)) == 0;
			if (same) {
				for (uint32_t i = 0; i < l->count; i++) {
					l->x_um[i] = built.electrodes[i].x_um;
					l->y_um[i] = built.electrodes[i].y_um;
				}
				l->positions_from = "the layout of the recording's configuration";
				return;
			}
		}
	}
	if (l->rows && l->cols && (uint64_t)l->rows * l->cols == l->count && l->pitch_um > 0) {
		for (uint32_t i = 0; i < l->count; i++) {
			l->x_um[i] = (float)((i % l->cols) * l->pitch_um);
			l->y_um[i] = (float)((i / l->cols) * l->pitch_um);
		}
		l->positions_from = "the header's grid (rows, cols, pitch_um), row by row";
		return;
	}
	l->positions_from = "unknown: the configuration did not rebuild the header's layout";
}

static int read_layout(struct exp_rec *x)
{
	const struct mead_json *doc = x->meta;
	const struct mead_json_value *root = doc ? mead_json_root(doc) : NULL;
	const struct mead_json_value *lay = root ? mead_json_get(doc, root, "layout") : NULL;
	uint32_t n = x->info->electrode_count;

	if (lay && lay->type == MEAD_JSON_OBJECT) {
		const struct mead_json_value *labels = mead_json_get(doc, lay, "labels");
		double count = mead_json_number_at(doc, lay, "count", -1);
		if (count >= 0)
			n = (uint32_t)count;
		else if (labels && labels->type == MEAD_JSON_ARRAY)
			n = labels->n;
	}
	if (n > EXP_MAX_ELECTRODES) {
		fprintf(stderr, "mead-export: %s: the header names %u electrodes, more than the %u supported\n", x->path,
			n, EXP_MAX_ELECTRODES);
		return -EINVAL;
	}
	if (layout_alloc(&x->layout, n) < 0)
		return -ENOMEM;
	if (!lay || lay->type != MEAD_JSON_OBJECT)
		return 0;
	x->layout.rows = (uint32_t)mead_json_number_at(doc, lay, "rows", 0);
	x->layout.cols = (uint32_t)mead_json_number_at(doc, lay, "cols", 0);
	x->layout.pitch_um = mead_json_number_at(doc, lay, "pitch_um", 0);
	const struct mead_json_value *labels = mead_json_get(doc, lay, "labels");
	uint32_t i = 0;
	for (const struct mead_json_value *v = labels ? mead_json_first(doc, labels) : NULL; v && i < n;
	     v = mead_json_next(doc, v), i++)
		if (v->type == MEAD_JSON_STRING && v->s[0])
			snprintf(x->layout.labels[i], EXP_LABEL_MAX, "%s", v->s);
	const struct mead_json_value *ex = mead_json_get(doc, lay, "excluded");
	for (const struct mead_json_value *v = ex ? mead_json_first(doc, ex) : NULL; v; v = mead_json_next(doc, v))
		if (v->type == MEAD_JSON_NUMBER && v->num >= 0 && v->num < n)
			x->layout.excluded[(uint32_t)v->num] = true;
	return 0;
}

int exp_open(struct exp_rec *x, const char *path, bool progress)
{
	char err[512];
	int rc;

	memset(x, 0, sizeof(*x));
	x->path = path;
	x->progress = progress;
	rc = mead_rec_open(path, &x->r, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "mead-export: %s\n", err);
		return rc;
	}
	x->info = mead_rec_info(x->r);
	if (x->info->sample_rate_hz == 0) {
		fprintf(stderr, "mead-export: %s: the header names no sample rate\n", path);
		return -EINVAL;
	}
	x->sample_rate_hz = x->info->sample_rate_hz;
	if (mead_json_parse(x->info->meta, x->info->meta_len, &MEAD_JSON_DOCUMENT_LIMITS, &x->meta, NULL, 0) < 0)
		x->meta = NULL;
	const struct mead_json_value *root = x->meta ? mead_json_root(x->meta) : NULL;
	copy_str(x->meta, root, "mead_version", x->mead_version, sizeof(x->mead_version));
	copy_str(x->meta, root, "wire", x->wire, sizeof(x->wire));
	copy_str(x->meta, root, "driver_name", x->driver_name, sizeof(x->driver_name));
	if (root) {
		/* a recording's header was written before its run started: only
		 * files of other writers carry the start there */
		const struct mead_json_value *v = mead_json_get(x->meta, root, "started_realtime_ns");
		if (v && v->type == MEAD_JSON_NUMBER && v->num > 0)
			x->started_realtime_ns = v->is_int ? (uint64_t)v->i : (uint64_t)v->num;
	}
	rc = read_layout(x);
	if (rc < 0)
		return rc;

	static struct mead_config cfg;
	bool have_cfg = false;
	if (x->info->config_len > 0) {
		memset(&cfg, 0, sizeof(cfg));
		have_cfg = mead_cfg_load_string(mead_config_keys, &cfg, "the recording's configuration", x->info->config,
						 x->info->config_len, err, sizeof(err)) == 0;
	}
	if (have_cfg) {
		x->config_loaded = true;
		x->driver_seed = cfg.driver.seed;
		x->protocol_seed = cfg.protocol.seed;
		if (cfg.rig.name)
			snprintf(x->rig_name, sizeof(x->rig_name), "%s", cfg.rig.name);
		if (cfg.protocol.autostart)
			snprintf(x->protocol, sizeof(x->protocol), "%s", cfg.protocol.autostart);
	}
	layout_positions(x, &cfg, have_cfg);
	if (have_cfg)
		mead_config_release(&cfg);
	return 0;
}

void exp_close(struct exp_rec *x)
{
	mead_rec_close(x->r);
	mead_json_free(x->meta);
	free(x->layout.labels);
	free(x->layout.excluded);
	free(x->layout.x_um);
	free(x->layout.y_um);
	memset(x, 0, sizeof(*x));
}

void exp_counts_free(struct exp_counts *c)
{
	free(c->spikes_per_electrode);
	free(c->waveforms_per_electrode);
	free(c->last_status);
	memset(c, 0, sizeof(*c));
}

/* Aligned copies of a message's records, grown as needed. */
struct scratch {
	void *p;
	size_t cap;
};

static void *scratch_get(struct scratch *s, size_t n)
{
	if (n > s->cap) {
		void *p = realloc(s->p, n);
		if (!p)
			return NULL;
		s->p = p;
		s->cap = n;
	}
	return s->p;
}

/* Copies count records of have bytes each into rows of size bytes. */
static void *records(struct scratch *s, const struct mead_rec_record *rec, size_t size)
{
	uint32_t n = rec->header.count;
	size_t have = rec->header.record_size < size ? rec->header.record_size : size;
	uint8_t *out = scratch_get(s, (size_t)n * size + 1);
	if (!out)
		return NULL;
	for (uint32_t i = 0; i < n; i++) {
		memset(out + (size_t)i * size, 0, size);
		memcpy(out + (size_t)i * size, rec->payload + (size_t)i * rec->header.record_size, have);
	}
	return out;
}

static void see(struct exp_counts *c, uint64_t end)
{
	if (end > c->end_sample)
		c->end_sample = end;
}

struct progress {
	double last;
};

/* A line when a pass starts, every 2 s, and when it ends. */
static void progress(struct exp_rec *x, struct progress *p, const char *what, uint64_t offset, bool force)
{
	if (!x->progress)
		return;
	double now = mead_now_s();
	if (!force && now - p->last < 2.0)
		return;
	double size = (double)x->info->file_size;
	fprintf(stderr, "mead-export: %s %3.0f%% (%.1f of %.1f MiB)\n", what,
		size > 0 ? 100.0 * (double)offset / size : 100.0, (double)offset / 1048576.0, size / 1048576.0);
	p->last = now;
}

/* Per kind: the row the sinks get, and the shortest record (wire 1.0). */
static const size_t row_size[] = { [MEAD_KIND_SPIKES] = sizeof(struct mead_spike),
				   [MEAD_KIND_STIM] = sizeof(struct mead_wire_stim),
				   [MEAD_KIND_EVENTS] = sizeof(struct mead_event) };
static const size_t min_size[] = { [MEAD_KIND_SPIKES] = sizeof(struct mead_spike),
				   [MEAD_KIND_STIM] = sizeof(struct mead_stim_pulse),
				   [MEAD_KIND_EVENTS] = 16 };

int exp_walk(struct exp_rec *x, const char *what, const struct exp_sink *sink, struct exp_counts *c)
{
	static unsigned walks;
	struct scratch sc = { 0 };
	struct mead_rec_record rec;
	struct progress pg = { mead_now_s() };
	uint64_t expect_raw = 0;
	int rc = 0;
	bool first_walk = walks++ == 0;

	memset(c, 0, sizeof(*c));
	c->raw_contiguous = true;
	c->spikes_per_electrode = calloc(x->layout.count ? x->layout.count : 1, sizeof(uint64_t));
	c->waveforms_per_electrode = calloc(x->layout.count ? x->layout.count : 1, sizeof(uint64_t));
	if (!c->spikes_per_electrode || !c->waveforms_per_electrode) {
		free(c->spikes_per_electrode);
		free(c->waveforms_per_electrode);
		c->spikes_per_electrode = c->waveforms_per_electrode = NULL;
		return -ENOMEM;
	}
	mead_rec_rewind(x->r);
	progress(x, &pg, what, 0, true);
	for (uint64_t nrec = 1;; nrec++) {
		if ((nrec & 255) == 0)
			progress(x, &pg, what, rec.offset, false);
		int r = mead_rec_next(x->r, &rec);
		if (r == 0)
			break;
		if (r < 0) {
			if (first_walk)
				fprintf(stderr, "mead-export: %s (skipped)\n", mead_rec_stats(x->r)->last_error);
			continue;
		}
		unsigned k = rec.header.kind;
		if (k < 1 || k > MEAD_KIND_COUNT)
			continue;
		if (c->messages[k]) {
			if (rec.header.seq > c->last_seq[k] + 1)
				c->gaps[k] += rec.header.seq - c->last_seq[k] - 1;
			if (k != MEAD_KIND_STATUS && rec.header.sample < c->last_sample[k])
				c->sample_back[k]++;
		} else {
			c->first_seq[k] = rec.header.seq;
		}
		c->messages[k]++;
		c->last_seq[k] = rec.header.seq;
		c->last_sample[k] = rec.header.sample;
		uint32_t n = rec.header.count;
		void *recs = NULL;
		if (k <= MEAD_KIND_EVENTS) {
			/* shorter than the first minor version knew: not a record of this kind */
			if (rec.header.record_size < min_size[k])
				continue;
			recs = records(&sc, &rec, row_size[k]);
			if (!recs) {
				rc = -ENOMEM;
				goto out;
			}
		}
		switch (k) {
		case MEAD_KIND_SPIKES: {
			struct mead_spike *s = recs;
			for (uint32_t i = 0; i < n; i++) {
				if (s[i].electrode < x->layout.count)
					c->spikes_per_electrode[s[i].electrode]++;
				else
					c->spikes_outside++;
				see(c, s[i].sample + 1);
			}
			c->spikes += n;
			if (sink && sink->spikes)
				rc = sink->spikes(sink->ctx, s, n);
			break;
		}
		case MEAD_KIND_STIM: {
			struct mead_wire_stim *s = recs;
			/* v1.0 stim records were delivered when asked */
			if (rec.header.record_size < sizeof(*s))
				for (uint32_t i = 0; i < n; i++)
					s[i].requested_sample = s[i].pulse.sample;
			for (uint32_t i = 0; i < n; i++)
				see(c, s[i].pulse.sample + 1);
			c->stim += n;
			if (sink && sink->stim)
				rc = sink->stim(sink->ctx, s, n);
			break;
		}
		case MEAD_KIND_EVENTS: {
			struct mead_event *e = recs;
			for (uint32_t i = 0; i < n; i++) {
				if (e[i].type < 32) {
					c->event_types[e[i].type]++;
					c->event_samples[e[i].type] += e[i].samples;
				}
				if (e[i].type == MEAD_EVENT_STIM_REFUSED && e[i].value >= 0 && e[i].value < 128)
					c->refused[e[i].value]++;
				see(c, e[i].sample + (e[i].samples ? e[i].samples : 1));
			}
			c->events += n;
			if (sink && sink->events)
				rc = sink->events(sink->ctx, e, n);
			break;
		}
		case MEAD_KIND_RAW: {
			uint32_t ch = rec.header.record_size / 2;
			if (ch == 0 || rec.header.record_size % 2)
				break;
			if (!c->raw_channels) {
				c->raw_channels = ch;
				c->raw_first_sample = rec.header.sample;
				expect_raw = rec.header.sample;
			}
			if (ch != c->raw_channels) {
				if (first_walk)
					fprintf(stderr, "mead-export: raw channel count changed from %u to %u at byte %" PRIu64
						" (skipped)\n", c->raw_channels, ch, rec.offset);
				c->raw_skipped++;
				break;
			}
			if (rec.header.sample != expect_raw)
				c->raw_contiguous = false;
			expect_raw = rec.header.sample + n;
			int16_t *f = scratch_get(&sc, (size_t)rec.payload_len + 2);
			if (!f) {
				rc = -ENOMEM;
				goto out;
			}
			memcpy(f, rec.payload, (size_t)n * rec.header.record_size);
			c->raw_frames += n;
			see(c, rec.header.sample + n);
			if (sink && sink->raw)
				rc = sink->raw(sink->ctx, rec.header.sample, f, n, ch);
			break;
		}
		case MEAD_KIND_WAVEFORMS: {
			const uint32_t size = rec.header.record_size;
			if (n == 0)
				break;
			if (size < sizeof(struct mead_waveform) || (!c->waveform_size && (size - sizeof(struct mead_waveform)) % 4)) {
				c->waveforms_skipped += n;
				break;
			}
			uint8_t *w = scratch_get(&sc, (size_t)rec.payload_len + 8);
			if (!w) {
				rc = -ENOMEM;
				goto out;
			}
			memcpy(w, rec.payload, (size_t)n * size);
			if (!c->waveform_size) {
				struct mead_waveform h;
				memcpy(&h, w, sizeof(h));
				if (mead_waveform_size(h.pre, h.post) != size) {
					c->waveforms_skipped += n;
					break;
				}
				c->waveform_size = size;
				c->waveform_pre = h.pre;
				c->waveform_post = h.post;
			}
			if (size != c->waveform_size) {
				if (first_walk)
					fprintf(stderr, "mead-export: waveform records of %u bytes after ones of %u at byte %" PRIu64
						" (skipped)\n", size, c->waveform_size, rec.offset);
				c->waveforms_skipped += n;
				break;
			}
			/* keep the records whose header says what their size does */
			uint32_t kept = 0;
			for (uint32_t i = 0; i < n; i++) {
				struct mead_waveform h;
				memcpy(&h, w + (size_t)i * size, sizeof(h));
				if (h.pre != c->waveform_pre || h.post != c->waveform_post) {
					c->waveforms_skipped++;
					continue;
				}
				if (kept != i)
					memmove(w + (size_t)kept * size, w + (size_t)i * size, size);
				kept++;
				if (h.electrode < x->layout.count)
					c->waveforms_per_electrode[h.electrode]++;
				else
					c->waveforms_outside++;
				see(c, h.sample + h.post + 1);
			}
			c->waveforms += kept;
			if (kept && sink && sink->waveforms)
				rc = sink->waveforms(sink->ctx, w, kept, size);
			break;
		}
		case MEAD_KIND_STATUS:
			free(c->last_status);
			c->last_status = strndup((const char *)rec.payload, rec.payload_len);
			if (sink && sink->status)
				rc = sink->status(sink->ctx, (const char *)rec.payload, rec.payload_len);
			break;
		}
		if (rc < 0)
			goto out;
	}
	progress(x, &pg, what, x->info->file_size, true);
out:
	free(sc.p);
	const struct mead_rec_stats *st = mead_rec_stats(x->r);
	c->corrupt = st->corrupt;
	c->skipped_bytes = st->skipped_bytes;
	c->torn = st->torn;
	c->torn_offset = st->torn_offset;
	c->torn_bytes = st->torn_bytes;
	return rc;
}

int exp_count(struct exp_rec *x, struct exp_counts *c)
{
	int rc = exp_walk(x, "reading", NULL, c);
	if (rc < 0) {
		fprintf(stderr, "mead-export: %s: cannot read it: %s\n", x->path, strerror(-rc));
		exp_counts_free(c);
	}
	return rc;
}

void exp_damage(const struct exp_counts *c, char *buf, size_t len)
{
	uint64_t gaps = 0;
	size_t at = 0;

	for (int k = 1; k <= MEAD_KIND_COUNT; k++)
		gaps += c->gaps[k];
	buf[0] = '\0';
	if (c->torn)
		at += (size_t)snprintf(buf + at, at < len ? len - at : 0,
				       "%sthe file ends in a torn record at byte %" PRIu64 " (%" PRIu64
				       " bytes of it, dropped): the readable prefix was exported",
				       at ? "; " : " (", c->torn_offset, c->torn_bytes);
	if (c->corrupt)
		at += (size_t)snprintf(buf + at, at < len ? len - at : 0, "%s%" PRIu64 " corrupt records skipped",
				       at ? "; " : " (", c->corrupt);
	if (gaps)
		at += (size_t)snprintf(buf + at, at < len ? len - at : 0,
				       "%s%" PRIu64 " messages missing by sequence number", at ? "; " : " (", gaps);
	if (at && at + 1 < len)
		snprintf(buf + at, len - at, ")");
}

static void kv_u64(struct mead_jw *w, const char *key, uint64_t v)
{
	mead_jw_key(w, key);
	mead_jw_u64(w, v);
}

static void per_kind(struct mead_jw *w, const char *key, const uint64_t *v)
{
	mead_jw_key(w, key);
	mead_jw_obj_begin(w);
	for (int k = 1; k <= MEAD_KIND_COUNT; k++) {
		mead_jw_key(w, mead_wire_topic((enum mead_wire_kind)k));
		mead_jw_u64(w, v[k]);
	}
	mead_jw_obj_end(w);
}

char *exp_summary_json(const struct exp_rec *x, const struct exp_counts *c, const char *const *files)
{
	const struct mead_rec_info *info = x->info;
	size_t cap = info->meta_len + (c->last_status ? strlen(c->last_status) : 0) + 65536;
	char *buf = malloc(cap);
	struct mead_jw w;
	uint64_t before[MEAD_KIND_COUNT + 1] = { 0 };

	if (!buf)
		return NULL;
	for (int k = 1; k <= MEAD_KIND_COUNT; k++)
		before[k] = c->messages[k] ? c->first_seq[k] : 0;
	mead_jw_init(&w, buf, cap);
	mead_jw_obj_begin(&w);
	mead_jw_key(&w, "recording");
	mead_jw_str(&w, x->path);
	mead_jw_key(&w, "exported_by");
	mead_jw_str(&w, "mead-export " MEAD_VERSION);
	kv_u64(&w, "format_version", info->version);
	kv_u64(&w, "sample_rate_hz", info->sample_rate_hz);
	kv_u64(&w, "electrode_count", x->layout.count);
	mead_jw_key(&w, "uv_per_count");
	mead_jw_double(&w, info->uv_per_count);
	mead_jw_key(&w, "header");
	if (x->meta)
		mead_jw_raw(&w, info->meta, info->meta_len);
	else
		mead_jw_null(&w);
	mead_jw_key(&w, "files");
	mead_jw_obj_begin(&w);
	for (size_t i = 0; files && files[i]; i += 2) {
		mead_jw_key(&w, files[i]);
		mead_jw_str(&w, files[i + 1]);
	}
	mead_jw_obj_end(&w);
	mead_jw_key(&w, "counts");
	mead_jw_obj_begin(&w);
	kv_u64(&w, "spikes", c->spikes);
	kv_u64(&w, "stim", c->stim);
	kv_u64(&w, "events", c->events);
	kv_u64(&w, "raw_frames", c->raw_frames);
	kv_u64(&w, "waveforms", c->waveforms);
	if (c->waveform_size) {
		kv_u64(&w, "waveform_pre", c->waveform_pre);
		kv_u64(&w, "waveform_post", c->waveform_post);
	}
	if (c->waveforms_skipped)
		kv_u64(&w, "waveforms_skipped", c->waveforms_skipped);
	kv_u64(&w, "end_sample", c->end_sample);
	per_kind(&w, "messages", c->messages);
	mead_jw_obj_end(&w);
	mead_jw_key(&w, "losses");
	mead_jw_obj_begin(&w);
	per_kind(&w, "seq_gaps", c->gaps);
	per_kind(&w, "messages_before_first", before);
	mead_jw_key(&w, "sample_went_back");
	uint64_t back = 0;
	for (int k = 1; k <= MEAD_KIND_COUNT; k++)
		back += c->sample_back[k];
	mead_jw_u64(&w, back);
	kv_u64(&w, "corrupt_records", c->corrupt);
	kv_u64(&w, "skipped_bytes", c->skipped_bytes);
	mead_jw_key(&w, "torn_tail");
	mead_jw_bool(&w, c->torn);
	kv_u64(&w, "torn_offset", c->torn ? c->torn_offset : 0);
	kv_u64(&w, "torn_bytes", c->torn_bytes);
	kv_u64(&w, "spikes_outside_layout", c->spikes_outside);
	kv_u64(&w, "raw_messages_skipped", c->raw_skipped);
	/* what the rig itself lost, from the events (wire 1.1) */
	static const uint32_t loss_types[] = { MEAD_EVENT_OVERFLOW, MEAD_EVENT_GAP, MEAD_EVENT_LATE, MEAD_EVENT_DEVICE_GONE,
					       MEAD_EVENT_DEVICE_BACK, MEAD_EVENT_STALL, MEAD_EVENT_STIM_LOST };
	mead_jw_key(&w, "device");
	mead_jw_obj_begin(&w);
	for (size_t i = 0; i < sizeof(loss_types) / sizeof(loss_types[0]); i++) {
		mead_jw_key(&w, mead_event_type_name(loss_types[i]));
		mead_jw_obj_begin(&w);
		mead_jw_key(&w, "events");
		mead_jw_u64(&w, c->event_types[loss_types[i]]);
		mead_jw_key(&w, "samples");
		mead_jw_u64(&w, c->event_samples[loss_types[i]]);
		mead_jw_obj_end(&w);
	}
	mead_jw_obj_end(&w);
	mead_jw_key(&w, "stim_refused");
	mead_jw_obj_begin(&w);
	for (uint32_t k = 0; k < 128; k++)
		if (c->refused[k]) {
			const char *name = mead_stim_reason_name(k);
			char other[32];
			snprintf(other, sizeof(other), "reason_%u", k);
			mead_jw_key(&w, name ? name : other);
			mead_jw_u64(&w, c->refused[k]);
		}
	mead_jw_obj_end(&w);
	mead_jw_obj_end(&w);
	mead_jw_key(&w, "last_status");
	struct mead_json *doc = NULL;
	if (c->last_status &&
	    mead_json_parse(c->last_status, strlen(c->last_status), &MEAD_JSON_DOCUMENT_LIMITS, &doc, NULL, 0) == 0) {
		mead_jw_raw(&w, c->last_status, strlen(c->last_status));
		mead_json_free(doc);
	} else {
		mead_jw_null(&w);
	}
	mead_jw_obj_end(&w);
	return exp_jw_text(&w, buf);
}

char *exp_jw_text(struct mead_jw *w, char *buf)
{
	if (mead_jw_finish(w) < 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

int exp_write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	size_t n = strlen(text);

	if (!f || fwrite(text, 1, n, f) != n || fputc('\n', f) == EOF) {
		fprintf(stderr, "mead-export: %s: %s\n", path, strerror(errno));
		if (f)
			fclose(f);
		return -EIO;
	}
	if (fclose(f) != 0) {
		fprintf(stderr, "mead-export: %s: %s\n", path, strerror(errno));
		return -EIO;
	}
	return 0;
}

/* When sample 0 was: the header's start time, else what the last status
 * says (its time less its uptime), else the file's modification time less
 * the run's length. */
uint64_t exp_start_ns(const struct exp_rec *x, const struct exp_counts *c, const char **from)
{
	if (x->started_realtime_ns) {
		*from = "the recording's header (started_realtime_ns)";
		return x->started_realtime_ns;
	}
	struct mead_json *doc;
	if (c->last_status &&
	    mead_json_parse(c->last_status, strlen(c->last_status), &MEAD_JSON_DOCUMENT_LIMITS, &doc, NULL, 0) == 0) {
		const struct mead_json_value *root = mead_json_root(doc);
		const struct mead_json_value *st0 = mead_json_get(doc, root, "started_realtime_ns");
		if (st0 && st0->type == MEAD_JSON_NUMBER && st0->num > 0) {
			uint64_t v = st0->is_int ? (uint64_t)st0->i : (uint64_t)st0->num;
			mead_json_free(doc);
			*from = "the daemon's status (started_realtime_ns: the wall clock when the run started)";
			return v;
		}
		const struct mead_json_value *t = mead_json_get(doc, root, "time_ns");
		double up = mead_json_number_at(doc, root, "uptime_s", -1);
		uint64_t ns = t && t->type == MEAD_JSON_NUMBER ? (t->is_int ? (uint64_t)t->i : (uint64_t)t->num) : 0;
		mead_json_free(doc);
		if (ns && up >= 0 && up * 1e9 < (double)ns) {
			*from = "the last status message (time_ns - uptime_s), to a few milliseconds";
			return ns - (uint64_t)(up * 1e9);
		}
	}
	struct stat st;
	*from = "the file's modification time less the run's length (approximate)";
	if (stat(x->path, &st) == 0) {
		uint64_t m = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
		uint64_t len = (uint64_t)(exp_seconds(x, c->end_sample) * 1e9);
		return m > len ? m - len : m;
	}
	return 0;
}

void exp_iso8601(uint64_t ns, char *buf, size_t len)
{
	time_t s = (time_t)(ns / 1000000000u);
	struct tm tm;
	char day[32];

	gmtime_r(&s, &tm);
	strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%06uZ", day, (unsigned)(ns % 1000000000u / 1000u));
}

void exp_safe_name(const char *in, char *out, size_t len)
{
	size_t i = 0;
	for (; in[i] && i + 1 < len; i++) {
		char ch = in[i];
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
			  ch == '_';
		out[i] = ok ? ch : '_';
	}
	out[i] = '\0';
}
