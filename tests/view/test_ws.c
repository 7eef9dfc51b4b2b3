/* SPDX-License-Identifier: MIT */
/*
 * The live view's HTTP and WebSocket pieces against their RFCs' own
 * examples: SHA-1 (RFC 3174 / FIPS 180), base64 (RFC 4648), the opening
 * handshake's accept key and the masked "Hello" frame (RFC 6455), request
 * parsing, frame headers at the length boundaries, and what must be refused.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "view/ws.h"

static void hex(const uint8_t *d, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

static void test_sha1(void **state)
{
	uint8_t d[20];
	char h[41];
	static const struct { const char *in, *out; } v[] = {
		{ "", "da39a3ee5e6b4b0d3255bfef95601890afd80709" },
		{ "abc", "a9993e364706816aba3e25717850c26c9cd0d89d" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "84983e441c3bd26ebaae4aa1f95129e5e54670f1" },
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		mv_sha1(v[i].in, strlen(v[i].in), d);
		hex(d, 20, h);
		assert_string_equal(h, v[i].out);
	}
	/* a million 'a': many blocks */
	char *m = malloc(1000000);
	memset(m, 'a', 1000000);
	mv_sha1(m, 1000000, d);
	hex(d, 20, h);
	assert_string_equal(h, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
	/* the lengths where the padding spills into a second block */
	static const struct { size_t n; const char *out; } edge[] = {
		{ 55, "c1c8bbdc22796e28c0e15163d20899b65621d65a" }, { 56, "c2db330f6083854c99d4b5bfb6e8f29f201be699" },
		{ 63, "03f09f5b158a7a8cdad920bddc29b81c18a551f5" }, { 64, "0098ba824b5c16427bd7a1122a5a442a25ec644d" },
		{ 65, "11655326c708d70319be2610e8a57d9a5b959d3b" }, { 119, "ee971065aaa017e0632a8ca6c77bb3bf8b1dfc56" },
		{ 120, "f34c1488385346a55709ba056ddd08280dd4c6d6" },
	};
	for (size_t i = 0; i < sizeof(edge) / sizeof(edge[0]); i++) {
		mv_sha1(m, edge[i].n, d);
		hex(d, 20, h);
		assert_string_equal(h, edge[i].out);
	}
	free(m);
}

static void test_base64(void **state)
{
	static const char *const out[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
	char b[16];
	for (size_t n = 0; n <= 6; n++) {
		assert_int_equal(mv_base64((const uint8_t *)"foobar", n, b, sizeof(b)), strlen(out[n]));
		assert_string_equal(b, out[n]);
	}
	assert_int_equal(mv_base64((const uint8_t *)"foobar", 6, b, 8), 0);   /* no room for the NUL */
}

static void test_accept_key(void **state)
{
	char a[29];
	mv_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", a);
	assert_string_equal(a, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_http_parse(void **state)
{
	struct mv_http_request r;
	const char *req = "GET /ws?token=abc&x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: WebSocket\r\n"
			  "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			  "Origin: http://127.0.0.1:8080\r\nSec-WebSocket-Version: 13\r\n\r\nextra";
	int n = mv_http_parse(req, strlen(req), &r);
	assert_int_equal(n, (int)(strstr(req, "extra") - req));
	assert_string_equal(r.method, "GET");
	assert_string_equal(r.path, "/ws");
	assert_string_equal(r.query, "token=abc&x=1");
	assert_string_equal(r.host, "127.0.0.1:8080");
	assert_string_equal(r.origin, "http://127.0.0.1:8080");
	assert_string_equal(r.ws_key, "dGhlIHNhbXBsZSBub25jZQ==");
	assert_true(r.upgrade_websocket);
	assert_int_equal(r.ws_version, 13);
	char tok[16];
	assert_true(mv_query_get(r.query, "token", tok, sizeof(tok)));
	assert_string_equal(tok, "abc");
	assert_false(mv_query_get(r.query, "tok", tok, sizeof(tok)));

	/* incomplete: wait for more */
	assert_int_equal(mv_http_parse(req, 20, &r), 0);
	/* plain GET, no upgrade */
	const char *g = "GET / HTTP/1.0\r\nHost: x\r\n\r\n";
	assert_true(mv_http_parse(g, strlen(g), &r) > 0);
	assert_false(r.upgrade_websocket);
	assert_string_equal(r.path, "/");
	/* malformed */
	static const char *const bad[] = { "GET\r\n\r\n", "GET / FTP/1.0\r\n\r\n", "GET x HTTP/1.1\r\n\r\n",
					   "GET / HTTP/1.1\r\nno colon\r\n\r\n" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(mv_http_parse(bad[i], strlen(bad[i]), &r), -EINVAL);
	/* too long a head */
	char *big = malloc(MV_HTTP_MAX_HEADER + 100);
	memset(big, 'a', MV_HTTP_MAX_HEADER + 100);
	assert_int_equal(mv_http_parse(big, MV_HTTP_MAX_HEADER + 100, &r), -E2BIG);
	free(big);
}

static void test_frames(void **state)
{
	uint8_t h[10];
	assert_int_equal(mv_ws_header(h, MV_WS_TEXT, 125), 2);
	assert_int_equal(h[0], 0x81);
	assert_int_equal(h[1], 125);
	assert_int_equal(mv_ws_header(h, MV_WS_BINARY, 126), 4);
	assert_int_equal(h[0], 0x82);
	assert_int_equal(h[1], 126);
	assert_int_equal(h[2] << 8 | h[3], 126);
	assert_int_equal(mv_ws_header(h, MV_WS_TEXT, 65535), 4);
	assert_int_equal(mv_ws_header(h, MV_WS_TEXT, 65536), 10);
	assert_int_equal(h[1], 127);
	assert_int_equal(h[7], 1);
	assert_int_equal(h[8], 0);

	/* RFC 6455 5.7: a masked "Hello" */
	uint8_t hello[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
	struct mv_ws_frame f;
	assert_int_equal(mv_ws_parse(hello, 5, 1000, &f), 0);
	assert_int_equal(mv_ws_parse(hello, sizeof(hello), 1000, &f), (int)sizeof(hello));
	assert_true(f.fin);
	assert_int_equal(f.opcode, MV_WS_TEXT);
	assert_int_equal(f.len, 5);
	assert_memory_equal(f.payload, "Hello", 5);

	/* a 300-byte masked binary message, 16-bit length */
	uint8_t big[4 + 4 + 300];
	big[0] = 0x82;
	big[1] = 0x80 | 126;
	big[2] = 300 >> 8;
	big[3] = 300 & 0xff;
	memcpy(big + 4, "\x01\x02\x03\x04", 4);
	for (int i = 0; i < 300; i++)
		big[8 + i] = (uint8_t)i ^ (uint8_t)(1 + i % 4);
	assert_int_equal(mv_ws_parse(big, sizeof(big), 1000, &f), (int)sizeof(big));
	for (int i = 0; i < 300; i++)
		assert_int_equal(f.payload[i], (uint8_t)i);
	memcpy(big + 4, "\x01\x02\x03\x04", 4);
	assert_int_equal(mv_ws_parse(big, sizeof(big), 299, &f), -EMSGSIZE);

	/* refused: unmasked, reserved bits, unknown opcode, long or fragmented control frames */
	uint8_t unmasked[] = { 0x81, 0x01, 'x' };
	assert_int_equal(mv_ws_parse(unmasked, sizeof(unmasked), 1000, &f), -EPROTO);
	uint8_t rsv[] = { 0xc1, 0x80, 0, 0, 0, 0 };
	assert_int_equal(mv_ws_parse(rsv, sizeof(rsv), 1000, &f), -EPROTO);
	uint8_t op3[] = { 0x83, 0x80, 0, 0, 0, 0 };
	assert_int_equal(mv_ws_parse(op3, sizeof(op3), 1000, &f), -EPROTO);
	uint8_t ping_long[] = { 0x89, 0x80 | 126, 0, 126 };
	assert_int_equal(mv_ws_parse(ping_long, sizeof(ping_long), 1000, &f), -EPROTO);
	uint8_t ping_frag[] = { 0x09, 0x80, 0, 0, 0, 0 };
	assert_int_equal(mv_ws_parse(ping_frag, sizeof(ping_frag), 1000, &f), -EPROTO);
	uint8_t ping[] = { 0x89, 0x80, 9, 9, 9, 9 };
	assert_int_equal(mv_ws_parse(ping, sizeof(ping), 1000, &f), 6);
	assert_int_equal(f.opcode, MV_WS_PING);
	assert_int_equal(f.len, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha1),       cmocka_unit_test(test_base64), cmocka_unit_test(test_accept_key),
		cmocka_unit_test(test_http_parse), cmocka_unit_test(test_frames),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
