/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the recording reader on an arbitrary file.
 *
 * The input is the whole file (an in-memory file opened by its
 * /proc/self/fd path, since the reader maps a path).  When the header is
 * accepted, every record is read to the end, the reader is rewound and the
 * records are read again.
 *
 * Invariants: the header's config and meta lie inside the file and the
 * first record starts after them; every returned record lies inside the
 * file, in increasing order, with a terminated topic that names its kind
 * and payload_len = count x record_size; the reader ends after a bounded
 * number of calls; the statistics add up (records returned, corrupt
 * records reported, a torn tail inside the file); a second pass returns the
 * same records.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/core/recording.h"
#include "tests/fuzz/fuzz_common.h"

struct pass {
	uint64_t records, corrupt, sum;
};

static void read_all(struct mead_rec_reader *r, const struct mead_rec_info *info, size_t size, struct pass *ret)
{
	struct mead_rec_record rec;
	uint64_t last_end = info->data_offset, calls = 0;
	int rc;

	memset(ret, 0, sizeof(*ret));
	while ((rc = mead_rec_next(r, &rec)) != 0) {
		FUZZ_CHECK(++calls <= size + 2, "the reader does not end (%llu calls on %zu bytes)",
			   (unsigned long long)calls, size);
		if (rc == -EBADMSG) {
			const struct mead_rec_stats *s = mead_rec_stats(r);
			ret->corrupt++;
			FUZZ_CHECK(memchr(s->last_error, '\0', sizeof(s->last_error)) && s->last_error[0],
				   "corrupt record without a message");
			FUZZ_CHECK(s->last_error_offset >= info->data_offset && s->last_error_offset < size,
				   "corrupt record at %llu outside the data", (unsigned long long)s->last_error_offset);
			continue;
		}
		FUZZ_CHECK(rc == 1, "mead_rec_next returned %d", rc);
		ret->records++;
		FUZZ_CHECK(rec.offset >= last_end, "record at %llu before the end of the previous one (%llu)",
			   (unsigned long long)rec.offset, (unsigned long long)last_end);
		FUZZ_CHECK(memchr(rec.topic, '\0', sizeof(rec.topic)) && rec.topic[0], "topic not terminated");
		FUZZ_CHECK(!mead_wire_topic((enum mead_wire_kind)rec.header.kind)[0] ||
				   strcmp(rec.topic, mead_wire_topic((enum mead_wire_kind)rec.header.kind)) == 0,
			   "topic %s for kind %u", rec.topic, rec.header.kind);
		FUZZ_CHECK((uint64_t)rec.header.count * rec.header.record_size == rec.payload_len,
			   "payload %u for %u x %u", rec.payload_len, rec.header.count, rec.header.record_size);
		FUZZ_CHECK(rec.wire_header + 32 == rec.payload, "payload does not follow the wire header");
		/* Touch the first and last byte of each part: out-of-file pointers fault under ASan. */
		ret->sum += rec.wire_header[0] + rec.wire_header[31];
		if (rec.payload_len)
			ret->sum += rec.payload[0] + rec.payload[rec.payload_len - 1];
		last_end = (uint64_t)(rec.payload - rec.wire_header) + rec.offset + rec.payload_len;
		ret->sum += rec.offset;
	}
	{
		const struct mead_rec_stats *s = mead_rec_stats(r);
		if (s->torn) {
			FUZZ_CHECK(s->torn_offset >= info->data_offset && s->torn_offset < size, "torn tail at %llu",
				   (unsigned long long)s->torn_offset);
			FUZZ_CHECK(s->torn_offset + s->torn_bytes == size, "torn tail %llu + %llu != %zu",
				   (unsigned long long)s->torn_offset, (unsigned long long)s->torn_bytes, size);
		}
		FUZZ_CHECK(s->skipped_bytes <= size, "skipped %llu of %zu bytes", (unsigned long long)s->skipped_bytes, size);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mead_rec_reader *r = NULL;
	const struct mead_rec_info *info;
	const struct mead_rec_stats *s;
	struct pass first, second;
	char path[64], err[256];
	int fd, rc;

	fd = fuzz_memfile(data, size, path, sizeof(path));
	FUZZ_CHECK(fd >= 0, "memfd");
	memset(err, 0x55, sizeof(err));
	rc = mead_rec_open(path, &r, err, sizeof(err));
	close(fd);
	if (rc < 0) {
		FUZZ_CHECK(rc == -EBADMSG || rc == -EPROTONOSUPPORT || rc == -ENOMEM || rc == -EINVAL,
			   "open returned %d (%s)", rc, err);
		FUZZ_CHECK(memchr(err, '\0', sizeof(err)) && (rc == -ENOMEM || err[0]), "open failed without a message");
		return 0;
	}
	info = mead_rec_info(r);
	FUZZ_CHECK(info->version == MEAD_REC_VERSION, "version %u accepted", info->version);
	FUZZ_CHECK(info->file_size == size, "file_size %llu for %zu bytes", (unsigned long long)info->file_size, size);
	FUZZ_CHECK(info->data_offset >= MEAD_REC_FIXED_HEADER + 4 && info->data_offset <= size,
		   "data offset %llu", (unsigned long long)info->data_offset);
	FUZZ_CHECK(info->config_len <= MEAD_REC_MAX_CONFIG && info->meta_len <= MEAD_REC_MAX_META, "header lengths");
	FUZZ_CHECK(MEAD_REC_FIXED_HEADER + info->config_len + info->meta_len + 4 == info->data_offset,
		   "header lengths do not add up");
	if (info->config_len)
		FUZZ_CHECK(info->config[0] == (char)data[MEAD_REC_FIXED_HEADER], "config not where the header says");
	if (info->meta_len)
		FUZZ_CHECK(info->meta[info->meta_len - 1] == (char)data[info->data_offset - 5],
			   "meta not where the header says");
	FUZZ_CHECK(info->raw_channels <= UINT16_MAX && info->electrode_count <= UINT16_MAX + 1u, "meta values");

	read_all(r, info, size, &first);
	s = mead_rec_stats(r);
	FUZZ_CHECK(s->records == first.records, "stats say %llu records, %llu returned",
		   (unsigned long long)s->records, (unsigned long long)first.records);
	FUZZ_CHECK(s->corrupt == first.corrupt, "stats say %llu corrupt, %llu reported",
		   (unsigned long long)s->corrupt, (unsigned long long)first.corrupt);
	FUZZ_CHECK(mead_rec_next(r, &(struct mead_rec_record){ 0 }) == 0, "records after the end");

	mead_rec_rewind(r);
	read_all(r, info, size, &second);
	FUZZ_CHECK(second.records == first.records && second.corrupt == first.corrupt && second.sum == first.sum,
		   "the second pass differs: %llu/%llu records, %llu/%llu corrupt", (unsigned long long)first.records,
		   (unsigned long long)second.records, (unsigned long long)first.corrupt,
		   (unsigned long long)second.corrupt);
	mead_rec_close(r);
	return 0;
}
