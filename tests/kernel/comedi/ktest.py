# SPDX-License-Identifier: MIT
"""What the comedi guest tests share: paths, the board, the daemon, the oracle.

The tests run inside the kernel test guest (tests/kernel/guest.py), chrooted
in the host's root, as root; comedi_test is the board.  The waveform oracle
is comedi_test's own integer arithmetic (tests/kernel/README.md).
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get('MEAD_SOURCE_ROOT', '')
BUILD = os.environ.get('MEAD_BUILD_ROOT', '')
MEAD = os.path.join(BUILD, 'daemon', 'mead')
MEACTL = os.path.join(BUILD, 'tools', 'meactl')
EXPORT = os.path.join(BUILD, 'tools', 'export', 'mead-export')
PROBE = os.path.join(BUILD, 'tests', 'kernel', 'comedi-probe')
SUBSCRIBER = os.path.join(SRC, 'tools', 'mead_subscriber.py')
CONFIG = os.path.join(SRC, 'config', 'comedi-test.yaml')
# stimulating: one stimulator on analog output 0, no routing lines (comedi_test
# has no digital I/O), 100 ms of stream written ahead
STIM_CONFIG = os.path.join(SRC, 'config', 'comedi-test-stim.yaml')
DEVICE = '/dev/comedi0'
CHANNELS = 8
MAXDATA = 65535
# comedi_test's auto-configuration defaults (no module parameters)
DEFAULT_AMPLITUDE_UV = 1000000
DEFAULT_PERIOD_US = 100000
AI_SUB, AO_SUB = 0, 1
# 0 V on the analog output's +-10 V: 32767.5, so either neighbour is within
# half an LSB; the kernel holds 32767 until the first write, the driver
# writes lround(32767.5)
ZERO_CODES = (32767, 32768)
DRIVER_ZERO = 32768
# wire v1.1 event types and refusal reasons (docs/wire-v1.md)
EV_RUN_START, EV_RUN_END, EV_STIM_REFUSED, EV_OVERFLOW, EV_GAP, EV_LATE = 1, 2, 8, 9, 10, 11
EV_DEVICE_GONE, EV_DEVICE_BACK, EV_BLANK, EV_STALL, EV_STIM_LOST, EV_UNREAD, EV_THRESHOLD = 12, 13, 14, 15, 16, 17, 18
REASONS = {1: 'busy', 2: 'range', 3: 'queue_full', 4: 'device_gone', 5: 'io', 6: 'cancelled', 7: 'unknown',
           8: 'too_late', 9: 'unsupported', 64: 'tick_limit', 65: 'overlap', 66: 'no_device'}
REASON_CANCELLED, REASON_TICK_LIMIT = 6, 64
# the daemon's ports inside the guest; nothing else listens there
PUB = 'tcp://127.0.0.1:5555'
CTL = 'tcp://127.0.0.1:5556'


def need_guest():
    if not os.environ.get('MEAD_GUEST'):
        print('runs inside the kernel test guest: tests/kernel/run-in-guest.sh %s' % ' '.join(sys.argv))
        sys.exit(77)
    for p in (MEAD, MEACTL, EXPORT, PROBE):
        if not os.access(p, os.X_OK):
            print('%s is not built (ninja -C %s)' % (p, BUILD))
            sys.exit(77)


def scratch(name):
    """A folder in the guest's own memory: recordings stay off the 9p export."""
    return tempfile.mkdtemp(prefix=name + '-', dir='/tmp')


class Checks:
    """Every check is printed; the test fails at the end if any failed."""

    def __init__(self):
        self.failed = []

    def __call__(self, cond, what, detail=None):
        print('%s %s%s' % ('ok  ' if cond else 'FAIL', what, '' if detail is None else ': %s' % (detail,)), flush=True)
        if not cond:
            self.failed.append(what)
        return bool(cond)

    def note(self, text):
        """A figure worth keeping: shown under the passed test in the TAP output."""
        print('note: ' + text, flush=True)

    def done(self):
        if self.failed:
            print('%d check(s) failed: %s' % (len(self.failed), '; '.join(self.failed)), flush=True)
            sys.exit(1)
        sys.exit(0)


def run(argv, timeout=120, check=False):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError('%s: exit %d\n%s' % (' '.join(argv), p.returncode, p.stdout))
    return p


def probe(*args, timeout=120):
    p = run([PROBE, '-d', DEVICE] + [str(a) for a in args], timeout=timeout)
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError('comedi-probe %s: exit %d, %r' % (' '.join(map(str, args)), p.returncode, p.stdout))


# ---------------------------------------------------------------- the board

def modprobe(*args):
    root = os.environ.get('MEAD_GUEST_MODROOT', '/')
    return run(['modprobe', '-d', root] + list(args), timeout=60)


class ComediTest:
    """comedi_test loaded as a rig loads it (auto-configures /dev/comedi0),
    with the waveform parameters given; removed again at the end."""

    def __init__(self, amplitude_uv=None, period_us=None):
        self.amplitude_uv = amplitude_uv or DEFAULT_AMPLITUDE_UV
        self.period_us = period_us or DEFAULT_PERIOD_US
        self.params = []
        if amplitude_uv:
            self.params.append('amplitude=%d' % amplitude_uv)
        if period_us:
            self.params.append('period=%d' % period_us)

    def __enter__(self):
        if os.path.exists('/sys/module/comedi_test'):
            modprobe('-r', 'comedi_test')
        p = modprobe('comedi_test', *self.params)
        if p.returncode != 0:
            raise RuntimeError('modprobe comedi_test %s: %s' % (' '.join(self.params), p.stdout))
        for _ in range(100):
            if os.path.exists(DEVICE):
                return self
            time.sleep(0.05)
        raise RuntimeError('%s did not appear after modprobe comedi_test' % DEVICE)

    def __exit__(self, *exc):
        if os.path.exists('/sys/module/comedi_test'):
            modprobe('-r', 'comedi_test')
        return False


def command_shape(rate, channels=CHANNELS, shape='packed'):
    """What comedi_test makes of an 8-channel scan at rate: packed is the rig
    driver's command (conversions back to back), spread the old one."""
    return probe('cmdtest', AI_SUB, channels, rate, shape)


def rate_accepted(rate, channels=CHANNELS):
    """Whether comedi_test keeps the scan period of the driver's command."""
    return command_shape(rate, channels)['scan_kept']


def daemon_accepts(option, value):
    p = run([MEAD, '--check', '-c', CONFIG, '-o', 'driver.options.%s=%s' % (option, value)], timeout=60)
    return p.returncode == 0


def driver_rate_limit():
    """The driver's highest sample_rate_hz, as the daemon's check names it."""
    import re
    p = run([MEAD, '--check', '-c', CONFIG, '-o', 'driver.options.sample_rate_hz=1000000000'], timeout=60)
    m = re.search(r'out of range \d+\.\.(\d+)', p.stdout)
    if not m:
        raise RuntimeError('mead --check did not name the range of sample_rate_hz: %s' % p.stdout.strip())
    return int(m.group(1))


def fastest_rate(channels=CHANNELS):
    """The fastest whole-hertz scan rate comedi_test accepts for the channels
    that the driver accepts too (its sample_rate_hz range)."""
    top = driver_rate_limit()
    for k in range(1, 1001):
        if 1000000 % k or 1000000 // k > top:
            continue
        rate = 1000000 // k
        if rate_accepted(rate, channels):
            return rate
    raise RuntimeError('no rate both comedi_test and the driver accept')


def zero_code(code):
    return code in ZERO_CODES


def ao_code(volts, span=(-10.0, 10.0)):
    """The code the driver writes for volts on the analog output (its widest
    range, +-10 V on comedi_test)."""
    return round((volts - span[0]) / (span[1] - span[0]) * MAXDATA)


def loopback(chan=0, sub=AO_SUB):
    """What analog output chan holds, read back by instruction (comedi_test's
    loopback); the JSON of comedi-probe read ('code', or 'error')."""
    return probe('read', sub, chan)


# ---------------------------------------------------------------- the oracle

def binary_amplitude(amplitude_uv, range_min_v, range_max_v):
    """comedi_test: maxdata * amplitude / (range span in microvolts), integer."""
    span_uv = round((range_max_v - range_min_v) * 1e6)
    return MAXDATA * amplitude_uv // span_uv


def expected_counts(t_us, channel, amplitude_uv, period_us, range_min_v, range_max_v):
    """The code comedi_test produces for channel at time t_us (numpy array of
    integer microseconds into the waveform period, 0 <= t < period)."""
    import numpy as np
    a = binary_amplitude(amplitude_uv, range_min_v, range_max_v)
    offset = MAXDATA // 2
    t = np.asarray(t_us, dtype=np.int64)
    if channel == 0:
        v = t * (2 * a) // period_us + offset
        return np.where(v < a, 0, np.minimum(v - a, MAXDATA))
    if channel == 1:
        low = 0 if offset < a else offset - a
        return np.where(t < period_us // 2, low, min(offset + a, MAXDATA))
    return np.full(t.shape, offset, dtype=np.int64)


def sample_times(n_scans, t0_us, scan_us, convert_us, channel, period_us):
    import numpy as np
    return (t0_us + np.arange(n_scans, dtype=np.int64) * scan_us + channel * convert_us) % period_us


def driver_offset(range_min_v, range_max_v):
    """The count the driver reads as 0 V: comedilib's linear converter for an
    uncalibrated range (c0 = min, c1 = span / maxdata), offset = -c0 / c1."""
    return -range_min_v / ((range_max_v - range_min_v) / MAXDATA)


def fit_phase(ch0, scan_us, amplitude_uv, period_us, rng, tol):
    """The waveform times t0 (integer microseconds) at which the first scans'
    channel 0 (counts, or the driver's values turned back into counts)
    follows the sawtooth within tol.  Inverting the first sample leaves a
    few candidates; the first scans pick among them."""
    import numpy as np
    a = binary_amplitude(amplitude_uv, *rng)
    offset = MAXDATA // 2
    step = period_us / (2 * a)          # microseconds per count
    # the sawtooth's count at t is floor(t * 2a / period) + offset - a
    lo = int(max(0, (float(ch0[0]) - tol - 1 - offset + a) * step))
    hi = int(min(period_us - 1, (float(ch0[0]) + tol + 2 - offset + a) * step))
    n = len(ch0)
    good = []
    for t0 in range(lo, hi + 1):
        e = expected_counts(sample_times(n, t0, scan_us, 0, 0, period_us), 0, amplitude_uv, period_us, *rng)
        if np.all(np.abs(ch0 - e) <= tol):
            good.append(t0)
    return good


# ---------------------------------------------------------------- the daemon

class Daemon:
    """mead started with the comedi_test configuration and overrides."""

    def __init__(self, workdir, overrides=(), config=CONFIG, name='mead'):
        self.workdir = workdir
        self.log_path = os.path.join(workdir, name + '.log')
        self.rec = os.path.join(workdir, name + '.mrec')
        argv = [MEAD, '-c', config, '-o', 'recording.path=' + self.rec]
        for o in overrides:
            argv += ['-o', o]
        self.argv = argv
        self.proc = None
        self.rc = None

    def start(self):
        self.log = open(self.log_path, 'w')
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout=30):
        """Until the control socket answers; False when the daemon ended first."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return False
            if run([MEACTL, '-e', CTL, '-t', '500', 'ping'], timeout=10).returncode == 0:
                return True
            time.sleep(0.2)
        return False

    def status(self, tries=3):
        """The status reply; an emulated guest on a busy machine can take
        seconds to answer, so a silence is asked again before it counts."""
        for _ in range(tries):
            if self.proc.poll() is not None:
                return None
            p = run([MEACTL, '-e', CTL, '-t', '8000', '--json', 'status'], timeout=60)
            try:
                if p.returncode == 0:
                    return json.loads(p.stdout)
            except ValueError:
                pass
            print('meactl status: exit %d: %s' % (p.returncode, p.stdout.strip()[:500]), flush=True)
        return None

    def meactl(self, *args):
        return run([MEACTL, '-e', CTL, '-t', '3000'] + list(args), timeout=20)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        try:
            self.rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.rc = self.proc.wait()
            self.rc = 'killed after %d s' % timeout
        self.wall_s = time.monotonic() - self.started
        self.log.close()
        return self.rc

    def stop(self, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def output(self):
        with open(self.log_path, errors='replace') as f:
            return f.read()

    def run_line(self):
        """The run summary ('mead: run: ticks=... ') or ''."""
        for line in self.output().splitlines():
            if line.startswith('mead: run:') or line.startswith('mead: clock:'):
                return line
        return ''

    def summary(self):
        """The run summary's driver object (the 'mead: driver: {...}' line)."""
        for line in self.output().splitlines():
            if line.startswith('mead: driver: '):
                try:
                    return json.loads(line[len('mead: driver: '):])
                except ValueError:
                    return None
        return None

    def threads(self):
        """Each thread of the daemon: name, state, CPU, policy, where it waits
        (for a daemon that stops answering)."""
        out = []
        base = '/proc/%d/task' % self.proc.pid
        try:
            tids = sorted(os.listdir(base), key=int)
        except OSError:
            return ['(gone)']
        for tid in tids:
            try:
                with open('%s/%s/stat' % (base, tid)) as f:
                    st = f.read()
                with open('%s/%s/wchan' % (base, tid)) as f:
                    wchan = f.read().strip()
            except OSError:
                continue
            name = st[st.index('(') + 1:st.rindex(')')]
            fields = st[st.rindex(')') + 2:].split()
            # fields from 3 on: state(3) ... utime(14) stime(15) ... processor(39) rt_priority(40) policy(41)
            out.append('%s %-12s state %s cpu %s rtprio %s policy %s utime %s stime %s wchan %s' % (
                tid, name, fields[0], fields[36], fields[37], fields[38], fields[11], fields[12], wchan))
        return out

    def show(self, lines=30):
        print('--- mead output (last %d lines)' % lines)
        for line in self.output().splitlines()[-lines:]:
            print('  ' + line)


def export(rec):
    out = rec + '.export'
    p = run([EXPORT, rec, '--to', 'npy', '-o', out], timeout=300)
    if p.returncode != 0:
        raise RuntimeError('mead-export: exit %d\n%s' % (p.returncode, p.stdout))
    with open(os.path.join(out, 'recording.json')) as f:
        meta = json.load(f)
    return out, meta


class Recording:
    """A recording exported to NumPy: events, stim records, raw (when there)
    and the export's account (recording.json)."""

    def __init__(self, rec):
        import numpy as np
        self.dir, self.meta = export(rec)
        self.events = np.load(os.path.join(self.dir, 'events.npy'))
        self.stim = np.load(os.path.join(self.dir, 'stim.npy'))
        raw = os.path.join(self.dir, 'raw_sample.npy')
        self.raw_sample = np.load(raw).astype(np.int64) if os.path.exists(raw) else np.zeros(0, np.int64)
        self.last_status = self.meta.get('last_status') or {}

    def raw(self):
        import numpy as np
        return np.load(os.path.join(self.dir, 'raw.npy'), mmap_mode='r')

    def of_type(self, t):
        return self.events[self.events['type'] == t]

    def loop(self):
        return self.last_status.get('loop') or {}

    def loss(self, name):
        """loop.data_loss.NAME of the recording's last status: events, samples."""
        return (self.loop().get('data_loss') or {}).get(name) or {}
