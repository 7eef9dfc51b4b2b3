#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The daemon opens comedi_test at every rate the board can scan 8 channels at.

  rates.py [--rates fastest|HZ,HZ,...]

comedi_test scans at any whole number of microseconds from 1 us
(tests/kernel/README.md); each rate given (default: every rate in the
driver's 1000..100000 Hz whose period is a whole number of microseconds)
must open, run a short while at exactly that rate and exit 0.  'fastest'
is the fastest rate comedi_test and the driver both accept for 8 channels
with the driver's command as it is."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ktest  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument('--rates', default='all')
args = ap.parse_args()
ktest.need_guest()
check = ktest.Checks()
work = ktest.scratch('rates')

with ktest.ComediTest():
    if args.rates == 'all':
        rates = [1000000 // k for k in range(10, 1001) if 1000000 % k == 0]
    elif args.rates == 'fastest':
        rates = [ktest.fastest_rate()]
    else:
        try:
            rates = [int(r) for r in args.rates.split(',')]
        except ValueError:
            ap.error('--rates: all, fastest or comma-separated hertz, found %r' % args.rates)
    for rate in rates:
        d = ktest.Daemon(work, ['driver.options.sample_rate_hz=%d' % rate, 'loop.duration_s=0.5',
                                'recording.enabled=false'])
        d.start()
        rc = d.wait(timeout=60)
        out = d.output()
        refusal = [ln for ln in out.splitlines() if 'open failed' in ln]
        ok = rc == 0 and 'at %d Hz' % rate in out
        check(ok, 'opens and runs at %d Hz (%d us scans)' % (rate, 1000000 // rate),
              refusal[0] if refusal else 'exit %s' % rc)
check.done()
