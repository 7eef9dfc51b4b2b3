/* SPDX-License-Identifier: MIT */
/*
 * The mead USB protocol, version 2 (docs/usb-protocol.md, docs/usb-gadget.md):
 * constants and the little-endian encoding of every block the device and a
 * host exchange.  No I/O here.
 */
#ifndef MEAD_GADGET_PROTO_H
#define MEAD_GADGET_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	MG_PROTO_VERSION = 2,
	MG_INFO_MAGIC = 0x3141454D,     /* "MEA1" */
	MG_INFO_BYTES = 64,
	MG_CLOCK_BYTES = 16,

	MG_REQ_GET_INFO = 0x01,
	MG_REQ_START = 0x02,
	MG_REQ_STOP = 0x03,
	MG_REQ_GET_CLOCK = 0x04,
	MG_REQ_SET_WATCHDOG = 0x05,

	MG_INFO_CAN_STIMULATE = 1u << 0,
	MG_INFO_REPORTS = 1u << 1,
	MG_INFO_WATCHDOG = 1u << 2,

	MG_SP_MAGIC = 0x5053,           /* "SP" */
	MG_SR_MAGIC = 0x5253,           /* "SR" */
	MG_SC_MAGIC = 0x4353,           /* "SC" */
	MG_SX_MAGIC = 0x5853,           /* "SX" */
	MG_SK_MAGIC = 0x4B53,           /* "SK" */

	MG_SP_HEADER = 16,
	MG_SR_HEADER = 8,
	MG_SR_RECORD = 24,
	MG_CMD_HEADER = 8,
	MG_PULSE_BYTES = 24,

	MG_SP_OVERRUN = 1u << 0,        /* samples lost inside the device */
	MG_SP_WATCHDOG = 1u << 1,       /* the host watchdog fired since the previous SP */
};

/* SR record status */
enum mg_status {
	MG_ST_DELIVERED = 0,
	MG_ST_LATE = 1,
	MG_ST_OVERLAP = 2,
	MG_ST_RANGE = 3,
	MG_ST_DROPPED = 4,
	MG_ST_QUEUE_FULL = 5,
};

static inline uint16_t mg_get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t mg_get32(const uint8_t *p) { return mg_get16(p) | (uint32_t)mg_get16(p + 2) << 16; }
static inline uint64_t mg_get64(const uint8_t *p) { return mg_get32(p) | (uint64_t)mg_get32(p + 4) << 32; }
static inline void mg_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void mg_put32(uint8_t *p, uint32_t v) { mg_put16(p, (uint16_t)v); mg_put16(p + 2, (uint16_t)(v >> 16)); }
static inline void mg_put64(uint8_t *p, uint64_t v) { mg_put32(p, (uint32_t)v); mg_put32(p + 4, (uint32_t)(v >> 32)); }

struct mg_info {
	uint16_t version, channels;
	uint32_t rate, nv_per_count;
	uint16_t spp, flags;
	uint32_t max_na, max_phase_us;
	uint16_t max_pulses;
	char serial[17], model[17];
};

void mg_info_encode(uint8_t b[MG_INFO_BYTES], const struct mg_info *in);
/* -EPROTO: short, wrong magic, or a field the protocol forbids to be 0 */
int mg_info_decode(const uint8_t *b, size_t len, struct mg_info *out);

static inline size_t mg_sp_bytes(uint32_t spp, uint32_t channels)
{
	return MG_SP_HEADER + (size_t)2 * spp * channels;
}

void mg_sp_header(uint8_t *b, uint16_t flags, uint32_t seq, uint64_t first);

/* One pulse as the SC command carries it, plus where it came from. */
struct mg_pulse {
	uint64_t start;          /* requested start, device samples */
	uint16_t electrode, flags;
	int32_t amp_na;          /* first phase; the second is its negative */
	uint32_t phase_us, interphase_us;
	uint32_t cmd_seq;
	uint16_t index;          /* within its command */
};

/* The fate of one pulse, one SR record. */
struct mg_record {
	uint64_t started;        /* 0 if it never started */
	uint32_t cmd_seq;
	uint16_t index, status;
	uint64_t requested;
};

/* Records that fit in one SR packet no longer than max_bytes. */
static inline uint32_t mg_sr_capacity(size_t max_bytes)
{
	if (max_bytes < MG_SR_HEADER + MG_SR_RECORD)
		return 0;
	size_t n = (max_bytes - MG_SR_HEADER) / MG_SR_RECORD;
	return n > 65535 ? 65535u : (uint32_t)n;
}

/* Returns the packet length. */
size_t mg_sr_encode(uint8_t *b, uint32_t report_seq, const struct mg_record *r, uint16_t n);
/* Decodes up to cap records; -EPROTO on a bad magic or length. */
int mg_sr_decode(const uint8_t *b, size_t len, uint32_t *report_seq, struct mg_record *r, uint32_t cap, uint16_t *n);

/* A command header as it arrives on the OUT endpoint. */
struct mg_cmd {
	uint16_t magic, n;
	uint32_t seq;            /* SC: command seq; SX: as sent; SK: host counter */
};

/*
 * Length the command starting at b needs, from its header alone: 0 while
 * fewer than MG_CMD_HEADER bytes are there, -EBADMSG for a magic that is no
 * command, -E2BIG for an SC with 0 or more than max_pulses pulses.
 */
long mg_cmd_length(const uint8_t *b, size_t have, uint16_t max_pulses, struct mg_cmd *hdr);

void mg_pulse_decode(const uint8_t *p, uint32_t cmd_seq, uint16_t index, struct mg_pulse *out);
void mg_pulse_encode(uint8_t *p, const struct mg_pulse *in);
/* Writes an SC command of n pulses; returns its length. */
size_t mg_sc_encode(uint8_t *b, uint32_t seq, const struct mg_pulse *p, uint16_t n);
/* SX and SK: 8 bytes. */
void mg_short_cmd(uint8_t b[MG_CMD_HEADER], uint16_t magic, uint32_t value);

void mg_clock_encode(uint8_t b[MG_CLOCK_BYTES], uint64_t sample, uint64_t us);

const char *mg_status_name(unsigned status);

#endif
