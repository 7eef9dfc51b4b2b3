/* SPDX-License-Identifier: MIT */
/*
 * The little of HTTP/1.1 and WebSocket (RFC 6455) the live view needs: a
 * GET request's line and headers, the upgrade handshake (SHA-1 and base64
 * of RFC 3174 and RFC 4648), server frames (never masked) and client
 * frames (always masked).  Pure code, no I/O.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void mv_sha1(const void *data, size_t len, uint8_t out[20]);
/* Standard alphabet with padding; returns the length written (NUL-terminated), or 0 if out is too small. */
size_t mv_base64(const uint8_t *in, size_t n, char *out, size_t out_len);

/* Sec-WebSocket-Accept for a client's Sec-WebSocket-Key: 28 characters + NUL. */
void mv_ws_accept(const char *key, char out[29]);

#define MV_HTTP_MAX_HEADER 8192

struct mv_http_request {
	char method[8];
	char path[512];        /* without the query */
	char query[512];       /* after '?', empty when none */
	char host[256];
	char origin[256];      /* empty when the request has none */
	char ws_key[64];       /* Sec-WebSocket-Key */
	bool upgrade_websocket;/* Upgrade: websocket and Connection: ... upgrade ... */
	int ws_version;        /* Sec-WebSocket-Version, 0 when absent */
};

/* Parses a request head ending in CRLF CRLF within buf[0..len).  Returns the
 * head's length, 0 when more bytes are needed, -EINVAL on a malformed
 * request, -E2BIG when the head exceeds MV_HTTP_MAX_HEADER. */
int mv_http_parse(const char *buf, size_t len, struct mv_http_request *ret);
/* The value of name in a query string ("a=1&token=x"), copied to out; false if absent. */
bool mv_query_get(const char *query, const char *name, char *out, size_t out_len);

enum mv_ws_opcode {
	MV_WS_CONT = 0x0,
	MV_WS_TEXT = 0x1,
	MV_WS_BINARY = 0x2,
	MV_WS_CLOSE = 0x8,
	MV_WS_PING = 0x9,
	MV_WS_PONG = 0xa,
};

/* A server frame header (FIN set, no mask) for a payload of len bytes; at most 10 bytes. */
size_t mv_ws_header(uint8_t out[10], enum mv_ws_opcode op, uint64_t len);

struct mv_ws_frame {
	bool fin;
	enum mv_ws_opcode opcode;
	uint8_t *payload;      /* unmasked in place, inside the buffer given */
	uint64_t len;
};

/* Decodes one client frame at the start of buf.  Returns the bytes it
 * takes, 0 when incomplete, -EPROTO when it breaks RFC 6455 (unmasked,
 * reserved bits, a control frame over 125 bytes or fragmented), -EMSGSIZE
 * when its payload exceeds max_payload. */
int mv_ws_parse(uint8_t *buf, size_t len, uint64_t max_payload, struct mv_ws_frame *ret);
