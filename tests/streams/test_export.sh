#!/bin/sh
# mead-export writes NumPy-readable files that match the recording, and
# reports a torn tail in its sidecar.
#   test_export.sh STREAM_HARNESS MEAD_EXPORT
set -eu
HARNESS=$1 EXPORT=$2
PY=/usr/bin/python3
$PY -c 'import numpy' 2>/dev/null || { echo "python3-numpy missing: skip"; exit 77; }
dir=$(mktemp -d /tmp/mead-export-test.XXXXXX)
trap 'rm -rf "$dir"' EXIT

# Virtual clock, 2000 ticks of 25 samples, raw on.
"$HARNESS" --virtual --raw --ticks 2000 --record "$dir/r.meadrec" >"$dir/harness.out"
"$EXPORT" "$dir/r.meadrec" --to npy -o "$dir/out"
size=$(stat -c %s "$dir/r.meadrec")
head -c $((size - 7)) "$dir/r.meadrec" >"$dir/torn.meadrec"
"$EXPORT" "$dir/torn.meadrec" --to npy -o "$dir/torn"
# Unknown formats and missing files are errors.
if "$EXPORT" "$dir/r.meadrec" --to mat -o "$dir/x" 2>/dev/null; then echo "accepted --to mat"; exit 1; fi
if "$EXPORT" "$dir/missing" --to npy -o "$dir/x" 2>/dev/null; then echo "accepted a missing file"; exit 1; fi

$PY - "$dir" <<'PYEOF'
import json, sys
import numpy as np
d = sys.argv[1]
final = json.loads(open(d + "/harness.out").read().splitlines()[-1])
side = json.load(open(d + "/out/recording.json"))
s = np.load(d + "/out/spikes.npy")
st = np.load(d + "/out/stim.npy")
ev = np.load(d + "/out/events.npy")
raw = np.load(d + "/out/raw.npy")
rs = np.load(d + "/out/raw_sample.npy")
def check(c, what):
    if not c:
        print("FAIL:", what); sys.exit(1)
check(s.dtype.names == ("sample", "electrode", "flags", "amplitude_uv"), "spike dtype")
check(len(s) == side["counts"]["spikes"] == final["loop"]["spikes"], "spike count")
check(np.all(np.diff(s["sample"].astype(np.int64)) >= 0), "spike samples sorted")
check(np.all(s["electrode"] < 60) and not np.any(s["electrode"] == 14), "electrodes in range, excluded never")
check(np.all(s["amplitude_uv"] < 0), "amplitudes")
check(len(st) == 40 and np.all(st["phase_us"] == 200) and np.all(st["interphase_us"] == 50), "stim records")
check(ev["type"][0] == 1 and ev["value"][0] == 25000 and ev["type"][-1] == 2, "run_start ... run_end events")
check(raw.shape == (2000 * 25, 60) and raw.dtype == np.int16, "raw shape")
check(np.array_equal(rs, np.arange(2000 * 25, dtype=np.uint64)), "raw sample index contiguous")
check(side["sample_rate_hz"] == 25000 and side["electrode_count"] == 60, "rate/layout in sidecar")
check(side["header"]["layout"]["excluded"] == [14], "layout in sidecar")
check(sum(side["losses"]["seq_gaps"].values()) == 0 and not side["losses"]["torn_tail"], "no loss")
check(side["counts"]["messages"]["spikes"] == final["recording"]["recorded"]["spikes"], "messages == recorded")
torn = json.load(open(d + "/torn/recording.json"))
check(torn["losses"]["torn_tail"] is True and torn["losses"]["torn_bytes"] > 0, "torn tail reported")
check(torn["counts"]["messages"]["status"] == side["counts"]["messages"]["status"] - 1, "only the last record lost")
print("ok: %d spikes, %d raw frames exported and read back with numpy" % (len(s), len(raw)))
PYEOF
