#!/bin/bash
# mead-experiment sweep on this machine, on tiny runs: the -p syntax and the
# refusals (bad lists and ranges, keys the daemon does not know, a changed
# plan in an existing directory), the plan's expansion, the rows in
# results.csv/json, the landscape SVG, the reproduce command (run, and its
# means compared with the sweep's), and resume: rows deleted or cut short
# are rerun and no other, a sweep stopped mid-run goes on where it stopped.
set -u
exp=$1 src=$2
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d /tmp/mead-sweep-test-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cfg=$src/config/twin-mnist-tsk.yaml
small=(-o protocol.mnist.train_size=20 -o protocol.mnist.test_size=20 -o protocol.mnist.validation_size=10)

# refusals: each names what was wrong, and nothing is created
refuse() {   # expected-status message-fragment -p-argument
	local want=$1 frag=$2
	shift 2
	out=$("$exp" sweep -c "$cfg" -d "$tmp/bad" "${small[@]}" "$@" 2>&1)
	rc=$?
	[ "$rc" = "$want" ] || fail "$*: status $rc, expected $want: $out"
	echo "$out" | grep -qF -- "$frag" || fail "$*: the message does not say '$frag': $out"
	[ -e "$tmp/bad" ] && fail "$*: a refused sweep created its directory"
	return 0
}
refuse 1 "expected KEY=v1,v2" -p driver.options.exc_strength
refuse 1 "an empty value" -p driver.options.exc_strength=1,,2
refuse 1 "listed twice" -p driver.options.exc_strength=1,2,1
refuse 1 "lo:hi:step" -p driver.options.exc_strength=3:1:1
refuse 1 "lo:hi:step" -p driver.options.exc_strength=1:3
refuse 1 "lo:hi:step" -p driver.options.exc_strength=1:3:0
refuse 1 "lo:hi:step" -p driver.options.exc_strength=a:3:1
refuse 1 "not a dotted configuration key" -p 'driver options=1'
refuse 1 "swept twice" -p driver.options.exc_strength=1 -p driver.options.exc_strength=2
refuse 1 "--seeds" -p driver.seed=1,2
refuse 1 "both swept" -p protocol.mnist.train_size=10,20
refuse 2 "driver.options.bogus: unknown option" -p driver.options.bogus=1,2
refuse 2 "protocol.mnist.bogus: unknown key" -p protocol.mnist.bogus=1
refuse 2 "the value 0 is refused" -p protocol.mnist.presentation_ms=100,0
out=$("$exp" sweep -c "$cfg" -p driver.options.exc_strength=1 2>&1)
[ $? = 1 ] && echo "$out" | grep -q 'needs -c CONFIG and -d DIR' || fail "no -d: $out"

# 2 x 2 points x 2 seeds, ranges and lists
d=$tmp/s1
args=(sweep -c "$cfg" -d "$d" "${small[@]}" -p driver.options.exc_strength=2:4.5:2 -p protocol.mnist.presentation_ms=50,100
	--seeds 2 --first-seed 3 -j 2)
"$exp" "${args[@]}" > "$tmp/out1" 2> "$tmp/err1" || fail "sweep: $(cat "$tmp/out1" "$tmp/err1")"
cat "$tmp/out1"
grep -q '^sweep: 8 of 8 tasks to run (0 done before), 2 at a time$' "$tmp/err1" || fail "progress: $(cat "$tmp/err1")"
grep -q '^sweep: 8/8 done, 0 running, 0 failed' "$tmp/err1" || fail "progress: $(cat "$tmp/err1")"
grep -q '^sweep: 4 points x 2 seeds = 8 tasks: 8 ok, 0 failed, 0 not run$' "$tmp/out1" || fail "summary"
grep -q '^  reproduce: mead-experiment mnist -c ' "$tmp/out1" || fail "no reproduce line"
/usr/bin/python3 - "$d" "$cfg" <<'PY' || fail "plan/results"
import csv, json, os, sys
import xml.etree.ElementTree as ET
d, cfg = sys.argv[1], os.path.realpath(sys.argv[2])
plan = json.load(open(f"{d}/plan.json"))
assert plan["config"] == cfg, plan
assert plan["param0"] == {"key": "driver.options.exc_strength", "values": ["2", "4"]}, plan
assert plan["param1"] == {"key": "protocol.mnist.presentation_ms", "values": ["50", "100"]}, plan
assert (plan["first_seed"], plan["seeds"], plan["points"], plan["tasks"]) == (3, 2, 4, 8), plan
rows = list(csv.DictReader(open(f"{d}/results.csv")))
assert list(rows[0].keys()) == ["task", "point", "driver.options.exc_strength", "protocol.mnist.presentation_ms",
                                "seed", "accuracy", "readout_accuracy", "pixel_baseline", "best_validation", "n",
                                "wall_seconds",
                                "status"], rows[0].keys()
want = [(t, t // 2, ["2", "2", "4", "4"][t // 2], ["50", "100"][t // 2 % 2], 3 + t % 2) for t in range(8)]
got = [(int(r["task"]), int(r["point"]), r["driver.options.exc_strength"], r["protocol.mnist.presentation_ms"],
        int(r["seed"])) for r in rows]
assert got == want, got
for r in rows:
    assert r["status"] == "ok" and r["n"] == "20", r
    for k in ("accuracy", "readout_accuracy", "pixel_baseline"):
        assert 0 <= float(r[k]) <= 1, r
    assert float(r["wall_seconds"]) > 0, r
    # the culture rule's best whole validation pass of the run (there is one: eval_every)
    assert r["best_validation"] == "" or 0 <= float(r["best_validation"]) <= 1, r
j = json.load(open(f"{d}/results.json"))
assert len(j["rows"]) == 8 and len(j["points"]) == 4 and j["seeds"] == [3, 4], j
for r, c in zip(j["rows"], rows):
    assert abs(r["accuracy"] - float(c["accuracy"])) < 1e-5 and r["seed"] == int(c["seed"]), (r, c)
# the per-point statistics are the rows' own
for p in j["points"]:
    acc = [float(r["accuracy"]) for r in rows if int(r["point"]) == p["point"]]
    m = sum(acc) / 2
    assert abs(p["accuracy"]["mean"] - m) < 1e-6 and p["accuracy"]["min"] == min(acc), (p, acc)
    assert abs(p["accuracy"]["sd"] - abs(acc[0] - acc[1]) / 2 ** 0.5) < 1e-6, (p, acc)
best = j["best"]
means = [p["accuracy"]["mean"] for p in j["points"]]
assert best["by"] == "accuracy" and best["accuracy"]["mean"] == max(means), (best, means)
assert best["command"].startswith("mead-experiment mnist -c ") and best["command"].endswith("--seeds 2 --first-seed 3")
open(f"{d}/best-command", "w").write(best["command"].replace("mead-experiment ", "", 1))
open(f"{d}/best-means", "w").write(f'{best["accuracy"]["mean"]} {best["readout_accuracy"]["mean"]}')
# the picture: well-formed SVG naming both axes and marking the best
svg = ET.parse(f"{d}/landscape.svg").getroot()
assert svg.tag == "{http://www.w3.org/2000/svg}svg", svg.tag
text = " ".join(t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text"))
for w in ("driver.options.exc_strength", "protocol.mnist.presentation_ms", "best point"):
    assert w in text, (w, text)
PY
cat "$d/landscape.svg" > /dev/null

# the reproduce command gives the best point's figures
read -r -a cmd < "$d/best-command"
out=$("$exp" "${cmd[@]}" --json) || fail "reproduce: ${cmd[*]}: $out"
/usr/bin/python3 - "$out" "$(cat "$d/best-means")" <<'PY' || fail "the reproduce command gives other figures"
import json, sys
j = json.loads(sys.argv[1])
a, r = map(float, sys.argv[2].split())
assert abs(j["accuracy"] - a) < 1e-4 and abs(j["readout_accuracy"] - r) < 1e-4, (j, a, r)
print("reproduced:", j["accuracy"], j["readout_accuracy"])
PY

# --gather alone gives the same summary
"$exp" sweep --gather "$d" > "$tmp/out2" || fail "gather"
diff "$tmp/out1" "$tmp/out2" || fail "--gather differs from the run's summary"

# a changed plan is refused and the directory left as it was
out=$("$exp" sweep -c "$cfg" -d "$d" "${small[@]}" -p driver.options.exc_strength=2,4 -p protocol.mnist.presentation_ms=50,200 \
	--seeds 2 --first-seed 3 2>&1)
[ $? = 2 ] || fail "a changed plan: $out"
echo "$out" | grep -q 'holds another sweep' || fail "changed plan message: $out"
echo "$out" | grep -qF '"values":["50","200"]' || fail "the message does not show the difference: $out"

# resume: a deleted row and a row cut short are rerun, no other
stamp() { for t in 0 1 2 3 4 5 6 7; do stat -c "$t %Y.%y" "$d/rows/task-$t.json" 2>/dev/null; done; }
rm "$d/rows/task-5.json"
head -c 20 "$d/rows/task-6.json" > "$d/rows/task-6.json.cut" && mv "$d/rows/task-6.json.cut" "$d/rows/task-6.json"
before=$(stamp | grep -v '^[56] ')
sleep 1.1
"$exp" "${args[@]}" > "$tmp/out3" 2> "$tmp/err3" || fail "resume: $(cat "$tmp/err3")"
grep -q '^sweep: 2 of 8 tasks to run (6 done before)' "$tmp/err3" || fail "resume ran: $(cat "$tmp/err3")"
[ "$(stamp | grep -v '^[56] ')" = "$before" ] || fail "resume rewrote finished rows"
diff "$tmp/out1" "$tmp/out3" || fail "the resumed sweep's summary differs"
out=$("$exp" "${args[@]}" 2>&1) || fail "complete rerun"
echo "$out" | grep -q 'every task of .* has its row' || fail "complete rerun ran tasks: $out"

# a sweep stopped mid-run keeps whole rows and goes on where it stopped
d2=$tmp/s2
args2=(sweep -c "$cfg" -d "$d2" "${small[@]}" -p driver.options.sigma_i_mm=0.1:0.45:0.05 -j 1)
"$exp" "${args2[@]}" > /dev/null 2> "$tmp/err4" &
pid=$!
for _ in $(seq 300); do [ -e "$d2/rows/task-0.json" ] && break; sleep 0.1; done
out=$("$exp" "${args2[@]}" 2>&1)
[ $? = 1 ] && echo "$out" | grep -q 'another sweep command is running in this directory' \
	|| { kill "$pid"; fail "a second command in a running sweep's directory: $out"; }
kill -TERM "$pid"
wait "$pid"
rc=$?
[ "$rc" = 130 ] || fail "a stopped sweep: status $rc: $(cat "$tmp/err4")"
grep -q 'the same command resumes it' "$tmp/err4" || fail "stop message: $(cat "$tmp/err4")"
n=$(ls "$d2/rows/" | grep -c '\.json$')
[ "$n" -ge 1 ] && [ "$n" -lt 8 ] || fail "$n rows after the stop"
ls "$d2/rows/" | grep -q tmp && fail "a temp row was left: $(ls "$d2/rows")"
"$exp" "${args2[@]}" > "$tmp/out5" 2> "$tmp/err5" || fail "resume after stop: $(cat "$tmp/err5")"
grep -q "^sweep: $((8 - n)) of 8 tasks to run ($n done before)" "$tmp/err5" || fail "resume after stop: $(cat "$tmp/err5")"
grep -q '^sweep: 8 points x 1 seed = 8 tasks: 8 ok' "$tmp/out5" || fail "after stop: $(cat "$tmp/out5")"
/usr/bin/python3 - "$d2/landscape.svg" "$d2/plan.json" <<'PY' || fail "1-parameter SVG"
import json, sys
import xml.etree.ElementTree as ET
# a range in steps that binary fractions do not hold: the end included, no rounding noise
vals = json.load(open(sys.argv[2]))["param0"]["values"]
assert vals == ["0.1", "0.15", "0.2", "0.25", "0.3", "0.35", "0.4", "0.45"], vals
svg = ET.parse(sys.argv[1]).getroot()
text = " ".join(t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text"))
for w in ("driver.options.sigma_i_mm", "0.1", "0.45", "test accuracy", "best"):
    assert w in text, (w, text)
PY

# a task that fails is reported with its log, and rerun on resume
d3=$tmp/s3
out=$("$exp" sweep -c "$cfg" -d "$d3" "${small[@]}" -p driver.options.exc_strength=2,abc 2>&1)
[ $? = 3 ] || fail "a failing task: $out"
echo "$out" | grep -q "^failed: task 1 (point 1, seed 1): mead-experiment mnist ended with status [0-9]*; log $d3/logs/task-1.log" \
	|| fail "failure report: $out"
grep -q '^1,1,abc,1,,,,,,,failed$' "$d3/results.csv" || fail "failed row: $(cat "$d3/results.csv")"
out=$("$exp" sweep -c "$cfg" -d "$d3" "${small[@]}" -p driver.options.exc_strength=2,abc 2>&1)
echo "$out" | grep -q '1 of 2 tasks to run' || fail "the failed task is not rerun: $out"
# no culture rule (10 classes): the accuracy is empty, the best is by the readout
d4=$tmp/s4
"$exp" sweep -c "$src/config/twin-mnist-10class.yaml" -d "$d4" -o protocol.mnist.train_size=50 \
	-o protocol.mnist.test_size=20 -p driver.options.exc_strength=2 > "$tmp/out6" 2>&1 || fail "10 classes: $(cat "$tmp/out6")"
grep -q '^0,0,2,1,,0[.0-9]*,0[.0-9]*,,20,[.0-9]*,ok$' "$d4/results.csv" || fail "10-class row: $(cat "$d4/results.csv")"
/usr/bin/python3 - "$d4/results.json" <<'PY' || fail "10-class results.json"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["rows"][0]["accuracy"] is None and j["points"][0]["accuracy"]["mean"] is None, j
assert j["best"]["by"] == "readout_accuracy" and j["best"]["point"] == 0, j["best"]
PY
echo "sweep: all checks passed"
