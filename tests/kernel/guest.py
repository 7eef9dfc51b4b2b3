#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The kernel test guest.

Debian's own kernel boots under QEMU with a small busybox initramfs, mounts the
host's / read-only over virtio-9p and a results folder of the host writable,
and runs commands chrooted in the host's root: the binaries of the build
folder drive the real kernel drivers (comedi_test, dummy_hcd, FunctionFS)
as they would on a rig.

  guest.py check
  guest.py run [--module 'NAME [PARAM=VALUE ...]'] [--modules A,B] [--timeout S]
               [--out DIR] [--quiet] -- CMD [ARG ...]
  guest.py suite [--only A,B] [--out DIR] LIST

`run` prints the command's output as it comes and exits with its status; a
missing piece (QEMU, a kernel image, a static busybox) is exit 77 naming it,
a guest that stopped answering is exit 124.  `suite` boots once for every
test of a list file and writes TAP (docs/kernel-tests.md).
"""
import argparse
import gzip
import hashlib
import io
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

# tools/install-deps.sh unpacks Debian's kernel image here
KERNEL_CACHE = '/var/cache/mead/kernel/current'
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))

# What the initramfs loads to reach the host's root; the rest comes from the
# host's copy of the module tree once it is mounted.
BOOT_MODULES = ['virtio_pci', '9pnet_virtio', '9p']

# Folders the guest mounts its own tmpfs on: the host's files there are hidden.
GUEST_TMPFS = ('/tmp', '/run', '/var/tmp', '/dev/shm')

# Boot to the first test, and the guest's own bookkeeping around each test
# (module loading and removal), under TCG on two slow vCPUs.
BOOT_ALLOWANCE_S = 60
PER_TEST_ALLOWANCE_S = 20

SKIP = 77


class Missing(Exception):
    """A piece the guest needs is not on this machine (exit 77)."""


class Bad(Exception):
    """Bad input from the caller (exit 2)."""


def log(msg):
    print('guest: ' + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- pieces

def find_qemu():
    q = os.environ.get('MEAD_GUEST_QEMU') or shutil.which('qemu-system-x86_64')
    if not q or not os.access(q, os.X_OK):
        raise Missing('no qemu-system-x86_64 (Debian package qemu-system-x86)')
    return q


def elf_is_static(path):
    """True for an ELF file without a program interpreter (PT_INTERP)."""
    with open(path, 'rb') as f:
        h = f.read(64)
        if len(h) < 64 or h[:4] != b'\x7fELF' or h[4] != 2:
            return False
        phoff, = struct.unpack_from('<Q', h, 32)
        phentsize, phnum = struct.unpack_from('<HH', h, 54)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            if struct.unpack('<I', f.read(4))[0] == 3:
                return False
    return True


def find_busybox():
    cands = [os.environ['MEAD_GUEST_BUSYBOX']] if os.environ.get('MEAD_GUEST_BUSYBOX') else \
        ['/bin/busybox', '/usr/bin/busybox']
    for c in cands:
        if os.path.isfile(c) and elf_is_static(c):
            return os.path.realpath(c)
    raise Missing('no static busybox (Debian package busybox-static; ' +
                  ('%s is dynamically linked)' % cands[0] if os.path.exists(cands[0]) else 'none found)'))


def read_modules_dep(moddir):
    deps = {}
    with open(os.path.join(moddir, 'modules.dep')) as f:
        for line in f:
            path, _, rest = line.partition(':')
            deps[path] = rest.split()
    return deps


def module_name(path):
    return re.sub(r'\.ko(\.[a-z]+)?$', '', os.path.basename(path)).replace('-', '_')


def dep_closure(deps, names):
    """Module paths for names and everything they need, in load order."""
    by_name = {module_name(p): p for p in deps}
    order, seen = [], set()

    def visit(p):
        if p in seen:
            return
        seen.add(p)
        # modules.dep lists a module's needs last-loaded first
        for d in reversed(deps[p]):
            visit(d)
        order.append(p)
    for n in names:
        if n not in by_name:
            raise Missing('kernel module %s is not in this kernel image' % n)
        visit(by_name[n])
    return order


class Kernel:
    def __init__(self, root):
        self.root = os.path.realpath(root)
        boot = os.path.join(self.root, 'boot')
        images = sorted(f for f in (os.listdir(boot) if os.path.isdir(boot) else [])
                        if f.startswith('vmlinuz-'))
        self.version = self.vmlinuz = None
        for img in reversed(images):
            ver = img[len('vmlinuz-'):]
            moddir = os.path.join(self.root, 'lib', 'modules', ver)
            if os.path.isfile(os.path.join(moddir, 'modules.dep')):
                self.version, self.vmlinuz, self.moddir = ver, os.path.join(boot, img), moddir
                break
        if not self.version:
            raise Missing('no kernel image with its modules under %s (tools/install-deps.sh unpacks '
                          "Debian's linux-image-amd64 into %s)" % (self.root, KERNEL_CACHE))
        if not os.access(self.vmlinuz, os.R_OK):
            raise Missing('%s is not readable' % self.vmlinuz)
        self.deps = read_modules_dep(self.moddir)


def find_kernel():
    env = os.environ.get('MEAD_GUEST_KERNEL_ROOT')
    if env:
        return Kernel(env)
    try:
        return Kernel(KERNEL_CACHE)
    except Missing as cache_err:
        # an installed linux-image-amd64 works as well
        try:
            k = Kernel('/')
            dep_closure(k.deps, BOOT_MODULES)
            return k
        except Missing:
            raise cache_err


# ---------------------------------------------------------------- initramfs

INIT = r'''#!/bin/busybox sh
# The guest's first process: reach the host's root, run the job chrooted in
# it, power off.  Lines starting with "mead-guest:" are read by guest.py.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
die() { echo "mead-guest: FAILED $*"; poweroff -f; }
for m in $(cat /boot-modules); do
	insmod "/modules/$m" || die "insmod $m"
done
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^mead\.$1=//p"; }
out=$(arg out)
modroot=$(arg modroot)
msize=$(arg msize)
o=trans=virtio,version=9p2000.L,msize=$msize
# the host's files do not change under a run: let the guest cache them
mount -t 9p -o "$o,ro,cache=loose" hostroot /root || die "mount of the host root"
mount -t proc proc /root/proc
mount -t sysfs sysfs /root/sys
mount -t devtmpfs devtmpfs /root/dev
mkdir -p /root/dev/pts /root/dev/shm 2>/dev/null
mount -t devpts devpts /root/dev/pts
for d in @TMPFS@; do
	[ -d "/root$d" ] && mount -t tmpfs -o mode=1777 tmpfs "/root$d"
done
# a results folder under /tmp needs its mount point in the guest's /tmp
mkdir -p "/root$out" 2>/dev/null
mount -t 9p -o "$o" results "/root$out" || die "mount of the results folder $out"
ip link set lo up
# the kernel asks for modules through /sbin/modprobe in this root
ln -s "/root$modroot/lib" /lib
echo /bin/modprobe > /proc/sys/kernel/modprobe
echo "mead-guest: up $(cut -d' ' -f1 /proc/uptime)"
chroot /root /bin/sh "$out/runner.sh" "$out" </dev/console >/dev/console 2>&1
echo "mead-guest: done $? $(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
'''.replace('@TMPFS@', ' '.join(GUEST_TMPFS))


def cpio_newc(entries):
    """entries: (name, mode, data, rdev_major, rdev_minor)."""
    out = io.BytesIO()
    ino = 1

    def put(name, mode, data=b'', rmaj=0, rmin=0):
        nonlocal ino
        nb = name.encode() + b'\0'
        hdr = '070701' + ''.join('%08X' % v for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, rmaj, rmin, len(nb), 0))
        ino += 1
        out.write(hdr.encode() + nb)
        out.write(b'\0' * (-(110 + len(nb)) % 4))
        out.write(data)
        out.write(b'\0' * (-len(data) % 4))
    for e in entries:
        put(*e)
    put('TRAILER!!!', 0)
    return out.getvalue()


def initramfs(kernel, busybox, cache_dir):
    """The initramfs for this kernel, rebuilt only when an input changed."""
    mods = dep_closure(kernel.deps, BOOT_MODULES)
    key = hashlib.sha256()
    key.update(INIT.encode())
    for p in [busybox] + [os.path.join(kernel.moddir, m) for m in mods]:
        st = os.stat(p)
        key.update(('%s %d %d\n' % (p, st.st_size, st.st_mtime_ns)).encode())
    path = os.path.join(cache_dir, 'initramfs-%s-%s.cpio.gz' % (kernel.version, key.hexdigest()[:12]))
    if os.path.exists(path):
        return path
    os.makedirs(cache_dir, exist_ok=True)
    for old in os.listdir(cache_dir):
        if old.startswith('initramfs-'):
            os.unlink(os.path.join(cache_dir, old))
    d, f, c = 0o40755, 0o100755, 0o20600
    entries = [(n, d, b'') for n in ('bin', 'dev', 'proc', 'sys', 'root', 'modules')]
    entries.append(('dev/console', c, b'', 5, 1))
    with open(busybox, 'rb') as b:
        entries.append(('bin/busybox', f, b.read()))
    entries.append(('init', f, INIT.encode()))
    names = []
    for m in mods:
        with open(os.path.join(kernel.moddir, m), 'rb') as mf:
            data = mf.read()
        if not m.endswith('.ko'):
            raise Missing('%s is compressed; the initramfs loads plain .ko files' % m)
        names.append(os.path.basename(m))
        entries.append(('modules/' + names[-1], 0o100644, data))
    entries.append(('boot-modules', 0o100644, ('\n'.join(names) + '\n').encode()))
    tmp = path + '.tmp'
    with open(tmp, 'wb') as out:
        with gzip.GzipFile(fileobj=out, mode='wb', mtime=0) as gz:
            gz.write(cpio_newc(entries))
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------- one boot

def parse_module(spec):
    """'NAME [PARAM=VALUE ...]' or 'NAME:PARAM=VALUE:...' -> [NAME, PARAM=VALUE, ...]."""
    words = spec.replace(':', ' ').split()
    if not words or not re.fullmatch(r'[A-Za-z0-9_-]+', words[0]):
        raise Bad('module %r: expected a module name, then PARAM=VALUE words' % spec)
    for w in words[1:]:
        if not re.fullmatch(r'[A-Za-z0-9_]+=[^\s\'"\\]*', w):
            raise Bad('module %r: %r is not PARAM=VALUE' % (spec, w))
    return words


class Test:
    def __init__(self, name, argv, modules=(), timeout=60, cwd=None):
        if not re.fullmatch(r'[A-Za-z0-9_.-]+', name):
            raise Bad('test name %r: letters, digits, ".", "_", "-" only' % name)
        self.name, self.argv, self.modules, self.timeout = name, argv, list(modules), int(timeout)
        self.cwd = cwd or SOURCE_ROOT
        self.rc = None
        self.seconds = None
        self.log = ''
        self.dir = None


def check_path(p, what):
    if not p.startswith('/') or not re.fullmatch(r'[A-Za-z0-9_./+@,=-]+', p):
        raise Bad('%s %r: the guest needs an absolute path without spaces or shell characters' % (what, p))


RUNNER = r'''#!/bin/sh
# Guest side, chrooted in the host's root: every test of the job in turn,
# its modules loaded before it and removed after it, its status and log kept
# in its folder of the results export.
out=$1
. "$out/job.env"
export MEAD_GUEST=1 MEAD_GUEST_MODROOT
mp() { modprobe -d "$MEAD_GUEST_MODROOT" "$@"; }
for t in "$out"/tests/*/; do
	t=${t%/}
	name=$(cat "$t/name")
	echo "mead-guest: start $name"
	loaded=
	failed=
	while read -r m params; do
		[ -n "$m" ] || continue
		# shellcheck disable=SC2086
		if mp "$m" $params >>"$t/modules.log" 2>&1; then
			loaded="$m $loaded"
		else
			failed="$failed $m"
		fi
	done < "$t/modules"
	start=$(cut -d' ' -f1 /proc/uptime)
	if [ -n "$failed" ]; then
		{ echo "modprobe failed:$failed"; cat "$t/modules.log"; } > "$t/log"
		rc=99
	elif [ -f "$t/live" ]; then
		{ (cd "$(cat "$t/cwd")" && exec timeout -k 5 "$(cat "$t/timeout")" sh "$t/cmd"); echo $? > "$t/rc.tmp"; } 2>&1 | tee "$t/log"
		rc=$(cat "$t/rc.tmp")
	else
		(cd "$(cat "$t/cwd")" && exec timeout -k 5 "$(cat "$t/timeout")" sh "$t/cmd") > "$t/log" 2>&1
		rc=$?
	fi
	end=$(cut -d' ' -f1 /proc/uptime)
	for m in $loaded; do
		mp -r "$m" >>"$t/modules.log" 2>&1 || echo "mead-guest: could not remove $m" >>"$t/modules.log"
	done
	echo "$start $end" > "$t/times"
	echo "$rc" > "$t/rc"
	echo "mead-guest: end $name $rc"
done
'''


def boot(tests, out, live=False, quiet=False):
    """Runs tests in one guest; fills in rc, log, seconds.  Returns boot facts."""
    qemu = find_qemu()
    busybox = find_busybox()
    kernel = find_kernel()
    for t in tests:
        for m in t.modules:
            dep_closure(kernel.deps, [m[0]])
    build_root = os.path.realpath(os.environ.get('MEAD_BUILD_ROOT') or os.path.join(SOURCE_ROOT, 'build'))
    for p, what in ((SOURCE_ROOT, 'source tree'), (build_root, 'build folder (MEAD_BUILD_ROOT)')):
        check_path(p, what)
        if any(p == d or p.startswith(d + '/') for d in GUEST_TMPFS):
            raise Bad('the %s %s is under a folder the guest covers with its own tmpfs (%s)'
                      % (what, p, ', '.join(GUEST_TMPFS)))
    cache = os.path.join(build_root, 'tests', 'kernel', 'guest')
    image = initramfs(kernel, busybox, cache)
    out = os.path.realpath(out)
    check_path(out, 'results folder')
    check_path(kernel.root, 'kernel root')
    # folders of tests no longer in the job would read as this run's results
    shutil.rmtree(os.path.join(out, 'tests'), ignore_errors=True)
    os.makedirs(os.path.join(out, 'tests'))
    with open(os.path.join(out, 'runner.sh'), 'w') as f:
        f.write(RUNNER)
    env = {
        'MEAD_GUEST_MODROOT': kernel.root,
        'MEAD_SOURCE_ROOT': SOURCE_ROOT,
        'MEAD_BUILD_ROOT': build_root,
        'MEAD_DRIVER_PATH': os.path.join(build_root, 'drivers'),
        'PATH': '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        'HOME': '/tmp', 'TMPDIR': '/tmp', 'LANG': 'C.UTF-8',
        # the host's root is read-only in the guest
        'PYTHONDONTWRITEBYTECODE': '1',
    }
    for k, v in os.environ.items():
        if k.startswith('MEAD_') and k not in env and not k.startswith('MEAD_GUEST'):
            env[k] = v
    with open(os.path.join(out, 'job.env'), 'w') as f:
        for k, v in sorted(env.items()):
            f.write('%s=%s\nexport %s\n' % (k, shlex.quote(v), k))
    for i, t in enumerate(tests):
        t.dir = os.path.join(out, 'tests', '%03d-%s' % (i + 1, t.name))
        shutil.rmtree(t.dir, ignore_errors=True)
        os.makedirs(t.dir)
        files = {
            'name': t.name, 'timeout': str(t.timeout), 'cwd': t.cwd,
            'cmd': 'export MEAD_TEST_OUT=%s\nexec %s\n' % (shlex.quote(t.dir), shlex.join(t.argv)),
            'modules': ''.join(' '.join(m) + '\n' for m in t.modules),
        }
        if live:
            files['live'] = ''
        for k, v in files.items():
            with open(os.path.join(t.dir, k), 'w') as f:
                f.write(v)

    msize = int(os.environ.get('MEAD_GUEST_MSIZE', 512 * 1024))
    accel = os.environ.get('MEAD_GUEST_ACCEL', 'tcg')
    if accel not in ('tcg', 'kvm'):
        raise Bad('MEAD_GUEST_ACCEL=%s: expected tcg or kvm' % accel)
    cmd = [qemu, '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
           '-accel', 'tcg,thread=multi' if accel == 'tcg' else 'kvm',
           '-cpu', os.environ.get('MEAD_GUEST_CPU', 'max') if accel == 'tcg' else 'host',
           '-m', os.environ.get('MEAD_GUEST_MEMORY_MB', '1536'), '-smp', '2',
           '-chardev', 'stdio,id=con,signal=off', '-serial', 'chardev:con',
           '-kernel', kernel.vmlinuz, '-initrd', image,
           '-append', ' '.join([
               'console=ttyS0', os.environ.get('MEAD_GUEST_KLOG', 'quiet'), 'tsc=reliable', 'panic=-1', 'mitigations=off',
               'mead.out=' + out, 'mead.modroot=' + kernel.root, 'mead.msize=%d' % msize]),
           '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
           '-virtfs', 'local,path=%s,mount_tag=results,security_model=none,multidevs=remap' % out]
    limit = BOOT_ALLOWANCE_S + sum(t.timeout + PER_TEST_ALLOWANCE_S for t in tests)
    console_path = os.path.join(out, 'console.log')
    facts = {'kernel': kernel.version, 'accel': accel, 'timed_out': False, 'limit_s': limit}
    t0 = time.monotonic()
    with open(console_path, 'wb') as console:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        killer = threading.Timer(limit, lambda: (facts.__setitem__('timed_out', True),
                                                 os.killpg(proc.pid, signal.SIGKILL)))
        killer.start()
        try:
            for line in proc.stdout:
                console.write(line)
                console.flush()
                text = line.decode(errors='replace').rstrip('\r\n')
                if text.startswith('mead-guest: up ') and 'up_s' not in facts:
                    facts['up_s'] = time.monotonic() - t0
                    facts['guest_uptime_at_up_s'] = float(text.split()[2])
                if live and not quiet and not text.startswith('mead-guest:'):
                    print(text, flush=True)
                elif live and text.startswith('mead-guest: FAILED'):
                    print(text, file=sys.stderr, flush=True)
            proc.wait()
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            killer.cancel()
    facts['wall_s'] = time.monotonic() - t0
    facts['qemu_rc'] = proc.returncode
    for t in tests:
        rcf = os.path.join(t.dir, 'rc')
        logf = os.path.join(t.dir, 'log')
        if os.path.exists(logf):
            with open(logf, errors='replace') as f:
                t.log = f.read()
        if os.path.exists(rcf):
            with open(rcf) as f:
                t.rc = int(f.read().strip() or 99)
            with open(os.path.join(t.dir, 'times')) as f:
                a, b = f.read().split()
                t.seconds = float(b) - float(a)
    return facts


def console_tail(out, n=40):
    try:
        with open(os.path.join(out, 'console.log'), errors='replace') as f:
            return f.read().splitlines()[-n:]
    except OSError:
        return []


# ---------------------------------------------------------------- commands

def cmd_check(args):
    q = find_qemu()
    b = find_busybox()
    k = find_kernel()
    dep_closure(k.deps, BOOT_MODULES)
    print('qemu     %s' % q)
    print('busybox  %s' % b)
    print('kernel   %s (%s)' % (k.vmlinuz, k.version))
    print('modules  %s' % k.moddir)
    return 0


def cmd_run(args):
    mods = [parse_module(m) for m in args.module]
    for group in args.modules:
        mods += [parse_module(m) for m in group.split(',') if m]
    if not args.argv:
        raise Bad('run: no command given (guest.py run [--modules A,B] -- CMD ...)')
    argv = args.argv[1:] if args.argv[0] == '--' else args.argv
    cwd = os.getcwd()
    check_path(cwd, 'current folder')
    for d in GUEST_TMPFS:
        if cwd == d or cwd.startswith(d + '/'):
            raise Bad('the current folder %s is under %s, which is the guest\'s own memory: '
                      'run from a folder the guest sees' % (cwd, d))
    test = Test('run', argv, mods, args.timeout, cwd=cwd)
    out = args.out or tempfile.mkdtemp(prefix='mead-guest-')
    facts = boot([test], out, live=True, quiet=args.quiet)
    if not args.out and test.rc is not None and test.rc == 0 and not args.keep:
        shutil.rmtree(out, ignore_errors=True)
        where = ''
    else:
        where = ' (results in %s)' % out
    if test.rc is None:
        for line in console_tail(out):
            print(line, file=sys.stderr)
        if facts['timed_out']:
            log('no result: the guest was stopped after %d s%s' % (facts['limit_s'], where))
            return 124
        log('no result: the guest ended without running the command%s' % where)
        return 125
    if test.rc == 99 and test.log.startswith('modprobe failed'):
        print(test.log, file=sys.stderr, end='')
    if args.verbose:
        log('kernel %s, %s, boot to chroot %.1f s, command %.1f s, whole run %.1f s%s' % (
            facts['kernel'], facts['accel'], facts.get('up_s', 0), test.seconds or 0, facts['wall_s'], where))
    return test.rc


def read_list(path):
    """A list file: NAME TIMEOUT_S MODULES COMMAND [ARG ...] per line; MODULES
    is '-' or comma-separated NAME[:PARAM=VALUE...]; '#' starts a comment."""
    tests = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            try:
                w = shlex.split(line)
            except ValueError as e:
                raise Bad('%s:%d: %s' % (path, n, e))
            if len(w) < 4 or not w[1].isdigit():
                raise Bad('%s:%d: expected NAME TIMEOUT_S MODULES COMMAND ..., found %r' % (path, n, line))
            mods = [] if w[2] == '-' else [parse_module(m) for m in w[2].split(',')]
            argv = [os.path.join(SOURCE_ROOT, w[3]) if '/' in w[3] and not w[3].startswith('/') else w[3]] + w[4:]
            tests.append(Test(w[0], argv, mods, int(w[1])))
    names = [t.name for t in tests]
    dup = {x for x in names if names.count(x) > 1}
    if dup:
        raise Bad('%s: test names used twice: %s' % (path, ', '.join(sorted(dup))))
    return tests


def tap_diag(text):
    for line in text.rstrip('\n').splitlines():
        print('# ' + line if line else '#')
    # meson test --print-errorlogs shows a TAP test's stderr, not its stdout
    print(text.rstrip('\n'), file=sys.stderr)


def cmd_suite(args):
    tests = read_list(args.list)
    if args.only:
        want = set(args.only.split(','))
        tests = [t for t in tests if t.name in want]
    build_root = os.path.realpath(os.environ.get('MEAD_BUILD_ROOT') or os.path.join(SOURCE_ROOT, 'build'))
    out = args.out or os.path.join(build_root, 'tests', 'kernel', os.path.splitext(os.path.basename(args.list))[0])
    try:
        facts = boot(tests, out)
    except Missing as e:
        print('1..0 # SKIP %s' % e)
        return 0
    print('1..%d' % len(tests))
    print('# kernel %s under %s: boot to chroot %.1f s, whole run %.1f s (limit %d s); results in %s' % (
        facts['kernel'], facts['accel'], facts.get('up_s', -1), facts['wall_s'], facts['limit_s'], out))
    failed = 0
    for i, t in enumerate(tests, 1):
        if t.rc == 0:
            print('ok %d - %s (%.1f s)' % (i, t.name, t.seconds))
            notes = [ln for ln in t.log.splitlines() if ln.startswith('note: ')]
            for ln in notes:
                print('# ' + ln)
        elif t.rc == SKIP:
            reason = [ln for ln in t.log.splitlines() if ln.strip()][-1:] or ['exit 77']
            print('ok %d - %s # SKIP %s' % (i, t.name, reason[0]))
        else:
            failed += 1
            if t.rc is None:
                why = 'guest stopped after %d s' % facts['limit_s'] if facts['timed_out'] else 'no result from the guest'
            elif t.rc == 124 or t.rc == 137:
                why = 'timed out after %d s' % t.timeout
            else:
                why = 'exit status %d' % t.rc
            print('not ok %d - %s (%s)' % (i, t.name, why))
            print('=== %s: %s' % (t.name, why), file=sys.stderr)
            tap_diag(t.log or '(no output)')
            ml = os.path.join(t.dir, 'modules.log')
            if os.path.exists(ml) and os.path.getsize(ml):
                with open(ml, errors='replace') as f:
                    tap_diag('modules: ' + f.read())
            if t.rc is None:
                tap_diag('console, last lines:\n' + '\n'.join(console_tail(out)))
    return 0


def on_term(sig, frame):
    # meson's timeout and a terminal's hangup: the guest goes with us
    raise KeyboardInterrupt


def main():
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    sub.add_parser('check', help='say which pieces were found')
    r = sub.add_parser('run', help='run one command in the guest')
    r.add_argument('--module', action='append', default=[], metavar="'NAME [PARAM=VALUE ...]'")
    r.add_argument('--modules', action='append', default=[], metavar='A,B,...')
    r.add_argument('--timeout', type=int, default=300, metavar='S')
    r.add_argument('--out', metavar='DIR', help='keep the results folder (logs, console) here')
    r.add_argument('--keep', action='store_true', help='keep the results folder even on success')
    r.add_argument('--quiet', action='store_true', help='do not print the console as it comes')
    r.add_argument('-v', '--verbose', action='store_true', help='boot and run times at the end')
    r.add_argument('argv', nargs=argparse.REMAINDER)
    s = sub.add_parser('suite', help='run a list file in one boot, TAP on stdout')
    s.add_argument('list')
    s.add_argument('--only', metavar='A,B', help='only these tests of the list')
    s.add_argument('--out', metavar='DIR')
    args = ap.parse_args()
    try:
        return {'check': cmd_check, 'run': cmd_run, 'suite': cmd_suite}[args.cmd](args)
    except Missing as e:
        log('skipped: %s' % e)
        return SKIP
    except Bad as e:
        log(str(e))
        return 2
    except KeyboardInterrupt:
        log('interrupted; the guest was stopped')
        return 130


if __name__ == '__main__':
    sys.exit(main())
