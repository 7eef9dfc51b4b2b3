/* SPDX-License-Identifier: MIT */
#include "lib/core/recording.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "lib/core/json.h"

struct mead_rec_reader {
	const uint8_t *map;
	size_t size;
	uint64_t pos;
	struct mead_rec_info info;
	struct mead_rec_stats stats;
};

enum check { CHECK_OK, CHECK_END, CHECK_TORN, CHECK_BAD };

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return le32toh(v);
}

static void wr32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static uint32_t crc_more(uint32_t c, const uint8_t *p, size_t n)
{
	/* zlib takes uInt lengths: feed large spans in pieces. */
	while (n) {
		uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
		c = (uint32_t)crc32(c, p, chunk);
		p += chunk;
		n -= chunk;
	}
	return c;
}

static uint32_t crc(const uint8_t *p, size_t n)
{
	return crc_more((uint32_t)crc32(0L, Z_NULL, 0), p, n);
}

size_t mead_rec_header_size(size_t config_len, size_t meta_len)
{
	return MEAD_REC_FIXED_HEADER + config_len + meta_len + 4;
}

void mead_rec_header_encode(uint8_t *out, const char *config, size_t config_len, const char *meta,
			    size_t meta_len)
{
	size_t hlen = mead_rec_header_size(config_len, meta_len);

	memcpy(out, MEAD_REC_MAGIC, MEAD_REC_MAGIC_LEN);
	wr32(out + 8, MEAD_REC_VERSION);
	wr32(out + 12, (uint32_t)hlen);
	wr32(out + 16, (uint32_t)config_len);
	wr32(out + 20, (uint32_t)meta_len);
	if (config_len)
		memcpy(out + MEAD_REC_FIXED_HEADER, config, config_len);
	if (meta_len)
		memcpy(out + MEAD_REC_FIXED_HEADER + config_len, meta, meta_len);
	wr32(out + hlen - 4, crc(out, hlen - 4));
}

void mead_rec_frame(const uint8_t *body, size_t len, uint8_t head[MEAD_REC_FRAME_HEAD],
		    uint8_t tail[MEAD_REC_FRAME_TAIL])
{
	wr32(head, MEAD_REC_SYNC);
	wr32(head + 4, (uint32_t)len);
	wr32(tail, crc_more(crc(head + 4, 4), body, len));
}

static enum check check_record(const struct mead_rec_reader *r, uint64_t o, struct mead_rec_record *rec,
			       uint64_t *ret_next, const char **why)
{
	uint64_t avail = r->size - o;
	const uint8_t *p = r->map + o;
	uint32_t body_len, topic_len;
	struct mead_wire_header h;

	*why = "";
	if (avail == 0)
		return CHECK_END;
	if (avail < 8)
		return CHECK_TORN;
	if (rd32(p) != MEAD_REC_SYNC) {
		*why = "no record marker";
		return CHECK_BAD;
	}
	body_len = rd32(p + 4);
	if (body_len < 1 + 1 + sizeof(h) || body_len > MEAD_REC_MAX_BODY) {
		*why = "impossible record length";
		return CHECK_BAD;
	}
	if ((uint64_t)body_len + 12 > avail)
		return CHECK_TORN;
	if (crc(p + 4, 4 + (size_t)body_len) != rd32(p + 8 + body_len)) {
		*why = "checksum mismatch";
		return CHECK_BAD;
	}
	topic_len = p[8];
	if (topic_len == 0 || topic_len > MEAD_REC_MAX_TOPIC || 1 + topic_len + sizeof(h) > body_len) {
		*why = "bad topic length";
		return CHECK_BAD;
	}
	if (mead_wire_header_decode(p + 9 + topic_len, sizeof(h), &h) < 0) {
		*why = "bad wire header";
		return CHECK_BAD;
	}
	uint64_t payload_len = body_len - 1 - topic_len - sizeof(h);
	if ((uint64_t)h.count * h.record_size != payload_len) {
		*why = "payload length does not match count x record_size";
		return CHECK_BAD;
	}
	/* A kind this build does not know (a newer writer's) is a record all
	 * the same: its caller passes it over by kind. */
	const char *t = mead_wire_topic((enum mead_wire_kind)h.kind);
	if (t[0] && (strlen(t) != topic_len || memcmp(t, p + 9, topic_len) != 0)) {
		*why = "topic does not match kind";
		return CHECK_BAD;
	}
	for (uint32_t i = 0; !t[0] && i < topic_len; i++)
		if (p[9 + i] < 'a' || p[9 + i] > 'z') {
			*why = "topic of an unknown kind is not a name";
			return CHECK_BAD;
		}
	if (rec) {
		rec->offset = o;
		memcpy(rec->topic, p + 9, topic_len);
		rec->topic[topic_len] = '\0';
		rec->header = h;
		rec->wire_header = p + 9 + topic_len;
		rec->payload = p + 9 + topic_len + sizeof(h);
		rec->payload_len = (uint32_t)payload_len;
	}
	*ret_next = o + 12 + body_len;
	return CHECK_OK;
}

/* Next offset after from where a record marker starts, or size. */
static uint64_t find_sync(const struct mead_rec_reader *r, uint64_t from)
{
	static const uint8_t sync[4] = { 'M', 'E', 'R', 'C' };
	if (from >= r->size)
		return r->size;
	const uint8_t *q = memmem(r->map + from, r->size - from, sync, 4);
	return q ? (uint64_t)(q - r->map) : r->size;
}

static void set_error(struct mead_rec_reader *r, uint64_t o, const char *why)
{
	r->stats.corrupt++;
	r->stats.last_error_offset = o;
	snprintf(r->stats.last_error, sizeof(r->stats.last_error), "corrupt record at byte %" PRIu64 ": %s", o, why);
}

int mead_rec_next(struct mead_rec_reader *r, struct mead_rec_record *ret)
{
	uint64_t o = r->pos, next, q;
	const char *why;
	struct mead_rec_record rec;

	switch (check_record(r, o, &rec, &next, &why)) {
	case CHECK_OK:
		r->pos = next;
		r->stats.records++;
		*ret = rec;
		return 1;
	case CHECK_END:
		return 0;
	case CHECK_TORN:
		/* Either the writer was cut off here, or a damaged length points
		 * past the end: only a valid record further on tells them apart. */
		for (q = find_sync(r, o + 1); q < r->size; q = find_sync(r, q + 1)) {
			if (check_record(r, q, NULL, &next, &why) == CHECK_OK) {
				set_error(r, o, "record length runs past a later valid record");
				r->stats.skipped_bytes += q - o;
				r->pos = q;
				return -EBADMSG;
			}
		}
		r->stats.torn = true;
		r->stats.torn_offset = o;
		r->stats.torn_bytes = r->size - o;
		r->pos = r->size;
		return 0;
	case CHECK_BAD:
	default:
		set_error(r, o, why);
		for (q = find_sync(r, o + 1); q < r->size; q = find_sync(r, q + 1)) {
			enum check c = check_record(r, q, NULL, &next, &why);
			if (c == CHECK_OK || c == CHECK_TORN)
				break;
		}
		r->stats.skipped_bytes += q - o;
		r->pos = q;
		return -EBADMSG;
	}
}

static int parse_meta(struct mead_rec_info *info)
{
	static const struct mead_json_limits lim = { MEAD_REC_MAX_META, 16, 1u << 20, 1u << 20 };
	struct mead_json *doc;
	const struct mead_json_value *root, *v;

	if (mead_json_parse(info->meta, info->meta_len, &lim, &doc, NULL, 0) < 0)
		return -EBADMSG;
	root = mead_json_root(doc);
	if ((v = mead_json_get(doc, root, "sample_rate_hz")) && v->is_int && v->i > 0 && v->i <= UINT32_MAX)
		info->sample_rate_hz = (uint32_t)v->i;
	if ((v = mead_json_get(doc, root, "raw_channels")) && v->is_int && v->i >= 0 && v->i <= UINT16_MAX)
		info->raw_channels = (uint32_t)v->i;
	if ((v = mead_json_get(doc, root, "uv_per_count")) && v->type == MEAD_JSON_NUMBER)
		info->uv_per_count = v->num;
	if ((v = mead_json_get(doc, root, "electrode_count")) && v->is_int && v->i >= 0 && v->i <= UINT16_MAX + 1)
		info->electrode_count = (uint32_t)v->i;
	mead_json_free(doc);
	return 0;
}

int mead_rec_open(const char *path, struct mead_rec_reader **ret, char *err, size_t err_len)
{
	struct mead_rec_reader *r;
	struct stat st;
	int fd, rc;
	const uint8_t *m;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, err_len, "%s: not a regular file", path);
		close(fd);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size < MEAD_REC_FIXED_HEADER + 4) {
		snprintf(err, err_len, "%s: too short for a recording header", path);
		close(fd);
		return -EBADMSG;
	}
	m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	rc = -errno;
	close(fd);
	if (m == MAP_FAILED) {
		snprintf(err, err_len, "%s: mmap: %s", path, strerror(-rc));
		return rc;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		munmap((void *)m, (size_t)st.st_size);
		return -ENOMEM;
	}
	r->map = m;
	r->size = (size_t)st.st_size;
	r->info.file_size = r->size;

	uint32_t version = rd32(m + 8), header_len = rd32(m + 12), config_len = rd32(m + 16), meta_len = rd32(m + 20);
	if (memcmp(m, MEAD_REC_MAGIC, MEAD_REC_MAGIC_LEN) != 0) {
		snprintf(err, err_len, "%s: not a mead recording (bad magic)", path);
		rc = -EBADMSG;
		goto fail;
	}
	if (version != MEAD_REC_VERSION) {
		snprintf(err, err_len, "%s: recording format version %" PRIu32 ", this reader knows %u", path, version,
			 MEAD_REC_VERSION);
		rc = -EPROTONOSUPPORT;
		goto fail;
	}
	if (config_len > MEAD_REC_MAX_CONFIG || meta_len > MEAD_REC_MAX_META ||
	    (uint64_t)header_len != (uint64_t)MEAD_REC_FIXED_HEADER + config_len + meta_len + 4 || header_len > r->size) {
		snprintf(err, err_len, "%s: recording header lengths are inconsistent (torn or damaged header)", path);
		rc = -EBADMSG;
		goto fail;
	}
	if (crc(m, header_len - 4) != rd32(m + header_len - 4)) {
		snprintf(err, err_len, "%s: recording header checksum mismatch", path);
		rc = -EBADMSG;
		goto fail;
	}
	r->info.version = version;
	r->info.config = (const char *)m + MEAD_REC_FIXED_HEADER;
	r->info.config_len = config_len;
	r->info.meta = (const char *)m + MEAD_REC_FIXED_HEADER + config_len;
	r->info.meta_len = meta_len;
	r->info.data_offset = header_len;
	if (parse_meta(&r->info) < 0) {
		snprintf(err, err_len, "%s: recording metadata is not valid JSON", path);
		rc = -EBADMSG;
		goto fail;
	}
	r->pos = header_len;
	*ret = r;
	return 0;
fail:
	mead_rec_close(r);
	return rc;
}

void mead_rec_close(struct mead_rec_reader *r)
{
	if (!r)
		return;
	if (r->map)
		munmap((void *)r->map, r->size);
	free(r);
}

const struct mead_rec_info *mead_rec_info(const struct mead_rec_reader *r)
{
	return &r->info;
}

void mead_rec_rewind(struct mead_rec_reader *r)
{
	r->pos = r->info.data_offset;
	/* A second pass reports what it finds itself, not the sum of both. */
	memset(&r->stats, 0, sizeof(r->stats));
}

const struct mead_rec_stats *mead_rec_stats(const struct mead_rec_reader *r)
{
	return &r->stats;
}
