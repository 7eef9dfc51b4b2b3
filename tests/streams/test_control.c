/* SPDX-License-Identifier: MIT */
/* The strict JSON parser and the control request handler. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <zmq.h>

#include "daemon/control.h"
#include "daemon/daemon.h"
#include "lib/core/json.h"
#include "tests/streams/fake_loop.h"

/* ---- JSON ---- */

static void test_json_good(void **state)
{
	static const char text[] =
		" {\"a\": [1, -2, 3.5e2, true, false, null], \"s\": \"x\\n\\u00e9\\ud83d\\ude00\\\"\", \"o\": {}} ";
	struct mead_json *d;
	char err[200];

	assert_int_equal(mead_json_parse(text, strlen(text), NULL, &d, err, sizeof(err)), 0);
	const struct mead_json_value *r = mead_json_root(d);
	assert_int_equal(r->type, MEAD_JSON_OBJECT);
	assert_int_equal(r->n, 3);
	const struct mead_json_value *a = mead_json_get(d, r, "a");
	assert_non_null(a);
	assert_int_equal(a->n, 6);
	assert_true(mead_json_at(d, a, 0)->is_int);
	assert_int_equal(mead_json_at(d, a, 1)->i, -2);
	assert_false(mead_json_at(d, a, 2)->is_int);
	assert_true(mead_json_at(d, a, 2)->num == 350.0);
	assert_int_equal(mead_json_at(d, a, 3)->type, MEAD_JSON_BOOL);
	assert_true(mead_json_at(d, a, 3)->b);
	assert_int_equal(mead_json_at(d, a, 5)->type, MEAD_JSON_NULL);
	assert_null(mead_json_at(d, a, 6));
	const struct mead_json_value *s = mead_json_get(d, r, "s");
	assert_string_equal(s->s, "x\n\xc3\xa9\xf0\x9f\x98\x80\"");
	assert_int_equal(mead_json_get(d, r, "o")->type, MEAD_JSON_OBJECT);
	assert_null(mead_json_get(d, r, "missing"));
	mead_json_free(d);
}

static void test_json_bad(void **state)
{
	static const char *const bad[] = {
		"", " ", "{", "}", "[", "{\"a\":1,}", "[1,]", "{\"a\":1,\"a\":2}", "01", "1.", ".5", "+1", "-",
		"NaN", "Infinity", "\"\\x\"", "\"\x01\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"",
		"\"\xc3\x28\"", "\"\xed\xa0\x80\"", "\"\xc0\xaf\"", "\"\xf5\x80\x80\x80\"", "{\"a\" 1}", "[1 2]",
		"tru", "nul", "falsey", "{}x", "{} {}", "[[[[[[[[[[1]]]]]]]]]]", "1e999", "{'a':1}", "{a:1}",
		"\"unterminated", "[1,2", "{\"a\":}", "{,}", "\"\\u12\"", "1e", "1e+", "--1", "[\"a\"\"b\"]",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mead_json *d = (struct mead_json *)0x1;
		char err[200] = "";
		int rc = mead_json_parse(bad[i], strlen(bad[i]), NULL, &d, err, sizeof(err));
		if (rc == 0)
			fail_msg("accepted bad JSON #%zu: %s", i, bad[i]);
		assert_true(d == (struct mead_json *)0x1);   /* untouched */
		assert_true(err[0] != '\0');
	}
	/* Bounds: too long input, too many nodes. */
	char *big = malloc(20000);
	memset(big, ' ', 20000);
	big[0] = '1';
	struct mead_json *d;
	assert_int_equal(mead_json_parse(big, 20000, NULL, &d, NULL, 0), -E2BIG);
	free(big);
	char many[2100];
	size_t n = 0;
	many[n++] = '[';
	for (int i = 0; i < 600; i++) {
		many[n++] = '0';
		many[n++] = ',';
	}
	many[n - 1] = ']';
	assert_int_equal(mead_json_parse(many, n, NULL, &d, NULL, 0), -E2BIG);
}

static void test_json_writer(void **state)
{
	char buf[64];
	struct mead_jw w;

	mead_jw_init(&w, buf, sizeof(buf));
	mead_jw_obj_begin(&w);
	mead_jw_key(&w, "a");
	mead_jw_arr_begin(&w);
	mead_jw_u64(&w, 1);
	mead_jw_i64(&w, -2);
	mead_jw_arr_end(&w);
	mead_jw_key(&w, "q\"");
	mead_jw_str(&w, "x\n");
	mead_jw_obj_end(&w);
	assert_int_equal(mead_jw_finish(&w), (int)strlen(buf));
	assert_string_equal(buf, "{\"a\":[1,-2],\"q\\\"\":\"x\\u000a\"}");
	mead_jw_init(&w, buf, 8);
	mead_jw_str(&w, "much too long for eight bytes");
	assert_int_equal(mead_jw_finish(&w), -ENOSPC);
}

/* ---- control ---- */

static struct mead_electrode electrodes[16];
static struct mead_layout_view layout = { 4, 4, 16, 200.0f, electrodes };
static struct mead_daemon daemon_;
static struct mead_control *ctl;
static int dummy_protocol;
static int refuse_all;

static int make_protocol(void *ctx, const char *name, struct mead_protocol **ret, char *err, size_t len)
{
	if (strcmp(name, "burst") == 0) {
		*ret = (struct mead_protocol *)&dummy_protocol;
		return 2;
	}
	snprintf(err, len, "no protocol named \"%s\" is configured", name);
	return -ENOENT;
}

static int status_json(void *ctx, char *buf, size_t len)
{
	return snprintf(buf, len, "{\"state\":\"running\",\"ticks\":42}");
}

static int stim_check(void *ctx, const struct mead_command *cmd, char *err, size_t len)
{
	if (!refuse_all)
		return 0;
	snprintf(err, len, "interlock engaged");
	return -EPERM;
}

static char last_log[512];

static void keep_log(void *ctx, int prio, const char *msg)
{
	(void)ctx;
	(void)prio;
	snprintf(last_log, sizeof(last_log), "%s", msg);
}

static int setup(void **state)
{
	struct mead_control_params p = {
		.make_protocol = make_protocol,
		.status_json = status_json,
		.log = keep_log,
		.stim_check = stim_check,
		.limits = { .max_amplitude_ua = 10.0f, .max_phase_us = 400, .max_pulses = 100, .max_rate_hz = 100.0 },
	};
	char err[256];

	fake_loop_reset();
	refuse_all = 0;
	memset(electrodes, 0, sizeof(electrodes));
	for (int i = 0; i < 16; i++) {
		electrodes[i].row = (uint16_t)(i / 4);
		electrodes[i].col = (uint16_t)(i % 4);
		snprintf(electrodes[i].label, sizeof(electrodes[i].label), "%c%d", 'A' + i % 4, 1 + i / 4);
	}
	electrodes[0].excluded = true;
	memset(&daemon_, 0, sizeof(daemon_));
	daemon_.layout = &layout;
	daemon_.loop = fake_loop_get();
	daemon_.driver.caps.flags = MEAD_CAP_STIMULATE;
	daemon_.driver.caps.max_amplitude_ua = 100.0f;
	assert_int_equal(mead_control_new(&p, &daemon_, false, &ctl, err, sizeof(err)), 0);
	return 0;
}

static int teardown(void **state)
{
	mead_control_free(ctl);
	ctl = NULL;
	return 0;
}

/* Sends req; returns the parsed reply (caller frees) and checks "ok". */
static struct mead_json *request(const char *req, bool want_ok)
{
	char reply[4096];
	struct mead_json *d;
	static const struct mead_json_limits lim = { 1 << 20, 16, 1 << 16, 1 << 16 };
	int n = mead_control_handle(ctl, req, strlen(req), reply, sizeof(reply));

	assert_true(n > 0);
	assert_int_equal((size_t)n, strlen(reply));
	if (mead_json_parse(reply, (size_t)n, &lim, &d, NULL, 0) < 0)
		fail_msg("reply is not JSON: %s", reply);
	const struct mead_json_value *ok = mead_json_get(d, mead_json_root(d), "ok");
	assert_non_null(ok);
	assert_int_equal(ok->type, MEAD_JSON_BOOL);
	if (ok->b != want_ok)
		fail_msg("request %s -> %s", req, reply);
	if (!want_ok) {
		const struct mead_json_value *e = mead_json_get(d, mead_json_root(d), "error");
		assert_non_null(e);
		assert_int_equal(e->type, MEAD_JSON_STRING);
		assert_true(e->n > 5);
	}
	return d;
}

static void test_control_good(void **state)
{
	mead_json_free(request("{\"cmd\":\"ping\"}", true));
	mead_json_free(request("{\"cmd\":\"help\"}", true));
	struct mead_json *d = request("{\"cmd\":\"status\"}", true);
	assert_int_equal(mead_json_get(d, mead_json_root(d), "ticks")->i, 42);
	mead_json_free(d);
	assert_int_equal(fake_loop_state.n_cmds, 0);

	mead_json_free(request("{\"cmd\":\"start\",\"protocol\":\"burst\"}", true));
	assert_int_equal(fake_loop_state.n_cmds, 1);
	assert_int_equal(fake_loop_state.cmds[0].type, MEAD_CMD_START_PROTOCOL);
	assert_ptr_equal(fake_loop_state.cmds[0].start.protocol, &dummy_protocol);
	assert_int_equal(fake_loop_state.cmds[0].start.index, 2);

	mead_json_free(request("{\"cmd\":\"stop\"}", true));
	assert_int_equal(fake_loop_state.cmds[1].type, MEAD_CMD_STOP_PROTOCOL);
	mead_json_free(request("{\"cmd\":\"halt\"}", true));
	assert_int_equal(fake_loop_state.cmds[2].type, MEAD_CMD_STOP_ALL);

	mead_json_free(request("{\"cmd\":\"stim\",\"electrodes\":[3,15],\"amplitude_ua\":-1.0,\"phase_us\":200,"
			       "\"interphase_us\":50,\"pulses\":5,\"rate_hz\":20}", true));
	const struct mead_command *c = &fake_loop_state.cmds[3];
	assert_int_equal(c->type, MEAD_CMD_STIM_TRAIN);
	assert_int_equal(c->train.n_electrodes, 2);
	assert_int_equal(c->train.electrodes[0], 3);
	assert_int_equal(c->train.electrodes[1], 15);
	assert_true(c->train.amplitude_ua == -1.0f);
	assert_int_equal(c->train.phase_us, 200);
	assert_int_equal(c->train.interphase_us, 50);
	assert_int_equal(c->train.pulses, 5);
	assert_true(c->train.rate_hz == 20.0);
	/* ids are distinct and increasing */
	assert_true(fake_loop_state.cmds[3].id > fake_loop_state.cmds[0].id);

	assert_int_equal(atomic_load(&daemon_.stop_requested), 0);
	mead_json_free(request("{\"cmd\":\"shutdown\"}", true));
	assert_int_equal(atomic_load(&daemon_.stop_requested), 1);

	/* A reply buffer too small for the details: an applied command still says ok. */
	char small[20];
	const char *stim = "{\"cmd\":\"stim\",\"electrodes\":[3],\"amplitude_ua\":-1,\"phase_us\":200,\"pulses\":5,\"rate_hz\":20}";
	unsigned before = fake_loop_state.n_cmds;
	assert_int_equal(mead_control_handle(ctl, stim, strlen(stim), small, sizeof(small)), 11);
	assert_string_equal(small, "{\"ok\":true}");
	assert_int_equal(fake_loop_state.n_cmds, before + 1);
	assert_int_equal(mead_control_handle(ctl, "{\"cmd\":\"status\"}", 16, small, sizeof(small)), 12);
	assert_string_equal(small, "{\"ok\":false}");

	/* With every train slot playing, a train is refused with a reason
	 * rather than answered ok and dropped by the loop. */
	fake_loop_state.trains_busy = true;
	before = fake_loop_state.n_cmds;
	struct mead_json *busy = request(stim, false);
	const char *why = mead_json_get(busy, mead_json_root(busy), "error")->s;
	assert_non_null(strstr(why, "train slot"));
	mead_json_free(busy);
	assert_int_equal(fake_loop_state.n_cmds, before);
	fake_loop_state.trains_busy = false;

	/* Reclaimed protocols are freed, their results logged first. */
	last_log[0] = 0;
	fake_loop_state.reclaim = (struct mead_protocol *)&dummy_protocol;
	mead_control_reclaim(ctl);
	assert_int_equal(fake_loop_state.protocols_freed, 1);
	assert_string_equal(last_log, "protocol: {\"protocol\": \"fake\", \"state\": \"finished\"}");
}

static const char *const bad_requests[] = {
	"", "null", "[]", "\"ping\"", "{}", "{\"cmd\":1}", "{\"cmd\":null}", "{\"cmd\":\"PING\"}", "{\"cmd\":\"nope\"}",
	"{\"cmd\":\"ping\",\"x\":1}", "{\"cmd\":\"shutdown\\u0000x\"}", "{\"cmd\":\"start\",\"protocol\":\"burst\\u0000\"}", "{\"cmd\":\"ping\",\"cmd\":\"ping\"}", "{\"cmd\":\"status\"} {}",
	"{\"cmd\":\"start\"}", "{\"cmd\":\"start\",\"protocol\":1}", "{\"cmd\":\"start\",\"protocol\":\"\"}",
	"{\"cmd\":\"start\",\"protocol\":\"../../etc/passwd\"}", "{\"cmd\":\"start\",\"protocol\":\"a;rm -rf /\"}",
	"{\"cmd\":\"start\",\"protocol\":\"missing\"}", "{\"cmd\":\"start\",\"protocol\":\"burst\",\"path\":\"/tmp/x\"}",
	"{\"cmd\":\"stop\",\"now\":true}",
	"{\"cmd\":\"stim\"}",
	"{\"cmd\":\"stim\",\"electrodes\":[],\"amplitude_ua\":-1,\"phase_us\":200,\"pulses\":5,\"rate_hz\":20}",
	"{\"cmd\":\"stim\",\"electrodes\":3,\"amplitude_ua\":-1,\"phase_us\":200,\"pulses\":5,\"rate_hz\":20}",
	"{\"cmd\":\"stim\",\"electrodes\":[16],\"amplitude_ua\":-1,\"phase_us\":200,\"pulses\":5,\"rate_hz\":20}",
	"{\"cmd\":\"stim\",\"electrodes\":[-1],\"amplitude_ua\":-1,\"phase_us\":200,\"pulses\":5,\"rate_hz\":20}",
	"{\"cmd\":\"stim\",\"electrodes\":[0],\"amplitude_ua\":-1,\"phase_us\":200,\"pulses\":5,\"rate_hz\":20}",
	"{\"cmd\":\"stim\",\"electrodes\":[3,3],\"amplitude_ua\":-1,\"phase_us\":200,\"pulses\":5,\"rate_hz\":20}",
	"{\"cmd\":\"stim\",\"electrodes\":[1.5],\"amplitude_ua\":-1,\"phase_us\":200,\"pulses\":5,\"rate_hz\":20}",
	"{\"cmd\":\"stim\",\"electrodes\":[\"3\"],\"amplitude_ua\":-1,\"phase_us\":200,\"pulses\":5,\"rate_hz\":20}",
	"{\"cmd\":\"stim\",\"electrodes\":[3],\"amplitude_ua\":0,\"phase_us\":200,\"pulses\":5,\"rate_hz\":20}",
	"{\"cmd\":\"stim\",\"electrodes\":[3],\"amplitude_ua\":-11,\"phase_us\":200,\"pulses\":5,\"rate_hz\":20}",
	"{\"cmd\":\"stim\",\"electrodes\":[3],\"amplitude_ua\":\"-1\",\"phase_us\":200,\"pulses\":5,\"rate_hz\":20}",
	"{\"cmd\":\"stim\",\"electrodes\":[3],\"amplitude_ua\":-1,\"phase_us\":0,\"pulses\":5,\"rate_hz\":20}",
	"{\"cmd\":\"stim\",\"electrodes\":[3],\"amplitude_ua\":-1,\"phase_us\":401,\"pulses\":5,\"rate_hz\":20}",
	"{\"cmd\":\"stim\",\"electrodes\":[3],\"amplitude_ua\":-1,\"phase_us\":200.5,\"pulses\":5,\"rate_hz\":20}",
	"{\"cmd\":\"stim\",\"electrodes\":[3],\"amplitude_ua\":-1,\"phase_us\":200,\"pulses\":0,\"rate_hz\":20}",
	"{\"cmd\":\"stim\",\"electrodes\":[3],\"amplitude_ua\":-1,\"phase_us\":200,\"pulses\":101,\"rate_hz\":20}",
	"{\"cmd\":\"stim\",\"electrodes\":[3],\"amplitude_ua\":-1,\"phase_us\":200,\"pulses\":5,\"rate_hz\":0}",
	"{\"cmd\":\"stim\",\"electrodes\":[3],\"amplitude_ua\":-1,\"phase_us\":200,\"pulses\":5,\"rate_hz\":-5}",
	"{\"cmd\":\"stim\",\"electrodes\":[3],\"amplitude_ua\":-1,\"phase_us\":200,\"pulses\":5,\"rate_hz\":101}",
	"{\"cmd\":\"stim\",\"electrodes\":[3],\"amplitude_ua\":-1,\"phase_us\":200,\"pulses\":5}",
	"{\"cmd\":\"stim\",\"electrodes\":[3],\"amplitude_ua\":-1,\"phase_us\":200,\"interphase_us\":-1,\"pulses\":5,\"rate_hz\":20}",
	"{\"cmd\":\"stim\",\"electrodes\":[3],\"amplitude_ua\":-1,\"phase_us\":200,\"pulses\":5,\"rate_hz\":20,\"x\":0}",
	"{\"cmd\":\"stim\",\"electrodes\":[3],\"amplitude_ua\":-1,\"phase_us\":200,\"pulses\":5,\"rate_hz\":1e400}",
	"{\"cmd\":\"stim\",\"electrodes\":[3],\"amplitude_ua\":-1,\"phase_us\":200,\"pulses\":5,\"rate_hz\":20,\"amplitude_ua\":-2}",
};

static void test_control_bad(void **state)
{
	for (size_t i = 0; i < sizeof(bad_requests) / sizeof(bad_requests[0]); i++)
		mead_json_free(request(bad_requests[i], false));
	assert_int_equal(fake_loop_state.n_cmds, 0);
	assert_int_equal(atomic_load(&daemon_.stop_requested), 0);

	/* The driver's own limit applies when it is lower than the configured one. */
	daemon_.driver.caps.max_amplitude_ua = 0.5f;
	mead_json_free(request("{\"cmd\":\"stim\",\"electrodes\":[3],\"amplitude_ua\":-1,\"phase_us\":400,"
			       "\"interphase_us\":1000,\"pulses\":5,\"rate_hz\":100}", false));
	daemon_.driver.caps.max_amplitude_ua = 0;
	mead_json_free(request("{\"cmd\":\"stim\",\"electrodes\":[3],\"amplitude_ua\":-1,\"phase_us\":400,"
			       "\"interphase_us\":1000,\"pulses\":5,\"rate_hz\":100}", true));
	assert_int_equal(fake_loop_state.n_cmds, 1);

	/* The safety hook has the last word. */
	refuse_all = 1;
	struct mead_json *d = request("{\"cmd\":\"stim\",\"electrodes\":[3],\"amplitude_ua\":-1,\"phase_us\":200,"
				      "\"pulses\":5,\"rate_hz\":20}", false);
	assert_non_null(strstr(mead_json_get(d, mead_json_root(d), "error")->s, "interlock"));
	mead_json_free(d);
	refuse_all = 0;

	/* A driver that cannot stimulate. */
	daemon_.driver.caps.flags = 0;
	static const struct mead_driver_ops ops = { .name = "null" };
	daemon_.driver.ops = &ops;
	mead_json_free(request("{\"cmd\":\"stim\",\"electrodes\":[3],\"amplitude_ua\":-1,\"phase_us\":200,"
			       "\"pulses\":5,\"rate_hz\":20}", false));
	daemon_.driver.caps.flags = MEAD_CAP_STIMULATE;
	daemon_.driver.ops = NULL;

	/* A full command queue: error reply, and the protocol built for it is freed. */
	fake_loop_state.full = true;
	mead_json_free(request("{\"cmd\":\"start\",\"protocol\":\"burst\"}", false));
	assert_int_equal(fake_loop_state.protocols_freed, 1);
	fake_loop_state.full = false;
	assert_int_equal(fake_loop_state.n_cmds, 1);

	/* No loop: commands that need it are refused. */
	daemon_.loop = NULL;
	mead_json_free(request("{\"cmd\":\"stop\"}", false));
	mead_json_free(request("{\"cmd\":\"ping\"}", true));
	daemon_.loop = fake_loop_get();
}

/* threshold: validated here, applied by the loop between ticks. */
static void test_control_threshold(void **state)
{
	static const struct mead_driver_ops rig = { .name = "rig" };
	daemon_.driver.ops = &rig;
	daemon_.driver.caps.flags = MEAD_CAP_THRESHOLDS;

	struct mead_json *d = request("{\"cmd\":\"threshold\",\"electrode\":5,\"value\":\"6.5x\"}", true);
	assert_true(mead_json_get(d, mead_json_root(d), "k")->num == 6.5);
	mead_json_free(d);
	mead_json_free(request("{\"cmd\":\"threshold\",\"electrode\":\"all\",\"value\":\"-40uV\"}", true));
	assert_int_equal(fake_loop_state.n_cmds, 2);
	const struct mead_command *c = &fake_loop_state.cmds[0];
	assert_int_equal(c->type, MEAD_CMD_THRESHOLD);
	assert_int_equal(c->threshold.electrode, 5);
	assert_int_equal(c->threshold.mode, MEAD_THRESHOLD_NOISE);
	assert_true(c->threshold.value == 6.5f);
	c = &fake_loop_state.cmds[1];
	assert_int_equal(c->threshold.electrode, MEAD_EVENT_ALL_ELECTRODES);
	assert_int_equal(c->threshold.mode, MEAD_THRESHOLD_UV);
	assert_true(c->threshold.value == 40.0f);

	static const char *const bad[][2] = {
		{ "{\"cmd\":\"threshold\",\"value\":\"6x\"}", "missing field \"electrode\"" },
		{ "{\"cmd\":\"threshold\",\"electrode\":16,\"value\":\"6x\"}", "outside the layout" },
		{ "{\"cmd\":\"threshold\",\"electrode\":\"A1\",\"value\":\"6x\"}", "index or \"all\"" },
		{ "{\"cmd\":\"threshold\",\"electrode\":1}", "\"value\" must be a string" },
		{ "{\"cmd\":\"threshold\",\"electrode\":1,\"value\":6}", "\"value\" must be a string" },
		{ "{\"cmd\":\"threshold\",\"electrode\":1,\"value\":\"1x\"}", "is not a threshold" },
		{ "{\"cmd\":\"threshold\",\"electrode\":1,\"value\":\"40mV\"}", "is not a threshold" },
		{ "{\"cmd\":\"threshold\",\"electrode\":1,\"value\":\"6x\",\"k\":6}", "unknown field \"k\"" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		d = request(bad[i][0], false);
		const char *why = mead_json_get(d, mead_json_root(d), "error")->s;
		if (!strstr(why, bad[i][1]))
			fail_msg("%s -> %s", bad[i][0], why);
		mead_json_free(d);
	}
	/* a driver without a detector (the twin: its spikes are its neurons') */
	daemon_.driver.caps.flags = MEAD_CAP_STIMULATE;
	d = request("{\"cmd\":\"threshold\",\"electrode\":1,\"value\":\"6x\"}", false);
	assert_non_null(strstr(mead_json_get(d, mead_json_root(d), "error")->s, "has no thresholds"));
	mead_json_free(d);
	assert_int_equal(fake_loop_state.n_cmds, 2);
	daemon_.driver.ops = NULL;
}

static void test_control_1000_malformed(void **state)
{
	static const char *const good[] = {
		"{\"cmd\":\"stim\",\"electrodes\":[3,15],\"amplitude_ua\":-1.0,\"phase_us\":200,\"interphase_us\":50,"
		"\"pulses\":5,\"rate_hz\":20}",
		"{\"cmd\":\"start\",\"protocol\":\"burst\"}",
		"{\"cmd\":\"shutdown\"}",
	};
	unsigned seed = 12345, sent = 0;
	char req[512];

	/* Every proper prefix of a request object is invalid JSON. */
	for (size_t g = 0; g < 3 && sent < 1000; g++)
		for (size_t cut = 0; cut < strlen(good[g]) && sent < 1000; cut++, sent++)
		{
			snprintf(req, sizeof(req), "%.*s", (int)cut, good[g]);
			mead_json_free(request(req, false));
		}
	/* Then random bytes starting with something that cannot begin an object
	 * holding a known command, or a valid object with a garbage byte appended. */
	while (sent < 1000) {
		size_t n = 1 + (size_t)(rand_r(&seed) % 200);
		if (sent % 2) {
			for (size_t i = 0; i < n; i++)
				req[i] = (char)(rand_r(&seed) & 0xff);
			req[0] = "[]\"0tfn x\x01\xff"[rand_r(&seed) % 11];
			req[n] = '\0';
			if (strlen(req) == 0)
				continue;
		} else {
			const char *g = good[rand_r(&seed) % 3];
			snprintf(req, sizeof(req), "%s%c", g, ",}]x0\"{"[rand_r(&seed) % 7]);
		}
		mead_json_free(request(req, false));
		sent++;
	}
	assert_int_equal(sent, 1000);
	assert_int_equal(fake_loop_state.n_cmds, 0);
	assert_int_equal(atomic_load(&daemon_.stop_requested), 0);
	struct mead_control_counters cc;
	mead_control_get_counters(ctl, &cc);
	assert_int_equal(cc.errors, 1000);
	/* Still answers properly afterwards. */
	mead_json_free(request("{\"cmd\":\"ping\"}", true));
}

static void test_control_socket(void **state)
{
	struct mead_control_params p = { .endpoint = "tcp://127.0.0.1:*", .status_json = status_json };
	struct mead_control *c;
	char err[256], reply[512];
	void *ctx = zmq_ctx_new(), *s;
	int timeout = 3000, zero = 0, n;

	assert_int_equal(mead_control_new(&p, &daemon_, true, &c, err, sizeof(err)), 0);
	assert_int_equal(mead_control_start(c), 0);
	s = zmq_socket(ctx, ZMQ_REQ);
	zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof(timeout));
	zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
	assert_int_equal(zmq_connect(s, mead_control_endpoint(c)), 0);

	assert_int_equal(zmq_send(s, "{\"cmd\":\"ping\"}", 14, 0), 14);
	n = zmq_recv(s, reply, sizeof(reply) - 1, 0);
	assert_true(n > 0);
	reply[n] = '\0';
	assert_non_null(strstr(reply, "\"ok\":true"));

	/* Two frames. */
	zmq_send(s, "{\"cmd\":", 7, ZMQ_SNDMORE);
	zmq_send(s, "\"ping\"}", 7, 0);
	n = zmq_recv(s, reply, sizeof(reply) - 1, 0);
	assert_true(n > 0);
	reply[n] = '\0';
	assert_non_null(strstr(reply, "\"ok\":false"));

	/* Larger than any request may be. */
	char *big = malloc(40000);
	memset(big, ' ', 40000);
	memcpy(big, "{\"cmd\":\"ping\"}", 14);
	zmq_send(s, big, 40000, 0);
	free(big);
	n = zmq_recv(s, reply, sizeof(reply) - 1, 0);
	assert_true(n > 0);
	reply[n] = '\0';
	assert_non_null(strstr(reply, "\"ok\":false"));

	/* Still serving. */
	zmq_send(s, "{\"cmd\":\"status\"}", 16, 0);
	n = zmq_recv(s, reply, sizeof(reply) - 1, 0);
	assert_true(n > 0);
	reply[n] = '\0';
	assert_string_equal(reply, "{\"ok\":true,\"state\":\"running\",\"ticks\":42}");

	zmq_close(s);
	zmq_ctx_term(ctx);
	mead_control_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_good),
		cmocka_unit_test(test_json_bad),
		cmocka_unit_test(test_json_writer),
		cmocka_unit_test_setup_teardown(test_control_good, setup, teardown),
		cmocka_unit_test_setup_teardown(test_control_bad, setup, teardown),
		cmocka_unit_test_setup_teardown(test_control_threshold, setup, teardown),
		cmocka_unit_test_setup_teardown(test_control_1000_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_control_socket, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
