#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The daemon records comedi_test: every sample of the run, in order, as the
kernel made it.

  acquisition.py [--rate fastest|HZ] [--seconds S] [--buffer-kib K]

mead runs config/comedi-test.yaml (driver comedi, stimulate off, raw and
recording on) for S seconds of ticks at the real-time clock, at the fastest
rate comedi_test and the driver both accept for 8 channels (or the rate
given).  What "no sample lost" means here: the run's ticks cover samples
0 .. rate x S - 1, and the recording's raw frames must be exactly those,
each once, in order; no OVERFLOW or GAP event.  A LATE event is allowed (a
tick whose samples were not there yet gets them in a later tick, in order):
the frames check says whether they came.  Every value must be comedi_test's
waveform at that sample's time, converted as the driver converts (counts
less the range's 0 V code), within one LSB: the sawtooth climbs 4 codes a
scan, so a sample the driver lost, doubled or reordered without saying so
shows there too.

The emulated guest does not keep real time at 100 kHz x 8 channels: the
loop follows the device's clock and falls behind, and the board's samples
wait in the kernel buffer.  The backlog is at most the time the run takes
beyond its S seconds (measured: 14 to 33 s for 30 s at 100 kHz); the
buffer (buffer_kib) holds 3 x S of samples, so a loop up to 4 times slower
than the board costs time, never samples, and a slower one fails the test
with an OVERFLOW.  How far it fell behind is printed (backlog)."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ktest  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument('--rate', default='fastest')
ap.add_argument('--seconds', type=int, default=30)
ap.add_argument('--buffer-kib', type=int, default=0,
                help='kernel buffer; 0: room for 3 x rate x seconds of samples (at least the board\'s 2048)')
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
    shape = ktest.command_shape(rate)
check(shape['scan_kept'], '%d Hz is a rate comedi_test accepts for 8 channels, conversions back to back' % rate,
      shape['settled'])
scan_us = shape['settled']['scan_begin_arg'] // 1000
conv_us = shape['settled']['convert_arg'] // 1000
a = ktest.binary_amplitude(AMPLITUDE, *RNG)
# four codes of sawtooth per scan
period = a * scan_us // 2
want = rate * args.seconds
kib = args.buffer_kib or max(2048, want * 16 * 3 // 1024)
work = ktest.scratch('acquisition')
with ktest.ComediTest(AMPLITUDE, period):
    d = ktest.Daemon(work, ['driver.options.sample_rate_hz=%d' % rate, 'loop.duration_s=%d' % args.seconds,
                            'driver.options.buffer_kib=%d' % kib])
    d.start()
    rc = d.wait(timeout=args.seconds * 8 + 60)
drv = d.summary() or {}
check(rc == 0, 'mead ran %d s of ticks at %d Hz (buffer_kib %d) and exited 0' % (args.seconds, rate, kib), rc)
if rc != 0 or not os.path.exists(d.rec):
    d.show()
    check.done()

rec = ktest.Recording(d.rec)
loop = rec.loop()
clock = loop.get('clock') or {}
lat = loop.get('latency_us') or {}
check.note('%d Hz x 8 channels, %d s of ticks: %.1f s wall; backlog at most %s samples (%.2f s), start-up %s; '
           'wake-up latency p50 %s p99 %s max %s us; drift %s ppm; late ticks %s' % (
               rate, args.seconds, d.wall_s, clock.get('backlog_max_samples'),
               (clock.get('backlog_max_samples') or 0) / rate, clock.get('startup_backlog_samples'),
               lat.get('p50'), lat.get('p99'), lat.get('max'), clock.get('drift_ppm'), drv.get('late_ticks')))
losses = rec.meta['losses']
check(sum(losses['seq_gaps'].values()) == 0 and losses['corrupt_records'] == 0 and not losses['torn_tail'],
      'the recording is whole (no seq gap, corrupt record or torn tail)', losses)
ov, gap, late = rec.of_type(ktest.EV_OVERFLOW), rec.of_type(ktest.EV_GAP), rec.of_type(ktest.EV_LATE)
check(len(ov) == 0 and drv.get('overflows') == 0 and rec.loss('overflow').get('events') == 0,
      'no kernel buffer overflow (events, driver, status)',
      (ov[:3].tolist(), drv.get('overflows'), rec.loss('overflow')))
check(len(gap) == 0, 'no GAP event', gap[:3].tolist())
check.note('LATE events: %d covering %d samples (delivered in later ticks)' % (len(late), int(late['samples'].sum())))
idx = rec.raw_sample
d_idx = np.diff(idx)
missing = want - len(np.unique(idx[(idx >= 0) & (idx < want)])) if len(idx) else want
check(len(idx) == want and missing == 0,
      'the recording holds the %d frames of the run\'s ticks (rate x seconds)' % want,
      '%d frames, %d of the run\'s samples missing, %d gaps' % (len(idx), missing, int(np.sum(d_idx > 1))))
check(len(idx) and idx[0] == 0 and np.all(d_idx == 1), 'raw frames are samples 0, 1, 2, ... without a gap, '
      'repeat or step back', None if not len(idx) else 'first %d, last %d, gaps %d, repeats/back %d' % (
          idx[0], idx[-1], int(np.sum(d_idx > 1)), int(np.sum(d_idx < 1))))

# The driver's raw value is round(count - offset) with one range on every
# channel: a count is the raw value plus the 0 V code, within half an LSB.
offset = ktest.driver_offset(*RNG)
raw = rec.raw()
# each stretch between breaks in the sample numbers gets its own waveform
# time (a lost stretch would shift it): found from its first frames
starts = [0] + [int(k) + 1 for k in np.nonzero(d_idx != 1)[0]]
ends = starts[1:] + [len(idx)]
off = {ch: [0, None] for ch in range(8)}     # frames off, the first of them
unfit = []
for a0, b0 in zip(starts, ends):
    if b0 - a0 < 50:
        unfit.append((a0, b0))
        continue
    head = raw[a0:min(b0, a0 + 2000), 0].astype(np.float64) + offset
    t0s = ktest.fit_phase(head, scan_us, AMPLITUDE, period, RNG, 1.0)
    if not t0s:
        unfit.append((a0, b0))
        continue
    rel = (idx[a0:b0] - idx[a0]) * scan_us
    best = None
    for t0 in t0s:
        bad = []
        for ch in range(8):
            e = ktest.expected_counts((t0 + ch * conv_us + rel) % period, ch, AMPLITUDE, period, *RNG)
            got = raw[a0:b0, ch].astype(np.float64) + offset
            bad.append(a0 + np.nonzero(np.abs(got - e) > 1.0)[0])
        n_bad = sum(len(b) for b in bad)
        if best is None or n_bad < best[0]:
            best = (n_bad, bad)
        if n_bad == 0:
            break
    for ch in range(8):
        b = best[1][ch]
        if len(b) and off[ch][1] is None:
            off[ch][1] = int(b[0])
        off[ch][0] += len(b)
check(not unfit, 'every stretch of frames follows the sawtooth from its start',
      None if not unfit else '%d of %d stretches do not, first frames %d..%d' % (len(unfit), len(starts), *unfit[0]))
for ch in range(8):
    n, first = off[ch]
    check(n == 0, 'channel %d (%s): every frame within one LSB of the waveform' % (
        ch, 'sawtooth' if ch == 0 else 'square' if ch == 1 else 'flat'),
        None if not n else '%d frames off, first frame %d (sample %d)' % (n, first, idx[first]))
if check.failed:
    d.show()
check.done()
