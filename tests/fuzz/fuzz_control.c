/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: one control request, as it arrives on the control socket.
 *
 * control.c exposes mead_control_handle(), which turns one request string
 * into a reply and (when valid) one command for the loop, with no socket
 * involved (mead_control_new with bind = false).  The loop is replaced by
 * the two functions control.c calls on it (mead_loop_submit,
 * mead_loop_reclaim), and the protocol by mead_protocol_free and
 * mead_protocol_describe, so every command that gets through can be
 * checked here.
 *
 * Each input is:
 *  1. parsed by mead_json_parse directly, with the request limits and with
 *     wide ones, and the tree walked (sizes, terminators, unique keys);
 *  2. handled by a daemon with a loop, a 16-electrode layout (electrode 0
 *     excluded) and configured limits, into a reply buffer of 4 KiB;
 *  3. handled again with lower driver caps (amplitude, phase): with a full
 *     command queue into a 24-byte reply buffer; with a fast-rate
 *     configuration (1 kHz, where pulses can outlast the period); with a
 *     safety hook that refuses;
 *  4. handled by a daemon with no loop, and by one whose driver cannot
 *     stimulate.
 *
 * Invariants: every reply is one terminated JSON object with a boolean
 * "ok"; a failed request carries an "error" string and queues nothing; a
 * successful stop/halt/start queues exactly one command; every queued
 * stimulation train satisfies every limit (the interlock property); only
 * "shutdown" sets stop_requested; each protocol built for a request is
 * either queued or freed.
 */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/control.h"
#include "daemon/daemon.h"
#include "lib/core/json.h"
#include "protocol/protocol.h"
#include "tests/fuzz/fuzz_common.h"

/* ---- the loop and protocol entry points control.c uses ---- */

struct mead_loop {
	int unused;
};

static struct mead_loop the_loop;
static struct {
	struct mead_command cmds[4];
	unsigned n_cmds;
	bool full;
	unsigned made, freed, queued_protocols;
} st;

static int dummy_protocol[2];

int mead_loop_submit(struct mead_loop *loop, const struct mead_command *cmd)
{
	FUZZ_CHECK(loop == &the_loop, "submit to an unknown loop");
	if (st.full)
		return -ENOBUFS;
	FUZZ_CHECK(st.n_cmds < 4, "one request queued several commands");
	st.cmds[st.n_cmds++] = *cmd;
	if (cmd->type == MEAD_CMD_START_PROTOCOL)
		st.queued_protocols++;
	return 0;
}

struct mead_protocol *mead_loop_reclaim(struct mead_loop *loop)
{
	return NULL;
}

/* Reclaim never hands a protocol back here, so nothing describes one. */
int mead_protocol_describe(const struct mead_protocol *p, char *buf, size_t len)
{
	FUZZ_CHECK(0, "describing a protocol the loop never gave back");
	return -EINVAL;
}

void mead_protocol_free(struct mead_protocol *p)
{
	if (!p)
		return;
	FUZZ_CHECK(p == (struct mead_protocol *)&dummy_protocol[0] || p == (struct mead_protocol *)&dummy_protocol[1],
		   "freeing a protocol that was never built");
	st.freed++;
}

static int make_protocol(void *ctx, const char *name, struct mead_protocol **ret, char *err, size_t len)
{
	if (strcmp(name, "random") == 0 || strcmp(name, "mnist") == 0) {
		*ret = (struct mead_protocol *)&dummy_protocol[name[0] == 'm'];
		st.made++;
		return name[0] == 'm' ? 0 : 1;
	}
	snprintf(err, len, "no protocol named \"%s\" is configured", name);
	return -ENOENT;
}

static int status_json(void *ctx, char *buf, size_t len)
{
	return snprintf(buf, len, "{\"state\":\"running\",\"ticks\":42,\"driver\":\"twin\"}");
}

static int refuse_stim;

static int stim_check(void *ctx, const struct mead_command *cmd, char *err, size_t len)
{
	if (!refuse_stim)
		return 0;
	snprintf(err, len, "interlock engaged");
	return -EPERM;
}

/* ---- the daemon requests are checked against ---- */

#define N_ELECTRODES 16
static struct mead_electrode electrodes[N_ELECTRODES];
static struct mead_layout_view layout = { 4, 4, N_ELECTRODES, 200.0f, electrodes };

static const struct mead_stim_limits limits = {
	.max_amplitude_ua = 10.0f, .max_phase_us = 400, .max_interphase_us = 500, .max_pulses = 100,
	.max_rate_hz = 100.0, .max_electrodes = 8, .max_charge_nc = 3.0,
};
/* A fast-rate configuration, where a train's pulses can outlast its period. */
static const struct mead_stim_limits fast_limits = {
	.max_amplitude_ua = 10.0f, .max_phase_us = 400, .max_interphase_us = 1000, .max_pulses = 100,
	.max_rate_hz = 1000.0, .max_electrodes = 8, .max_charge_nc = 3.0,
};

static void setup_layout(void)
{
	memset(electrodes, 0, sizeof(electrodes));
	for (int i = 0; i < N_ELECTRODES; i++) {
		electrodes[i].row = (uint16_t)(i / 4);
		electrodes[i].col = (uint16_t)(i % 4);
		snprintf(electrodes[i].label, sizeof(electrodes[i].label), "%c%d", 'A' + i % 4, 1 + i / 4);
	}
	electrodes[0].excluded = true;
}

/* ---- checks ---- */

static bool input_has_nul_escape;

static void walk(const struct mead_json *doc, const struct mead_json_value *v, uint32_t depth, uint32_t *nodes,
		 const struct mead_json_limits *lim)
{
	uint32_t n = 0;

	(*nodes)++;
	FUZZ_CHECK(depth <= lim->max_depth, "depth %u over the limit %u", depth, lim->max_depth);
	switch (v->type) {
	case MEAD_JSON_NULL:
	case MEAD_JSON_BOOL:
		break;
	case MEAD_JSON_NUMBER:
		FUZZ_CHECK(isfinite(v->num), "non-finite number accepted");
		if (v->is_int)
			FUZZ_CHECK((double)v->i == v->num || fabs((double)v->i - v->num) <= fabs(v->num) * 1e-15,
				   "integer %lld and number %.17g disagree", (long long)v->i, v->num);
		break;
	case MEAD_JSON_STRING:
		FUZZ_CHECK(v->s && v->n <= lim->max_string, "string of %u bytes", v->n);
		FUZZ_CHECK(v->s[v->n] == '\0', "string not terminated");
		break;
	case MEAD_JSON_ARRAY:
	case MEAD_JSON_OBJECT:
		for (const struct mead_json_value *m = mead_json_first(doc, v); m; m = mead_json_next(doc, m), n++) {
			FUZZ_CHECK(n < v->n, "more members than the %u counted", v->n);
			if (v->type == MEAD_JSON_OBJECT) {
				FUZZ_CHECK(m->key != NULL, "object member without a key");
				FUZZ_CHECK(strlen(m->key) <= lim->max_string, "key over the limit");
				/* Duplicate keys are refused, so looking m's key up finds m
				 * (unless keys differ only after an escaped NUL). */
				FUZZ_CHECK(mead_json_get(doc, v, m->key) == m || input_has_nul_escape,
					   "key \"%s\" found twice", m->key);
			} else {
				FUZZ_CHECK(mead_json_at(doc, v, n) == m, "array index %u", n);
			}
			walk(doc, m, depth + 1, nodes, lim);
		}
		FUZZ_CHECK(n == v->n, "%u members counted, %u found", v->n, n);
		if (v->type == MEAD_JSON_ARRAY)
			FUZZ_CHECK(mead_json_at(doc, v, n) == NULL, "array index past the end");
		break;
	default:
		FUZZ_CHECK(0, "unknown node type %d", (int)v->type);
	}
}

static void parse_direct(const uint8_t *data, size_t size, const struct mead_json_limits *lim)
{
	struct mead_json *doc = (struct mead_json *)&the_loop;
	char err[200];
	uint32_t nodes = 0;
	int rc;

	memset(err, 0x55, sizeof(err));
	rc = mead_json_parse((const char *)data, size, lim, &doc, err, sizeof(err));
	if (rc < 0) {
		FUZZ_CHECK(rc == -EINVAL || rc == -ENOMEM || rc == -E2BIG, "parse returned %d", rc);
		FUZZ_CHECK(doc == (struct mead_json *)&the_loop, "failed parse wrote its result");
		FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL, "error text not terminated");
		FUZZ_CHECK(rc != -EINVAL || err[0] != '\0', "-EINVAL without a message");
		return;
	}
	FUZZ_CHECK(size <= lim->max_input, "%zu bytes accepted over the %zu limit", size, lim->max_input);
	walk(doc, mead_json_root(doc), 0, &nodes, lim);
	FUZZ_CHECK(nodes <= lim->max_nodes, "%u nodes over the limit %u", nodes, lim->max_nodes);
	mead_json_free(doc);
}

static void check_train(const struct mead_command *c, const struct mead_stim_limits *lim)
{
	double period_us, charge;

	FUZZ_CHECK(c->train.n_electrodes >= 1 && c->train.n_electrodes <= lim->max_electrodes,
		   "%u electrodes", c->train.n_electrodes);
	for (uint32_t i = 0; i < c->train.n_electrodes; i++) {
		uint16_t e = c->train.electrodes[i];
		FUZZ_CHECK(e < N_ELECTRODES, "electrode %u outside the layout", e);
		FUZZ_CHECK(!electrodes[e].excluded, "excluded electrode %u stimulated", e);
		for (uint32_t j = 0; j < i; j++)
			FUZZ_CHECK(c->train.electrodes[j] != e, "electrode %u twice", e);
	}
	FUZZ_CHECK(c->train.amplitude_ua != 0.0f && isfinite(c->train.amplitude_ua), "amplitude %g",
		   (double)c->train.amplitude_ua);
	FUZZ_CHECK(fabsf(c->train.amplitude_ua) <= lim->max_amplitude_ua, "amplitude %g over %g",
		   (double)c->train.amplitude_ua, (double)lim->max_amplitude_ua);
	FUZZ_CHECK(c->train.phase_us >= 1 && c->train.phase_us <= lim->max_phase_us, "phase %u", c->train.phase_us);
	FUZZ_CHECK(c->train.interphase_us <= lim->max_interphase_us, "interphase %u", c->train.interphase_us);
	FUZZ_CHECK(c->train.pulses >= 1 && c->train.pulses <= lim->max_pulses, "pulses %u", c->train.pulses);
	FUZZ_CHECK(c->train.rate_hz > 0 && c->train.rate_hz <= lim->max_rate_hz, "rate %g", c->train.rate_hz);
	period_us = 1e6 / c->train.rate_hz;
	FUZZ_CHECK(2.0 * c->train.phase_us + c->train.interphase_us < period_us, "pulse longer than its period");
	charge = fabs((double)c->train.amplitude_ua) * c->train.phase_us / 1000.0;
	FUZZ_CHECK(charge <= lim->max_charge_nc * (1 + 1e-6), "charge %g nC over %g", charge, lim->max_charge_nc);
}

static const char *request_cmd(const uint8_t *data, size_t size, char *buf, size_t len)
{
	struct mead_json *doc;
	const struct mead_json_value *cmd;

	buf[0] = '\0';
	if (mead_json_parse((const char *)data, size, NULL, &doc, NULL, 0) < 0)
		return buf;
	cmd = mead_json_get(doc, mead_json_root(doc), "cmd");
	if (cmd && cmd->type == MEAD_JSON_STRING)
		snprintf(buf, len, "%s", cmd->s);
	mead_json_free(doc);
	return buf;
}

/* Control objects live for the whole process (as in a daemon): their
 * counters are compared before and after each request. */
static struct mead_control *ctl, *ctl_fast;
static struct mead_daemon daemon_;

static void handle(struct mead_control *c, const uint8_t *data, size_t size, size_t reply_len,
		   const struct mead_stim_limits *lim)
{
	static const struct mead_json_limits reply_lim = { 1u << 20, 16, 1u << 16, 1u << 16 };
	struct mead_daemon *d = &daemon_;
	struct mead_control_counters before, after;
	char err[256], cmd_name[32];
	char *reply = malloc(reply_len);
	struct mead_json *doc;
	const struct mead_json_value *ok, *e;
	int n;

	FUZZ_CHECK(reply, "out of memory");
	st.n_cmds = 0;
	st.made = st.freed = st.queued_protocols = 0;
	atomic_store(&d->stop_requested, 0);

	mead_control_get_counters(c, &before);
	n = mead_control_handle(c, (const char *)data, size, reply, reply_len);
	FUZZ_CHECK(n > 0 && (size_t)n < reply_len, "reply length %d for a %zu-byte buffer", n, reply_len);
	FUZZ_CHECK(strlen(reply) == (size_t)n, "reply length %d, text %zu", n, strlen(reply));
	mead_control_get_counters(c, &after);
	FUZZ_CHECK(after.requests == before.requests + 1 && after.ok + after.errors == before.ok + before.errors + 1,
		   "counters did not count the request once");

	FUZZ_CHECK(mead_json_parse(reply, (size_t)n, &reply_lim, &doc, err, sizeof(err)) == 0,
		   "reply is not JSON (%s): %s", err, reply);
	FUZZ_CHECK(mead_json_root(doc)->type == MEAD_JSON_OBJECT, "reply is not an object: %s", reply);
	ok = mead_json_get(doc, mead_json_root(doc), "ok");
	FUZZ_CHECK(ok && ok->type == MEAD_JSON_BOOL, "reply without a boolean \"ok\": %s", reply);
	FUZZ_CHECK(ok->b == (after.ok == before.ok + 1), "\"ok\" disagrees with the counters: %s", reply);
	request_cmd(data, size, cmd_name, sizeof(cmd_name));

	if (!ok->b) {
		e = mead_json_get(doc, mead_json_root(doc), "error");
		FUZZ_CHECK(reply_len < 64 || (e && e->type == MEAD_JSON_STRING && e->n > 0),
			   "error reply without a reason: %s", reply);
		FUZZ_CHECK(st.n_cmds == 0, "a refused request queued a command: %s", reply);
		FUZZ_CHECK(atomic_load(&d->stop_requested) == 0 || strcmp(cmd_name, "shutdown") == 0,
			   "a refused request stopped the daemon");
	} else {
		FUZZ_CHECK(d->loop || st.n_cmds == 0, "a command queued without a loop");
		if (strcmp(cmd_name, "stop") == 0 || strcmp(cmd_name, "halt") == 0 || strcmp(cmd_name, "start") == 0 ||
		    strcmp(cmd_name, "stim") == 0)
			FUZZ_CHECK(st.n_cmds == 1, "\"%s\" accepted, %u commands queued", cmd_name, st.n_cmds);
		else
			FUZZ_CHECK(st.n_cmds == 0, "\"%s\" queued %u commands", cmd_name, st.n_cmds);
		for (unsigned i = 0; i < st.n_cmds; i++) {
			const struct mead_command *q = &st.cmds[i];
			if (strcmp(cmd_name, "stim") == 0) {
				FUZZ_CHECK(q->type == MEAD_CMD_STIM_TRAIN, "stim queued type %u", q->type);
				check_train(q, lim);
			} else if (strcmp(cmd_name, "start") == 0) {
				FUZZ_CHECK(q->type == MEAD_CMD_START_PROTOCOL && q->start.protocol, "start queued type %u",
					   q->type);
			} else {
				FUZZ_CHECK(q->type == (strcmp(cmd_name, "stop") == 0 ? MEAD_CMD_STOP_PROTOCOL : MEAD_CMD_STOP_ALL),
					   "%s queued type %u", cmd_name, q->type);
			}
		}
		FUZZ_CHECK(atomic_load(&d->stop_requested) == (strcmp(cmd_name, "shutdown") == 0),
			   "stop_requested after \"%s\"", cmd_name);
	}
	FUZZ_CHECK(st.made == st.freed + st.queued_protocols, "protocols: %u built, %u freed, %u queued", st.made,
		   st.freed, st.queued_protocols);
	mead_json_free(doc);
	free(reply);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct mead_json_limits wide = { 1u << 20, 64, 1u << 16, 1u << 16 };
	static const struct mead_driver_ops no_stim_ops = { .name = "null" };
	const struct mead_json_limits request = MEAD_JSON_REQUEST_LIMITS;
	struct mead_stim_limits lim = limits;
	struct mead_daemon *d = &daemon_;

	input_has_nul_escape = memmem(data, size, "\\u0000", 6) != NULL;
	if (!ctl) {
		struct mead_control_params p = {
			.limits = limits,
			.make_protocol = make_protocol,
			.status_json = status_json,
			.stim_check = stim_check,
		};
		char err[256];

		setup_layout();
		FUZZ_CHECK(mead_control_new(&p, d, false, &ctl, err, sizeof(err)) == 0, "control: %s", err);
		p.limits = fast_limits;
		FUZZ_CHECK(mead_control_new(&p, d, false, &ctl_fast, err, sizeof(err)) == 0, "control: %s", err);
	}
	parse_direct(data, size, &request);
	parse_direct(data, size, &wide);

	/* A daemon with a loop and a driver that can stimulate. */
	d->layout = &layout;
	d->loop = &the_loop;
	d->driver.ops = NULL;
	d->driver.caps.flags = MEAD_CAP_STIMULATE;
	d->driver.caps.max_amplitude_ua = 100.0f;
	d->driver.caps.max_phase_us = 0;
	st.full = false;
	refuse_stim = 0;
	handle(ctl, data, size, 4096, &lim);

	/* Lower driver caps: a full queue into a tiny reply buffer, then a
	 * fast-rate configuration, then a refusing safety hook. */
	d->driver.caps.max_amplitude_ua = 2.5f;
	d->driver.caps.max_phase_us = 100;
	lim.max_amplitude_ua = 2.5f;
	lim.max_phase_us = 100;
	st.full = true;
	handle(ctl, data, size, 24, &lim);
	st.full = false;
	{
		struct mead_stim_limits fast = fast_limits;
		fast.max_amplitude_ua = 2.5f;
		fast.max_phase_us = 100;
		handle(ctl_fast, data, size, 4096, &fast);
	}
	refuse_stim = 1;
	handle(ctl, data, size, 4096, &lim);
	refuse_stim = 0;

	/* No loop. */
	d->loop = NULL;
	d->driver.caps.flags = MEAD_CAP_STIMULATE;
	handle(ctl, data, size, 4096, &lim);

	/* A driver that cannot stimulate. */
	d->loop = &the_loop;
	d->driver.ops = &no_stim_ops;
	d->driver.caps.flags = 0;
	handle(ctl, data, size, 4096, &lim);
	return 0;
}
