/* SPDX-License-Identifier: MIT */
/*
 * The mead USB protocol, version 2 (docs/usb-protocol.md): numbers and the
 * little-endian byte order of every block, as the host side reads them.
 */
#pragma once

#include <stdint.h>

enum {
	PROTO_VERSION = 2,
	INFO_MAGIC = 0x3141454D,        /* "MEA1" */
	INFO_BYTES = 64,

	REQ_GET_INFO = 0x01,
	REQ_START = 0x02,
	REQ_STOP = 0x03,
	REQ_GET_CLOCK = 0x04,
	REQ_SET_WATCHDOG = 0x05,
	REQ_GET_STIM_MAP = 0x06,

	INFO_CAN_STIMULATE = 1u << 0,
	INFO_REPORTS = 1u << 1,
	INFO_WATCHDOG = 1u << 2,

	SP_MAGIC = 0x5053,              /* "SP": samples */
	SR_MAGIC = 0x5253,              /* "SR": what became of pulses */
	SC_MAGIC = 0x4353,              /* "SC": stimulate */
	SX_MAGIC = 0x5853,              /* "SX": outputs off */
	SK_MAGIC = 0x4B53,              /* "SK": keepalive */

	SP_HEADER = 16,
	SR_HEADER = 8,
	SR_RECORD = 24,
	CMD_HEADER = 8,
	PULSE_BYTES = 24,

	SP_FIFO_OVERRAN = 1u << 0,
	SP_WATCHDOG_FIRED = 1u << 1,
};

/* SR record status */
enum {
	SR_DELIVERED = 0,
	SR_LATE = 1,
	SR_OVERLAP = 2,
	SR_RANGE = 3,
	SR_DROPPED = 4,
	SR_QUEUE_FULL = 5,
};

static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t get32(const uint8_t *p) { return get16(p) | (uint32_t)get16(p + 2) << 16; }
static inline uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }
static inline void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }
static inline void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }
