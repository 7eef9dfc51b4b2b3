#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A reader that stops consuming overflows the kernel buffer.

  overflow.py --mode continue|stop

The daemon is stopped with SIGSTOP for longer than its (shrunk) Comedi
buffer lasts and then let go: comedi_test cannot write the next sample, the
kernel ends the command, and the driver's next read after the buffered
samples fails with EPIPE.  The driver must report it: driver.overflows in
the run summary, an OVERFLOW event in the recording that starts where the
delivered samples end, and then
  continue: re-arm, acquisition resumes; the OVERFLOW event covers exactly
            the samples missing from raw (nothing else is missing), status
            shows it while the daemon runs, the run goes on to its
            configured end, exit status 0;
  stop:     the run ends by itself soon after the overflow as a fault
            (exit status 4, docs/daemon.md), no raw frames after it.  It
            ends within a tick of the overflow, so no status request can
            be relied on to see it running: the recording and the run
            summary are what say so."""
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
    # with overflow: stop the run ends within a tick of the overflow: no
    # status request can count on finding it running
    for _ in range(40 if args.mode == 'continue' else 0):
        time.sleep(0.5)
        st = d.status()
        if st is None:
            break
        if (st.get('driver') or {}).get('overflows', 0) >= 1:
            seen = st
            break
    mid = seen or (d.status() if args.mode == 'continue' else None)
    rc = d.wait(timeout=DURATION * 6 + 60)
    ended_after = time.monotonic() - resumed

drv = d.summary() or {}
check(before is not None and (before.get('driver') or {}).get('overflows') == 0,
      'no overflow before the reader stopped', None if before is None else before.get('driver'))
check(drv.get('overflows', 0) >= 1, 'the run summary counts the overflow', drv)
import numpy as np  # noqa: E402
rec = ktest.Recording(d.rec) if check(os.path.exists(d.rec), 'the run was recorded') else None
if rec is None:
    d.show()
    check.done()
loop = rec.loop()
idx = rec.raw_sample
gaps = np.nonzero(np.diff(idx) > 1)[0]
# the buffered samples are read first: the overflow is where they end
cut = int(idx[gaps[0]]) if len(gaps) else (int(idx[-1]) if len(idx) else 0)
ov = rec.of_type(ktest.EV_OVERFLOW)
check.note('mode %s: exit %s %.1f s after SIGCONT; driver %s; raw frames %d, first gap after sample %d; '
           'OVERFLOW events %s' % (args.mode, rc, ended_after, drv, len(idx), cut, ov[['sample', 'samples']].tolist()))
check(len(ov) == drv.get('overflows') and len(ov) and int(ov['sample'][0]) == cut + 1,
      'an OVERFLOW event in the recording for each overflow, the first at the first sample not delivered',
      (ov[['sample', 'samples']].tolist(), cut + 1))
if args.mode == 'continue':
    check(mid is not None and (mid.get('driver') or {}).get('overflows', 0) >= 1,
          'status shows the overflow while the daemon runs', None if mid is None else mid.get('driver'))
    check(rc == 0, 'the run went on to its end and exited 0', rc)
    check(drv.get('rearms') == drv.get('overflows'), 'the command was re-armed after each overflow',
          (drv.get('rearms'), drv.get('overflows')))
    # A guest that cannot catch up on the ticks an overflow skipped before
    # the small buffer fills again overflows again: each one is accounted.
    # The run's samples are those of its ticks; an overflow near the end
    # may cover samples beyond them.
    end = DURATION * RATE
    got = np.zeros(end, bool)
    got[idx[(idx >= 0) & (idx < end)]] = True
    covered = np.zeros(end, bool)
    # lost: an overflow, or the last ticks' samples that never came (UNREAD)
    for e in np.concatenate([ov, rec.of_type(ktest.EV_UNREAD)]):
        covered[int(e['sample']):min(end, int(e['sample']) + int(e['samples']))] = True
    check(len(idx) == len(np.unique(idx)) and bool(np.all(np.diff(idx) > 0)), 'raw frames in order, none twice')
    check(bool(np.all(got != covered)), 'each sample of the run is either in raw or in an OVERFLOW or UNREAD event, never both',
          '%d missing without an event, %d both' % (int(np.sum(~got & ~covered)), int(np.sum(got & covered))))
    n_lost = int(ov['samples'].sum()) if len(ov) else 0
    check(drv.get('lost_samples') == n_lost and rec.loss('overflow').get('samples') == n_lost,
          'the driver and the status count the same lost samples', (drv.get('lost_samples'), rec.loss('overflow'),
                                                                      n_lost))
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
