/* SPDX-License-Identifier: MIT */
/*
 * The stimulator: the board's own clocked stream.  One analog-output
 * command (TRIG_INT start, TRIG_TIMER scans at ao_rate_hz, no stop) runs
 * from start() on; it idles at the code of 0 V and pulses are written into
 * it ahead of time at their sample positions.
 *
 * Positions: AO scan 0 of a stream plays at AI sample ao_s0 (0 for the
 * stream start() fires right after the AI command; the device position
 * when a lost stream is re-armed), AO scan a at ao_s0 + a x ao_ns / ai_ns.
 * What has been written to the kernel is committed: a pulse asked for
 * inside it starts at the first free scan and says so.  The driver keeps
 * ao_lead_us of stream written ahead of the device (the device position is
 * the AI clock), and every write ends on a scan at 0 V, so a stream that
 * runs dry leaves the output at zero.
 *
 * Pulses are sequenced on each stimulator (guard time after a pulse, and
 * the routing switch time before one on another electrode), placed in a
 * ring of planned scans, and handed to the loop as PENDING; they settle as
 * DELIVERED once the device's clock has passed their start on a stream
 * still running, or REFUSED when the stream ended before (stop_outputs,
 * the device gone).  A stream that runs dry (the loop fell behind) is
 * re-armed with zeros and reported as a STIM_LOST event.
 *
 * Routing: lines set by instructions can only change between pulses, at a
 * tick (the lines switch when the previous pulse has finished, so a pulse
 * on another electrode waits two ticks); on a board whose DIO runs output
 * commands the lines are a second stream clocked by the AO updates, in
 * lockstep with it (switch time = guard).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drivers/comedi/state.h"
#include "lib/core/time.h"

enum lost_cause { LOST_UNDERRUN, LOST_STOP, LOST_GONE, LOST_MISROUTE };

/* ---------------------------------------------------------------- positions */

static uint64_t a_of_sample(const struct comedi_state *st, uint64_t s)
{
	if (s <= st->ao_s0)
		return 0;
	return ((s - st->ao_s0) * st->ai_ns + st->ao_ns - 1) / st->ao_ns;
}

static uint64_t sample_of_a(const struct comedi_state *st, uint64_t a)
{
	return st->ao_s0 + (a * st->ao_ns + st->ai_ns - 1) / st->ai_ns;
}

static uint64_t us_to_scans(const struct comedi_state *st, uint64_t us)
{
	return (us * st->ao_rate + 999999u) / 1000000u;
}

static uint64_t ao_written(const struct comedi_state *st)
{
	return st->ao_wbytes / st->ao_scan_bytes;
}

/* The first scan a new sample may go to: a scan partly handed over is taken. */
static uint64_t ao_committed(const struct comedi_state *st)
{
	uint64_t a = (st->ao_wbytes + st->ao_scan_bytes - 1) / st->ao_scan_bytes;
	if (st->route == ROUTE_STREAM) {
		uint64_t d = (st->do_wbytes + st->do_scan_bytes - 1) / st->do_scan_bytes;
		if (d > a)
			a = d;
	}
	return a;
}

/* Scans the plan ring holds from: both streams have written all before. */
static uint64_t plan_base(const struct comedi_state *st)
{
	uint64_t a = ao_written(st);
	if (st->route == ROUTE_STREAM) {
		uint64_t d = st->do_wbytes / st->do_scan_bytes;
		if (d < a)
			a = d;
	}
	return a;
}

/* ---------------------------------------------------------------- the plan */

static uint8_t *plan_scan(struct comedi_state *st, uint64_t a)
{
	return st->plan + (size_t)(a % st->plan_scans) * st->ao_scan_bytes;
}

static void put_code(struct comedi_state *st, uint64_t a, uint32_t k, lsampl_t code)
{
	uint8_t *p = plan_scan(st, a) + (size_t)k * st->ao_bps;
	if (st->ao_bps == sizeof(lsampl_t)) {
		memcpy(p, &code, sizeof(code));
	} else {
		sampl_t c = (sampl_t)code;
		memcpy(p, &c, sizeof(c));
	}
}

static void zero_scan(struct comedi_state *st, uint64_t a)
{
	for (uint32_t k = 0; k < st->n_ao; k++)
		put_code(st, a, k, st->ao_zero[k]);
}

static void put_word(struct comedi_state *st, uint64_t a, uint32_t word)
{
	uint8_t *p = st->do_plan + (size_t)(a % st->plan_scans) * st->do_scan_bytes;
	memset(p, 0, st->do_scan_bytes);
	if (st->do_bps == sizeof(lsampl_t)) {
		lsampl_t w = word;
		memcpy(p, &w, sizeof(w));
	} else {
		for (uint32_t i = 0; i * 16 < st->do_nlines; i++) {
			sampl_t w = (sampl_t)(word >> (16 * i));
			memcpy(p + 2 * i, &w, sizeof(w));
		}
	}
}

static void plan_clear(struct comedi_state *st)
{
	for (uint64_t a = 0; a < st->plan_scans; a++) {
		zero_scan(st, a);
		if (st->do_plan)
			put_word(st, a, 0);
	}
}

static uint32_t route_bits(const struct comedi_state *st, uint16_t electrode)
{
	unsigned bits = 0;
	for (uint32_t i = 0; i < st->n_route; i++)
		if ((electrode >> i) & 1u)
			bits |= 1u << st->route_line[i];
	if (st->enable_line >= 0)
		bits |= 1u << st->enable_line;
	if (st->blank_line >= 0)
		bits |= 1u << st->blank_line;
	return bits;
}

static int route_key(const struct comedi_state *st, uint16_t electrode)
{
	return st->n_route ? (int)electrode : 0;
}

static void set_lines(struct comedi_state *st, unsigned bits)
{
	unsigned b = bits;
	comedi_dio_bitfield2(st->dev, (unsigned)st->dio_sub, st->dio_mask, &b, 0);
}

static lsampl_t ao_code(const struct comedi_state *st, uint32_t k, double volts)
{
	double c = st->ao_poly_ok[k] ? comedi_from_physical(volts, &st->ao_poly[k])
				     : (volts - st->ao_min_v) / (st->ao_max_v - st->ao_min_v) * st->ao_maxdata;
	if (c < 0)
		c = 0;
	if (c > st->ao_maxdata)
		c = st->ao_maxdata;
	return (lsampl_t)lround(c);
}

/* ---------------------------------------------------------------- writing */

static struct cpulse *pend_at(struct comedi_state *st, uint32_t i)
{
	return &st->pend[i & (PENDING_CAP - 1)];
}

/* Hands the ring's bytes [*wbytes, end_bytes) to the kernel; stops early
 * when its buffer is full.  0, or -errno (EPIPE: the command ran dry). */
static int write_ring(int fd, const uint8_t *ring, size_t ring_bytes, uint64_t *wbytes, uint64_t end_bytes)
{
	while (*wbytes < end_bytes) {
		size_t off = (size_t)(*wbytes % ring_bytes);
		size_t n = ring_bytes - off;
		if (n > end_bytes - *wbytes)
			n = (size_t)(end_bytes - *wbytes);
		ssize_t r = write(fd, ring + off, n);
		if (r > 0) {
			*wbytes += (uint64_t)r;
			if ((size_t)r < n)
				return 0;
			continue;
		}
		if (r == 0)
			return -EPIPE;     /* the command is over */
		if (errno == EAGAIN)
			return 0;
		if (errno == EINTR)
			continue;
		return -errno;
	}
	return 0;
}

/* Writes the plan up to scan `target`, extended to the first scan where
 * every output is idle (0 V, lines low), so the last sample handed over
 * is a zero. */
static int flush(struct comedi_state *st, uint64_t target)
{
	uint64_t base = plan_base(st);
	uint64_t end = target > ao_committed(st) ? target : ao_committed(st);
	uint64_t limit = base + st->plan_scans;
	uint64_t g = st->route == ROUTE_STREAM ? us_to_scans(st, st->guard_us) : 0;
	for (bool moved = true; moved;) {
		moved = false;
		for (uint32_t i = st->pend_head; i != st->pend_tail; i++) {
			const struct cpulse *p = pend_at(st, i);
			if (p->gen != st->gen)
				continue;
			uint64_t b0 = p->a_start >= g ? p->a_start - g : 0, b1 = p->a_end + g;
			if (b0 < end && end <= b1) {
				end = b1 + 1;
				moved = true;
			}
		}
	}
	if (end > limit)
		end = limit;
	int r = 0;
	if (st->route == ROUTE_STREAM)
		r = write_ring(st->fd_do, st->do_plan, (size_t)st->plan_scans * st->do_scan_bytes, &st->do_wbytes,
			       end * st->do_scan_bytes);
	if (r == 0)
		r = write_ring(st->fd, st->plan, (size_t)st->plan_scans * st->ao_scan_bytes, &st->ao_wbytes,
			       end * st->ao_scan_bytes);
	/* scans both streams took are free for the scans a ring further on */
	uint64_t nb = plan_base(st);
	for (uint64_t a = base; a < nb; a++) {
		zero_scan(st, a);
		if (st->do_plan)
			put_word(st, a, 0);
	}
	return r;
}

/* ---------------------------------------------------------------- the stream */

static void cancel_streams(struct comedi_state *st)
{
	comedi_cancel(st->dev, (unsigned)st->ao_sub);
	if (st->route == ROUTE_STREAM)
		comedi_cancel(st->dev_do, (unsigned)st->dio_sub);
}

static void new_generation(struct comedi_state *st)
{
	st->gen++;
	st->ao_wbytes = 0;
	st->do_wbytes = 0;
	plan_clear(st);
	for (uint32_t k = 0; k < MAX_STIMULATORS; k++) {
		st->stim_free[k] = 0;
		st->last_el[k] = -1;
	}
}

static int arm_commands(struct comedi_state *st)
{
	comedi_cmd c = st->ao_cmd;
	if (comedi_command(st->dev, &c) < 0)
		return -comedi_errno_();
	if (st->route == ROUTE_STREAM) {
		comedi_cmd d = st->do_cmd;
		if (comedi_command(st->dev_do, &d) < 0) {
			int e = comedi_errno_();
			comedi_cancel(st->dev, (unsigned)st->ao_sub);
			return -e;
		}
	}
	atomic_store(&st->ao_armed, true);
	return 0;
}

/* The DIO stream waits for the AO updates that clock it. */
/* The routing stream is clocked by the AO's updates, so the AO trigger is
 * what starts both: the host time it took is *ret_ns (its middle) and
 * *ret_half_ns (half its length). */
static int fire(struct comedi_state *st, uint64_t *ret_ns, uint64_t *ret_half_ns)
{
	if (st->route == ROUTE_STREAM && comedi_internal_trigger(st->dev_do, (unsigned)st->dio_sub, 0) < 0)
		return -comedi_errno_();
	uint64_t t0 = mead_now_ns();
	if (comedi_internal_trigger(st->dev, (unsigned)st->ao_sub, 0) < 0)
		return -comedi_errno_();
	uint64_t t1 = mead_now_ns();
	*ret_ns = t0 + (t1 - t0) / 2;
	*ret_half_ns = (t1 - t0) / 2;
	return 0;
}

/* AO scan 0 plays at the AI sample the device was at when the trigger
 * went in: the AI clock extrapolated from its last observation, which is
 * the AI command itself at start() and the last read at a re-arm.  Boards
 * whose AO can start on the AI's start edge would need no estimate; the
 * software trigger is what every board with TRIG_INT has. */
static void place_stream(struct comedi_state *st, uint64_t fired_ns, uint64_t half_ns)
{
	if (st->virtual_clock)
		return;
	st->ao_s0 = acq_sample_at(st, fired_ns, st->ao_s0);
	st->ao_skew_ns = (int64_t)(half_ns + st->obs_half_ns);
}

/* write_stim (every tick) writes the stream lead_samples ahead of the
 * device; read_frame only makes sure it cannot run dry before that, so
 * what is committed when the next tick's pulses come is as little as the
 * tick's jitter allows and they start close to when they were asked for. */
static uint64_t lead_target(const struct comedi_state *st)
{
	return a_of_sample(st, st->acquired + st->lead_samples);
}

static uint64_t slack_target(const struct comedi_state *st)
{
	uint64_t slack = st->lead_samples > st->tick_samples ? st->lead_samples - st->tick_samples : 0;
	return a_of_sample(st, st->acquired + slack);
}

/* A new stream, idle, from the device's position on; the loss of the
 * last one is reported once this one runs. */
static int rearm(struct comedi_state *st, struct mead_frame *f)
{
	uint32_t req = atomic_load(&st->stop_req);
	cancel_streams(st);
	new_generation(st);
	st->ao_s0 = st->acquired;
	int r = arm_commands(st);
	if (r == 0)
		r = flush(st, lead_target(st));
	uint64_t fired_ns = 0, half_ns = 0;
	if (r == 0 && (r = fire(st, &fired_ns, &half_ns)) == 0)
		place_stream(st, fired_ns, half_ns);
	if (r == 0 && atomic_load(&st->stop_req) != req)
		r = -ECANCELED;    /* stop_outputs ran meanwhile: it wins */
	if (r < 0) {
		cancel_streams(st);
		st->ao_live = false;
		return r;
	}
	st->ao_live = true;
	atomic_fetch_add(&st->ao_rearms, 1);
	if (st->lost_pending) {
		mead_frame_event(f, MEAD_EVENT_STIM_LOST, st->lost_at, st->ao_s0 > st->lost_at ? st->ao_s0 - st->lost_at : 0,
				 0, (int32_t)st->lost_dropped);
		st->lost_pending = false;
		st->lost_dropped = 0;
	}
	return 0;
}

/* Where the device was when stop_outputs ran. */
static uint64_t stop_sample(const struct comedi_state *st)
{
	return st->virtual_clock ? st->acquired : acq_sample_at(st, atomic_load(&st->stop_ns), st->acquired);
}

/* The stream ended: what each of its pulses became.  Returns how many
 * were dropped before they started. */
static uint32_t stream_lost(struct comedi_state *st, enum lost_cause cause, uint32_t from)
{
	uint64_t w = ao_written(st);
	uint64_t s_stop = cause == LOST_STOP ? stop_sample(st) : 0;
	uint32_t dropped = 0;
	for (uint32_t i = st->pend_head; i != st->pend_tail; i++) {
		struct cpulse *p = pend_at(st, i);
		if (p->gen != st->gen || p->state != CP_PENDING)
			continue;
		bool started;
		switch (cause) {
		case LOST_UNDERRUN:
			/* a stream runs dry only after playing all it was given */
			started = p->a_start < w;
			break;
		case LOST_STOP:
			started = p->a_start < w && p->start < s_stop;
			break;
		case LOST_GONE:
			started = p->a_start < w && p->start < st->acquired;
			break;
		default:
			started = p->a_start < w && i < from && p->start < st->acquired;
			break;
		}
		p->state = CP_READY;
		if (started) {
			p->status = MEAD_STIM_DELIVERED;
		} else {
			p->status = MEAD_STIM_REFUSED;
			p->reason = cause == LOST_GONE ? MEAD_STIM_REASON_UNKNOWN : MEAD_STIM_REASON_CANCELLED;
			dropped++;
		}
	}
	st->ao_live = false;
	atomic_store(&st->ao_armed, false);
	if (st->route == ROUTE_LINES && cause != LOST_GONE) {
		set_lines(st, 0);
		st->routed_el = -1;
	}
	return dropped;
}

static void lose_and_rearm(struct comedi_state *st, struct mead_frame *f, enum lost_cause cause, uint32_t from)
{
	uint64_t at = sample_of_a(st, ao_written(st));
	if (at > st->acquired)
		at = st->acquired;
	cancel_streams(st);
	uint32_t dropped = stream_lost(st, cause, from);
	if (cause == LOST_UNDERRUN)
		atomic_fetch_add(&st->ao_underruns, 1);
	if (!st->lost_pending)
		st->lost_at = at;
	st->lost_pending = true;
	st->lost_dropped += dropped;
	rearm(st, f);
}

/* ---------------------------------------------------------------- routing */

/* Whether a pulse no longer holds its stimulator: its stream ended, it was
 * refused, or the device is past its end and guard time. */
static bool finished(const struct comedi_state *st, const struct cpulse *p)
{
	return p->gen != st->gen || (p->state != CP_PENDING && p->status != MEAD_STIM_DELIVERED) ||
	       p->end + st->guard_samples <= st->acquired;
}

/* Lines set by instructions: they change only while no pulse plays, to the
 * electrode of the next one (a pulse that would start on other lines
 * stops the stream: better no pulse than one on the wrong electrode). */
static void route_update(struct comedi_state *st, struct mead_frame *f)
{
	if (st->route != ROUTE_LINES || !st->ao_live)
		return;
	uint32_t i = st->pend_head;
	for (; i != st->pend_tail; i++)
		if (!finished(st, pend_at(st, i)))
			break;
	if (i == st->pend_tail) {
		if (st->routed_el != -1) {
			set_lines(st, 0);
			st->routed_el = -1;
		}
		return;
	}
	const struct cpulse *p = pend_at(st, i);
	int key = route_key(st, p->pulse.electrode);
	if (key == st->routed_el)
		return;
	if (p->start < st->acquired + st->guard_samples) {
		atomic_fetch_add(&st->misrouted, 1);
		lose_and_rearm(st, f, LOST_MISROUTE, i);
		return;
	}
	set_lines(st, route_bits(st, p->pulse.electrode));
	st->routed_el = key;
}

/* ---------------------------------------------------------------- results */

static void report(struct comedi_state *st, struct mead_frame *f)
{
	uint32_t cap = f && f->stim_results ? f->stim_result_capacity : 0;
	for (uint32_t i = st->pend_head; i != st->pend_tail; i++) {
		struct cpulse *p = pend_at(st, i);
		if (p->state == CP_PENDING && p->gen == st->gen && st->ao_live && p->start < st->acquired) {
			p->state = CP_READY;
			p->status = MEAD_STIM_DELIVERED;
		}
		if (p->state != CP_READY || f->n_stim_results >= cap)
			continue;
		f->stim_results[f->n_stim_results++] = (struct mead_stim_result){
			.pulse = p->pulse, .sample = p->status == MEAD_STIM_DELIVERED ? p->start : 0,
			.status = p->status, .reason = p->reason,
		};
		p->state = CP_REPORTED;
		if (p->status == MEAD_STIM_DELIVERED) {
			atomic_fetch_add(&st->pulses, 1);
			if (p->start > p->pulse.sample)
				atomic_fetch_add(&st->pulses_late, 1);
		} else {
			atomic_fetch_add(&st->pulses_cancelled, 1);
		}
	}
	while (st->pend_head != st->pend_tail) {
		struct cpulse *p = pend_at(st, st->pend_head);
		if (p->state != CP_REPORTED || !finished(st, p))
			break;
		st->pend_head++;
	}
}

/* ---------------------------------------------------------------- each tick */

void stim_tick(struct comedi_state *st, struct mead_frame *f, int acq_result)
{
	if (!st->stim)
		return;
	uint32_t req = atomic_load(&st->stop_req);
	if (req != atomic_load(&st->stop_seen)) {
		if (atomic_load(&st->stop_done) != req)
			return;   /* stop_outputs is running on another thread */
		atomic_store(&st->stop_seen, req);
		if (st->ao_live || st->pend_head != st->pend_tail)
			stream_lost(st, LOST_STOP, 0);
	}
	if (acq_result == -ENODEV || st->gone) {
		if (st->ao_live || st->pend_head != st->pend_tail)
			stream_lost(st, LOST_GONE, 0);
		report(st, f);
		return;
	}
	/* a new stream needs the device's position: only from a running AI */
	if (!st->ao_live && st->running && acq_result == 0)
		rearm(st, f);
	if (st->ao_live) {
		/* fed by last tick's write_stim: only the slack; not fed (a
		 * caller that skips write_stim): the whole lead */
		int r = flush(st, st->fed ? slack_target(st) : lead_target(st));
		st->fed = false;
		if (r == -ENODEV) {
			st->gone = true;
			stream_lost(st, LOST_GONE, 0);
		} else if (r < 0 && atomic_load(&st->stop_req) != atomic_load(&st->stop_seen)) {
			return;   /* stop_outputs cancelled it meanwhile: the next tick settles */
		} else if (r < 0) {
			lose_and_rearm(st, f, LOST_UNDERRUN, 0);
		}
	}
	route_update(st, f);
	report(st, f);
}

/* ---------------------------------------------------------------- pulses */

static bool stimulator_idle(const struct comedi_state *st, uint16_t k)
{
	for (uint32_t i = st->pend_head; i != st->pend_tail; i++) {
		const struct cpulse *p = &st->pend[i & (PENDING_CAP - 1)];
		if (p->stim == k && !finished(st, p))
			return false;
	}
	return true;
}

static void place(struct comedi_state *st, const struct mead_stim_pulse *p, struct mead_stim_result *res)
{
	uint16_t k = p->electrode < st->electrodes ? st->stim_of_electrode[p->electrode] : UINT16_MAX;
	if (k == UINT16_MAX || p->phase_us == 0 || p->phase_us > st->max_phase_us ||
	    !(fabsf(p->amplitude_ua) <= st->max_ua)) {
		res->reason = MEAD_STIM_REASON_RANGE;
		atomic_fetch_add(&st->stim_errors, 1);
		return;
	}
	if (st->pend_tail - st->pend_head >= PENDING_CAP) {
		res->reason = MEAD_STIM_REASON_QUEUE_FULL;
		return;
	}
	uint64_t ph = (uint64_t)(((uint64_t)p->phase_us * st->ao_rate + 500000u) / 1000000u);
	uint64_t gap = (uint64_t)(((uint64_t)p->interphase_us * st->ao_rate + 500000u) / 1000000u);
	if (ph == 0)
		ph = 1;
	uint64_t len = 2 * ph + gap;
	uint64_t guard = us_to_scans(st, st->guard_us);
	uint64_t dog = st->route == ROUTE_STREAM ? guard : 0;
	int key = route_key(st, p->electrode);
	uint64_t a = ao_committed(st) + dog;
	if (st->last_el[k] >= 0) {
		uint64_t after = st->stim_free[k] + guard;
		if (st->route != ROUTE_NONE && st->last_el[k] != key)
			after += us_to_scans(st, st->switch_us);
		if (after > a)
			a = after;
	}
	if (st->route == ROUTE_LINES && stimulator_idle(st, k) && st->routed_el != key) {
		/* nothing plays: the lines switch now, and settle for a guard time */
		set_lines(st, route_bits(st, p->electrode));
		st->routed_el = key;
		uint64_t settled = a_of_sample(st, st->acquired + st->guard_samples);
		if (settled > a)
			a = settled;
	}
	uint64_t want = a_of_sample(st, p->sample);
	if (want > a)
		a = want;
	if (a + len + dog + 2 > plan_base(st) + st->plan_scans) {
		res->reason = MEAD_STIM_REASON_QUEUE_FULL;
		return;
	}
	double v = p->amplitude_ua / st->ua_per_volt;
	lsampl_t c1 = ao_code(st, k, v), c2 = ao_code(st, k, -v);
	for (uint64_t i = 0; i < ph; i++) {
		put_code(st, a + i, k, c1);
		put_code(st, a + ph + gap + i, k, c2);
	}
	if (st->route == ROUTE_STREAM) {
		uint32_t bits = route_bits(st, p->electrode);
		for (uint64_t i = a - dog; i < a + len + dog; i++)
			put_word(st, i, bits);
	}
	struct cpulse *cp = pend_at(st, st->pend_tail++);
	*cp = (struct cpulse){
		.pulse = *p, .a_start = a, .a_end = a + len, .start = sample_of_a(st, a),
		.end = sample_of_a(st, a + len), .gen = st->gen, .stim = k, .state = CP_PENDING,
	};
	st->stim_free[k] = a + len;
	st->last_el[k] = key;
	if (st->blank_all) {
		mead_sig_blank_pulse(st->sig, UINT32_MAX, cp->start);
	} else {
		for (uint32_t i = 0; i < st->nchan; i++)
			if (st->electrode_of_chan[i] == p->electrode)
				mead_sig_blank_pulse(st->sig, i, cp->start);
	}
	res->status = MEAD_STIM_PENDING;
	res->reason = 0;
}

int comedi_write_stim_(void *state, uint64_t tick, const struct mead_stim_pulse *p, uint32_t n,
		       struct mead_stim_result *results)
{
	struct comedi_state *st = state;
	(void)tick;
	for (uint32_t i = 0; i < n; i++)
		results[i] = (struct mead_stim_result){ .pulse = p[i], .status = MEAD_STIM_REFUSED,
							.reason = MEAD_STIM_REASON_RANGE };
	if (n == 0) {
		/* no pulses: the stream is fed all the same */
		if (st->stim && st->ao_live && !st->gone && atomic_load(&st->stop_req) == atomic_load(&st->stop_seen)) {
			int r = flush(st, lead_target(st));
			st->fed = r == 0;
			if (r == -ENODEV)
				st->gone = true;
			return r == -ENODEV ? -ENODEV : 0;
		}
		return 0;
	}
	uint32_t why = 0;
	int ret = 0;
	if (!st->stim) {
		why = MEAD_STIM_REASON_UNSUPPORTED;
		ret = -EOPNOTSUPP;
	} else if (st->gone) {
		why = MEAD_STIM_REASON_DEVICE_GONE;
		ret = -ENODEV;
	} else if (atomic_load(&st->stop_req) != atomic_load(&st->stop_seen)) {
		why = MEAD_STIM_REASON_CANCELLED;
	} else if (!st->ao_live) {
		why = MEAD_STIM_REASON_IO;
		ret = -EIO;
	}
	if (why) {
		for (uint32_t i = 0; i < n; i++)
			results[i].reason = (uint16_t)why;
		return ret;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (i >= st->max_per_tick) {
			results[i].reason = MEAD_STIM_REASON_QUEUE_FULL;
			continue;
		}
		place(st, &p[i], &results[i]);
	}
	int r = flush(st, lead_target(st));
	st->fed = r == 0;
	if (r == -ENODEV) {
		st->gone = true;
		return -ENODEV;
	}
	return r < 0 ? -EIO : 0;
}

/* ---------------------------------------------------------------- outputs off */

/* Any thread, a fatal-signal handler included: comedi ioctls only. */
int comedi_stop_outputs_(void *state)
{
	struct comedi_state *st = state;
	if (!st->stim)
		return 0;
	atomic_fetch_add(&st->stop_req, 1);
	atomic_store(&st->stop_ns, mead_now_ns());
	stim_outputs_off(st);
	atomic_fetch_add(&st->stop_done, 1);
	return 0;
}

void stim_outputs_off(struct comedi_state *st)
{
	if (st->ao_sub < 0)
		return;
	comedi_cancel(st->dev, (unsigned)st->ao_sub);
	atomic_store(&st->ao_armed, false);
	/* before the zero codes are known (a failed open) a write could only
	 * be wrong: code 0 is the most negative voltage */
	for (uint32_t k = 0; st->ao_ready && k < st->n_ao; k++)
		comedi_data_write(st->dev, (unsigned)st->ao_sub, st->ao_chan[k], st->ao_range, AREF_GROUND, st->ao_zero[k]);
	if (st->route == ROUTE_STREAM && st->dev_do)
		comedi_cancel(st->dev_do, (unsigned)st->dio_sub);
	if (st->route != ROUTE_NONE && st->dio_mask)
		set_lines(st, 0);
}

/* ---------------------------------------------------------------- start */

int stim_start_prepare(struct comedi_state *st, char *err, size_t err_len)
{
	if (st->route == ROUTE_STREAM) {
		int fl = fcntl(st->fd_do, F_GETFL);
		if (fl < 0 || fcntl(st->fd_do, F_SETFL, fl | O_NONBLOCK) < 0)
			return fail_(err, err_len, -errno, "comedi: cannot make the routing stream non-blocking");
	}
	stim_outputs_off(st);
	atomic_store(&st->stop_seen, atomic_load(&st->stop_req));
	st->pend_head = st->pend_tail = 0;
	st->routed_el = -1;
	st->lost_pending = false;
	st->lost_dropped = 0;
	new_generation(st);
	st->ao_s0 = 0;
	st->acquired = 0;
	int r = arm_commands(st);
	if (r == 0)
		r = flush(st, lead_target(st));
	if (r < 0) {
		cancel_streams(st);
		snprintf(err, err_len, "comedi: cannot start the stimulator stream: %s", strerror(-r));
		return r;
	}
	return 0;
}

/* Right after the AI command: the AO's scan 0 plays at the AI sample of
 * the trigger, to within half of each of the two calls (ao_skew_us in
 * describe). */
int stim_start_fire(struct comedi_state *st, char *err, size_t err_len)
{
	uint64_t fired_ns = 0, half_ns = 0;
	int r = fire(st, &fired_ns, &half_ns);
	if (r == 0)
		place_stream(st, fired_ns, half_ns);
	if (r < 0) {
		cancel_streams(st);
		snprintf(err, err_len, "comedi: cannot trigger the stimulator stream: %s", strerror(-r));
		return r;
	}
	st->ao_live = true;
	return 0;
}

/* ---------------------------------------------------------------- open */

static int cmp_unsigned(const void *a, const void *b)
{
	unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
	return x < y ? -1 : x > y;
}

/* ao_electrodes: "label:channel,...": one stimulator per output channel. */
static int setup_outputs(struct comedi_state *st, const struct mead_driver_config *cfg, char *err, size_t err_len)
{
	int n_out = comedi_get_n_channels(st->dev, (unsigned)st->ao_sub);
	st->stim_of_electrode = malloc(st->electrodes * sizeof(uint16_t));
	if (!st->stim_of_electrode)
		return -ENOMEM;
	const char *map = mead_driver_param_string(cfg, "ao_electrodes", "");
	if (!*map) {
		long ch = mead_driver_param_int(cfg, "ao_channel", 0);
		if (ch >= n_out) {
			snprintf(err, err_len, "comedi: ao_channel %ld does not exist (the analog output has %d)", ch, n_out);
			return -EINVAL;
		}
		st->n_ao = 1;
		st->ao_chan[0] = (unsigned)ch;
		for (uint32_t e = 0; e < st->electrodes; e++)
			st->stim_of_electrode[e] = 0;
		return 0;
	}
	int chan_of[256];
	for (uint32_t e = 0; e < st->electrodes && e < 256; e++)
		chan_of[e] = -1;
	st->n_ao = 0;
	for (const char *p = map; *p;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		const char *colon = memchr(p, ':', len);
		char *end = NULL;
		long ch = colon ? strtol(colon + 1, &end, 10) : -1;
		int el = colon ? comedi_electrode_index(cfg->layout, p, (size_t)(colon - p)) : -1;
		if (!colon || end != p + len || ch < 0) {
			snprintf(err, err_len, "comedi: ao_electrodes entry '%.*s' is not electrode:channel", (int)len, p);
			return -EINVAL;
		}
		if (el < 0 || el >= 256) {
			snprintf(err, err_len, "comedi: ao_electrodes entry '%.*s' names no electrode of the layout", (int)len, p);
			return -EINVAL;
		}
		if (ch >= n_out) {
			snprintf(err, err_len, "comedi: ao_electrodes entry '%.*s': the analog output has %d channels",
				 (int)len, p, n_out);
			return -EINVAL;
		}
		if (chan_of[el] >= 0) {
			snprintf(err, err_len, "comedi: ao_electrodes names electrode '%.*s' twice", (int)(colon - p), p);
			return -EINVAL;
		}
		chan_of[el] = (int)ch;
		bool known = false;
		for (uint32_t k = 0; k < st->n_ao; k++)
			known |= st->ao_chan[k] == (unsigned)ch;
		if (!known) {
			if (st->n_ao >= MAX_STIMULATORS) {
				snprintf(err, err_len, "comedi: ao_electrodes uses more than %d analog outputs", MAX_STIMULATORS);
				return -EINVAL;
			}
			st->ao_chan[st->n_ao++] = (unsigned)ch;
		}
		p = comma ? comma + 1 : p + len;
	}
	/* boards want their channel lists in order */
	qsort(st->ao_chan, st->n_ao, sizeof(unsigned), cmp_unsigned);
	for (uint32_t e = 0; e < st->electrodes; e++) {
		st->stim_of_electrode[e] = UINT16_MAX;
		for (uint32_t k = 0; e < 256 && k < st->n_ao; k++)
			if (chan_of[e] == (int)st->ao_chan[k])
				st->stim_of_electrode[e] = (uint16_t)k;
	}
	return 0;
}

static int setup_range(struct comedi_state *st, char *err, size_t err_len)
{
	/* widest bipolar range: pulses need headroom, not resolution */
	int n = comedi_get_n_ranges(st->dev, (unsigned)st->ao_sub, st->ao_chan[0]);
	int best = -1;
	for (int i = 0; i < n; i++) {
		comedi_range *r = comedi_get_range(st->dev, (unsigned)st->ao_sub, st->ao_chan[0], (unsigned)i);
		if (r && r->unit == UNIT_volt && r->min < 0 && r->max > 0 &&
		    (best < 0 || r->max - r->min > st->ao_max_v - st->ao_min_v)) {
			best = i;
			st->ao_min_v = r->min;
			st->ao_max_v = r->max;
		}
	}
	if (best < 0) {
		snprintf(err, err_len, "comedi: the analog output has no bipolar voltage range");
		return -ERANGE;
	}
	st->ao_range = (unsigned)best;
	st->ao_maxdata = comedi_get_maxdata(st->dev, (unsigned)st->ao_sub, st->ao_chan[0]);
	for (uint32_t k = 0; k < st->n_ao; k++) {
		st->ao_poly_ok[k] = comedi_get_hardcal_converter(st->dev, (unsigned)st->ao_sub, st->ao_chan[k], st->ao_range,
								 COMEDI_FROM_PHYSICAL, &st->ao_poly[k]) == 0;
		st->ao_zero[k] = ao_code(st, k, 0.0);
	}
	st->ao_ready = true;
	st->max_ua = (float)(fmin(-st->ao_min_v, st->ao_max_v) * st->ua_per_volt);
	return 0;
}

/* An output command that runs until cancelled, started by an internal
 * trigger, a scan per clock. */
static void output_cmd(comedi_cmd *c, int subdev, unsigned scan_src, unsigned scan_arg, unsigned *chanlist, uint32_t n)
{
	*c = (comedi_cmd){
		.subdev = (unsigned)subdev, .flags = CMDF_WRITE,
		.start_src = TRIG_INT, .start_arg = 0,
		.scan_begin_src = scan_src, .scan_begin_arg = scan_arg,
		.convert_src = TRIG_NOW, .convert_arg = 0,
		.scan_end_src = TRIG_COUNT, .scan_end_arg = n,
		.stop_src = TRIG_NONE, .stop_arg = 0,
		.chanlist = chanlist, .chanlist_len = n,
	};
}

static int setup_ao_cmd(struct comedi_state *st, char *err, size_t err_len)
{
	comedi_cmd *c = &st->ao_cmd;
	for (uint32_t k = 0; k < st->n_ao; k++)
		st->ao_chanlist[k] = CR_PACK(st->ao_chan[k], st->ao_range, AREF_GROUND);
	st->ao_ns = (uint32_t)(1000000000ull / st->ao_rate);
	output_cmd(c, st->ao_sub, TRIG_TIMER, st->ao_ns, st->ao_chanlist, st->n_ao);
	comedi_cmd probe = *c;
	int r = comedi_command_test(st->dev, &probe);
	if (r < 0 || r == 1 || r == 2) {
		snprintf(err, err_len, "comedi: the analog output cannot run a triggered, timed, continuous stream");
		return -EOPNOTSUPP;
	}
	if (probe.scan_begin_arg != c->scan_begin_arg) {
		snprintf(err, err_len, "comedi: the analog output cannot update at %u Hz (nearest: %.1f Hz)", st->ao_rate,
			 1e9 / probe.scan_begin_arg);
		return -EINVAL;
	}
	if (r != 0) {
		snprintf(err, err_len, "comedi: the board rejects the analog-output stream (test stage %d)", r);
		return -EINVAL;
	}
	return 0;
}

static int parse_lines(struct comedi_state *st, const struct mead_driver_config *cfg, char *err, size_t err_len)
{
	const char *lines = mead_driver_param_string(cfg, "route_lines", "");
	int n = comedi_parse_lines(lines, st->route_line, MAX_ROUTE_LINES);
	st->n_route = 0;
	if (n == -EINVAL) {
		snprintf(err, err_len, "comedi: route_lines '%s' is not a comma-separated list of lines 0..31", lines);
		return -EINVAL;
	}
	if (n < 0) {
		snprintf(err, err_len, "comedi: route_lines '%s' names more than %d lines", lines, MAX_ROUTE_LINES);
		return -EINVAL;
	}
	st->n_route = (uint32_t)n;
	st->enable_line = (int)mead_driver_param_int(cfg, "route_enable_line", -1);
	st->blank_line = (int)mead_driver_param_int(cfg, "blank_line", -1);
	if (st->n_route && st->electrodes > (1u << st->n_route)) {
		snprintf(err, err_len, "comedi: %u routing lines cannot address %u electrodes", st->n_route, st->electrodes);
		return -EINVAL;
	}
	st->dio_mask = 0;
	for (uint32_t i = 0; i < st->n_route; i++)
		st->dio_mask |= 1u << st->route_line[i];
	if (st->enable_line >= 0)
		st->dio_mask |= 1u << st->enable_line;
	if (st->blank_line >= 0)
		st->dio_mask |= 1u << st->blank_line;
	return 0;
}

/* The lines as a second stream: a second open file whose write subdevice
 * is the DIO, a command clocked by the AO updates.  0: set up; 1: the board
 * cannot (fall back to instructions); <0: error. */
static int setup_route_stream(struct comedi_state *st, const struct mead_driver_config *cfg, bool must, char *err,
			      size_t err_len)
{
	int fl = comedi_get_subdevice_flags(st->dev, (unsigned)st->dio_sub);
	if (!(fl & SDF_CMD_WRITE)) {
		if (!must)
			return 1;
		snprintf(err, err_len, "comedi: route_stream on: DIO subdevice %d cannot run output commands", st->dio_sub);
		return -EOPNOTSUPP;
	}
	int top = 0;
	for (int l = 0; l < 32; l++)
		if ((st->dio_mask >> l) & 1u)
			top = l + 1;
	st->do_nlines = (uint32_t)top;
	st->do_bps = (fl & SDF_LSAMPL) ? sizeof(lsampl_t) : sizeof(sampl_t);
	uint32_t bits = 8 * st->do_bps;
	st->do_scan_bytes = st->do_bps * ((st->do_nlines + bits - 1) / bits);
	st->do_clock = (unsigned)mead_driver_param_int(cfg, "route_clock", NI_CDIO_SCAN_BEGIN_SRC_AO_UPDATE);
	for (uint32_t i = 0; i < st->do_nlines; i++)
		st->do_chanlist[i] = CR_PACK(i, 0, 0);
	comedi_cmd *c = &st->do_cmd;
	output_cmd(c, st->dio_sub, TRIG_EXT, st->do_clock, st->do_chanlist, st->do_nlines);
	comedi_cmd probe = *c;
	int r = comedi_command_test(st->dev, &probe);
	if (r != 0) {
		if (!must)
			return 1;
		snprintf(err, err_len, "comedi: route_stream on: the DIO rejects an output command clocked by the AO (test stage %d)", r);
		return -EOPNOTSUPP;
	}
	const char *path = mead_driver_param_string(cfg, "device", "/dev/comedi0");
	st->dev_do = comedi_open(path);
	if (!st->dev_do || comedi_set_write_subdevice(st->dev_do, (unsigned)st->dio_sub) < 0) {
		snprintf(err, err_len, "comedi: cannot open %s a second time for the routing stream", path);
		return -comedi_errno_();
	}
	st->fd_do = comedi_fileno(st->dev_do);
	return 0;
}

static int setup_routing(struct comedi_state *st, const struct mead_driver_config *cfg, char *err, size_t err_len)
{
	int r = parse_lines(st, cfg, err, err_len);
	if (r < 0)
		return r;
	st->route = ROUTE_NONE;
	st->routed_el = -1;
	if (!st->dio_mask)
		return 0;
	if (st->n_ao > 1) {
		snprintf(err, err_len, "comedi: ao_electrodes gives each electrode its own output: set route_lines to "
			 "empty and route_enable_line, blank_line to -1");
		return -EINVAL;
	}
	long dio = mead_driver_param_int(cfg, "dio_subdevice", -1);
	st->dio_sub = dio >= 0 ? (dio < comedi_get_n_subdevices(st->dev) ? (int)dio : -1)
			       : comedi_find_subdevice_by_type(st->dev, COMEDI_SUBD_DIO, 0);
	if (st->dio_sub < 0 && dio < 0)
		st->dio_sub = comedi_find_subdevice_by_type(st->dev, COMEDI_SUBD_DO, 0);
	int type = st->dio_sub >= 0 ? comedi_get_subdevice_type(st->dev, (unsigned)st->dio_sub) : -1;
	if (type != COMEDI_SUBD_DIO && type != COMEDI_SUBD_DO) {
		snprintf(err, err_len, "comedi: no digital I/O subdevice for the routing lines (set route_lines to empty "
			 "and route_enable_line, blank_line to -1 to stimulate without routing)");
		return -ENODEV;
	}
	int n_lines = comedi_get_n_channels(st->dev, (unsigned)st->dio_sub);
	for (int l = 0; l < 32; l++)
		if (((st->dio_mask >> l) & 1u) && l >= n_lines) {
			snprintf(err, err_len, "comedi: routing line %d is beyond the %d lines of DIO subdevice %d", l, n_lines,
				 st->dio_sub);
			return -EINVAL;
		}
	for (int l = 0; l < 32; l++)
		if ((st->dio_mask >> l) & 1u)
			comedi_dio_config(st->dev, (unsigned)st->dio_sub, (unsigned)l, COMEDI_OUTPUT);
	const char *mode = mead_driver_param_string(cfg, "route_stream", "auto");
	if (strcmp(mode, "off") != 0 && strcmp(mode, "on") != 0 && strcmp(mode, "auto") != 0) {
		snprintf(err, err_len, "comedi: route_stream: '%s' is not one of auto, on, off", mode);
		return -EINVAL;
	}
	st->route = ROUTE_LINES;
	if (strcmp(mode, "off") != 0) {
		r = setup_route_stream(st, cfg, strcmp(mode, "on") == 0, err, err_len);
		if (r < 0)
			return r;
		if (r == 0)
			st->route = ROUTE_STREAM;
	}
	return 0;
}

int stim_setup(struct comedi_state *st, const struct mead_driver_config *cfg, char *err, size_t err_len)
{
	long ao = mead_driver_param_int(cfg, "ao_subdevice", -1);
	st->ao_sub = comedi_find_streaming(st->dev, COMEDI_SUBD_AO, SDF_CMD_WRITE, ao);
	if (st->ao_sub < 0) {
		if (ao >= 0)
			snprintf(err, err_len, "comedi: subdevice %ld is not an analog output", ao);
		else
			snprintf(err, err_len, "comedi: the board has no analog output that streams (set stimulate: false to record only)");
		return -ENODEV;
	}
	int fl = comedi_get_subdevice_flags(st->dev, (unsigned)st->ao_sub);
	if (!(fl & SDF_CMD_WRITE)) {
		snprintf(err, err_len, "comedi: analog-output subdevice %d cannot run buffered commands", st->ao_sub);
		return -EOPNOTSUPP;
	}
	st->ao_bps = (fl & SDF_LSAMPL) ? sizeof(lsampl_t) : sizeof(sampl_t);
	st->ao_rate = (uint32_t)mead_driver_param_int(cfg, "ao_rate_hz", 100000);
	st->ua_per_volt = mead_driver_param_double(cfg, "ao_ua_per_volt", 100);
	st->max_phase_us = (uint32_t)mead_driver_param_int(cfg, "max_phase_us", 1000);
	st->max_per_tick = (uint32_t)mead_driver_param_int(cfg, "max_pulses_per_tick", 8);
	st->guard_us = (uint32_t)mead_driver_param_int(cfg, "stim_guard_us", 100);
	uint32_t period_us = (st->period_ns + 999u) / 1000u;
	long lead_us = mead_driver_param_int(cfg, "ao_lead_us", 0);
	if (lead_us == 0)
		lead_us = period_us + period_us / 2;
	if ((uint64_t)lead_us <= period_us) {
		snprintf(err, err_len, "comedi: ao_lead_us %ld must exceed the tick period (%u us): the stream written "
			 "at one tick has to last until the next", lead_us, period_us);
		return -EINVAL;
	}
	st->lead_samples = (uint32_t)(((uint64_t)lead_us * st->rate + 999999u) / 1000000u);
	st->tick_samples = (uint32_t)(((uint64_t)st->period_ns * st->rate + 999999999u) / 1000000000u);
	st->guard_samples = (uint32_t)(((uint64_t)st->guard_us * st->rate + 999999u) / 1000000u);
	int r;
	if ((r = setup_outputs(st, cfg, err, err_len)) < 0)
		return r;
	if ((r = setup_range(st, err, err_len)) < 0)
		return r;
	if ((r = setup_ao_cmd(st, err, err_len)) < 0)
		return r;
	if ((r = setup_routing(st, cfg, err, err_len)) < 0)
		return r;
	/* instruction lines change at a tick, after the previous pulse: the next
	 * may start two ticks later; stream lines settle within the guard */
	if (st->route == ROUTE_LINES && st->n_route)
		st->switch_us = 2 * period_us;
	else if (st->route == ROUTE_STREAM)
		st->switch_us = st->guard_us;
	else
		st->switch_us = 0;
	st->ao_scan_bytes = st->n_ao * st->ao_bps;
	uint64_t lead_scans = us_to_scans(st, (uint64_t)lead_us);
	uint64_t pulse_scans = us_to_scans(st, 3ull * st->max_phase_us) + us_to_scans(st, st->guard_us) +
			       us_to_scans(st, st->switch_us) + 4;
	st->plan_scans = (uint32_t)(2 * lead_scans + us_to_scans(st, 2ull * period_us) + st->max_per_tick * pulse_scans + 64);
	st->plan = calloc(st->plan_scans, st->ao_scan_bytes);
	if (st->route == ROUTE_STREAM)
		st->do_plan = calloc(st->plan_scans, st->do_scan_bytes);
	if (!st->plan || (st->route == ROUTE_STREAM && !st->do_plan))
		return -ENOMEM;
	/* the kernel buffer holds the lead many times over */
	size_t need = (size_t)st->plan_scans * st->ao_scan_bytes * 4;
	int have = comedi_get_buffer_size(st->dev, (unsigned)st->ao_sub);
	if (have >= 0 && (size_t)have < need)
		comedi_set_buffer_size(st->dev, (unsigned)st->ao_sub, (unsigned)need);
	return 0;
}

void stim_free_all(struct comedi_state *st)
{
	if (st->dev_do)
		comedi_close(st->dev_do);
	st->dev_do = NULL;
	free(st->plan);
	free(st->do_plan);
	free(st->stim_of_electrode);
	st->plan = st->do_plan = NULL;
	st->stim_of_electrode = NULL;
}
