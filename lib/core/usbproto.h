/* SPDX-License-Identifier: MIT */
/*
 * The mead USB protocol, version 2 (docs/usb-protocol.md): its numbers and
 * the little-endian byte order of every block, for both sides of the link
 * (the host driver, drivers/usb, and the reference device, gadget/).  The
 * device models of the tests keep their own reading of the document.
 */
#pragma once

#include <stdint.h>

enum {
	MEAD_USB_VERSION = 2,
	MEAD_USB_INFO_MAGIC = 0x3141454D,   /* "MEA1" */
	MEAD_USB_INFO_BYTES = 64,
	MEAD_USB_CLOCK_BYTES = 16,

	MEAD_USB_REQ_GET_INFO = 0x01,
	MEAD_USB_REQ_START = 0x02,
	MEAD_USB_REQ_STOP = 0x03,
	MEAD_USB_REQ_GET_CLOCK = 0x04,
	MEAD_USB_REQ_SET_WATCHDOG = 0x05,
	MEAD_USB_REQ_GET_STIM_MAP = 0x06,

	MEAD_USB_INFO_CAN_STIMULATE = 1u << 0,
	MEAD_USB_INFO_REPORTS = 1u << 1,
	MEAD_USB_INFO_WATCHDOG = 1u << 2,

	MEAD_USB_SP_MAGIC = 0x5053,         /* "SP": samples */
	MEAD_USB_SR_MAGIC = 0x5253,         /* "SR": what became of pulses */
	MEAD_USB_SC_MAGIC = 0x4353,         /* "SC": stimulate */
	MEAD_USB_SX_MAGIC = 0x5853,         /* "SX": outputs off */
	MEAD_USB_SK_MAGIC = 0x4B53,         /* "SK": keepalive */

	MEAD_USB_SP_HEADER = 16,
	MEAD_USB_SR_HEADER = 8,
	MEAD_USB_SR_RECORD = 24,
	MEAD_USB_CMD_HEADER = 8,
	MEAD_USB_PULSE_BYTES = 24,

	MEAD_USB_SP_OVERRUN = 1u << 0,      /* samples lost inside the device */
	MEAD_USB_SP_WATCHDOG = 1u << 1,     /* the host watchdog fired since the previous SP */
};

/* SR record status */
enum mead_usb_status {
	MEAD_USB_ST_DELIVERED = 0,
	MEAD_USB_ST_LATE = 1,
	MEAD_USB_ST_OVERLAP = 2,
	MEAD_USB_ST_RANGE = 3,
	MEAD_USB_ST_DROPPED = 4,
	MEAD_USB_ST_QUEUE_FULL = 5,
};

static inline uint16_t mead_usb_get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t mead_usb_get32(const uint8_t *p) { return mead_usb_get16(p) | (uint32_t)mead_usb_get16(p + 2) << 16; }
static inline uint64_t mead_usb_get64(const uint8_t *p) { return mead_usb_get32(p) | (uint64_t)mead_usb_get32(p + 4) << 32; }
static inline void mead_usb_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void mead_usb_put32(uint8_t *p, uint32_t v) { mead_usb_put16(p, (uint16_t)v); mead_usb_put16(p + 2, (uint16_t)(v >> 16)); }
static inline void mead_usb_put64(uint8_t *p, uint64_t v) { mead_usb_put32(p, (uint32_t)v); mead_usb_put32(p + 4, (uint32_t)(v >> 32)); }
