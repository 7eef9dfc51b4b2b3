/* SPDX-License-Identifier: MIT */
/* Key files and the ZAP handler (daemon/auth.c). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include "daemon/auth.h"

/* Two keys made once with zmq_curve_keypair, and their public halves. */
static char pub_a[41], sec_a[41], pub_b[41], sec_b[41], pub_s[41], sec_s[41];
static char dir[64];

static int setup_keys(void **state)
{
	(void)state;
	assert_int_equal(zmq_curve_keypair(pub_a, sec_a), 0);
	assert_int_equal(zmq_curve_keypair(pub_b, sec_b), 0);
	assert_int_equal(zmq_curve_keypair(pub_s, sec_s), 0);
	snprintf(dir, sizeof(dir), "/tmp/mead-auth-test.XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown_keys(void **state)
{
	char cmd[128];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static const char *write_file(const char *name, mode_t mode, const char *text)
{
	static char path[8][128];
	static int next;
	char *p = path[next++ % 8];
	int fd;

	snprintf(p, 128, "%s/%s", dir, name);
	unlink(p);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return p;
}

static int parse(const char *text, size_t max, uint8_t **keys, char *err)
{
	return mead_keys_parse(text, strlen(text), "keys", max, keys, err, 256);
}

static void test_parse_good(void **state)
{
	char text[512], err[256] = "";
	uint8_t *keys = NULL, want[32];
	(void)state;

	/* Comments, blank lines, indentation, a trailing comment, CRLF, tabs. */
	snprintf(text, sizeof(text), "# authorised clients\n\n   # indented comment\n%s\r\n\t%s  # bob's laptop\n\n",
		 pub_a, pub_b);
	assert_int_equal(parse(text, 16, &keys, err), 2);
	assert_non_null(zmq_z85_decode(want, pub_a));
	assert_memory_equal(keys, want, 32);
	assert_non_null(zmq_z85_decode(want, pub_b));
	assert_memory_equal(keys + 32, want, 32);
	free(keys);

	/* No newline at the end. */
	assert_int_equal(parse(pub_a, 16, &keys, err), 1);
	free(keys);
}

static void test_parse_empty(void **state)
{
	char err[256] = "";
	uint8_t *keys = (uint8_t *)1;
	(void)state;

	assert_int_equal(parse("", 16, &keys, err), 0);
	assert_null(keys);
	assert_int_equal(parse("# nothing but a comment\n\n  \t\n", 16, &keys, err), 0);
	assert_null(keys);
}

static void test_parse_bad_z85(void **state)
{
	char text[128], err[256] = "";
	uint8_t *keys = NULL;
	(void)state;

	snprintf(text, sizeof(text), "# one\n%s\n", pub_a);
	text[6 + 17] = '~';   /* not in the Z85 alphabet */
	assert_int_equal(parse(text, 16, &keys, err), -EINVAL);
	assert_null(keys);
	assert_non_null(strstr(err, "keys:2:18: '~' is not a Z85 character"));

	snprintf(text, sizeof(text), "%s\n", pub_a);
	text[3] = '\x01';
	assert_int_equal(parse(text, 16, &keys, err), -EINVAL);
	assert_non_null(strstr(err, "keys:1:4: byte 0x01 is not a Z85 character"));

	/* Every character is Z85, but "%%%%%" is more than 32 bits. */
	memset(text, '0', 40);
	memset(text, '%', 5);
	text[40] = '\0';
	assert_int_equal(parse(text, 16, &keys, err), -EINVAL);
	assert_non_null(strstr(err, "keys:1: not a Z85 key"));
}

static void test_parse_wrong_length(void **state)
{
	char text[128], err[256] = "";
	uint8_t *keys = NULL;
	(void)state;

	snprintf(text, sizeof(text), "\n%.39s\n", pub_a);
	assert_int_equal(parse(text, 16, &keys, err), -EINVAL);
	assert_non_null(strstr(err, "keys:2: a key is 40 Z85 characters, found 39"));
	snprintf(text, sizeof(text), "%s0\n", pub_a);
	assert_int_equal(parse(text, 16, &keys, err), -EINVAL);
	assert_non_null(strstr(err, "found 41"));
	/* A secret key pasted as hex, say. */
	assert_int_equal(parse("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", 16, &keys, err),
			 -EINVAL);
	assert_non_null(strstr(err, "found 64"));
	assert_null(keys);
}

static void test_parse_trailing_text_and_duplicates(void **state)
{
	char text[256], err[256] = "";
	uint8_t *keys = NULL;
	(void)state;

	snprintf(text, sizeof(text), "%s alice\n", pub_a);
	assert_int_equal(parse(text, 16, &keys, err), -EINVAL);
	assert_non_null(strstr(err, "keys:1:42: unexpected text after the key"));

	snprintf(text, sizeof(text), "%s\n# again\n%s\n", pub_a, pub_a);
	assert_int_equal(parse(text, 16, &keys, err), -EINVAL);
	assert_non_null(strstr(err, "keys:3: the same key as line 1"));

	snprintf(text, sizeof(text), "%s\n%s\n", pub_a, pub_b);
	assert_int_equal(parse(text, 1, &keys, err), -EINVAL);
	assert_non_null(strstr(err, "keys:2: more than 1 key"));
	assert_null(keys);
}

static void test_read_files(void **state)
{
	char text[256], err[256] = "";
	uint8_t *keys = NULL, want[32];
	const char *p;
	(void)state;

	snprintf(text, sizeof(text), "# secret\n%s\n", sec_a);
	p = write_file("ok.key", 0600, text);
	assert_int_equal(mead_keys_read_file(p, true, 1, &keys, err, sizeof(err)), 1);
	assert_non_null(zmq_z85_decode(want, sec_a));
	assert_memory_equal(keys, want, 32);
	free(keys);
	keys = NULL;

	/* Group may read (a service account's group); others may not. */
	p = write_file("group.key", 0640, text);
	assert_int_equal(mead_keys_read_file(p, true, 1, &keys, err, sizeof(err)), 1);
	free(keys);
	keys = NULL;
	p = write_file("open.key", 0644, text);
	assert_int_equal(mead_keys_read_file(p, true, 1, &keys, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "must not be accessible to others (mode 0644; chmod 600 it)"));

	snprintf(text, sizeof(text), "%s\n%s\n", sec_a, sec_b);
	p = write_file("two.key", 0600, text);
	assert_int_equal(mead_keys_read_file(p, true, 1, &keys, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "two.key:2: more than 1 key"));

	p = write_file("empty.pub", 0644, "# only a comment\n");
	assert_int_equal(mead_keys_read_file(p, false, 16, &keys, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "empty.pub: no key in the file"));

	assert_int_equal(mead_keys_read_file("/nonexistent/x.pub", false, 16, &keys, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/x.pub: No such file"));
	assert_int_equal(mead_keys_read_file(dir, false, 16, &keys, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a regular file"));
	assert_int_equal(mead_keys_read_file("", false, 16, &keys, err, sizeof(err)), -EINVAL);
	assert_null(keys);
}

/* A client's pair from its options: the server key as text, the secret
 * key from a private file; each failure names its option. */
static void test_client_keys(void **state)
{
	char text[256], err[256] = "";
	uint8_t server[32], secret[32], want[32];
	const char *p;
	(void)state;

	snprintf(text, sizeof(text), "%s\n", sec_a);
	p = write_file("client.key", 0600, text);
	assert_int_equal(mead_keys_client(pub_b, p, server, secret, err, sizeof(err)), 0);
	assert_non_null(zmq_z85_decode(want, pub_b));
	assert_memory_equal(server, want, 32);
	assert_non_null(zmq_z85_decode(want, sec_a));
	assert_memory_equal(secret, want, 32);
	assert_int_equal(mead_keys_client("not-a-key", p, server, secret, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "--server-key: not-a-key: no such file"));
	p = write_file("client-open.key", 0644, text);
	assert_int_equal(mead_keys_client(pub_b, p, server, secret, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "--client-key: "));
	assert_non_null(strstr(err, "must not be accessible to others"));
}

static void test_key_arg(void **state)
{
	char text[128], err[256] = "";
	uint8_t key[32], want[32];
	(void)state;

	assert_non_null(zmq_z85_decode(want, pub_b));
	assert_int_equal(mead_keys_from_arg(pub_b, key, err, sizeof(err)), 0);
	assert_memory_equal(key, want, 32);
	snprintf(text, sizeof(text), "# server\n%s\n", pub_b);
	memset(key, 0, sizeof(key));
	assert_int_equal(mead_keys_from_arg(write_file("server.pub", 0644, text), key, err, sizeof(err)), 0);
	assert_memory_equal(key, want, 32);
	assert_int_equal(mead_keys_from_arg("server.pub.missing", key, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no such file, and not a key"));
}

static void test_endpoint_is_local(void **state)
{
	(void)state;
	assert_true(mead_auth_endpoint_is_local("tcp://127.0.0.1:5556"));
	assert_true(mead_auth_endpoint_is_local("tcp://localhost:5556"));
	assert_true(mead_auth_endpoint_is_local("tcp://[::1]:5556"));
	assert_true(mead_auth_endpoint_is_local("ipc:///run/mead/control"));
	assert_false(mead_auth_endpoint_is_local("tcp://*:5556"));
	assert_false(mead_auth_endpoint_is_local("tcp://0.0.0.0:5556"));
	assert_false(mead_auth_endpoint_is_local("tcp://eth0:5556"));
	assert_false(mead_auth_endpoint_is_local("tcp://10.0.0.7:5556"));
}

static struct mead_auth *new_auth(const char *authorized_text, char *err)
{
	char text[128];
	struct mead_auth *a = NULL;
	struct mead_auth_params p = { 0 };

	snprintf(text, sizeof(text), "%s\n", sec_s);
	p.server_secret_key_file = write_file("server.key", 0600, text);
	p.authorized_keys_file = write_file("authorized", 0644, authorized_text);
	if (mead_auth_new(&p, &a, err, 256) < 0)
		return NULL;
	return a;
}

static void test_auth_new(void **state)
{
	char text[128], err[256] = "";
	struct mead_auth *a;
	(void)state;

	snprintf(text, sizeof(text), "%s # alice\n", pub_a);
	a = new_auth(text, err);
	assert_non_null(a);
	assert_string_equal(mead_auth_server_public_z85(a), pub_s);
	assert_int_equal(mead_auth_key_count(a), 1);
	assert_null(mead_auth_zmq_ctx(a));
	mead_auth_free(a);

	/* Nobody authorised: a configuration that can only lock everyone out. */
	assert_null(new_auth("# nobody yet\n", err));
	assert_non_null(strstr(err, "authorized: no key in the file"));
	mead_auth_free(NULL);
}

/* How long a refused client waits for the reply that never comes; scaled by
 * MEAD_TEST_TIME_SCALE (the valgrind test setup sets it: the CURVE handshake
 * alone takes longer than 600 ms there). */
static int reply_timeout_ms(void)
{
	const char *scale = getenv("MEAD_TEST_TIME_SCALE");
	long k = scale ? strtol(scale, NULL, 10) : 1;
	return 600 * (int)(k >= 1 && k <= 100 ? k : 1);
}

/* One REQ round trip through a CURVE REP server in the handler's context;
 * true when the reply came. */
static bool round_trip(void *ctx, const char *ep, const char *client_pub, const char *client_sec, const char *server_pub)
{
	void *req = zmq_socket(ctx, ZMQ_REQ);
	int zero = 0, timeout = reply_timeout_ms();
	char buf[16];
	bool got;

	zmq_setsockopt(req, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(req, ZMQ_RCVTIMEO, &timeout, sizeof(timeout));
	if (server_pub) {
		zmq_setsockopt(req, ZMQ_CURVE_SERVERKEY, server_pub, 40);
		zmq_setsockopt(req, ZMQ_CURVE_PUBLICKEY, client_pub, 40);
		zmq_setsockopt(req, ZMQ_CURVE_SECRETKEY, client_sec, 40);
	}
	assert_int_equal(zmq_connect(req, ep), 0);
	assert_int_equal(zmq_send(req, "ping", 4, 0), 4);
	got = zmq_recv(req, buf, sizeof(buf), 0) == 4;
	zmq_close(req);
	return got;
}

static atomic_bool echo_stop;

/* The server side; it owns the socket from here on. */
static void *echo_thread(void *arg)
{
	void *rep = arg;
	char buf[16];

	while (!atomic_load(&echo_stop)) {
		zmq_pollitem_t it = { .socket = rep, .events = ZMQ_POLLIN };
		if (zmq_poll(&it, 1, 50) <= 0)
			continue;
		int n = zmq_recv(rep, buf, sizeof(buf), 0);
		if (n >= 0)
			zmq_send(rep, buf, (size_t)n, 0);
	}
	zmq_close(rep);
	return NULL;
}

static void test_zap_handler(void **state)
{
	char text[128], err[256] = "", ep[128];
	struct mead_auth *a;
	struct mead_auth_counters c;
	void *ctx, *rep, *client_ctx;
	size_t len = sizeof(ep);
	pthread_t t;
	(void)state;

	snprintf(text, sizeof(text), "%s\n", pub_a);
	a = new_auth(text, err);
	assert_non_null(a);
	assert_int_equal(mead_auth_start(a, err, sizeof(err)), 0);
	ctx = mead_auth_zmq_ctx(a);
	assert_non_null(ctx);

	rep = zmq_socket(ctx, ZMQ_REP);
	assert_int_equal(mead_curve_server_setup(ctx, rep, mead_auth_server_secret(a), MEAD_AUTH_DOMAIN_CONTROL, err,
						 sizeof(err)), 0);
	assert_int_equal(zmq_bind(rep, "tcp://127.0.0.1:*"), 0);
	assert_int_equal(zmq_getsockopt(rep, ZMQ_LAST_ENDPOINT, ep, &len), 0);
	assert_int_equal(pthread_create(&t, NULL, echo_thread, rep), 0);

	client_ctx = zmq_ctx_new();
	assert_true(round_trip(client_ctx, ep, pub_a, sec_a, pub_s));
	assert_false(round_trip(client_ctx, ep, pub_b, sec_b, pub_s));   /* key not listed */
	assert_false(round_trip(client_ctx, ep, NULL, NULL, NULL));      /* no CURVE */
	assert_false(round_trip(client_ctx, ep, pub_a, sec_a, pub_b));   /* wrong server key */
	assert_true(round_trip(client_ctx, ep, pub_a, sec_a, pub_s));
	zmq_ctx_term(client_ctx);

	mead_auth_get_counters(a, &c);
	assert_int_equal(c.control.accepted, 2);
	/* A refused REQ may retry; each retry is refused again. */
	assert_true(c.control.refused >= 1);
	assert_int_equal(c.streams.accepted + c.streams.refused + c.other.accepted + c.other.refused, 0);
	assert_int_equal(c.malformed, 0);

	atomic_store(&echo_stop, true);
	pthread_join(t, NULL);
	mead_auth_free(a);
}

static void test_curve_without_handler_refused(void **state)
{
	char err[256] = "";
	uint8_t secret[32];
	void *ctx = zmq_ctx_new(), *rep = zmq_socket(ctx, ZMQ_REP);
	(void)state;

	assert_non_null(zmq_z85_decode(secret, sec_s));
	/* libzmq would let every client in: the setup must refuse instead. */
	assert_int_equal(mead_curve_server_setup(ctx, rep, secret, MEAD_AUTH_DOMAIN_CONTROL, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "no ZAP handler"));
	zmq_close(rep);
	zmq_ctx_term(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_empty),
		cmocka_unit_test(test_parse_bad_z85),
		cmocka_unit_test(test_parse_wrong_length),
		cmocka_unit_test(test_parse_trailing_text_and_duplicates),
		cmocka_unit_test(test_read_files),
		cmocka_unit_test(test_key_arg),
		cmocka_unit_test(test_client_keys),
		cmocka_unit_test(test_endpoint_is_local),
		cmocka_unit_test(test_auth_new),
		cmocka_unit_test(test_zap_handler),
		cmocka_unit_test(test_curve_without_handler_refused),
	};
	return cmocka_run_group_tests(tests, setup_keys, teardown_keys);
}
