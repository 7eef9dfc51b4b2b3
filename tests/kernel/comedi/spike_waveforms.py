#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Spike waveforms through the real daemon on comedi_test: every detected
spike's cutout (1 ms before, 2 ms after) is in the recording, on the
spike's own electrode and sample, and its values are the board's signal as
the raw stream recorded it, less the detector's slow baseline (a 50 ms
exponential average from the first sample, as lib/signal keeps it),
within the raw stream's rounding; at each falling edge of comedi_test's
square wave the spike's own sample is the cutout's trough.  Nothing is lost or cut
short on the way, and the losses the status reports are all zero."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ktest  # noqa: E402

ktest.need_guest()
import numpy as np  # noqa: E402

check = ktest.Checks()
work = ktest.scratch('spike-waveforms')
AMPLITUDE_UV = 50000
PERIOD_US = 100000
RATE = 5000
PRE, POST = RATE * 1000 // 1000000, RATE * 2000 // 1000000

with ktest.ComediTest(amplitude_uv=AMPLITUDE_UV, period_us=PERIOD_US):
    d = ktest.Daemon(work, ['driver.options.sample_rate_hz=%d' % RATE, 'loop.duration_s=10',
                            'driver.options.thresholds=1=20000uV', 'driver.options.waveforms=true',
                            'driver.options.waveform_pre_us=1000', 'driver.options.waveform_post_us=2000'])
    d.start()
    ready = check(d.wait_ready(), 'mead started')
    time.sleep(3)
    st = d.status() if ready else None
    rc = d.wait(timeout=120)

check(((st or {}).get('waveforms') or {}).get('pre') == PRE and (st or {}).get('waveforms', {}).get('post') == POST,
      'status: the waveform window, %d samples before and %d after' % (PRE, POST), (st or {}).get('waveforms'))
check(rc == 0, 'the run ended normally', rc)
rec = ktest.Recording(d.rec) if check(os.path.exists(d.rec), 'the run was recorded') else None
if rec is None:
    d.show()
    check.done()

loop = rec.loop()
check(loop.get('waveforms_dropped', None) == 0, 'no waveform dropped (status loop.waveforms_dropped)',
      {k: loop.get(k) for k in ('waveforms', 'waveforms_dropped')})
w = np.load(os.path.join(rec.dir, 'waveforms.npy'))
ws = np.load(os.path.join(rec.dir, 'waveform_samples.npy')).astype(np.int64)
we = np.load(os.path.join(rec.dir, 'waveform_electrodes.npy')).astype(np.int64)
wf = np.load(os.path.join(rec.dir, 'waveform_flags.npy'))
spikes = np.load(os.path.join(rec.dir, 'spikes.npy'))
ss, se = spikes['sample'].astype(np.int64), spikes['electrode'].astype(np.int64)
check.note('%d spikes, %d waveforms (%d on electrode 1)' % (len(ss), len(w), int(np.sum(we == 1))))
check(w.shape[1:] == (PRE + 1 + POST,), 'each waveform holds pre + 1 + post samples', w.shape)
check(int(np.sum(we == 1)) >= 0.9 * 10 * 1000000 / PERIOD_US, 'electrode 1: a waveform at each falling edge',
      int(np.sum(we == 1)))
spike_keys = set(zip(ss.tolist(), se.tolist()))
wave_keys = list(zip(ws.tolist(), we.tolist()))
check(all(k in spike_keys for k in wave_keys), 'every waveform is of a recorded spike: same electrode, same sample')
# A spike within the post window of the run's end gets none (docs/recording.md); every other one does.
last = int(rec.raw_sample[-1]) if len(rec.raw_sample) else 0
owed = [k for k in spike_keys if k[0] + POST <= last]
have = set(wave_keys)
missing = [k for k in owed if k not in have]
check(not missing, 'every spike whose post window came has its waveform', sorted(missing)[:10])
check(not np.any(wf), 'no waveform blanked or cut short', np.unique(wf).tolist())

# The model of what the detector saw: x = raw x uV per count, the baseline
# dc from the first sample on, y = x - dc (float32, as lib/signal).
with open(os.path.join(rec.dir, 'recording.json')) as f:
    uv_per_count = float(json.load(f)['uv_per_count'])
raw = rec.raw()
idx = rec.raw_sample
check(len(idx) > 0 and idx[0] == 0 and np.all(np.diff(idx) == 1), 'raw frames are samples 0, 1, 2, ... without a gap')
alpha = np.float32(1.0 / (0.05 * RATE))
worst = 0.0
trough_off = []
for e in sorted(set(we.tolist())):
    x = (raw[:, e].astype(np.float64) * uv_per_count).astype(np.float32)
    y = np.empty_like(x)
    dc = x[0]
    for i in range(len(x)):
        y[i] = x[i] - dc
        dc = np.float32(dc + alpha * (x[i] - dc))
    for k in np.nonzero(we == e)[0]:
        s = int(ws[k])
        if s < PRE or s + POST >= len(y):
            continue
        want = y[s - PRE:s + POST + 1].astype(np.float64)
        worst = max(worst, float(np.max(np.abs(w[k].astype(np.float64) - want))))
        # the first spike of an edge (the detector fires again every dead
        # time while the low half stays beyond the threshold)
        first = k == 0 or not np.any((we[:k] == e) & (ws[:k] > s - RATE * PERIOD_US // 4000000))
        if e == 1 and first:
            trough_off.append(int(np.argmin(w[k])) - PRE)
# The raw stream rounds each value to a count: the model's x is off by at
# most half a count, and its baseline, an average of such x, by at most
# half a count too (a square wave's rounding is the same at each level, so
# at an edge the two need not cancel): one count in all.  A waveform a
# sample off would be off by the square wave's 50 mV.
tol = 1.0 * uv_per_count + 0.5
check.note('worst difference from the model %.1f uV (%.2f counts of %.1f uV); %d edges' %
           (worst, worst / uv_per_count, uv_per_count, len(trough_off)))
check(worst <= tol, 'waveform values equal the raw signal less the baseline, within %.0f uV (%.2f count)' %
      (tol, tol / uv_per_count), '%.1f uV worst' % worst)
check(len(trough_off) >= 90 and all(o == 0 for o in trough_off),
      "electrode 1, each edge's first spike: the trough at the spike's sample (column pre)",
      (len(trough_off), sorted(set(trough_off))))
if check.failed:
    d.show()
check.done()
