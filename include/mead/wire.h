/* SPDX-License-Identifier: MIT */
/*
 * mead wire format v1: the layout every subscriber decodes byte for byte.
 * Each message on the PUB socket has exactly three frames:
 *   0: topic, ASCII without terminator ("spikes", "stim", "events", "raw", "status")
 *   1: struct mead_wire_header (32 bytes, little-endian)
 *   2: count records of record_size bytes
 * See docs/wire-v1.md.
 */
#pragma once

#include <stdint.h>
#include <string.h>
#include <endian.h>

#include "mead/driver.h"

#define MEAD_WIRE_MAGIC "MEAD"
#define MEAD_WIRE_VERSION 1u

enum mead_wire_kind {
	MEAD_KIND_SPIKES = 1,
	MEAD_KIND_STIM   = 2,
	MEAD_KIND_EVENTS = 3,
	MEAD_KIND_RAW    = 4,
	MEAD_KIND_STATUS = 5,
};
#define MEAD_KIND_COUNT 5

struct __attribute__((packed)) mead_wire_header {
	char magic[4];
	uint16_t version;
	uint16_t kind;
	uint64_t seq;
	uint64_t sample;
	uint32_t count;
	uint32_t record_size;
};
_Static_assert(sizeof(struct mead_wire_header) == 32, "wire v1 header is 32 bytes");

enum mead_event_type {
	MEAD_EVENT_RUN_START   = 1, /* value: sample rate in Hz */
	MEAD_EVENT_RUN_END     = 2,
	MEAD_EVENT_TRIAL_START = 3, /* value: trial index */
	MEAD_EVENT_TRIAL_END   = 4, /* value: trial index */
	MEAD_EVENT_LABEL       = 5, /* value: class shown */
	MEAD_EVENT_PHASE       = 6, /* value: enum mead_phase */
	MEAD_EVENT_ITEM        = 7, /* value: dataset index of the stimulus */
};

enum mead_phase {
	MEAD_PHASE_TRAIN = 0,
	MEAD_PHASE_TEST  = 1,
	MEAD_PHASE_REST  = 2,
};

struct mead_event {
	uint64_t sample;
	uint32_t type;
	int32_t value;
};
_Static_assert(sizeof(struct mead_event) == 16, "wire v1 event record is 16 bytes");

static inline const char *mead_wire_topic(enum mead_wire_kind kind)
{
	switch (kind) {
	case MEAD_KIND_SPIKES: return "spikes";
	case MEAD_KIND_STIM:   return "stim";
	case MEAD_KIND_EVENTS: return "events";
	case MEAD_KIND_RAW:    return "raw";
	case MEAD_KIND_STATUS: return "status";
	}
	return "";
}

/* Records are stored in host order in memory; these put a header on the wire
 * in little-endian whatever the host. */
static inline void mead_wire_header_encode(struct mead_wire_header *h, uint16_t kind, uint64_t seq,
					   uint64_t sample, uint32_t count, uint32_t record_size)
{
	memcpy(h->magic, MEAD_WIRE_MAGIC, 4);
	h->version = htole16(MEAD_WIRE_VERSION);
	h->kind = htole16(kind);
	h->seq = htole64(seq);
	h->sample = htole64(sample);
	h->count = htole32(count);
	h->record_size = htole32(record_size);
}

/* Returns 0 and fills *ret (host order) or -EBADMSG; *ret untouched on failure. */
static inline int mead_wire_header_decode(const void *buf, size_t len, struct mead_wire_header *ret)
{
	struct mead_wire_header h;
	if (len != sizeof(h))
		return -74; /* EBADMSG */
	memcpy(&h, buf, sizeof(h));
	if (memcmp(h.magic, MEAD_WIRE_MAGIC, 4) != 0 || le16toh(h.version) != MEAD_WIRE_VERSION)
		return -74;
	h.version = le16toh(h.version);
	h.kind = le16toh(h.kind);
	h.seq = le64toh(h.seq);
	h.sample = le64toh(h.sample);
	h.count = le32toh(h.count);
	h.record_size = le32toh(h.record_size);
	*ret = h;
	return 0;
}
