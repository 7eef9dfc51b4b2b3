/* SPDX-License-Identifier: MIT */
/*
 * mead-export REC --to npy [-o DIR]
 *
 * Writes a recording's spikes, stimulation pulses, events (and raw frames
 * if recorded) as NumPy .npy files with structured dtypes, plus
 * recording.json: rate, layout, counts, and every loss the file shows
 * (seq gaps per topic, corrupt records skipped, torn tail).
 *   numpy.load("DIR/spikes.npy")["electrode"]
 */
#include <errno.h>
#include <stddef.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/core/json.h"
#include "lib/core/recording.h"

#define NPY_HEADER 256   /* total header bytes, a multiple of 64 */

struct npy {
	FILE *f;
	char *path;
	const char *descr;
	const char *shape_tail;  /* "" for 1-D, ", 60" for raw */
	size_t item;             /* bytes per row */
	uint64_t rows;
};

static int npy_header(struct npy *n)
{
	char h[NPY_HEADER];
	int len;

	memset(h, ' ', sizeof(h));
	memcpy(h, "\x93NUMPY\x01\x00", 8);
	uint16_t hl = NPY_HEADER - 10;
	h[8] = (char)(hl & 0xff);
	h[9] = (char)(hl >> 8);
	len = snprintf(h + 10, sizeof(h) - 10, "{'descr': %s, 'fortran_order': False, 'shape': (%" PRIu64 "%s,), }",
		       n->descr, n->rows, n->shape_tail);
	if (len < 0 || len >= NPY_HEADER - 11)
		return -E2BIG;
	h[10 + len] = ' ';
	h[NPY_HEADER - 1] = '\n';
	if (fseeko(n->f, 0, SEEK_SET) < 0 || fwrite(h, 1, sizeof(h), n->f) != sizeof(h))
		return -errno;
	return 0;
}

static int npy_open(struct npy *n, const char *dir, const char *name, const char *descr, const char *shape_tail,
		    size_t item)
{
	memset(n, 0, sizeof(*n));
	if (asprintf(&n->path, "%s/%s", dir, name) < 0)
		return -ENOMEM;
	n->descr = descr;
	n->shape_tail = shape_tail;
	n->item = item;
	n->f = fopen(n->path, "wb");
	if (!n->f) {
		fprintf(stderr, "mead-export: %s: %s\n", n->path, strerror(errno));
		return -errno;
	}
	return npy_header(n);
}

static int npy_close(struct npy *n)
{
	int rc = 0;
	if (!n->f)
		return 0;
	if (npy_header(n) < 0 || fflush(n->f) != 0)
		rc = -EIO;
	if (fclose(n->f) != 0)
		rc = -EIO;
	n->f = NULL;
	if (rc < 0)
		fprintf(stderr, "mead-export: %s: write failed\n", n->path);
	free(n->path);
	return rc;
}

/* Copies the known leading bytes of each record (records may grow). */
/* One row per record.  A record shorter than the row (an older minor
 * version of the wire) is completed by fill, which knows the fields it
 * lacks; a longer one (a newer version) is cut to the fields we know. */
static int npy_add(struct npy *n, const struct mead_rec_record *rec,
		   void (*fill)(uint8_t *row, size_t have))
{
	uint8_t row[64];
	size_t have = rec->header.record_size < n->item ? rec->header.record_size : n->item;

	for (uint32_t i = 0; i < rec->header.count; i++) {
		memset(row, 0, sizeof(row));
		memcpy(row, rec->payload + (size_t)i * rec->header.record_size, have);
		if (have < n->item && fill)
			fill(row, have);
		if (fwrite(row, 1, n->item, n->f) != n->item)
			return -EIO;
		n->rows++;
	}
	return 0;
}

static int npy_add_raw(struct npy *n, const struct mead_rec_record *rec)
{
	size_t len = (size_t)rec->header.count * rec->header.record_size;
	if (fwrite(rec->payload, 1, len, n->f) != len)
		return -EIO;
	n->rows += rec->header.count;
	return 0;
}

/* v1.0 stim records (24 bytes) were delivered when asked. */
static void fill_stim(uint8_t *row, size_t have)
{
	if (have < offsetof(struct mead_wire_stim, requested_sample))
		return;
	memcpy(row + offsetof(struct mead_wire_stim, requested_sample), row, 8);
}

/* What the events say was lost, refused or blanked, for recording.json. */
struct tally {
	uint64_t events[32], samples[32];
	uint64_t refused[128];
};

static void count_events(const struct mead_rec_record *rec, struct tally *t)
{
	for (uint32_t i = 0; i < rec->header.count; i++) {
		struct mead_event e = { 0 };
		size_t have = rec->header.record_size < sizeof(e) ? rec->header.record_size : sizeof(e);
		memcpy(&e, rec->payload + (size_t)i * rec->header.record_size, have);
		if (e.type < 32) {
			t->events[e.type]++;
			t->samples[e.type] += e.samples;
		}
		if (e.type == MEAD_EVENT_STIM_REFUSED && e.value >= 0 && e.value < 128)
			t->refused[e.value]++;
	}
}

static void usage(FILE *f)
{
	fprintf(f, "usage: mead-export REC --to npy [-o DIR]\n"
		   "  writes DIR/spikes.npy, stim.npy, events.npy (raw.npy + raw_sample.npy when\n"
		   "  the recording has raw frames) and DIR/recording.json; DIR defaults to REC.export\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *to = NULL, *out = NULL, *path;
	char *out_alloc = NULL, err[512];
	struct mead_rec_reader *r = NULL;
	struct mead_rec_record rec;
	struct npy spikes = { 0 }, stim = { 0 }, events = { 0 }, raw = { 0 }, raw_sample = { 0 };
	static struct tally tally;
	uint64_t messages[MEAD_KIND_COUNT + 1] = { 0 }, gaps[MEAD_KIND_COUNT + 1] = { 0 };
	uint64_t first_seq[MEAD_KIND_COUNT + 1] = { 0 }, last_seq[MEAD_KIND_COUNT + 1] = { 0 };
	uint64_t sample_back[MEAD_KIND_COUNT + 1] = { 0 }, last_sample[MEAD_KIND_COUNT + 1] = { 0 };
	uint32_t raw_channels = 0;
	char *last_status = NULL;
	int c, rc, status = 1;

	while ((c = getopt_long(argc, argv, "t:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 't': to = optarg; break;
		case 'o': out = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1 || !to) {
		usage(stderr);
		return 2;
	}
	if (strcmp(to, "npy") != 0) {
		fprintf(stderr, "mead-export: format \"%s\" is not supported (npy is)\n", to);
		return 2;
	}
	path = argv[optind];
	if (!out) {
		if (asprintf(&out_alloc, "%s.export", path) < 0)
			return 1;
		out = out_alloc;
	}
	rc = mead_rec_open(path, &r, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "mead-export: %s\n", err);
		goto done;
	}
	if (mkdir(out, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "mead-export: %s: %s\n", out, strerror(errno));
		goto done;
	}
	if (npy_open(&spikes, out, "spikes.npy",
		     "[('sample', '<u8'), ('electrode', '<u2'), ('flags', '<u2'), ('amplitude_uv', '<f4')]", "", 16) < 0 ||
	    npy_open(&stim, out, "stim.npy",
		     "[('sample', '<u8'), ('electrode', '<u2'), ('flags', '<u2'), ('amplitude_ua', '<f4'), "
		     "('phase_us', '<u4'), ('interphase_us', '<u4'), ('requested_sample', '<u8')]", "",
		     sizeof(struct mead_wire_stim)) < 0 ||
	    npy_open(&events, out, "events.npy",
		     "[('sample', '<u8'), ('type', '<u4'), ('value', '<i4'), ('samples', '<u4'), "
		     "('electrode', '<u2'), ('reserved', '<u2')]", "", sizeof(struct mead_event)) < 0)
		goto done;

	for (;;) {
		rc = mead_rec_next(r, &rec);
		if (rc == 0)
			break;
		if (rc < 0) {
			fprintf(stderr, "mead-export: %s (skipped)\n", mead_rec_stats(r)->last_error);
			continue;
		}
		unsigned k = rec.header.kind;
		if (messages[k]) {
			if (rec.header.seq > last_seq[k] + 1)
				gaps[k] += rec.header.seq - last_seq[k] - 1;
			if (k != MEAD_KIND_STATUS && rec.header.sample < last_sample[k])
				sample_back[k]++;
		} else {
			first_seq[k] = rec.header.seq;
		}
		messages[k]++;
		last_seq[k] = rec.header.seq;
		last_sample[k] = rec.header.sample;
		rc = 0;
		switch (k) {
		case MEAD_KIND_SPIKES:
			if (rec.header.record_size >= 16)
				rc = npy_add(&spikes, &rec, NULL);
			break;
		case MEAD_KIND_STIM:
			if (rec.header.record_size >= 24)
				rc = npy_add(&stim, &rec, fill_stim);
			break;
		case MEAD_KIND_EVENTS:
			if (rec.header.record_size >= 16) {
				rc = npy_add(&events, &rec, NULL);
				count_events(&rec, &tally);
			}
			break;
		case MEAD_KIND_RAW: {
			uint32_t ch = rec.header.record_size / 2;
			if (!raw.f) {
				static char tail[32];
				raw_channels = ch;
				snprintf(tail, sizeof(tail), ", %" PRIu32, ch);
				if (npy_open(&raw, out, "raw.npy", "'<i2'", tail, (size_t)ch * 2) < 0 ||
				    npy_open(&raw_sample, out, "raw_sample.npy", "'<u8'", "", 8) < 0)
					goto done;
			}
			if (ch != raw_channels) {
				fprintf(stderr, "mead-export: raw channel count changed at byte %" PRIu64 " (skipped)\n",
					rec.offset);
				break;
			}
			rc = npy_add_raw(&raw, &rec);
			for (uint32_t i = 0; rc == 0 && i < rec.header.count; i++) {
				uint64_t s = rec.header.sample + i;
				if (fwrite(&s, 8, 1, raw_sample.f) != 1)
					rc = -EIO;
				raw_sample.rows++;
			}
			break;
		}
		case MEAD_KIND_STATUS:
			free(last_status);
			last_status = strndup((const char *)rec.payload, rec.payload_len);
			break;
		}
		if (rc < 0) {
			fprintf(stderr, "mead-export: writing %s: %s\n", out, strerror(-rc));
			goto done;
		}
	}

	const struct mead_rec_info *info = mead_rec_info(r);
	const struct mead_rec_stats *st = mead_rec_stats(r);
	char *side_path = NULL;
	size_t cap = info->meta_len + (last_status ? strlen(last_status) : 0) + 65536;
	char *buf = malloc(cap);
	struct mead_jw w;
	if (!buf || asprintf(&side_path, "%s/recording.json", out) < 0)
		goto done;
	mead_jw_init(&w, buf, cap);
	mead_jw_obj_begin(&w);
	mead_jw_key(&w, "recording");
	mead_jw_str(&w, path);
	mead_jw_key(&w, "format_version");
	mead_jw_u64(&w, info->version);
	mead_jw_key(&w, "sample_rate_hz");
	mead_jw_u64(&w, info->sample_rate_hz);
	mead_jw_key(&w, "electrode_count");
	mead_jw_u64(&w, info->electrode_count);
	mead_jw_key(&w, "uv_per_count");
	mead_jw_double(&w, info->uv_per_count);
	mead_jw_key(&w, "header");
	mead_jw_raw(&w, info->meta, info->meta_len);
	mead_jw_key(&w, "files");
	mead_jw_obj_begin(&w);
	mead_jw_key(&w, "spikes");
	mead_jw_str(&w, "spikes.npy");
	mead_jw_key(&w, "stim");
	mead_jw_str(&w, "stim.npy");
	mead_jw_key(&w, "events");
	mead_jw_str(&w, "events.npy");
	if (raw.f) {
		mead_jw_key(&w, "raw");
		mead_jw_str(&w, "raw.npy");
		mead_jw_key(&w, "raw_sample");
		mead_jw_str(&w, "raw_sample.npy");
	}
	mead_jw_obj_end(&w);
	mead_jw_key(&w, "counts");
	mead_jw_obj_begin(&w);
	mead_jw_key(&w, "spikes");
	mead_jw_u64(&w, spikes.rows);
	mead_jw_key(&w, "stim");
	mead_jw_u64(&w, stim.rows);
	mead_jw_key(&w, "events");
	mead_jw_u64(&w, events.rows);
	mead_jw_key(&w, "raw_frames");
	mead_jw_u64(&w, raw.rows);
	mead_jw_key(&w, "messages");
	mead_jw_obj_begin(&w);
	for (int k = 1; k <= MEAD_KIND_COUNT; k++) {
		mead_jw_key(&w, mead_wire_topic((enum mead_wire_kind)k));
		mead_jw_u64(&w, messages[k]);
	}
	mead_jw_obj_end(&w);
	mead_jw_obj_end(&w);
	mead_jw_key(&w, "losses");
	mead_jw_obj_begin(&w);
	mead_jw_key(&w, "seq_gaps");
	mead_jw_obj_begin(&w);
	for (int k = 1; k <= MEAD_KIND_COUNT; k++) {
		mead_jw_key(&w, mead_wire_topic((enum mead_wire_kind)k));
		mead_jw_u64(&w, gaps[k]);
	}
	mead_jw_obj_end(&w);
	mead_jw_key(&w, "messages_before_first");
	mead_jw_obj_begin(&w);
	for (int k = 1; k <= MEAD_KIND_COUNT; k++) {
		mead_jw_key(&w, mead_wire_topic((enum mead_wire_kind)k));
		mead_jw_u64(&w, messages[k] ? first_seq[k] : 0);
	}
	mead_jw_obj_end(&w);
	mead_jw_key(&w, "sample_went_back");
	mead_jw_u64(&w, sample_back[1] + sample_back[2] + sample_back[3] + sample_back[4]);
	mead_jw_key(&w, "corrupt_records");
	mead_jw_u64(&w, st->corrupt);
	mead_jw_key(&w, "skipped_bytes");
	mead_jw_u64(&w, st->skipped_bytes);
	mead_jw_key(&w, "torn_tail");
	mead_jw_bool(&w, st->torn);
	mead_jw_key(&w, "torn_bytes");
	mead_jw_u64(&w, st->torn_bytes);
	/* what the rig itself lost, from the events (wire 1.1) */
	static const uint32_t loss_types[] = { MEAD_EVENT_OVERFLOW, MEAD_EVENT_GAP, MEAD_EVENT_LATE, MEAD_EVENT_DEVICE_GONE,
					       MEAD_EVENT_DEVICE_BACK, MEAD_EVENT_STALL, MEAD_EVENT_STIM_LOST };
	mead_jw_key(&w, "device");
	mead_jw_obj_begin(&w);
	for (size_t i = 0; i < sizeof(loss_types) / sizeof(loss_types[0]); i++) {
		mead_jw_key(&w, mead_event_type_name(loss_types[i]));
		mead_jw_obj_begin(&w);
		mead_jw_key(&w, "events");
		mead_jw_u64(&w, tally.events[loss_types[i]]);
		mead_jw_key(&w, "samples");
		mead_jw_u64(&w, tally.samples[loss_types[i]]);
		mead_jw_obj_end(&w);
	}
	mead_jw_obj_end(&w);
	mead_jw_key(&w, "stim_refused");
	mead_jw_obj_begin(&w);
	for (uint32_t k = 0; k < 128; k++)
		if (tally.refused[k]) {
			const char *name = mead_stim_reason_name(k);
			char other[32];
			snprintf(other, sizeof(other), "reason_%u", k);
			mead_jw_key(&w, name ? name : other);
			mead_jw_u64(&w, tally.refused[k]);
		}
	mead_jw_obj_end(&w);
	mead_jw_obj_end(&w);
	mead_jw_key(&w, "last_status");
	if (last_status) {
		struct mead_json *doc;
		static const struct mead_json_limits lim = { 1u << 24, 32, 1u << 20, 1u << 20 };
		if (mead_json_parse(last_status, strlen(last_status), &lim, &doc, NULL, 0) == 0) {
			mead_jw_raw(&w, last_status, strlen(last_status));
			mead_json_free(doc);
		} else {
			mead_jw_null(&w);
		}
	} else {
		mead_jw_null(&w);
	}
	mead_jw_obj_end(&w);
	int n = mead_jw_finish(&w);
	FILE *sf = n >= 0 ? fopen(side_path, "w") : NULL;
	if (!sf || fwrite(buf, 1, (size_t)n, sf) != (size_t)n || fputc('\n', sf) == EOF || fclose(sf) != 0) {
		fprintf(stderr, "mead-export: %s: cannot write\n", side_path);
		free(side_path);
		free(buf);
		goto done;
	}
	free(side_path);
	free(buf);
	status = 0;
	if (npy_close(&spikes) < 0 || npy_close(&stim) < 0 || npy_close(&events) < 0 || npy_close(&raw) < 0 ||
	    npy_close(&raw_sample) < 0)
		status = 1;
	if (status == 0)
		printf("%s: %" PRIu64 " spikes, %" PRIu64 " stim pulses, %" PRIu64 " events, %" PRIu64
		       " raw frames -> %s%s\n",
		       path, spikes.rows, stim.rows, events.rows, raw.rows, out,
		       st->torn || st->corrupt ? " (damaged file: see losses in recording.json)" : "");
done:
	npy_close(&spikes);
	npy_close(&stim);
	npy_close(&events);
	npy_close(&raw);
	npy_close(&raw_sample);
	free(last_status);
	free(out_alloc);
	mead_rec_close(r);
	return status;
}
