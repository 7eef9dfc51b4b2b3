/* SPDX-License-Identifier: MIT */
#include "readout/source.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "lib/core/err.h"

struct zmq_source {
	struct mead_source base;
	void *ctx, *sock;
	zmq_msg_t frames[3];
	bool frames_live;
};

static void release_frames(struct zmq_source *z)
{
	if (!z->frames_live)
		return;
	for (int i = 0; i < 3; i++)
		zmq_msg_close(&z->frames[i]);
	z->frames_live = false;
}

static void drain_rest(void *sock)
{
	int more = 1;
	size_t sz = sizeof(more);
	zmq_msg_t m;
	while (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) == 0 && more) {
		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, sock, 0) < 0) {
			zmq_msg_close(&m);
			return;
		}
		zmq_msg_close(&m);
	}
}

static int zmq_next(struct mead_source *s, struct mead_source_msg *msg, int timeout_ms)
{
	struct zmq_source *z = (struct zmq_source *)s;
	release_frames(z);
	for (;;) {
		zmq_pollitem_t it = {.socket = z->sock, .events = ZMQ_POLLIN};
		int r = zmq_poll(&it, 1, timeout_ms);
		if (r < 0)
			return errno == EINTR ? 0 : -errno;
		if (r == 0)
			return 0;
		int n = 0;
		bool ok = true;
		for (n = 0; n < 3; n++) {
			zmq_msg_init(&z->frames[n]);
			if (zmq_msg_recv(&z->frames[n], z->sock, 0) < 0) {
				int e = errno;
				for (int i = 0; i <= n; i++)
					zmq_msg_close(&z->frames[i]);
				return e == EINTR ? 0 : -e;
			}
			if (n < 2 && !zmq_msg_more(&z->frames[n])) {
				ok = false;
				n++;
				break;
			}
		}
		if (ok && zmq_msg_more(&z->frames[2])) {
			drain_rest(z->sock);
			ok = false;
		}
		if (ok && mead_wire_header_decode(zmq_msg_data(&z->frames[1]), zmq_msg_size(&z->frames[1]),
						  &msg->hdr) < 0)
			ok = false;
		if (!ok) {
			for (int i = 0; i < n; i++)
				zmq_msg_close(&z->frames[i]);
			s->bad++;
			/* The next message may already be waiting. */
			timeout_ms = 0;
			continue;
		}
		z->frames_live = true;
		msg->topic = zmq_msg_data(&z->frames[0]);
		msg->topic_len = zmq_msg_size(&z->frames[0]);
		msg->payload = zmq_msg_data(&z->frames[2]);
		msg->payload_len = zmq_msg_size(&z->frames[2]);
		return 1;
	}
}

static void zmq_source_free(struct mead_source *s)
{
	struct zmq_source *z = (struct zmq_source *)s;
	release_frames(z);
	if (z->sock)
		zmq_close(z->sock);
	if (z->ctx)
		zmq_ctx_term(z->ctx);
	free(z);
}

int mead_source_zmq_new(const char *endpoint, struct mead_source **ret, char *err, size_t err_len)
{
	struct zmq_source *z = calloc(1, sizeof(*z));
	if (!z)
		return -ENOMEM;
	z->base.next = zmq_next;
	z->base.free = zmq_source_free;
	z->ctx = zmq_ctx_new();
	z->sock = z->ctx ? zmq_socket(z->ctx, ZMQ_SUB) : NULL;
	if (!z->sock) {
		int e = errno;
		mead_set_err(err, err_len, "zmq socket: %s", zmq_strerror(e));
		zmq_source_free(&z->base);
		return -e;
	}
	/* A virtual-clock run publishes far faster than real time: queue
	 * rather than drop while the readout is busy fitting. */
	int hwm = 0, linger = 0;
	zmq_setsockopt(z->sock, ZMQ_RCVHWM, &hwm, sizeof(hwm));
	zmq_setsockopt(z->sock, ZMQ_LINGER, &linger, sizeof(linger));
	static const char *const topics[] = {"spikes", "events", "status"};
	for (size_t i = 0; i < 3; i++)
		zmq_setsockopt(z->sock, ZMQ_SUBSCRIBE, topics[i], strlen(topics[i]));
	if (zmq_connect(z->sock, endpoint) < 0) {
		int e = errno;
		mead_set_err(err, err_len, "connect %s: %s", endpoint, zmq_strerror(e));
		zmq_source_free(&z->base);
		return -e;
	}
	*ret = &z->base;
	return 0;
}
