/* SPDX-License-Identifier: MIT */
/*
 * Ring to wire: the publisher's three-frame messages checked byte for byte
 * by a plain libzmq subscriber (no pyzmq), seq and sample monotonic per
 * topic, raw opt-in, wait_subscribers, a stalled subscriber costing only
 * its own messages in real-time mode (counted per subscriber), per
 * subscriber topics, nothing dropped in virtual-clock mode, recording
 * counts equal to published counts after a clean stop, the endpoints.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <zmq.h>

#include "daemon/loop.h"
#include "daemon/publisher.h"
#include "daemon/recorder.h"
#include "lib/core/recording.h"
#include "daemon/ring.h"

struct got {
	char topic[16];
	uint8_t hdr[32];
	uint8_t *payload;
	size_t len;
};

struct collector {
	const char *endpoint;
	int rcvhwm;
	int rcvbuf;                   /* kernel receive buffer; 0: the default */
	const char *subscribe;        /* NULL: everything */
	unsigned start_delay_ms;      /* connect, then read nothing this long */
	_Atomic size_t received;      /* messages taken so far */
	_Atomic bool connected;
	_Atomic bool done;
	struct got *msgs;
	size_t n, cap;
	unsigned bad_frames;
	pthread_t thread;
};

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static void *collect(void *arg)
{
	struct collector *c = arg;
	void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_SUB);
	int zero = 0, to = 100, idle = 0;

	zmq_setsockopt(s, ZMQ_RCVHWM, &c->rcvhwm, sizeof(int));
	if (c->rcvbuf)
		zmq_setsockopt(s, ZMQ_RCVBUF, &c->rcvbuf, sizeof(int));
	zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(s, ZMQ_RCVTIMEO, &to, sizeof(to));
	zmq_setsockopt(s, ZMQ_SUBSCRIBE, c->subscribe ? c->subscribe : "", c->subscribe ? strlen(c->subscribe) : 0);
	zmq_connect(s, c->endpoint);
	atomic_store(&c->connected, true);
	if (c->start_delay_ms)
		sleep_ms(c->start_delay_ms);
	for (;;) {
		zmq_msg_t f[4];
		int n = 0, more = 1;
		size_t ml = sizeof(more);
		while (more && n < 4) {
			zmq_msg_init(&f[n]);
			if (zmq_msg_recv(&f[n], s, 0) < 0) {
				zmq_msg_close(&f[n]);
				break;
			}
			n++;
			zmq_getsockopt(s, ZMQ_RCVMORE, &more, &ml);
		}
		if (n == 0) {
			if (atomic_load(&c->done) && ++idle > 5)
				break;
			continue;
		}
		idle = 0;
		if (n != 3 || more || zmq_msg_size(&f[0]) >= 16 || zmq_msg_size(&f[1]) != 32) {
			c->bad_frames++;
		} else {
			if (c->n == c->cap) {
				c->cap = c->cap ? 2 * c->cap : 256;
				c->msgs = realloc(c->msgs, c->cap * sizeof(*c->msgs));
			}
			struct got *g = &c->msgs[c->n++];
			memset(g, 0, sizeof(*g));
			memcpy(g->topic, zmq_msg_data(&f[0]), zmq_msg_size(&f[0]));
			memcpy(g->hdr, zmq_msg_data(&f[1]), 32);
			g->len = zmq_msg_size(&f[2]);
			g->payload = malloc(g->len + 1);
			memcpy(g->payload, zmq_msg_data(&f[2]), g->len);
			atomic_fetch_add(&c->received, 1);
		}
		for (int i = 0; i < n; i++)
			zmq_msg_close(&f[i]);
	}
	zmq_close(s);
	zmq_ctx_term(ctx);
	return NULL;
}

static void collector_start(struct collector *c, const char *endpoint)
{
	c->endpoint = endpoint;
	pthread_create(&c->thread, NULL, collect, c);
	while (!atomic_load(&c->connected))
		sleep_ms(1);
}

static void collector_finish(struct collector *c)
{
	atomic_store(&c->done, true);
	pthread_join(c->thread, NULL);
}

static void collector_free(struct collector *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->msgs[i].payload);
	free(c->msgs);
}

static _Atomic unsigned status_calls;
static int status_json(void *ctx, char *buf, size_t len)
{
	return snprintf(buf, len, "{\"state\":\"running\",\"n\":%u}", atomic_fetch_add(&status_calls, 1));
}

/* What the wire must carry for a header, written out byte by byte. */
static void expect_header(uint8_t out[32], uint16_t kind, uint64_t seq, uint64_t sample, uint32_t count, uint32_t rsize)
{
	memcpy(out, "MEAD", 4);
	out[4] = 1;
	out[5] = 0;
	out[6] = (uint8_t)kind;
	out[7] = (uint8_t)(kind >> 8);
	for (int i = 0; i < 8; i++) {
		out[8 + i] = (uint8_t)(seq >> (8 * i));
		out[16 + i] = (uint8_t)(sample >> (8 * i));
	}
	for (int i = 0; i < 4; i++) {
		out[24 + i] = (uint8_t)(count >> (8 * i));
		out[28 + i] = (uint8_t)(rsize >> (8 * i));
	}
}

struct pushed {
	uint16_t kind;
	uint64_t seq, sample;
	uint32_t count, rsize;
	uint8_t payload[512];
};

/* Pushes a message like the loop does; waits for room. */
static void push(struct mead_ring *ring, const struct pushed *m)
{
	struct mead_msg h = { .kind = m->kind, .count = m->count, .record_size = m->rsize, .seq = m->seq,
			      .sample = m->sample };
	size_t len = sizeof(h) + (size_t)m->count * m->rsize;
	uint8_t *p;
	while (!(p = mead_ring_reserve(ring, len)))
		sleep_ms(1);
	memcpy(p, &h, sizeof(h));
	memcpy(p + sizeof(h), m->payload, len - sizeof(h));
	mead_ring_commit(ring, len);
}

#define N_PUSH 300
static struct pushed pushed[N_PUSH];

static void make_pushed(void)
{
	uint64_t seq[MEAD_KIND_COUNT + 1] = { 0 };
	for (unsigned i = 0; i < N_PUSH; i++) {
		struct pushed *m = &pushed[i];
		memset(m, 0, sizeof(*m));
		m->kind = i % 4 == 3 ? MEAD_KIND_RAW : i % 4 == 2 ? MEAD_KIND_EVENTS : i % 4 == 1 ? MEAD_KIND_STIM : MEAD_KIND_SPIKES;
		m->seq = seq[m->kind]++;
		m->sample = 25ull * i;
		if (m->kind == MEAD_KIND_SPIKES) {
			m->count = i % 9;
			m->rsize = 16;
			for (uint32_t r = 0; r < m->count; r++) {
				struct mead_spike s = { .sample = m->sample + r, .electrode = (uint16_t)(r * 7 % 60),
							.amplitude_uv = -12.5f * (float)r };
				memcpy(m->payload + 16 * r, &s, 16);
			}
		} else if (m->kind == MEAD_KIND_STIM) {
			m->count = 1;
			m->rsize = 24;
			struct mead_stim_pulse s = { .sample = m->sample, .electrode = 3, .amplitude_ua = -1.0f,
						     .phase_us = 200, .interphase_us = 50 };
			memcpy(m->payload, &s, 24);
		} else if (m->kind == MEAD_KIND_EVENTS) {
			m->count = 2;
			m->rsize = 16;
			struct mead_event e[2] = { { m->sample, MEAD_EVENT_TRIAL_START, (int32_t)i },
						   { m->sample + 1, MEAD_EVENT_LABEL, -7 } };
			memcpy(m->payload, e, 32);
		} else {
			m->count = 2;
			m->rsize = 8;     /* 4 channels */
			for (unsigned b = 0; b < 16; b++)
				m->payload[b] = (uint8_t)(i + b);
		}
	}
}

static struct mead_publisher *new_pub(struct mead_ring *ring, struct mead_publisher_params *pp, struct mead_recorder *rec)
{
	struct mead_publisher *p = NULL;
	char err[256];
	pp->endpoint = "tcp://127.0.0.1:*";
	if (mead_publisher_new(pp, ring, rec, status_json, NULL, &p, err, sizeof(err)) < 0)
		fail_msg("publisher: %s", err);
	return p;
}

static void test_framing_byte_for_byte(void **state)
{
	struct mead_ring *ring;
	struct mead_publisher_params pp = { .raw = true, .wait_subscribers = 1, .status_interval_ms = 50 };
	struct collector c = { 0 };

	make_pushed();
	assert_int_equal(mead_ring_new(1 << 20, &ring), 0);
	struct mead_publisher *p = new_pub(ring, &pp, NULL);
	collector_start(&c, mead_publisher_endpoint(p));
	assert_int_equal(mead_publisher_start(p), 0);
	assert_int_equal(mead_publisher_wait_subscribers(p, 5000), 0);
	for (unsigned i = 0; i < N_PUSH; i++) {
		push(ring, &pushed[i]);
		if (i % 50 == 0)
			sleep_ms(30);   /* let some status messages interleave */
	}
	mead_publisher_stop(p);
	collector_finish(&c);

	struct mead_publisher_counters pc;
	mead_publisher_get_counters(p, &pc);
	assert_int_equal(c.bad_frames, 0);
	unsigned j = 0, status_seen = 0;
	uint64_t last_sample[MEAD_KIND_COUNT + 1] = { 0 };
	for (size_t i = 0; i < c.n; i++) {
		struct got *g = &c.msgs[i];
		uint8_t want[32];
		if (strcmp(g->topic, "status") == 0) {
			/* count 1, record_size = JSON length, seq counts status messages */
			struct mead_wire_header h = { 0 };
			assert_int_equal(mead_wire_header_decode(g->hdr, 32, &h), 0);
			expect_header(want, MEAD_KIND_STATUS, status_seen, h.sample, 1, (uint32_t)g->len);
			assert_memory_equal(g->hdr, want, 32);
			g->payload[g->len] = '\0';
			assert_non_null(strstr((char *)g->payload, "\"state\":\"running\""));
			status_seen++;
			continue;
		}
		assert_true(j < N_PUSH);
		struct pushed *m = &pushed[j++];
		assert_string_equal(g->topic, mead_wire_topic((enum mead_wire_kind)m->kind));
		expect_header(want, m->kind, m->seq, m->sample, m->count, m->rsize);
		assert_memory_equal(g->hdr, want, 32);
		assert_int_equal(g->len, (size_t)m->count * m->rsize);
		if (g->len)
			assert_memory_equal(g->payload, m->payload, g->len);
		assert_true(m->sample >= last_sample[m->kind]);
		last_sample[m->kind] = m->sample;
	}
	assert_int_equal(j, N_PUSH);
	assert_true(status_seen >= 2);   /* periodic + the last word at stop */
	assert_int_equal(pc.published[MEAD_KIND_SPIKES], N_PUSH / 4);
	assert_int_equal(pc.published[MEAD_KIND_RAW], N_PUSH / 4);
	assert_int_equal(pc.published[MEAD_KIND_STATUS], status_seen);
	assert_int_equal(pc.hwm_dropped[MEAD_KIND_SPIKES], 0);
	assert_int_equal(pc.subscriptions, 1);
	collector_free(&c);
	mead_publisher_free(p);
	mead_ring_free(ring);
}

static void test_raw_is_opt_in_and_wait_subscribers(void **state)
{
	struct mead_ring *ring;
	struct mead_publisher_params pp = { .raw = false, .wait_subscribers = 2 };
	struct collector a = { 0 }, b = { 0 };

	make_pushed();
	assert_int_equal(mead_ring_new(1 << 20, &ring), 0);
	struct mead_publisher *p = new_pub(ring, &pp, NULL);
	assert_int_equal(mead_publisher_start(p), 0);
	collector_start(&a, mead_publisher_endpoint(p));
	for (unsigned i = 0; i < 40; i++)
		push(ring, &pushed[i]);
	/* One subscriber of two: nothing goes out yet. */
	assert_int_equal(mead_publisher_wait_subscribers(p, 300), -ETIMEDOUT);
	struct mead_publisher_counters pc;
	mead_publisher_get_counters(p, &pc);
	assert_int_equal(pc.published[MEAD_KIND_SPIKES], 0);
	collector_start(&b, mead_publisher_endpoint(p));
	assert_int_equal(mead_publisher_wait_subscribers(p, 5000), 0);
	mead_publisher_get_counters(p, &pc);
	assert_int_equal(pc.subscriptions, 2);
	/* A subscriber that goes away no longer counts. */
	collector_finish(&a);
	for (int i = 0; i < 300 && pc.subscriptions != 1; i++) {
		sleep_ms(10);
		mead_publisher_get_counters(p, &pc);
	}
	assert_int_equal(pc.subscriptions, 1);
	assert_int_equal(pc.unsubscribe_events, 1);
	mead_publisher_stop(p);
	collector_finish(&b);
	mead_publisher_get_counters(p, &pc);
	assert_int_equal(pc.discarded[MEAD_KIND_RAW], 10);
	assert_int_equal(pc.published[MEAD_KIND_RAW], 0);
	/* Both saw the very first message. */
	struct collector *cs[2] = { &a, &b };
	for (int k = 0; k < 2; k++) {
		unsigned spikes = 0;
		for (size_t i = 0; i < cs[k]->n; i++) {
			assert_string_not_equal(cs[k]->msgs[i].topic, "raw");
			if (strcmp(cs[k]->msgs[i].topic, "spikes") == 0) {
				struct mead_wire_header h;
				assert_int_equal(mead_wire_header_decode(cs[k]->msgs[i].hdr, 32, &h), 0);
				assert_int_equal(h.seq, spikes);
				spikes++;
			}
		}
		assert_int_equal(spikes, 10);
		collector_free(cs[k]);
	}
	mead_publisher_free(p);
	mead_ring_free(ring);
}

/* Pushes n spike messages of `records` records each, seq first..first+n-1. */
static void push_spikes(struct mead_ring *ring, unsigned first, unsigned n, uint32_t records)
{
	static uint8_t buf[sizeof(struct mead_msg) + 256 * 16];
	assert_true(records <= 256);
	for (unsigned i = first; i < first + n; i++) {
		struct mead_msg h = { .kind = MEAD_KIND_SPIKES, .count = records, .record_size = 16, .seq = i,
				      .sample = 100ull * i };
		size_t len = sizeof(h) + (size_t)records * 16;
		memcpy(buf, &h, sizeof(h));
		for (uint32_t r = 0; r < records; r++) {
			struct mead_spike sp = { .sample = h.sample + r, .electrode = (uint16_t)(r % 60) };
			memcpy(buf + sizeof(h) + 16 * r, &sp, 16);
		}
		while (mead_ring_push(ring, buf, len) == -ENOBUFS)
			sleep_ms(1);
	}
}

static void push_big(struct mead_ring *ring, unsigned n)
{
	push_spikes(ring, 0, n, 32);
}

/* Gaps count messages missing before the last one received. */
static void check_seq(struct collector *c, uint64_t *ret_gaps, uint64_t *ret_n, uint64_t *ret_last)
{
	uint64_t gaps = 0, n = 0, last = 0;
	bool have = false;
	for (size_t i = 0; i < c->n; i++) {
		struct mead_wire_header h = { 0 };
		if (strcmp(c->msgs[i].topic, "spikes") != 0)
			continue;
		assert_int_equal(mead_wire_header_decode(c->msgs[i].hdr, 32, &h), 0);
		if (have) {
			assert_true(h.seq > last);
			gaps += h.seq - last - 1;
		} else {
			gaps += h.seq;
		}
		have = true;
		last = h.seq;
		n++;
	}
	*ret_gaps = gaps;
	*ret_n = n;
	*ret_last = last;
}

/* MEAD_TEST_TIME_SCALE (the valgrind setup sets it): everything runs that
 * many times slower, so the stalled-subscriber test sends less, slower. */
static unsigned time_scale(void)
{
	const char *s = getenv("MEAD_TEST_TIME_SCALE");
	int v = s ? atoi(s) : 1;
	return v > 1 ? (unsigned)v : 1;
}

static void wait_ready_subscribers(struct mead_publisher *p, uint64_t n)
{
	struct mead_publisher_counters pc;
	for (int i = 0; i < 500; i++) {
		mead_publisher_get_counters(p, &pc);
		if (pc.subscribers >= n && pc.subscriptions >= n)
			return;
		sleep_ms(10);
	}
	fail_msg("%llu subscribers never came", (unsigned long long)n);
}

/* The case: one subscriber connects and stops reading, another
 * reads.  The stalled one's full queue refuses messages for it alone: the
 * healthy one sees every seq number, the stalled one sees gaps exactly as
 * many as its own counter says, and the publisher never waits. */
static void test_stalled_subscriber_costs_only_itself(void **state)
{
	struct mead_ring *ring;
	/* A queue of 10000 messages is 1 to 2 s of slack for the healthy one on
	 * a busy machine; the stalled one's fills in 2 s. */
	unsigned k = time_scale(), n = 20000 / k < 4000 ? 4000 : 20000 / k;
	struct mead_publisher_params pp = { .sndhwm = (int)(10000 / k), .wait_subscribers = 2 };
	struct collector stalled = { .rcvhwm = 10, .rcvbuf = 4096, .start_delay_ms = k > 1 ? 40000 : 6000 },
			 healthy = { 0 };

	assert_int_equal(mead_ring_new(8 << 20, &ring), 0);
	struct mead_publisher *p = new_pub(ring, &pp, NULL);
	assert_int_equal(mead_publisher_start(p), 0);
	collector_start(&stalled, mead_publisher_endpoint(p));
	wait_ready_subscribers(p, 1);   /* the stalled one is client 1 */
	collector_start(&healthy, mead_publisher_endpoint(p));
	assert_int_equal(mead_publisher_wait_subscribers(p, 5000), 0);
	for (unsigned i = 0; i < n; i += 100) {
		push_spikes(ring, i, 100, 256);   /* 4 KiB each, 5000 a second */
		sleep_ms(20 * k);
	}
	/* The publisher never waits for the stalled subscriber. */
	uint64_t t0 = (uint64_t)time(NULL);
	while (!mead_ring_empty(ring))
		sleep_ms(1);
	assert_true((uint64_t)time(NULL) - t0 < 2 * k);

	struct mead_publisher_client cl[4];
	assert_int_equal(mead_publisher_clients(p, cl, 4), 2);
	assert_true(cl[0].id < cl[1].id);
	const struct mead_publisher_client *st = &cl[0], *ok = &cl[1];
	assert_true(st->ready && ok->ready);
	assert_int_equal(st->topics, ok->topics);
	assert_true(st->dropped[MEAD_KIND_SPIKES] > 0);
	assert_true(st->last_drop_s >= 0);
	assert_int_equal(st->sent[MEAD_KIND_SPIKES] + st->dropped[MEAD_KIND_SPIKES], n);
	assert_int_equal(ok->dropped[MEAD_KIND_SPIKES], 0);
	assert_int_equal(ok->sent[MEAD_KIND_SPIKES], n);
	assert_true(ok->last_drop_s < 0);
	assert_true(strncmp(st->peer, "127.0.0.1:", 10) == 0 && strcmp(st->peer, ok->peer) != 0);
	struct mead_publisher_counters pc;
	mead_publisher_get_counters(p, &pc);
	assert_int_equal(pc.published[MEAD_KIND_SPIKES], n);
	assert_int_equal(pc.hwm_dropped[MEAD_KIND_SPIKES], st->dropped[MEAD_KIND_SPIKES]);

	/* Let the stalled one wake up and take what its queue kept, then stop. */
	uint64_t want = st->sent[MEAD_KIND_SPIKES];
	for (unsigned i = 0; i < 1000 * k + 2000 && atomic_load(&stalled.received) < want; i++)
		sleep_ms(10);
	mead_publisher_stop(p);
	collector_finish(&healthy);
	collector_finish(&stalled);

	uint64_t gaps, got, last;
	check_seq(&healthy, &gaps, &got, &last);
	assert_int_equal(gaps, 0);
	assert_int_equal(got, n);
	assert_int_equal(last, n - 1);
	check_seq(&stalled, &gaps, &got, &last);
	/* what the stalled one misses is exactly what its counter says */
	assert_int_equal(got, want);
	assert_int_equal(gaps + (n - 1 - last), st->dropped[MEAD_KIND_SPIKES]);
	print_message("stalled beside healthy: %u messages; healthy got %u, stalled got %llu and lost %llu\n", n, n,
		      (unsigned long long)got, (unsigned long long)st->dropped[MEAD_KIND_SPIKES]);
	collector_free(&healthy);
	collector_free(&stalled);
	mead_publisher_free(p);
	mead_ring_free(ring);
}

/* Each subscriber's queue carries only the topics it subscribed to, and
 * its counters say so. */
static void test_per_subscriber_topics(void **state)
{
	struct mead_ring *ring;
	struct mead_publisher_params pp = { .raw = true, .wait_subscribers = 2 };
	struct collector all = { 0 }, stim = { .subscribe = "stim" };

	make_pushed();
	assert_int_equal(mead_ring_new(1 << 20, &ring), 0);
	struct mead_publisher *p = new_pub(ring, &pp, NULL);
	assert_int_equal(mead_publisher_start(p), 0);
	collector_start(&stim, mead_publisher_endpoint(p));
	wait_ready_subscribers(p, 1);
	collector_start(&all, mead_publisher_endpoint(p));
	assert_int_equal(mead_publisher_wait_subscribers(p, 5000), 0);
	for (unsigned i = 0; i < N_PUSH; i++)
		push(ring, &pushed[i]);
	while (!mead_ring_empty(ring))
		sleep_ms(1);
	struct mead_publisher_client cl[2];
	assert_int_equal(mead_publisher_clients(p, cl, 2), 2);
	assert_int_equal(cl[0].topics, 1u << MEAD_KIND_STIM);
	assert_int_equal(cl[0].subscriptions, 1);
	assert_int_equal(cl[0].sent[MEAD_KIND_STIM], N_PUSH / 4);
	assert_int_equal(cl[0].sent[MEAD_KIND_SPIKES] + cl[0].sent[MEAD_KIND_STATUS], 0);
	/* "" matches every topic, waveforms (wire 1.2) included */
	assert_int_equal(cl[1].topics, (1u << (MEAD_KIND_COUNT + 1)) - 2u);
	assert_int_equal(cl[1].sent[MEAD_KIND_RAW], N_PUSH / 4);
	mead_publisher_stop(p);
	collector_finish(&all);
	collector_finish(&stim);
	for (size_t i = 0; i < stim.n; i++)
		assert_string_equal(stim.msgs[i].topic, "stim");
	assert_int_equal(stim.n, N_PUSH / 4);
	collector_free(&all);
	collector_free(&stim);
	mead_publisher_free(p);
	mead_ring_free(ring);
}

/* Subscribers reach the streams over tcp:// and ipc://; any other endpoint
 * is refused with a message that names it. */
static void test_endpoints(void **state)
{
	struct mead_ring *ring;
	struct mead_publisher *p = NULL;
	char err[512], dir[] = "/tmp/mead-test-ep-XXXXXX", ep[300];
	struct mead_publisher_params pp = { .wait_subscribers = 1 };
	static const struct { const char *ep, *says; } bad[] = {
		{ "inproc://streams", "tcp:// or ipc://" },
		{ "tcp://127.0.0.1:70000", "port" },
		{ "tcp://127.0.0.1", "HOST:PORT" },
		{ "tcp://no-such-interface-or-host.invalid:5555", "no-such-interface-or-host.invalid" },
		{ "ipc://", "path" },
	};

	assert_int_equal(mead_ring_new(1 << 16, &ring), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		pp.endpoint = bad[i].ep;
		err[0] = '\0';
		assert_true(mead_publisher_new(&pp, ring, NULL, status_json, NULL, &p, err, sizeof(err)) < 0);
		if (!strstr(err, bad[i].says))
			fail_msg("%s: \"%s\" does not say %s", bad[i].ep, err, bad[i].says);
	}
	assert_non_null(mkdtemp(dir));
	snprintf(ep, sizeof(ep), "ipc://%s/pub", dir);
	pp.endpoint = ep;
	assert_int_equal(mead_publisher_new(&pp, ring, NULL, status_json, NULL, &p, err, sizeof(err)), 0);
	assert_string_equal(mead_publisher_endpoint(p), ep);
	struct collector c = { 0 };
	assert_int_equal(mead_publisher_start(p), 0);
	collector_start(&c, ep);
	assert_int_equal(mead_publisher_wait_subscribers(p, 5000), 0);
	struct mead_publisher_client cl;
	assert_int_equal(mead_publisher_clients(p, &cl, 1), 1);
	assert_true(strncmp(cl.peer, "pid ", 4) == 0);
	mead_publisher_stop(p);
	collector_finish(&c);
	assert_true(c.n >= 1);   /* the first status */
	collector_free(&c);
	mead_publisher_free(p);
	assert_int_equal(rmdir(dir), 0);   /* the socket file went with the publisher */
	pp.endpoint = "tcp://localhost:*";
	assert_int_equal(mead_publisher_new(&pp, ring, NULL, status_json, NULL, &p, err, sizeof(err)), 0);
	assert_true(strncmp(mead_publisher_endpoint(p), "tcp://127.0.0.1:", 16) == 0);
	mead_publisher_free(p);
	mead_ring_free(ring);
}

static void test_virtual_clock_never_drops(void **state)
{
	char dir[] = "/tmp/mead-test-pub-XXXXXX", path[300], err[256];
	struct mead_ring *ring;
	struct mead_publisher_params pp = { .sndhwm = 20, .wait_subscribers = 2, .virtual_clock = true,
					    .status_interval_ms = 20 };
	/* a slow subscriber and a quick one: the slow one sets the pace, both get everything */
	struct collector c = { .rcvhwm = 20, .start_delay_ms = 800 }, quick = { 0 };
	struct mead_recorder *rec;
	unsigned n = 5000;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/v.meadrec", dir);
	struct mead_recorder_params rp = { .path = path, .meta_json = "{}", .ring_bytes = 64 << 10 };
	assert_int_equal(mead_recorder_new(&rp, &rec, err, sizeof(err)), 0);
	assert_int_equal(mead_recorder_start(rec), 0);
	/* A small ring: the producer feels the back-pressure. */
	assert_int_equal(mead_ring_new(64 << 10, &ring), 0);
	struct mead_publisher *p = new_pub(ring, &pp, rec);
	collector_start(&c, mead_publisher_endpoint(p));
	collector_start(&quick, mead_publisher_endpoint(p));
	assert_int_equal(mead_publisher_start(p), 0);
	push_big(ring, n);
	mead_publisher_stop(p);
	mead_recorder_stop(rec);
	collector_finish(&c);
	collector_finish(&quick);

	struct mead_publisher_counters pc;
	struct mead_recorder_counters rc;
	mead_publisher_get_counters(p, &pc);
	mead_recorder_get_counters(rec, &rc);
	uint64_t gaps, got, last;
	check_seq(&c, &gaps, &got, &last);
	assert_int_equal(gaps, 0);
	assert_int_equal(got, n);
	assert_int_equal(last, n - 1);
	check_seq(&quick, &gaps, &got, &last);
	assert_int_equal(gaps, 0);
	assert_int_equal(got, n);
	assert_int_equal(pc.hwm_dropped[MEAD_KIND_SPIKES], 0);
	/* Clean stop: recorded counts equal published counts, per topic. */
	for (int k = 1; k <= MEAD_KIND_COUNT; k++) {
		assert_int_equal(rc.recorded[k], pc.published[k]);
		assert_int_equal(rc.lost[k] + rc.not_recorded[k], 0);
	}
	assert_true(pc.published[MEAD_KIND_STATUS] >= 1);

	struct mead_rec_reader *r;
	struct mead_rec_record rr;
	uint64_t per[MEAD_KIND_COUNT + 1] = { 0 };
	int x;
	assert_int_equal(mead_rec_open(path, &r, err, sizeof(err)), 0);
	while ((x = mead_rec_next(r, &rr)) == 1)
		per[rr.header.kind]++;
	assert_int_equal(x, 0);
	for (int k = 1; k <= MEAD_KIND_COUNT; k++)
		assert_int_equal(per[k], pc.published[k]);
	mead_rec_close(r);
	unlink(path);
	rmdir(dir);
	collector_free(&c);
	collector_free(&quick);
	mead_publisher_free(p);
	mead_recorder_free(rec);
	mead_ring_free(ring);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_framing_byte_for_byte),
		cmocka_unit_test(test_raw_is_opt_in_and_wait_subscribers),
		cmocka_unit_test(test_stalled_subscriber_costs_only_itself),
		cmocka_unit_test(test_per_subscriber_topics),
		cmocka_unit_test(test_endpoints),
		cmocka_unit_test(test_virtual_clock_never_drops),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
