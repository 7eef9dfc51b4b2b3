/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include "gadget/proto.h"

void mg_info_encode(uint8_t b[MEAD_USB_INFO_BYTES], const struct mg_info *in)
{
	memset(b, 0, MEAD_USB_INFO_BYTES);
	mead_usb_put32(b, MEAD_USB_INFO_MAGIC);
	mead_usb_put16(b + 4, in->version);
	mead_usb_put16(b + 6, in->channels);
	mead_usb_put32(b + 8, in->rate);
	mead_usb_put32(b + 12, in->nv_per_count);
	mead_usb_put16(b + 16, in->spp);
	mead_usb_put16(b + 18, in->flags);
	mead_usb_put32(b + 20, in->max_na);
	mead_usb_put32(b + 24, in->max_phase_us);
	mead_usb_put16(b + 28, in->max_pulses);
	/* NUL padded, not necessarily NUL terminated */
	memcpy(b + 32, in->serial, strnlen(in->serial, 16));
	memcpy(b + 48, in->model, strnlen(in->model, 16));
}

int mg_info_decode(const uint8_t *b, size_t len, struct mg_info *out)
{
	memset(out, 0, sizeof(*out));
	if (len < 32 || mead_usb_get32(b) != MEAD_USB_INFO_MAGIC)
		return -EPROTO;
	out->version = mead_usb_get16(b + 4);
	out->channels = mead_usb_get16(b + 6);
	out->rate = mead_usb_get32(b + 8);
	out->nv_per_count = mead_usb_get32(b + 12);
	out->spp = mead_usb_get16(b + 16);
	out->flags = mead_usb_get16(b + 18);
	out->max_na = mead_usb_get32(b + 20);
	out->max_phase_us = mead_usb_get32(b + 24);
	out->max_pulses = mead_usb_get16(b + 28);
	if (len >= 48)
		memcpy(out->serial, b + 32, 16);
	if (len >= 64)
		memcpy(out->model, b + 48, 16);
	if (out->channels == 0 || out->rate == 0 || out->spp == 0 || out->nv_per_count == 0)
		return -EPROTO;
	return 0;
}

void mg_sp_header(uint8_t *b, uint16_t flags, uint32_t seq, uint64_t first)
{
	mead_usb_put16(b, MEAD_USB_SP_MAGIC);
	mead_usb_put16(b + 2, flags);
	mead_usb_put32(b + 4, seq);
	mead_usb_put64(b + 8, first);
}

size_t mg_sr_encode(uint8_t *b, uint32_t report_seq, const struct mg_record *r, uint16_t n)
{
	mead_usb_put16(b, MEAD_USB_SR_MAGIC);
	mead_usb_put16(b + 2, n);
	mead_usb_put32(b + 4, report_seq);
	for (uint16_t i = 0; i < n; i++) {
		uint8_t *q = b + MEAD_USB_SR_HEADER + (size_t)i * MEAD_USB_SR_RECORD;
		mead_usb_put64(q, r[i].started);
		mead_usb_put32(q + 8, r[i].cmd_seq);
		mead_usb_put16(q + 12, r[i].index);
		mead_usb_put16(q + 14, r[i].status);
		mead_usb_put64(q + 16, r[i].requested);
	}
	return MEAD_USB_SR_HEADER + (size_t)n * MEAD_USB_SR_RECORD;
}

int mg_sr_decode(const uint8_t *b, size_t len, uint32_t *report_seq, struct mg_record *r, uint32_t cap, uint16_t *n)
{
	if (len < MEAD_USB_SR_HEADER || mead_usb_get16(b) != MEAD_USB_SR_MAGIC)
		return -EPROTO;
	uint16_t cnt = mead_usb_get16(b + 2);
	if (len != MEAD_USB_SR_HEADER + (size_t)cnt * MEAD_USB_SR_RECORD)
		return -EPROTO;
	*report_seq = mead_usb_get32(b + 4);
	*n = cnt;
	for (uint32_t i = 0; i < cnt && i < cap; i++) {
		const uint8_t *q = b + MEAD_USB_SR_HEADER + (size_t)i * MEAD_USB_SR_RECORD;
		r[i].started = mead_usb_get64(q);
		r[i].cmd_seq = mead_usb_get32(q + 8);
		r[i].index = mead_usb_get16(q + 12);
		r[i].status = mead_usb_get16(q + 14);
		r[i].requested = mead_usb_get64(q + 16);
	}
	return 0;
}

long mg_cmd_length(const uint8_t *b, size_t have, uint16_t max_pulses, struct mg_cmd *hdr)
{
	if (have < MEAD_USB_CMD_HEADER)
		return 0;
	hdr->magic = mead_usb_get16(b);
	hdr->n = mead_usb_get16(b + 2);
	hdr->seq = mead_usb_get32(b + 4);
	switch (hdr->magic) {
	case MEAD_USB_SC_MAGIC:
		if (hdr->n == 0 || hdr->n > max_pulses)
			return -E2BIG;
		return MEAD_USB_CMD_HEADER + (long)hdr->n * MEAD_USB_PULSE_BYTES;
	case MEAD_USB_SX_MAGIC:
	case MEAD_USB_SK_MAGIC:
		return MEAD_USB_CMD_HEADER;
	default:
		return -EBADMSG;
	}
}

void mg_pulse_decode(const uint8_t *p, uint32_t cmd_seq, uint16_t index, struct mg_pulse *out)
{
	out->start = mead_usb_get64(p);
	out->electrode = mead_usb_get16(p + 8);
	out->flags = mead_usb_get16(p + 10);
	out->amp_na = (int32_t)mead_usb_get32(p + 12);
	out->phase_us = mead_usb_get32(p + 16);
	out->interphase_us = mead_usb_get32(p + 20);
	out->cmd_seq = cmd_seq;
	out->index = index;
}

void mg_pulse_encode(uint8_t *p, const struct mg_pulse *in)
{
	mead_usb_put64(p, in->start);
	mead_usb_put16(p + 8, in->electrode);
	mead_usb_put16(p + 10, in->flags);
	mead_usb_put32(p + 12, (uint32_t)in->amp_na);
	mead_usb_put32(p + 16, in->phase_us);
	mead_usb_put32(p + 20, in->interphase_us);
}

size_t mg_sc_encode(uint8_t *b, uint32_t seq, const struct mg_pulse *p, uint16_t n)
{
	mead_usb_put16(b, MEAD_USB_SC_MAGIC);
	mead_usb_put16(b + 2, n);
	mead_usb_put32(b + 4, seq);
	for (uint16_t i = 0; i < n; i++)
		mg_pulse_encode(b + MEAD_USB_CMD_HEADER + (size_t)i * MEAD_USB_PULSE_BYTES, &p[i]);
	return MEAD_USB_CMD_HEADER + (size_t)n * MEAD_USB_PULSE_BYTES;
}

void mg_short_cmd(uint8_t b[MEAD_USB_CMD_HEADER], uint16_t magic, uint32_t value)
{
	mead_usb_put16(b, magic);
	mead_usb_put16(b + 2, 0);
	mead_usb_put32(b + 4, value);
}

void mg_clock_encode(uint8_t b[MEAD_USB_CLOCK_BYTES], uint64_t sample, uint64_t us)
{
	mead_usb_put64(b, sample);
	mead_usb_put64(b + 8, us);
}

const char *mg_status_name(unsigned status)
{
	static const char *const names[] = { "delivered", "late", "overlap", "range", "dropped", "queue-full" };
	return status < sizeof(names) / sizeof(names[0]) ? names[status] : "unknown";
}
