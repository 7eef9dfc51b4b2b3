#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""comedi_test as the kernel presents it: the facts the other tests take as
their oracle (tests/kernel/README.md), checked on the running kernel.

Subdevices, ranges and converters through comedilib; which scan rates the
analog input accepts for 8 channels with the rig driver's command shape
(conversions back to back) and with conversions spread over the scan, and
the fastest it accepts at all; the analog outputs looped back to
instruction reads."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ktest  # noqa: E402

ktest.need_guest()
check = ktest.Checks()

with ktest.ComediTest():
    with open('/proc/comedi') as f:
        proc = f.read()
    check(' 0: comedi_test          comedi_test             2' in proc,
          '/proc/comedi lists comedi_test with 2 subdevices at minor 0', proc.strip().splitlines()[-1])

    info = ktest.probe('info')
    subs = info['subdevices']
    check(info['driver'] == 'comedi_test' and info['board'] == 'comedi_test', 'driver and board name', info['board'])
    check(len(subs) == 2, 'two subdevices', len(subs))
    ai, ao = subs[0], subs[1]
    # comedilib's COMEDI_SUBD_AI = 1, COMEDI_SUBD_AO = 2
    check(ai['type'] == 1 and ai['cmd_read'] and not ai['cmd_write'], 'subdevice 0: analog input with read commands')
    check(ao['type'] == 2 and ao['cmd_write'] and not ao['cmd_read'], 'subdevice 1: analog output with write commands')
    check(not any(s['type'] in (3, 4, 5) for s in subs), 'no digital input, output or I/O subdevice')
    for s in (ai, ao):
        check(s['channels'] == 8 and s['maxdata'] == 65535, 'subdevice %d: 8 channels, 16 bit' % s['index'],
              (s['channels'], s['maxdata']))
        check([(r['min'], r['max'], r['unit']) for r in s['ranges']] == [(-10, 10, 0), (-5, 5, 0)],
              'subdevice %d: ranges +-10 V, +-5 V' % s['index'], s['ranges'])
        check(not s['soft_calibrated'], 'subdevice %d: not soft-calibrated' % s['index'])
        for r in s['ranges']:
            tp = r.get('hardcal_to_physical')
            ok = tp is not None and tp['c0'] == r['min'] and abs(tp['c1'] - (r['max'] - r['min']) / 65535) < 1e-15 \
                and tp['origin'] == 0
            check(ok, 'subdevice %d range +-%g V: to-physical converter is min + code * span / maxdata'
                  % (s['index'], r['max']), tp)
    # TRIG_* bits: NOW 2, FOLLOW 4, TIMER 16, COUNT 32, NONE 1, INT 128
    check(ai['src_mask'] == {'start': 2, 'scan_begin': 4 | 16, 'convert': 2 | 16, 'scan_end': 32, 'stop': 1 | 32},
          'analog input: start now; scan follow|timer; convert now|timer; stop none|count', ai['src_mask'])
    check(ao['src_mask'] == {'start': 128, 'scan_begin': 16, 'convert': 2, 'scan_end': 32, 'stop': 1 | 32},
          'analog output: start int; scan timer; convert now; stop none|count', ao['src_mask'])

    fast = ktest.probe('fastest', 0, 8)
    check(fast['convert_now']['scan_begin_ns'] == 1000, 'fastest 8-channel scan, conversions at once: 1 us (1 MHz)',
          fast['convert_now'])
    check(fast['convert_timer_1us']['scan_begin_ns'] == 8000,
          'fastest 8-channel scan with 1 us between conversions: 8 us (125 kHz)', fast['convert_timer_1us'])
    check(fast['convert_timer_1ns']['convert_ns'] == 0, 'a conversion period under 0.5 us is rounded to 0',
          fast['convert_timer_1ns'])

    # The rig driver's command: scan = 1e9/rate ns, conversions back to back
    # (convert_arg 0, kept at 0); comedi_test rounds the scan to the nearest
    # whole microsecond, so every rate of a whole-microsecond period is kept.
    packed = {1000: 1000, 2000: 2000, 3000: 1e9 / 333000, 8000: 8000, 10000: 10000, 30000: 1e9 / 33000,
              50000: 50000, 100000: 100000, 200000: 200000, 1000000: 1000000}
    for rate, offered in packed.items():
        r = ktest.command_shape(rate)
        check(abs(r['offered_hz'] - offered) < 0.01 and r['scan_kept'] == (offered == rate) and
              r['settled']['convert_arg'] == 0,
              '%d Hz x 8 channels, conversions back to back: comedi_test offers %.1f Hz' % (rate, offered),
              r['settled'])
    # Conversions spread over the scan (convert = scan/8, the driver's
    # earlier command): both are rounded and the scan lengthened to 8 x
    # convert, which refuses most rates.
    spread = {1000: 1000, 5000: 5000, 10000: 1e9 / 104000, 20000: 20000, 25000: 25000, 40000: 40000,
              50000: 1e9 / 24000, 62500: 62500, 100000: 100000, 125000: 125000, 200000: 125000,
              1000000: 1000000}
    for rate, offered in spread.items():
        r = ktest.command_shape(rate, shape='spread')
        check(abs(r['offered_hz'] - offered) < 0.01 and r['scan_kept'] == (offered == rate),
              '%d Hz x 8 channels, conversions spread: comedi_test offers %.1f Hz' % (rate, offered), r['settled'])
    fastest = ktest.fastest_rate()
    check(fastest == 100000, 'fastest rate both comedi_test and the driver accept for 8 channels: 100000 Hz', fastest)
    check(not ktest.daemon_accepts('sample_rate_hz', 125000), 'the driver itself stops at 100000 Hz')

    # Loopback: an instruction read of channel k, on either subdevice,
    # returns the last code written to analog output k; 32767 until then.
    for sub in (0, 1):
        r = ktest.probe('read', sub, 3)
        check(r.get('code') == 32767, 'subdevice %d channel 3 reads 32767 before any write' % sub, r)
    ktest.probe('write', 1, 3, 1234)
    ktest.probe('write', 1, 5, 60000)
    for sub in (0, 1):
        r3, r5, r4 = ktest.probe('read', sub, 3), ktest.probe('read', sub, 5), ktest.probe('read', sub, 4)
        check((r3.get('code'), r5.get('code'), r4.get('code')) == (1234, 60000, 32767),
              'subdevice %d reads back what analog outputs 3 and 5 were given, 4 untouched' % sub, (r3, r5, r4))
    r = ktest.probe('read', 0, 3, 1)
    check(r.get('code') == 1234, 'the loopback ignores the range of the read', r)

check.done()
