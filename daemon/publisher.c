/* SPDX-License-Identifier: MIT */
#include "daemon/publisher.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <zmq.h>

#include "daemon/auth.h"
#include "daemon/loop.h"
#include "daemon/recorder.h"
#include "daemon/ring.h"
#include "lib/core/time.h"

struct mead_publisher {
	struct mead_publisher_params p;
	struct mead_ring *in;
	struct mead_recorder *rec;
	mead_status_json_fn status_json;
	void *status_ctx;
	void *ctx, *sock;
	bool own_ctx, curve;
	void *monitor;               /* PAIR end of the XPUB's socket monitor */
	char endpoint[256];
	char *status_buf;
	size_t status_max;

	pthread_t thread;
	bool started, joined;
	_Atomic bool stop;
	uint64_t stop_deadline_ns;   /* publisher thread: 0 until stop is seen */
	pthread_mutex_t lock;
	pthread_cond_t ready_cond;
	bool ready;                  /* wait_subscribers satisfied */

	uint64_t status_seq;
	uint64_t last_sample;

	_Atomic uint64_t received[MEAD_KIND_COUNT + 1];
	_Atomic uint64_t published[MEAD_KIND_COUNT + 1];
	_Atomic uint64_t hwm_dropped[MEAD_KIND_COUNT + 1];
	_Atomic uint64_t discarded[MEAD_KIND_COUNT + 1];
	_Atomic uint64_t last_seq[MEAD_KIND_COUNT + 1];
	_Atomic uint64_t bytes;
	_Atomic int64_t subscriptions;
	_Atomic int64_t peers;       /* connections that completed the ZMTP handshake */
	_Atomic uint64_t handshakes_failed;
	uint64_t failed_unclosed;    /* publisher thread: failed handshakes whose DISCONNECTED is still due */
	_Atomic uint64_t sub_events, unsub_events;
	_Atomic uint64_t status_errors;
};

static void sleep_us(uint32_t us)
{
	struct timespec ts = { us / 1000000u, (long)(us % 1000000u) * 1000 };
	nanosleep(&ts, NULL);
}

static void plog(struct mead_publisher *p, int prio, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void plog(struct mead_publisher *p, int prio, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	if (!p->p.log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	p->p.log(p->p.log_ctx, prio, msg);
}

/* Connection events from the socket monitor: a peer is a client whose
 * handshake completed and that has not disconnected. */
static void poll_peers(struct mead_publisher *p)
{
	for (;;) {
		zmq_msg_t ev, addr;
		zmq_msg_init(&ev);
		if (zmq_msg_recv(&ev, p->monitor, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&ev);
			return;
		}
		uint16_t id = 0;
		if (zmq_msg_size(&ev) >= 2)
			memcpy(&id, zmq_msg_data(&ev), 2);
		zmq_msg_close(&ev);
		zmq_msg_init(&addr);
		zmq_msg_recv(&addr, p->monitor, 0);   /* second frame: the endpoint */
		zmq_msg_close(&addr);
		/* A failed handshake is followed by its own DISCONNECTED, which
		 * must not take a peer away from the clients that did connect. */
		if (id == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
			atomic_fetch_add(&p->peers, 1);
		} else if (id & MEAD_EVENT_HANDSHAKE_FAILED) {
			atomic_fetch_add(&p->handshakes_failed, 1);
			p->failed_unclosed++;
		} else if (id == ZMQ_EVENT_DISCONNECTED) {
			if (p->failed_unclosed)
				p->failed_unclosed--;
			else if (atomic_load(&p->peers) > 0)
				atomic_fetch_sub(&p->peers, 1);
		}
	}
}

/* Reads every pending (un)subscription message; returns how many. */
static int poll_subscriptions(struct mead_publisher *p, int timeout_ms)
{
	zmq_pollitem_t it[2] = { { .socket = p->sock, .events = ZMQ_POLLIN },
				 { .socket = p->monitor, .events = ZMQ_POLLIN } };
	int n = 0;

	if (zmq_poll(it, p->monitor ? 2 : 1, timeout_ms) <= 0)
		return 0;
	if (p->monitor)
		poll_peers(p);
	for (;;) {
		uint8_t buf[256];
		int r = zmq_recv(p->sock, buf, sizeof(buf), ZMQ_DONTWAIT);
		if (r < 0)
			break;
		if (r >= 1 && buf[0] == 1) {
			atomic_fetch_add(&p->subscriptions, 1);
			atomic_fetch_add(&p->sub_events, 1);
		} else if (r >= 1 && buf[0] == 0) {
			if (atomic_load(&p->subscriptions) > 0)
				atomic_fetch_sub(&p->subscriptions, 1);
			atomic_fetch_add(&p->unsub_events, 1);
		}
		n++;
	}
	return n;
}

static bool give_up(struct mead_publisher *p)
{
	if (!atomic_load_explicit(&p->stop, memory_order_acquire))
		return false;
	if (!p->stop_deadline_ns)
		p->stop_deadline_ns = mead_now_ns() + (uint64_t)p->p.stop_timeout_ms * 1000000ull;
	return mead_now_ns() >= p->stop_deadline_ns;
}

/* One frame; in virtual mode (or inside a message) waits until it is taken. */
static int send_frame(struct mead_publisher *p, const void *data, size_t len, int more, bool first)
{
	for (;;) {
		if (zmq_send(p->sock, data, len, (more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) >= 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		/* Once the first frame went out the rest must follow, or the next
		 * message would be glued to this one. */
		if (first && !p->p.virtual_clock)
			return -EAGAIN;
		if (first && give_up(p))
			return -EAGAIN;
		if (first)
			poll_subscriptions(p, 0);
		sleep_us(20);
	}
}

static int send_message(struct mead_publisher *p, unsigned kind, const struct mead_wire_header *h,
			const void *payload, size_t len)
{
	const char *topic = mead_wire_topic((enum mead_wire_kind)kind);
	int rc = send_frame(p, topic, strlen(topic), 1, true);

	if (rc == 0)
		rc = send_frame(p, h, sizeof(*h), 1, false);
	if (rc == 0)
		rc = send_frame(p, payload, len, 0, false);
	if (rc == 0) {
		atomic_fetch_add_explicit(&p->published[kind], 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&p->bytes, len + sizeof(*h), memory_order_relaxed);
	} else {
		atomic_fetch_add_explicit(&p->hwm_dropped[kind], 1, memory_order_relaxed);
		if (rc != -EAGAIN)
			plog(p, LOG_WARNING, "publishing %s: %s", topic, zmq_strerror(-rc));
	}
	/* The recording keeps what the socket refused: a slow subscriber must
	 * not cost the file anything. */
	if (p->rec)
		mead_recorder_submit(p->rec, topic, h, payload, len, p->p.virtual_clock);
	return rc;
}

static void publish_status(struct mead_publisher *p)
{
	struct mead_wire_header h;
	int n;

	if (!p->status_json)
		return;
	n = p->status_json(p->status_ctx, p->status_buf, p->status_max);
	if (n < 0 || (size_t)n >= p->status_max) {
		atomic_fetch_add_explicit(&p->status_errors, 1, memory_order_relaxed);
		return;
	}
	atomic_fetch_add_explicit(&p->received[MEAD_KIND_STATUS], 1, memory_order_relaxed);
	mead_wire_header_encode(&h, MEAD_KIND_STATUS, p->status_seq, p->last_sample, 1, (uint32_t)n);
	atomic_store_explicit(&p->last_seq[MEAD_KIND_STATUS], p->status_seq, memory_order_relaxed);
	p->status_seq++;
	send_message(p, MEAD_KIND_STATUS, &h, p->status_buf, (size_t)n);
}

static void publish_ring_message(struct mead_publisher *p, const uint8_t *buf, size_t len)
{
	struct mead_msg m;
	struct mead_wire_header h;
	uint64_t payload_len;

	if (len < sizeof(m)) {
		atomic_fetch_add_explicit(&p->discarded[0], 1, memory_order_relaxed);
		return;
	}
	memcpy(&m, buf, sizeof(m));
	payload_len = (uint64_t)m.count * m.record_size;
	if (m.kind < 1 || m.kind > MEAD_KIND_COUNT || payload_len != len - sizeof(m)) {
		atomic_fetch_add_explicit(&p->discarded[m.kind >= 1 && m.kind <= MEAD_KIND_COUNT ? m.kind : 0], 1,
					  memory_order_relaxed);
		return;
	}
	atomic_fetch_add_explicit(&p->received[m.kind], 1, memory_order_relaxed);
	if (m.kind == MEAD_KIND_RAW && !p->p.raw) {
		atomic_fetch_add_explicit(&p->discarded[m.kind], 1, memory_order_relaxed);
		return;
	}
	if (m.sample > p->last_sample)
		p->last_sample = m.sample;
	if (m.kind == MEAD_KIND_STATUS) {
		/* Status has one sequence, whoever wrote it. */
		m.seq = p->status_seq++;
	}
	atomic_store_explicit(&p->last_seq[m.kind], m.seq, memory_order_relaxed);
	mead_wire_header_encode(&h, m.kind, m.seq, m.sample, m.count, m.record_size);
	send_message(p, m.kind, &h, buf + sizeof(m), (size_t)payload_len);
}

static void set_ready(struct mead_publisher *p)
{
	pthread_mutex_lock(&p->lock);
	p->ready = true;
	pthread_cond_broadcast(&p->ready_cond);
	pthread_mutex_unlock(&p->lock);
}

static void *publisher_thread(void *arg)
{
	struct mead_publisher *p = arg;
	uint64_t interval = (uint64_t)p->p.status_interval_ms * 1000000ull, next_status;

	/* A subscriber is a connected peer with at least one subscription: N
	 * subscribers means N peers and N subscriptions (one client subscribing
	 * to three topics is still one subscriber). */
	while (((uint64_t)atomic_load(&p->peers) < p->p.wait_subscribers ||
		(uint64_t)atomic_load(&p->subscriptions) < p->p.wait_subscribers) &&
	       !atomic_load_explicit(&p->stop, memory_order_acquire))
		poll_subscriptions(p, 10);
	set_ready(p);

	/* Status first: a subscriber learns layout and rate before any data. */
	publish_status(p);
	next_status = mead_now_ns() + interval;
	for (;;) {
		unsigned handled = 0;
		const void *m;
		size_t len;

		/* Bounded batches keep status and subscriptions serviced under load. */
		while (handled < 512 && (m = mead_ring_peek(p->in, &len))) {
			publish_ring_message(p, m, len);
			mead_ring_release(p->in);
			handled++;
		}
		poll_subscriptions(p, 0);
		uint64_t t = mead_now_ns();
		if (t >= next_status) {
			publish_status(p);
			next_status = t + interval;
		}
		if (handled)
			continue;
		if (atomic_load_explicit(&p->stop, memory_order_acquire) && mead_ring_empty(p->in))
			break;
		sleep_us(p->p.idle_sleep_us);
	}
	/* Last word: the final counters. */
	publish_status(p);
	return NULL;
}

int mead_publisher_new(const struct mead_publisher_params *params, struct mead_ring *in,
		       struct mead_recorder *rec, mead_status_json_fn status_json, void *status_ctx,
		       struct mead_publisher **ret, char *err, size_t err_len)
{
	struct mead_publisher *p;
	int one = 1, rc;
	size_t elen;

	if (!params || !in || !ret)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->p = *params;
	p->p.endpoint = NULL;
	p->p.curve_secret_key = NULL;
	if (!p->p.sndhwm)
		p->p.sndhwm = 10000;
	if (!p->p.status_interval_ms || p->p.status_interval_ms > 1000)
		p->p.status_interval_ms = 1000;
	if (!p->p.idle_sleep_us)
		p->p.idle_sleep_us = 200;
	if (!p->p.stop_timeout_ms)
		p->p.stop_timeout_ms = 5000;
	p->status_max = params->status_max ? params->status_max : (256u << 10);
	p->in = in;
	p->rec = rec;
	p->status_json = status_json;
	p->status_ctx = status_ctx;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->ready_cond, NULL);
	p->status_buf = malloc(p->status_max);
	if (!p->status_buf) {
		rc = -ENOMEM;
		goto fail;
	}
	if (params->curve_secret_key && !params->zmq_ctx) {
		snprintf(err, err_len, "publisher: CURVE needs the ZAP handler's context");
		rc = -EINVAL;
		goto fail;
	}
	p->own_ctx = !params->zmq_ctx;
	p->ctx = p->own_ctx ? zmq_ctx_new() : params->zmq_ctx;
	if (!p->ctx) {
		rc = -errno;
		snprintf(err, err_len, "publisher: zmq context: %s", zmq_strerror(errno));
		goto fail;
	}
	p->sock = zmq_socket(p->ctx, ZMQ_XPUB);
	if (!p->sock) {
		rc = -errno;
		snprintf(err, err_len, "publisher: socket: %s", zmq_strerror(errno));
		goto fail;
	}
	int linger = 2000;
	if (zmq_setsockopt(p->sock, ZMQ_SNDHWM, &p->p.sndhwm, sizeof(int)) < 0 ||
	    zmq_setsockopt(p->sock, ZMQ_XPUB_NODROP, &one, sizeof(one)) < 0 ||
	    zmq_setsockopt(p->sock, ZMQ_XPUB_VERBOSER, &one, sizeof(one)) < 0 ||
	    zmq_setsockopt(p->sock, ZMQ_LINGER, &linger, sizeof(linger)) < 0) {
		rc = -errno;
		snprintf(err, err_len, "publisher: socket options: %s", zmq_strerror(errno));
		goto fail;
	}
	if (params->curve_secret_key) {
		char why[160];
		rc = mead_curve_server_setup(p->ctx, p->sock, params->curve_secret_key, MEAD_AUTH_DOMAIN_STREAMS, why,
					     sizeof(why));
		if (rc < 0) {
			snprintf(err, err_len, "publisher: %s", why);
			goto fail;
		}
		p->curve = true;
	}
	{
		char mon[64];
		snprintf(mon, sizeof(mon), "inproc://mead-publisher-monitor-%p", (void *)p);
		p->monitor = zmq_socket(p->ctx, ZMQ_PAIR);
		if (!p->monitor ||
		    zmq_socket_monitor(p->sock, mon, ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED |
					       MEAD_EVENT_HANDSHAKE_FAILED) < 0 ||
		    zmq_connect(p->monitor, mon) < 0) {
			rc = -errno;
			snprintf(err, err_len, "publisher: socket monitor: %s", zmq_strerror(errno));
			goto fail;
		}
	}
	const char *ep = params->endpoint ? params->endpoint : MEAD_DEFAULT_PUB_ENDPOINT;
	if (zmq_bind(p->sock, ep) < 0) {
		rc = -errno;
		snprintf(err, err_len, "publisher: bind %s: %s", ep, zmq_strerror(errno));
		goto fail;
	}
	elen = sizeof(p->endpoint);
	if (zmq_getsockopt(p->sock, ZMQ_LAST_ENDPOINT, p->endpoint, &elen) < 0)
		snprintf(p->endpoint, sizeof(p->endpoint), "%s", ep);
	*ret = p;
	return 0;
fail:
	mead_publisher_free(p);
	return rc;
}

int mead_publisher_start(struct mead_publisher *p)
{
	sigset_t all, old;
	int rc;

	if (!p || p->started)
		return -EINVAL;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = -pthread_create(&p->thread, NULL, publisher_thread, p);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0)
		return rc;
	pthread_setname_np(p->thread, "mead-publisher");
	p->started = true;
	return 0;
}

int mead_publisher_wait_subscribers(struct mead_publisher *p, int timeout_ms)
{
	struct timespec dl;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &dl);
	if (timeout_ms >= 0) {
		dl.tv_sec += timeout_ms / 1000;
		dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (dl.tv_nsec >= 1000000000L) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&p->lock);
	while (!p->ready && rc == 0) {
		if (timeout_ms < 0)
			pthread_cond_wait(&p->ready_cond, &p->lock);
		else if (pthread_cond_timedwait(&p->ready_cond, &p->lock, &dl) == ETIMEDOUT)
			rc = p->ready ? 0 : -ETIMEDOUT;
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

int mead_publisher_stop(struct mead_publisher *p)
{
	if (!p)
		return 0;
	atomic_store_explicit(&p->stop, true, memory_order_release);
	if (p->started && !p->joined) {
		pthread_join(p->thread, NULL);
		p->joined = true;
	}
	return 0;
}

void mead_publisher_free(struct mead_publisher *p)
{
	if (!p)
		return;
	mead_publisher_stop(p);
	if (p->sock) {
		zmq_socket_monitor(p->sock, NULL, 0);
		zmq_close(p->sock);
	}
	if (p->monitor)
		zmq_close(p->monitor);
	if (p->ctx && p->own_ctx)
		zmq_ctx_term(p->ctx);
	pthread_cond_destroy(&p->ready_cond);
	pthread_mutex_destroy(&p->lock);
	free(p->status_buf);
	free(p);
}

void mead_publisher_get_counters(const struct mead_publisher *pc, struct mead_publisher_counters *ret)
{
	struct mead_publisher *p = (struct mead_publisher *)pc;
	memset(ret, 0, sizeof(*ret));
	for (int k = 0; k <= MEAD_KIND_COUNT; k++) {
		ret->received[k] = atomic_load_explicit(&p->received[k], memory_order_relaxed);
		ret->published[k] = atomic_load_explicit(&p->published[k], memory_order_relaxed);
		ret->hwm_dropped[k] = atomic_load_explicit(&p->hwm_dropped[k], memory_order_relaxed);
		ret->discarded[k] = atomic_load_explicit(&p->discarded[k], memory_order_relaxed);
		ret->last_seq[k] = atomic_load_explicit(&p->last_seq[k], memory_order_relaxed);
	}
	ret->bytes = atomic_load_explicit(&p->bytes, memory_order_relaxed);
	int64_t s = atomic_load_explicit(&p->subscriptions, memory_order_relaxed);
	ret->subscriptions = s > 0 ? (uint64_t)s : 0;
	int64_t peers = atomic_load_explicit(&p->peers, memory_order_relaxed);
	ret->subscribers = peers > 0 ? (uint64_t)peers : 0;
	ret->subscribe_events = atomic_load_explicit(&p->sub_events, memory_order_relaxed);
	ret->unsubscribe_events = atomic_load_explicit(&p->unsub_events, memory_order_relaxed);
	ret->status_errors = atomic_load_explicit(&p->status_errors, memory_order_relaxed);
	ret->handshakes_failed = atomic_load_explicit(&p->handshakes_failed, memory_order_relaxed);
}

const char *mead_publisher_endpoint(const struct mead_publisher *p)
{
	return p->endpoint;
}

bool mead_publisher_is_curve(const struct mead_publisher *p)
{
	return p && p->curve;
}
