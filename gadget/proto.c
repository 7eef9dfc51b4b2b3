/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include "gadget/proto.h"

void mg_info_encode(uint8_t b[MG_INFO_BYTES], const struct mg_info *in)
{
	memset(b, 0, MG_INFO_BYTES);
	mg_put32(b, MG_INFO_MAGIC);
	mg_put16(b + 4, in->version);
	mg_put16(b + 6, in->channels);
	mg_put32(b + 8, in->rate);
	mg_put32(b + 12, in->nv_per_count);
	mg_put16(b + 16, in->spp);
	mg_put16(b + 18, in->flags);
	mg_put32(b + 20, in->max_na);
	mg_put32(b + 24, in->max_phase_us);
	mg_put16(b + 28, in->max_pulses);
	/* NUL padded, not necessarily NUL terminated */
	memcpy(b + 32, in->serial, strnlen(in->serial, 16));
	memcpy(b + 48, in->model, strnlen(in->model, 16));
}

int mg_info_decode(const uint8_t *b, size_t len, struct mg_info *out)
{
	memset(out, 0, sizeof(*out));
	if (len < 32 || mg_get32(b) != MG_INFO_MAGIC)
		return -EPROTO;
	out->version = mg_get16(b + 4);
	out->channels = mg_get16(b + 6);
	out->rate = mg_get32(b + 8);
	out->nv_per_count = mg_get32(b + 12);
	out->spp = mg_get16(b + 16);
	out->flags = mg_get16(b + 18);
	out->max_na = mg_get32(b + 20);
	out->max_phase_us = mg_get32(b + 24);
	out->max_pulses = mg_get16(b + 28);
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
	mg_put16(b, MG_SP_MAGIC);
	mg_put16(b + 2, flags);
	mg_put32(b + 4, seq);
	mg_put64(b + 8, first);
}

size_t mg_sr_encode(uint8_t *b, uint32_t report_seq, const struct mg_record *r, uint16_t n)
{
	mg_put16(b, MG_SR_MAGIC);
	mg_put16(b + 2, n);
	mg_put32(b + 4, report_seq);
	for (uint16_t i = 0; i < n; i++) {
		uint8_t *q = b + MG_SR_HEADER + (size_t)i * MG_SR_RECORD;
		mg_put64(q, r[i].started);
		mg_put32(q + 8, r[i].cmd_seq);
		mg_put16(q + 12, r[i].index);
		mg_put16(q + 14, r[i].status);
		mg_put64(q + 16, r[i].requested);
	}
	return MG_SR_HEADER + (size_t)n * MG_SR_RECORD;
}

int mg_sr_decode(const uint8_t *b, size_t len, uint32_t *report_seq, struct mg_record *r, uint32_t cap, uint16_t *n)
{
	if (len < MG_SR_HEADER || mg_get16(b) != MG_SR_MAGIC)
		return -EPROTO;
	uint16_t cnt = mg_get16(b + 2);
	if (len != MG_SR_HEADER + (size_t)cnt * MG_SR_RECORD)
		return -EPROTO;
	*report_seq = mg_get32(b + 4);
	*n = cnt;
	for (uint32_t i = 0; i < cnt && i < cap; i++) {
		const uint8_t *q = b + MG_SR_HEADER + (size_t)i * MG_SR_RECORD;
		r[i].started = mg_get64(q);
		r[i].cmd_seq = mg_get32(q + 8);
		r[i].index = mg_get16(q + 12);
		r[i].status = mg_get16(q + 14);
		r[i].requested = mg_get64(q + 16);
	}
	return 0;
}

long mg_cmd_length(const uint8_t *b, size_t have, uint16_t max_pulses, struct mg_cmd *hdr)
{
	if (have < MG_CMD_HEADER)
		return 0;
	hdr->magic = mg_get16(b);
	hdr->n = mg_get16(b + 2);
	hdr->seq = mg_get32(b + 4);
	switch (hdr->magic) {
	case MG_SC_MAGIC:
		if (hdr->n == 0 || hdr->n > max_pulses)
			return -E2BIG;
		return MG_CMD_HEADER + (long)hdr->n * MG_PULSE_BYTES;
	case MG_SX_MAGIC:
	case MG_SK_MAGIC:
		return MG_CMD_HEADER;
	default:
		return -EBADMSG;
	}
}

void mg_pulse_decode(const uint8_t *p, uint32_t cmd_seq, uint16_t index, struct mg_pulse *out)
{
	out->start = mg_get64(p);
	out->electrode = mg_get16(p + 8);
	out->flags = mg_get16(p + 10);
	out->amp_na = (int32_t)mg_get32(p + 12);
	out->phase_us = mg_get32(p + 16);
	out->interphase_us = mg_get32(p + 20);
	out->cmd_seq = cmd_seq;
	out->index = index;
}

void mg_pulse_encode(uint8_t *p, const struct mg_pulse *in)
{
	mg_put64(p, in->start);
	mg_put16(p + 8, in->electrode);
	mg_put16(p + 10, in->flags);
	mg_put32(p + 12, (uint32_t)in->amp_na);
	mg_put32(p + 16, in->phase_us);
	mg_put32(p + 20, in->interphase_us);
}

size_t mg_sc_encode(uint8_t *b, uint32_t seq, const struct mg_pulse *p, uint16_t n)
{
	mg_put16(b, MG_SC_MAGIC);
	mg_put16(b + 2, n);
	mg_put32(b + 4, seq);
	for (uint16_t i = 0; i < n; i++)
		mg_pulse_encode(b + MG_CMD_HEADER + (size_t)i * MG_PULSE_BYTES, &p[i]);
	return MG_CMD_HEADER + (size_t)n * MG_PULSE_BYTES;
}

void mg_short_cmd(uint8_t b[MG_CMD_HEADER], uint16_t magic, uint32_t value)
{
	mg_put16(b, magic);
	mg_put16(b + 2, 0);
	mg_put32(b + 4, value);
}

void mg_clock_encode(uint8_t b[MG_CLOCK_BYTES], uint64_t sample, uint64_t us)
{
	mg_put64(b, sample);
	mg_put64(b + 8, us);
}

const char *mg_status_name(unsigned status)
{
	static const char *const names[] = { "delivered", "late", "overlap", "range", "dropped", "queue-full" };
	return status < sizeof(names) / sizeof(names[0]) ? names[status] : "unknown";
}
