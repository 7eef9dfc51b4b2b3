/* SPDX-License-Identifier: MIT */
#include "daemon/status.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mead-build-config.h"
#include "lib/core/time.h"

#include "daemon/auth.h"
#include "daemon/control.h"
#include "daemon/daemon.h"
#include "lib/core/json.h"
#include "daemon/loop.h"
#include "daemon/publisher.h"
#include "daemon/recorder.h"

static const char *loop_state_name(int s)
{
	switch (s) {
	case MEAD_LOOP_CREATED: return "created";
	case MEAD_LOOP_RUNNING: return "running";
	case MEAD_LOOP_STOPPING: return "stopping";
	case MEAD_LOOP_STOPPED: return "stopped";
	case MEAD_LOOP_FAULTED: return "faulted";
	}
	return "unknown";
}

static const char *exit_name(int e)
{
	switch (e) {
	case MEAD_EXIT_REQUESTED: return "requested";
	case MEAD_EXIT_MAX_TICKS: return "max_ticks";
	case MEAD_EXIT_PROTOCOL_DONE: return "protocol_done";
	case MEAD_EXIT_OVERRUN: return "overrun";
	case MEAD_EXIT_DRIVER_FAULT: return "driver_fault";
	}
	return "unknown";
}

void mead_status_layout(struct mead_jw *w, const struct mead_layout_view *l)
{
	if (!l) {
		mead_jw_null(w);
		return;
	}
	mead_jw_obj_begin(w);
	mead_jw_key(w, "rows");
	mead_jw_u64(w, l->rows);
	mead_jw_key(w, "cols");
	mead_jw_u64(w, l->cols);
	mead_jw_key(w, "count");
	mead_jw_u64(w, l->count);
	mead_jw_key(w, "pitch_um");
	mead_jw_float(w, l->pitch_um);
	mead_jw_key(w, "labels");
	mead_jw_arr_begin(w);
	for (uint32_t i = 0; l->electrodes && i < l->count; i++)
		mead_jw_strn(w, l->electrodes[i].label, strnlen(l->electrodes[i].label, sizeof(l->electrodes[i].label)));
	mead_jw_arr_end(w);
	mead_jw_key(w, "excluded");
	mead_jw_arr_begin(w);
	for (uint32_t i = 0; l->electrodes && i < l->count; i++)
		if (l->electrodes[i].excluded)
			mead_jw_u64(w, i);
	mead_jw_arr_end(w);
	mead_jw_obj_end(w);
}

/* A driver's describe() goes in verbatim only if it is one valid JSON
 * object: a broken driver must not make every status unreadable. */
static void driver_describe(struct mead_jw *w, const struct mead_daemon *d)
{
	static _Thread_local char buf[32768];
	struct mead_json *doc;
	int n;

	if (!d->driver.ops || !d->driver.ops->describe) {
		mead_jw_null(w);
		return;
	}
	n = d->driver.ops->describe(d->driver.state, buf, sizeof(buf));
	if (n < 0 || (size_t)n >= sizeof(buf)) {
		mead_jw_null(w);
		return;
	}
	static const struct mead_json_limits lim = { sizeof(buf), 16, 8192, 4096 };
	if (mead_json_parse(buf, (size_t)n, &lim, &doc, NULL, 0) < 0) {
		mead_jw_null(w);
		return;
	}
	bool obj = mead_json_root(doc)->type == MEAD_JSON_OBJECT;
	mead_json_free(doc);
	if (obj)
		mead_jw_raw(w, buf, (size_t)n);
	else
		mead_jw_null(w);
}

static void rig(struct mead_jw *w, const struct mead_daemon *d)
{
	const struct mead_driver_caps *c = &d->driver.caps;

	mead_jw_key(w, "driver_name");
	mead_jw_str(w, d->driver.ops ? d->driver.ops->name : NULL);
	mead_jw_key(w, "sample_rate_hz");
	mead_jw_u64(w, c->sample_rate_hz);
	mead_jw_key(w, "uv_per_count");
	mead_jw_float(w, c->uv_per_count);
	mead_jw_key(w, "raw_channels");
	mead_jw_u64(w, c->raw_channels);
	mead_jw_key(w, "electrode_count");
	mead_jw_u64(w, d->layout ? d->layout->count : c->electrode_count);
	/* the samples of each waveform record (topic waveforms), or null: none */
	mead_jw_key(w, "waveforms");
	if (c->flags & MEAD_CAP_WAVEFORMS) {
		mead_jw_obj_begin(w);
		mead_jw_key(w, "pre");
		mead_jw_u64(w, c->waveform_pre);
		mead_jw_key(w, "post");
		mead_jw_u64(w, c->waveform_post);
		mead_jw_key(w, "record_size");
		mead_jw_u64(w, mead_waveform_size(c->waveform_pre, c->waveform_post));
		mead_jw_obj_end(w);
	} else {
		mead_jw_null(w);
	}
	if (d->loop) {
		const struct mead_loop_params *lp = mead_loop_params(d->loop);
		mead_jw_key(w, "period_ns");
		mead_jw_u64(w, lp->period_ns);
		mead_jw_key(w, "virtual_clock");
		mead_jw_bool(w, lp->virtual_clock);
	}
	mead_jw_key(w, "layout");
	mead_status_layout(w, d->layout);
}

static void per_kind(struct mead_jw *w, const char *key, const uint64_t *v, bool with_raw)
{
	mead_jw_key(w, key);
	mead_jw_obj_begin(w);
	for (int k = 1; k <= MEAD_KIND_COUNT; k++) {
		if (k == MEAD_KIND_RAW && !with_raw)
			continue;
		mead_jw_key(w, mead_wire_topic((enum mead_wire_kind)k));
		mead_jw_u64(w, v[k]);
	}
	mead_jw_obj_end(w);
}

/* One counter of the loop's statistics as a member. */
static void kv_u64(struct mead_jw *w, const char *key, const _Atomic uint64_t *v)
{
	mead_jw_key(w, key);
	mead_jw_u64(w, atomic_load_explicit(v, memory_order_relaxed));
}

static void kv_i64(struct mead_jw *w, const char *key, const _Atomic int64_t *v)
{
	mead_jw_key(w, key);
	mead_jw_i64(w, atomic_load_explicit(v, memory_order_relaxed));
}

/* Each subscriber with its own queue's counters: who is losing, and how
 * much (docs/streams.md). */
#define STATUS_CLIENTS_MAX 64
#define STATUS_LOSING_S 2.0

static void stream_clients(struct mead_jw *w, const struct mead_publisher *pub)
{
	static _Thread_local struct mead_publisher_client cl[STATUS_CLIENTS_MAX];
	size_t n = mead_publisher_clients(pub, cl, STATUS_CLIENTS_MAX);
	size_t shown = n < STATUS_CLIENTS_MAX ? n : STATUS_CLIENTS_MAX;

	mead_jw_key(w, "clients");
	mead_jw_arr_begin(w);
	for (size_t i = 0; i < shown; i++) {
		const struct mead_publisher_client *c = &cl[i];
		mead_jw_obj_begin(w);
		mead_jw_key(w, "id");
		mead_jw_u64(w, c->id);
		mead_jw_key(w, "peer");
		mead_jw_str(w, c->peer);
		mead_jw_key(w, "connected_s");
		mead_jw_double(w, c->connected_s);
		mead_jw_key(w, "ready");
		mead_jw_bool(w, c->ready);
		mead_jw_key(w, "subscriptions");
		mead_jw_u64(w, c->subscriptions);
		mead_jw_key(w, "topics");
		mead_jw_arr_begin(w);
		for (int k = 1; k <= MEAD_KIND_COUNT; k++)
			if (c->topics & (1u << k))
				mead_jw_str(w, mead_wire_topic((enum mead_wire_kind)k));
		mead_jw_arr_end(w);
		per_kind(w, "sent", c->sent, true);
		per_kind(w, "dropped", c->dropped, true);
		mead_jw_key(w, "losing");
		mead_jw_bool(w, c->last_drop_s >= 0 && c->last_drop_s < STATUS_LOSING_S);
		mead_jw_key(w, "last_drop_s");
		if (c->last_drop_s >= 0)
			mead_jw_double(w, c->last_drop_s);
		else
			mead_jw_null(w);
		mead_jw_obj_end(w);
	}
	mead_jw_arr_end(w);
	if (n > shown) {
		mead_jw_key(w, "clients_not_listed");
		mead_jw_u64(w, n - shown);
	}
}

static void loop_stats(struct mead_jw *w, const struct mead_daemon *d, uint64_t produced[], uint64_t ring_dropped[])
{
	const struct mead_loop_stats *s = d->loop ? mead_loop_stats(d->loop) : NULL;

	mead_jw_key(w, "loop");
	if (!s) {
		mead_jw_null(w);
		return;
	}
	mead_jw_obj_begin(w);
	mead_jw_key(w, "state");
	mead_jw_str(w, loop_state_name(atomic_load(&s->state)));
	kv_u64(w, "ticks", &s->ticks);
	kv_u64(w, "sample", &s->sample);
	kv_u64(w, "overruns", &s->overruns);
	mead_jw_key(w, "worst_overrun_us");
	mead_jw_double(w, (double)atomic_load_explicit(&s->worst_overrun_ns, memory_order_relaxed) / 1e3);
	kv_u64(w, "sleep_errors", &s->sleep_errors);
	kv_u64(w, "driver_errors", &s->driver_errors);
	kv_u64(w, "virtual_waits", &s->virtual_waits);
	mead_jw_key(w, "rt_active");
	mead_jw_bool(w, atomic_load_explicit(&s->rt_active, memory_order_relaxed) != 0);
	mead_jw_key(w, "memory_locked");
	mead_jw_bool(w, atomic_load_explicit(&s->memory_locked, memory_order_relaxed) != 0);
	int st = atomic_load(&s->state);
	if (st == MEAD_LOOP_STOPPED || st == MEAD_LOOP_FAULTED) {
		mead_jw_key(w, "exit_reason");
		mead_jw_str(w, exit_name(atomic_load(&s->exit_reason)));
	}
	mead_jw_key(w, "latency_us");
	mead_jw_obj_begin(w);
	static const struct { const char *k; double p; } pct[] = {
		{ "p50", 50.0 }, { "p99", 99.0 }, { "p999", 99.9 },
	};
	for (size_t i = 0; i < sizeof(pct) / sizeof(pct[0]); i++) {
		double v = mead_loop_latency_percentile(s, pct[i].p);
		mead_jw_key(w, pct[i].k);
		if (v < 0)
			mead_jw_null(w);
		else
			mead_jw_double(w, v);
	}
	mead_jw_key(w, "max");
	mead_jw_double(w, (double)atomic_load_explicit(&s->lat_max_ns, memory_order_relaxed) / 1e3);
	mead_jw_obj_end(w);
	kv_u64(w, "spikes", &s->spikes);
	kv_u64(w, "spikes_dropped", &s->spikes_dropped);
	kv_u64(w, "waveforms", &s->waveforms);
	kv_u64(w, "waveforms_dropped", &s->waveforms_dropped);
	kv_u64(w, "stim_pulses", &s->stim_pulses);
	kv_u64(w, "stim_late", &s->stim_late);
	kv_u64(w, "stim_pending", &s->stim_pending);
	kv_u64(w, "stim_rejected", &s->stim_rejected);
	/* every reason a pulse was refused for, by name: only those that happened */
	mead_jw_key(w, "stim_refused");
	mead_jw_obj_begin(w);
	for (uint32_t r = 0; r < MEAD_LOOP_REASONS; r++) {
		uint64_t n = atomic_load_explicit(&s->stim_refused[r], memory_order_relaxed);
		const char *name = mead_stim_reason_name(r);
		if (n && name) {
			mead_jw_key(w, name);
			mead_jw_u64(w, n);
		}
	}
	mead_jw_obj_end(w);
	/* what the device lost or could not deliver in time, with the samples
	 * it covers: a quiet electrode is not a lost second */
	mead_jw_key(w, "data_loss");
	mead_jw_obj_begin(w);
	static const uint32_t loss_types[] = { MEAD_EVENT_OVERFLOW, MEAD_EVENT_GAP, MEAD_EVENT_LATE,
					       MEAD_EVENT_DEVICE_GONE, MEAD_EVENT_STALL, MEAD_EVENT_STIM_LOST,
					       MEAD_EVENT_UNREAD };
	for (size_t i = 0; i < sizeof(loss_types) / sizeof(loss_types[0]); i++) {
		mead_jw_key(w, mead_event_type_name(loss_types[i]));
		mead_jw_obj_begin(w);
		kv_u64(w, "events", &s->loss_events[loss_types[i]]);
		kv_u64(w, "samples", &s->loss_samples[loss_types[i]]);
		mead_jw_obj_end(w);
	}
	mead_jw_obj_end(w);
	kv_u64(w, "events_dropped", &s->events_dropped);
	kv_u64(w, "thresholds_set", &s->thresholds_set);
	kv_u64(w, "thresholds_refused", &s->thresholds_refused);
	mead_jw_key(w, "clock");
	mead_jw_obj_begin(w);
	mead_jw_key(w, "follows_device");
	mead_jw_bool(w, atomic_load_explicit(&s->device_clock, memory_order_relaxed) != 0);
	if (atomic_load_explicit(&s->device_clock, memory_order_relaxed)) {
		kv_u64(w, "acquired", &s->acquired);
		kv_i64(w, "backlog_samples", &s->backlog);
		kv_i64(w, "backlog_max_samples", &s->backlog_max);
		kv_i64(w, "startup_backlog_samples", &s->startup_backlog);
		mead_jw_key(w, "drift_ppm");
		mead_jw_double(w, mead_loop_bits_to_double(atomic_load_explicit(&s->drift_ppm_bits, memory_order_relaxed)));
	}
	mead_jw_obj_end(w);
	kv_u64(w, "protocol_errors", &s->protocol_errors);
	mead_jw_key(w, "device_gone");
	mead_jw_bool(w, atomic_load_explicit(&s->device_gone, memory_order_relaxed) != 0);
	kv_u64(w, "device_losses", &s->device_losses);
	mead_jw_obj_end(w);
	for (int k = 0; k <= MEAD_KIND_COUNT; k++) {
		produced[k] = atomic_load_explicit(&s->produced[k], memory_order_relaxed);
		ring_dropped[k] = atomic_load_explicit(&s->dropped[k], memory_order_relaxed);
	}
}

static void access_socket(struct mead_jw *w, const char *name, bool curve, const struct mead_auth_domain_counters *a,
			  uint64_t handshakes_failed)
{
	mead_jw_key(w, name);
	mead_jw_obj_begin(w);
	mead_jw_key(w, "curve");
	mead_jw_bool(w, curve);
	mead_jw_key(w, "accepted");
	mead_jw_u64(w, a->accepted);
	mead_jw_key(w, "refused");
	mead_jw_u64(w, a->refused);
	mead_jw_key(w, "handshakes_failed");
	mead_jw_u64(w, handshakes_failed);
	mead_jw_obj_end(w);
}

/* Who may connect, and how many were turned away (docs/safety.md). */
static void access_control(struct mead_jw *w, const struct mead_daemon *d, const struct mead_publisher_counters *pc)
{
	struct mead_auth_counters ac;
	struct mead_control_counters cc = { 0 };

	mead_auth_get_counters(d->auth, &ac);
	if (d->control)
		mead_control_get_counters(d->control, &cc);
	mead_jw_key(w, "access");
	mead_jw_obj_begin(w);
	mead_jw_key(w, "authorized_keys");
	mead_jw_u64(w, mead_auth_key_count(d->auth));
	mead_jw_key(w, "server_public_key");
	if (d->auth)
		mead_jw_str(w, mead_auth_server_public_z85(d->auth));
	else
		mead_jw_null(w);
	access_socket(w, "control", mead_control_is_curve(d->control), &ac.control, cc.handshakes_failed);
	mead_jw_key(w, "control_requests");
	mead_jw_u64(w, cc.requests);
	mead_jw_key(w, "control_errors");
	mead_jw_u64(w, cc.errors);
	mead_jw_key(w, "stim_requests_refused");
	mead_jw_u64(w, cc.stim_refused);
	access_socket(w, "streams", mead_publisher_is_curve(d->publisher), &ac.streams, pc->handshakes_failed);
	mead_jw_obj_end(w);
}

static void double_or_null(struct mead_jw *w, const char *key, bool known, double v)
{
	mead_jw_key(w, key);
	if (known)
		mead_jw_double(w, v);
	else
		mead_jw_null(w);
}

/* The running (or last) protocol's own scores: trials begun of the planned
 * most, validation passes, test trials so far; accuracies null until known. */
static void protocol_progress(struct mead_jw *w, const struct mead_loop_progress *p)
{
	mead_jw_key(w, "trial");
	mead_jw_u64(w, p->trial);
	mead_jw_key(w, "trials");
	if (p->n_trials == UINT64_MAX)
		mead_jw_null(w);
	else
		mead_jw_u64(w, p->n_trials);
	mead_jw_key(w, "validation");
	mead_jw_obj_begin(w);
	mead_jw_key(w, "evaluations");
	mead_jw_u64(w, p->evaluations);
	mead_jw_key(w, "screened_out");
	mead_jw_u64(w, p->screened_out);
	double_or_null(w, "last", p->last_validation >= 0, p->last_validation);
	double_or_null(w, "best", p->best_validation >= 0, p->best_validation);
	mead_jw_obj_end(w);
	mead_jw_key(w, "test");
	mead_jw_obj_begin(w);
	mead_jw_key(w, "trials");
	mead_jw_u64(w, p->test_trials);
	mead_jw_key(w, "correct");
	mead_jw_u64(w, p->test_correct);
	double_or_null(w, "accuracy", p->test_trials > 0,
		       p->test_trials ? (double)p->test_correct / p->test_trials : 0.0);
	mead_jw_obj_end(w);
}

int mead_status_json(const struct mead_daemon *d, char *buf, size_t len)
{
	struct mead_jw w;
	uint64_t produced[MEAD_KIND_COUNT + 1] = { 0 }, ring_dropped[MEAD_KIND_COUNT + 1] = { 0 };
	struct timespec now;

	mead_jw_init(&w, buf, len);
	mead_jw_obj_begin(&w);
	mead_jw_key(&w, "mead_version");
	mead_jw_str(&w, MEAD_VERSION);
	mead_jw_key(&w, "wire_version");
	mead_jw_u64(&w, MEAD_WIRE_VERSION);
	mead_jw_key(&w, "wire");
	mead_jw_str(&w, MEAD_WIRE_VERSION_TEXT);

	const struct mead_loop_stats *s = d->loop ? mead_loop_stats(d->loop) : NULL;
	mead_jw_key(&w, "state");
	if (atomic_load(&((struct mead_daemon *)d)->stop_requested) && s && atomic_load(&s->state) == MEAD_LOOP_RUNNING)
		mead_jw_str(&w, "stopping");
	else
		mead_jw_str(&w, s ? loop_state_name(atomic_load(&s->state)) : "starting");
	clock_gettime(CLOCK_REALTIME, &now);
	uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
	mead_jw_key(&w, "time_ns");
	mead_jw_u64(&w, now_ns);
	if (d->started_realtime_ns) {
		mead_jw_key(&w, "started_realtime_ns");
		mead_jw_u64(&w, d->started_realtime_ns);
		mead_jw_key(&w, "uptime_s");
		mead_jw_double(&w, now_ns > d->started_realtime_ns ? (double)(now_ns - d->started_realtime_ns) / 1e9 : 0.0);
	}
	rig(&w, d);
	mead_jw_key(&w, "driver");
	driver_describe(&w, d);
	loop_stats(&w, d, produced, ring_dropped);

	mead_jw_key(&w, "protocol");
	mead_jw_obj_begin(&w);
	mead_jw_key(&w, "active");
	int pa = s ? atomic_load_explicit(&s->protocol_active, memory_order_relaxed) : -1;
	if (pa >= 0)
		mead_jw_i64(&w, pa);
	else
		mead_jw_null(&w);
	struct mead_loop_progress pp;
	if (s && mead_loop_protocol_progress(s, &pp) && pp.any)
		protocol_progress(&w, &pp);
	mead_jw_obj_end(&w);

	/* Streams: every loss has one counter, by where it happened. */
	struct mead_publisher_counters pc;
	memset(&pc, 0, sizeof(pc));
	if (d->publisher)
		mead_publisher_get_counters(d->publisher, &pc);
	mead_jw_key(&w, "streams");
	mead_jw_obj_begin(&w);
	if (d->publisher) {
		mead_jw_key(&w, "endpoint");
		mead_jw_str(&w, mead_publisher_endpoint(d->publisher));
	}
	mead_jw_key(&w, "subscribers");
	mead_jw_u64(&w, pc.subscribers);
	mead_jw_key(&w, "subscriptions");
	mead_jw_u64(&w, pc.subscriptions);
	per_kind(&w, "produced", produced, true);
	per_kind(&w, "ring_dropped", ring_dropped, true);
	per_kind(&w, "published", pc.published, true);
	per_kind(&w, "hwm_dropped", pc.hwm_dropped, true);
	per_kind(&w, "discarded", pc.discarded, true);
	mead_jw_key(&w, "bytes");
	mead_jw_u64(&w, pc.bytes);
	mead_jw_key(&w, "clients_accepted");
	mead_jw_u64(&w, pc.clients_accepted);
	if (d->publisher)
		stream_clients(&w, d->publisher);
	mead_jw_obj_end(&w);
	access_control(&w, d, &pc);

	mead_jw_key(&w, "recording");
	if (d->recorder) {
		struct mead_recorder_counters rc;
		mead_recorder_get_counters(d->recorder, &rc);
		mead_jw_obj_begin(&w);
		mead_jw_key(&w, "path");
		mead_jw_str(&w, mead_recorder_path(d->recorder));
		mead_jw_key(&w, "state");
		mead_jw_str(&w, mead_recorder_state_name(rc.state));
		mead_jw_key(&w, "bytes");
		mead_jw_u64(&w, rc.bytes);
		mead_jw_key(&w, "fsyncs");
		mead_jw_u64(&w, rc.fsyncs);
		per_kind(&w, "recorded", rc.recorded, true);
		per_kind(&w, "lost", rc.lost, true);
		per_kind(&w, "not_recorded", rc.not_recorded, true);
		mead_jw_key(&w, "error");
		if (rc.state == MEAD_RECORDER_FAILED)
			mead_jw_str(&w, rc.message);
		else
			mead_jw_null(&w);
		mead_jw_obj_end(&w);
	} else {
		mead_jw_null(&w);
	}
	mead_jw_obj_end(&w);
	return mead_jw_finish(&w);
}

int mead_status_json_cb(void *ctx, char *buf, size_t len)
{
	return mead_status_json(ctx, buf, len);
}

int mead_status_recording_meta(const struct mead_daemon *d, char *buf, size_t len)
{
	struct mead_jw w;

	mead_jw_init(&w, buf, len);
	mead_jw_obj_begin(&w);
	mead_jw_key(&w, "format");
	mead_jw_str(&w, "mead-recording");
	mead_jw_key(&w, "mead_version");
	mead_jw_str(&w, MEAD_VERSION);
	mead_jw_key(&w, "wire_version");
	mead_jw_u64(&w, MEAD_WIRE_VERSION);
	mead_jw_key(&w, "wire");
	mead_jw_str(&w, MEAD_WIRE_VERSION_TEXT);
	mead_jw_key(&w, "config_path");
	mead_jw_str(&w, d->config_path);
	/* The header is written before the run starts: it can only say when
	 * the file was made.  The run's start (the wall clock at tick 0's
	 * driver start) is in every status message (started_realtime_ns). */
	mead_jw_key(&w, "created_realtime_ns");
	mead_jw_u64(&w, mead_clock_ns(CLOCK_REALTIME));
	rig(&w, d);
	mead_jw_key(&w, "driver");
	driver_describe(&w, d);
	mead_jw_obj_end(&w);
	return mead_jw_finish(&w);
}
