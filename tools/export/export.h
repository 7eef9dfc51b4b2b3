/* SPDX-License-Identifier: MIT */
/*
 * mead-export: what the formats share.  One recording opened once
 * (source.c): its header, its layout, its configuration; one reading loop
 * (exp_walk) that every format runs, once or twice, and that hands each
 * message's records to the format already decoded and aligned; one account
 * of what the file showed lost (struct exp_counts), written next to every
 * export as the same JSON.
 *
 * A file the writer was cut off in (kill -9, power cut) ends in a torn
 * record: the reader stops before it, so every export holds the readable
 * prefix and says so (exp_damage()).  Corrupt records are skipped and
 * counted.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/core/json.h"
#include "lib/core/recording.h"
#include "mead/wire.h"

#define EXP_MAX_ELECTRODES 4096u
#define EXP_LABEL_MAX 16

struct exp_layout {
	uint32_t count;
	uint32_t rows, cols;
	double pitch_um;
	char (*labels)[EXP_LABEL_MAX];
	bool *excluded;
	float *x_um, *y_um;         /* NAN where unknown */
	const char *positions_from; /* how x/y were found, for the file's notes */
};

struct exp_rec {
	const char *path;
	struct mead_rec_reader *r;
	const struct mead_rec_info *info;
	struct mead_json *meta;     /* NULL if the header's JSON did not parse */
	struct exp_layout layout;
	/* From the header and the configuration it carries ("" / false when absent). */
	char mead_version[32], wire[16], driver_name[64], rig_name[64], protocol[32];
	uint64_t started_realtime_ns;
	bool config_loaded;         /* the configuration text parsed with this build's schema */
	uint64_t driver_seed, protocol_seed;
	double sample_rate_hz;
	bool progress;              /* progress lines on stderr */
};

/* What one walk over the file saw. */
struct exp_counts {
	uint64_t messages[MEAD_KIND_COUNT + 1], gaps[MEAD_KIND_COUNT + 1];
	uint64_t first_seq[MEAD_KIND_COUNT + 1], last_seq[MEAD_KIND_COUNT + 1];
	uint64_t sample_back[MEAD_KIND_COUNT + 1], last_sample[MEAD_KIND_COUNT + 1];
	uint64_t spikes, stim, events, raw_frames;
	uint64_t *spikes_per_electrode;  /* layout.count entries */
	uint64_t spikes_outside;         /* electrode index not in the layout: not exported per electrode */
	uint32_t raw_channels;           /* of the first raw message; later ones with another count are skipped */
	uint64_t raw_skipped;            /* raw messages skipped for that */
	uint64_t raw_first_sample;
	bool raw_contiguous;
	/* spike waveforms (wire 1.2): every record of the first waveform
	 * message's size; messages of another size are skipped and counted */
	uint64_t waveforms;
	uint64_t *waveforms_per_electrode; /* layout.count entries */
	uint64_t waveforms_outside;        /* electrode not in the layout */
	uint32_t waveform_pre, waveform_post, waveform_size;
	uint64_t waveforms_skipped;        /* records skipped: another size, or a header that does not match its size */             /* every raw frame's sample is the one after the previous frame's */
	uint64_t end_sample;             /* one past the last sample any record names */
	uint64_t event_types[32], event_samples[32], refused[128];
	char *last_status;               /* the last status message's JSON, NUL-terminated */
	/* the reader's account, copied at the end of the walk */
	uint64_t corrupt, skipped_bytes;
	bool torn;
	uint64_t torn_offset, torn_bytes;
};

/* Records as the walk hands them: host order, aligned, completed to the
 * current wire minor (a v1.0 stim record gets requested_sample = sample, a
 * v1.0 event samples = 0), longer records cut to what this build knows.
 * A callback returning < 0 ends the walk with that error.  Topics this
 * build does not know are passed over; spike waveforms (wire 1.2) have a
 * callback of their own. */
struct exp_sink {
	void *ctx;
	int (*spikes)(void *ctx, const struct mead_spike *s, uint32_t n);
	int (*stim)(void *ctx, const struct mead_wire_stim *s, uint32_t n);
	int (*events)(void *ctx, const struct mead_event *e, uint32_t n);
	/* n frames of channels int16 counts from sample first, interleaved */
	int (*raw)(void *ctx, uint64_t first, const int16_t *frames, uint32_t n, uint32_t channels);
	int (*status)(void *ctx, const char *json, size_t len);
	/* spike waveforms: n records of record_size bytes (struct
	 * mead_waveform, then pre + 1 + post floats), aligned */
	int (*waveforms)(void *ctx, const uint8_t *recs, uint32_t n, uint32_t record_size);
};

int exp_open(struct exp_rec *x, const char *path, bool progress);
void exp_close(struct exp_rec *x);

/* Reads the whole file from its first record; what names the pass in the
 * progress lines ("reading", "writing NWB").  Skipped records are reported
 * on stderr once each.  c is zeroed first; free it with exp_counts_free. */
int exp_walk(struct exp_rec *x, const char *what, const struct exp_sink *sink, struct exp_counts *c);
void exp_counts_free(struct exp_counts *c);
/* The first pass of a two-pass format: counts only (c freed on failure). */
int exp_count(struct exp_rec *x, struct exp_counts *c);

/* The account of a walk as one JSON object (recording.json of every
 * export): rate, layout, counts, losses, the last status.  files: pairs of
 * (role, file name), NULL-terminated.  Returns a malloc'd string or NULL. */
char *exp_summary_json(const struct exp_rec *x, const struct exp_counts *c, const char *const *files);
int exp_write_file(const char *path, const char *text);
/* buf, the JSON w wrote into it, or NULL (and buf freed) if it overflowed. */
char *exp_jw_text(struct mead_jw *w, char *buf);

/* " (...)" naming what the file lacked (torn tail, corrupt records, seq
 * gaps), or "" for a whole file; for the line each export prints. */
void exp_damage(const struct exp_counts *c, char *buf, size_t len);

static inline double exp_seconds(const struct exp_rec *x, uint64_t sample)
{
	return (double)sample / x->sample_rate_hz;
}

/* CLOCK_REALTIME of sample 0, and where it was found (for the notes). */
uint64_t exp_start_ns(const struct exp_rec *x, const struct exp_counts *c, const char **from);

/* ISO 8601 UTC with microseconds ("2024-05-01T12:00:00.123456Z"). */
void exp_iso8601(uint64_t realtime_ns, char *buf, size_t len);

/* The label of an electrode as a name for files and folders: letters,
 * digits, '-' and '_' kept, anything else '_'. */
void exp_safe_name(const char *in, char *out, size_t len);

/* Whether this build writes NWB (it needs HDF5). */
extern const bool exp_nwb_built;

/* The formats. out: a file (nwb) or a folder (npy, openephys). */
int exp_npy(struct exp_rec *x, const char *out);
int exp_nwb(struct exp_rec *x, const char *out, bool force);
int exp_openephys(struct exp_rec *x, const char *out);
