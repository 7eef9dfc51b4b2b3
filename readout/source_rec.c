/* SPDX-License-Identifier: MIT */
/*
 * Recording source.  The layout (all integers little-endian):
 *   header: "MEADREC\0" | u32 version | u32 header_len | u32 config_len |
 *           u32 meta_len | config | meta | u32 crc32 of the header before it
 *   record: "MERC" | u32 body_len | body | u32 crc32 of body_len and body
 *   body:   u8 topic_len | topic | 32-byte wire v1 header | payload
 * Restated here because mead-readout links nothing of the daemon.
 */
#include "readout/source.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define REC_MAGIC "MEADREC"     /* with its NUL: 8 bytes */
#define REC_VERSION 1u
#define REC_FIXED_HEADER 24u
#define REC_MAX_BODY (64u << 20)
#define REC_MAX_TOPIC 16u

struct rec_source {
	struct mead_source base;
	const uint8_t *map;
	size_t size, pos;
};

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return le32toh(v);
}

static uint32_t crc(const uint8_t *p, size_t n)
{
	uLong c = crc32(0L, Z_NULL, 0);
	while (n) {
		uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
		c = crc32(c, p, chunk);
		p += chunk;
		n -= chunk;
	}
	return (uint32_t)c;
}

enum check { CHECK_OK, CHECK_END, CHECK_TORN, CHECK_BAD };

static enum check check_record(const struct rec_source *r, size_t o, struct mead_msg *msg, size_t *next)
{
	size_t avail = r->size - o;
	const uint8_t *p = r->map + o;
	if (avail == 0)
		return CHECK_END;
	if (avail < 8)
		return CHECK_TORN;
	if (memcmp(p, "MERC", 4) != 0)
		return CHECK_BAD;
	uint32_t body_len = rd32(p + 4);
	if (body_len < 2 + sizeof(struct mead_wire_header) || body_len > REC_MAX_BODY)
		return CHECK_BAD;
	if ((size_t)body_len + 12 > avail)
		return CHECK_TORN;
	if (crc(p + 4, 4 + (size_t)body_len) != rd32(p + 8 + body_len))
		return CHECK_BAD;
	uint32_t tl = p[8];
	if (tl == 0 || tl > REC_MAX_TOPIC || 1 + tl + sizeof(struct mead_wire_header) > body_len)
		return CHECK_BAD;
	struct mead_wire_header h;
	if (mead_wire_header_decode(p + 9 + tl, sizeof(h), &h) < 0)
		return CHECK_BAD;
	size_t payload_len = body_len - 1 - tl - sizeof(h);
	if ((uint64_t)h.count * h.record_size != payload_len)
		return CHECK_BAD;
	if (msg) {
		msg->topic = (const char *)p + 9;
		msg->topic_len = tl;
		msg->hdr = h;
		msg->payload = p + 9 + tl + sizeof(h);
		msg->payload_len = payload_len;
	}
	*next = o + 12 + body_len;
	return CHECK_OK;
}

static size_t find_sync(const struct rec_source *r, size_t from)
{
	if (from >= r->size)
		return r->size;
	const uint8_t *q = memmem(r->map + from, r->size - from, "MERC", 4);
	return q ? (size_t)(q - r->map) : r->size;
}

static int rec_next(struct mead_source *s, struct mead_msg *msg, int timeout_ms)
{
	struct rec_source *r = (struct rec_source *)s;
	(void)timeout_ms;
	for (;;) {
		size_t next = 0, q;
		switch (check_record(r, r->pos, msg, &next)) {
		case CHECK_OK:
			r->pos = next;
			return 1;
		case CHECK_END:
			return -ENODATA;
		case CHECK_TORN:
			/* A cut-off writer, unless a damaged length hides a
			 * valid record further on. */
			for (q = find_sync(r, r->pos + 1); q < r->size; q = find_sync(r, q + 1))
				if (check_record(r, q, NULL, &next) == CHECK_OK)
					break;
			if (q >= r->size) {
				r->pos = r->size;
				return -ENODATA;
			}
			s->bad++;
			r->pos = q;
			break;
		case CHECK_BAD:
			s->bad++;
			for (q = find_sync(r, r->pos + 1); q < r->size; q = find_sync(r, q + 1)) {
				enum check c = check_record(r, q, NULL, &next);
				if (c == CHECK_OK || c == CHECK_TORN)
					break;
			}
			r->pos = q;
			break;
		}
	}
}

static void rec_free(struct mead_source *s)
{
	struct rec_source *r = (struct rec_source *)s;
	if (r->map && r->size)
		munmap((void *)r->map, r->size);
	free(r);
}

int mead_source_recording_new(const char *path, struct mead_source **ret, char *err, size_t err_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		snprintf(err, err_len, "%s: %s", path, strerror(e));
		return -e;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size < (off_t)(REC_FIXED_HEADER + 4)) {
		snprintf(err, err_len, "%s: too short for a recording", path);
		close(fd);
		return -EINVAL;
	}
	const uint8_t *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (m == MAP_FAILED) {
		int e = errno;
		snprintf(err, err_len, "%s: mmap: %s", path, strerror(e));
		return -e;
	}
	struct rec_source *r = calloc(1, sizeof(*r));
	if (!r) {
		munmap((void *)m, (size_t)st.st_size);
		return -ENOMEM;
	}
	r->base.next = rec_next;
	r->base.free = rec_free;
	r->map = m;
	r->size = (size_t)st.st_size;
	uint32_t version = rd32(m + 8), header_len = rd32(m + 12), config_len = rd32(m + 16),
		 meta_len = rd32(m + 20);
	const char *why = NULL;
	if (memcmp(m, REC_MAGIC, 8) != 0)
		why = "not a mead recording (bad magic)";
	else if (version != REC_VERSION)
		why = "recording version not supported";
	else if (header_len > r->size || (uint64_t)REC_FIXED_HEADER + config_len + meta_len + 4 != header_len)
		why = "damaged header (lengths)";
	else if (crc(m, header_len - 4) != rd32(m + header_len - 4))
		why = "damaged header (checksum)";
	if (why) {
		snprintf(err, err_len, "%s: %s", path, why);
		rec_free(&r->base);
		return -EINVAL;
	}
	r->base.meta = (const char *)m + REC_FIXED_HEADER + config_len;
	r->base.meta_len = meta_len;
	r->pos = header_len;
	*ret = &r->base;
	return 0;
}
