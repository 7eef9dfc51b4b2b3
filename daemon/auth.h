/* SPDX-License-Identifier: MIT */
/*
 * Access control for the control and stream sockets: ZeroMQ CURVE with a
 * ZAP handler (RFC 27).  The daemon holds one server key pair; a client may
 * connect only if its public key is in the authorised-keys file.
 *
 * libzmq accepts every client key when a CURVE server's context has no ZAP
 * handler, so the handler is bound in its own context before any socket is
 * secured, and mead_curve_server_setup() refuses a context without one.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "lib/core/keys.h"

#define MEAD_ZAP_ENDPOINT "inproc://zeromq.zap.01"

/* ZAP domains the daemon's sockets announce; the handler counts by them. */
#define MEAD_AUTH_DOMAIN_CONTROL "control"
#define MEAD_AUTH_DOMAIN_STREAMS "streams"

struct mead_auth;

typedef void (*mead_auth_log_fn)(void *ctx, int prio, const char *msg);

struct mead_auth_params {
	const char *server_secret_key_file;   /* exactly one key */
	const char *authorized_keys_file;     /* at least one key */
	mead_auth_log_fn log;                 /* called from the handler thread; NULL ok */
	void *log_ctx;
};

struct mead_auth_domain_counters {
	uint64_t accepted;   /* handshakes whose client key is authorised */
	uint64_t refused;    /* handshakes with any other key or mechanism */
};

struct mead_auth_counters {
	struct mead_auth_domain_counters control, streams, other;
	uint64_t malformed;  /* ZAP requests that broke RFC 27 (refused) */
};

/* Loads and validates both key files; starts nothing. */
int mead_auth_new(const struct mead_auth_params *params, struct mead_auth **ret, char *err, size_t err_len);
/* Creates the ZeroMQ context, binds the ZAP handler in it and starts its thread. */
int mead_auth_start(struct mead_auth *a, char *err, size_t err_len);
/* Ends the handler thread.  Every socket secured through the context must
 * be closed first; mead_auth_free() then terminates the context. */
int mead_auth_stop(struct mead_auth *a);
void mead_auth_free(struct mead_auth *a);

/* The context whose sockets the handler vets (NULL before start). */
void *mead_auth_zmq_ctx(const struct mead_auth *a);
const uint8_t *mead_auth_server_secret(const struct mead_auth *a);
/* The server's public key, Z85, NUL-terminated (41 bytes). */
const char *mead_auth_server_public_z85(const struct mead_auth *a);
size_t mead_auth_key_count(const struct mead_auth *a);
void mead_auth_get_counters(const struct mead_auth *a, struct mead_auth_counters *ret);

/* true for endpoints other machines cannot reach: ipc://, inproc://,
 * tcp:// on 127.0.0.0/8, ::1 or localhost. */
bool mead_auth_endpoint_is_local(const char *endpoint);

/*
 * Makes sock a CURVE server announcing domain.  ctx must be the context
 * sock was made in; it must hold a ZAP handler (mead_auth_start), checked
 * here by trying to bind the ZAP endpoint: if that succeeds nobody else
 * holds it and every client would be let in.  Call before binding sock.
 */
static inline int mead_curve_server_setup(void *ctx, void *sock, const uint8_t *secret, const char *domain,
					  char *err, size_t err_len)
{
	int one = 1, rc = 0;
	void *probe;

	if (!ctx || !sock || !secret || !domain)
		return -EINVAL;
	if (!zmq_has("curve")) {
		snprintf(err, err_len, "this libzmq was built without CURVE");
		return -ENOTSUP;
	}
	probe = zmq_socket(ctx, ZMQ_REP);
	if (!probe) {
		rc = -errno;
		snprintf(err, err_len, "ZAP check: %s", zmq_strerror(errno));
		return rc;
	}
	if (zmq_bind(probe, MEAD_ZAP_ENDPOINT) == 0) {
		snprintf(err, err_len, "no ZAP handler in this context: CURVE would admit any client");
		rc = -EPERM;
	} else if (errno != EADDRINUSE) {
		rc = -errno;
		snprintf(err, err_len, "ZAP check: %s", zmq_strerror(errno));
	}
	zmq_close(probe);
	if (rc < 0)
		return rc;
	if (zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, domain, strlen(domain)) < 0 ||
	    zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof(one)) < 0 ||
	    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret, MEAD_KEY_BYTES) < 0) {
		rc = -errno;
		snprintf(err, err_len, "CURVE socket options: %s", zmq_strerror(errno));
		return rc;
	}
	return 0;
}

/* Handshake failures a socket monitor reports: no CURVE, a wrong server
 * key, a refused client key, garbage. */
#define MEAD_EVENT_HANDSHAKE_FAILED \
	(ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
