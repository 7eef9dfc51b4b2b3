/* SPDX-License-Identifier: MIT */
/*
 * Where mead-readout's messages come from: anything that yields wire-v1
 * three-frame messages (topic, header, payload) in order.  A live ZMQ SUB
 * socket is one source; a recording file is another.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mead/wire.h"

/* One wire-v1 message as a source hands it over: its three frames, the
 * header decoded, the others borrowed from the source. */
struct mead_source_msg {
	const char *topic;      /* not terminated */
	size_t topic_len;
	struct mead_wire_header hdr; /* host order */
	const void *payload;
	size_t payload_len;
};

struct mead_source {
	/* 1: *msg filled, valid until the next call; 0: nothing within
	 * timeout_ms (or a signal interrupted the wait); -ENODATA: the input
	 * ended; another negative errno: failure.  Messages that are not
	 * wire v1 (frame count, header) are skipped and counted in *bad. */
	int (*next)(struct mead_source *s, struct mead_source_msg *msg, int timeout_ms);
	void (*free)(struct mead_source *s);
	uint64_t bad;
	/* A recording's metadata JSON (rig description), NULL for a socket. */
	const char *meta;
	size_t meta_len;
};

static inline void mead_source_free(struct mead_source *s)
{
	if (s)
		s->free(s);
}

/* SUB socket connected to endpoint, subscribed to spikes, events, status. */
int mead_source_zmq_new(const char *endpoint, struct mead_source **ret, char *err, size_t err_len);

/* A recording file (docs/recording.md, lib/core/recording.h): header,
 * then length-prefixed, CRC-checked records each holding one published
 * message.  A damaged record is skipped (counted in bad) and reading goes
 * on at the next valid one; a torn tail ends the input. */
int mead_source_recording_new(const char *path, struct mead_source **ret, char *err, size_t err_len);
