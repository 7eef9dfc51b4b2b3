/* SPDX-License-Identifier: MIT */
/*
 * Recorder: appends every published message to the recording file on its
 * own thread (format: lib/core/recording.h, docs/recording.md).
 *
 * The publisher thread hands messages over through an SPSC ring, so a
 * slow disk never holds publishing up: in real-time mode a full ring is a
 * counted recording loss; in virtual-clock mode the publisher waits for
 * room instead (nothing is lost, back-pressure reaches the loop).  A write
 * error (disk full, file size limit, I/O error) stops recording cleanly:
 * the file is cut back to its last complete record, the error is kept for
 * status and reported once through the log callback, and every later
 * message is counted as not recorded.  The daemon keeps running.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mead/wire.h"

struct mead_recorder;

struct mead_recorder_params {
	const char *path;
	bool overwrite;               /* false: refuse to replace an existing file */
	const char *config_text;      /* configuration as loaded (may be NULL) */
	size_t config_len;
	const char *meta_json;        /* layout/rate JSON object (see mead_status_recording_meta) */
	uint32_t fsync_interval_ms;   /* fdatasync at most this often; 0: only at stop */
	size_t ring_bytes;            /* publisher -> recorder ring; 0: 16 MiB */
	size_t write_buffer;          /* bytes gathered per write(); 0: 1 MiB */
	/* Called from the recorder thread (once, when recording fails). */
	void (*log)(void *ctx, int prio, const char *msg);
	void *log_ctx;
};

enum mead_recorder_state {
	MEAD_RECORDER_READY = 0,      /* header written, thread not started */
	MEAD_RECORDER_RECORDING,
	MEAD_RECORDER_STOPPED,        /* clean stop: everything written and synced */
	MEAD_RECORDER_FAILED,         /* a write failed; see error/message */
};

struct mead_recorder_counters {
	uint64_t recorded[MEAD_KIND_COUNT + 1];      /* messages written, per kind */
	uint64_t lost[MEAD_KIND_COUNT + 1];          /* ring full (real-time mode) */
	uint64_t not_recorded[MEAD_KIND_COUNT + 1];  /* after a failure */
	uint64_t bytes;                              /* file size written */
	uint64_t fsyncs;
	int state;                                   /* enum mead_recorder_state */
	int error;                                   /* negative errno of the failure, 0 */
	char message[192];                           /* for a person, "" unless failed */
};

/* main: creates the file and writes its header (synced). */
int mead_recorder_new(const struct mead_recorder_params *params, struct mead_recorder **ret,
		      char *err, size_t err_len);
int mead_recorder_start(struct mead_recorder *rec);
/* main: writes what is queued, syncs, closes, joins.  Idempotent. */
int mead_recorder_stop(struct mead_recorder *rec);
void mead_recorder_free(struct mead_recorder *rec);

/* Publisher thread only (single producer).  hdr is the 32 wire bytes as
 * published.  wait: block while the ring is full (virtual clock).
 * 0, -ENOBUFS (lost), -EIO (recording failed or stopped: not recorded). */
int mead_recorder_submit(struct mead_recorder *rec, const char *topic, const void *hdr,
			 const void *payload, size_t payload_len, bool wait);

void mead_recorder_get_counters(const struct mead_recorder *rec, struct mead_recorder_counters *ret);
const char *mead_recorder_path(const struct mead_recorder *rec);
const char *mead_recorder_state_name(int state);
