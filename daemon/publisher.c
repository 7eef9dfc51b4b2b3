/* SPDX-License-Identifier: MIT */
#include "daemon/publisher.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "daemon/auth.h"
#include "daemon/loop.h"
#include "daemon/recorder.h"
#include "daemon/relay.h"
#include "daemon/ring.h"
#include "lib/core/time.h"

/* Subscriptions longer than any topic can never match one; they are kept
 * (to be counted and cancelled) by their first bytes and length. */
#define SUB_PREFIX_MAX 32

struct topic_sub {
	uint32_t len;
	char prefix[SUB_PREFIX_MAX];
};

/* One subscriber: its own XPUB queue, piped to its connection by the relay. */
struct client {
	uint32_t id;
	void *sock, *mon;
	char peer[64];
	uint64_t connected_ns;
	bool failed, gone;           /* publisher thread */
	_Atomic bool ready;          /* handshake completed */
	struct topic_sub *subs;      /* publisher thread */
	uint32_t nsubs, subs_cap;
	_Atomic uint32_t nsubs_now;  /* for other threads */
	_Atomic uint32_t topics;     /* bit k: its subscriptions match topic kind k */
	_Atomic uint64_t sent[MEAD_KIND_COUNT + 1];
	_Atomic uint64_t dropped[MEAD_KIND_COUNT + 1];
	_Atomic uint64_t last_drop_ns;
};

struct mead_publisher {
	struct mead_publisher_params p;
	struct mead_ring *in;
	struct mead_recorder *rec;
	mead_status_json_fn status_json;
	void *status_ctx;
	void *ctx;
	bool own_ctx, curve;
	uint8_t curve_secret[MEAD_KEY_BYTES];
	struct mead_relay *relay;
	char queue_dir[90];          /* private (0700): the queues' ipc paths, gone once connected */
	char *status_buf;
	size_t status_max;

	pthread_t thread;
	bool started, joined;
	_Atomic bool stop;
	uint64_t stop_deadline_ns;   /* publisher thread: 0 until stop is seen */
	pthread_mutex_t lock;
	pthread_cond_t ready_cond;
	bool ready;                  /* wait_subscribers satisfied */

	/* The publisher thread adds and removes clients; other threads read
	 * the table under clients_lock. */
	pthread_mutex_t clients_lock;
	struct client **clients;
	size_t n_clients, clients_cap;
	zmq_pollitem_t *items;
	size_t items_cap;
	uint32_t next_id;

	uint64_t status_seq;
	uint64_t last_sample;

	_Atomic uint64_t received[MEAD_KIND_COUNT + 1];
	_Atomic uint64_t published[MEAD_KIND_COUNT + 1];
	_Atomic uint64_t hwm_dropped[MEAD_KIND_COUNT + 1];
	_Atomic uint64_t discarded[MEAD_KIND_COUNT + 1];
	_Atomic uint64_t last_seq[MEAD_KIND_COUNT + 1];
	_Atomic uint64_t bytes;
	_Atomic int64_t subscriptions;
	_Atomic int64_t peers;       /* clients whose handshake completed */
	_Atomic uint64_t handshakes_failed;
	_Atomic uint64_t clients_accepted;
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

static bool sub_matches(const struct topic_sub *s, const char *topic, size_t tlen)
{
	return s->len <= tlen && memcmp(s->prefix, topic, s->len) == 0;
}

static void update_topics(struct client *c)
{
	uint32_t bits = 0;
	for (int k = 1; k <= MEAD_KIND_COUNT; k++) {
		const char *t = mead_wire_topic((enum mead_wire_kind)k);
		for (uint32_t i = 0; i < c->nsubs; i++)
			if (sub_matches(&c->subs[i], t, strlen(t))) {
				bits |= 1u << k;
				break;
			}
	}
	atomic_store(&c->topics, bits);
	atomic_store(&c->nsubs_now, c->nsubs);
}

static void client_subscribe(struct mead_publisher *p, struct client *c, const uint8_t *topic, size_t len, bool on)
{
	size_t keep = len < SUB_PREFIX_MAX ? len : SUB_PREFIX_MAX;

	if (on) {
		if (c->nsubs == c->subs_cap) {
			uint32_t cap = c->subs_cap ? 2 * c->subs_cap : 4;
			struct topic_sub *n = realloc(c->subs, cap * sizeof(*n));
			if (!n)
				return;
			c->subs = n;
			c->subs_cap = cap;
		}
		struct topic_sub *s = &c->subs[c->nsubs++];
		s->len = (uint32_t)len;
		memcpy(s->prefix, topic, keep);
		atomic_fetch_add(&p->subscriptions, 1);
		atomic_fetch_add(&p->sub_events, 1);
	} else {
		atomic_fetch_add(&p->unsub_events, 1);
		for (uint32_t i = 0; i < c->nsubs; i++) {
			if (c->subs[i].len == len && memcmp(c->subs[i].prefix, topic, keep) == 0) {
				c->subs[i] = c->subs[--c->nsubs];
				atomic_fetch_sub(&p->subscriptions, 1);
				break;
			}
		}
	}
	update_topics(c);
}

/* A client that left: its queue is closed at the next reap. */
static void client_gone(struct mead_publisher *p, struct client *c)
{
	if (c->gone)
		return;
	c->gone = true;
	if (atomic_load(&c->ready))
		atomic_fetch_sub(&p->peers, 1);
	/* a client that goes cancels whatever it had subscribed to */
	atomic_fetch_sub(&p->subscriptions, (int64_t)c->nsubs);
	atomic_fetch_add(&p->unsub_events, c->nsubs);
	c->nsubs = 0;
	update_topics(c);
}

/* Its queue's (un)subscription messages: "\1topic" / "\0topic". */
static void client_read_subscriptions(struct mead_publisher *p, struct client *c)
{
	uint8_t buf[256];
	int r;

	while ((r = zmq_recv(c->sock, buf, sizeof(buf), ZMQ_DONTWAIT)) >= 0) {
		if (r >= 1 && !c->gone)
			client_subscribe(p, c, buf + 1, (size_t)r - 1, buf[0] == 1);
	}
}

/* Its queue's socket monitor: handshake done, refused, disconnected. */
static void client_read_events(struct mead_publisher *p, struct client *c)
{
	for (;;) {
		zmq_msg_t ev, addr;
		zmq_msg_init(&ev);
		if (zmq_msg_recv(&ev, c->mon, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&ev);
			return;
		}
		uint16_t id = 0;
		if (zmq_msg_size(&ev) >= 2)
			memcpy(&id, zmq_msg_data(&ev), 2);
		zmq_msg_close(&ev);
		zmq_msg_init(&addr);
		zmq_msg_recv(&addr, c->mon, 0);   /* second frame: the endpoint */
		zmq_msg_close(&addr);
		if (id == ZMQ_EVENT_HANDSHAKE_SUCCEEDED && !c->gone && !atomic_load(&c->ready)) {
			atomic_store(&c->ready, true);
			atomic_fetch_add(&p->peers, 1);
		} else if (id & MEAD_EVENT_HANDSHAKE_FAILED) {
			if (!c->failed)
				atomic_fetch_add(&p->handshakes_failed, 1);
			c->failed = true;
		} else if (id == ZMQ_EVENT_DISCONNECTED) {
			client_gone(p, c);
		}
	}
}

static void client_close(struct client *c, int linger)
{
	if (c->sock) {
		zmq_socket_monitor(c->sock, NULL, 0);
		zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof(linger));
		zmq_close(c->sock);
	}
	if (c->mon)
		zmq_close(c->mon);
	free(c->subs);
	free(c);
}

static int grow_tables(struct mead_publisher *p)
{
	if (p->n_clients == p->clients_cap) {
		size_t cap = p->clients_cap ? 2 * p->clients_cap : 8;
		/* other threads read the table (status) */
		pthread_mutex_lock(&p->clients_lock);
		struct client **n = realloc(p->clients, cap * sizeof(*n));
		if (n) {
			p->clients = n;
			p->clients_cap = cap;
		}
		pthread_mutex_unlock(&p->clients_lock);
		if (!n)
			return -ENOMEM;
	}
	if (p->items_cap < 1 + 2 * (p->n_clients + 1)) {
		size_t cap = 1 + 2 * p->clients_cap;
		zmq_pollitem_t *n = realloc(p->items, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		p->items = n;
		p->items_cap = cap;
	}
	return 0;
}

/* A new connection gets its own queue: an XPUB bound on a private ipc path
 * that only the relay's connection ever reaches (the path is removed as
 * soon as it is connected).  On failure cfd is left to the caller. */
static int client_open(struct mead_publisher *p, int cfd, const char *peer)
{
	struct client *c = calloc(1, sizeof(*c));
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)], ep[sizeof(path) + 8], mon[96];
	int one = 1, zero = 0, qfd = -1, rc;

	if (!c || grow_tables(p) < 0) {
		free(c);
		return -ENOMEM;
	}
	c->id = ++p->next_id;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	c->connected_ns = mead_now_ns();
	c->sock = zmq_socket(p->ctx, ZMQ_XPUB);
	if (!c->sock)
		goto zfail;
	if (zmq_setsockopt(c->sock, ZMQ_SNDHWM, &p->p.sndhwm, sizeof(int)) < 0 ||
	    zmq_setsockopt(c->sock, ZMQ_XPUB_NODROP, &one, sizeof(one)) < 0 ||
	    zmq_setsockopt(c->sock, ZMQ_XPUB_VERBOSER, &one, sizeof(one)) < 0 ||
	    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof(zero)) < 0)
		goto zfail;
	if (p->curve) {
		char why[160];
		rc = mead_curve_server_setup(p->ctx, c->sock, p->curve_secret, MEAD_AUTH_DOMAIN_STREAMS, why, sizeof(why));
		if (rc < 0) {
			plog(p, LOG_ERR, "subscriber %s: %s", peer, why);
			client_close(c, 0);
			return rc;
		}
	}
	snprintf(mon, sizeof(mon), "inproc://mead-publisher-%p-%u", (void *)p, c->id);
	c->mon = zmq_socket(p->ctx, ZMQ_PAIR);
	if (!c->mon ||
	    zmq_socket_monitor(c->sock, mon, ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED |
					     MEAD_EVENT_HANDSHAKE_FAILED) < 0 ||
	    zmq_connect(c->mon, mon) < 0)
		goto zfail;
	snprintf(path, sizeof(path), "%.90s/%u", p->queue_dir, c->id);
	snprintf(ep, sizeof(ep), "ipc://%s", path);
	if (zmq_bind(c->sock, ep) < 0)
		goto zfail;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	memcpy(sa.sun_path, path, strlen(path) + 1);
	qfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (qfd < 0 || connect(qfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    fcntl(qfd, F_SETFL, fcntl(qfd, F_GETFL) | O_NONBLOCK) < 0) {
		rc = -errno;
		plog(p, LOG_ERR, "subscriber %s: its queue: %s", peer, strerror(errno));
		if (qfd >= 0)
			close(qfd);
		unlink(path);
		client_close(c, 0);
		return rc;
	}
	unlink(path);
	rc = mead_relay_add(p->relay, cfd, qfd);   /* owns both descriptors now, even on failure */
	pthread_mutex_lock(&p->clients_lock);
	p->clients[p->n_clients++] = c;
	pthread_mutex_unlock(&p->clients_lock);
	atomic_fetch_add(&p->clients_accepted, 1);
	if (rc < 0)
		client_gone(p, c);
	return 0;
zfail:
	rc = -errno;
	plog(p, LOG_ERR, "subscriber %s: its queue: %s", peer, zmq_strerror(errno));
	client_close(c, 0);
	return rc;
}

static void accept_clients(struct mead_publisher *p)
{
	int fd;
	char peer[64];

	while (mead_relay_accept(p->relay, &fd, peer, sizeof(peer)) == 0) {
		if (client_open(p, fd, peer) < 0)
			close(fd);
	}
}

/* Closes the queues of clients that left; publisher thread, never inside a send. */
static void reap(struct mead_publisher *p)
{
	for (size_t i = 0; i < p->n_clients;) {
		struct client *c = p->clients[i];
		if (!c->gone) {
			i++;
			continue;
		}
		pthread_mutex_lock(&p->clients_lock);
		memmove(&p->clients[i], &p->clients[i + 1], (p->n_clients - i - 1) * sizeof(p->clients[0]));
		p->n_clients--;
		pthread_mutex_unlock(&p->clients_lock);
		client_close(c, 0);
	}
}

/* New connections, subscriptions and monitor events; waits up to timeout_ms. */
static void service(struct mead_publisher *p, int timeout_ms)
{
	size_t n = p->n_clients, k = 0;

	p->items[k++] = (zmq_pollitem_t){ .socket = NULL, .fd = mead_relay_fd(p->relay), .events = ZMQ_POLLIN };
	for (size_t i = 0; i < n; i++) {
		p->items[k++] = (zmq_pollitem_t){ .socket = p->clients[i]->sock, .events = ZMQ_POLLIN };
		p->items[k++] = (zmq_pollitem_t){ .socket = p->clients[i]->mon, .events = ZMQ_POLLIN };
	}
	if (zmq_poll(p->items, (int)k, timeout_ms) <= 0)
		return;
	for (size_t i = 0; i < n; i++) {
		if (p->items[1 + 2 * i].revents)
			client_read_subscriptions(p, p->clients[i]);
		if (p->items[2 + 2 * i].revents)
			client_read_events(p, p->clients[i]);
	}
	if (p->items[0].revents)
		accept_clients(p);
}

static bool give_up(struct mead_publisher *p)
{
	if (!atomic_load_explicit(&p->stop, memory_order_acquire))
		return false;
	if (!p->stop_deadline_ns)
		p->stop_deadline_ns = mead_now_ns() + (uint64_t)p->p.stop_timeout_ms * 1000000ull;
	return mead_now_ns() >= p->stop_deadline_ns;
}

/* One message to one queue.  Once its first frame is taken the rest is too
 * (a queue's limit counts whole messages), so -EAGAIN means nothing of it
 * went out. */
static int client_send(struct client *c, const char *topic, size_t tlen, const struct mead_wire_header *h,
		       zmq_msg_t *body)
{
	zmq_msg_t m;

	if (zmq_send(c->sock, topic, tlen, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
		return -errno;
	while (zmq_send(c->sock, h, sizeof(*h), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
	zmq_msg_init(&m);
	zmq_msg_copy(&m, body);   /* shares the bytes: one copy for every subscriber */
	while (zmq_msg_send(&m, c->sock, ZMQ_DONTWAIT) < 0) {
		if (errno != EAGAIN && errno != EINTR) {
			zmq_msg_close(&m);
			return -errno;
		}
	}
	return 0;
}

static void client_dropped(struct mead_publisher *p, struct client *c, unsigned kind)
{
	atomic_fetch_add_explicit(&c->dropped[kind], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&p->hwm_dropped[kind], 1, memory_order_relaxed);
	atomic_store_explicit(&c->last_drop_ns, mead_now_ns(), memory_order_relaxed);
}

static void send_message(struct mead_publisher *p, unsigned kind, const struct mead_wire_header *h,
			 const void *payload, size_t len)
{
	const char *topic = mead_wire_topic((enum mead_wire_kind)kind);
	size_t tlen = strlen(topic);
	zmq_msg_t body;
	bool have_body = false;

	/* Clients that connect while a virtual-clock send waits join after it:
	 * the table only grows at its end meanwhile, and is reaped outside. */
	for (size_t i = 0; i < p->n_clients; i++) {
		struct client *c = p->clients[i];
		if (c->gone || !(atomic_load_explicit(&c->topics, memory_order_relaxed) & (1u << kind)))
			continue;
		if (!have_body) {
			zmq_msg_init_size(&body, len);
			if (len)
				memcpy(zmq_msg_data(&body), payload, len);
			have_body = true;
		}
		for (;;) {
			int rc = client_send(c, topic, tlen, h, &body);
			if (rc == 0) {
				atomic_fetch_add_explicit(&c->sent[kind], 1, memory_order_relaxed);
				break;
			}
			if (rc != -EAGAIN && rc != -EINTR) {
				plog(p, LOG_WARNING, "publishing %s to subscriber %u (%s): %s", topic, c->id, c->peer,
				     zmq_strerror(-rc));
				client_dropped(p, c, kind);
				break;
			}
			if (!p->p.virtual_clock || give_up(p)) {
				client_dropped(p, c, kind);
				break;
			}
			service(p, 0);
			if (c->gone)
				break;
			sleep_us(20);
		}
	}
	if (have_body)
		zmq_msg_close(&body);
	atomic_fetch_add_explicit(&p->published[kind], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&p->bytes, len + sizeof(*h), memory_order_relaxed);
	/* The recording has its own ring: no subscriber costs it anything. */
	if (p->rec)
		mead_recorder_submit(p->rec, topic, h, payload, len, p->p.virtual_clock);
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

/* Subscribers that count for wait_subscribers: handshake done, at least
 * one subscription. */
static uint64_t ready_subscribers(const struct mead_publisher *p)
{
	uint64_t n = 0;
	for (size_t i = 0; i < p->n_clients; i++)
		if (!p->clients[i]->gone && atomic_load(&p->clients[i]->ready) && p->clients[i]->nsubs)
			n++;
	return n;
}

/* How long a queue may still deliver once the run has ended: in real time
 * two seconds; on the virtual clock, lossless to the end, as long as a
 * blocked send may wait after stop (a run can end far ahead of its slowest
 * subscriber: a whole queue of streams.sndhwm messages). */
static int close_linger_ms(const struct mead_publisher *p)
{
	return p->p.virtual_clock ? (int)p->p.stop_timeout_ms : 2000;
}

static void *publisher_thread(void *arg)
{
	struct mead_publisher *p = arg;
	uint64_t interval = (uint64_t)p->p.status_interval_ms * 1000000ull, next_status;

	while (ready_subscribers(p) < p->p.wait_subscribers && !atomic_load_explicit(&p->stop, memory_order_acquire)) {
		service(p, 10);
		reap(p);
	}
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
		service(p, 0);
		reap(p);
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
	/* Last word: the final counters.  The queues then close with a linger,
	 * so what they hold still reaches the relay and the clients. */
	publish_status(p);
	pthread_mutex_lock(&p->clients_lock);
	size_t n = p->n_clients;
	p->n_clients = 0;
	pthread_mutex_unlock(&p->clients_lock);
	for (size_t i = 0; i < n; i++)
		client_close(p->clients[i], close_linger_ms(p));
	return NULL;
}

static int make_queue_dir(struct mead_publisher *p, const char *base, char *err, size_t err_len)
{
	if (!base)
		base = getenv("TMPDIR");
	if (!base || !base[0])
		base = "/tmp";
	int n = snprintf(p->queue_dir, sizeof(p->queue_dir), "%s/mead-pub-XXXXXX", base);
	if (n < 0 || (size_t)n >= sizeof(p->queue_dir) - 12) {
		snprintf(err, err_len, "publisher: %s: too long a directory for the subscribers' sockets", base);
		p->queue_dir[0] = '\0';
		return -ENAMETOOLONG;
	}
	if (!mkdtemp(p->queue_dir)) {
		int rc = -errno;
		snprintf(err, err_len, "publisher: a directory for the subscribers' sockets in %s: %s", base,
			 strerror(errno));
		p->queue_dir[0] = '\0';
		return rc;
	}
	return 0;
}

int mead_publisher_new(const struct mead_publisher_params *params, struct mead_ring *in,
		       struct mead_recorder *rec, mead_status_json_fn status_json, void *status_ctx,
		       struct mead_publisher **ret, char *err, size_t err_len)
{
	struct mead_publisher *p;
	int rc;

	if (!params || !in || !ret)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->p = *params;
	p->p.endpoint = NULL;
	p->p.curve_secret_key = NULL;
	p->p.queue_dir = NULL;
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
	pthread_mutex_init(&p->clients_lock, NULL);
	p->status_buf = malloc(p->status_max);
	if (!p->status_buf || grow_tables(p) < 0) {
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
	if (params->curve_secret_key) {
		/* Checked once here, so a context without a ZAP handler fails the
		 * start rather than each subscriber. */
		char why[160];
		void *probe = zmq_socket(p->ctx, ZMQ_XPUB);
		rc = probe ? mead_curve_server_setup(p->ctx, probe, params->curve_secret_key, MEAD_AUTH_DOMAIN_STREAMS,
						     why, sizeof(why))
			   : -errno;
		if (probe)
			zmq_close(probe);
		if (rc < 0) {
			snprintf(err, err_len, "publisher: %s", probe ? why : zmq_strerror(-rc));
			goto fail;
		}
		memcpy(p->curve_secret, params->curve_secret_key, MEAD_KEY_BYTES);
		p->curve = true;
	}
	rc = make_queue_dir(p, params->queue_dir, err, err_len);
	if (rc < 0)
		goto fail;
	const char *ep = params->endpoint ? params->endpoint : MEAD_DEFAULT_PUB_ENDPOINT;
	char why[400];
	rc = mead_relay_listen(ep, &p->relay, why, sizeof(why));
	if (rc < 0) {
		snprintf(err, err_len, "publisher: bind %s", why);
		goto fail;
	}
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
	rc = mead_relay_start(p->relay);
	if (rc < 0)
		return rc;
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
		/* the queues' linger and a little for the last bytes */
		mead_relay_drain(p->relay, close_linger_ms(p) + 500);
	}
	return 0;
}

void mead_publisher_free(struct mead_publisher *p)
{
	if (!p)
		return;
	mead_publisher_stop(p);
	for (size_t i = 0; i < p->n_clients; i++)
		client_close(p->clients[i], 0);
	mead_relay_free(p->relay);
	if (p->ctx && p->own_ctx)
		zmq_ctx_term(p->ctx);
	if (p->queue_dir[0])
		rmdir(p->queue_dir);
	explicit_bzero(p->curve_secret, sizeof(p->curve_secret));
	pthread_cond_destroy(&p->ready_cond);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->clients_lock);
	free(p->clients);
	free(p->items);
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
	ret->clients_accepted = atomic_load_explicit(&p->clients_accepted, memory_order_relaxed);
}

size_t mead_publisher_clients(const struct mead_publisher *pc, struct mead_publisher_client *out, size_t max)
{
	struct mead_publisher *p = (struct mead_publisher *)pc;
	uint64_t now = mead_now_ns();
	size_t n = 0;

	pthread_mutex_lock(&p->clients_lock);
	for (size_t i = 0; i < p->n_clients; i++) {
		struct client *c = p->clients[i];
		if (c->gone)
			continue;
		if (n < max) {
			struct mead_publisher_client *o = &out[n];
			memset(o, 0, sizeof(*o));
			o->id = c->id;
			snprintf(o->peer, sizeof(o->peer), "%s", c->peer);
			o->connected_s = (double)(now - c->connected_ns) / 1e9;
			o->ready = atomic_load(&c->ready);
			o->subscriptions = atomic_load(&c->nsubs_now);
			o->topics = atomic_load(&c->topics);
			for (int k = 0; k <= MEAD_KIND_COUNT; k++) {
				o->sent[k] = atomic_load_explicit(&c->sent[k], memory_order_relaxed);
				o->dropped[k] = atomic_load_explicit(&c->dropped[k], memory_order_relaxed);
			}
			uint64_t ld = atomic_load_explicit(&c->last_drop_ns, memory_order_relaxed);
			o->last_drop_s = ld ? (double)(now > ld ? now - ld : 0) / 1e9 : -1.0;
		}
		n++;
	}
	pthread_mutex_unlock(&p->clients_lock);
	return n;
}

const char *mead_publisher_endpoint(const struct mead_publisher *p)
{
	return mead_relay_endpoint(p->relay);
}

bool mead_publisher_is_curve(const struct mead_publisher *p)
{
	return p && p->curve;
}
