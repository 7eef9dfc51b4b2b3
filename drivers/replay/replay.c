/* SPDX-License-Identifier: MIT */
/*
 * replay: plays a recording's spikes back through the loop.  Each recorded
 * spike comes back in the tick that covers its (speed-scaled) sample, so
 * the original timing is kept at the real-time clock and compressed or
 * stretched by speed; in virtual-clock mode it goes as fast as the loop.
 * Everything is read at open(): the real-time path only walks an array.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mead/driver.h"
#include "lib/core/json.h"
#include "lib/core/recording.h"

struct replay {
	char *path;
	bool loop;
	double speed;
	uint32_t rate_hz;
	uint32_t electrode_count;
	float uv_per_count;
	struct mead_spike *spikes;     /* recording order, recording samples */
	size_t n_spikes;
	uint64_t span;                 /* recording samples one pass lasts */
	uint32_t max_per_message;
	/* rt state */
	size_t cursor;
	uint64_t pass;
	_Atomic uint64_t emitted;
	_Atomic uint64_t passes_done;
	_Atomic bool finished;
	_Atomic uint64_t position;     /* output sample of the last tick */
	uint64_t corrupt_records;
	bool torn;
};

static const struct mead_param_spec replay_params[] = {
	{ "path", MEAD_PARAM_STRING, NULL, 1, 0, "recording file to play back" },
	{ "loop", MEAD_PARAM_BOOL, "false", 1, 0, "start over at the end" },
	{ "speed", MEAD_PARAM_DOUBLE, "1.0", 0.001, 1000.0, "playback speed (2: twice as fast)" },
	MEAD_WAVEFORM_PARAM_SPECS,
	{ NULL, 0, NULL, 0, 0, NULL },
};

static int cmp_spike(const void *a, const void *b)
{
	const struct mead_spike *x = a, *y = b;
	if (x->sample != y->sample)
		return x->sample < y->sample ? -1 : 1;
	return (int)x->electrode - (int)y->electrode;
}

static void replay_close(void *state)
{
	struct replay *r = state;
	if (!r)
		return;
	free(r->spikes);
	free(r->path);
	free(r);
}

static int load(struct replay *r, const struct mead_driver_config *cfg, char *err, size_t err_len)
{
	struct mead_rec_reader *rd;
	struct mead_rec_record rec;
	size_t cap = 0;
	uint64_t max_sample = 0;
	bool sorted = true;
	int rc;

	rc = mead_rec_open(r->path, &rd, err, err_len);
	if (rc < 0)
		return rc;
	const struct mead_rec_info *info = mead_rec_info(rd);
	r->rate_hz = info->sample_rate_hz;
	r->electrode_count = info->electrode_count;
	r->uv_per_count = (float)info->uv_per_count;
	if (!r->rate_hz || !r->electrode_count) {
		snprintf(err, err_len, "%s: the recording header gives no sample rate or electrode count", r->path);
		rc = -EINVAL;
		goto out;
	}
	if (cfg->layout && cfg->layout->count < r->electrode_count) {
		snprintf(err, err_len, "%s: recorded with %" PRIu32 " electrodes, the configured layout has %" PRIu32,
			 r->path, r->electrode_count, cfg->layout->count);
		rc = -EINVAL;
		goto out;
	}
	for (;;) {
		rc = mead_rec_next(rd, &rec);
		if (rc == 0)
			break;
		if (rc < 0) {
			r->corrupt_records++;   /* skipped: the rest still plays */
			continue;
		}
		if (rec.header.sample > max_sample)
			max_sample = rec.header.sample;
		if (rec.header.kind != MEAD_KIND_SPIKES || rec.header.record_size < sizeof(struct mead_spike))
			continue;
		if (rec.header.count > r->max_per_message)
			r->max_per_message = rec.header.count;
		for (uint32_t i = 0; i < rec.header.count; i++) {
			struct mead_spike s;
			memcpy(&s, rec.payload + (size_t)i * rec.header.record_size, sizeof(s));
			if (s.electrode >= r->electrode_count) {
				snprintf(err, err_len, "%s: spike on electrode %u, the recording has %" PRIu32, r->path,
					 s.electrode, r->electrode_count);
				rc = -EBADMSG;
				goto out;
			}
			if (r->n_spikes == cap) {
				size_t ncap = cap ? cap * 2 : 4096;
				struct mead_spike *n = realloc(r->spikes, ncap * sizeof(*n));
				if (!n) {
					rc = -ENOMEM;
					goto out;
				}
				r->spikes = n;
				cap = ncap;
			}
			if (r->n_spikes && s.sample < r->spikes[r->n_spikes - 1].sample)
				sorted = false;
			if (s.sample > max_sample)
				max_sample = s.sample;
			r->spikes[r->n_spikes++] = s;
		}
	}
	r->torn = mead_rec_stats(rd)->torn;
	if (!sorted)
		qsort(r->spikes, r->n_spikes, sizeof(*r->spikes), cmp_spike);
	r->span = max_sample + 1;
	rc = 0;
out:
	mead_rec_close(rd);
	return rc;
}

static int replay_open(const struct mead_driver_config *cfg, void **ret_state, char *err, size_t err_len)
{
	struct replay *r;
	const char *path = mead_driver_param_get(cfg, "path");
	int rc;

	if (!path || !*path) {
		snprintf(err, err_len, "replay: option path is required");
		return -EINVAL;
	}
	/* it plays recorded spikes back, not a signal; recorded waveforms
	 * are not played back either */
	if (mead_driver_no_waveforms(cfg, "replay", err, err_len) < 0)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->path = strdup(path);
	r->loop = mead_driver_param_bool(cfg, "loop", false);
	r->speed = mead_driver_param_double(cfg, "speed", 1.0);
	if (!r->path) {
		replay_close(r);
		return -ENOMEM;
	}
	if (!(r->speed > 0) || !isfinite(r->speed)) {
		snprintf(err, err_len, "replay: speed must be > 0");
		replay_close(r);
		return -EINVAL;
	}
	rc = load(r, cfg, err, err_len);
	if (rc < 0) {
		replay_close(r);
		return rc;
	}
	*ret_state = r;
	return 0;
}

static int replay_get_caps(void *state, struct mead_driver_caps *ret)
{
	struct replay *r = state;
	memset(ret, 0, sizeof(*ret));
	ret->electrode_count = r->electrode_count;
	ret->sample_rate_hz = r->rate_hz;
	ret->uv_per_count = r->uv_per_count;
	ret->flags = MEAD_CAP_SIMULATED;
	/* One recorded tick's worth, scaled by how many recorded ticks fit one of ours. */
	double per = (double)(r->max_per_message ? r->max_per_message : 64) * (ceil(r->speed) + 1.0);
	ret->max_spikes_per_tick_hint = per > 1e6 ? 1000000u : (uint32_t)per;
	return 0;
}

static int replay_start(void *state, char *err, size_t err_len)
{
	struct replay *r = state;
	r->cursor = 0;
	r->pass = 0;
	atomic_store(&r->finished, r->n_spikes == 0 && !r->loop);
	return 0;
}

static int replay_write_stim(void *state, uint64_t tick, const struct mead_stim_pulse *p, uint32_t n,
			     struct mead_stim_result *results)
{
	/* A recording does not answer stimulation. */
	for (uint32_t i = 0; i < n; i++)
		results[i] = (struct mead_stim_result){ .pulse = p[i], .status = MEAD_STIM_REFUSED,
							.reason = MEAD_STIM_REASON_UNSUPPORTED };
	return 0;
}

static inline uint64_t out_sample(const struct replay *r, size_t i, uint64_t pass)
{
	double rec = (double)pass * (double)r->span + (double)r->spikes[i].sample;
	return (uint64_t)floor(rec / r->speed);
}

static int replay_read_frame(void *state, uint64_t tick, struct mead_frame *f)
{
	struct replay *r = state;
	uint64_t end = f->first_sample + f->n_samples;

	f->n_spikes = 0;
	f->spikes_dropped = 0;
	f->raw_samples = 0;
	atomic_store_explicit(&r->position, f->first_sample, memory_order_relaxed);
	while (r->n_spikes) {
		if (r->cursor == r->n_spikes) {
			if (!r->loop) {
				atomic_store_explicit(&r->finished, true, memory_order_relaxed);
				break;
			}
			r->cursor = 0;
			r->pass++;
			atomic_store_explicit(&r->passes_done, r->pass, memory_order_relaxed);
		}
		uint64_t s = out_sample(r, r->cursor, r->pass);
		if (s >= end)
			break;
		if (s >= f->first_sample) {
			if (f->n_spikes < f->spike_capacity) {
				struct mead_spike *o = &f->spikes[f->n_spikes++];
				*o = r->spikes[r->cursor];
				o->sample = s;
			} else {
				f->spikes_dropped++;
			}
		}
		r->cursor++;
	}
	atomic_fetch_add_explicit(&r->emitted, f->n_spikes, memory_order_relaxed);
	return 0;
}

static int replay_stop_outputs(void *state)
{
	return 0;
}

static int replay_stop(void *state)
{
	return 0;
}

static int replay_describe(void *state, char *buf, size_t len)
{
	struct replay *r = state;
	struct mead_jw w;

	mead_jw_init(&w, buf, len);
	mead_jw_obj_begin(&w);
	mead_jw_key(&w, "path");
	mead_jw_str(&w, r->path);
	mead_jw_key(&w, "speed");
	mead_jw_double(&w, r->speed);
	mead_jw_key(&w, "loop");
	mead_jw_bool(&w, r->loop);
	mead_jw_key(&w, "recorded_spikes");
	mead_jw_u64(&w, r->n_spikes);
	mead_jw_key(&w, "recorded_samples");
	mead_jw_u64(&w, r->span);
	mead_jw_key(&w, "corrupt_records_skipped");
	mead_jw_u64(&w, r->corrupt_records);
	mead_jw_key(&w, "torn_tail");
	mead_jw_bool(&w, r->torn);
	mead_jw_key(&w, "emitted_spikes");
	mead_jw_u64(&w, atomic_load_explicit(&r->emitted, memory_order_relaxed));
	mead_jw_key(&w, "passes_done");
	mead_jw_u64(&w, atomic_load_explicit(&r->passes_done, memory_order_relaxed));
	mead_jw_key(&w, "position");
	mead_jw_u64(&w, atomic_load_explicit(&r->position, memory_order_relaxed));
	mead_jw_key(&w, "finished");
	mead_jw_bool(&w, atomic_load_explicit(&r->finished, memory_order_relaxed));
	mead_jw_obj_end(&w);
	return mead_jw_finish(&w);
}

static const struct mead_driver_ops replay_ops = {
	.abi_version = MEAD_DRIVER_ABI_VERSION,
	.ops_size = sizeof(struct mead_driver_ops),
	.name = "replay",
	.description = "plays a mead recording's spikes back with their original timing",
	.params = replay_params,
	.open = replay_open,
	.close = replay_close,
	.get_caps = replay_get_caps,
	.start = replay_start,
	.write_stim = replay_write_stim,
	.read_frame = replay_read_frame,
	.control = NULL,
	.stop_outputs = replay_stop_outputs,
	.stop = replay_stop,
	.describe = replay_describe,
};

MEAD_DRIVER_EXPORT(replay_ops)
