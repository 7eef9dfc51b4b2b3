#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Subscribe to a mead daemon's live streams (wire v1) and report what came.

Decodes every message byte for byte (three frames: topic, 32-byte header,
payload), prints spike rates per electrode and counts losses (gaps in the
per-topic seq).  Needs python3-zmq and python3-numpy (Debian).

  /usr/bin/python3 tools/mead_subscriber.py --endpoint tcp://127.0.0.1:5555 --seconds 5
  ... --json        one JSON summary at the end (used by the integration test)
  ... --server-key server.pub --client-key me.key    a daemon with streams.curve.streams on

Key files are the ones `meactl keygen` writes (docs/safety.md).
"""

import argparse
import json
import os
import stat
import struct
import sys
import time

import numpy as np
import zmq
import zmq.utils.z85

HEADER = struct.Struct("<4sHHQQII")          # magic, version, kind, seq, sample, count, record_size
assert HEADER.size == 32
KINDS = {"spikes": 1, "stim": 2, "events": 3, "raw": 4, "status": 5, "waveforms": 6}   # waveforms: wire 1.2
RECORD_SIZE = {"spikes": 16, "stim": 24, "events": 16}   # minimum (wire 1.0); records may grow at the end

# Only the known leading bytes of each record are decoded; a larger
# record_size (a newer daemon) is skipped over by numpy's itemsize, and a
# field past a smaller one (an older daemon) is left out.
SPIKE_FIELDS = [("sample", "<u8"), ("electrode", "<u2"), ("flags", "<u2"), ("amplitude_uv", "<f4")]
STIM_FIELDS = [("sample", "<u8"), ("electrode", "<u2"), ("flags", "<u2"), ("amplitude_ua", "<f4"),
               ("phase_us", "<u4"), ("interphase_us", "<u4"),
               ("requested_sample", "<u8")]                       # 1.1
EVENT_FIELDS = [("sample", "<u8"), ("type", "<u4"), ("value", "<i4"),
                ("samples", "<u4"), ("electrode", "<u2")]        # 1.1
FIELDS = {"spikes": SPIKE_FIELDS, "stim": STIM_FIELDS, "events": EVENT_FIELDS}
# A waveform record (wire 1.2): this header, then pre + 1 + post float32 µV.
WAVEFORM_HEADER = 24


def waveform_dtype(record_size):
    """The numpy dtype of waveform records of record_size bytes ("uv": the samples)."""
    n = (record_size - WAVEFORM_HEADER) // 4
    return np.dtype({"names": ["sample", "electrode", "flags", "pre", "post", "amplitude_uv", "uv"],
                     "formats": ["<u8", "<u2", "<u2", "<u2", "<u2", "<f4", ("<f4", (n,))],
                     "offsets": [0, 8, 10, 12, 14, 16, 24], "itemsize": record_size})

# Event types of wire 1.1 that say the rig lost data or refused stimulation
# (docs/wire-v1.md): with them a subscriber tells a quiet electrode from a
# lost second.
LOSS_EVENTS = {9: "overflow", 10: "gap", 11: "late", 12: "device_gone", 13: "device_back", 15: "stall",
               16: "stim_lost", 17: "unread"}
EVENT_STIM_REFUSED = 8
EVENT_DIGITAL = 19       # a digital input line's level: the line in the electrode field, no loss
STIM_LATE = 1


def dtype_for(topic, record_size):
    names, formats, offsets, off = [], [], [], 0
    for name, fmt in FIELDS[topic]:
        size = np.dtype(fmt).itemsize
        if off + size > record_size:
            break
        names.append(name)
        formats.append(fmt)
        offsets.append(off)
        off += size
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": record_size})


class Stats:
    def __init__(self):
        self.messages = {t: 0 for t in KINDS}
        self.records = {t: 0 for t in KINDS}
        self.gaps = {t: 0 for t in KINDS}          # messages missing (sum of seq gaps)
        self.gap_events = {t: 0 for t in KINDS}
        self.last_seq = {}
        self.last_sample = {}
        self.first_seq = {}
        self.decode_errors = 0
        self.decode_error_examples = []
        self.sample_violations = 0
        self.electrode_violations = 0
        self.seq_violations = 0
        self.spikes = 0
        self.electrode_count = None
        self.sample_rate = None
        self.uv_per_count = None
        self.spike_counts = None
        self.status = None
        # Messages received before the last status, per topic: with no loss
        # and no late join they equal that status's streams.published.
        self.messages_at_last_status = None
        self.device_events = {name: {"events": 0, "samples": 0} for name in LOSS_EVENTS.values()}
        self.stim_refused = {}
        self.stim_late = 0
        self.digital = {}      # line -> {"events": n, "level": the last level}
        # waveforms: records, their window, flags seen, and the sum of every sample (a checksum)
        self.waveforms = {"records": 0, "pre": None, "post": None, "flagged": 0, "sum_uv": 0.0}

    def error(self, what):
        self.decode_errors += 1
        if len(self.decode_error_examples) < 10:
            self.decode_error_examples.append(what)


def handle(st, frames):
    if len(frames) != 3:
        st.error("message with %d frames" % len(frames))
        return
    topic_b, hdr, payload = frames
    try:
        topic = topic_b.decode("ascii")
    except UnicodeDecodeError:
        st.error("topic is not ASCII")
        return
    if topic not in KINDS:
        st.error("unknown topic %r" % topic)
        return
    if len(hdr) != 32:
        st.error("%s: header of %d bytes" % (topic, len(hdr)))
        return
    magic, version, kind, seq, sample, count, record_size = HEADER.unpack(hdr)
    if magic != b"MEAD" or version != 1:
        st.error("%s: bad magic/version" % topic)
        return
    if kind != KINDS[topic]:
        st.error("%s: kind %d does not match the topic" % (topic, kind))
        return
    if len(payload) != count * record_size:
        st.error("%s: payload %d bytes != %d x %d" % (topic, len(payload), count, record_size))
        return
    if topic in RECORD_SIZE and record_size < RECORD_SIZE[topic]:
        st.error("%s: record_size %d too small" % (topic, record_size))
        return
    if topic == "status" and count != 1:
        st.error("status: count %d" % count)
        return

    # Sequence: per topic, +1 per message; a jump is a loss.
    if topic in st.last_seq:
        expect = st.last_seq[topic] + 1
        if seq > expect:
            st.gaps[topic] += seq - expect
            st.gap_events[topic] += 1
        elif seq < expect:
            st.seq_violations += 1
    else:
        st.first_seq[topic] = seq
    st.last_seq[topic] = seq
    if topic != "status":
        if topic in st.last_sample and sample < st.last_sample[topic]:
            st.sample_violations += 1
        st.last_sample[topic] = sample
    before = dict(st.messages)
    st.messages[topic] += 1
    st.records[topic] += count

    if topic == "status":
        try:
            status = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            st.error("status: not JSON: %s" % e)
            return
        if not isinstance(status, dict):
            st.error("status: not an object")
            return
        st.status = status
        st.messages_at_last_status = before
        layout = status.get("layout") or {}
        if isinstance(layout.get("count"), int):
            st.electrode_count = layout["count"]
            if st.spike_counts is None or len(st.spike_counts) < st.electrode_count:
                grown = np.zeros(st.electrode_count, dtype=np.int64)
                if st.spike_counts is not None:
                    grown[: len(st.spike_counts)] = st.spike_counts
                st.spike_counts = grown
        st.sample_rate = status.get("sample_rate_hz") or st.sample_rate
        st.uv_per_count = status.get("uv_per_count", st.uv_per_count)
        return
    if topic == "raw":
        if record_size % 2:
            st.error("raw: odd record_size %d" % record_size)
        return
    if topic == "waveforms":
        if count == 0:
            return
        if record_size < WAVEFORM_HEADER or (record_size - WAVEFORM_HEADER) % 4:
            st.error("waveforms: record_size %d is not 24 + 4 n" % record_size)
            return
        w = np.frombuffer(payload, dtype=waveform_dtype(record_size), count=count)
        if np.any(w["pre"].astype(np.int64) + 1 + w["post"] != (record_size - WAVEFORM_HEADER) // 4):
            st.error("waveforms: pre + 1 + post does not match record_size %d" % record_size)
            return
        wf = st.waveforms
        wf["records"] += count
        wf["pre"], wf["post"] = int(w["pre"][0]), int(w["post"][0])
        wf["flagged"] += int((w["flags"] != 0).sum())
        wf["sum_uv"] += float(w["uv"].astype(np.float64).sum())
        if st.electrode_count is not None:
            st.electrode_violations += int((w["electrode"] >= st.electrode_count).sum())
        return
    rec = np.frombuffer(payload, dtype=dtype_for(topic, record_size), count=count)
    if count:
        # Records of one message never go back in time either.
        if np.any(np.diff(rec["sample"].astype(np.int64)) < 0):
            st.sample_violations += 1
        if topic == "spikes":
            st.spikes += count
            el = rec["electrode"]
            if st.electrode_count is not None:
                bad = el >= st.electrode_count
                st.electrode_violations += int(bad.sum())
                el = el[~bad]
            if st.spike_counts is None:
                st.spike_counts = np.zeros(int(el.max()) + 1 if len(el) else 1, dtype=np.int64)
            if len(el) and int(el.max()) >= len(st.spike_counts):
                grown = np.zeros(int(el.max()) + 1, dtype=np.int64)
                grown[: len(st.spike_counts)] = st.spike_counts
                st.spike_counts = grown
            np.add.at(st.spike_counts, el.astype(np.int64), 1)
        elif topic == "stim":
            if st.electrode_count is not None:
                st.electrode_violations += int((rec["electrode"] >= st.electrode_count).sum())
            st.stim_late += int(((rec["flags"] & STIM_LATE) != 0).sum())
        elif topic == "events":
            for e in rec:
                kind = LOSS_EVENTS.get(int(e["type"]))
                if kind:
                    st.device_events[kind]["events"] += 1
                    st.device_events[kind]["samples"] += int(e["samples"]) if "samples" in rec.dtype.names else 0
                elif int(e["type"]) == EVENT_STIM_REFUSED:
                    reason = str(int(e["value"]))
                    st.stim_refused[reason] = st.stim_refused.get(reason, 0) + 1
                elif int(e["type"]) == EVENT_DIGITAL and "electrode" in rec.dtype.names:
                    line = st.digital.setdefault(str(int(e["electrode"])), {"events": 0, "level": 0})
                    line["events"] += 1
                    line["level"] = int(e["value"])


Z85_LEN = 40


def read_key(text, name):
    """The one Z85 key in key-file text (blank lines and '#' comments skipped)."""
    keys = []
    for n, line in enumerate(text.splitlines(), 1):
        body = line.strip()
        if not body or body.startswith("#"):
            continue
        word, rest = (body.split(None, 1) + [""])[:2]
        if rest and not rest.startswith("#"):
            raise ValueError("%s:%d: unexpected text after the key" % (name, n))
        if len(word) != Z85_LEN:
            raise ValueError("%s:%d: a key is %d Z85 characters, found %d" % (name, n, Z85_LEN, len(word)))
        try:
            zmq.utils.z85.decode(word.encode("ascii"))
        except (ValueError, KeyError, struct.error, UnicodeEncodeError):
            raise ValueError("%s:%d: not a Z85 key" % (name, n))
        keys.append(word.encode("ascii"))
    if len(keys) != 1:
        raise ValueError("%s: %s" % (name, "no key in the file" if not keys else "more than one key"))
    return keys[0]


def key_arg(arg, secret):
    """A key file (secret: not accessible to others), or for a public key the key itself."""
    if os.path.exists(arg):
        if secret and os.stat(arg).st_mode & stat.S_IRWXO:
            raise ValueError("%s: a secret key must not be accessible to others (chmod 600 it)" % arg)
        with open(arg, encoding="ascii", errors="replace") as f:
            return read_key(f.read(), arg)
    if secret:
        raise ValueError("%s: no such file" % arg)
    return read_key(arg, "key")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", default="tcp://127.0.0.1:5555")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long to listen")
    ap.add_argument("--topics", default="spikes,stim,events,raw,status",
                    help="comma-separated topics to subscribe to (add waveforms for spike waveforms)")
    ap.add_argument("--json", action="store_true", help="print one JSON summary at the end")
    ap.add_argument("--every", type=float, default=1.0, help="seconds between rate printouts")
    ap.add_argument("--server-key", metavar="FILE|Z85",
                    help="the daemon's public key (its .pub file or 40 Z85 characters): connect with CURVE")
    ap.add_argument("--client-key", metavar="FILE",
                    help="this subscriber's secret key file (.key), authorised on the daemon")
    args = ap.parse_args()
    if bool(args.server_key) != bool(args.client_key):
        ap.error("--server-key and --client-key go together")
    try:
        curve = (key_arg(args.server_key, False), key_arg(args.client_key, True)) if args.server_key else None
    except (OSError, ValueError) as e:
        print("mead_subscriber: %s" % e, file=sys.stderr)
        return 2

    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    if curve:
        server, secret = curve
        sock.curve_serverkey = server
        sock.curve_secretkey = secret
        sock.curve_publickey = zmq.curve_public(secret)
    for t in args.topics.split(","):
        if t:
            sock.setsockopt(zmq.SUBSCRIBE, t.encode("ascii"))
    sock.connect(args.endpoint)

    st = Stats()
    start = time.monotonic()
    end = start + args.seconds
    next_print = start + args.every
    last_counts = None
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    while True:
        now = time.monotonic()
        if now >= end:
            break
        timeout_ms = max(1, int((min(end, next_print) - now) * 1000))
        if dict(poller.poll(timeout_ms)):
            while True:
                try:
                    frames = sock.recv_multipart(flags=zmq.NOBLOCK)
                except zmq.Again:
                    break
                handle(st, frames)
        now = time.monotonic()
        if not args.json and now >= next_print and st.spike_counts is not None:
            counts = st.spike_counts.copy()
            prev = last_counts if last_counts is not None and len(last_counts) == len(counts) else np.zeros_like(counts)
            rate = (counts - prev) / args.every
            top = np.argsort(rate)[::-1][:8]
            lost = sum(st.gaps.values())
            print("t=%5.1fs spikes/s total %.0f | busiest: %s | lost messages %d" % (
                now - start, rate.sum(), " ".join("e%d:%.0f" % (i, rate[i]) for i in top if rate[i] > 0),
                lost), flush=True)
            last_counts = counts
            next_print += args.every
    elapsed = time.monotonic() - start
    sock.close()
    # Spikes that came before the first status could not be checked then.
    if st.electrode_count is not None and st.spike_counts is not None and len(st.spike_counts) > st.electrode_count:
        st.electrode_violations += int(st.spike_counts[st.electrode_count:].sum())
        st.spike_counts = st.spike_counts[: st.electrode_count]
    ctx.term()

    rates = []
    if st.spike_counts is not None:
        rates = (st.spike_counts / elapsed).round(3).tolist()
    summary = {
        "endpoint": args.endpoint,
        "seconds": round(elapsed, 3),
        "messages": st.messages,
        "records": st.records,
        "gaps": st.gaps,
        "gap_events": st.gap_events,
        "first_seq": st.first_seq,
        "last_seq": st.last_seq,
        "decode_errors": st.decode_errors,
        "decode_error_examples": st.decode_error_examples,
        "seq_violations": st.seq_violations,
        "sample_violations": st.sample_violations,
        "electrode_violations": st.electrode_violations,
        "spikes": st.spikes,
        "electrode_count": st.electrode_count,
        "sample_rate_hz": st.sample_rate,
        "spike_rate_hz": rates,
        "last_status_streams": (st.status or {}).get("streams"),
        "messages_at_last_status": st.messages_at_last_status,
        "last_status_loop": (st.status or {}).get("loop"),
        "device_events": st.device_events,
        "stim_refused_by_reason_code": st.stim_refused,
        "stim_late": st.stim_late,
        "digital_lines": st.digital,
        "waveforms": st.waveforms,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print("messages per topic: %s" % st.messages)
        print("lost (seq gaps): %s   decode errors: %d   sample went back: %d   electrode out of range: %d" % (
            st.gaps, st.decode_errors, st.sample_violations, st.electrode_violations))
        lost = {k: v for k, v in st.device_events.items() if v["events"]}
        print("device losses (events, samples): %s   stim refused (by reason code): %s   stim late: %d" % (
            lost or "none", st.stim_refused or "none", st.stim_late))
        if st.digital:
            print("digital input lines (events, last level): %s" % ", ".join(
                "%s: %d, %d" % (k, v["events"], v["level"]) for k, v in sorted(st.digital.items(), key=lambda x: int(x[0]))))
        if rates:
            print("spike rate per electrode (Hz):")
            for i, r in enumerate(rates):
                print("  e%-4d %8.2f" % (i, r))
    bad = st.decode_errors or st.seq_violations or st.sample_violations or st.electrode_violations
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
