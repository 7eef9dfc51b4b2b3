#!/bin/sh
# Spike waveforms end to end without a driver: stream-harness --waveforms
# (publisher, recorder, status fed by a synthetic loop) to two live
# subscribers (one asking for waveforms, one with today's default topics,
# which must see nothing new) and to a recording, then mead-export --to
# npy and --to nwb, read back with numpy and h5py and compared value for
# value with the recording, decoded here independently of the C reader.
#   test_waveforms.sh STREAM_HARNESS MEAD_EXPORT SUBSCRIBER_PY
set -eu
HARNESS=$1 EXPORT=$2 SUB=$3
PY=/usr/bin/python3
$PY -c 'import zmq, numpy, h5py' 2>/dev/null || { echo "skip: python3-zmq, python3-numpy and python3-h5py are needed"; exit 77; }
dir=$(mktemp -d /tmp/mead-waveforms.XXXXXX)
hpid=
cleanup() { [ -n "$hpid" ] && kill "$hpid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

"$HARNESS" --seconds 2 --waveforms --wait-subscribers 2 --record "$dir/w.meadrec" >"$dir/harness.out" 2>"$dir/harness.err" &
hpid=$!
i=0
until grep -q '"pub"' "$dir/harness.out" 2>/dev/null; do
	i=$((i + 1)); [ $i -gt 100 ] && { echo "harness did not start"; cat "$dir/harness.err"; exit 1; }
	sleep 0.05
done
PUB=$($PY -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["pub"])' "$dir/harness.out")
$PY "$SUB" --endpoint "$PUB" --seconds 4 --json --topics spikes,status,waveforms >"$dir/sub_wf.json" &
s1=$!
$PY "$SUB" --endpoint "$PUB" --seconds 4 --json >"$dir/sub_old.json" &
s2=$!
wait "$s1"
wait "$s2"
wait "$hpid"
hpid=
"$EXPORT" "$dir/w.meadrec" --to npy -o "$dir/npy" >"$dir/npy.out"
"$EXPORT" "$dir/w.meadrec" --to nwb -o "$dir/w.nwb" >"$dir/nwb.out"
"$EXPORT" "$dir/w.meadrec" --to openephys -o "$dir/oe" >"$dir/oe.out"
cat "$dir/npy.out" "$dir/nwb.out" "$dir/oe.out"

$PY - "$dir" <<'PYEOF'
import json, struct, sys, zlib
import numpy as np
import h5py
d = sys.argv[1]
failed = []
def check(cond, what):
    if not cond:
        failed.append(what)
        print("FAIL:", what)
    return cond

# The recording, decoded from its bytes (docs/recording.md, docs/wire-v1.md).
b = open(d + "/w.meadrec", "rb").read()
assert b[:8] == b"MEADREC\0"
version, hlen, clen, mlen = struct.unpack("<IIII", b[8:24])
meta = json.loads(b[24 + clen:24 + clen + mlen])
rate = meta["sample_rate_hz"]
pos, recs = hlen, []
while pos + 12 <= len(b):
    sync, blen = struct.unpack("<II", b[pos:pos + 8])
    assert sync == 0x4352454D
    body = b[pos + 8:pos + 8 + blen]
    assert zlib.crc32(b[pos + 4:pos + 8 + blen]) == struct.unpack("<I", b[pos + 8 + blen:pos + 12 + blen])[0]
    tl = body[0]
    topic = body[1:1 + tl].decode()
    magic, ver, kind, seq, sample, count, size = struct.unpack("<4sHHQQII", body[1 + tl:33 + tl])
    recs.append((topic, kind, seq, count, size, body[33 + tl:]))
    pos += 12 + blen
wf = [r for r in recs if r[1] == 6]
check(all(r[0] == "waveforms" for r in wf), "kind 6 is topic waveforms")
check(len(wf) > 0, "the recording has waveform messages")
size = wf[0][4]
check(size == 24 + 4 * (25 + 1 + 50), "record size 24 + 4 x 76: %d" % size)
rows = []
for topic, kind, seq, count, sz, payload in wf:
    check(sz == size and len(payload) == count * sz, "payload = count x record_size")
    for i in range(count):
        r = payload[i * sz:(i + 1) * sz]
        sample, el, flags, pre, post, amp, res = struct.unpack("<QHHHHfI", r[:24])
        uv = np.frombuffer(r[24:], dtype="<f4")
        rows.append((sample, el, flags, pre, post, amp, uv))
n = len(rows)
spikes = [r for r in recs if r[1] == 1]
n_spikes = sum(r[3] for r in spikes)
final = json.loads(open(d + "/harness.out").read().splitlines()[-1])
check(final["loop"]["waveforms"] == n, "status loop.waveforms %d == recorded %d" % (final["loop"]["waveforms"], n))
check(final["recording"]["recorded"]["waveforms"] == len(wf) and final["recording"]["lost"]["waveforms"] == 0,
      "status recording.recorded.waveforms")
check(0 < n < n_spikes, "waveforms %d: every spike's but the last ticks' (%d spikes)" % (n, n_spikes))
# the harness's values (tests/streams/stream_harness.c harness_wave())
def expect(sample, el, amp):
    i = np.arange(76, dtype=np.float32)
    dd = i - np.float32(25)
    return (np.float32(amp) / (np.float32(1) + dd * dd / np.float32(4)) +
            ((sample + np.arange(76) * 3 + el) % 11).astype(np.float32) * np.float32(0.25)).astype(np.float32)
check(all(np.allclose(r[6], expect(r[0], r[1], r[5]), atol=1e-5) for r in rows), "samples as the harness made them")

# live: the subscriber that asked for them saw every one; the one with
# today's topics saw none and nothing it could not decode
sub = json.load(open(d + "/sub_wf.json"))
old = json.load(open(d + "/sub_old.json"))
check(sub["decode_errors"] == 0 and old["decode_errors"] == 0, "both subscribers decode everything")
check(sub["waveforms"]["records"] == n and sub["waveforms"]["pre"] == 25 and sub["waveforms"]["post"] == 50,
      "the waveform subscriber got %s of %d" % (sub["waveforms"], n))
check(abs(sub["waveforms"]["sum_uv"] - float(sum(r[6].astype(np.float64).sum() for r in rows))) < 1e-6 * n * 76,
      "and the same samples")
check(sub["gaps"]["waveforms"] == 0, "no waveform message lost live")
check(old["messages"]["waveforms"] == 0 and old["waveforms"]["records"] == 0, "the default topics see no waveforms")
check(old["spikes"] == sub["spikes"] == n_spikes, "both saw every spike")

# npy
w = np.load(d + "/npy/waveforms.npy")
ws = np.load(d + "/npy/waveform_samples.npy")
we = np.load(d + "/npy/waveform_electrodes.npy")
wfl = np.load(d + "/npy/waveform_flags.npy")
side = json.load(open(d + "/npy/recording.json"))
check(w.shape == (n, 76) and w.dtype == np.float32, "waveforms.npy [n, 76] float32: %s" % (w.shape,))
check(ws.dtype == np.uint64 and we.dtype == np.uint16 and wfl.dtype == np.uint16, "index dtypes")
check(np.array_equal(ws, [r[0] for r in rows]) and np.array_equal(we, [r[1] for r in rows]), "samples, electrodes")
check(np.array_equal(wfl, [r[2] for r in rows]), "flags")
check(np.array_equal(w, np.stack([r[6] for r in rows])), "waveforms.npy equals the recording")
check(side["counts"]["waveforms"] == n and side["counts"]["waveform_pre"] == 25 and side["counts"]["waveform_post"] == 50,
      "recording.json counts")
check(side["files"]["waveforms"] == "waveforms.npy", "recording.json lists the files")

# NWB: one SpikeEventSeries per electrode under /processing/ecephys
f = h5py.File(d + "/w.nwb", "r")
def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)
pm = f["/processing/ecephys"]
check(text(pm.attrs["neurodata_type"]) == "ProcessingModule" and text(pm.attrs["namespace"]) == "core",
      "ecephys is a ProcessingModule")
check("description" in pm.attrs, "ProcessingModule description")
labels = [text(x) for x in f["/general/extracellular_ephys/electrodes/label"][:]]
by_el = {}
for r in rows:
    by_el.setdefault(r[1], []).append(r)
check(len(pm.keys()) == len(by_el), "one series per electrode with waveforms: %d vs %d" % (len(pm.keys()), len(by_el)))
ids = set()
for el, rs in by_el.items():
    name = "waveforms_" + labels[el]
    if not check(name in pm, "series %s" % name):
        continue
    g = pm[name]
    check(text(g.attrs["neurodata_type"]) == "SpikeEventSeries" and text(g.attrs["namespace"]) == "core", name + " type")
    ids.add(text(g.attrs["object_id"]))
    check("description" in g.attrs, name + " description")
    data = g["data"]
    check(data.shape == (len(rs), 76) and data.dtype == np.float32, name + " data shape")
    check(text(data.attrs["unit"]) == "volts" and abs(float(data.attrs["conversion"]) - 1e-6) < 1e-12, name + " volts")
    check(np.array_equal(data[:], np.stack([r[6] for r in rs])), name + " data equals the recording")
    check(np.allclose(data[:] * data.attrs["conversion"], np.stack([r[6] for r in rs]) * 1e-6, rtol=1e-6), name + " in volts")
    ts = g["timestamps"]
    check(text(ts.attrs["unit"]) == "seconds" and int(ts.attrs["interval"]) == 1, name + " timestamps attrs")
    check(np.array_equal(ts[:], np.array([r[0] for r in rs], dtype=np.float64) / rate), name + " timestamps")
    e = g["electrodes"]
    check(text(e.attrs["neurodata_type"]) == "DynamicTableRegion" and text(e.attrs["namespace"]) == "hdmf-common",
          name + " electrodes region")
    check(list(e[:]) == [el], name + " its electrode")
    check(f[e.attrs["table"]].name == "/general/extracellular_ephys/electrodes", name + " region's table")
# Open Ephys: each electrode's spike folder, waveforms in its spikes' rows
import glob
oe = glob.glob(d + "/oe/*/experiment1/recording1")[0]
ob = json.load(open(oe + "/structure.oebin"))
spk = {}
for topic, kind, seq, count, sz, payload in spikes:
    for i in range(count):
        sample, el, flags, amp = struct.unpack("<QHHf", payload[i * sz:i * sz + 16])
        spk.setdefault(el, []).append(sample)
got_oe = 0
for el, samples in spk.items():
    sd = oe + "/spikes/mead-100.acquisition/electrode%d/" % el
    wv = np.load(sd + "waveforms.npy")
    sn = np.load(sd + "sample_numbers.npy")
    check(wv.shape == (len(samples), 1, 76) and wv.dtype == np.float32, "oe electrode %d waveforms shape" % el)
    check(np.array_equal(sn, samples), "oe electrode %d sample numbers" % el)
    mine = {r[0]: r[6] for r in by_el.get(el, [])}
    for j, smp in enumerate(samples):
        want = mine.get(smp)
        if want is None:
            check(not wv[j].any(), "oe electrode %d spike %d without a waveform: zeros" % (el, smp))
        else:
            got_oe += 1
            check(np.array_equal(wv[j, 0], want), "oe electrode %d spike %d waveform" % (el, smp))
    check(ob["spikes"][el]["pre_peak_samples"] == 25 and ob["spikes"][el]["post_peak_samples"] == 50, "oebin window")
check(got_oe == n, "every waveform in the Open Ephys folders: %d of %d" % (got_oe, n))
check(len(ids) == len(by_el), "object_ids distinct: %d of %d" % (len(ids), len(by_el)))
if failed:
    sys.exit(1)
print("ok: %d waveforms of %d spikes, live (and none on the default topics), in npy and in %d SpikeEventSeries"
      % (n, n_spikes, len(by_el)))
PYEOF
