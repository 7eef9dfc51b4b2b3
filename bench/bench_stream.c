/* SPDX-License-Identifier: MIT */
/*
 * mead-bench stream: pushes synthetic spike and raw messages through an
 * output ring and the publisher to one subscriber in this process (TCP on
 * loopback), and the same message sizes through a bare libzmq PUB/SUB pair,
 * in the same run.  Prints what the subscriber received per second and
 * every loss (seq gaps, ring full, HWM).
 *
 *   max:   lossless (virtual-clock) publisher, producer as fast as it goes
 *   paced: real-time publisher, one message per 1 ms tick at the rig's rate
 *          (60 ch x 25 kHz and 1024 ch x 20 kHz raw): must show zero loss
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "daemon/loop.h"
#include "daemon/publisher.h"
#include "daemon/ring.h"
#include "mead/wire.h"
#include "bench/bench.h"
#include "lib/core/time.h"

struct sub_result {
	uint64_t messages, records, gaps, bad;
	uint64_t t_first_ns, t_last_ns;
};

struct sub_args {
	const char *endpoint;
	const char *topic;
	_Atomic bool *done;
	_Atomic bool ready;
	struct sub_result res;
};

static void *sub_thread(void *arg)
{
	struct sub_args *a = arg;
	void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_SUB);
	int zero = 0, timeout = 200;
	bool have_seq = false;
	uint64_t last_seq = 0, idle_since = 0;

	zmq_setsockopt(s, ZMQ_RCVHWM, &zero, sizeof(zero));
	zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof(timeout));
	zmq_setsockopt(s, ZMQ_SUBSCRIBE, a->topic, strlen(a->topic));
	zmq_connect(s, a->endpoint);
	atomic_store(&a->ready, true);
	for (;;) {
		zmq_msg_t f[3];
		int n = 0, more = 1;
		size_t ml = sizeof(more);
		for (int i = 0; i < 3; i++)
			zmq_msg_init(&f[i]);
		while (more && n < 3) {
			if (zmq_msg_recv(&f[n], s, 0) < 0)
				break;
			n++;
			zmq_getsockopt(s, ZMQ_RCVMORE, &more, &ml);
		}
		if (n == 0) {
			uint64_t t = mead_now_ns();
			if (atomic_load(a->done)) {
				if (!idle_since)
					idle_since = t;
				else if (t - idle_since > 300000000ull)
					break;
			}
			continue;
		}
		idle_since = 0;
		struct mead_wire_header h;
		if (n != 3 || more || mead_wire_header_decode(zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), &h) < 0 ||
		    (uint64_t)h.count * h.record_size != zmq_msg_size(&f[2])) {
			a->res.bad++;
		} else {
			if (have_seq && h.seq > last_seq + 1)
				a->res.gaps += h.seq - last_seq - 1;
			have_seq = true;
			last_seq = h.seq;
			a->res.messages++;
			a->res.records += h.count;
			uint64_t t = mead_now_ns();
			if (!a->res.t_first_ns)
				a->res.t_first_ns = t;
			a->res.t_last_ns = t;
		}
		for (int i = 0; i < 3; i++)
			zmq_msg_close(&f[i]);
	}
	zmq_close(s);
	zmq_ctx_term(ctx);
	return NULL;
}

struct run {
	unsigned kind;
	uint32_t per_msg, record_size;
	double seconds;
	uint32_t paced_hz;          /* 0: as fast as possible */
	bool lossless;
};

struct run_result {
	double records_per_s;        /* received by the subscriber */
	double wall_s;
	uint64_t sent, received, ring_full, hwm_dropped, gaps, bad;
};

static int run_mead(const struct run *r, struct run_result *out)
{
	struct mead_ring *ring = NULL;
	struct mead_publisher *p = NULL;
	struct mead_publisher_params pp = {
		.endpoint = "tcp://127.0.0.1:*",
		.virtual_clock = r->lossless,
		.raw = true,
		.wait_subscribers = 1,
		.idle_sleep_us = 50,
	};
	char err[256];
	_Atomic bool done = false;
	struct sub_args sa = { .topic = mead_wire_topic((enum mead_wire_kind)r->kind), .done = &done };
	pthread_t st;
	size_t len = sizeof(struct mead_msg) + (size_t)r->per_msg * r->record_size;
	uint8_t *tmpl = calloc(1, len);
	int rc;

	memset(out, 0, sizeof(*out));
	rc = mead_ring_new(64u << 20, &ring);
	if (rc == 0)
		rc = mead_publisher_new(&pp, ring, NULL, NULL, NULL, &p, err, sizeof(err));
	if (rc < 0 || !tmpl) {
		fprintf(stderr, "bench stream: %s\n", rc < 0 ? err : "out of memory");
		goto out;
	}
	/* Plausible records: increasing samples, electrodes cycling. */
	for (uint32_t i = 0; i < r->per_msg; i++) {
		uint8_t *rec = tmpl + sizeof(struct mead_msg) + (size_t)i * r->record_size;
		if (r->kind == MEAD_KIND_SPIKES) {
			struct mead_spike s = { .sample = i, .electrode = (uint16_t)(i % 60), .amplitude_uv = -40.0f };
			memcpy(rec, &s, sizeof(s));
		} else {
			for (uint32_t c = 0; c < r->record_size / 2; c++) {
				int16_t v = (int16_t)((i * 7 + c * 13) & 0x3ff);
				memcpy(rec + 2 * c, &v, 2);
			}
		}
	}
	sa.endpoint = mead_publisher_endpoint(p);
	pthread_create(&st, NULL, sub_thread, &sa);
	mead_publisher_start(p);
	mead_publisher_wait_subscribers(p, 5000);

	uint64_t t0 = mead_now_ns(), end = t0 + (uint64_t)(r->seconds * 1e9), seq = 0, next = t0;
	uint64_t period = r->paced_hz ? 1000000000ull / r->paced_hz : 0;
	while (mead_now_ns() < end) {
		if (period) {
			next += period;
			struct timespec ts = { (time_t)(next / 1000000000ull), (long)(next % 1000000000ull) };
			clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
		}
		uint8_t *m = mead_ring_reserve(ring, len);
		while (!m && r->lossless) {
			sched_yield();
			m = mead_ring_reserve(ring, len);
		}
		struct mead_msg h = {
			.kind = (uint16_t)r->kind, .count = r->per_msg, .record_size = r->record_size,
			.seq = seq, .sample = seq * r->per_msg,
		};
		seq++;
		if (!m) {
			out->ring_full++;    /* as the loop does: seq moves on, a gap downstream */
			continue;
		}
		memcpy(m, tmpl, len);
		memcpy(m, &h, sizeof(h));
		mead_ring_commit(ring, len);
		out->sent++;
	}
	mead_publisher_stop(p);
	atomic_store(&done, true);
	pthread_join(st, NULL);
	struct mead_publisher_counters pc;
	mead_publisher_get_counters(p, &pc);
	out->hwm_dropped = pc.hwm_dropped[r->kind];
	out->received = sa.res.messages;
	/* Everything not seen by the subscriber is a loss, wherever it happened. */
	out->gaps = seq - sa.res.messages;
	out->bad = sa.res.bad;
	out->wall_s = (double)(sa.res.t_last_ns - t0) / 1e9;
	out->records_per_s = out->wall_s > 0 ? (double)sa.res.records / out->wall_s : 0;
out:
	mead_publisher_free(p);
	mead_ring_free(ring);
	free(tmpl);
	return rc;
}

/* The same messages through a bare libzmq PUB (no drop, blocking) to SUB. */
static int run_bare(const struct run *r, struct run_result *out)
{
	void *ctx = zmq_ctx_new(), *pub = zmq_socket(ctx, ZMQ_PUB);
	char ep[128];
	size_t epl = sizeof(ep), plen = (size_t)r->per_msg * r->record_size;
	int one = 1, hwm = 10000, linger = 2000;
	_Atomic bool done = false;
	struct sub_args sa = { .topic = mead_wire_topic((enum mead_wire_kind)r->kind), .done = &done };
	pthread_t st;
	uint8_t *payload = calloc(1, plen ? plen : 1);

	memset(out, 0, sizeof(*out));
	zmq_setsockopt(pub, ZMQ_SNDHWM, &hwm, sizeof(hwm));
	zmq_setsockopt(pub, ZMQ_XPUB_NODROP, &one, sizeof(one));
	zmq_setsockopt(pub, ZMQ_LINGER, &linger, sizeof(linger));
	if (zmq_bind(pub, "tcp://127.0.0.1:*") < 0 || !payload) {
		zmq_close(pub);
		zmq_ctx_term(ctx);
		free(payload);
		return -EIO;
	}
	zmq_getsockopt(pub, ZMQ_LAST_ENDPOINT, ep, &epl);
	sa.endpoint = ep;
	pthread_create(&st, NULL, sub_thread, &sa);
	/* A PUB has no subscription events: give the subscriber time to join. */
	struct timespec settle = { 0, 300000000 };
	nanosleep(&settle, NULL);

	const char *topic = sa.topic;
	uint64_t t0 = mead_now_ns(), end = t0 + (uint64_t)(r->seconds * 1e9), seq = 0;
	while (mead_now_ns() < end) {
		struct mead_wire_header h;
		mead_wire_header_encode(&h, (uint16_t)r->kind, seq, seq * r->per_msg, r->per_msg, r->record_size);
		seq++;
		zmq_send(pub, topic, strlen(topic), ZMQ_SNDMORE);
		zmq_send(pub, &h, sizeof(h), ZMQ_SNDMORE);
		zmq_send(pub, payload, plen, 0);
		out->sent++;
	}
	atomic_store(&done, true);
	pthread_join(st, NULL);
	out->received = sa.res.messages;
	out->gaps = seq - sa.res.messages;
	out->bad = sa.res.bad;
	out->wall_s = (double)(sa.res.t_last_ns - t0) / 1e9;
	out->records_per_s = out->wall_s > 0 ? (double)sa.res.records / out->wall_s : 0;
	zmq_close(pub);
	zmq_ctx_term(ctx);
	free(payload);
	return 0;
}

int mead_bench_stream(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "seconds", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	double seconds = 3.0;
	int c, failures = 0;

	optind = 0;
	while ((c = getopt_long(argc, argv, "s:h", opts, NULL)) != -1) {
		switch (c) {
		case 's': seconds = atof(optarg); break;
		case 'h':
			printf("usage: mead-bench stream [--seconds S]\n");
			return 0;
		default:
			return 2;
		}
	}
	if (!(seconds > 0))
		return 2;

	printf("# mead-bench stream: ring -> publisher -> one SUB in this process over tcp://127.0.0.1, %.1f s per case\n",
	       seconds);
	printf("# zmq %d.%d.%d; 'bare' = the same three-frame messages through a plain libzmq PUB/SUB\n",
	       ZMQ_VERSION_MAJOR, ZMQ_VERSION_MINOR, ZMQ_VERSION_PATCH);

	static const struct { const char *name; unsigned kind; uint32_t per_msg, rsize; } max_cases[] = {
		{ "spikes, 256/msg", MEAD_KIND_SPIKES, 256, 16 },
		{ "spikes, 25/msg", MEAD_KIND_SPIKES, 25, 16 },
		{ "raw 60 ch, 25 frames/msg", MEAD_KIND_RAW, 25, 120 },
		{ "raw 1024 ch, 20 frames/msg", MEAD_KIND_RAW, 20, 2048 },
	};
	for (size_t i = 0; i < sizeof(max_cases) / sizeof(max_cases[0]); i++) {
		struct run r = { max_cases[i].kind, max_cases[i].per_msg, max_cases[i].rsize, seconds, 0, true };
		struct run_result m, b;
		if (run_mead(&r, &m) < 0 || run_bare(&r, &b) < 0) {
			failures++;
			continue;
		}
		const char *unit = r.kind == MEAD_KIND_SPIKES ? "spikes/s" : "frames/s";
		double ch = r.kind == MEAD_KIND_RAW ? r.record_size / 2.0 : 1.0;
		printf("max   %-28s mead %10.4g %s", max_cases[i].name, m.records_per_s, unit);
		if (r.kind == MEAD_KIND_RAW)
			printf(" (%.4g samples/s)", m.records_per_s * ch);
		printf("  lost %" PRIu64 " | bare %10.4g %s lost %" PRIu64 " | bare/mead %.2f\n", m.gaps + m.bad,
		       b.records_per_s, unit, b.gaps + b.bad, m.records_per_s > 0 ? b.records_per_s / m.records_per_s : 0.0);
		if (m.gaps || m.bad)
			failures++;
	}

	static const struct { const char *name; uint32_t ch, rate_hz; } paced[] = {
		{ "raw 60 ch x 25 kHz", 60, 25000 },
		{ "raw 1024 ch x 20 kHz", 1024, 20000 },
	};
	for (size_t i = 0; i < sizeof(paced) / sizeof(paced[0]); i++) {
		/* 1 ms ticks, the real-time publisher (drops allowed and counted). */
		struct run r = { MEAD_KIND_RAW, paced[i].rate_hz / 1000, paced[i].ch * 2, seconds, 1000, false };
		struct run_result m;
		if (run_mead(&r, &m) < 0) {
			failures++;
			continue;
		}
		double frames = m.records_per_s;
		printf("paced %-28s real-time publisher: %10.4g frames/s = %.4g samples/s received (target %u frames/s), "
		       "lost %" PRIu64 " of %" PRIu64 " messages (ring %" PRIu64 ", hwm %" PRIu64 ") %s\n",
		       paced[i].name, frames, frames * paced[i].ch, paced[i].rate_hz, m.gaps + m.bad, m.sent + m.ring_full,
		       m.ring_full, m.hwm_dropped, m.gaps + m.bad == 0 ? "OK" : "LOSS");
		if (m.gaps || m.bad)
			failures++;
	}
	return failures ? 1 : 0;
}
