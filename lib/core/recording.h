/* SPDX-License-Identifier: MIT */
/*
 * Recording file format (see docs/recording.md): its reader, and the
 * framing its writer (the daemon's recorder thread) puts around the data.
 *
 * File = header, then records, append-only.  All integers little-endian.
 *   header: "MEADREC\0" | u32 version | u32 header_len | u32 config_len |
 *           u32 meta_len | config (YAML text) | meta (JSON) | u32 crc32
 *           (crc over every header byte before it; header_len counts all)
 *   record: u32 sync "MERC" | u32 body_len | body | u32 crc32
 *           (crc over body_len and body)
 *   body:   u8 topic_len | topic | 32-byte wire v1 header | payload
 *           (payload = count x record_size bytes, exactly as published)
 *
 * The reader maps the file and walks it.  A record that extends past the
 * end is a torn tail (the writer was cut off): the reader stops there
 * cleanly.  A record whose checksum or framing is wrong is reported as
 * corrupt with its offset, and the reader continues at the next offset that
 * starts a valid record, so one damaged byte costs one record.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mead/wire.h"

#define MEAD_REC_MAGIC "MEADREC"          /* 8 bytes with the terminating NUL */
#define MEAD_REC_MAGIC_LEN 8
#define MEAD_REC_VERSION 1u
#define MEAD_REC_FIXED_HEADER 24u
#define MEAD_REC_SYNC 0x4352454Du          /* bytes "MERC" */
#define MEAD_REC_MAX_BODY (64u << 20)
#define MEAD_REC_MAX_TOPIC 16u
#define MEAD_REC_MAX_CONFIG (16u << 20)
#define MEAD_REC_MAX_META (16u << 20)

struct mead_rec_reader;

struct mead_rec_info {
	uint32_t version;
	const char *config;        /* YAML as loaded, not NUL-terminated */
	size_t config_len;
	const char *meta;          /* JSON, not NUL-terminated */
	size_t meta_len;
	/* From meta (0 when absent). */
	uint32_t sample_rate_hz;
	uint32_t electrode_count;
	uint32_t raw_channels;
	double uv_per_count;
	uint64_t file_size;
	uint64_t data_offset;      /* first record */
};

struct mead_rec_record {
	uint64_t offset;                    /* of the record in the file */
	char topic[MEAD_REC_MAX_TOPIC + 1];
	struct mead_wire_header header;     /* host order */
	const uint8_t *wire_header;         /* the 32 bytes as published */
	const uint8_t *payload;             /* count x record_size bytes */
	uint32_t payload_len;
};

struct mead_rec_stats {
	uint64_t records;                   /* returned */
	uint64_t corrupt;                   /* records reported corrupt */
	uint64_t skipped_bytes;             /* bytes skipped while resynchronising */
	bool torn;                          /* the file ends inside a record */
	uint64_t torn_offset;               /* where that record starts */
	uint64_t torn_bytes;                /* bytes of it present */
	uint64_t last_error_offset;
	char last_error[160];
};

/* Opens and maps path; checks the header (magic, version, crc). */
int mead_rec_open(const char *path, struct mead_rec_reader **ret, char *err, size_t err_len);
void mead_rec_close(struct mead_rec_reader *r);

const struct mead_rec_info *mead_rec_info(const struct mead_rec_reader *r);

/* 1: *ret filled (valid until close); 0: end of file (clean or torn, see
 * stats); -EBADMSG: a corrupt record was skipped (stats.last_error names
 * it); call again to go on. */
int mead_rec_next(struct mead_rec_reader *r, struct mead_rec_record *ret);

/* Back to the first record; the stats start over. */
void mead_rec_rewind(struct mead_rec_reader *r);

const struct mead_rec_stats *mead_rec_stats(const struct mead_rec_reader *r);

/* ---- Writer side ------------------------------------------------------ */

/* Bytes of a header holding config_len bytes of YAML and meta_len of JSON. */
size_t mead_rec_header_size(size_t config_len, size_t meta_len);

/* Writes the whole header (checksum included) into out, which holds
 * mead_rec_header_size(config_len, meta_len) bytes. */
void mead_rec_header_encode(uint8_t *out, const char *config, size_t config_len, const char *meta,
			    size_t meta_len);

#define MEAD_REC_FRAME_HEAD 8u
#define MEAD_REC_FRAME_TAIL 4u

/* The bytes that go before (sync word, body length) and after (checksum)
 * one record body. */
void mead_rec_frame(const uint8_t *body, size_t len, uint8_t head[MEAD_REC_FRAME_HEAD],
		    uint8_t tail[MEAD_REC_FRAME_TAIL]);
