/* SPDX-License-Identifier: MIT */
/*
 * Publisher: a normal (non real-time) thread that drains the loop's output
 * ring (struct mead_msg + records) and publishes each message as a wire v1
 * three-frame message on one ZMQ_XPUB socket, hands the same bytes to the
 * recorder, and publishes a status message at least once a second.
 *
 * Real-time mode: the loop never waits for anything here.  A subscriber
 * that cannot keep up makes the socket refuse the message (ZMQ_XPUB_NODROP
 * with ZMQ_DONTWAIT); the refusal is counted per topic as an HWM drop and
 * shows up downstream as a seq gap.  Messages the loop could not even put
 * into its ring are counted by the loop (and are seq gaps too).
 *
 * Virtual-clock mode: nothing is dropped.  Sends are retried until the
 * socket takes them and the recorder ring is waited for, so the output ring
 * fills and the loop waits: the slowest consumer sets the pace.
 *
 * Subscribers: the socket is an XPUB with verbose (un)subscription
 * reporting, so every subscription message a client sends is seen.  A
 * subscriber counts as connected once its subscription has arrived; one
 * client subscribing to three topics counts three.  wait_subscribers N
 * holds the first message back until N subscriptions are active.
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
	uint64_t published[MEAD_KIND_COUNT + 1];   /* accepted by the socket */
	uint64_t hwm_dropped[MEAD_KIND_COUNT + 1]; /* refused by the socket (slow subscriber) */
	uint64_t discarded[MEAD_KIND_COUNT + 1];   /* topics not enabled (raw off), malformed */
	uint64_t bytes;                            /* payload + header bytes published */
	uint64_t subscriptions;                    /* active subscriptions now */
	uint64_t subscribers;                      /* connected peers now */
	uint64_t subscribe_events, unsubscribe_events;
	uint64_t status_errors;                    /* status callback failed */
	uint64_t last_seq[MEAD_KIND_COUNT + 1];    /* seq of the last message seen per kind */
	uint64_t handshakes_failed;                /* connections refused before any subscription (CURVE, protocol) */
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
/* The endpoint actually bound (resolves a "*" port). */
const char *mead_publisher_endpoint(const struct mead_publisher *p);
/* Whether the socket is a CURVE server (subscribers need an authorised key). */
bool mead_publisher_is_curve(const struct mead_publisher *p);
