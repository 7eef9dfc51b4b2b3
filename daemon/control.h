/* SPDX-License-Identifier: MIT */
/*
 * Control: the REP socket of the wire contract.  Each request is one JSON
 * object with a "cmd"; each reply one JSON object with "ok".  Requests are
 * parsed strictly (lib/core/json.h), validated completely, and only then
 * turned into a command for the loop, so a malformed, unknown or unsafe
 * request changes nothing.  No request names a file or a program: the only
 * things a client can pick are configured protocol names, electrodes of the
 * configured layout and numbers inside the limits.
 *
 * Commands (docs/streams.md has examples): ping, help, status,
 * start {protocol}, stop, halt, stim {electrodes, amplitude_ua, phase_us,
 * interphase_us, pulses, rate_hz}, shutdown.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/loop.h"
#include "daemon/publisher.h"

struct mead_daemon;
struct mead_protocol;
struct mead_control;

#define MEAD_DEFAULT_CONTROL_ENDPOINT "tcp://127.0.0.1:5556"
#define MEAD_CONTROL_MAX_REQUEST 16384

/* Limits every stim request is checked against before it reaches the
 * loop.  The effective limit is the smaller of these and the driver's caps
 * (where the driver gives one).  Zero fields fall back to the defaults
 * below (deliberately conservative). */
struct mead_stim_limits {
	float max_amplitude_ua;        /* |first phase|; default 50 */
	uint32_t max_phase_us;         /* default 500 */
	uint32_t max_interphase_us;    /* default 1000 */
	uint32_t max_pulses;           /* per request; default 1000 */
	double max_rate_hz;            /* default 200 */
	uint32_t max_electrodes;       /* per request; default and cap MEAD_CMD_MAX_ELECTRODES */
	double max_charge_nc;          /* per phase, |amplitude| x phase; default 25 nC */
};

/* A further check (the safety layer) after the built-in ones: 0 allows,
 * a negative errno refuses with err as the reason given to the client. */
typedef int (*mead_stim_check_fn)(void *ctx, const struct mead_command *cmd, char *err, size_t err_len);

/* Builds the configured protocol called name.  Returns its index among the
 * configured protocols (>= 0; reported as protocol.active in status) and
 * *ret, or a negative errno with err for the client ("no such protocol"). */
typedef int (*mead_make_protocol_fn)(void *ctx, const char *name, struct mead_protocol **ret,
				     char *err, size_t err_len);

struct mead_control_params {
	const char *endpoint;          /* NULL: MEAD_DEFAULT_CONTROL_ENDPOINT */
	struct mead_stim_limits limits;
	mead_stim_check_fn stim_check;
	void *stim_check_ctx;
	mead_make_protocol_fn make_protocol;
	void *protocol_ctx;
	mead_status_json_fn status_json;
	void *status_ctx;
	mead_log_fn log;               /* called from the control thread; NULL ok */
	void *log_ctx;
	/* Access control (daemon/auth.h): with curve_secret_key (32 bytes) the
	 * socket is a CURVE server whose clients the ZAP handler of zmq_ctx vets
	 * (domain "control"); zmq_ctx is then required and outlives the
	 * control socket.  Both NULL: a plain socket in a context of its own. */
	void *zmq_ctx;
	const uint8_t *curve_secret_key;
};

/* d: the loop, layout and caps requests are checked against; stop_requested
 * is what "shutdown" sets.  d->loop may be NULL (then only ping, help,
 * status, shutdown succeed).  endpoint NULL + bind false: no socket (tests). */
int mead_control_new(const struct mead_control_params *params, struct mead_daemon *d, bool bind,
		     struct mead_control **ret, char *err, size_t err_len);
int mead_control_start(struct mead_control *c);
int mead_control_stop(struct mead_control *c);
void mead_control_free(struct mead_control *c);
const char *mead_control_endpoint(const struct mead_control *c);
/* Whether the socket is a CURVE server (clients need an authorised key). */
bool mead_control_is_curve(const struct mead_control *c);

/* Handles one request (control thread; tests).  Writes a NUL-terminated
 * JSON reply and returns its length (replies that do not fit become a
 * short error reply). */
int mead_control_handle(struct mead_control *c, const char *req, size_t len, char *reply, size_t reply_len);

/* Frees protocols the loop let go of (control thread). */
void mead_control_reclaim(struct mead_control *c);

struct mead_control_counters {
	uint64_t requests, ok, errors;
	uint64_t stim_refused;         /* stim requests refused (limits, layout, safety) */
	uint64_t handshakes_failed;    /* connections refused before any request (CURVE, protocol) */
};
void mead_control_get_counters(const struct mead_control *c, struct mead_control_counters *ret);
