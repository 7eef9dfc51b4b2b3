/* SPDX-License-Identifier: MIT */
#include "daemon/control.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <zmq.h>

#include "mead-build-config.h"

#include "daemon/auth.h"
#include "daemon/daemon.h"
#include "lib/core/json.h"
#include "lib/core/parse.h"
#include "protocol/protocol.h"

#define STATUS_MAX (256u << 10)
#define MAX_PROTOCOL_NAME 64

struct mead_control {
	struct mead_control_params p;
	struct mead_daemon *d;
	void *ctx, *sock;
	bool own_ctx, curve;
	void *monitor;               /* PAIR end of the socket monitor: failed handshakes */
	char endpoint[256];
	pthread_t thread;
	bool started, joined;
	_Atomic bool stop;
	uint32_t next_id;
	char *reply;
	_Atomic uint64_t requests, ok, errors, handshakes_failed;
	_Atomic uint64_t stim_refused;   /* stim requests answered ok:false */
};

struct req {
	struct mead_control *c;
	struct mead_json *doc;
	const struct mead_json_value *root;
	struct mead_jw w;
	char err[256];
	bool applied;                /* something changed: the reply must say ok */
};

static int reply_error(struct req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int reply_error(struct req *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->err, sizeof(r->err), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Every field of a request must be one the command knows. */
static int only_fields(struct req *r, const char *cmd, const char *const *allowed)
{
	for (const struct mead_json_value *m = mead_json_first(r->doc, r->root); m; m = mead_json_next(r->doc, m)) {
		bool known = strcmp(m->key, "cmd") == 0;
		for (size_t i = 0; !known && allowed[i]; i++)
			known = strcmp(m->key, allowed[i]) == 0;
		if (!known)
			return reply_error(r, "unknown field \"%.40s\" for %s", m->key, cmd);
	}
	return 0;
}

static int get_uint(struct req *r, const char *key, bool required, uint32_t def, uint32_t min, uint32_t max,
		    uint32_t *ret)
{
	const struct mead_json_value *v = mead_json_get(r->doc, r->root, key);
	if (!v) {
		if (required)
			return reply_error(r, "missing field \"%s\"", key);
		*ret = def;
		return 0;
	}
	if (v->type != MEAD_JSON_NUMBER || !v->is_int)
		return reply_error(r, "\"%s\" must be an integer", key);
	if (v->i < (int64_t)min || v->i > (int64_t)max)
		return reply_error(r, "\"%s\" = %" PRId64 " is outside [%" PRIu32 ", %" PRIu32 "]", key, v->i, min, max);
	*ret = (uint32_t)v->i;
	return 0;
}

static int get_number(struct req *r, const char *key, double *ret)
{
	const struct mead_json_value *v = mead_json_get(r->doc, r->root, key);
	if (!v)
		return reply_error(r, "missing field \"%s\"", key);
	if (v->type != MEAD_JSON_NUMBER)
		return reply_error(r, "\"%s\" must be a number", key);
	*ret = v->num;
	return 0;
}

static void ok_begin(struct req *r)
{
	mead_jw_obj_begin(&r->w);
	mead_jw_key(&r->w, "ok");
	mead_jw_bool(&r->w, true);
}

static int cmd_ping(struct req *r)
{
	static const char *const f[] = { NULL };
	if (only_fields(r, "ping", f) < 0)
		return -EINVAL;
	ok_begin(r);
	mead_jw_key(&r->w, "pong");
	mead_jw_bool(&r->w, true);
	mead_jw_key(&r->w, "version");
	mead_jw_str(&r->w, MEAD_VERSION);
	mead_jw_key(&r->w, "wire_version");
	mead_jw_u64(&r->w, MEAD_WIRE_VERSION);
	mead_jw_obj_end(&r->w);
	return 0;
}

static int cmd_help(struct req *r)
{
	static const char *const f[] = { NULL };
	static const char *const cmds[] = {
		"ping", "help", "status", "start {protocol}", "stop", "halt",
		"stim {electrodes, amplitude_ua, phase_us, interphase_us, pulses, rate_hz}", "shutdown",
		"threshold {electrode (index or \"all\"), value (\"6x\" or \"-40uV\")}",
	};
	if (only_fields(r, "help", f) < 0)
		return -EINVAL;
	ok_begin(r);
	mead_jw_key(&r->w, "commands");
	mead_jw_arr_begin(&r->w);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		mead_jw_str(&r->w, cmds[i]);
	mead_jw_arr_end(&r->w);
	mead_jw_obj_end(&r->w);
	return 0;
}

static int cmd_status(struct req *r)
{
	static const char *const f[] = { NULL };
	struct mead_control *c = r->c;
	char *buf;
	int n;

	if (only_fields(r, "status", f) < 0)
		return -EINVAL;
	if (!c->p.status_json)
		return reply_error(r, "status is not available");
	buf = malloc(STATUS_MAX);
	if (!buf)
		return reply_error(r, "out of memory");
	n = c->p.status_json(c->p.status_ctx, buf, STATUS_MAX);
	if (n < 2 || buf[0] != '{') {
		free(buf);
		return reply_error(r, "status could not be produced");
	}
	/* The reply is the status object itself with "ok" in front. */
	mead_jw_append(&r->w, "{\"ok\":true", 10);
	if (n > 2)
		mead_jw_append(&r->w, ",", 1);
	mead_jw_append(&r->w, buf + 1, (size_t)n - 1);
	free(buf);
	return 0;
}

static int submit(struct req *r, struct mead_command *cmd)
{
	struct mead_control *c = r->c;
	int rc;

	cmd->id = ++c->next_id;
	rc = mead_loop_submit(c->d->loop, cmd);
	if (rc == -ENOBUFS)
		return reply_error(r, "the loop's command queue is full; try again");
	if (rc == -EBUSY)
		return reply_error(r, "every train slot is playing a train; wait for one to end or send stop");
	if (rc < 0)
		return reply_error(r, "the loop refused the command: %s", strerror(-rc));
	r->applied = true;
	return 0;
}

static bool valid_name(const char *s, size_t n)
{
	if (n == 0 || n > MAX_PROTOCOL_NAME)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
		      ch == '-' || ch == '.'))
			return false;
	}
	return true;
}

static int cmd_start(struct req *r)
{
	static const char *const f[] = { "protocol", NULL };
	struct mead_control *c = r->c;
	const struct mead_json_value *v;
	struct mead_protocol *proto = NULL;
	struct mead_command cmd;
	char err[200] = "";
	int idx;

	if (only_fields(r, "start", f) < 0)
		return -EINVAL;
	v = mead_json_get(r->doc, r->root, "protocol");
	if (!v)
		return reply_error(r, "missing field \"protocol\" (the name of a configured protocol)");
	if (v->type != MEAD_JSON_STRING || !valid_name(v->s, v->n))
		return reply_error(r, "\"protocol\" must be a configured protocol name (letters, digits, _ - ., at most %d)",
				   MAX_PROTOCOL_NAME);
	if (!c->d->loop)
		return reply_error(r, "the loop is not running");
	if (!c->p.make_protocol)
		return reply_error(r, "this daemon has no configured protocols");
	idx = c->p.make_protocol(c->p.protocol_ctx, v->s, &proto, err, sizeof(err));
	if (idx < 0 || !proto)
		return reply_error(r, "cannot start protocol \"%s\": %s", v->s, err[0] ? err : strerror(idx < 0 ? -idx : EINVAL));
	memset(&cmd, 0, sizeof(cmd));
	cmd.type = MEAD_CMD_START_PROTOCOL;
	cmd.start.protocol = proto;
	cmd.start.index = idx;
	if (submit(r, &cmd) < 0) {
		mead_protocol_free(proto);
		return -EINVAL;
	}
	ok_begin(r);
	mead_jw_key(&r->w, "id");
	mead_jw_u64(&r->w, cmd.id);
	mead_jw_key(&r->w, "protocol");
	mead_jw_str(&r->w, v->s);
	mead_jw_key(&r->w, "index");
	mead_jw_i64(&r->w, idx);
	mead_jw_obj_end(&r->w);
	return 0;
}

static int cmd_simple(struct req *r, const char *name, uint32_t type)
{
	static const char *const f[] = { NULL };
	struct mead_command cmd;

	if (only_fields(r, name, f) < 0)
		return -EINVAL;
	if (!r->c->d->loop)
		return reply_error(r, "the loop is not running");
	memset(&cmd, 0, sizeof(cmd));
	cmd.type = type;
	if (submit(r, &cmd) < 0)
		return -EINVAL;
	ok_begin(r);
	mead_jw_key(&r->w, "id");
	mead_jw_u64(&r->w, cmd.id);
	mead_jw_obj_end(&r->w);
	return 0;
}

static void effective_limits(const struct mead_control *c, struct mead_stim_limits *l)
{
	const struct mead_driver_caps *caps = &c->d->driver.caps;

	*l = c->p.limits;
	if (!(l->max_amplitude_ua > 0)) l->max_amplitude_ua = 50.0f;
	if (!l->max_phase_us) l->max_phase_us = 500;
	if (!l->max_interphase_us) l->max_interphase_us = 1000;
	if (!l->max_pulses) l->max_pulses = 1000;
	if (!(l->max_rate_hz > 0)) l->max_rate_hz = 200.0;
	if (!l->max_electrodes || l->max_electrodes > MEAD_CMD_MAX_ELECTRODES) l->max_electrodes = MEAD_CMD_MAX_ELECTRODES;
	if (!(l->max_charge_nc > 0)) l->max_charge_nc = 25.0;
	if (caps->max_amplitude_ua > 0 && caps->max_amplitude_ua < l->max_amplitude_ua)
		l->max_amplitude_ua = caps->max_amplitude_ua;
	if (caps->max_phase_us && caps->max_phase_us < l->max_phase_us)
		l->max_phase_us = caps->max_phase_us;
}

static int cmd_stim(struct req *r)
{
	static const char *const f[] = { "electrodes", "amplitude_ua", "phase_us", "interphase_us", "pulses", "rate_hz", NULL };
	struct mead_control *c = r->c;
	const struct mead_layout_view *layout = c->d->layout;
	const struct mead_json_value *ev;
	struct mead_stim_limits lim;
	struct mead_command cmd;
	double amp, rate;
	uint32_t i = 0;

	if (only_fields(r, "stim", f) < 0)
		return -EINVAL;
	effective_limits(c, &lim);
	memset(&cmd, 0, sizeof(cmd));
	cmd.type = MEAD_CMD_STIM_TRAIN;

	ev = mead_json_get(r->doc, r->root, "electrodes");
	if (!ev)
		return reply_error(r, "missing field \"electrodes\"");
	if (ev->type != MEAD_JSON_ARRAY || ev->n == 0)
		return reply_error(r, "\"electrodes\" must be a non-empty array of electrode indexes");
	if (ev->n > lim.max_electrodes)
		return reply_error(r, "at most %" PRIu32 " electrodes per request", lim.max_electrodes);
	if (!layout || !layout->electrodes)
		return reply_error(r, "no electrode layout is configured");
	for (const struct mead_json_value *e = mead_json_first(r->doc, ev); e; e = mead_json_next(r->doc, e), i++) {
		if (e->type != MEAD_JSON_NUMBER || !e->is_int)
			return reply_error(r, "electrodes[%" PRIu32 "] must be an integer", i);
		if (e->i < 0 || e->i >= (int64_t)layout->count)
			return reply_error(r, "electrode %" PRId64 " is outside the layout (0..%" PRIu32 ")", e->i,
					   layout->count ? layout->count - 1 : 0);
		if (layout->electrodes[e->i].excluded)
			return reply_error(r, "electrode %" PRId64 " (%.8s) is excluded (reference/ground) and is never stimulated",
					   e->i, layout->electrodes[e->i].label);
		for (uint32_t j = 0; j < i; j++)
			if (cmd.train.electrodes[j] == (uint16_t)e->i)
				return reply_error(r, "electrode %" PRId64 " is listed twice", e->i);
		cmd.train.electrodes[i] = (uint16_t)e->i;
	}
	cmd.train.n_electrodes = i;

	if (get_number(r, "amplitude_ua", &amp) < 0)
		return -EINVAL;
	if (amp == 0.0)
		return reply_error(r, "\"amplitude_ua\" must not be 0");
	if (fabs(amp) > lim.max_amplitude_ua)
		return reply_error(r, "|amplitude_ua| = %g exceeds the limit of %g uA", fabs(amp), (double)lim.max_amplitude_ua);
	if (get_uint(r, "phase_us", true, 0, 1, lim.max_phase_us, &cmd.train.phase_us) < 0 ||
	    get_uint(r, "interphase_us", false, 0, 0, lim.max_interphase_us, &cmd.train.interphase_us) < 0 ||
	    get_uint(r, "pulses", true, 0, 1, lim.max_pulses, &cmd.train.pulses) < 0)
		return -EINVAL;
	if (get_number(r, "rate_hz", &rate) < 0)
		return -EINVAL;
	if (!(rate > 0) || rate > lim.max_rate_hz)
		return reply_error(r, "\"rate_hz\" = %g must be in (0, %g]", rate, lim.max_rate_hz);
	double pulse_us = 2.0 * cmd.train.phase_us + cmd.train.interphase_us;
	if (pulse_us >= 1e6 / rate)
		return reply_error(r, "pulses of %.0f us do not fit a %g Hz train (period %.0f us)", pulse_us, rate, 1e6 / rate);
	double charge_nc = fabs(amp) * cmd.train.phase_us / 1000.0;
	if (charge_nc > lim.max_charge_nc)
		return reply_error(r, "charge per phase %.3g nC exceeds the limit of %g nC", charge_nc, lim.max_charge_nc);
	if (c->d->driver.ops && !(c->d->driver.caps.flags & MEAD_CAP_STIMULATE))
		return reply_error(r, "the driver \"%s\" cannot stimulate", c->d->driver.ops->name);
	cmd.train.amplitude_ua = (float)amp;
	cmd.train.rate_hz = rate;
	if (c->p.stim_check) {
		char err[200] = "";
		int rc = c->p.stim_check(c->p.stim_check_ctx, &cmd, err, sizeof(err));
		if (rc < 0)
			return reply_error(r, "refused by the safety check: %s", err[0] ? err : strerror(-rc));
	}
	if (!c->d->loop)
		return reply_error(r, "the loop is not running");
	if (submit(r, &cmd) < 0)
		return -EINVAL;
	ok_begin(r);
	mead_jw_key(&r->w, "id");
	mead_jw_u64(&r->w, cmd.id);
	mead_jw_key(&r->w, "electrodes");
	mead_jw_arr_begin(&r->w);
	for (i = 0; i < cmd.train.n_electrodes; i++)
		mead_jw_u64(&r->w, cmd.train.electrodes[i]);
	mead_jw_arr_end(&r->w);
	mead_jw_key(&r->w, "pulses");
	mead_jw_u64(&r->w, cmd.train.pulses);
	mead_jw_key(&r->w, "duration_s");
	mead_jw_double(&r->w, (cmd.train.pulses - 1) / rate);
	mead_jw_key(&r->w, "charge_per_phase_nc");
	mead_jw_double(&r->w, charge_nc);
	mead_jw_obj_end(&r->w);
	return 0;
}

/* {"cmd":"threshold","electrode":N|"all","value":"6x"|"-40uV"}: applied
 * between ticks; the THRESHOLD event in the stream and the file says from
 * which sample. */
static int cmd_threshold(struct req *r)
{
	static const char *const f[] = { "electrode", "value", NULL };
	struct mead_control *c = r->c;
	const struct mead_layout_view *layout = c->d->layout;
	struct mead_command cmd;
	uint16_t electrode;
	int mode;
	double value;

	if (only_fields(r, "threshold", f) < 0)
		return -EINVAL;
	const struct mead_json_value *ev = mead_json_get(r->doc, r->root, "electrode");
	if (!ev)
		return reply_error(r, "missing field \"electrode\"");
	if (ev->type == MEAD_JSON_STRING && strcmp(ev->s, "all") == 0) {
		electrode = MEAD_EVENT_ALL_ELECTRODES;
	} else if (ev->type == MEAD_JSON_NUMBER && ev->is_int) {
		if (!layout || ev->i < 0 || ev->i >= (int64_t)layout->count)
			return reply_error(r, "electrode %" PRId64 " is outside the layout (0..%" PRIu32 ")", ev->i,
					   layout && layout->count ? layout->count - 1 : 0);
		electrode = (uint16_t)ev->i;
	} else {
		return reply_error(r, "\"electrode\" must be an electrode index or \"all\"");
	}
	const struct mead_json_value *vv = mead_json_get(r->doc, r->root, "value");
	if (!vv || vv->type != MEAD_JSON_STRING)
		return reply_error(r, "\"value\" must be a string: a multiple of the noise (\"6x\") or microvolts (\"-40uV\")");
	if (mead_parse_threshold(vv->s, &mode, &value) < 0)
		return reply_error(r, "\"value\" \"%.40s\" is not a threshold: %g to %gx the noise, or up to %g uV",
				   vv->s, MEAD_THRESHOLD_K_MIN, MEAD_THRESHOLD_K_MAX, MEAD_THRESHOLD_UV_MAX);
	if (!c->d->driver.ops || !(c->d->driver.caps.flags & MEAD_CAP_THRESHOLDS))
		return reply_error(r, "the driver \"%s\" detects no spikes from a signal: it has no thresholds",
				   c->d->driver.ops ? c->d->driver.ops->name : "none");
	if (!c->d->loop)
		return reply_error(r, "the loop is not running");
	memset(&cmd, 0, sizeof(cmd));
	cmd.type = MEAD_CMD_THRESHOLD;
	cmd.threshold.electrode = electrode;
	cmd.threshold.mode = (uint8_t)mode;
	cmd.threshold.value = (float)value;
	if (submit(r, &cmd) < 0)
		return -EINVAL;
	ok_begin(r);
	mead_jw_key(&r->w, "id");
	mead_jw_u64(&r->w, cmd.id);
	mead_jw_key(&r->w, "electrode");
	if (electrode == MEAD_EVENT_ALL_ELECTRODES)
		mead_jw_str(&r->w, "all");
	else
		mead_jw_u64(&r->w, electrode);
	mead_jw_key(&r->w, mode == MEAD_THRESHOLD_UV ? "uv" : "k");
	mead_jw_double(&r->w, value);
	mead_jw_obj_end(&r->w);
	return 0;
}

static int cmd_shutdown(struct req *r)
{
	static const char *const f[] = { NULL };
	if (only_fields(r, "shutdown", f) < 0)
		return -EINVAL;
	atomic_store(&r->c->d->stop_requested, 1);
	r->applied = true;
	ok_begin(r);
	mead_jw_key(&r->w, "stopping");
	mead_jw_bool(&r->w, true);
	mead_jw_obj_end(&r->w);
	return 0;
}

static int dispatch(struct req *r, const char *req, size_t len)
{
	const struct mead_json_value *cmd;
	char perr[200];
	int rc;

	rc = mead_json_parse(req, len, NULL, &r->doc, perr, sizeof(perr));
	if (rc < 0)
		return reply_error(r, "%s", rc == -ENOMEM ? "out of memory" : perr);
	r->root = mead_json_root(r->doc);
	if (r->root->type != MEAD_JSON_OBJECT)
		return reply_error(r, "a request is a JSON object with a \"cmd\" string");
	cmd = mead_json_get(r->doc, r->root, "cmd");
	if (!cmd || cmd->type != MEAD_JSON_STRING)
		return reply_error(r, "a request needs a \"cmd\" string");
	/* "ping\u0000x" must not pass for "ping". */
	if (memchr(cmd->s, '\0', cmd->n))
		return reply_error(r, "\"cmd\" contains a NUL character");
	if (strcmp(cmd->s, "ping") == 0) return cmd_ping(r);
	if (strcmp(cmd->s, "help") == 0) return cmd_help(r);
	if (strcmp(cmd->s, "status") == 0) return cmd_status(r);
	if (strcmp(cmd->s, "start") == 0) return cmd_start(r);
	if (strcmp(cmd->s, "stop") == 0) return cmd_simple(r, "stop", MEAD_CMD_STOP_PROTOCOL);
	if (strcmp(cmd->s, "halt") == 0) return cmd_simple(r, "halt", MEAD_CMD_STOP_ALL);
	if (strcmp(cmd->s, "stim") == 0) {
		int stim_rc = cmd_stim(r);
		if (stim_rc < 0 || !r->applied)
			atomic_fetch_add(&r->c->stim_refused, 1);
		return stim_rc;
	}
	if (strcmp(cmd->s, "shutdown") == 0) return cmd_shutdown(r);
	if (strcmp(cmd->s, "threshold") == 0) return cmd_threshold(r);
	return reply_error(r, "unknown command \"%.40s\" (try \"help\")", cmd->s);
}

int mead_control_handle(struct mead_control *c, const char *req, size_t len, char *reply, size_t reply_len)
{
	struct req r = { .c = c };
	int rc, n;

	atomic_fetch_add(&c->requests, 1);
	mead_jw_init(&r.w, reply, reply_len);
	rc = dispatch(&r, req, len);
	mead_json_free(r.doc);
	if (rc == 0 && mead_jw_finish(&r.w) < 0) {
		if (!r.applied) {
			rc = reply_error(&r, "the reply does not fit %zu bytes", reply_len);
		} else {
			/* The request took effect: say so, even if the details do not fit. */
			atomic_fetch_add(&c->ok, 1);
			if (reply_len == 0)
				return 0;
			snprintf(reply, reply_len, "{\"ok\":true}");
			return (int)strnlen(reply, reply_len);
		}
	}
	if (rc < 0) {
		atomic_fetch_add(&c->errors, 1);
		mead_jw_init(&r.w, reply, reply_len);
		mead_jw_obj_begin(&r.w);
		mead_jw_key(&r.w, "ok");
		mead_jw_bool(&r.w, false);
		mead_jw_key(&r.w, "error");
		mead_jw_str(&r.w, r.err);
		mead_jw_obj_end(&r.w);
	} else {
		atomic_fetch_add(&c->ok, 1);
	}
	n = mead_jw_finish(&r.w);
	if (n < 0 && reply_len > 0) {
		snprintf(reply, reply_len, "{\"ok\":false}");
		n = (int)strnlen(reply, reply_len);
	}
	return n;
}

/* A protocol comes back once the loop has let go of it (finished or
 * stopped), so its results can be read here without racing the loop; the
 * log keeps them for a run nobody was watching. */
void mead_control_reclaim(struct mead_control *c)
{
	struct mead_protocol *p;
	char msg[2048];
	static const char prefix[] = "protocol: ";

	if (!c->d->loop)
		return;
	while ((p = mead_loop_reclaim(c->d->loop))) {
		memcpy(msg, prefix, sizeof(prefix));
		if (c->p.log && mead_protocol_describe(p, msg + sizeof(prefix) - 1, sizeof(msg) - sizeof(prefix) + 1) > 0)
			c->p.log(c->p.log_ctx, LOG_NOTICE, msg);
		mead_protocol_free(p);
	}
}

/* A refused client never reaches the REP socket; only the monitor sees it. */
static void poll_monitor(struct mead_control *c)
{
	for (;;) {
		zmq_msg_t ev, addr;
		uint16_t id = 0;

		zmq_msg_init(&ev);
		if (zmq_msg_recv(&ev, c->monitor, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&ev);
			return;
		}
		if (zmq_msg_size(&ev) >= 2)
			memcpy(&id, zmq_msg_data(&ev), 2);
		zmq_msg_close(&ev);
		zmq_msg_init(&addr);
		zmq_msg_recv(&addr, c->monitor, 0);   /* second frame: the endpoint */
		zmq_msg_close(&addr);
		if (id & MEAD_EVENT_HANDSHAKE_FAILED)
			atomic_fetch_add(&c->handshakes_failed, 1);
	}
}

static void *control_thread(void *arg)
{
	struct mead_control *c = arg;
	char *req = malloc(MEAD_CONTROL_MAX_REQUEST);

	while (req && !atomic_load_explicit(&c->stop, memory_order_acquire)) {
		zmq_pollitem_t it[2] = { { .socket = c->sock, .events = ZMQ_POLLIN },
					 { .socket = c->monitor, .events = ZMQ_POLLIN } };
		int more = 0, n;
		size_t more_len = sizeof(more), len;
		bool too_big = false, multipart = false;

		mead_control_reclaim(c);
		if (zmq_poll(it, c->monitor ? 2 : 1, 100) <= 0)
			continue;
		if (c->monitor)
			poll_monitor(c);
		if (!(it[0].revents & ZMQ_POLLIN))
			continue;
		n = zmq_recv(c->sock, req, MEAD_CONTROL_MAX_REQUEST, ZMQ_DONTWAIT);
		if (n < 0)
			continue;
		too_big = n > MEAD_CONTROL_MAX_REQUEST;
		len = too_big ? 0 : (size_t)n;
		/* A REP socket must answer once per request: swallow extra frames. */
		while (zmq_getsockopt(c->sock, ZMQ_RCVMORE, &more, &more_len) == 0 && more) {
			char sink[256];
			multipart = true;
			if (zmq_recv(c->sock, sink, sizeof(sink), 0) < 0)
				break;
		}
		if (too_big || multipart) {
			const char *e = too_big ? "{\"ok\":false,\"error\":\"request larger than 16384 bytes\"}"
						: "{\"ok\":false,\"error\":\"a request is exactly one frame\"}";
			atomic_fetch_add(&c->requests, 1);
			atomic_fetch_add(&c->errors, 1);
			zmq_send(c->sock, e, strlen(e), 0);
			continue;
		}
		n = mead_control_handle(c, req, len, c->reply, STATUS_MAX + 1024);
		if (zmq_send(c->sock, c->reply, (size_t)n, 0) < 0 && c->p.log)
			c->p.log(c->p.log_ctx, LOG_WARNING, "control: reply not sent");
	}
	free(req);
	mead_control_reclaim(c);
	return NULL;
}

int mead_control_new(const struct mead_control_params *params, struct mead_daemon *d, bool bind,
		     struct mead_control **ret, char *err, size_t err_len)
{
	struct mead_control *c;
	int rc;

	if (!params || !d || !ret)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->p = *params;
	c->p.endpoint = NULL;
	c->p.curve_secret_key = NULL;
	c->d = d;
	c->reply = malloc(STATUS_MAX + 1024);
	if (!c->reply) {
		rc = -ENOMEM;
		goto fail;
	}
	if (bind) {
		const char *ep = params->endpoint ? params->endpoint : MEAD_DEFAULT_CONTROL_ENDPOINT;
		int linger = 0;
		size_t elen = sizeof(c->endpoint);
		char mon[64], why[160];
		if (params->curve_secret_key && !params->zmq_ctx) {
			snprintf(err, err_len, "control: CURVE needs the ZAP handler's context");
			rc = -EINVAL;
			goto fail;
		}
		c->own_ctx = !params->zmq_ctx;
		c->ctx = c->own_ctx ? zmq_ctx_new() : params->zmq_ctx;
		c->sock = c->ctx ? zmq_socket(c->ctx, ZMQ_REP) : NULL;
		if (!c->sock) {
			rc = -errno;
			snprintf(err, err_len, "control: socket: %s", zmq_strerror(errno));
			goto fail;
		}
		zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof(linger));
		if (params->curve_secret_key) {
			rc = mead_curve_server_setup(c->ctx, c->sock, params->curve_secret_key, MEAD_AUTH_DOMAIN_CONTROL,
						     why, sizeof(why));
			if (rc < 0) {
				snprintf(err, err_len, "control: %s", why);
				goto fail;
			}
			c->curve = true;
		}
		snprintf(mon, sizeof(mon), "inproc://mead-control-monitor-%p", (void *)c);
		c->monitor = zmq_socket(c->ctx, ZMQ_PAIR);
		if (!c->monitor || zmq_socket_monitor(c->sock, mon, MEAD_EVENT_HANDSHAKE_FAILED) < 0 ||
		    zmq_connect(c->monitor, mon) < 0) {
			rc = -errno;
			snprintf(err, err_len, "control: socket monitor: %s", zmq_strerror(errno));
			goto fail;
		}
		if (zmq_bind(c->sock, ep) < 0) {
			rc = -errno;
			snprintf(err, err_len, "control: bind %s: %s", ep, zmq_strerror(errno));
			goto fail;
		}
		if (zmq_getsockopt(c->sock, ZMQ_LAST_ENDPOINT, c->endpoint, &elen) < 0)
			snprintf(c->endpoint, sizeof(c->endpoint), "%s", ep);
	}
	*ret = c;
	return 0;
fail:
	mead_control_free(c);
	return rc;
}

int mead_control_start(struct mead_control *c)
{
	sigset_t all, old;
	int rc;

	if (!c || !c->sock || c->started)
		return -EINVAL;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = -pthread_create(&c->thread, NULL, control_thread, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0)
		return rc;
	pthread_setname_np(c->thread, "mead-control");
	c->started = true;
	return 0;
}

int mead_control_stop(struct mead_control *c)
{
	if (!c)
		return 0;
	atomic_store_explicit(&c->stop, true, memory_order_release);
	if (c->started && !c->joined) {
		pthread_join(c->thread, NULL);
		c->joined = true;
	}
	return 0;
}

void mead_control_free(struct mead_control *c)
{
	if (!c)
		return;
	mead_control_stop(c);
	if (c->sock) {
		zmq_socket_monitor(c->sock, NULL, 0);
		zmq_close(c->sock);
	}
	if (c->monitor)
		zmq_close(c->monitor);
	if (c->ctx && c->own_ctx)
		zmq_ctx_term(c->ctx);
	free(c->reply);
	free(c);
}

const char *mead_control_endpoint(const struct mead_control *c)
{
	return c->endpoint;
}

bool mead_control_is_curve(const struct mead_control *c)
{
	return c && c->curve;
}

void mead_control_get_counters(const struct mead_control *c, struct mead_control_counters *ret)
{
	struct mead_control *m = (struct mead_control *)c;
	ret->requests = atomic_load(&m->requests);
	ret->ok = atomic_load(&m->ok);
	ret->errors = atomic_load(&m->errors);
	ret->stim_refused = atomic_load(&m->stim_refused);
	ret->handshakes_failed = atomic_load(&m->handshakes_failed);
}
