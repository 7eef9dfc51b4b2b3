#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""mead -c config/comedi-test.yaml runs its 10 s in the guest and the Python
subscriber, in the guest too, receives everything it publishes, raw included.

The subscriber connects first and the daemon holds its first message until
it has subscribed (streams.wait_subscribers: 1), so the subscriber sees every
topic from seq 0; it listens past the daemon's end, so the last status it
gets is the daemon's final one, whose published counters must equal what it
received, message for message; the raw frames it got must be the frames the
recording holds."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ktest  # noqa: E402

ktest.need_guest()
check = ktest.Checks()
work = ktest.scratch('subscriber')
SECONDS = 10

with ktest.ComediTest():
    sub_out = os.path.join(work, 'sub.json')
    with open(sub_out, 'w') as so:
        # long enough for the daemon's start, its 10 s (the loop runs behind
        # real time in an emulated guest) and its last status
        sub = subprocess.Popen(['/usr/bin/python3', ktest.SUBSCRIBER, '--endpoint', ktest.PUB,
                                '--seconds', '60', '--json'], stdout=so, stderr=subprocess.STDOUT)
        d = ktest.Daemon(work, ['streams.wait_subscribers=1', 'streams.wait_timeout_ms=60000'])
        d.start()
        rc = d.wait(timeout=120)
        ended = time.monotonic()
        try:
            sub_rc = sub.wait(timeout=120)
        except subprocess.TimeoutExpired:
            sub.kill()
            sub_rc = 'killed'
drv = d.summary() or {}
check(rc == 0, 'mead ran its %d s and exited 0' % SECONDS, rc)
check.note('the 10 s run took %.1f s; driver: %s' % (d.wall_s, json.dumps(drv)))
check(sub_rc == 0, 'the subscriber decoded every message (exit 0)', sub_rc)
try:
    with open(sub_out) as f:
        s = json.loads(f.read().strip().splitlines()[-1])
except (ValueError, IndexError, OSError) as e:
    print(open(sub_out).read())
    check(False, 'the subscriber printed its JSON summary', e)
    d.show()
    check.done()

last = s.get('last_status_loop') or {}
check(last.get('state') in ('stopped', 'stopping'), "the last status the subscriber got is the daemon's final one",
      last.get('state'))
check(all(v == 0 for v in s['first_seq'].values()), 'every topic from seq 0', s['first_seq'])
check(sum(s['gaps'].values()) == 0, 'no message missing', s['gaps'])
check(s['decode_errors'] == 0 and s['seq_violations'] == 0 and s['sample_violations'] == 0,
      'every message decodes, seq and sample never go back',
      (s['decode_errors'], s['seq_violations'], s['sample_violations'], s['decode_error_examples'][:3]))
pub = (s.get('last_status_streams') or {}).get('published', {})
got = s.get('messages_at_last_status') or {}
for topic in ('spikes', 'events', 'raw'):
    check(got.get(topic) == pub.get(topic) and pub.get(topic, 0) > 0,
          '%s: received what the daemon published' % topic, '%s of %s' % (got.get(topic), pub.get(topic)))
check(s['messages'].get('status', 0) >= SECONDS, 'a status at least once a second', s['messages'].get('status'))

exp, meta = ktest.export(d.rec)
frames = meta['counts']['raw_frames']
check(s['records']['raw'] == frames and frames > 0, 'raw frames received = raw frames recorded',
      '%d received, %d recorded' % (s['records']['raw'], frames))
check.note('subscriber got %d raw frames in %d messages, %d spikes' % (
    s['records']['raw'], s['messages']['raw'], s['spikes']))
check.done()
