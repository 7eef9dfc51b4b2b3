/* SPDX-License-Identifier: MIT */
#include "daemon/relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/core/time.h"

/* What one client's queue may have sent that the client has not taken yet,
 * held here on top of the kernel's socket buffers. */
#define TO_CLIENT_BYTES (256u << 10)
/* Client to queue: subscriptions and the handshake, nothing big. */
#define TO_QUEUE_BYTES (16u << 10)
/* How long a closed queue's last bytes may wait for a client that does not read. */
#define FLUSH_GRACE_NS (2000ull * 1000000ull)

struct buf {
	uint8_t *data;
	size_t cap, head, tail;   /* bytes [head, tail) wait to be written */
};

struct pair {
	int cfd, qfd;
	struct buf to_client, to_queue;
	bool queue_eof;            /* its socket closed or hung up: no longer watched */
	bool queue_drained;        /* and everything it sent has been read */
	uint64_t flush_deadline_ns;
	uint32_t cev, qev;         /* events registered for each descriptor */
	struct pair *next;         /* pending list, then the open list */
};

/* epoll data: the pair and which side, packed (pairs are 8-aligned). */
#define SIDE_QUEUE 1u

struct mead_relay {
	int lfd, efd, wake;
	char endpoint[300];
	char unlink_path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];

	pthread_t thread;
	bool started, joined;
	pthread_mutex_t lock;
	struct pair *pending;      /* handed over, not yet registered (under lock) */
	_Atomic bool draining;
	_Atomic uint64_t drain_deadline_ns;

	struct pair *open;         /* relay thread only */
	_Atomic uint64_t accepted, n_open, bytes_out;
};

static int set_err(char *err, size_t len, int rc, const char *fmt, const char *a, const char *b)
{
	if (err && len)
		snprintf(err, len, fmt, a, b);
	return rc;
}

/* HOST of tcp://HOST:PORT to an address to bind: a literal, *, an
 * interface's first address, or a host name. */
static int resolve_host(const char *host, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (strcmp(host, "*") == 0) {
		in4->sin_family = AF_INET;
		in4->sin_addr.s_addr = htonl(INADDR_ANY);
		*len = sizeof(*in4);
		return 0;
	}
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		*len = sizeof(*in4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		*len = sizeof(*in6);
		return 0;
	}
	struct ifaddrs *ifs, *i;
	if (getifaddrs(&ifs) == 0) {
		for (i = ifs; i; i = i->ifa_next) {
			if (!i->ifa_addr || strcmp(i->ifa_name, host) != 0 ||
			    (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
				continue;
			*len = i->ifa_addr->sa_family == AF_INET ? sizeof(*in4) : sizeof(*in6);
			memcpy(ss, i->ifa_addr, *len);
			freeifaddrs(ifs);
			return 0;
		}
		freeifaddrs(ifs);
	}
	struct addrinfo hints = { .ai_flags = AI_PASSIVE, .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
	if (getaddrinfo(host, NULL, &hints, &ai) != 0)
		return -ENOENT;
	/* IPv4 first, as libzmq binds a name without ZMQ_IPV6 */
	struct addrinfo *pick = ai;
	for (struct addrinfo *a = ai; a; a = a->ai_next)
		if (a->ai_family == AF_INET) {
			pick = a;
			break;
		}
	*len = pick->ai_addrlen;
	memcpy(ss, pick->ai_addr, pick->ai_addrlen);
	freeaddrinfo(ai);
	return 0;
}

static int listen_tcp(struct mead_relay *r, const char *spec, char *err, size_t err_len)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	struct sockaddr_storage ss;
	socklen_t sl = 0;
	unsigned long port = 0;
	int one = 1;

	if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof(host))
		return set_err(err, err_len, -EINVAL, "tcp://%s: expected tcp://HOST:PORT%s", spec, "");
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	if (host[0] == '[') {
		size_t hl = strlen(host);
		if (hl < 3 || host[hl - 1] != ']')
			return set_err(err, err_len, -EINVAL, "tcp://%s: an IPv6 address goes in [brackets]%s", spec, "");
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	if (strcmp(colon + 1, "*") != 0) {
		char *end;
		errno = 0;
		port = strtoul(colon + 1, &end, 10);
		if (errno || *end || end == colon + 1 || port > 65535)
			return set_err(err, err_len, -EINVAL, "tcp://%s: the port must be 0..65535 or *%s", spec, "");
	}
	if (resolve_host(host, &ss, &sl) < 0)
		return set_err(err, err_len, -ENOENT, "tcp://%s: no address, interface or host named \"%s\"", spec, host);
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
	r->lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (r->lfd < 0)
		return set_err(err, err_len, -errno, "tcp://%s: socket: %s", spec, strerror(errno));
	setsockopt(r->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(r->lfd, (struct sockaddr *)&ss, sl) < 0 || listen(r->lfd, 100) < 0)
		return set_err(err, err_len, -errno, "tcp://%s: %s", spec, strerror(errno));
	sl = sizeof(ss);
	getsockname(r->lfd, (struct sockaddr *)&ss, &sl);
	char a[INET6_ADDRSTRLEN] = "";
	if (ss.ss_family == AF_INET) {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, a, sizeof(a));
		snprintf(r->endpoint, sizeof(r->endpoint), "tcp://%s:%u", a, ntohs(((struct sockaddr_in *)&ss)->sin_port));
	} else {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, a, sizeof(a));
		snprintf(r->endpoint, sizeof(r->endpoint), "tcp://[%s]:%u", a,
			 ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
	}
	return 0;
}

static int listen_ipc(struct mead_relay *r, const char *path, char *err, size_t err_len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = strlen(path);
	socklen_t sl;

	if (n == 0 || strcmp(path, "*") == 0)
		return set_err(err, err_len, -EINVAL, "ipc://%s: name the socket's path%s", path, "");
	if (n >= sizeof(sa.sun_path))
		return set_err(err, err_len, -ENAMETOOLONG, "ipc://%s: the path is longer than a socket path may be%s",
			       path, "");
	memcpy(sa.sun_path, path, n);
	if (path[0] == '@') {
		sa.sun_path[0] = '\0';   /* abstract namespace */
		sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	} else {
		sl = sizeof(sa);
		/* a socket file left behind by an earlier run, as libzmq does */
		unlink(path);
	}
	r->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (r->lfd < 0)
		return set_err(err, err_len, -errno, "ipc://%s: socket: %s", path, strerror(errno));
	if (bind(r->lfd, (struct sockaddr *)&sa, sl) < 0 || listen(r->lfd, 100) < 0)
		return set_err(err, err_len, -errno, "ipc://%s: %s", path, strerror(errno));
	if (path[0] != '@')
		snprintf(r->unlink_path, sizeof(r->unlink_path), "%s", path);
	snprintf(r->endpoint, sizeof(r->endpoint), "ipc://%s", path);
	return 0;
}

int mead_relay_listen(const char *endpoint, struct mead_relay **ret, char *err, size_t err_len)
{
	struct mead_relay *r;
	int rc;

	if (!endpoint || !ret)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->lfd = r->efd = r->wake = -1;
	pthread_mutex_init(&r->lock, NULL);
	if (strncmp(endpoint, "tcp://", 6) == 0)
		rc = listen_tcp(r, endpoint + 6, err, err_len);
	else if (strncmp(endpoint, "ipc://", 6) == 0)
		rc = listen_ipc(r, endpoint + 6, err, err_len);
	else
		rc = set_err(err, err_len, -EPROTONOSUPPORT,
			     "%s: subscribers connect over tcp:// or ipc:// only%s", endpoint, "");
	if (rc == 0) {
		r->efd = epoll_create1(EPOLL_CLOEXEC);
		r->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (r->efd < 0 || r->wake < 0)
			rc = set_err(err, err_len, -errno, "relay: %s%s", strerror(errno), "");
	}
	if (rc == 0) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
		if (epoll_ctl(r->efd, EPOLL_CTL_ADD, r->wake, &ev) < 0)
			rc = set_err(err, err_len, -errno, "relay: %s%s", strerror(errno), "");
	}
	if (rc < 0) {
		mead_relay_free(r);
		return rc;
	}
	*ret = r;
	return 0;
}

const char *mead_relay_endpoint(const struct mead_relay *r)
{
	return r->endpoint;
}

int mead_relay_fd(const struct mead_relay *r)
{
	return r->lfd;
}

int mead_relay_accept(struct mead_relay *r, int *ret_fd, char *peer, size_t peer_len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd, one = 1;

	for (;;) {
		fd = accept4(r->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0)
			break;
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		return -errno;
	}
	char a[INET6_ADDRSTRLEN] = "";
	if (ss.ss_family == AF_INET) {
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, a, sizeof(a));
		snprintf(peer, peer_len, "%s:%u", a, ntohs(((struct sockaddr_in *)&ss)->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, a, sizeof(a));
		snprintf(peer, peer_len, "[%s]:%u", a, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
	} else {
		struct ucred cr;
		socklen_t cl = sizeof(cr);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0)
			snprintf(peer, peer_len, "pid %ld", (long)cr.pid);
		else
			snprintf(peer, peer_len, "local");
	}
	atomic_fetch_add(&r->accepted, 1);
	*ret_fd = fd;
	return 0;
}

static int buf_init(struct buf *b, size_t cap)
{
	b->data = malloc(cap);
	b->cap = cap;
	b->head = b->tail = 0;
	return b->data ? 0 : -ENOMEM;
}

static void pair_free(struct pair *q)
{
	if (q->cfd >= 0)
		close(q->cfd);
	if (q->qfd >= 0)
		close(q->qfd);
	free(q->to_client.data);
	free(q->to_queue.data);
	free(q);
}

int mead_relay_add(struct mead_relay *r, int client_fd, int queue_fd)
{
	struct pair *q = calloc(1, sizeof(*q));
	uint64_t one = 1;

	if (!q) {
		close(client_fd);
		close(queue_fd);
		return -ENOMEM;
	}
	q->cfd = client_fd;
	q->qfd = queue_fd;
	if (buf_init(&q->to_client, TO_CLIENT_BYTES) < 0 || buf_init(&q->to_queue, TO_QUEUE_BYTES) < 0) {
		pair_free(q);
		return -ENOMEM;
	}
	pthread_mutex_lock(&r->lock);
	q->next = r->pending;
	r->pending = q;
	pthread_mutex_unlock(&r->lock);
	if (write(r->wake, &one, sizeof(one)) < 0) {
		/* the counter is already non-zero: the thread will look */
	}
	return 0;
}

/* Reads from fd into b while there is room; 1 at end of stream, <0 on error. */
static int fill(int fd, struct buf *b)
{
	if (b->head == b->tail)
		b->head = b->tail = 0;
	while (b->tail < b->cap) {
		ssize_t n = recv(fd, b->data + b->tail, b->cap - b->tail, 0);
		if (n > 0) {
			b->tail += (size_t)n;
			continue;
		}
		if (n == 0)
			return 1;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	}
	return 0;
}

/* Writes what b holds to fd until the kernel takes no more; <0 on error. */
static int flush(int fd, struct buf *b, _Atomic uint64_t *count)
{
	while (b->head < b->tail) {
		ssize_t n = send(fd, b->data + b->head, b->tail - b->head, MSG_NOSIGNAL);
		if (n > 0) {
			b->head += (size_t)n;
			if (count)
				atomic_fetch_add_explicit(count, (uint64_t)n, memory_order_relaxed);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return n < 0 ? -errno : -EIO;
	}
	b->head = b->tail = 0;
	return 0;
}

static void watch(struct mead_relay *r, struct pair *q, bool queue_side, uint32_t want)
{
	uint32_t *have = queue_side ? &q->qev : &q->cev;
	struct epoll_event ev = { .events = want, .data.ptr = (void *)((uintptr_t)q | (queue_side ? SIDE_QUEUE : 0)) };

	if (want == *have)
		return;
	epoll_ctl(r->efd, EPOLL_CTL_MOD, queue_side ? q->qfd : q->cfd, &ev);
	*have = want;
}

/* The queue's socket closed: what it sent before is still read as room
 * allows, but it is watched no more (a hung-up descriptor is reported
 * whatever events are asked for). */
static void queue_closed(struct mead_relay *r, struct pair *q)
{
	if (q->queue_eof)
		return;
	q->queue_eof = true;
	q->flush_deadline_ns = mead_now_ns() + FLUSH_GRACE_NS;
	epoll_ctl(r->efd, EPOLL_CTL_DEL, q->qfd, NULL);
}

/* Moves what can move; false when the pair is finished. */
static bool pump(struct mead_relay *r, struct pair *q)
{
	int rc;

	rc = fill(q->cfd, &q->to_queue);
	if (rc != 0)
		return false;                  /* the client left (or broke): nothing more to send it */
	if (!q->queue_eof && flush(q->qfd, &q->to_queue, NULL) < 0)
		queue_closed(r, q);
	if (!q->queue_drained) {
		rc = fill(q->qfd, &q->to_client);
		if (rc != 0) {
			q->queue_drained = true;
			queue_closed(r, q);
		}
	}
	if (flush(q->cfd, &q->to_client, &r->bytes_out) < 0)
		return false;
	if (q->queue_drained && q->to_client.head == q->to_client.tail)
		return false;
	if (q->queue_eof && mead_now_ns() >= q->flush_deadline_ns)
		return false;
	/* read only where there is room to put it: a client that does not
	 * read stops the reading of its own queue, nothing else */
	watch(r, q, false, (q->to_queue.tail < q->to_queue.cap ? EPOLLIN : 0) |
			   (q->to_client.head < q->to_client.tail ? EPOLLOUT : 0));
	if (!q->queue_eof)
		watch(r, q, true, (q->to_client.tail < q->to_client.cap ? EPOLLIN : 0) |
				  (q->to_queue.head < q->to_queue.tail ? EPOLLOUT : 0));
	return true;
}

static void drop(struct mead_relay *r, struct pair *q)
{
	struct pair **pp;

	for (pp = &r->open; *pp && *pp != q; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = q->next;
	epoll_ctl(r->efd, EPOLL_CTL_DEL, q->cfd, NULL);
	if (!q->queue_eof)
		epoll_ctl(r->efd, EPOLL_CTL_DEL, q->qfd, NULL);
	pair_free(q);
	atomic_fetch_sub(&r->n_open, 1);
}

static void take_pending(struct mead_relay *r)
{
	struct pair *list, *q;
	uint64_t v;

	if (read(r->wake, &v, sizeof(v)) < 0) {
		/* nothing signalled: look anyway */
	}
	pthread_mutex_lock(&r->lock);
	list = r->pending;
	r->pending = NULL;
	pthread_mutex_unlock(&r->lock);
	while ((q = list)) {
		list = q->next;
		struct epoll_event ce = { .events = 0, .data.ptr = q };
		struct epoll_event qe = { .events = 0, .data.ptr = (void *)((uintptr_t)q | SIDE_QUEUE) };
		if (epoll_ctl(r->efd, EPOLL_CTL_ADD, q->cfd, &ce) < 0 || epoll_ctl(r->efd, EPOLL_CTL_ADD, q->qfd, &qe) < 0) {
			epoll_ctl(r->efd, EPOLL_CTL_DEL, q->cfd, NULL);
			pair_free(q);
			continue;
		}
		q->next = r->open;
		r->open = q;
		atomic_fetch_add(&r->n_open, 1);
		if (!pump(r, q))
			drop(r, q);
	}
}

static void *relay_thread(void *arg)
{
	struct mead_relay *r = arg;
	struct epoll_event evs[64];

	for (;;) {
		int n = epoll_wait(r->efd, evs, 64, 50);
		for (int i = 0; i < n; i++) {
			if (!evs[i].data.ptr) {
				take_pending(r);
				continue;
			}
			struct pair *q = (struct pair *)((uintptr_t)evs[i].data.ptr & ~(uintptr_t)SIDE_QUEUE);
			bool queue_side = (uintptr_t)evs[i].data.ptr & SIDE_QUEUE;
			/* a pair dropped earlier in this batch is not in the open list */
			bool live = false;
			for (struct pair *o = r->open; o; o = o->next)
				if (o == q) {
					live = true;
					break;
				}
			if (!live)
				continue;
			if (!queue_side && (evs[i].events & (EPOLLHUP | EPOLLERR))) {
				drop(r, q);
				continue;
			}
			if (queue_side && (evs[i].events & (EPOLLHUP | EPOLLERR)))
				queue_closed(r, q);
			if (!pump(r, q))
				drop(r, q);
		}
		/* grace periods run out without an event */
		uint64_t now = mead_now_ns();
		for (struct pair *q = r->open, *nx; q; q = nx) {
			nx = q->next;
			if (q->queue_eof && now >= q->flush_deadline_ns)
				drop(r, q);
		}
		if (atomic_load(&r->draining)) {
			take_pending(r);
			if (!r->open || now >= atomic_load(&r->drain_deadline_ns))
				break;
		}
	}
	while (r->open)
		drop(r, r->open);
	return NULL;
}

int mead_relay_start(struct mead_relay *r)
{
	sigset_t all, old;
	int rc;

	if (!r || r->started)
		return -EINVAL;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = -pthread_create(&r->thread, NULL, relay_thread, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0)
		return rc;
	pthread_setname_np(r->thread, "mead-relay");
	r->started = true;
	return 0;
}

void mead_relay_drain(struct mead_relay *r, int timeout_ms)
{
	uint64_t one = 1;

	if (!r || !r->started || r->joined)
		return;
	atomic_store(&r->drain_deadline_ns, mead_now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000ull);
	atomic_store(&r->draining, true);
	if (write(r->wake, &one, sizeof(one)) < 0) {
		/* already signalled */
	}
	pthread_join(r->thread, NULL);
	r->joined = true;
}

void mead_relay_free(struct mead_relay *r)
{
	if (!r)
		return;
	mead_relay_drain(r, 0);
	while (r->pending) {
		struct pair *q = r->pending;
		r->pending = q->next;
		pair_free(q);
	}
	if (r->lfd >= 0)
		close(r->lfd);
	if (r->unlink_path[0])
		unlink(r->unlink_path);
	if (r->efd >= 0)
		close(r->efd);
	if (r->wake >= 0)
		close(r->wake);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

void mead_relay_get_counters(const struct mead_relay *rc, struct mead_relay_counters *ret)
{
	struct mead_relay *r = (struct mead_relay *)rc;
	ret->accepted = atomic_load_explicit(&r->accepted, memory_order_relaxed);
	ret->open = atomic_load_explicit(&r->n_open, memory_order_relaxed);
	ret->bytes_out = atomic_load_explicit(&r->bytes_out, memory_order_relaxed);
}
