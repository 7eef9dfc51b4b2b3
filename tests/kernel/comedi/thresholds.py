#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Per-electrode spike thresholds on comedi_test: set in the configuration,
changed while running with meactl, each change a THRESHOLD event in the
recording from which the new threshold holds; the noise estimate and the
threshold of every electrode in status.

comedi_test's square wave (electrode 1, 50 mV here) crosses a fixed 20 mV
threshold at each falling edge, once a period; raised to 90 mV, never."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ktest  # noqa: E402

ktest.need_guest()
check = ktest.Checks()
work = ktest.scratch('thresholds')
AMPLITUDE_UV = 50000
PERIOD_US = 100000
RATE = 5000

with ktest.ComediTest(amplitude_uv=AMPLITUDE_UV, period_us=PERIOD_US):
    d = ktest.Daemon(work, ['driver.options.sample_rate_hz=%d' % RATE, 'loop.duration_s=20',
                            'driver.options.thresholds=1=20000uV,3=7x'])
    d.start()
    ready = check(d.wait_ready(), 'mead started')
    time.sleep(4)
    st = d.status() if ready else None
    det = ((st or {}).get('driver') or {}).get('detector') or {}
    bad_k = d.meactl('threshold', '1', '1x')
    bad_e = d.meactl('threshold', '99', '6x')
    changed = d.meactl('threshold', '1', '-90000uV')
    time.sleep(3)
    after = d.status() if ready else None
    rc = d.wait(timeout=120)

check(det.get('threshold', [None] * 4)[1:4] == ['20000uV', '5x', '7x'],
      'status: each electrode its threshold as configured (1 fixed, 2 the default, 3 its own multiple)',
      det.get('threshold'))
check(len(det.get('noise_uv', [])) == 8 and len(det.get('threshold_uv', [])) == 8 and
      det['threshold_uv'][1] == 20000.0, 'status: a noise estimate and a threshold in uV for each of the 8',
      {k: det.get(k) for k in ('electrodes', 'noise_uv', 'threshold_uv')})
check(bad_k.returncode == 1 and 'is not a threshold' in bad_k.stdout, 'meactl threshold 1 1x: refused, saying why',
      bad_k.stdout.strip())
check(bad_e.returncode == 1 and 'outside the layout' in bad_e.stdout, 'meactl threshold 99 6x: refused, saying why',
      bad_e.stdout.strip())
check(changed.returncode == 0, 'meactl threshold 1 -90000uV: ok', changed.stdout.strip())
check(((after or {}).get('loop') or {}).get('thresholds_set') == 1, 'status counts the change',
      ((after or {}).get('loop') or {}).get('thresholds_set'))
check(rc == 0, 'the run ended normally', rc)

import numpy as np  # noqa: E402
rec = ktest.Recording(d.rec) if check(os.path.exists(d.rec), 'the run was recorded') else None
if rec is None:
    d.show()
    check.done()
spikes = np.load(os.path.join(rec.dir, 'spikes.npy'))
ev = rec.of_type(ktest.EV_THRESHOLD)
check(len(ev) == 1 and int(ev['electrode'][0]) == 1 and int(ev['value'][0]) == -9000000,
      'one THRESHOLD event: electrode 1, -90000 uV (value -uV x 100)', ev[['sample', 'electrode', 'value']].tolist())
if len(ev):
    at = int(ev['sample'][0])
    e1 = spikes['sample'][spikes['electrode'] == 1].astype(np.int64)
    before, after_n = e1[e1 < at], e1[e1 >= at]
    per_period = RATE * PERIOD_US // 1000000
    # a fixed threshold needs no warm-up: one edge a period from sample 0
    span = at / per_period
    # the low half of the square wave stays beyond the threshold, and the
    # detector fires again after each dead time: a run of spikes per edge
    runs = int(np.sum(np.diff(before) > 10)) + 1 if len(before) else 0
    check.note('electrode 1: %d spikes in %d runs before the change at sample %d (%.1f periods from the '
               'start), %d after' % (len(before), runs, at, span, len(after_n)))
    check(runs >= 0.9 * span and runs <= 1.1 * span + 2,
          'before: one run of spikes a period of the square wave, at its falling edge', (runs, span))
    check(len(after_n) == 0, 'after the event sample: none (90 mV is above the square wave)', after_n[:10].tolist())
if check.failed:
    d.show()
check.done()
