/* SPDX-License-Identifier: MIT */
/* The status JSON: every documented field present, parseable, and robust to a bad driver. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <time.h>
#include <zmq.h>

#include "daemon/daemon.h"
#include "lib/core/json.h"
#include "daemon/publisher.h"
#include "daemon/recorder.h"
#include "daemon/ring.h"
#include "daemon/status.h"
#include "tests/streams/fake_loop.h"

static struct mead_electrode electrodes[16];
static struct mead_layout_view layout = { 4, 4, 16, 200.0f, electrodes };
static int bad_describe;

static int describe(void *state, char *buf, size_t len)
{
	return snprintf(buf, len, bad_describe ? "{\"broken\": " : "{\"units\":1200,\"name\":\"twin \\\"a\\\"\"}");
}

static const struct mead_driver_ops ops = { .name = "twin", .describe = describe };

static const struct mead_json_value *at(const struct mead_json *d, const char *a, const char *b, const char *c)
{
	const struct mead_json_value *v = mead_json_get(d, mead_json_root(d), a);
	if (b)
		v = mead_json_get(d, v, b);
	if (c)
		v = mead_json_get(d, v, c);
	if (!v)
		fail_msg("status has no %s.%s.%s", a, b ? b : "", c ? c : "");
	return v;
}

static void test_status_fields(void **state)
{
	struct mead_daemon d;
	char *buf = malloc(1 << 16), err[256], dir[] = "/tmp/mead-test-status-XXXXXX", path[300];
	static const struct mead_json_limits lim = { 1 << 16, 16, 1 << 14, 1 << 14 };
	struct mead_json *doc;
	struct mead_ring *ring;
	struct mead_publisher *pub;
	struct mead_recorder *rec;
	int n;

	fake_loop_reset();
	for (int i = 0; i < 16; i++)
		snprintf(electrodes[i].label, sizeof(electrodes[i].label), "E%d", i);
	electrodes[5].excluded = true;
	atomic_store(&fake_loop_state.stats.state, MEAD_LOOP_RUNNING);
	atomic_store(&fake_loop_state.stats.ticks, 1234);
	atomic_store(&fake_loop_state.stats.overruns, 2);
	atomic_store(&fake_loop_state.stats.produced[MEAD_KIND_SPIKES], 50);
	atomic_store(&fake_loop_state.stats.dropped[MEAD_KIND_SPIKES], 3);
	atomic_store(&fake_loop_state.stats.lat_hist[7], 90);
	atomic_store(&fake_loop_state.stats.lat_hist[40], 10);
	atomic_store(&fake_loop_state.stats.lat_max_ns, 40500);
	atomic_store(&fake_loop_state.stats.protocol_active, 1);
	/* the protocol's progress as the loop publishes it: 40 of 120 trials,
	 * two passes (best 0.75), 10 test trials with 9 right */
	struct mead_loop_progress_cells *pc = &fake_loop_state.stats.protocol_progress;
	union { double d; uint64_t u; } last = { .d = 0.5 }, best = { .d = 0.75 };
	atomic_store(&pc->trial, 40);
	atomic_store(&pc->n_trials, 120);
	atomic_store(&pc->last_validation_bits, last.u);
	atomic_store(&pc->best_validation_bits, best.u);
	atomic_store(&pc->evaluations, 2);
	atomic_store(&pc->screened_out, 1);
	atomic_store(&pc->test_trials, 10);
	atomic_store(&pc->test_correct, 9);
	atomic_store(&pc->seq, 2);

	memset(&d, 0, sizeof(d));
	d.layout = &layout;
	d.loop = fake_loop_get();
	d.driver.ops = &ops;
	d.driver.caps.sample_rate_hz = 25000;
	d.driver.caps.uv_per_count = 0.195f;
	d.started_realtime_ns = 1;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/s.meadrec", dir);
	n = mead_status_recording_meta(&d, buf, 1 << 16);
	assert_true(n > 0);
	struct mead_recorder_params rp = { .path = path, .meta_json = buf };
	assert_int_equal(mead_recorder_new(&rp, &rec, err, sizeof(err)), 0);
	assert_int_equal(mead_ring_new(4096, &ring), 0);
	struct mead_publisher_params pp = { .endpoint = "tcp://127.0.0.1:*" };
	assert_int_equal(mead_publisher_new(&pp, ring, rec, mead_status_json_cb, &d, &pub, err, sizeof(err)), 0);
	d.recorder = rec;
	d.publisher = pub;

	n = mead_status_json(&d, buf, 1 << 16);
	assert_true(n > 0);
	if (mead_json_parse(buf, (size_t)n, &lim, &doc, err, sizeof(err)) < 0)
		fail_msg("%s: %s", err, buf);
	assert_string_equal(at(doc, "state", NULL, NULL)->s, "running");
	assert_string_equal(at(doc, "driver_name", NULL, NULL)->s, "twin");
	assert_int_equal(at(doc, "driver", "units", NULL)->i, 1200);
	assert_int_equal(at(doc, "sample_rate_hz", NULL, NULL)->i, 25000);
	assert_true(at(doc, "uv_per_count", NULL, NULL)->num > 0.19);
	assert_int_equal(at(doc, "layout", "count", NULL)->i, 16);
	assert_int_equal(at(doc, "layout", "labels", NULL)->n, 16);
	assert_int_equal(at(doc, "layout", "excluded", NULL)->n, 1);
	assert_int_equal(mead_json_at(doc, at(doc, "layout", "excluded", NULL), 0)->i, 5);
	assert_int_equal(at(doc, "loop", "ticks", NULL)->i, 1234);
	assert_int_equal(at(doc, "loop", "overruns", NULL)->i, 2);
	assert_true(at(doc, "loop", "latency_us", "p50")->num == 7.0);
	assert_true(at(doc, "loop", "latency_us", "p99")->num == 40.0);
	assert_true(at(doc, "loop", "latency_us", "p999")->num == 40.0);
	assert_true(at(doc, "loop", "latency_us", "max")->num == 40.5);
	assert_int_equal(at(doc, "protocol", "active", NULL)->i, 1);
	assert_int_equal(at(doc, "protocol", "trial", NULL)->i, 40);
	assert_int_equal(at(doc, "protocol", "trials", NULL)->i, 120);
	assert_int_equal(at(doc, "protocol", "validation", "evaluations")->i, 2);
	assert_int_equal(at(doc, "protocol", "validation", "screened_out")->i, 1);
	assert_true(at(doc, "protocol", "validation", "last")->num == 0.5);
	assert_true(at(doc, "protocol", "validation", "best")->num == 0.75);
	assert_int_equal(at(doc, "protocol", "test", "trials")->i, 10);
	assert_int_equal(at(doc, "protocol", "test", "correct")->i, 9);
	assert_true(at(doc, "protocol", "test", "accuracy")->num == 0.9);
	assert_int_equal(at(doc, "streams", "produced", "spikes")->i, 50);
	assert_int_equal(at(doc, "streams", "ring_dropped", "spikes")->i, 3);
	assert_int_equal(at(doc, "streams", "published", "spikes")->i, 0);
	assert_int_equal(at(doc, "streams", "hwm_dropped", "raw")->i, 0);
	assert_int_equal(at(doc, "streams", "subscriptions", NULL)->i, 0);
	assert_string_equal(at(doc, "recording", "state", NULL)->s, "ready");
	assert_int_equal(at(doc, "recording", "recorded", "status")->i, 0);
	assert_string_equal(at(doc, "recording", "path", NULL)->s, path);
	mead_json_free(doc);

	/* A driver with a broken describe() cannot break status. */
	bad_describe = 1;
	n = mead_status_json(&d, buf, 1 << 16);
	assert_int_equal(mead_json_parse(buf, (size_t)n, &lim, &doc, err, sizeof(err)), 0);
	assert_int_equal(at(doc, "driver", NULL, NULL)->type, MEAD_JSON_NULL);
	mead_json_free(doc);
	bad_describe = 0;

	/* Too small a buffer is an error, not a truncated object. */
	assert_int_equal(mead_status_json(&d, buf, 100), -ENOSPC);

	mead_publisher_free(pub);
	mead_recorder_stop(rec);
	mead_recorder_free(rec);
	mead_ring_free(ring);
	unlink(path);
	rmdir(dir);
	free(buf);
}

/* streams.clients: one entry per subscriber, with its own counters. */
static void test_status_lists_subscribers(void **state)
{
	struct mead_daemon d;
	char *buf = malloc(1 << 16), err[256];
	static const struct mead_json_limits lim = { 1 << 16, 16, 1 << 14, 1 << 14 };
	struct mead_json *doc = NULL;
	struct mead_ring *ring;
	struct mead_publisher *pub;
	int n, zero = 0;

	fake_loop_reset();
	memset(&d, 0, sizeof(d));
	d.layout = &layout;
	d.loop = fake_loop_get();
	d.driver.ops = &ops;
	assert_int_equal(mead_ring_new(4096, &ring), 0);
	struct mead_publisher_params pp = { .endpoint = "tcp://127.0.0.1:*", .wait_subscribers = 1 };
	assert_int_equal(mead_publisher_new(&pp, ring, NULL, mead_status_json_cb, &d, &pub, err, sizeof(err)), 0);
	d.publisher = pub;
	void *ctx = zmq_ctx_new(), *sub = zmq_socket(ctx, ZMQ_SUB);
	zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "spikes", 6);
	zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "status", 6);
	assert_int_equal(zmq_connect(sub, mead_publisher_endpoint(pub)), 0);
	assert_int_equal(mead_publisher_start(pub), 0);
	assert_int_equal(mead_publisher_wait_subscribers(pub, 5000), 0);
	/* both subscriptions in */
	for (int i = 0; i < 500; i++) {
		struct mead_publisher_counters c;
		mead_publisher_get_counters(pub, &c);
		if (c.subscriptions == 2)
			break;
		struct timespec ts = { 0, 10000000 };
		nanosleep(&ts, NULL);
	}
	n = mead_status_json(&d, buf, 1 << 16);
	assert_true(n > 0);
	if (mead_json_parse(buf, (size_t)n, &lim, &doc, err, sizeof(err)) < 0)
		fail_msg("%s: %s", err, buf);
	const struct mead_json_value *cl = at(doc, "streams", "clients", NULL);
	assert_int_equal(cl->n, 1);
	const struct mead_json_value *c = mead_json_at(doc, cl, 0);
	assert_int_equal(mead_json_get(doc, c, "id")->i, 1);
	assert_true(strncmp(mead_json_get(doc, c, "peer")->s, "127.0.0.1:", 10) == 0);
	assert_true(mead_json_get(doc, c, "ready")->b);
	assert_int_equal(mead_json_get(doc, c, "subscriptions")->i, 2);
	const struct mead_json_value *t = mead_json_get(doc, c, "topics");
	assert_int_equal(t->n, 2);
	assert_string_equal(mead_json_at(doc, t, 0)->s, "spikes");
	assert_string_equal(mead_json_at(doc, t, 1)->s, "status");
	assert_int_equal(mead_json_get(doc, mead_json_get(doc, c, "dropped"), "spikes")->i, 0);
	assert_true(mead_json_get(doc, mead_json_get(doc, c, "sent"), "status")->i >= 0);
	assert_false(mead_json_get(doc, c, "losing")->b);
	assert_int_equal(mead_json_get(doc, c, "last_drop_s")->type, MEAD_JSON_NULL);
	assert_int_equal(at(doc, "streams", "clients_accepted", NULL)->i, 1);
	mead_json_free(doc);
	zmq_close(sub);
	zmq_ctx_term(ctx);
	mead_publisher_free(pub);
	mead_ring_free(ring);
	free(buf);
}

/* The reader takes no copy while the loop is writing (odd count), and
 * says there is nothing before a protocol has run (count 0). */
static void test_progress_reader(void **state)
{
	(void)state;
	static struct mead_loop_stats st;
	struct mead_loop_progress p = { .trial = 77 };
	atomic_store(&st.protocol_progress.trial, 5);
	assert_true(mead_loop_protocol_progress(&st, &p));
	assert_false(p.any);
	atomic_store(&st.protocol_progress.seq, 3);
	p.trial = 77;
	assert_false(mead_loop_protocol_progress(&st, &p));
	assert_int_equal(p.trial, 77);
	atomic_store(&st.protocol_progress.seq, 4);
	assert_true(mead_loop_protocol_progress(&st, &p));
	assert_true(p.any);
	assert_int_equal(p.trial, 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_fields),
		cmocka_unit_test(test_status_lists_subscribers),
		cmocka_unit_test(test_progress_reader),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
