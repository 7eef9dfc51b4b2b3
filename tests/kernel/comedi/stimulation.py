#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Stimulation reaches comedi_test's analog output, and leaves it at 0 V.

comedi_test has no digital I/O: the daemon runs with stimulate: true, no
routing lines and no enable or blanking line.  Pulses are sent one at a time
(meactl stim, one pulse); after each one has reached the driver, an
instruction read of the stimulator's output channel (analog output 0; the
loopback comedi_test gives analog outputs) must return the code of 0 V.
The analog inputs cannot be read by instruction while the acquisition
command runs (the kernel answers EBUSY), so the read goes to the output
subdevice, which returns the same loopback value.  A watcher reading the
channel all along must never see anything but 0 V."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ktest  # noqa: E402

ktest.need_guest()
check = ktest.Checks()
work = ktest.scratch('stimulation')
PULSES = 10
AO_SUB, AO_CHAN = 1, 0


def zero_v(code):
    # 0 V on +-10 V is code 32767.5: either neighbour is within half an LSB
    return code in (32767, 32768)


with ktest.ComediTest():
    d = ktest.Daemon(work, ['driver.options.sample_rate_hz=5000', 'loop.duration_s=0'] + ktest.STIM_OVERRIDES)
    d.start()
    if not check(d.wait_ready(), 'mead opened comedi_test with stimulate: true'):
        d.wait(30)
        d.show()
        check.done()
    watch = subprocess.Popen([ktest.PROBE, '-d', ktest.DEVICE, 'watch', str(AO_SUB), str(AO_CHAN), '600', '2000'],
                             stdout=subprocess.PIPE, text=True)
    after = []
    for i in range(PULSES):
        r = d.meactl('stim', '--electrodes', str(i % 8), '--amplitude-ua', '-20', '--phase-us', '200',
                     '--interphase-us', '50', '--pulses', '1', '--rate-hz', '10')
        if not check(r.returncode == 0, 'pulse %d accepted' % (i + 1), r.stdout.strip()):
            break
        reached = False
        for _ in range(50):
            st = d.status() or {}
            if (st.get('driver') or {}).get('pulses', 0) >= i + 1:
                reached = True
                break
            time.sleep(0.1)
        check(reached, 'pulse %d reached the driver' % (i + 1), (st.get('driver') or {}).get('pulses'))
        # the pulse lasts 450 us after at most a tick of lead
        time.sleep(0.05)
        after.append(ktest.probe('read', AO_SUB, AO_CHAN))
    st = d.status() or {}
    rc = d.stop()
    watch.terminate()
    watch_out = watch.communicate(timeout=60)[0]

for i, r in enumerate(after):
    check('code' in r and zero_v(r['code']), 'after pulse %d analog output %d reads 0 V' % (i + 1, AO_CHAN), r)
drv = st.get('driver') or {}
check(drv.get('pulses') == PULSES and drv.get('stim_errors') == 0,
      'the driver played %d pulses without error' % PULSES, drv)
check((st.get('loop') or {}).get('stim_pulses') == PULSES, 'status counts %d pulses' % PULSES,
      (st.get('loop') or {}).get('stim_pulses'))
check(rc == 0, 'mead stopped on SIGTERM with exit 0', rc)
try:
    w = json.loads(watch_out.strip().splitlines()[-1])
except (ValueError, IndexError):
    w = None
check(w is not None and w['reads'] > 0 and all(zero_v(int(c)) for c in w['codes']),
      'the watcher never saw the output off 0 V', w)
if check.failed:
    d.show()
check.done()
