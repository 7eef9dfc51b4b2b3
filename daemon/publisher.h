/* SPDX-License-Identifier: MIT */
/*
 * Publisher: a normal (non real-time) thread that drains the loop's output
 * ring (struct mead_msg + records) and publishes each message as a wire v1
 * three-frame message to every subscriber, hands the same bytes to the
 * recorder, and publishes a status message at least once a second.
 *
 * One queue per subscriber: clients connect to the relay (daemon/relay.h),
 * which pipes each connection to an XPUB socket of its own (ZMQ_XPUB_NODROP,
 * streams.sndhwm messages, verbose subscriptions).  The publisher sends
 * each message to every subscriber whose subscriptions match its topic, and
 * a full queue refuses it for that subscriber only.
 *
 * Real-time mode: the loop never waits for anything here.  A message a
 * subscriber's queue refused is counted for that subscriber (and in
 * hwm_dropped, per topic) and shows up downstream as a seq gap for it
 * alone; every other subscriber and the recording get it.  Messages the
 * loop could not even put into its ring are counted by the loop (and are
 * seq gaps for everyone).
 *
 * Virtual-clock mode: nothing is dropped.  A send to a full queue is
 * retried until it is taken and the recorder ring is waited for, so the
 * output ring fills and the loop waits: the slowest subscriber sets the pace.
 * At stop the queues have stop_timeout_ms to deliver what they hold (real
 * time: 2 s).
 *
 * Subscribers: a subscriber is a client whose ZMTP handshake completed (the
 * socket monitor of its queue) and that has not disconnected.  Each
 * client's SUBSCRIBE messages reach its own queue, so subscriptions are
 * known per client.  wait_subscribers N holds the first message back until
 * N subscribers each have at least one subscription.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mead/wire.h"

struct mead_ring;
struct mead_recorder;
struct mead_publisher;

#define MEAD_DEFAULT_PUB_ENDPOINT "tcp://127.0.0.1:5555"

typedef int (*mead_status_json_fn)(void *ctx, char *buf, size_t len);
typedef void (*mead_log_fn)(void *ctx, int prio, const char *msg);

struct mead_publisher_params {
	const char *endpoint;          /* NULL: MEAD_DEFAULT_PUB_ENDPOINT; "tcp://127.0.0.1:*" picks a port */
	bool virtual_clock;            /* lossless, blocking (see above) */
	bool raw;                      /* publish the raw topic (streams.raw); off: raw messages are discarded */
	uint32_t wait_subscribers;     /* hold the first message until this many subscriptions */
	int sndhwm;                    /* messages queued per subscriber; 0: 10000 */
	const char *queue_dir;         /* where the per-subscriber sockets live (a private directory is made in it); NULL: $TMPDIR or /tmp */
	uint32_t status_interval_ms;   /* 0 or > 1000: 1000 */
	uint32_t idle_sleep_us;        /* sleep when the ring is empty; 0: 200 */
	uint32_t stop_timeout_ms;      /* virtual clock: give up a blocked send this long after stop; 0: 5000 */
	size_t status_max;             /* status JSON buffer; 0: 256 KiB */
	mead_log_fn log;               /* called from the publisher thread; NULL ok */
	void *log_ctx;
	/* Access control (daemon/auth.h): with curve_secret_key (32 bytes) the
	 * socket is a CURVE server whose clients the ZAP handler of zmq_ctx vets
	 * (domain "streams"); zmq_ctx is then required and outlives the
	 * publisher.  Both NULL: a plain socket in a context of its own. */
	void *zmq_ctx;
	const uint8_t *curve_secret_key;
};

struct mead_publisher_counters {
	uint64_t received[MEAD_KIND_COUNT + 1];    /* taken from the ring */
	uint64_t published[MEAD_KIND_COUNT + 1];   /* sent out (to every subscriber whose queue had room) */
	uint64_t hwm_dropped[MEAD_KIND_COUNT + 1]; /* refused by a subscriber's full queue, once per subscriber */
	uint64_t discarded[MEAD_KIND_COUNT + 1];   /* topics not enabled (raw off), malformed */
	uint64_t bytes;                            /* payload + header bytes published */
	uint64_t subscriptions;                    /* active subscriptions now */
	uint64_t subscribers;                      /* connected peers now */
	uint64_t subscribe_events, unsubscribe_events;
	uint64_t status_errors;                    /* status callback failed */
	uint64_t last_seq[MEAD_KIND_COUNT + 1];    /* seq of the last message seen per kind */
	uint64_t handshakes_failed;                /* connections refused before any subscription (CURVE, protocol) */
	uint64_t clients_accepted;                 /* connections accepted since the start */
};

/* One connected client, as status shows it. */
struct mead_publisher_client {
	uint32_t id;                               /* 1, 2, ... in order of connection */
	char peer[64];                             /* "127.0.0.1:40312", "[::1]:40312" or "pid 1234" (ipc) */
	double connected_s;                        /* since its connection was accepted */
	bool ready;                                /* handshake completed */
	uint32_t subscriptions;                    /* active SUBSCRIBEs */
	uint32_t topics;                           /* bit k set: it receives topic kind k */
	uint64_t sent[MEAD_KIND_COUNT + 1];        /* taken by its queue */
	uint64_t dropped[MEAD_KIND_COUNT + 1];     /* refused by its full queue: its seq gaps */
	double last_drop_s;                        /* seconds since its queue last refused one; <0 never */
};

int mead_publisher_new(const struct mead_publisher_params *params, struct mead_ring *in,
		       struct mead_recorder *rec, mead_status_json_fn status_json, void *status_ctx,
		       struct mead_publisher **ret, char *err, size_t err_len);
int mead_publisher_start(struct mead_publisher *p);
/* Any thread: until wait_subscribers subscriptions are active (or timeout_ms, <0 forever).
 * 0 or -ETIMEDOUT. */
int mead_publisher_wait_subscribers(struct mead_publisher *p, int timeout_ms);
/* main: publish everything still in the ring, one last status, then end the thread. */
int mead_publisher_stop(struct mead_publisher *p);
void mead_publisher_free(struct mead_publisher *p);

void mead_publisher_get_counters(const struct mead_publisher *p, struct mead_publisher_counters *ret);
/* Any thread: the connected clients, oldest first, at most max; returns how
 * many there are (may exceed max). */
size_t mead_publisher_clients(const struct mead_publisher *p, struct mead_publisher_client *out, size_t max);
/* The endpoint actually bound (resolves a "*" port). */
const char *mead_publisher_endpoint(const struct mead_publisher *p);
/* Whether the socket is a CURVE server (subscribers need an authorised key). */
bool mead_publisher_is_curve(const struct mead_publisher *p);
