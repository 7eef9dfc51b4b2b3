#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The waveform oracle against the kernel itself, no daemon in between.

comedi-probe runs the rig driver's command shape (8 channels, conversions
spread over the scan) and reads the device straight; every code must be
what comedi_test's arithmetic gives for its time in the waveform, for two
module parameter sets and both ranges, and the board must deliver scans at
the rate asked for."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ktest  # noqa: E402

ktest.need_guest()
import numpy as np  # noqa: E402

check = ktest.Checks()
tmp = ktest.scratch('waveform')
RANGES = {0: (-10.0, 10.0), 1: (-5.0, 5.0)}

# (amplitude, period, rate, range): the module defaults; a large amplitude
# with a period short enough that the sawtooth climbs 4 codes per scan at
# the fastest rate, so a scan lost or doubled shows.
cases = [(None, None, 25000, 0), (4000000, 131072, 100000, 1)]
for amp, period, rate, rng_i in cases:
    with ktest.ComediTest(amp, period) as board:
        path = os.path.join(tmp, 'stream-%d.u16' % rate)
        r = ktest.probe('stream', 8, rate, 3, rng_i, path)
        what = '%d uV / %d us waveform, %d Hz, range %d' % (board.amplitude_uv, board.period_us, rate, rng_i)
        check(r.get('error') == '', what + ': stream read without error', r.get('error'))
        # The codes below prove the pace in the board's own time (each scan
        # one scan period on); against the wall clock a guest on a busy host
        # can fall behind for a while, so this only catches a wrong rate.
        check(0.5 * rate < r['made_per_s'] < 1.05 * rate, what + ': the board makes scans at about the rate asked for',
              '%.1f scans/s (%.1f read, %d waiting)' % (r['made_per_s'], r['scans_per_s'], r['waiting_scans']))
        data = np.fromfile(path, dtype='<u2')
        scans = data[: len(data) // 8 * 8].reshape(-1, 8).astype(np.int64)
        scan_us, conv_us = r['scan_ns'] // 1000, r['convert_ns'] // 1000
        rng = RANGES[rng_i]
        t0s = ktest.fit_phase(scans[:2000, 0], scan_us, board.amplitude_uv, board.period_us, rng, 0)
        check(len(t0s) >= 1, what + ': the sawtooth of channel 0 fixes the waveform time', t0s[:5])
        if not t0s:
            continue

        def mismatches(t0):
            out = []
            for ch in range(8):
                t = ktest.sample_times(len(scans), t0, scan_us, conv_us, ch, board.period_us)
                e = ktest.expected_counts(t, ch, board.amplitude_uv, board.period_us, *rng)
                out.append((np.nonzero(scans[:, ch] != e)[0], e))
            return out
        # The first scans may leave a few microseconds open; the rest (the
        # sawtooth's wrap, the square's edges) settle them.
        best = min(((sum(len(w) for w, _ in m), t0, m) for t0, m in ((t0, mismatches(t0)) for t0 in t0s)),
                   key=lambda x: x[0])
        _, t0, m = best
        for ch, (wrong, e) in enumerate(m):
            check(len(wrong) == 0, what + ': channel %d, all %d codes exact' % (ch, len(scans)),
                  None if not len(wrong) else '%d wrong, first at scan %d: %d, expected %d'
                  % (len(wrong), wrong[0], scans[wrong[0], ch], e[wrong[0]]))
        a = ktest.binary_amplitude(board.amplitude_uv, *rng)
        check(scans[:, 0].min() >= 32767 - a and scans[:, 0].max() <= 32767 + a,
              what + ': sawtooth within mid-scale +- %d' % a, (int(scans[:, 0].min()), int(scans[:, 0].max())))
        check(set(np.unique(scans[:, 1]).tolist()) <= {32767 - a, 32767 + a},
              what + ': square wave takes mid-scale - %d and + %d only' % (a, a))
        check.note('%s: %d scans exact, made at %.1f scans/s' % (what, len(scans), r['made_per_s']))

check.done()
