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

#include "lib/core/usbproto.h"

struct mg_info {
	uint16_t version, channels;
	uint32_t rate, nv_per_count;
	uint16_t spp, flags;
	uint32_t max_na, max_phase_us;
	uint16_t max_pulses;
	char serial[17], model[17];
};

void mg_info_encode(uint8_t b[MEAD_USB_INFO_BYTES], const struct mg_info *in);
/* -EPROTO: short, wrong magic, or a field the protocol forbids to be 0 */
int mg_info_decode(const uint8_t *b, size_t len, struct mg_info *out);

static inline size_t mg_sp_bytes(uint32_t spp, uint32_t channels)
{
	return MEAD_USB_SP_HEADER + (size_t)2 * spp * channels;
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
	if (max_bytes < MEAD_USB_SR_HEADER + MEAD_USB_SR_RECORD)
		return 0;
	size_t n = (max_bytes - MEAD_USB_SR_HEADER) / MEAD_USB_SR_RECORD;
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
 * fewer than MEAD_USB_CMD_HEADER bytes are there, -EBADMSG for a magic that is no
 * command, -E2BIG for an SC with 0 or more than max_pulses pulses.
 */
long mg_cmd_length(const uint8_t *b, size_t have, uint16_t max_pulses, struct mg_cmd *hdr);

void mg_pulse_decode(const uint8_t *p, uint32_t cmd_seq, uint16_t index, struct mg_pulse *out);
void mg_pulse_encode(uint8_t *p, const struct mg_pulse *in);
/* Writes an SC command of n pulses; returns its length. */
size_t mg_sc_encode(uint8_t *b, uint32_t seq, const struct mg_pulse *p, uint16_t n);
/* SX and SK: 8 bytes. */
void mg_short_cmd(uint8_t b[MEAD_USB_CMD_HEADER], uint16_t magic, uint32_t value);

void mg_clock_encode(uint8_t b[MEAD_USB_CLOCK_BYTES], uint64_t sample, uint64_t us);

const char *mg_status_name(unsigned status);

#endif
