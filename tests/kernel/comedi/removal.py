#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The board goes away mid-run.

  removal.py [--stimulate]

comedi_config -r /dev/comedi0 (libcomedi0) is refused while the daemon's
command runs (EBUSY), and so is a plain module removal (comedi_test is in
use while the device is open); a forced removal (rmmod -f, the kernel has
CONFIG_MODULE_FORCE_UNLOAD) detaches the board through comedi_auto_unconfig,
the path a USB board's unplug takes.  The daemon must report the device
gone (status loop.device_gone, loop.device_losses) and keep its loop.

With --stimulate (config/comedi-test-stim.yaml) a train of pulses is
playing when the board goes: the pulses must stop there: none is delivered
afterwards, every pulse already written to the stream settles (delivered if
it had started, refused otherwise: none stays pending), and the recording
says where the device went."""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ktest  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument('--stimulate', action='store_true')
args = ap.parse_args()
ktest.need_guest()
check = ktest.Checks()
work = ktest.scratch('removal')

RATE = 5000
DURATION = 20
over = ['driver.options.sample_rate_hz=%d' % RATE, 'loop.duration_s=%d' % DURATION]
board = ktest.ComediTest()
board.__enter__()
d = ktest.Daemon(work, over, config=ktest.STIM_CONFIG if args.stimulate else ktest.CONFIG)
d.start()
if not check(d.wait_ready(), 'mead started'):
    d.wait(30)
    d.show()
    check.done()
time.sleep(2)
if args.stimulate:
    r = d.meactl('stim', '--electrodes', '0', '--amplitude-ua', '-10', '--phase-us', '200',
                 '--interphase-us', '50', '--pulses', '100', '--rate-hz', '10')
    check(r.returncode == 0, 'a 10 s train of 100 pulses is accepted', r.stdout.strip())
    time.sleep(2)
before = d.status() or {}

p = ktest.run(['comedi_config', '-r', ktest.DEVICE])
check(p.returncode != 0 and 'busy' in p.stdout.lower(), 'comedi_config -r is refused while the command runs',
      p.stdout.strip().splitlines()[0] if p.stdout.strip() else p.returncode)
p = ktest.modprobe('-r', 'comedi_test')
check(p.returncode != 0 and 'in use' in p.stdout, 'a plain removal of comedi_test is refused (in use)',
      p.stdout.strip())
p = ktest.run(['rmmod', '-f', 'comedi_test'])
gone_at = time.monotonic()
check(p.returncode == 0 and not os.path.exists(ktest.DEVICE), 'rmmod -f comedi_test removes the board',
      p.stdout.strip() or p.returncode)
time.sleep(2)
after = d.status() or {}
if not after:
    print('\n'.join(['daemon threads:'] + d.threads()))
time.sleep(2)
later = d.status() or {}
rc = d.wait(timeout=DURATION * 6 + 60)

lp = after.get('loop') or {}
check(lp.get('device_gone') is True and lp.get('device_losses') == 1,
      'status: loop.device_gone true, loop.device_losses 1', {k: lp.get(k) for k in ('device_gone', 'device_losses')})
check((later.get('loop') or {}).get('ticks', 0) > lp.get('ticks', 0), 'the loop keeps ticking without the board',
      ((later.get('loop') or {}).get('ticks'), lp.get('ticks')))
check(rc == 0, 'the run reached its configured end, exit 0', rc)
rec = ktest.Recording(d.rec) if check(os.path.exists(d.rec), 'the run was recorded') else None
if rec:
    ll = rec.loop()
    check(ll.get('device_gone') is True and ll.get('device_losses') == 1,
          "the recording's last status says the device is gone", {k: ll.get(k) for k in ('device_gone', 'device_losses')})
    gone = rec.of_type(ktest.EV_DEVICE_GONE)
    check(len(gone) == 1, 'the recording has one DEVICE_GONE event', gone.tolist())
if args.stimulate:
    b, a2, l2 = (x.get('loop') or {} for x in (before, after, later))
    check(b.get('stim_pulses', 0) > 0, 'pulses reached the board before the removal', b.get('stim_pulses'))
    check(l2.get('stim_pulses') == a2.get('stim_pulses'), 'no pulse after the removal (the train was still playing)',
          (a2.get('stim_pulses'), l2.get('stim_pulses')))
    check(l2.get('stim_pending') == 0, 'every pulse written before the removal has settled, none pending',
          {k: l2.get(k) for k in ('stim_pulses', 'stim_pending', 'stim_rejected', 'stim_refused')})
    check(l2.get('stim_pulses', 100) < 100, 'the train was cut by the removal (fewer than its 100 pulses delivered)',
          l2.get('stim_pulses'))
check.note('run summary, driver: %s' % d.summary())
if check.failed:
    d.show()
board.__exit__(None, None, None)
check.done()
