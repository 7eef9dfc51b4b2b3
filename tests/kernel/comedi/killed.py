#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A daemon killed with SIGKILL while its stream plays pulses, then the unit
file's ExecStopPost= step: every analog output back at the zero code.

A rig's configuration file (written here: config/comedi-test-stim.yaml with
all 8 analog outputs as stimulators, `ao_electrodes: "#0:0,...,#7:7"`, and
10 ms phases) runs as `mead -c FILE`; a train on the 8 electrodes keeps
every output inside a pulse 90 % of the time.  SIGKILL: nothing in the
process runs, the kernel closes its file and cancels the analog-output
command, and comedi_test's outputs keep the last sample the stream played
(its loopback, read by instruction now that no command holds the
subdevice).  Then `mead --safe-outputs -c FILE`, as systemd's ExecStopPost=
runs it (systemd/mead.service.in), must exit 0, say so, and leave every
output at the zero code.

What the kill left is the reason for that step: a kill in the middle of a
pulse leaves the outputs at that pulse's phase code.  The kill is repeated
(a new daemon each time, at most ATTEMPTS) until one lands inside a pulse;
every code seen after a kill must be the zero code or one of the two phase
codes (the stream's own samples, nothing else)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ktest  # noqa: E402

ktest.need_guest()
check = ktest.Checks()
work = ktest.scratch('killed')
import yaml  # noqa: E402

ATTEMPTS = 4
OUTPUTS = 8
PHASE_US, UA = 10000, -50.0
TRAIN_HZ = 45                    # 20 ms pulses every 22.2 ms
with open(ktest.STIM_CONFIG) as f:
    cfg = yaml.safe_load(f)
cfg['loop']['duration_s'] = 0
opts = cfg['driver']['options']
opts.update({'sample_rate_hz': 5000, 'max_phase_us': PHASE_US,
             'ao_electrodes': ','.join('#%d:%d' % (k, k) for k in range(OUTPUTS))})
cfg['recording']['enabled'] = False
cfg['safety'] = {'max_amplitude_ua': 50, 'max_phase_us': PHASE_US, 'max_charge_nc': 1000, 'max_duty_cycle': 0.95}
conf = os.path.join(work, 'mead.yaml')
with open(conf, 'w') as f:
    yaml.safe_dump(cfg, f, default_flow_style=False)
p = ktest.run([ktest.MEAD, '--check', '-c', conf], timeout=60)
if not check(p.returncode == 0, 'the rig configuration is valid', p.stdout.strip()):
    check.done()

volts = UA / opts['ao_ua_per_volt']
phase_codes = {ktest.ao_code(volts), ktest.ao_code(-volts)}


def read_outputs():
    return [ktest.loopback(ch) for ch in range(OUTPUTS)]


def is_phase(code):
    return any(abs(code - c) <= 1 for c in phase_codes)


with ktest.ComediTest():
    before = read_outputs()
    check(all(ktest.zero_code(r.get('code', -1)) for r in before), 'the outputs start at 0 V',
          [r.get('code', r) for r in before])
    inside = None
    for attempt in range(1, ATTEMPTS + 1):
        d = ktest.Daemon(work, [], config=conf, name='killed-%d' % attempt)
        # the recording path the helper adds is off with recording.enabled false
        d.start()
        if not check(d.wait_ready(60), 'attempt %d: mead -c FILE started' % attempt):
            d.wait(30)
            d.show()
            check.done()
        r = d.meactl('stim', '--electrodes', ','.join(map(str, range(OUTPUTS))), '--amplitude-ua', str(UA),
                     '--phase-us', str(PHASE_US), '--interphase-us', '0', '--pulses', '1000',
                     '--rate-hz', str(TRAIN_HZ))
        check(r.returncode == 0, 'attempt %d: a train on all 8 stimulators is accepted' % attempt, r.stdout.strip())
        played = 0
        for _ in range(60):
            st = d.status() or {}
            played = (st.get('loop') or {}).get('stim_pulses', 0)
            if played >= 3 * OUTPUTS:
                break
            time.sleep(0.2)
        check(played >= 3 * OUTPUTS, 'attempt %d: the stream is playing the train (%d pulses delivered)' % (
            attempt, played))
        d.proc.kill()
        rc = d.wait(30)
        after = read_outputs()
        codes = [r.get('code') for r in after]
        check(rc == -9, 'attempt %d: mead died of SIGKILL' % attempt, rc)
        check(all(c is not None and (ktest.zero_code(c) or is_phase(c)) for c in codes),
              'attempt %d: each output holds the zero code or a phase code (%s) after the kill' % (
                  attempt, sorted(phase_codes)), after)
        check.note('attempt %d: after SIGKILL the outputs hold %s' % (attempt, codes))
        if any(c is not None and is_phase(c) for c in codes):
            inside = codes
            break
    check(inside is not None, 'a kill landed inside a pulse: the outputs kept its phase code, nothing set them to '
          '0 V (%d attempts)' % attempt, inside)

    p = ktest.run([ktest.MEAD, '--safe-outputs', '-c', conf], timeout=120)
    check(p.returncode == 0 and 'outputs at zero' in p.stdout, 'mead --safe-outputs -c FILE (ExecStopPost=) exits 0 '
          'and says the outputs are at zero', (p.returncode, p.stdout.strip()))
    final = read_outputs()
    for ch, r in enumerate(final):
        check(r.get('code') == ktest.DRIVER_ZERO, 'after --safe-outputs analog output %d reads the zero code %d' % (
            ch, ktest.DRIVER_ZERO), r)
check.done()
