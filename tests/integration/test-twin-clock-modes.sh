#!/bin/bash
# The twin behind the real loop ticks the same in both clock modes: a second
# of the live configuration (random patterned stimulation, seeded) on the
# virtual clock and on the real-time clock, recorded, exported, and compared
# spike for spike and pulse for pulse.
set -u
mead=$1 export_tool=$2 src=$3
/usr/bin/python3 -c 'import numpy' 2>/dev/null || { echo "python3-numpy missing: skip"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

for clock in virtual realtime; do
  "$mead" -c "$src/config/twin-live.yaml" -o loop.clock=$clock -o loop.duration_s=1.5 -o loop.priority=0 \
    -o streams.pub=ipc://$tmp/pub-$clock -o streams.control=ipc://$tmp/ctl-$clock \
    -o recording.path=$tmp/$clock.mrec 2> "$tmp/$clock.log" || fail "$clock run: $(cat "$tmp/$clock.log")"
  "$export_tool" "$tmp/$clock.mrec" --to npy -o "$tmp/$clock" > /dev/null || fail "export of the $clock run"
done
/usr/bin/python3 - "$tmp" <<'PY' || exit 1
import sys, numpy as np
d = sys.argv[1]
for name in ("spikes", "stim"):
    a = np.load(f"{d}/virtual/{name}.npy")
    b = np.load(f"{d}/realtime/{name}.npy")
    if len(a) == 0:
        print(f"FAIL: no {name} recorded"); sys.exit(1)
    if a.shape != b.shape or not all(np.array_equal(a[f], b[f]) for f in a.dtype.names):
        print(f"FAIL: {name} differ: {a.shape} vs {b.shape}"); sys.exit(1)
    print(f"{name}: {len(a)} records identical in both clock modes")
PY
echo ok
