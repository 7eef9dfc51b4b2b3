#!/bin/bash
# mead-experiment mnist end to end on a small split: the daemon and
# mead-readout as processes, the --json summary valid JSON, the seeds the ones
# asked for (--first-seed), and the 10-class run (no culture rule) reported as
# null rather than a bare nan.
set -u
exp=$1 src=$2
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
