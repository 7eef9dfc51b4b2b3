/* SPDX-License-Identifier: MIT */
/*
 * mead wire format v1: the layout every subscriber decodes byte for byte.
 * Each message on the PUB socket has exactly three frames:
 *   0: topic, ASCII without terminator ("spikes", "stim", "events", "raw", "status",
 *      "waveforms")
 *   1: struct mead_wire_header (32 bytes, little-endian)
 *   2: count records of record_size bytes
 * See docs/wire-v1.md.  Minor versions only grow records at their end
 * (a reader skips what it does not know) and add event types; the status
 * JSON names the minor version ("wire": "1.1").
 */
#pragma once

#include <stdint.h>
#include <string.h>
#include <endian.h>

#include "mead/driver.h"

#define MEAD_WIRE_MAGIC "MEAD"
#define MEAD_WIRE_VERSION 1u
#define MEAD_WIRE_MINOR 2u
#define MEAD_WIRE_VERSION_TEXT "1.2"

enum mead_wire_kind {
	MEAD_KIND_SPIKES = 1,
	MEAD_KIND_STIM   = 2,
	MEAD_KIND_EVENTS = 3,
	MEAD_KIND_RAW    = 4,
	MEAD_KIND_STATUS = 5,
	MEAD_KIND_WAVEFORMS = 6,   /* v1.2: struct mead_waveform and its samples (mead/driver.h) */
};
#define MEAD_KIND_COUNT 6

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

/* Event records and types, and the phase codes, are struct mead_event,
 * enum mead_event_type and enum mead_phase of mead/driver.h. */

/* A stim record (v1.1, 32 bytes): a pulse that was delivered.  sample is
 * the sample its first phase started on; requested_sample the one it was
 * asked for (later only with MEAD_STIM_LATE).  Records of v1.0 were the
 * first 24 bytes. */
struct mead_wire_stim {
	struct mead_stim_pulse pulse;
	uint64_t requested_sample;
};
_Static_assert(sizeof(struct mead_wire_stim) == 32, "wire v1.1 stim record is 32 bytes");

/* Names for events and refusal reasons, as status and the docs spell them. */
static inline const char *mead_event_type_name(uint32_t type)
{
	switch (type) {
	case MEAD_EVENT_RUN_START: return "run_start";
	case MEAD_EVENT_RUN_END: return "run_end";
	case MEAD_EVENT_TRIAL_START: return "trial_start";
	case MEAD_EVENT_TRIAL_END: return "trial_end";
	case MEAD_EVENT_LABEL: return "label";
	case MEAD_EVENT_PHASE: return "phase";
	case MEAD_EVENT_ITEM: return "item";
	case MEAD_EVENT_STIM_REFUSED: return "stim_refused";
	case MEAD_EVENT_OVERFLOW: return "overflow";
	case MEAD_EVENT_GAP: return "gap";
	case MEAD_EVENT_LATE: return "late";
	case MEAD_EVENT_DEVICE_GONE: return "device_gone";
	case MEAD_EVENT_DEVICE_BACK: return "device_back";
	case MEAD_EVENT_BLANK: return "blank";
	case MEAD_EVENT_STALL: return "stall";
	case MEAD_EVENT_STIM_LOST: return "stim_lost";
	case MEAD_EVENT_UNREAD: return "unread";
	case MEAD_EVENT_THRESHOLD: return "threshold";
	case MEAD_EVENT_DIGITAL: return "digital";
	}
	return NULL;
}

/* A THRESHOLD event's value, in hundredths: k x 100 for a multiple of the
 * noise (positive), -µV x 100 for a fixed magnitude (negative). */
static inline int32_t mead_threshold_event_value(enum mead_threshold_mode mode, float value)
{
	int32_t v = (int32_t)(value * 100.0f + 0.5f);
	return mode == MEAD_THRESHOLD_UV ? -v : v;
}

static inline const char *mead_stim_reason_name(uint32_t reason)
{
	static const char *const safety[] = {
		"safe", "electrode", "max_amplitude_ua", "max_phase_us", "max_interphase_us", "max_charge_nc",
		"max_rate_hz", "min_interval_us", "max_duty_cycle", "max_train_pulses", "no_stimulation",
		"stimulator_busy",
	};
	switch (reason) {
	case MEAD_STIM_REASON_NONE: return "none";
	case MEAD_STIM_REASON_BUSY: return "busy";
	case MEAD_STIM_REASON_RANGE: return "range";
	case MEAD_STIM_REASON_QUEUE_FULL: return "queue_full";
	case MEAD_STIM_REASON_DEVICE_GONE: return "device_gone";
	case MEAD_STIM_REASON_IO: return "io";
	case MEAD_STIM_REASON_CANCELLED: return "cancelled";
	case MEAD_STIM_REASON_UNKNOWN: return "unknown";
	case MEAD_STIM_REASON_TOO_LATE: return "too_late";
	case MEAD_STIM_REASON_UNSUPPORTED: return "unsupported";
	case MEAD_STIM_REASON_TICK_LIMIT: return "tick_limit";
	case MEAD_STIM_REASON_OVERLAP: return "overlap";
	case MEAD_STIM_REASON_NO_DEVICE: return "no_device";
	}
	if (reason >= MEAD_STIM_REASON_SAFETY && reason - MEAD_STIM_REASON_SAFETY < sizeof(safety) / sizeof(safety[0]))
		return safety[reason - MEAD_STIM_REASON_SAFETY];
	return NULL;
}

static inline const char *mead_wire_topic(enum mead_wire_kind kind)
{
	switch (kind) {
	case MEAD_KIND_SPIKES: return "spikes";
	case MEAD_KIND_STIM:   return "stim";
	case MEAD_KIND_EVENTS: return "events";
	case MEAD_KIND_RAW:    return "raw";
	case MEAD_KIND_STATUS: return "status";
	case MEAD_KIND_WAVEFORMS: return "waveforms";
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
