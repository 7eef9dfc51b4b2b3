/* SPDX-License-Identifier: MIT */
/*
 * The streams' front door.  One ZMQ_XPUB socket cannot tell which of its
 * subscribers' queues is full: with ZMQ_XPUB_NODROP one full queue refuses
 * the message for everyone, without it the full queue drops silently.  So
 * the publisher gives every subscriber an XPUB socket of its own (bound on
 * a private ipc path), and this relay carries each client connection's
 * bytes between the endpoint the clients know (tcp:// or ipc://, bound
 * here) and that socket.  ZMTP and CURVE pass through untouched: a client
 * talks to libzmq exactly as it would without the relay.
 *
 * Threads: mead_relay_listen/accept/add/free from the publisher's thread;
 * the relay thread moves the bytes (epoll, non-blocking, never waits on a
 * client: a client that stops reading fills its own buffers, then its own
 * socket's queue, and only its own messages are refused).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct mead_relay;

/* Binds and listens on endpoint: tcp://HOST:PORT (HOST an address, [IPv6],
 * *, an interface or a host name; PORT a number or * for any free one) or
 * ipc://PATH (ipc://@NAME: abstract).  Anything else is an error naming it. */
int mead_relay_listen(const char *endpoint, struct mead_relay **ret, char *err, size_t err_len);
/* The endpoint bound, a "*" port resolved. */
const char *mead_relay_endpoint(const struct mead_relay *r);
/* The listening socket: readable when a client waits to be accepted. */
int mead_relay_fd(const struct mead_relay *r);
/* The next waiting client (non-blocking, close-on-exec) or -EAGAIN.  peer:
 * "ADDRESS:PORT", or "pid N" for a local (ipc) client. */
int mead_relay_accept(struct mead_relay *r, int *ret_fd, char *peer, size_t peer_len);
int mead_relay_start(struct mead_relay *r);
/* The relay thread owns both descriptors from here and closes them: when
 * the client goes, or once the queue side has closed and what it sent has
 * reached the client (or could not within 2 s). */
int mead_relay_add(struct mead_relay *r, int client_fd, int queue_fd);
/* Waits until every connection has ended as above, at most timeout_ms,
 * then ends the thread. */
void mead_relay_drain(struct mead_relay *r, int timeout_ms);
void mead_relay_free(struct mead_relay *r);

struct mead_relay_counters {
	uint64_t accepted;      /* client connections accepted */
	uint64_t open;          /* connections being relayed now */
	uint64_t bytes_out;     /* bytes written to clients */
};
void mead_relay_get_counters(const struct mead_relay *r, struct mead_relay_counters *ret);
