#!/bin/bash
# mead-experiment mnist end to end on a small split: the daemon and
# mead-readout as processes, the --json summary valid JSON, the seeds the ones
# asked for (--first-seed), and the 10-class run (no culture rule) reported as
# null rather than a bare nan.
set -u
exp=$1 src=$2  # $3: the daemon
fail() { echo "FAIL: $*"; exit 1; }
small="-o protocol.mnist.train_size=40 -o protocol.mnist.validation_size=30 -o protocol.mnist.test_size=20"

out=$("$exp" mnist -c "$src/config/twin-mnist-bio.yaml" $small -o protocol.mnist.eval_screen=10 \
	--seeds 2 --first-seed 3 --json --timeout 60) || fail "0/1 run: $out"
/usr/bin/python3 - "$out" <<'PY' || exit 1
import json, sys
j = json.loads(sys.argv[1])
assert [s["seed"] for s in j["per_seed"]] == [3, 4], j["per_seed"]
assert j["n"] == 20 and j["seeds"] == 2 and j["seeds_failed"] == 0, j
for s in j["per_seed"]:
    for k in ("accuracy", "readout_accuracy", "pixel_baseline"):
        assert 0.0 <= s[k] <= 1.0, (k, s)
print("0/1:", j["accuracy"], j["readout_accuracy"], j["pixel_baseline"])
PY

out=$("$exp" mnist -c "$src/config/twin-mnist-10class.yaml" -o protocol.mnist.train_size=50 \
	-o protocol.mnist.test_size=20 --json --timeout 60) || fail "10-class run: $out"
/usr/bin/python3 - "$out" <<'PY' || exit 1
import json, sys
j = json.loads(sys.argv[1])
assert j["accuracy"] is None and j["accuracy_sd"] is None, j
assert j["per_seed"][0]["accuracy"] is None and j["per_seed"][0]["seed"] == 1, j
assert 0.0 <= j["readout_accuracy"] <= 1.0 and j["n"] == 20, j
print("10 classes:", j["readout_accuracy"], j["pixel_baseline"])
PY

# The reference protocol's configuration: whole validation passes every 20
# trials here (50 in the file), no screen, no readout pass.  The best pass
# mead-experiment reports from the readout's blocks, and the test accuracy,
# must be the protocol's own (the daemon's final protocol line, same seed).
ref=(-o protocol.mnist.train_size=60 -o protocol.mnist.validation_size=30 -o protocol.mnist.test_size=20
     -o protocol.mnist.eval_every=20)
out=$("$exp" mnist -c "$src/config/twin-mnist-ref-tsk.yaml" "${ref[@]}" --json --timeout 60) \
	|| fail "reference-protocol run: $out"
mead=$3
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
proto=$("$mead" -c "$src/config/twin-mnist-ref-tsk.yaml" "${ref[@]}" -o streams.wait_subscribers=0 \
	-o streams.pub=ipc://$tmp/pub -o streams.control=ipc://$tmp/ctl 2>&1 \
	| sed -n 's/^mead: protocol: //p' | tail -n 1)
/usr/bin/python3 - "$out" "$proto" <<'PY' || exit 1
import json, sys
j, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert p["state"] == "finished" and p["validation"]["evaluations"] == 3, p
assert p["split"] == {"train": 60, "validation": 30, "test": 20, "screen": 0}, p
s = j["per_seed"][0]
assert abs(s["best_validation"] - p["validation"]["best"]) < 5e-5, (s, p)
assert abs(s["accuracy"] - p["test"]["accuracy"]) < 5e-5, (s, p)
print("reference protocol: best validation", s["best_validation"], "test", s["accuracy"])
PY

# The design the search found runs the same protocol on an evenly plated
# culture: four neurons over every electrode, 75 ms a digit.
drv=$("$mead" -c "$src/config/twin-mnist-ref-design.yaml" "${ref[@]}" -o streams.wait_subscribers=0 \
	-o streams.pub=ipc://$tmp/pub -o streams.control=ipc://$tmp/ctl 2>&1 | tee $tmp/design.log \
	| sed -n 's/^mead: driver: //p' | tail -n 1)
/usr/bin/python3 - "$drv" "$tmp/design.log" <<'PY' || exit 1
import json, re, sys
d = json.loads(sys.argv[1])
assert d["preset"] == "tsk-240" and d["placement"] == "even", d
assert d["neurons_per_electrode"] == [4] * 60, d["neurons_per_electrode"]
log = open(sys.argv[2]).read()
p = json.loads(re.findall(r"^mead: protocol: (.*)$", log, re.M)[-1])
assert p["state"] == "finished" and 0.0 <= p["test"]["accuracy"] <= 1.0, p
# 20 test digits at 75 ms, 60 training, 3 passes of 30: 170 trials of 75 ticks
assert d["steps"] == 170 * 75, d["steps"]
print("design: test", p["test"]["accuracy"])
PY
echo ok
