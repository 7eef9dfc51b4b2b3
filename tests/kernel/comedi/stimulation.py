#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Stimulation reaches comedi_test's analog outputs by the driver's rules, and
leaves them at the zero code.

comedi_test has no digital I/O: the daemon runs config/comedi-test-stim.yaml
(stimulate: true, no routing lines, 100 ms of AO stream written ahead) at
5 kHz with 1 ms ticks, with four stimulators (ao_electrodes: electrode k on
analog output k, k = 0..3) and at most PER_TICK = 3 pulses a tick
(max_pulses_per_tick).  It is asked for: a single pulse on each electrode;
a train of one pulse a tick for 40 consecutive ticks (electrode 0); a train
of two to three pulses a tick on one stimulator (electrode 1); a train on
the four electrodes together, four pulses in each of its ticks.

The rule the driver documents (docs/drivers.md, "The stimulator stream"):
every pulse asked for is either delivered, recorded at the sample it really
started on (never before the one asked for, flagged late when after), or
refused with a reason: here `tick_limit` (the caps' max_pulses_per_tick:
exactly the pulses beyond it in a tick; the four-electrode train's fourth),
or `cancelled` for a pulse a stream that ran dry dropped before it was
written (the STIM_LOST event counts it).  On one stimulator a pulse starts
no earlier than the previous one's end plus stim_guard_us; no delivered
pulse lies inside a STIM_LOST range (that would be a pulse cut short without
a trace).

The outputs cannot be read while the daemon's stream runs: the kernel
refuses an instruction on a subdevice with a command (EBUSY).  So once the
pulses have played, the daemon is killed (SIGKILL, so no stop_outputs zeroes
the outputs on the way out) and the stimulator channels are read back by
instruction: they hold the stream's own last sample, which must be the
driver's zero code.  (The outputs mid-pulse, read the same way, are in
killed.py; every phase read back while it plays is in stream.sh's loopback
scenario.)"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ktest  # noqa: E402

ktest.need_guest()
check = ktest.Checks()
work = ktest.scratch('stimulation')
import numpy as np  # noqa: E402

RATE = 5000
TICK_SAMPLES = RATE // 1000
GUARD_US = 100
PER_TICK = 3
STIMULATORS = 4
# the pulse trains go beyond the default safety limits (consecutive ticks,
# several a tick); the limits are not what is tested here
SAFETY = ['safety.max_rate_hz=5000', 'safety.min_interval_us=100', 'safety.max_duty_cycle=0.8',
          'safety.max_phase_us=1000']


class Train:
    def __init__(self, electrodes, phase_us, interphase_us, pulses, rate_hz, what):
        self.electrodes, self.phase_us, self.interphase_us = electrodes, phase_us, interphase_us
        self.pulses, self.rate_hz, self.what = pulses, rate_hz, what

    def send(self, d):
        r = d.meactl('stim', '--electrodes', ','.join(map(str, self.electrodes)), '--amplitude-ua', '-20',
                     '--phase-us', str(self.phase_us), '--interphase-us', str(self.interphase_us),
                     '--pulses', str(self.pulses), '--rate-hz', str(self.rate_hz))
        check(r.returncode == 0, '%s: accepted' % self.what, r.stdout.strip())


def settled(d, want, timeout=30):
    """Waits until the loop has settled `want` pulses (delivered or refused)
    and the count stands still: the status after that."""
    end = time.monotonic() + timeout
    last, st = None, {}
    while time.monotonic() < end:
        st = d.status() or {}
        lp = st.get('loop') or {}
        n = lp.get('stim_pulses', 0) + lp.get('stim_rejected', 0)
        if n >= want and n == last:
            return st
        last = n
        time.sleep(0.5)
    return st


def run(overrides, trains):
    with ktest.ComediTest():
        d = ktest.Daemon(work, ['driver.options.sample_rate_hz=%d' % RATE, 'loop.duration_s=0',
                                'driver.options.stim_guard_us=%d' % GUARD_US] + SAFETY + overrides,
                         config=ktest.STIM_CONFIG)
        d.start()
        if not check(d.wait_ready(60), 'mead opened comedi_test with stimulate: true' ):
            d.wait(30)
            d.show()
            check.done()
        for t in trains:
            t.send(d)
            if t.pulses == 1:
                time.sleep(0.3)
        want = sum(t.pulses * len(t.electrodes) for t in trains)
        st = settled(d, want)
        # the recorder has written what the loop settled
        time.sleep(1.5)
        d.proc.kill()
        d.wait(30)
        codes = [ktest.loopback(ch) for ch in range(STIMULATORS)]
    lp = st.get('loop') or {}
    drv = st.get('driver') or {}
    check.note('%d pulses asked for, %s delivered (%s late), %s refused %s; driver %s' % (
        want, lp.get('stim_pulses'), lp.get('stim_late'), lp.get('stim_rejected'), lp.get('stim_refused'),
        {k: drv.get(k) for k in ('pulses', 'pulses_late', 'pulses_cancelled', 'ao_underruns', 'ao_skew_us')}))
    check(lp.get('stim_pulses', 0) + lp.get('stim_rejected', 0) == want,
          'every pulse asked for was delivered or refused (status)', lp)
    check(drv.get('pulses') == lp.get('stim_pulses'), 'the driver delivered what the loop counts',
          (drv.get('pulses'), lp.get('stim_pulses')))
    for ch, c in enumerate(codes):
        check(c.get('code') == ktest.DRIVER_ZERO, 'once the pulses played, analog output %d holds the zero code '
              '(read after SIGKILL, no stop_outputs)' % ch, c)
    return d


def rules(d, trains, stim_of):
    """The recording against the driver's rule, per stimulator."""
    rec = ktest.Recording(d.rec)
    stim, refused = rec.stim, rec.of_type(ktest.EV_STIM_REFUSED)
    lost = rec.of_type(ktest.EV_STIM_LOST)
    asked = {}
    for t in trains:
        for e in t.electrodes:
            asked[e] = asked.get(e, 0) + t.pulses
    for e in sorted(asked):
        nd = int(np.sum(stim['electrode'] == e))
        nr = int(np.sum(refused['electrode'] == e))
        check(nd + nr == asked[e], 'electrode %d: %d asked for = %d delivered + %d refused (recording)' % (
            e, asked[e], nd, nr))
    reasons = sorted({ktest.REASONS.get(int(v), str(int(v))) for v in refused['value']})
    cancelled = refused[refused['value'] == ktest.REASON_CANCELLED]
    limited = refused[refused['value'] == ktest.REASON_TICK_LIMIT]
    check(set(reasons) <= {'tick_limit', 'cancelled'}, 'refusals only by the per-tick limit, or cancelled '
          'with a stream that ran dry', reasons)
    check(len(cancelled) == int(lost['value'].sum()) if len(lost) else len(cancelled) == 0,
          'every cancelled pulse is one a STIM_LOST event dropped',
          'cancelled at %s; STIM_LOST (sample, samples, dropped) %s' % (
              cancelled['sample'].tolist(), lost[['sample', 'samples', 'value']].tolist()))
    # the loop asks for a tick's window: pulses are counted by the tick
    # their requested sample falls in
    ticks_ok = stim['requested_sample'] // TICK_SAMPLES
    ticks_no = limited['sample'] // TICK_SAMPLES
    full = np.unique(ticks_no)
    n_ok = np.array([int(np.sum(ticks_ok == t)) for t in full], dtype=np.int64)
    check(len(full) > 0 and bool(np.all(n_ok == PER_TICK)),
          'a pulse is refused tick_limit only in a tick that already has %d delivered' % PER_TICK,
          '%d ticks with refusals, delivered in them: %s' % (len(full), sorted(set(n_ok.tolist()))))
    most = int(np.bincount(ticks_ok.astype(np.int64)).max()) if len(stim) else 0
    check(most <= PER_TICK, 'no tick has more than %d delivered' % PER_TICK, most)
    check(bool(np.all(stim['sample'] >= stim['requested_sample'])),
          'no pulse starts before the sample it was asked for')
    late = (stim['flags'] & 1) != 0
    check(bool(np.all(late == (stim['sample'] > stim['requested_sample']))),
          'the late flag is set exactly on the pulses that started late')
    for k in sorted(set(stim_of.values())):
        mine = np.sort(stim[np.isin(stim['electrode'], [e for e, s in stim_of.items() if s == k])], order='sample')
        if len(mine) < 2:
            continue
        gap = np.diff(mine['sample'].astype(np.int64))
        # start to start at least the earlier pulse and the guard, on the AI
        # sample grid (the stream places pulses on the finer AO grid)
        busy_us = 2 * mine['phase_us'][:-1].astype(np.int64) + mine['interphase_us'][:-1] + GUARD_US
        need = busy_us * RATE // 1000000
        bad = np.nonzero(gap < need)[0]
        check(len(bad) == 0, 'stimulator %d: %d pulses one after the other, each at least the last one\'s '
              'length and the guard after it' % (k, len(mine)),
              None if not len(bad) else '%d too close, first at sample %d: %d samples after the last, %d needed' % (
                  len(bad), int(mine['sample'][bad[0] + 1]), int(gap[bad[0]]), int(need[bad[0]])))
    for ev in lost:
        a, b = int(ev['sample']), int(ev['sample']) + int(ev['samples'])
        cut = stim[(stim['sample'] < b) & (stim['sample'] >= a)]
        check(len(cut) == 0, 'no delivered pulse inside the stream that ran dry at %d..%d' % (a, b),
              cut[:3].tolist())
    check.note('%d delivered, %d late (median %.1f ms), %d refused (%s); STIM_LOST (sample, samples, '
               'dropped): %s' % (
                   len(stim), int(np.sum(late)),
                   float(np.median(stim['sample'][late] - stim['requested_sample'][late]) * 1000 / RATE)
                   if np.any(late) else 0, len(refused), ', '.join(reasons) or 'none',
                   lost[['sample', 'samples', 'value']].tolist()))


trains = [Train([e], 200, 50, 1, 10, 'a single pulse on electrode %d' % e) for e in range(STIMULATORS)] + [
    Train([0], 300, 100, 40, 1000, 'a pulse in each of 40 consecutive ticks'),
    Train([1], 100, 0, 40, 2500, 'two to three pulses a tick on one stimulator, 16 ticks'),
    Train(list(range(STIMULATORS)), 300, 100, 20, 500, 'four pulses in each of 20 ticks, one per stimulator'),
]
# quoted: '#' would start a comment in the option's value
d = run(['driver.options.max_pulses_per_tick=%d' % PER_TICK,
         'driver.options.ao_electrodes="%s"' % ','.join('#%d:%d' % (k, k) for k in range(STIMULATORS))], trains)
rules(d, trains, {e: e for e in range(STIMULATORS)})
check.done()
