/* SPDX-License-Identifier: MIT */
#include "view/ws.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static uint32_t rol(uint32_t x, int n)
{
	return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const uint8_t *p)
{
	uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];

	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 80; i++)
		w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
	for (int i = 0; i < 80; i++) {
		uint32_t f, k;
		if (i < 20) {
			f = (b & c) | (~b & d);
			k = 0x5a827999;
		} else if (i < 40) {
			f = b ^ c ^ d;
			k = 0x6ed9eba1;
		} else if (i < 60) {
			f = (b & c) | (b & d) | (c & d);
			k = 0x8f1bbcdc;
		} else {
			f = b ^ c ^ d;
			k = 0xca62c1d6;
		}
		uint32_t t = rol(a, 5) + f + e + k + w[i];
		e = d;
		d = c;
		c = rol(b, 30);
		b = a;
		a = t;
	}
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
	h[4] += e;
}

void mv_sha1(const void *data, size_t len, uint8_t out[20])
{
	uint32_t h[5] = { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0 };
	const uint8_t *p = data;
	uint8_t last[128];
	size_t full = len / 64 * 64, rest = len - full, n;

	for (size_t i = 0; i < full; i += 64)
		sha1_block(h, p + i);
	memset(last, 0, sizeof(last));
	memcpy(last, p + full, rest);
	last[rest] = 0x80;
	n = rest + 1 + 8 <= 64 ? 64 : 128;
	uint64_t bits = (uint64_t)len * 8;
	for (int i = 0; i < 8; i++)
		last[n - 1 - i] = (uint8_t)(bits >> (8 * i));
	for (size_t i = 0; i < n; i += 64)
		sha1_block(h, last + i);
	for (int i = 0; i < 5; i++) {
		out[4 * i] = (uint8_t)(h[i] >> 24);
		out[4 * i + 1] = (uint8_t)(h[i] >> 16);
		out[4 * i + 2] = (uint8_t)(h[i] >> 8);
		out[4 * i + 3] = (uint8_t)h[i];
	}
}

size_t mv_base64(const uint8_t *in, size_t n, char *out, size_t out_len)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t need = (n + 2) / 3 * 4, o = 0;

	if (out_len < need + 1)
		return 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
		out[o++] = a[v >> 18 & 63];
		out[o++] = a[v >> 12 & 63];
		out[o++] = i + 1 < n ? a[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? a[v & 63] : '=';
	}
	out[o] = '\0';
	return o;
}

void mv_ws_accept(const char *key, char out[29])
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	char buf[128];
	uint8_t d[20];
	int n = snprintf(buf, sizeof(buf), "%.64s%s", key, guid);

	mv_sha1(buf, (size_t)n, d);
	mv_base64(d, sizeof(d), out, 29);
}

/* Copies a header value with surrounding blanks trimmed. */
static void copy_value(char *out, size_t out_len, const char *v, size_t n)
{
	while (n && (*v == ' ' || *v == '\t')) {
		v++;
		n--;
	}
	while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	if (n >= out_len)
		n = out_len - 1;
	memcpy(out, v, n);
	out[n] = '\0';
}

/* Whether a comma-separated header value holds token (case-insensitive). */
static bool has_token(const char *v, size_t n, const char *token)
{
	size_t tl = strlen(token);
	for (size_t i = 0; i < n;) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		size_t j = i;
		while (j < n && v[j] != ',')
			j++;
		size_t e = j;
		while (e > i && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e - i == tl && strncasecmp(v + i, token, tl) == 0)
			return true;
		i = j;
	}
	return false;
}

int mv_http_parse(const char *buf, size_t len, struct mv_http_request *ret)
{
	struct mv_http_request r;
	const char *end = NULL;
	bool up = false, conn = false;

	for (size_t i = 0; i + 3 < len; i++)
		if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n') {
			end = buf + i;
			break;
		}
	if (!end)
		return len > MV_HTTP_MAX_HEADER ? -E2BIG : 0;
	if ((size_t)(end - buf) + 4 > MV_HTTP_MAX_HEADER)
		return -E2BIG;
	memset(&r, 0, sizeof(r));
	/* request line: METHOD SP TARGET SP HTTP/1.x */
	const char *line_end = memchr(buf, '\r', (size_t)(end - buf) + 1);
	const char *sp1 = memchr(buf, ' ', (size_t)(line_end - buf));
	if (!sp1 || sp1 == buf || (size_t)(sp1 - buf) >= sizeof(r.method))
		return -EINVAL;
	const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(line_end - sp1 - 1));
	if (!sp2 || sp2 == sp1 + 1 || line_end - sp2 < 9 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0)
		return -EINVAL;
	memcpy(r.method, buf, (size_t)(sp1 - buf));
	const char *target = sp1 + 1, *q = memchr(target, '?', (size_t)(sp2 - target));
	size_t plen = (size_t)((q ? q : sp2) - target);
	if (plen == 0 || plen >= sizeof(r.path) || target[0] != '/')
		return -EINVAL;
	memcpy(r.path, target, plen);
	if (q) {
		size_t ql = (size_t)(sp2 - q - 1);
		if (ql >= sizeof(r.query))
			return -EINVAL;
		memcpy(r.query, q + 1, ql);
	}
	for (const char *p = line_end + 2; p < end;) {
		const char *e = memchr(p, '\r', (size_t)(end - p) + 1);
		const char *colon = memchr(p, ':', (size_t)(e - p));
		if (!colon || colon == p)
			return -EINVAL;
		size_t nl = (size_t)(colon - p), vl = (size_t)(e - colon - 1);
		const char *v = colon + 1;
		if (nl == 4 && strncasecmp(p, "Host", 4) == 0)
			copy_value(r.host, sizeof(r.host), v, vl);
		else if (nl == 6 && strncasecmp(p, "Origin", 6) == 0)
			copy_value(r.origin, sizeof(r.origin), v, vl);
		else if (nl == 17 && strncasecmp(p, "Sec-WebSocket-Key", 17) == 0)
			copy_value(r.ws_key, sizeof(r.ws_key), v, vl);
		else if (nl == 21 && strncasecmp(p, "Sec-WebSocket-Version", 21) == 0)
			r.ws_version = atoi(v);
		else if (nl == 7 && strncasecmp(p, "Upgrade", 7) == 0)
			up = has_token(v, vl, "websocket");
		else if (nl == 10 && strncasecmp(p, "Connection", 10) == 0)
			conn = has_token(v, vl, "upgrade");
		p = e + 2;
	}
	r.upgrade_websocket = up && conn;
	*ret = r;
	return (int)(end - buf) + 4;
}

bool mv_query_get(const char *query, const char *name, char *out, size_t out_len)
{
	size_t nl = strlen(name);
	for (const char *p = query; p && *p;) {
		const char *amp = strchr(p, '&');
		size_t l = amp ? (size_t)(amp - p) : strlen(p);
		if (l > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
			size_t vl = l - nl - 1;
			if (vl >= out_len)
				vl = out_len - 1;
			memcpy(out, p + nl + 1, vl);
			out[vl] = '\0';
			return true;
		}
		p = amp ? amp + 1 : NULL;
	}
	return false;
}

size_t mv_ws_header(uint8_t out[10], enum mv_ws_opcode op, uint64_t len)
{
	out[0] = (uint8_t)(0x80 | op);
	if (len < 126) {
		out[1] = (uint8_t)len;
		return 2;
	}
	if (len <= 0xffff) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		return 4;
	}
	out[1] = 127;
	for (int i = 0; i < 8; i++)
		out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
	return 10;
}

int mv_ws_parse(uint8_t *buf, size_t len, uint64_t max_payload, struct mv_ws_frame *ret)
{
	size_t off = 2;
	uint64_t n;

	if (len < 2)
		return 0;
	bool fin = buf[0] & 0x80, masked = buf[1] & 0x80;
	unsigned op = buf[0] & 0x0f;
	if ((buf[0] & 0x70) || !masked)
		return -EPROTO;
	if (op != MV_WS_CONT && op != MV_WS_TEXT && op != MV_WS_BINARY && op != MV_WS_CLOSE && op != MV_WS_PING &&
	    op != MV_WS_PONG)
		return -EPROTO;
	n = buf[1] & 0x7f;
	if (n == 126) {
		if (len < 4)
			return 0;
		n = (uint64_t)buf[2] << 8 | buf[3];
		off = 4;
	} else if (n == 127) {
		if (len < 10)
			return 0;
		n = 0;
		for (int i = 0; i < 8; i++)
			n = n << 8 | buf[2 + i];
		off = 10;
	}
	if (op >= MV_WS_CLOSE && (n > 125 || !fin))
		return -EPROTO;
	if (n > max_payload)
		return -EMSGSIZE;
	if (len < off + 4 + n)
		return 0;
	uint8_t *mask = buf + off, *p = buf + off + 4;
	for (uint64_t i = 0; i < n; i++)
		p[i] ^= mask[i & 3];
	ret->fin = fin;
	ret->opcode = (enum mv_ws_opcode)op;
	ret->payload = p;
	ret->len = n;
	return (int)(off + 4 + n);
}
