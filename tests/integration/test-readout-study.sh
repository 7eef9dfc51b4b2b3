#!/bin/bash
# tools/readout-study.py on two small recorded twin runs: the comparison
# table has a row per layer x classifier, the efficiency study's fits learn
# from exactly floor(k f) labels, its JSON matches mead-readout run by hand,
# and the plot is well-formed SVG with one marker per fraction and series;
# tools/mnist-analysis.py reads today's export and its culture-rule test
# accuracy is the readout's.
set -u
mead=$1 readout=$2 src=$3 export=$4
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for s in 1 2; do
  "$mead" -c "$src/config/twin-mnist-bio.yaml" -o driver.seed=$s -o protocol.seed=$s \
    -o protocol.mnist.train_size=60 -o protocol.mnist.validation_size=30 -o protocol.mnist.test_size=30 \
    -o streams.wait_subscribers=0 -o streams.pub=ipc://$tmp/pub -o streams.control=ipc://$tmp/ctl \
    -o recording.enabled=true -o recording.path=$tmp/r$s.mrec >/dev/null 2>&1 || fail "recording seed $s"
done
export MEAD_READOUT=$readout
study=$src/tools/readout-study.py
out=$(/usr/bin/python3 "$study" compare $tmp/r1.mrec $tmp/r2.mrec --layers hpca,none --classifiers lms,hebbian \
	--json $tmp/cmp.json 2>/dev/null) || fail "compare: $out"
[ "$(echo "$out" | grep -c '^| \(hpca\|none\) | \(lms\|hebbian\) |')" = 4 ] || fail "compare table: $out"
/usr/bin/python3 "$study" efficiency $tmp/r1.mrec $tmp/r2.mrec --fractions 0.1,0.5,1 \
	--json $tmp/eff.json --svg $tmp/eff.svg >/dev/null 2>&1 || fail "efficiency"
/usr/bin/python3 "$study" plot $tmp/eff.json --svg $tmp/again.svg || fail "plot"
cmp -s $tmp/eff.svg $tmp/again.svg || fail "plot from the study's JSON differs from the study's own"
"$readout" -r $tmp/r2.mrec -p none --json --seed 2 --label-fraction 0.5 2>/dev/null | tail -n 1 > $tmp/hand.json
/usr/bin/python3 "$study" efficiency $tmp/r1.mrec --fractions 0 >/dev/null 2>&1 && fail "fraction 0 accepted"
/usr/bin/python3 - $tmp <<'PY' || exit 1
import json, sys, xml.etree.ElementTree as ET
d = sys.argv[1]
e = json.load(open(d + "/eff.json"))
hand = json.load(open(d + "/hand.json"))
assert e["fractions"] == [0.1, 0.5, 1.0], e
# the fit learns from the best pass (30) and the readout pass (60): 90 trials
assert e["labelled_trials"] == [9, 45, 90], e["labelled_trials"]
assert e["readout"][1][1] == hand["readout_accuracy"] and e["pixels"][1][1] == hand["pixel_baseline"], (e, hand)
c = json.load(open(d + "/cmp.json"))
assert len(c["rows"]) == 4 and all(len(r["readout"]) == 2 for r in c["rows"]), c
svg = ET.parse(d + "/eff.svg").getroot()
circles = svg.findall(".//{http://www.w3.org/2000/svg}circle")
assert len(circles) == 2 * 3, len(circles)
print("readout-study ok:", e["readout"], e["pixels"])
PY
# the culture rule from the exported recording, as mnist-analysis scores it
"$export" $tmp/r2.mrec --to npy -o $tmp/npy >/dev/null 2>&1 || fail "export"
blocks=$(/usr/bin/python3 "$src/tools/mnist-analysis.py" blocks --readout-pass $tmp/npy 2>&1) || fail "mnist-analysis blocks: $blocks"
want=$(/usr/bin/python3 -c 'import json,sys; print("%.4f" % json.load(open(sys.argv[1]))["accuracy"])' $tmp/hand.json)
echo "$blocks" | grep -q "test $want (30 trials)" || fail "mnist-analysis blocks: '$blocks', readout's culture accuracy $want"
echo ok
