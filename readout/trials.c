/* SPDX-License-Identifier: MIT */
#include "readout/trials.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LOSS_RANGES 16u

struct open_trial {
	int64_t index;
	uint64_t start, end;
	int32_t phase;
	uint32_t block;
	int32_t label;
	int64_t item;
	bool lossy;
};

struct mead_trials {
	struct mead_trials_options opt;
	struct mead_trials_stats st;

	/* Spikes by sample, [head, len) live; sample never decreases. */
	uint64_t *sp_sample;
	uint16_t *sp_elec;
	size_t sp_head, sp_len, sp_cap;
	/* Every spike with sample < spike_mark has arrived. */
	uint64_t spike_mark;
	uint64_t last_spike_hdr_sample;
	bool have_spike_hdr;

	/* No event still to come can be earlier than event_mark. */
	uint64_t event_mark;

	bool seq_seen[MEAD_KIND_COUNT + 1];
	uint64_t seq_last[MEAD_KIND_COUNT + 1];

	/* Spike sample ranges [lo, hi] that lost messages may have covered. */
	uint64_t loss_lo[LOSS_RANGES], loss_hi[LOSS_RANGES];
	uint32_t n_loss;

	int32_t phase;
	uint32_t block;
	int32_t pending_label;
	int64_t pending_item;
	bool pending_lossy;

	bool is_open;
	struct open_trial open;

	/* Ended, waiting for spikes: a ring. */
	struct open_trial *ended;
	uint32_t ended_head, ended_len, ended_cap;

	/* Finished: a ring of full trials. */
	struct mead_trial *done;
	uint32_t done_head, done_len, done_cap;
};

int mead_trials_new(const struct mead_trials_options *opt, struct mead_trials **ret)
{
	if (!opt || opt->n_electrodes == 0 || opt->n_electrodes > MEAD_TRIALS_MAX_ELECTRODES)
		return -EINVAL;
	struct mead_trials *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->opt = *opt;
	if (t->opt.max_waiting == 0)
		t->opt.max_waiting = 8;
	if (t->opt.max_buffered_spikes == 0)
		t->opt.max_buffered_spikes = 4u << 20;
	t->phase = MEAD_TRIAL_PHASE_UNKNOWN;
	t->pending_label = -1;
	t->pending_item = -1;
	t->sp_cap = 1u << 16;
	t->sp_sample = malloc(t->sp_cap * sizeof(*t->sp_sample));
	t->sp_elec = malloc(t->sp_cap * sizeof(*t->sp_elec));
	t->ended_cap = 16;
	t->ended = malloc(t->ended_cap * sizeof(*t->ended));
	t->done_cap = 16;
	t->done = malloc(t->done_cap * sizeof(*t->done));
	if (!t->sp_sample || !t->sp_elec || !t->ended || !t->done) {
		mead_trials_free(t);
		return -ENOMEM;
	}
	*ret = t;
	return 0;
}

void mead_trials_free(struct mead_trials *t)
{
	if (!t)
		return;
	free(t->sp_sample);
	free(t->sp_elec);
	free(t->ended);
	free(t->done);
	free(t);
}

void mead_trials_get_stats(const struct mead_trials *t, struct mead_trials_stats *ret)
{
	*ret = t->st;
}

/* First live index with sample >= s. */
static size_t spikes_lower_bound(const struct mead_trials *t, uint64_t s)
{
	size_t lo = t->sp_head, hi = t->sp_len;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (t->sp_sample[mid] < s)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void spikes_compact(struct mead_trials *t)
{
	size_t live = t->sp_len - t->sp_head;
	memmove(t->sp_sample, t->sp_sample + t->sp_head, live * sizeof(*t->sp_sample));
	memmove(t->sp_elec, t->sp_elec + t->sp_head, live * sizeof(*t->sp_elec));
	t->sp_head = 0;
	t->sp_len = live;
}

static int spikes_reserve(struct mead_trials *t, size_t more)
{
	if (t->sp_len + more <= t->sp_cap)
		return 0;
	if (t->sp_head > 0)
		spikes_compact(t);
	if (t->sp_len + more <= t->sp_cap)
		return 0;
	size_t cap = t->sp_cap;
	while (cap < t->sp_len + more)
		cap *= 2;
	uint64_t *s = realloc(t->sp_sample, cap * sizeof(*s));
	if (!s)
		return -ENOMEM;
	t->sp_sample = s;
	uint16_t *e = realloc(t->sp_elec, cap * sizeof(*e));
	if (!e)
		return -ENOMEM;
	t->sp_elec = e;
	t->sp_cap = cap;
	return 0;
}

/* Spikes older than anything a trial can still claim are of no use. */
static void spikes_prune(struct mead_trials *t)
{
	uint64_t keep = t->event_mark;
	if (t->ended_len > 0 && t->ended[t->ended_head].start < keep)
		keep = t->ended[t->ended_head].start;
	if (t->is_open && t->open.start < keep)
		keep = t->open.start;
	t->sp_head = spikes_lower_bound(t, keep);
	if (t->sp_head == t->sp_len)
		t->sp_head = t->sp_len = 0;
	else if (t->sp_head > t->sp_cap / 2)
		spikes_compact(t);
}

static bool overlaps_loss(const struct mead_trials *t, uint64_t start, uint64_t end)
{
	uint32_t n = t->n_loss < LOSS_RANGES ? t->n_loss : LOSS_RANGES;
	for (uint32_t i = 0; i < n; i++)
		if (t->loss_lo[i] < end && t->loss_hi[i] >= start)
			return true;
	return false;
}

static int done_push(struct mead_trials *t, const struct open_trial *o)
{
	if (t->done_len == t->done_cap) {
		uint32_t cap = t->done_cap * 2;
		struct mead_trial *d = malloc(cap * sizeof(*d));
		if (!d)
			return -ENOMEM;
		for (uint32_t i = 0; i < t->done_len; i++)
			d[i] = t->done[(t->done_head + i) % t->done_cap];
		free(t->done);
		t->done = d;
		t->done_head = 0;
		t->done_cap = cap;
	}
	struct mead_trial *tr = &t->done[(t->done_head + t->done_len) % t->done_cap];
	memset(tr, 0, sizeof(*tr));
	tr->index = o->index;
	tr->start_sample = o->start;
	tr->end_sample = o->end;
	tr->phase = o->phase;
	tr->block = o->block;
	tr->label = o->label;
	tr->item = o->item;
	tr->lossy = o->lossy || overlaps_loss(t, o->start, o->end);
	for (size_t i = spikes_lower_bound(t, o->start); i < t->sp_len && t->sp_sample[i] < o->end; i++) {
		tr->counts[t->sp_elec[i]]++;
		tr->total_spikes++;
	}
	t->done_len++;
	t->st.trials_finished++;
	return 0;
}

/* Finalises ended trials the spike stream has passed; all of them when
 * force is set; the oldest beyond max_waiting regardless. */
static void finalise(struct mead_trials *t, bool force)
{
	while (t->ended_len > 0) {
		struct open_trial *o = &t->ended[t->ended_head];
		bool ready = t->spike_mark >= o->end;
		bool overdue = t->ended_len > t->opt.max_waiting;
		if (!ready && !force && !overdue)
			break;
		if (!ready && !force)
			t->st.trials_forced++;
		if (done_push(t, o) < 0)
			break;
		t->ended_head = (t->ended_head + 1) % t->ended_cap;
		t->ended_len--;
	}
	spikes_prune(t);
}

static int ended_push(struct mead_trials *t, const struct open_trial *o)
{
	if (t->ended_len == t->ended_cap) {
		uint32_t cap = t->ended_cap * 2;
		struct open_trial *e = malloc(cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		for (uint32_t i = 0; i < t->ended_len; i++)
			e[i] = t->ended[(t->ended_head + i) % t->ended_cap];
		free(t->ended);
		t->ended = e;
		t->ended_head = 0;
		t->ended_cap = cap;
	}
	t->ended[(t->ended_head + t->ended_len) % t->ended_cap] = *o;
	t->ended_len++;
	return 0;
}

static void track_seq(struct mead_trials *t, const struct mead_wire_header *h)
{
	uint16_t k = h->kind;
	if (!t->seq_seen[k]) {
		/* Joining late is not a loss. */
		t->seq_seen[k] = true;
		t->seq_last[k] = h->seq;
		return;
	}
	uint64_t want = t->seq_last[k] + 1;
	t->seq_last[k] = h->seq;
	if (h->seq == want)
		return;
	if (h->seq < want) {
		t->st.seq_resets[k]++;
		return;
	}
	t->st.seq_gaps[k]++;
	t->st.lost[k] += h->seq - want;
	if (k == MEAD_KIND_SPIKES) {
		/* Lost spikes lie between the last header seen and this one. */
		uint32_t slot = t->n_loss % LOSS_RANGES;
		t->loss_lo[slot] = t->have_spike_hdr ? t->last_spike_hdr_sample : 0;
		t->loss_hi[slot] = h->sample;
		t->n_loss++;
	} else if (k == MEAD_KIND_EVENTS) {
		/* The open trial's label or end, or the next one's phase, label
		 * or item, may be among the lost events. */
		if (t->is_open)
			t->open.lossy = true;
		else
			t->pending_lossy = true;
	}
}

static void feed_spikes(struct mead_trials *t, const struct mead_wire_header *h, const uint8_t *p)
{
	if (spikes_reserve(t, h->count) < 0) {
		t->st.spikes_evicted += h->count;
		return;
	}
	for (uint32_t i = 0; i < h->count; i++, p += h->record_size) {
		uint64_t s;
		uint16_t e;
		memcpy(&s, p, 8);
		memcpy(&e, p + 8, 2);
		s = le64toh(s);
		e = le16toh(e);
		if (e >= t->opt.n_electrodes) {
			t->st.spikes_out_of_range++;
			continue;
		}
		/* A spike earlier than the previous one breaks the contract;
		 * dropping it keeps the buffer sorted. */
		if (t->sp_len > t->sp_head && s < t->sp_sample[t->sp_len - 1]) {
			t->st.bad_messages++;
			continue;
		}
		t->sp_sample[t->sp_len] = s;
		t->sp_elec[t->sp_len] = e;
		t->sp_len++;
		if (s > t->spike_mark)
			t->spike_mark = s;
	}
	if (h->sample > t->spike_mark)
		t->spike_mark = h->sample;
	t->last_spike_hdr_sample = h->sample;
	t->have_spike_hdr = true;

	size_t live = t->sp_len - t->sp_head;
	if (live > t->opt.max_buffered_spikes) {
		size_t drop = live - t->opt.max_buffered_spikes;
		t->sp_head += drop;
		t->st.spikes_evicted += drop;
	}
}

static void drop_open(struct mead_trials *t)
{
	if (t->is_open) {
		t->is_open = false;
		t->st.trials_dropped++;
	}
}

static void feed_event(struct mead_trials *t, uint64_t sample, uint32_t type, int32_t value)
{
	if (sample > t->event_mark)
		t->event_mark = sample;
	switch (type) {
	case MEAD_EVENT_RUN_START:
		drop_open(t);
		t->st.run_started = true;
		t->st.run_ended = false;
		if (value > 0)
			t->st.sample_rate_hz = (uint32_t)value;
		break;
	case MEAD_EVENT_RUN_END:
		drop_open(t);
		t->st.run_ended = true;
		finalise(t, true);
		break;
	case MEAD_EVENT_PHASE:
		t->phase = value;
		t->block++;
		break;
	case MEAD_EVENT_TRIAL_START:
		drop_open(t);
		t->is_open = true;
		t->open = (struct open_trial){
			.index = value,
			.start = sample,
			.end = sample,
			.phase = t->phase,
			.block = t->block,
			.label = t->pending_label,
			.item = t->pending_item,
			.lossy = t->pending_lossy,
		};
		t->pending_label = -1;
		t->pending_item = -1;
		t->pending_lossy = false;
		break;
	case MEAD_EVENT_TRIAL_END:
		if (!t->is_open) {
			t->st.trials_dropped++;
			break;
		}
		if (t->open.index != value)
			t->open.lossy = true;
		t->open.end = sample;
		t->is_open = false;
		if (ended_push(t, &t->open) < 0)
			t->st.trials_dropped++;
		break;
	case MEAD_EVENT_LABEL:
		if (t->is_open)
			t->open.label = value;
		else
			t->pending_label = value;
		break;
	case MEAD_EVENT_ITEM:
		if (t->is_open)
			t->open.item = value;
		else
			t->pending_item = value;
		break;
	default:
		break;
	}
}

int mead_trials_feed(struct mead_trials *t, const struct mead_wire_header *h, const void *payload,
		     size_t len)
{
	if (h->kind < 1 || h->kind > MEAD_KIND_COUNT) {
		t->st.bad_messages++;
		return -EBADMSG;
	}
	t->st.messages[h->kind]++;
	track_seq(t, h);

	const uint8_t *p = payload;
	switch (h->kind) {
	case MEAD_KIND_SPIKES:
		if (h->count > 0 && (h->record_size < 16 || len < (size_t)h->count * h->record_size)) {
			t->st.bad_messages++;
			return -EBADMSG;
		}
		feed_spikes(t, h, p);
		break;
	case MEAD_KIND_EVENTS:
		if (h->count > 0 && (h->record_size < 16 || len < (size_t)h->count * h->record_size)) {
			t->st.bad_messages++;
			return -EBADMSG;
		}
		for (uint32_t i = 0; i < h->count; i++, p += h->record_size) {
			uint64_t s;
			uint32_t type;
			int32_t value;
			memcpy(&s, p, 8);
			memcpy(&type, p + 8, 4);
			memcpy(&value, p + 12, 4);
			feed_event(t, le64toh(s), le32toh(type), (int32_t)le32toh((uint32_t)value));
		}
		if (h->sample > t->event_mark && h->count == 0)
			t->event_mark = h->sample;
		break;
	default:
		break;
	}
	finalise(t, false);
	return 0;
}

void mead_trials_flush(struct mead_trials *t)
{
	drop_open(t);
	finalise(t, true);
}

int mead_trials_next(struct mead_trials *t, struct mead_trial *out)
{
	if (t->done_len == 0)
		return 0;
	*out = t->done[t->done_head];
	t->done_head = (t->done_head + 1) % t->done_cap;
	t->done_len--;
	return 1;
}
