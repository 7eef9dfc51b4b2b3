/* SPDX-License-Identifier: MIT */
#include "daemon/loop.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "daemon/histogram.h"
#include "daemon/ring.h"
#include "daemon/safety.h"
#include "lib/core/time.h"
#include "protocol/protocol.h"

#define MAX_TRAINS 32
#define CMD_RING_BYTES (64 * 1024)
#define RECLAIM_RING_BYTES 4096
#define EVENT_CAPACITY 256
#define DRIVER_EVENT_CAPACITY 64
#define PREFAULT_STACK_DEFAULT (512 * 1024)
/* Ticks of raw samples one frame may carry: a late tick's samples come with
 * a later one, in order. */
#define RAW_CATCHUP_TICKS 64
/* The device's rate is measured over the last few seconds of reads. */
#define CLOCK_ANCHORS 16
#define CLOCK_ANCHOR_NS 250000000ll
/* How long the run's last late samples get to come after its last tick. */
#define OWED_WAIT_NS 1000000000ll

struct train {
	bool active;
	uint16_t electrodes[MEAD_CMD_MAX_ELECTRODES];
	uint32_t n_electrodes;
	float amplitude_ua;
	uint32_t phase_us, interphase_us;
	uint32_t pulses_left;
	double interval_samples;
	double next_sample;
};

struct mead_loop {
	struct mead_loop_params params;
	struct mead_driver_handle driver;
	const struct mead_layout_view *layout;
	struct mead_ring *out;
	struct mead_safety *safety;
	uint32_t sample_rate_hz;

	struct mead_ring *commands;      /* control -> rt */
	struct mead_ring *reclaim;       /* rt -> control: protocols to free */

	pthread_t thread;
	bool thread_started;
	bool prepared;                   /* memory locked, PM QoS held */
	int dma_latency_fd;              /* held open for the run: the PM QoS request lasts while it is */
	_Atomic int stop;

	_Atomic uint32_t trains_done;    /* rt -> control: trains ended, for mead_loop_trains_free() */
	uint32_t trains_started;         /* control thread only */

	/* Everything below is owned by the rt thread once it runs. */
	struct mead_protocol *protocol;
	struct mead_protocol_results published;   /* what publish_progress() last wrote */
	bool published_once;
	struct mead_frame frame;
	struct mead_spike *spikes;
	void *waveforms;                 /* spike_capacity records of waveform_size bytes; NULL: none */
	uint32_t waveform_size;
	int16_t *raw;
	uint32_t raw_capacity;
	struct mead_stim_pulse *stim;    /* the next tick's pulses, as decided */
	struct mead_stim_pulse *stim_ok; /* those the driver is given */
	struct mead_stim_result *results;         /* write_stim's, one per pulse given */
	struct mead_stim_result *settled;         /* read_frame's: pending pulses settled */
	struct mead_wire_stim *stim_out;          /* delivered pulses, for the wire */
	struct mead_event *events;       /* this tick's events, all sources */
	struct mead_event *driver_events;
	uint32_t n_events;
	struct train trains[MAX_TRAINS];
	uint64_t seq[MEAD_KIND_COUNT + 1];
	bool device_gone;
	uint64_t gone_since;             /* first sample without the device */
	uint64_t owed_from;              /* samples from here on are late: the driver still owes them */
	bool late_open;
	uint32_t naps_after_stop;        /* virtual clock: waits for room since the stop request, all messages together */
	/* following the device's clock */
	bool follow_device;
	double drift;                    /* fractional rate of the device against the host (+: faster) */
	double spt;                      /* samples per tick */
	double phase_gain;               /* fraction of the wake-up error corrected per tick */
	uint64_t read_ns;                /* host clock at the last read_frame */
	struct clock_anchor { uint64_t t_ns, acquired; } anchors[CLOCK_ANCHORS];
	uint32_t anchor_head, n_anchors;

	struct mead_loop_stats stats;
};

static inline void stat_add(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v, memory_order_relaxed);
}

static inline void stat_max(_Atomic uint64_t *c, uint64_t v)
{
	if (v > atomic_load_explicit(c, memory_order_relaxed))
		atomic_store_explicit(c, v, memory_order_relaxed);
}

int mead_loop_new(const struct mead_loop_params *params, const struct mead_driver_handle *driver,
		  const struct mead_layout_view *layout, struct mead_ring *out_ring,
		  struct mead_safety *safety, struct mead_loop **ret)
{
	struct mead_loop *l;
	int r;

	if (!params || !driver || !driver->ops || !layout || !out_ring || !ret)
		return -EINVAL;
	if (params->period_ns < 1000 || driver->caps.sample_rate_hz == 0 || params->spike_capacity == 0 ||
	    params->stim_capacity == 0)
		return -EINVAL;

	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->params = *params;
	l->driver = *driver;
	l->layout = layout;
	l->out = out_ring;
	l->safety = safety;
	l->sample_rate_hz = driver->caps.sample_rate_hz;
	atomic_init(&l->stop, 0);
	atomic_init(&l->stats.protocol_active, -1);
	l->dma_latency_fd = -1;

	r = mead_ring_new(CMD_RING_BYTES, &l->commands);
	if (r < 0)
		goto fail;
	r = mead_ring_new(RECLAIM_RING_BYTES, &l->reclaim);
	if (r < 0)
		goto fail;

	r = -ENOMEM;
	l->spikes = calloc(params->spike_capacity, sizeof(struct mead_spike));
	l->stim = calloc(params->stim_capacity, sizeof(*l->stim));
	l->stim_ok = calloc(params->stim_capacity, sizeof(*l->stim_ok));
	l->results = calloc(params->stim_capacity, sizeof(*l->results));
	l->settled = calloc(params->stim_capacity, sizeof(*l->settled));
	l->stim_out = calloc(2 * (size_t)params->stim_capacity, sizeof(*l->stim_out));
	l->events = calloc(EVENT_CAPACITY + 2 * (size_t)params->stim_capacity, sizeof(*l->events));
	l->driver_events = calloc(DRIVER_EVENT_CAPACITY, sizeof(*l->driver_events));
	if (!l->spikes || !l->stim || !l->stim_ok || !l->results || !l->settled || !l->stim_out || !l->events ||
	    !l->driver_events)
		goto fail;
	if (driver->caps.flags & MEAD_CAP_WAVEFORMS) {
		if (driver->caps.waveform_pre + 1 + driver->caps.waveform_post > MEAD_WAVEFORM_MAX_SAMPLES) {
			r = -EINVAL;
			goto fail;
		}
		/* as many as a tick's spikes: a tick completes the waveforms of
		 * earlier ticks' spikes, about as many as it detects */
		l->waveform_size = mead_waveform_size(driver->caps.waveform_pre, driver->caps.waveform_post);
		l->waveforms = calloc(params->spike_capacity, l->waveform_size);
		if (!l->waveforms)
			goto fail;
	}
	l->spt = (double)params->period_ns * l->sample_rate_hz / 1e9;
	if (params->want_raw && driver->caps.raw_channels > 0) {
		/* A tick holds at most ceil(period * rate) samples; a late one's
		 * come with a later tick, so room for several. */
		uint64_t per_tick = mead_tick_first_sample(1, params->period_ns, l->sample_rate_hz) + 1;
		l->raw_capacity = (uint32_t)(per_tick * RAW_CATCHUP_TICKS);
		l->raw = calloc((size_t)l->raw_capacity * driver->caps.raw_channels, sizeof(int16_t));
		if (!l->raw)
			goto fail;
		l->frame.raw_channels = driver->caps.raw_channels;
	}
	l->follow_device = !params->virtual_clock && (driver->caps.flags & MEAD_CAP_DEVICE_CLOCK);
	/* bandwidth B Hz: the wake-up error decays with time constant 1/(2 pi B) */
	l->phase_gain = 2.0 * 3.141592653589793 * (params->clock_bandwidth_hz > 0 ? params->clock_bandwidth_hz : 0.5) *
			params->period_ns * 1e-9;
	if (l->phase_gain > 0.5)
		l->phase_gain = 0.5;
	atomic_init(&l->stats.device_clock, l->follow_device);
	*ret = l;
	return 0;
fail:
	mead_loop_free(l);
	return r;
}

void mead_loop_free(struct mead_loop *l)
{
	if (!l)
		return;
	if (l->thread_started) {
		mead_loop_request_stop(l);
		mead_loop_join(l);
	}
	mead_protocol_free(l->protocol);
	for (struct mead_protocol *p; (p = mead_loop_reclaim(l));)
		mead_protocol_free(p);
	if (l->dma_latency_fd >= 0)
		close(l->dma_latency_fd);
	mead_ring_free(l->commands);
	mead_ring_free(l->reclaim);
	free(l->spikes);
	free(l->waveforms);
	free(l->stim);
	free(l->stim_ok);
	free(l->results);
	free(l->settled);
	free(l->stim_out);
	free(l->events);
	free(l->driver_events);
	free(l->raw);
	free(l);
}

const struct mead_loop_stats *mead_loop_stats(const struct mead_loop *l)
{
	return &l->stats;
}

const struct mead_loop_params *mead_loop_params(const struct mead_loop *l)
{
	return &l->params;
}

double mead_loop_latency_percentile(const struct mead_loop_stats *s, double p)
{
	double max_us = (double)atomic_load_explicit(&s->lat_max_ns, memory_order_relaxed) / 1000.0;

	return mead_hist_percentile((_Atomic uint64_t *)s->lat_hist, MEAD_LAT_BUCKETS, p, max_us);
}

void mead_loop_request_stop(struct mead_loop *l)
{
	atomic_store_explicit(&l->stop, 1, memory_order_release);
}

int mead_loop_submit(struct mead_loop *l, const struct mead_command *cmd)
{
	if (cmd->type == MEAD_CMD_STIM_TRAIN && mead_loop_trains_free(l) == 0)
		return -EBUSY;
	int r = mead_ring_push(l->commands, cmd, sizeof(*cmd));
	if (r == 0 && cmd->type == MEAD_CMD_STIM_TRAIN)
		l->trains_started++;
	return r;
}

uint32_t mead_loop_trains_free(const struct mead_loop *l)
{
	/* Only the control thread starts trains and only the loop ends them,
	 * so this count is exact for the control thread. */
	uint32_t busy = l->trains_started - atomic_load_explicit(&l->trains_done, memory_order_acquire);
	return busy >= MAX_TRAINS ? 0 : MAX_TRAINS - busy;
}

struct mead_protocol *mead_loop_reclaim(struct mead_loop *l)
{
	struct mead_protocol *p = NULL;
	size_t len;
	const void *m = mead_ring_peek(l->reclaim, &len);

	if (!m)
		return NULL;
	memcpy(&p, m, sizeof(p));
	mead_ring_release(l->reclaim);
	return p;
}

/* ---- rt thread -------------------------------------------------------- */

/* Virtual clock: no deadline to keep, so back-pressure instead of loss.
 * A short sleep rather than a spin leaves the core to the publisher on
 * small machines.  A stop request does not end the wait at once: the
 * publisher drains until the loop has ended, so the last ticks' messages
 * still get through; only a publisher that stopped draining (5 s after the
 * stop request, over all the messages still to go) makes this give up and count the message dropped. */
static void *wait_for_room(struct mead_loop *l, size_t len)
{
	struct timespec nap = { 0, 20000 };
	void *m = NULL;

	stat_add(&l->stats.virtual_waits, 1);
	while (!m && l->naps_after_stop < 250000) {
		nanosleep(&nap, NULL);
		if (atomic_load_explicit(&l->stop, memory_order_acquire))
			l->naps_after_stop++;
		m = mead_ring_reserve(l->out, len);
	}
	return m;
}

static void push_msg(struct mead_loop *l, enum mead_wire_kind kind, uint64_t sample, const void *records,
		     uint32_t count, uint32_t record_size)
{
	size_t len = sizeof(struct mead_msg) + (size_t)count * record_size;
	struct mead_msg *m;

	m = mead_ring_reserve(l->out, len);
	if (!m && l->params.virtual_clock && len <= mead_ring_max_message(l->out))
		m = wait_for_room(l, len);
	uint64_t seq = l->seq[kind]++;
	stat_add(&l->stats.produced[kind], 1);
	if (!m) {
		stat_add(&l->stats.dropped[kind], 1);
		return;
	}
	m->kind = (uint16_t)kind;
	m->flags = 0;
	m->count = count;
	m->record_size = record_size;
	m->reserved = 0;
	m->seq = seq;
	m->sample = sample;
	if (count)
		memcpy(m + 1, records, (size_t)count * record_size);
	mead_ring_commit(l->out, len);
}

/* Publishes the protocol's own scores when they move (a trial begins or a
 * pass ends), so status can show a run's progress without touching the
 * protocol, which only this thread may read while it runs. */
static void publish_progress(struct mead_loop *l)
{
	struct mead_protocol_results r;
	if (mead_protocol_results(l->protocol, &r) < 0)
		return;
	if (r.trial == l->published.trial && r.evaluations == l->published.evaluations &&
	    r.test_trials == l->published.test_trials && r.screened_out == l->published.screened_out &&
	    l->published_once)
		return;
	l->published = r;
	l->published_once = true;
	struct mead_loop_progress_cells *c = &l->stats.protocol_progress;
	uint64_t seq = atomic_load_explicit(&c->seq, memory_order_relaxed);
	atomic_store_explicit(&c->seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&c->trial, r.trial, memory_order_relaxed);
	atomic_store_explicit(&c->n_trials, r.n_trials, memory_order_relaxed);
	atomic_store_explicit(&c->last_validation_bits, mead_loop_double_to_bits(r.last_validation_accuracy), memory_order_relaxed);
	atomic_store_explicit(&c->best_validation_bits, mead_loop_double_to_bits(r.best_validation_accuracy), memory_order_relaxed);
	atomic_store_explicit(&c->evaluations, r.evaluations, memory_order_relaxed);
	atomic_store_explicit(&c->screened_out, r.screened_out, memory_order_relaxed);
	atomic_store_explicit(&c->test_trials, r.test_trials, memory_order_relaxed);
	atomic_store_explicit(&c->test_correct, r.test_correct, memory_order_relaxed);
	atomic_store_explicit(&c->seq, seq + 2, memory_order_release);
}

static void release_protocol(struct mead_loop *l)
{
	if (!l->protocol)
		return;
	/* The reclaim ring is sized for far more protocols than a run starts;
	 * if it were ever full, keeping the pointer alive is the safe failure. */
	if (mead_ring_push(l->reclaim, &l->protocol, sizeof(l->protocol)) == 0)
		l->protocol = NULL;
	atomic_store_explicit(&l->stats.protocol_active, -1, memory_order_relaxed);
}

static void end_train(struct mead_loop *l, struct train *t)
{
	if (!t->active)
		return;
	t->active = false;
	atomic_fetch_add_explicit(&l->trains_done, 1, memory_order_release);
}

static void stop_everything(struct mead_loop *l)
{
	for (int i = 0; i < MAX_TRAINS; i++)
		end_train(l, &l->trains[i]);
	release_protocol(l);
	if (l->driver.ops->stop_outputs)
		l->driver.ops->stop_outputs(l->driver.state);
}

static void add_event(struct mead_loop *l, struct mead_event ev);

static void apply_commands(struct mead_loop *l, uint64_t first_sample)
{
	const struct mead_command *c;
	size_t len;

	while ((c = mead_ring_peek(l->commands, &len))) {
		switch (c->type) {
		case MEAD_CMD_START_PROTOCOL:
			release_protocol(l);
			l->protocol = c->start.protocol;
			l->published_once = false;
			atomic_store_explicit(&l->stats.protocol_active, c->start.index, memory_order_relaxed);
			break;
		case MEAD_CMD_STOP_PROTOCOL:
			release_protocol(l);
			break;
		case MEAD_CMD_STIM_TRAIN:
			/* mead_loop_submit() let it in only with a slot free */
			for (int i = 0; i < MAX_TRAINS; i++) {
				struct train *t = &l->trains[i];
				if (t->active)
					continue;
				t->active = true;
				memcpy(t->electrodes, c->train.electrodes, sizeof(t->electrodes));
				t->n_electrodes = c->train.n_electrodes;
				t->amplitude_ua = c->train.amplitude_ua;
				t->phase_us = c->train.phase_us;
				t->interphase_us = c->train.interphase_us;
				t->pulses_left = c->train.pulses;
				t->interval_samples = (double)l->sample_rate_hz / c->train.rate_hz;
				t->next_sample = (double)first_sample;
				break;
			}
			break;
		case MEAD_CMD_STOP_ALL:
			stop_everything(l);
			break;
		case MEAD_CMD_THRESHOLD: {
			int r = l->driver.ops->control
					? l->driver.ops->control(l->driver.state, MEAD_CTL_THRESHOLD,
								 mead_ctl_threshold_pack(c->threshold.electrode,
											 c->threshold.mode,
											 c->threshold.value))
					: -EOPNOTSUPP;
			if (r < 0) {
				stat_add(&l->stats.thresholds_refused, 1);
				break;
			}
			stat_add(&l->stats.thresholds_set, 1);
			/* from the next sample the driver processes: late ones included */
			add_event(l, (struct mead_event){
				.sample = l->owed_from, .type = MEAD_EVENT_THRESHOLD,
				.electrode = c->threshold.electrode,
				.value = mead_threshold_event_value(c->threshold.mode, c->threshold.value) });
			break;
		}
		default:
			break;
		}
		mead_ring_release(l->commands);
	}
}

static uint32_t emit_trains(struct mead_loop *l, uint64_t first, uint64_t end, uint32_t n)
{
	for (int i = 0; i < MAX_TRAINS; i++) {
		struct train *t = &l->trains[i];
		while (t->active && t->next_sample < (double)end) {
			uint64_t s = (uint64_t)t->next_sample;
			if (s < first)
				s = first;
			for (uint32_t e = 0; e < t->n_electrodes && n < l->params.stim_capacity; e++) {
				l->stim[n++] = (struct mead_stim_pulse){
					.sample = s, .electrode = t->electrodes[e], .flags = 0,
					.amplitude_ua = t->amplitude_ua, .phase_us = t->phase_us,
					.interphase_us = t->interphase_us,
				};
			}
			t->next_sample += t->interval_samples;
			if (--t->pulses_left == 0)
				end_train(l, t);
		}
	}
	return n;
}

/* Insertion sort: a tick holds few pulses, and glibc's qsort may allocate. */
static void sort_pulses(struct mead_stim_pulse *p, uint32_t n)
{
	for (uint32_t i = 1; i < n; i++) {
		struct mead_stim_pulse key = p[i];
		uint32_t j = i;
		while (j > 0 && (p[j - 1].sample > key.sample ||
				 (p[j - 1].sample == key.sample && p[j - 1].electrode > key.electrode))) {
			p[j] = p[j - 1];
			j--;
		}
		p[j] = key;
	}
}

/* Events of a tick go out in sample order in one message. */
static void sort_events(struct mead_event *e, uint32_t n)
{
	for (uint32_t i = 1; i < n; i++) {
		struct mead_event key = e[i];
		uint32_t j = i;
		while (j > 0 && e[j - 1].sample > key.sample) {
			e[j] = e[j - 1];
			j--;
		}
		e[j] = key;
	}
}

static void add_event(struct mead_loop *l, struct mead_event ev)
{
	if (l->n_events >= EVENT_CAPACITY + 2 * l->params.stim_capacity) {
		stat_add(&l->stats.events_dropped, 1);
		return;
	}
	l->events[l->n_events++] = ev;
}

static void refuse(struct mead_loop *l, const struct mead_stim_pulse *p, uint32_t reason)
{
	add_event(l, (struct mead_event){ .sample = p->sample, .type = MEAD_EVENT_STIM_REFUSED,
					  .value = (int32_t)reason, .electrode = p->electrode });
	stat_add(&l->stats.stim_rejected, 1);
	stat_add(&l->stats.stim_refused[reason < MEAD_LOOP_REASONS ? reason : 0], 1);
}

/* A result from the driver: delivered pulses go on the wire as stim
 * records, refused ones as events; pending ones wait for a later frame. */
static uint32_t settle(struct mead_loop *l, const struct mead_stim_result *r, uint32_t n_out)
{
	switch (r->status) {
	case MEAD_STIM_DELIVERED: {
		struct mead_wire_stim *w = &l->stim_out[n_out++];
		w->pulse = r->pulse;
		w->pulse.sample = r->sample;
		w->requested_sample = r->pulse.sample;
		if (r->sample > r->pulse.sample) {
			w->pulse.flags |= MEAD_STIM_LATE;
			stat_add(&l->stats.stim_late, 1);
		}
		stat_add(&l->stats.stim_pulses, 1);
		break;
	}
	case MEAD_STIM_PENDING:
		stat_add(&l->stats.stim_pending, 1);
		break;
	default:
		refuse(l, &r->pulse, r->reason ? r->reason : MEAD_STIM_REASON_IO);
		break;
	}
	return n_out;
}

/* Decides the stimulation of one tick's window from what the previous
 * tick read (NULL before tick 0), refuses what no driver call could take,
 * and writes the rest: the window is still ahead of the device, so a pulse
 * is asked for on time. */
static uint32_t decide_and_write(struct mead_loop *l, uint64_t window_tick, const struct mead_frame *frame,
				 uint32_t n_out)
{
	const struct mead_driver_ops *ops = l->driver.ops;
	uint64_t first = mead_tick_first_sample(window_tick, l->params.period_ns, l->sample_rate_hz);
	uint64_t end = mead_tick_first_sample(window_tick + 1, l->params.period_ns, l->sample_rate_hz);
	uint32_t n_stim = 0, n_ok = 0;
	int r;

	if (l->protocol) {
		struct mead_tick_io io = {
			.tick = window_tick, .first_sample = first, .n_samples = (uint32_t)(end - first),
			.frame = frame,
			.stim = l->stim, .stim_capacity = l->params.stim_capacity,
			.events = l->events + l->n_events, .event_capacity = EVENT_CAPACITY - l->n_events,
		};
		r = mead_protocol_tick(l->protocol, &io);
		if (r < 0)
			stat_add(&l->stats.protocol_errors, 1);
		publish_progress(l);
		for (uint32_t i = 0; i < io.n_ctl; i++)
			if (ops->control)
				ops->control(l->driver.state, (enum mead_driver_control)io.ctl[i].op, io.ctl[i].value);
		n_stim = io.n_stim;
		l->n_events += io.n_events;
		if (io.finished) {
			release_protocol(l);
			if (l->params.exit_when_done) {
				atomic_store_explicit(&l->stats.exit_reason, MEAD_EXIT_PROTOCOL_DONE, memory_order_relaxed);
				atomic_store_explicit(&l->stop, 1, memory_order_relaxed);
			}
		}
	}
	uint32_t from_protocol = n_stim;
	n_stim = emit_trains(l, first, end, n_stim);
	if (n_stim != from_protocol)
		sort_pulses(l->stim, n_stim);

	/* What a driver cannot take is refused here, before any driver call,
	 * and published as a refusal: no device, more than it takes per tick,
	 * a safety limit or a stimulator still busy. */
	uint32_t per_tick = l->driver.caps.max_pulses_per_tick;
	for (uint32_t i = 0; i < n_stim; i++) {
		const struct mead_stim_pulse *p = &l->stim[i];
		enum mead_safety_verdict v;
		if (l->device_gone)
			refuse(l, p, MEAD_STIM_REASON_NO_DEVICE);
		else if (per_tick && n_ok >= per_tick)
			refuse(l, p, MEAD_STIM_REASON_TICK_LIMIT);
		else if (l->safety && (v = mead_safety_check_pulse(l->safety, p)) != MEAD_SAFE)
			refuse(l, p, v == MEAD_UNSAFE_BUSY ? MEAD_STIM_REASON_OVERLAP : MEAD_STIM_REASON_SAFETY + v);
		else
			l->stim_ok[n_ok++] = *p;
	}
	/* A stimulating driver hears from the loop every tick, pulses or not:
	 * one that streams its stimulation (Comedi's AO stream) keeps it fed
	 * from here, just ahead of the device, so a pulse written next tick
	 * starts close to when it was asked for. */
	bool stimulates = (l->driver.caps.flags & MEAD_CAP_STIMULATE) && !l->device_gone;
	if (n_ok == 0 && (!stimulates || !ops->write_stim))
		return n_out;
	if (!ops->write_stim) {
		for (uint32_t i = 0; i < n_ok; i++)
			refuse(l, &l->stim_ok[i], MEAD_STIM_REASON_UNSUPPORTED);
		return n_out;
	}
	for (uint32_t i = 0; i < n_ok; i++)
		l->results[i] = (struct mead_stim_result){ .pulse = l->stim_ok[i], .status = MEAD_STIM_REFUSED,
							   .reason = MEAD_STIM_REASON_IO };
	r = ops->write_stim(l->driver.state, window_tick, l->stim_ok, n_ok, l->results);
	if (r < 0)
		stat_add(&l->stats.driver_errors, 1);
	for (uint32_t i = 0; i < n_ok; i++)
		n_out = settle(l, &l->results[i], n_out);
	return n_out;
}

static void device_state(struct mead_loop *l, int r, uint64_t first)
{
	bool gone = r == -ENODEV || (l->frame.flags & MEAD_FRAME_DEVICE_GONE);

	if (gone && !l->device_gone) {
		/* Outputs off and the protocol dropped at once; the loop keeps its
		 * ticks so a device that returns is picked up where time stands. */
		l->device_gone = true;
		l->gone_since = first;
		stop_everything(l);
		stat_add(&l->stats.device_losses, 1);
		stat_add(&l->stats.loss_events[MEAD_EVENT_DEVICE_GONE], 1);
		atomic_store_explicit(&l->stats.device_gone, 1, memory_order_relaxed);
		add_event(l, (struct mead_event){ .sample = first, .type = MEAD_EVENT_DEVICE_GONE });
	} else if (!gone && r >= 0 && l->device_gone) {
		l->device_gone = false;
		uint64_t lost = first - l->gone_since;
		stat_add(&l->stats.loss_samples[MEAD_EVENT_DEVICE_GONE], lost);
		atomic_store_explicit(&l->stats.device_gone, 0, memory_order_relaxed);
		add_event(l, (struct mead_event){ .sample = first, .type = MEAD_EVENT_DEVICE_BACK,
						  .samples = lost > UINT32_MAX ? UINT32_MAX : (uint32_t)lost });
	} else if (r < 0 && !gone) {
		stat_add(&l->stats.driver_errors, 1);
	}
}

/* Where the samples the driver still owes begin: the end of what raw
 * holds when raw is on, else the start of the first LATE range since the
 * last tick that came whole (some of that range may have come since: without
 * raw the loop cannot tell, so an UNREAD event then says "at most"). */
static void track_late(struct mead_loop *l, uint64_t end)
{
	if (!(l->frame.flags & MEAD_FRAME_LATE)) {
		l->owed_from = end;
		l->late_open = false;
		return;
	}
	if (l->raw) {
		if (l->frame.raw_samples)
			l->owed_from = l->frame.raw_first_sample + l->frame.raw_samples;
	} else if (!l->late_open) {
		for (uint32_t i = 0; i < l->frame.n_events; i++)
			if (l->driver_events[i].type == MEAD_EVENT_LATE) {
				l->owed_from = l->driver_events[i].sample;
				break;
			}
	}
	l->late_open = true;
}

/* Reads samples [first, end) (none at all for the catch-up after the last
 * tick) and passes on what came with them; returns the STIM records. */
static uint32_t read_and_pass(struct mead_loop *l, uint64_t tick, uint64_t first, uint64_t end)
{
	const struct mead_driver_ops *ops = l->driver.ops;
	uint32_t n_out = 0;
	int r;

	l->frame = (struct mead_frame){
		.first_sample = first, .n_samples = (uint32_t)(end - first),
		.spikes = l->spikes, .spike_capacity = l->params.spike_capacity,
		.raw = l->raw, .raw_channels = l->raw ? l->driver.caps.raw_channels : 0,
		.raw_capacity = l->raw ? l->raw_capacity : 0, .raw_first_sample = first,
		.stim_results = l->settled, .stim_result_capacity = l->params.stim_capacity,
		.events = l->driver_events, .event_capacity = DRIVER_EVENT_CAPACITY,
		.waveforms = l->waveforms, .waveform_size = l->waveforms ? l->waveform_size : 0,
		.waveform_capacity = l->waveforms ? l->params.spike_capacity : 0,
	};
	r = ops->read_frame(l->driver.state, tick, &l->frame);
	if (l->follow_device)
		l->read_ns = mead_now_ns();
	if (r == -EPIPE) {
		atomic_store_explicit(&l->stats.exit_reason, MEAD_EXIT_DRIVER_FAULT, memory_order_relaxed);
		atomic_store_explicit(&l->stop, 1, memory_order_relaxed);
	}
	device_state(l, r, first);
	for (uint32_t i = 0; i < l->frame.n_events; i++) {
		const struct mead_event *e = &l->driver_events[i];
		/* blanking windows and digital inputs are what happened, not losses */
		if (e->type < MEAD_LOOP_EVENT_TYPES && e->type != MEAD_EVENT_BLANK && e->type != MEAD_EVENT_DIGITAL) {
			stat_add(&l->stats.loss_events[e->type], 1);
			stat_add(&l->stats.loss_samples[e->type], e->samples);
		}
		add_event(l, *e);
	}
	for (uint32_t i = 0; i < l->frame.n_stim_results && i < l->params.stim_capacity; i++) {
		if (l->settled[i].status != MEAD_STIM_PENDING) {
			uint64_t pend = atomic_load_explicit(&l->stats.stim_pending, memory_order_relaxed);
			atomic_store_explicit(&l->stats.stim_pending, pend ? pend - 1 : 0, memory_order_relaxed);
		}
		n_out = settle(l, &l->settled[i], n_out);
	}
	if (l->frame.n_spikes)
		push_msg(l, MEAD_KIND_SPIKES, first, l->frame.spikes, l->frame.n_spikes, sizeof(struct mead_spike));
	if (l->waveforms) {
		/* a driver that claims more than the buffer holds lost the rest */
		uint32_t n = l->frame.n_waveforms < l->params.spike_capacity ? l->frame.n_waveforms : l->params.spike_capacity;
		if (n)
			push_msg(l, MEAD_KIND_WAVEFORMS, first, l->waveforms, n, l->waveform_size);
		stat_add(&l->stats.waveforms, n);
		stat_add(&l->stats.waveforms_dropped, l->frame.waveforms_dropped + (l->frame.n_waveforms - n));
	}
	if (l->raw && l->frame.raw_samples)
		push_msg(l, MEAD_KIND_RAW, l->frame.raw_first_sample, l->raw, l->frame.raw_samples,
			 2u * l->driver.caps.raw_channels);
	stat_add(&l->stats.spikes, l->frame.n_spikes);
	stat_add(&l->stats.spikes_dropped, l->frame.spikes_dropped);
	stat_add(&l->stats.events_dropped, l->frame.events_dropped);
	track_late(l, end);
	return n_out;
}

/* A read's STIM records and the events gathered since the last ones went out. */
static void publish_records(struct mead_loop *l, uint64_t sample, uint32_t n_out)
{
	if (n_out)
		push_msg(l, MEAD_KIND_STIM, sample, l->stim_out, n_out, sizeof(struct mead_wire_stim));
	if (l->n_events) {
		sort_events(l->events, l->n_events);
		push_msg(l, MEAD_KIND_EVENTS, sample, l->events, l->n_events, sizeof(struct mead_event));
	}
}

/* One tick, run once its samples are due: read them, then decide and
 * write the next tick's stimulation from them, so a spike reaches the
 * stimulator within one tick.  A tick that ends the run sets the exit
 * reason and the stop flag, which the loop checks before the next one. */
static void run_tick(struct mead_loop *l, uint64_t tick)
{
	uint64_t first = mead_tick_first_sample(tick, l->params.period_ns, l->sample_rate_hz);
	uint64_t end = mead_tick_first_sample(tick + 1, l->params.period_ns, l->sample_rate_hz);

	apply_commands(l, end);
	if (tick == 0)
		add_event(l, (struct mead_event){ .sample = first, .type = MEAD_EVENT_RUN_START,
						  .value = (int32_t)l->sample_rate_hz });
	uint32_t n_out = read_and_pass(l, tick, first, end);

	if (!atomic_load_explicit(&l->stop, memory_order_relaxed))
		n_out = decide_and_write(l, tick + 1, &l->frame, n_out);

	publish_records(l, first, n_out);
	atomic_store_explicit(&l->stats.sample, first, memory_order_relaxed);
	atomic_store_explicit(&l->stats.ticks, tick + 1, memory_order_relaxed);
	stat_add(&l->stats.progress, 1);
}

static void prefault_stack(size_t bytes)
{
	volatile unsigned char *p = __builtin_alloca(bytes);

	for (size_t i = 0; i < bytes; i += 4096)
		p[i] = 0;
}

static void store_drift(struct mead_loop *l)
{
	atomic_store_explicit(&l->stats.drift_ppm_bits, mead_loop_double_to_bits(l->drift * 1e6), memory_order_relaxed);
}

/*
 * The device's clock, followed.  Each read tells how many samples the
 * device had acquired at that moment of the host's clock.  Two estimates
 * come from that: the device's rate against the host's, from the samples
 * acquired over the last seconds (robust to any one late wake-up), and
 * the host time at which the device will have the next tick's samples
 * plus the margin.  The schedule moves towards that time by a fraction of
 * the difference each tick and by the rate in full, as audio servers
 * follow a sound card; it stays absolute: corrections are added to it,
 * lateness is still measured against it and counted.
 */

static void note_clock(struct mead_loop *l, uint64_t read_ns, uint64_t acquired)
{
	struct clock_anchor *last = l->n_anchors ? &l->anchors[(l->anchor_head + l->n_anchors - 1) % CLOCK_ANCHORS]
						 : NULL;
	if (!last || (int64_t)(read_ns - last->t_ns) >= CLOCK_ANCHOR_NS) {
		if (l->n_anchors == CLOCK_ANCHORS) {
			l->anchor_head = (l->anchor_head + 1) % CLOCK_ANCHORS;
			l->n_anchors--;
		}
		l->anchors[(l->anchor_head + l->n_anchors) % CLOCK_ANCHORS] = (struct clock_anchor){ read_ns, acquired };
		l->n_anchors++;
	}
	const struct clock_anchor *a = &l->anchors[l->anchor_head];
	int64_t dt = (int64_t)(read_ns - a->t_ns);
	/* a second of history before the rate means anything */
	if (dt >= 1000000000ll && acquired > a->acquired) {
		double rate = (double)(acquired - a->acquired) * 1e9 / (double)dt;
		l->drift = rate / l->sample_rate_hz - 1.0;
		store_drift(l);
	}
}

static int64_t follow_device(struct mead_loop *l, uint64_t tick, int64_t period, const struct timespec *next)
{
	const uint64_t end = mead_tick_first_sample(tick + 1, l->params.period_ns, l->sample_rate_hz);
	const uint64_t end_next = mead_tick_first_sample(tick + 2, l->params.period_ns, l->sample_rate_hz);
	int64_t backlog = (int64_t)l->frame.acquired - (int64_t)end;

	atomic_store_explicit(&l->stats.acquired, l->frame.acquired, memory_order_relaxed);
	atomic_store_explicit(&l->stats.backlog, backlog, memory_order_relaxed);
	if (backlog > atomic_load_explicit(&l->stats.backlog_max, memory_order_relaxed))
		atomic_store_explicit(&l->stats.backlog_max, backlog, memory_order_relaxed);
	note_clock(l, l->read_ns, l->frame.acquired);

	double rate = l->sample_rate_hz * (1.0 + l->drift);
	double target_ns = (double)l->read_ns +
		((double)end_next + l->params.device_margin_samples - (double)l->frame.acquired) * 1e9 / rate;
	double planned_ns = (double)mead_ts_to_ns(next) + period / (1.0 + l->drift);
	double err_ns = planned_ns - target_ns;
	double step = period / (1.0 + l->drift) - l->phase_gain * err_ns;
	/* one correction never moves a wake-up by more than a quarter tick */
	if (step > 1.25 * period)
		step = 1.25 * period;
	if (step < 0.75 * period)
		step = 0.75 * period;
	return (int64_t)step;
}

static bool fault(const struct mead_loop *l)
{
	return l->device_gone ||
	       atomic_load_explicit(&l->stats.exit_reason, memory_order_relaxed) == MEAD_EXIT_DRIVER_FAULT;
}

/*
 * The last ticks' samples may not have come yet (a device a little behind
 * the host, a loop that fell behind and caught up): the run is every
 * sample of its ticks, so they are read, as ticks of no samples of their
 * own, for up to OWED_WAIT_NS.  What has not come by then is lost, and an
 * UNREAD event says which: a LATE event promised them.
 */
static void collect_owed(struct mead_loop *l, uint64_t tick)
{
	const uint64_t end = mead_tick_first_sample(tick, l->params.period_ns, l->sample_rate_hz);
	struct timespec next;

	if (!(l->frame.flags & MEAD_FRAME_LATE) || fault(l))
		return;
	clock_gettime(CLOCK_MONOTONIC, &next);
	const int64_t until = mead_ts_to_ns(&next) + OWED_WAIT_NS;
	while ((l->frame.flags & MEAD_FRAME_LATE) && !fault(l) && mead_ts_to_ns(&next) < until) {
		next = mead_ts_add_ns(next, l->params.period_ns);
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
			;
		l->n_events = 0;
		publish_records(l, end, read_and_pass(l, tick, end, end));
	}
	if ((l->frame.flags & MEAD_FRAME_LATE) && !fault(l) && l->owed_from < end) {
		uint64_t n = end - l->owed_from;
		struct mead_event ev = { .sample = l->owed_from, .type = MEAD_EVENT_UNREAD,
					 .samples = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n };
		stat_add(&l->stats.loss_events[MEAD_EVENT_UNREAD], 1);
		stat_add(&l->stats.loss_samples[MEAD_EVENT_UNREAD], n);
		push_msg(l, MEAD_KIND_EVENTS, end, &ev, 1, sizeof(ev));
	}
	l->n_events = 0;
}

static void *loop_thread(void *arg)
{
	struct mead_loop *l = arg;
	struct timespec next, now;
	uint64_t tick = 0;
	uint64_t max_ticks = l->params.max_ticks;
	const int64_t period = l->params.period_ns;

	prefault_stack(l->params.prefault_stack_bytes ? l->params.prefault_stack_bytes : PREFAULT_STACK_DEFAULT);
	{
		int policy;
		struct sched_param sp;
		if (pthread_getschedparam(pthread_self(), &policy, &sp) == 0)
			atomic_store(&l->stats.rt_active, policy == SCHED_FIFO);
	}
	atomic_store_explicit(&l->stats.state, MEAD_LOOP_RUNNING, memory_order_release);

	/* Tick 0's pulses go out before its samples are read, as every later
	 * tick's go out before theirs; their events lead tick 0's message. */
	l->n_events = 0;
	apply_commands(l, 0);
	uint32_t n0 = decide_and_write(l, 0, NULL, 0);
	if (n0)
		push_msg(l, MEAD_KIND_STIM, 0, l->stim_out, n0, sizeof(struct mead_wire_stim));

	clock_gettime(CLOCK_MONOTONIC, &next);
	next = mead_ts_add_ns(next, period);

	while (!atomic_load_explicit(&l->stop, memory_order_acquire)) {
		if (max_ticks && tick >= max_ticks) {
			atomic_store_explicit(&l->stats.exit_reason, MEAD_EXIT_MAX_TICKS, memory_order_relaxed);
			break;
		}
		if (!l->params.virtual_clock) {
			int r;
			/* EINTR only: TIMER_ABSTIME makes a retry exact.  Anything else
			 * is counted; the tick still runs so acquisition keeps up. */
			while ((r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL)) == EINTR)
				;
			if (r != 0)
				stat_add(&l->stats.sleep_errors, 1);
			clock_gettime(CLOCK_MONOTONIC, &now);
			int64_t lat = mead_ts_diff_ns(&now, &next);
			mead_hist_add(l->stats.lat_hist, MEAD_LAT_BUCKETS, lat);
			stat_max(&l->stats.lat_max_ns, lat > 0 ? (uint64_t)lat : 0);
		}

		run_tick(l, tick);
		l->n_events = 0;

		if (!l->params.virtual_clock) {
			int64_t step = period;
			if (l->follow_device) {
				if (tick == 0) {
					/* The device started before tick 0 was read: its
					 * lead is the start-up backlog, reported, and the
					 * schedule starts from the device's sample 0 (the
					 * backlog is read at once, tick after tick). */
					uint64_t end0 = mead_tick_first_sample(1, l->params.period_ns, l->sample_rate_hz);
					int64_t lead = (int64_t)l->frame.acquired - (int64_t)end0 -
						       (int64_t)l->params.device_margin_samples;
					atomic_store_explicit(&l->stats.startup_backlog, lead, memory_order_relaxed);
					atomic_store_explicit(&l->stats.acquired, l->frame.acquired, memory_order_relaxed);
					note_clock(l, l->read_ns, l->frame.acquired);
					next = mead_ts_add_ns(next, -(int64_t)((double)lead * 1e9 / l->sample_rate_hz));
				} else {
					step = follow_device(l, tick, period, &next);
				}
			}
			/* The schedule is absolute: a late tick is counted and the next
			 * one runs at once to catch up, never re-based. */
			next = mead_ts_add_ns(next, step);
			clock_gettime(CLOCK_MONOTONIC, &now);
			int64_t late = mead_ts_diff_ns(&now, &next);
			if (late > 0) {
				stat_add(&l->stats.overruns, 1);
				stat_max(&l->stats.worst_overrun_ns, (uint64_t)late);
				if (l->params.overrun_fatal) {
					atomic_store_explicit(&l->stats.exit_reason, MEAD_EXIT_OVERRUN, memory_order_relaxed);
					tick++;
					break;
				}
			}
		}
		tick++;
	}

	/* Stop means stop: outputs off before anything else. */
	if (l->driver.ops->stop_outputs)
		l->driver.ops->stop_outputs(l->driver.state);
	collect_owed(l, tick);
	struct mead_event end_ev = {
		.sample = mead_tick_first_sample(tick, l->params.period_ns, l->sample_rate_hz),
		.type = MEAD_EVENT_RUN_END,
	};
	push_msg(l, MEAD_KIND_EVENTS, end_ev.sample, &end_ev, 1, sizeof(end_ev));
	atomic_store_explicit(&l->stats.state, MEAD_LOOP_STOPPED, memory_order_release);
	return NULL;
}

int mead_loop_pick_cpu(int configured, bool isolate)
{
	cpu_set_t allowed, others;
	int cpu = configured;

	if (configured == -2 || sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
		return -1;
	if (cpu == -1)
		for (int i = CPU_SETSIZE - 1; i >= 0; i--)
			if (CPU_ISSET(i, &allowed)) {
				cpu = i;
				break;
			}
	if (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &allowed))
		return configured >= 0 ? configured : -1;
	others = allowed;
	CPU_CLR(cpu, &others);
	if (isolate && CPU_COUNT(&others) > 0)
		sched_setaffinity(0, sizeof(others), &others);
	return cpu;
}

int mead_loop_prepare(struct mead_loop *l, char *warn, size_t warn_len)
{
	size_t wlen = warn && warn_len ? strlen(warn) : 0;

	if (l->prepared)
		return 0;
	l->prepared = true;
	if (l->params.lock_memory) {
		if (mlockall(MCL_CURRENT | MCL_FUTURE) == 0) {
			atomic_store(&l->stats.memory_locked, 1);
		} else if (warn && wlen < warn_len) {
			wlen += (size_t)snprintf(warn + wlen, warn_len - wlen,
						 "mlockall failed (%s): page faults may delay ticks; ", strerror(errno));
		}
	}
	if (l->params.rt_priority > 0 && !l->params.virtual_clock) {
		/* Keep the CPUs out of deep idle states for the run, as cyclictest
		 * does: waking from them costs more than a tick's slack.  The
		 * request holds while the file stays open. */
		int32_t zero = 0;
		l->dma_latency_fd = open("/dev/cpu_dma_latency", O_WRONLY | O_CLOEXEC);
		if (l->dma_latency_fd >= 0 && write(l->dma_latency_fd, &zero, sizeof(zero)) != sizeof(zero)) {
			close(l->dma_latency_fd);
			l->dma_latency_fd = -1;
		}
		if (l->dma_latency_fd < 0 && warn && wlen < warn_len)
			snprintf(warn + wlen, warn_len - wlen,
				 "/dev/cpu_dma_latency not writable: CPUs may sleep deeply between ticks; ");
	}
	return 0;
}

static void set_rt(pthread_attr_t *attr, int priority)
{
	struct sched_param sp = { .sched_priority = priority };
	pthread_attr_setinheritsched(attr, PTHREAD_EXPLICIT_SCHED);
	pthread_attr_setschedpolicy(attr, SCHED_FIFO);
	pthread_attr_setschedparam(attr, &sp);
}

int mead_loop_start(struct mead_loop *l, char *warn, size_t warn_len)
{
	pthread_attr_t attr;
	bool rt = l->params.rt_priority > 0, pinned = l->params.cpu >= 0;
	int r;

	if (warn && warn_len && !l->prepared)
		warn[0] = '\0';
	if (l->thread_started)
		return -EALREADY;
	mead_loop_prepare(l, warn, warn_len);
	size_t wlen = warn && warn_len ? strlen(warn) : 0;

	/* Each fallback says what it gave up: no affinity, or no SCHED_FIFO,
	 * never one silently with the other. */
	for (;;) {
		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, 2 * 1024 * 1024);
		if (pinned) {
			cpu_set_t set;
			CPU_ZERO(&set);
			CPU_SET(l->params.cpu, &set);
			pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
		}
		if (rt)
			set_rt(&attr, l->params.rt_priority);
		atomic_store(&l->stats.state, MEAD_LOOP_CREATED);
		r = pthread_create(&l->thread, &attr, loop_thread, l);
		pthread_attr_destroy(&attr);
		if (r == EPERM && rt) {
			/* No RT privilege: a degraded run at normal priority, said loudly. */
			if (warn && wlen < warn_len)
				wlen += (size_t)snprintf(warn + wlen, warn_len - wlen,
							 "SCHED_FIFO priority %d not permitted (needs CAP_SYS_NICE or "
							 "LimitRTPRIO): running at normal priority, latency is not bounded; ",
							 l->params.rt_priority);
			rt = false;
			continue;
		}
		if (r == EINVAL && pinned) {
			if (warn && wlen < warn_len)
				wlen += (size_t)snprintf(warn + wlen, warn_len - wlen,
							 "CPU %d not available: the loop runs without affinity%s; ",
							 l->params.cpu, rt ? " (still SCHED_FIFO)" : "");
			pinned = false;
			continue;
		}
		if (r == EINVAL && rt) {
			if (warn && wlen < warn_len)
				wlen += (size_t)snprintf(warn + wlen, warn_len - wlen,
							 "SCHED_FIFO priority %d refused (%s): running at normal priority, "
							 "latency is not bounded; ", l->params.rt_priority, strerror(r));
			rt = false;
			continue;
		}
		break;
	}
	if (r != 0)
		return -r;
	l->thread_started = true;
	return 0;
}

int mead_loop_join(struct mead_loop *l)
{
	if (!l->thread_started)
		return -ESRCH;
	pthread_join(l->thread, NULL);
	l->thread_started = false;
	return 0;
}
