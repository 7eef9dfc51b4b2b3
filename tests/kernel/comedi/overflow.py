#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A reader that stops consuming overflows the kernel buffer.

  overflow.py --mode continue|stop

The daemon is stopped with SIGSTOP for longer than its (shrunk) Comedi
buffer lasts and then let go: comedi_test cannot write the next sample, the
kernel ends the command, and the driver's next read after the buffered
samples fails with EPIPE.  The driver must report it (driver.overflows in
status and in the run summary), and then
  continue: re-arm, acquisition resumes (raw frames after the overflow),
            the run goes on to its configured end, exit status 0;
  stop:     the run ends by itself soon after the overflow as a fault
            (exit status 4, docs/daemon.md), no raw frames after it."""
import argparse
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ktest  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument('--mode', choices=['continue', 'stop'], required=True)
args = ap.parse_args()
ktest.need_guest()
check = ktest.Checks()
work = ktest.scratch('overflow-' + args.mode)

RATE = 5000
BUFFER_KIB = 256            # 3.3 s of 8 channels at 5 kHz
DURATION = 20
HOLD_S = 8                  # well past the buffer
with ktest.ComediTest():
    d = ktest.Daemon(work, ['driver.options.sample_rate_hz=%d' % RATE, 'loop.duration_s=%d' % DURATION,
                            'driver.options.buffer_kib=%d' % BUFFER_KIB, 'driver.options.overflow=' + args.mode])
    d.start()
    ready = check(d.wait_ready(), 'mead started')
    time.sleep(2)
    before = d.status() if ready else None
    d.signal(signal.SIGSTOP)
    time.sleep(HOLD_S)
    d.signal(signal.SIGCONT)
    resumed = time.monotonic()
    # the loop catches up on the ticks it missed before the buffered samples
    # run out and the read fails
    seen = None
    for _ in range(40):
        time.sleep(0.5)
        st = d.status()
        if st is None:
            break
        if (st.get('driver') or {}).get('overflows', 0) >= 1:
            seen = st
            break
    mid = seen or d.status()
    rc = d.wait(timeout=DURATION * 6 + 60)
    ended_after = time.monotonic() - resumed

drv = d.summary() or {}
check(before is not None and (before.get('driver') or {}).get('overflows') == 0,
      'no overflow before the reader stopped', None if before is None else before.get('driver'))
check(mid is not None and (mid.get('driver') or {}).get('overflows', 0) >= 1,
      'status shows the overflow while the daemon runs', None if mid is None else mid.get('driver'))
check(drv.get('overflows', 0) >= 1, 'the run summary counts the overflow', drv)
exp, meta = ktest.export(d.rec) if os.path.exists(d.rec) else (None, None)
last = ((meta or {}).get('last_status') or {})
loop = last.get('loop') or {}
import numpy as np  # noqa: E402
idx = np.load(os.path.join(exp, 'raw_sample.npy')).astype(np.int64) if exp else np.zeros(0, np.int64)
gaps = np.nonzero(np.diff(idx) > 1)[0]
# the buffered samples are read first: the overflow is where they end
cut = int(idx[gaps[0]]) if len(gaps) else (int(idx[-1]) if len(idx) else 0)
check.note('mode %s: exit %s %.1f s after SIGCONT; driver %s; raw frames %d, first gap after sample %d' % (
    args.mode, rc, ended_after, drv, len(idx), cut))
if args.mode == 'continue':
    check(rc == 0, 'the run went on to its end and exited 0', rc)
    check(drv.get('rearms', 0) >= 1, 'the command was re-armed', drv.get('rearms'))
    check(len(gaps) >= 1, 'the recording shows the samples lost in the overflow as a gap', len(gaps))
    check(len(idx) and idx[-1] > cut + RATE, 'acquisition resumed: raw frames well after the overflow',
          'last frame %d, overflow at %d' % (idx[-1] if len(idx) else -1, cut))
    check(loop.get('ticks') == DURATION * 1000, 'every tick of the configured duration ran', loop.get('ticks'))
else:
    check(rc == 4, 'the run ended on the overflow as a fault (exit status 4)', rc)
    check(loop.get('ticks', 0) < DURATION * 1000, 'before its configured end',
          '%s of %d ticks ran, read_frame failed in %s' % (loop.get('ticks'), DURATION * 1000, loop.get('driver_errors')))
    check(drv.get('rearms', 0) == 0, 'no re-arm', drv.get('rearms'))
    check(len(gaps) == 0, 'no raw frames after the overflow', '%d gaps' % len(gaps))
if check.failed:
    d.show()
check.done()
