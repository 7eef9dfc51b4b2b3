#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""mead-view end to end: the daemon (or the stream harness), mead-view, and
either a WebSocket client of our own (--scenario bridge) or a real browser
(Debian's chromium, headless, driven over the DevTools protocol).

What the page draws is checked against what the stream carries: an
independent subscriber counts the spikes per electrode in every spikes
message, and the counts the page's electrode map shows (its DOM) must equal
the subscriber's sums over exactly the seq range the page says it counted.

  live_view_test.py --scenario bridge|twin|replay|rig|browser --mead M --meactl C --view V
                    --harness H --source SRC [--out DIR]

browser = twin, replay and rig one after the other.  Screenshots go to
--out (live-view-twin.png, live-view-rig.png).  Exit status 77 when what a
scenario needs is missing (python3-zmq, chromium), saying why.
"""

import argparse
import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

SKIP = 77
try:
    import zmq
except ImportError:
    print("python3-zmq missing: skip")
    sys.exit(SKIP)

HEADER = struct.Struct("<4sHHQQII")


def fail(what, **detail):
    print("FAIL:", what)
    for k, v in detail.items():
        print("  %s: %s" % (k, v if isinstance(v, str) else json.dumps(v)[:4000]))
    sys.exit(1)


class WebSocket:
    """A client side of RFC 6455: enough for DevTools and for mead-view."""

    def __init__(self, url, origin=None, timeout=30):
        assert url.startswith("ws://")
        hostport, _, path = url[5:].partition("/")
        host, _, port = hostport.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        head = "GET /%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n" % (path, hostport, key)
        if origin:
            head += "Origin: %s\r\n" % origin
        self.sock.sendall((head + "\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self.buf += chunk
        resp, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status = resp.split(b"\r\n")[0].decode()
        if " 101 " not in self.status:
            raise ConnectionRefusedError(self.status)

    def send(self, data, opcode=1):
        if isinstance(data, str):
            data = data.encode()
        mask = os.urandom(4)
        n = len(data)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(head + mask + body)

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def recv(self):
        """One message: (opcode, payload)."""
        parts, op = [], None
        while True:
            self._need(2)
            b0, b1 = self.buf[0], self.buf[1]
            n, off = b1 & 0x7f, 2
            if n == 126:
                self._need(4)
                n, off = struct.unpack(">H", self.buf[2:4])[0], 4
            elif n == 127:
                self._need(10)
                n, off = struct.unpack(">Q", self.buf[2:10])[0], 10
            if b1 & 0x80:
                raise ValueError("a server frame is never masked")
            self._need(off + n)
            payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
            if (b0 & 0x0f) in (8, 9, 10):
                if (b0 & 0x0f) == 8:
                    return 8, payload
                continue
            if op is None:
                op = b0 & 0x0f
            parts.append(payload)
            if b0 & 0x80:
                return op, b"".join(parts)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class DevTools:
    def __init__(self, ws_url):
        self.ws = WebSocket(ws_url)
        self.next_id = 0

    def call(self, method, params=None, timeout=60):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params or {}}))
        self.ws.sock.settimeout(timeout)
        while True:
            _, data = self.ws.recv()
            m = json.loads(data)
            if m.get("id") == mid:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m["result"]

    def evaluate(self, expr):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True})
        if "exceptionDetails" in r:
            raise RuntimeError("page: %s" % r["exceptionDetails"])
        return r["result"].get("value")


class Subscriber(threading.Thread):
    """The independent count: spikes per electrode in every spikes message, by seq."""

    def __init__(self, endpoint):
        super().__init__(daemon=True)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"spikes")
        self.sock.setsockopt(zmq.RCVTIMEO, 200)
        self.sock.connect(endpoint)
        self.by_seq = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self):
        while not self.stop.is_set():
            try:
                frames = self.sock.recv_multipart()
            except zmq.Again:
                continue
            if len(frames) != 3:
                continue
            magic, _, kind, seq, _, count, rsize = HEADER.unpack(frames[1])
            counts = {}
            p = frames[2]
            for i in range(count):
                e = struct.unpack_from("<H", p, i * rsize + 8)[0]
                counts[e] = counts.get(e, 0) + 1
            with self.lock:
                self.by_seq[seq] = counts
        self.sock.close(0)
        self.ctx.term()

    def max_seq(self):
        with self.lock:
            return max(self.by_seq) if self.by_seq else -1

    def sums(self, first, last, n):
        with self.lock:
            missing = [s for s in range(first, last + 1) if s not in self.by_seq]
            out = [0] * n
            for s in range(first, last + 1):
                for e, c in self.by_seq.get(s, {}).items():
                    if e < n:
                        out[e] += c
        return out, missing


class Run:
    """The processes of one scenario; everything is ended by pid at the end."""
    runs = 0

    def __init__(self, args, tmp):
        self.a, self.tmp, self.procs = args, tmp, []
        self.keys = []        # meactl's CURVE keys, when the daemon needs them
        # below the ephemeral range (32768...), so no client's own port is in the way; a pair per run
        Run.runs += 1
        base = 20000 + (os.getpid() * 16 + 2 * Run.runs) % 12000
        self.pub = "tcp://127.0.0.1:%d" % base
        self.ctl = "tcp://127.0.0.1:%d" % (base + 1)

    def spawn(self, argv, name, stdout=None):
        log = open(os.path.join(self.tmp, name + ".log"), "w")
        p = subprocess.Popen(argv, stdout=stdout or log, stderr=log, start_new_session=True)
        self.procs.append(p)
        return p

    def daemon(self, extra, config=None):
        self.spawn([self.a.mead, "-c", config or os.path.join(self.a.source, "config", "twin-live.yaml"),
                    "-o", "streams.pub=" + self.pub, "-o", "streams.control=" + self.ctl,
                    "-o", "recording.path=" + os.path.join(self.tmp, "run.mrec")] + extra, "mead")
        self.wait_control()

    def harness(self, extra):
        self.spawn([self.a.harness, "--pub", self.pub, "--ctl", self.ctl, "--seconds", "120"] + extra, "harness")
        self.wait_control()

    def wait_control(self):
        for _ in range(100):
            if subprocess.run([self.a.meactl, "-e", self.ctl, "-t", "500"] + self.keys + ["ping"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0:
                return
            time.sleep(0.1)
        fail("the daemon did not answer on " + self.ctl, log=open(os.path.join(self.tmp, "mead.log")).read()
             if os.path.exists(os.path.join(self.tmp, "mead.log")) else "")

    def status(self):
        out = subprocess.run([self.a.meactl, "-e", self.ctl] + self.keys + ["--json", "status"], capture_output=True, text=True)
        return json.loads(out.stdout)

    def view(self, extra=()):
        p = self.spawn([self.a.view, "-c", self.pub, "-l", "127.0.0.1:0"] + list(extra), "view",
                       stdout=subprocess.PIPE)
        line = p.stdout.readline().decode().strip()
        if not line.startswith("http://"):
            fail("mead-view did not print its address", log=open(os.path.join(self.tmp, "view.log")).read())
        return line

    def end(self):
        subprocess.run([self.a.meactl, "-e", self.ctl, "-t", "1000"] + self.keys + ["shutdown"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        for p in reversed(self.procs):
            try:
                p.terminate()
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                p.wait()
            except ProcessLookupError:
                pass


def page_counts_match(sub, snap, n, what):
    first, last = snap["fromSeq"], snap["toSeq"]
    if first is None or last is None or last < first:
        fail(what + ": the page counted nothing", snapshot=snap)
    deadline = time.time() + 15
    while sub.max_seq() < last and time.time() < deadline:
        time.sleep(0.1)
    sums, missing = sub.sums(first, last, n)
    if missing:
        fail(what + ": the independent subscriber missed spikes messages %s..." % missing[:5])
    if sums != snap["counts"]:
        diff = [(e, sums[e], snap["counts"][e]) for e in range(n) if sums[e] != snap["counts"][e]]
        fail(what + ": the page's spike counts differ from the stream's (electrode, stream, page)", diff=diff)
    if sum(sums) == 0:
        fail(what + ": no spikes in the window")
    return sum(sums), last - first + 1


# ---------------------------------------------------------------- bridge
def scenario_bridge(a, tmp):
    """No browser: our own WebSocket client takes the frames."""
    r = Run(a, tmp)
    try:
        r.daemon([])
        st = r.status()
        n = st["layout"]["count"]
        sub = Subscriber(r.pub)
        sub.start()
        time.sleep(0.5)
        url = r.view(["--token", "t0ken-for-tests"])
        hostport = url[7:].split("/")[0]
        # the page's own files, nothing else
        for path, kind in (("/", "text/html"), ("/view.js", "text/javascript"), ("/view.css", "text/css")):
            with urllib.request.urlopen("http://%s%s" % (hostport, path), timeout=10) as resp:
                body = resp.read()
                if not resp.headers["Content-Type"].startswith(kind) or not body:
                    fail("GET %s: %s" % (path, resp.headers["Content-Type"]))
                csp = resp.headers["Content-Security-Policy"] or ""
                if "default-src 'self'" not in csp:
                    fail("GET %s: no content security policy keeping the page offline" % path)
                if path == "/" and (b"http://" in body or b"https://" in body):
                    fail("the page refers to something elsewhere")
        for path in ("/../meson.build", "/etc/passwd", "/view.jsx"):
            try:
                urllib.request.urlopen("http://%s%s" % (hostport, path), timeout=10)
                fail("GET %s was served" % path)
            except urllib.error.HTTPError as e:
                if e.code != 404:
                    fail("GET %s: %d" % (path, e.code))
        # no token, a wrong token, a page from elsewhere: refused
        for q, origin, why in (("", None, "no token"), ("?token=wrong-token", None, "a wrong token"),
                               ("?token=t0ken-for-tests", "http://evil.example", "another origin")):
            try:
                WebSocket("ws://%s/ws%s" % (hostport, q), origin=origin).close()
                fail("the data was served with " + why)
            except ConnectionRefusedError as e:
                if "403" not in str(e):
                    fail("%s: %s" % (why, e))
        # without a token on loopback: a name that is not loopback's (DNS rebinding) is refused
        r2 = r.view()
        hp2 = r2[7:].split("/")[0]
        try:
            host, port = hp2.rsplit(":", 1)
            sock = socket.create_connection((host, int(port)), timeout=10)
            key = base64.b64encode(os.urandom(16)).decode()
            sock.sendall(("GET /ws HTTP/1.1\r\nHost: evil.example:%s\r\nOrigin: http://evil.example:%s\r\n"
                          "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n" % (port, port, key)).encode())
            line = sock.recv(4096).split(b"\r\n")[0].decode()
            sock.close()
            if " 403 " not in line:
                fail("a rebound name reached the data: " + line)
            WebSocket("ws://%s/ws" % hp2).close()   # loopback's own name: fine
        finally:
            r.procs[-1].terminate()
            r.procs[-1].wait()
        ws = WebSocket("ws://%s/ws?token=t0ken-for-tests" % hostport, origin="http://" + hostport)
        op, hello = ws.recv()
        hello = json.loads(hello)
        if hello["type"] != "hello" or hello["wire"] != "1.2":
            fail("no hello first", hello=hello)
        # the layout: in the hello, or in the next status (at least once a second)
        layout = hello["status"]["layout"] if hello["status"] else None
        while layout is None:
            op, data = ws.recv()
            m = json.loads(data) if op == 1 else {}
            if m.get("type") == "status":
                layout = m["status"]["layout"]
                if m["bridge"]["bad_messages"]:
                    fail("the view could not decode messages", bridge=m["bridge"])
        if layout["labels"] != st["layout"]["labels"] or layout["excluded"] != st["layout"]["excluded"]:
            fail("the layout the page gets", layout=layout)
        base = None
        frames = 0
        t_end = time.time() + 4
        while time.time() < t_end:
            op, data = ws.recv()
            if op != 1:
                continue
            m = json.loads(data)
            if m["type"] != "frame" or m["spikes_seq"] is None:
                continue
            frames += 1
            if base is None:
                base = m
            last = m
        ws.close()
        if frames < 40:
            fail("only %d frames in 4 s (20 a second expected)" % frames)
        snap = {"fromSeq": base["spikes_seq"] + 1, "toSeq": last["spikes_seq"],
                "counts": [last["counts"][e] - base["counts"][e] for e in range(n)]}
        total, msgs = page_counts_match(sub, snap, n, "bridge")
        if sum(last["gaps"].values()):
            fail("the view missed messages", gaps=last["gaps"])
        sub.stop.set()
        print("bridge: %d spikes in %d spikes messages, the same as the stream; files served, refusals refused"
              % (total, msgs))
    finally:
        r.end()


def frames_with_spikes(hostport, seconds):
    """Frames a WebSocket client of the view receives in seconds; spikes counted in them."""
    ws = WebSocket("ws://%s/ws" % hostport)
    t_end, spikes, frames = time.time() + seconds, 0, 0
    ws.sock.settimeout(seconds + 5)
    while time.time() < t_end:
        op, data = ws.recv()
        m = json.loads(data) if op == 1 else {}
        if m.get("type") == "frame":
            frames += 1
            spikes = sum(m["counts"])
    ws.close()
    return frames, spikes


def scenario_curve(a, tmp):
    """A daemon whose streams need CURVE: the view gets in with the client's keys, not without."""
    for who in ("server", "viewer", "stranger"):
        subprocess.run([a.meactl, "keygen", "--out", os.path.join(tmp, who)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.copy(os.path.join(tmp, "viewer.pub"), os.path.join(tmp, "authorized"))
    r = Run(a, tmp)
    r.keys = ["--server-key", os.path.join(tmp, "server.pub"), "--client-key", os.path.join(tmp, "viewer.key")]
    try:
        r.daemon(["-o", "streams.curve.enabled=true", "-o", "streams.curve.streams=true",
                  "-o", "streams.curve.server_secret_key_file=" + os.path.join(tmp, "server.key"),
                  "-o", "streams.curve.authorized_keys_file=" + os.path.join(tmp, "authorized")])
        keys = ["--server-key", os.path.join(tmp, "server.pub")]
        url = r.view(keys + ["--client-key", os.path.join(tmp, "viewer.key")])
        ok_frames, ok_spikes = frames_with_spikes(url[7:].split("/")[0], 3)
        if ok_frames < 20 or ok_spikes == 0:
            fail("with the client's keys: %d frames, %d spikes" % (ok_frames, ok_spikes))
        r.procs[-1].terminate()
        r.procs[-1].wait()
        url = r.view(keys + ["--client-key", os.path.join(tmp, "stranger.key")])
        frames, spikes = frames_with_spikes(url[7:].split("/")[0], 2)
        if spikes:
            fail("an unauthorised key read %d spikes" % spikes)
        print("curve: with the authorised key the view read %d spikes in %d frames; with another, nothing" %
              (ok_spikes, ok_frames))
    finally:
        r.end()


def scenario_virtual(a, tmp):
    """A virtual-clock run as fast as it goes, raw on: the view counts every spike of it."""
    r = Run(a, tmp)
    try:
        sub = Subscriber(r.pub)
        sub.start()
        url = r.view()
        ws = WebSocket("ws://%s/ws" % url[7:].split("/")[0])
        t0 = time.time()
        r.spawn([a.mead, "-c", os.path.join(a.source, "config", "null-virtual.yaml"), "-o", "streams.pub=" + r.pub,
                 "-o", "streams.control=" + r.ctl, "-o", "streams.wait_subscribers=2", "-o", "streams.raw=true",
                 "-o", "driver.options.raw=true", "-o", "driver.options.sample_rate_hz=25000",
                 "-o", "driver.options.spike_rate_hz=20", "-o", "loop.duration_s=10"], "mead")
        mead = r.procs[-1]
        last, behind, frames = None, False, 0
        ws.sock.settimeout(60)
        while True:
            op, data = ws.recv()
            m = json.loads(data) if op == 1 else {}
            if m.get("type") != "frame":
                continue
            frames += 1
            behind = behind or m["behind"]
            if m["spikes_seq"] is not None:
                last = m
            # the run ended and the view has passed its last spikes message
            if mead.poll() is not None and last and last["spikes_seq"] == sub.max_seq() and frames > 5:
                break
            if time.time() - t0 > 60:
                fail("the virtual-clock run did not end in 60 s", daemon_exit=mead.poll(),
                     view_spikes_seq=last and last["spikes_seq"], subscriber_seq=sub.max_seq(), frames=frames)
        wall = time.time() - t0
        ws.close()
        n = len(last["counts"])
        snap = {"fromSeq": 0, "toSeq": last["spikes_seq"], "counts": last["counts"]}
        total, msgs = page_counts_match(sub, snap, n, "virtual")
        if sum(last["gaps"].values()):
            fail("the view missed messages", gaps=last["gaps"])
        sub.stop.set()
        print("virtual: 10 s of culture (raw on, 25 kHz x 60) in %.1f s with the view and a subscriber; the view "
              "counted all %d spikes of %d messages%s" % (wall, total, msgs, ", catching up for a while" if behind else ""))
    finally:
        r.end()


# ---------------------------------------------------------------- browser
def find_chromium():
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class Browser:
    def __init__(self, url, tmp, size=(1400, 1000)):
        exe = find_chromium()
        self.profile = tempfile.mkdtemp(dir=tmp, prefix="chromium-")
        self.log = open(os.path.join(tmp, "chromium.log"), "w")
        self.p = subprocess.Popen([exe, "--headless=new", "--no-sandbox", "--disable-gpu",
                                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                                   "--no-first-run", "--user-data-dir=" + self.profile,
                                   "--remote-debugging-port=0", "--window-size=%d,%d" % size, url],
                                  stdout=self.log, stderr=self.log, start_new_session=True)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        for _ in range(600):
            if os.path.exists(port_file) and open(port_file).read().count("\n") >= 1:
                break
            time.sleep(0.1)
        else:
            self.end()
            fail("chromium did not start its DevTools endpoint", log=open(os.path.join(tmp, "chromium.log")).read())
        port = int(open(port_file).read().split("\n")[0])
        target = None
        for _ in range(100):
            with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=10) as resp:
                pages = [t for t in json.load(resp) if t["type"] == "page"]
            if pages:
                target = pages[0]
                break
            time.sleep(0.1)
        self.dt = DevTools(target["webSocketDebuggerUrl"])

    def snapshot(self):
        return self.dt.evaluate("window.meadView ? JSON.stringify(window.meadView.snapshot()) : null")

    def wait(self, cond, what, timeout=40):
        deadline = time.time() + timeout
        snap = None
        while time.time() < deadline:
            s = self.snapshot()
            snap = json.loads(s) if s else None
            if snap and cond(snap):
                return snap
            time.sleep(0.25)
        fail("the page: " + what, snapshot=snap)

    def screenshot(self, path):
        r = self.dt.call("Page.captureScreenshot", {"format": "png"})
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))

    def end(self):
        try:
            self.p.terminate()
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.p.pid, 9)
            self.p.wait()


CELLS_JS = ("[...document.querySelectorAll('#map .el')].map(d => "
            "[+d.dataset.electrode, d.dataset.label, d.classList.contains('excluded'), +d.dataset.count])")


def dom_check(cells, snap, st):
    """The map is the configured layout: one cell per electrode, labels, excluded ones marked."""
    n = st["layout"]["count"]
    if len(cells) != n:
        fail("the map has %d cells for %d electrodes" % (len(cells), n))
    for e, label, excl, _ in cells:
        if label != st["layout"]["labels"][e] or excl != (e in st["layout"]["excluded"]):
            fail("electrode %d drawn as %s%s" % (e, label, " (excluded)" if excl else ""), layout=st["layout"])
    if [c for _, _, _, c in sorted(cells)] != snap["counts"]:
        fail("the snapshot is not what the map shows")


def browse(a, tmp, r, st, name, checks):
    n = st["layout"]["count"]
    sub = Subscriber(r.pub)
    sub.start()
    time.sleep(0.5)
    url = r.view()
    b = Browser(url, tmp)
    try:
        b.wait(lambda s: s["connected"] and s["frames"] > 10 and s["fromSeq"] is not None, "no frames")
        time.sleep(a.seconds)
        snap = b.wait(lambda s: s["rasterDrawn"] > 0 and s["toSeq"] >= s["fromSeq"], "nothing drawn on the raster")
        # the counts, the seq window and the cells as one draw left them
        both = json.loads(b.dt.evaluate("(meadView.draw(), JSON.stringify({snap: meadView.snapshot(), cells: %s}))"
                                        % CELLS_JS))
        snap = both["snap"]
        dom_check(both["cells"], snap, st)
        if sum((snap["viewGaps"] or {}).values()):
            fail("the view missed messages", gaps=snap["viewGaps"])
        total, msgs = page_counts_match(sub, snap, n, name)
        checks(snap)
        if a.out:
            b.screenshot(os.path.join(a.out, "live-view-%s.png" % name))
        print("%s: the page's map shows %d spikes over %d spikes messages (seq %d..%d), electrode for electrode "
              "the independent subscriber's count" % (name, total, msgs, snap["fromSeq"], snap["toSeq"]))
        return snap
    finally:
        sub.stop.set()
        b.end()


def scenario_twin(a, tmp):
    r = Run(a, tmp)
    try:
        r.daemon([])
        st = r.status()

        def checks(s):
            if s["pulses"] == 0 or s["psth"]["stimuli"] == 0:
                fail("no pulses drawn, or none in the PSTH", snapshot=s)
            if s["raw"] is not None:
                fail("the twin has no raw, yet traces")
        browse(a, tmp, r, st, "twin", checks)
    finally:
        r.end()
    # keep the recording for the replay
    if os.path.exists(os.path.join(tmp, "run.mrec")):
        os.replace(os.path.join(tmp, "run.mrec"), os.path.join(tmp, "twin.mrec"))


def scenario_replay(a, tmp):
    rec = os.path.join(tmp, "twin.mrec")
    if not os.path.exists(rec):
        r = Run(a, tmp)
        try:
            r.daemon([])
            time.sleep(5)
        finally:
            r.end()
        os.replace(os.path.join(tmp, "run.mrec"), rec)
    r = Run(a, tmp)
    try:
        conf = os.path.join(tmp, "replay.yaml")
        with open(conf, "w") as f:
            f.write("rig:\n  name: replay-view\nloop:\n  period_us: 1000\n  clock: realtime\n"
                    "layout:\n  preset: grid-6x10\ndriver:\n  name: replay\n  options:\n"
                    "    path: %s\n    loop: true\n" % rec)
        r.daemon([], config=conf)
        st = r.status()
        if st["driver_name"] != "replay":
            fail("not the replay driver", status=st)
        browse(a, tmp, r, st, "replay", lambda s: None)
    finally:
        r.end()


def scenario_rig(a, tmp):
    """A rig's kind of stream (the harness: raw with spikes and artifacts, BLANK events)."""
    r = Run(a, tmp)
    try:
        r.harness(["--rig"])
        st = r.status()

        def checks(s):
            raw = s["raw"]
            if not raw or raw["threshold_source"] != "recomputed" or s["tracesDrawn"] == 0:
                fail("no traces with a threshold", snapshot=s)
            if not all(raw["thresholds_uv"][c] > 0 for c in s["traces"]):
                fail("a trace without its threshold", snapshot=s)
            if s["blanks"] == 0:
                fail("no blanked window", snapshot=s)
        browse(a, tmp, r, st, "rig", checks)
    finally:
        r.end()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", required=True, choices=["bridge", "twin", "replay", "rig", "browser"])
    for k in ("mead", "meactl", "view", "harness", "source"):
        ap.add_argument("--" + k, required=True)
    ap.add_argument("--out", help="where screenshots go")
    ap.add_argument("--seconds", type=float, default=5.0, help="how long the page watches before it is read")
    a = ap.parse_args()
    if a.scenario != "bridge" and not find_chromium():
        print("chromium not found (apt-get install chromium, or tools/install-deps.sh): skip")
        sys.exit(SKIP)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="mead-live-view-")
    try:
        if a.scenario == "bridge":
            scenario_bridge(a, tmp)
            scenario_curve(a, tmp)
            scenario_virtual(a, tmp)
        for s in ("twin", "replay", "rig"):
            if a.scenario in (s, "browser"):
                globals()["scenario_" + s](a, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
