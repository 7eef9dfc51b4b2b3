#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The daemon records comedi_test: every sample, in order, as the kernel made it.

  acquisition.py [--rate fastest|HZ] [--seconds S]

mead runs config/comedi-test.yaml (driver comedi, stimulate off, raw and
recording on) at the fastest rate comedi_test and the driver both accept
for 8 channels (or the rate given) for S seconds at the real-time clock.
The recording, exported with mead-export, must hold exactly rate x S raw
frames numbered 0, 1, 2, ... and every value must be comedi_test's waveform
at that sample's time, converted as the driver converts (counts minus the
range's 0 V code), within one LSB: a lost, doubled or reordered sample
moves the sawtooth by 4 codes."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ktest  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument('--rate', default='fastest')
ap.add_argument('--seconds', type=int, default=30)
args = ap.parse_args()
if args.rate != 'fastest' and not args.rate.isdigit():
    ap.error('--rate: fastest or a whole number of hertz, found %r' % args.rate)
ktest.need_guest()
import numpy as np  # noqa: E402

check = ktest.Checks()
RNG = (-5.0, 5.0)           # the config's ai_range_v: 5 picks +-5 V
AMPLITUDE = 4000000         # 4 V: 26214 codes either side of mid-scale

with ktest.ComediTest():
    rate = ktest.fastest_rate() if args.rate == 'fastest' else int(args.rate)
    shape = ktest.probe('cmdtest', 0, 8, rate)
check(shape['scan_kept'], '%d Hz is a rate comedi_test accepts for 8 channels' % rate, shape['settled'])
scan_us = shape['settled']['scan_begin_arg'] // 1000
conv_us = shape['settled']['convert_arg'] // 1000
a = ktest.binary_amplitude(AMPLITUDE, *RNG)
# four codes of sawtooth per scan
period = a * scan_us // 2
work = ktest.scratch('acquisition')
with ktest.ComediTest(AMPLITUDE, period):
    d = ktest.Daemon(work, ['driver.options.sample_rate_hz=%d' % rate, 'loop.duration_s=%d' % args.seconds])
    d.start()
    rc = d.wait(timeout=args.seconds * 6 + 60)
drv = d.summary() or {}
check(rc == 0, 'mead ran %d s at %d Hz and exited 0' % (args.seconds, rate), rc)
check.note('%d Hz x 8 channels for %d s took %.1f s; driver: overflows %s, rearms %s, late ticks %s' % (
    rate, args.seconds, d.wall_s, drv.get('overflows'), drv.get('rearms'), drv.get('late_ticks')))
for line in d.output().splitlines():
    if line.startswith('mead: run:'):
        check.note(line)
if rc != 0 or not os.path.exists(d.rec):
    d.show()
    check.done()

exp, meta = ktest.export(d.rec)
raw = np.load(os.path.join(exp, 'raw.npy'))
idx = np.load(os.path.join(exp, 'raw_sample.npy')).astype(np.int64)
want = rate * args.seconds
losses = meta['losses']
check(sum(losses['seq_gaps'].values()) == 0 and losses['corrupt_records'] == 0 and not losses['torn_tail'],
      'the recording is whole (no seq gap, corrupt record or torn tail)', losses)
check(drv.get('overflows') == 0, 'no kernel buffer overflow', drv.get('overflows'))
d_idx = np.diff(idx)
missing = int(np.sum(d_idx[d_idx > 1] - 1)) + (int(idx[0]) if len(idx) else 0) + \
    (want - 1 - int(idx[-1]) if len(idx) else want)
check(len(idx) == want, 'the recording holds rate x seconds = %d raw frames' % want,
      '%d frames, %d samples missing in %d gaps' % (len(idx), missing, int(np.sum(d_idx > 1))))
check(len(idx) and idx[0] == 0 and np.all(d_idx == 1), 'raw frames are samples 0, 1, 2, ... without a gap, '
      'repeat or step back', None if not len(idx) else 'first %d, gaps %d, repeats/back %d' % (
          idx[0], int(np.sum(d_idx > 1)), int(np.sum(d_idx < 1))))

# The driver's raw value is (count - offset) * scale / uv_per_count, rounded;
# with one range on every channel that is the count less the 0 V code.
offset = ktest.driver_offset(*RNG)
counts = raw.astype(np.float64) + offset
# A re-armed command starts the waveform afresh: each stretch between gaps
# in the sample numbers gets its own waveform time, found from its start.
starts = [0] + [int(k) + 1 for k in np.nonzero(d_idx != 1)[0]]
ends = starts[1:] + [len(idx)]
off = {ch: [] for ch in range(8)}
unfit = []
for a0, b0 in zip(starts, ends):
    seg = slice(a0, b0)
    head = counts[a0:min(b0, a0 + 2000), 0]
    t0s = ktest.fit_phase(head, scan_us, AMPLITUDE, period, RNG, 1.0) if b0 - a0 >= 50 else []
    if not t0s:
        unfit.append((a0, b0))
        continue
    best = None
    for t0 in t0s:
        bad = []
        for ch in range(8):
            t = (t0 + ch * conv_us + (idx[seg] - idx[a0]) * scan_us) % period
            e = ktest.expected_counts(t, ch, AMPLITUDE, period, *RNG)
            bad.append(a0 + np.nonzero(np.abs(counts[seg, ch] - e) > 1.0)[0])
        n_bad = sum(len(b) for b in bad)
        if best is None or n_bad < best[0]:
            best = (n_bad, bad)
    for ch in range(8):
        off[ch].extend(best[1][ch].tolist())
check(not unfit, 'every stretch of frames follows the sawtooth from its start',
      None if not unfit else '%d of %d stretches do not, first frames %d..%d' % (len(unfit), len(starts), *unfit[0]))
for ch in range(8):
    b = off[ch]
    check(not b, 'channel %d (%s): every frame within one LSB of the waveform' % (
        ch, 'sawtooth' if ch == 0 else 'square' if ch == 1 else 'flat'),
        None if not b else '%d frames off, first frame %d (sample %d)' % (len(b), b[0], idx[b[0]]))
check.done()

exp, meta = ktest.export(d.rec)
raw = np.load(os.path.join(exp, 'raw.npy'))
idx = np.load(os.path.join(exp, 'raw_sample.npy')).astype(np.int64)
want = rate * args.seconds
losses = meta['losses']
check(sum(losses['seq_gaps'].values()) == 0 and losses['corrupt_records'] == 0 and not losses['torn_tail'],
      'the recording is whole (no seq gap, corrupt record or torn tail)', losses)
check(drv.get('overflows') == 0, 'no kernel buffer overflow', drv.get('overflows'))
d_idx = np.diff(idx)
missing = int(np.sum(d_idx[d_idx > 1] - 1)) + (int(idx[0]) if len(idx) else 0) + \
    (want - 1 - int(idx[-1]) if len(idx) else want)
check(len(idx) == want, 'the recording holds rate x seconds = %d raw frames' % want,
      '%d frames, %d samples missing in %d gaps' % (len(idx), missing, int(np.sum(d_idx > 1))))
check(len(idx) and idx[0] == 0 and np.all(d_idx == 1), 'raw frames are samples 0, 1, 2, ... without a gap, '
      'repeat or step back', None if not len(idx) else 'first %d, gaps %d, repeats/back %d' % (
          idx[0], int(np.sum(d_idx > 1)), int(np.sum(d_idx < 1))))

# The driver's raw value is (count - offset) * scale / uv_per_count, rounded;
# with one range on every channel that is the count less the 0 V code.
offset = ktest.driver_offset(*RNG)
counts = raw.astype(np.float64) + offset
if len(counts) >= 2000:
    t0s = ktest.fit_phase(counts[:2000, 0], scan_us, AMPLITUDE, period, RNG, 1.0)
    check(len(t0s) >= 1, "channel 0's first 2000 frames follow the sawtooth", t0s[:5])
    best = None
    for t0 in t0s:
        bad = []
        for ch in range(8):
            t = ktest.sample_times(1, t0, scan_us, conv_us, ch, period)[0]
            tt = (t + idx * scan_us) % period
            e = ktest.expected_counts(tt, ch, AMPLITUDE, period, *RNG)
            bad.append(np.nonzero(np.abs(counts[:, ch] - e) > 1.0)[0])
        n_bad = sum(len(b) for b in bad)
        if best is None or n_bad < best[0]:
            best = (n_bad, t0, bad)
    if best:
        _, t0, bad = best
        for ch, b in enumerate(bad):
            check(len(b) == 0, 'channel %d (%s): every frame within one LSB of the waveform' % (
                ch, 'sawtooth' if ch == 0 else 'square' if ch == 1 else 'flat'),
                None if not len(b) else '%d frames off, first frame %d (sample %d)' % (len(b), b[0], idx[b[0]]))
check.done()
