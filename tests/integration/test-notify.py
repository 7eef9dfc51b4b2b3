#!/usr/bin/python3
"""The daemon speaks systemd's notify protocol: READY=1 once the loop ticks,
STATUS= lines, WATCHDOG=1 while the loop advances, STOPPING=1 on SIGTERM.
A datagram socket plays systemd's part (NOTIFY_SOCKET)."""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

mead, src = sys.argv[1], sys.argv[2]
tmp = tempfile.mkdtemp()
path = os.path.join(tmp, "notify")
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
sock.settimeout(0.1)

env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="200000")
env.pop("WATCHDOG_PID", None)
proc = subprocess.Popen(
    [mead, "-c", os.path.join(src, "config/null-virtual.yaml"),
     "-o", "loop.clock=realtime", "-o", "loop.duration_s=0",
     "-o", "streams.pub=ipc://%s/pub" % tmp, "-o", "streams.control=ipc://%s/ctl" % tmp],
    env=env, stderr=subprocess.PIPE)

messages = []
t0 = time.monotonic()
sent_term = False
while time.monotonic() - t0 < 20:
    try:
        messages.append(sock.recv(4096).decode())
    except socket.timeout:
        pass
    if not sent_term and time.monotonic() - t0 > 2.5:
        proc.send_signal(signal.SIGTERM)
        sent_term = True
    if sent_term and proc.poll() is not None:
        break
rc = proc.wait(timeout=10)
err = proc.stderr.read().decode()
text = "\n".join(messages)

def need(cond, what):
    if not cond:
        print("FAIL:", what)
        print("notifications:", messages)
        print("stderr:", err)
        sys.exit(1)

need(rc == 0, "exit status %d" % rc)
ready = [i for i, m in enumerate(messages) if "READY=1" in m]
need(len(ready) == 1, "exactly one READY=1")
watchdog = [i for i, m in enumerate(messages) if "WATCHDOG=1" in m]
# half of 200 ms: a ping every 100 ms for about 2.5 s
need(len(watchdog) >= 10, "WATCHDOG=1 pings while the loop runs (%d)" % len(watchdog))
need(min(watchdog) > ready[0], "no watchdog ping before READY")
need(any(m.startswith("STATUS=ticks=") for m in messages), "STATUS lines with loop figures")
need("STOPPING=1" in text, "STOPPING=1 on SIGTERM")
print("ok: READY, %d watchdog pings, STATUS, STOPPING" % len(watchdog))
