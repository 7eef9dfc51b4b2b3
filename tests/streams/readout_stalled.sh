#!/bin/sh
# The Hebbian readout beside a stalled subscriber, in a real-time run: the
# MNIST 0/1 experiment on the twin (config/twin-mnist-bio.yaml at the
# real-time clock) with mead-readout subscribed, once alone and once with a
# subscriber that connects and stops reading.  The readout must lose
# nothing and score the same as without it.
#   readout_stalled.sh MEAD MEACTL MEAD_READOUT SOURCE_ROOT
# READOUT_STALLED_SIZES="train validation test eval_every" sets the split
# (default "40 20 20 20": about 15 s a run); READOUT_STALLED_MODES picks the
# runs ("alone stalled"); READOUT_STALLED_MEAD_ARGS adds daemon arguments
# (e.g. "-o loop.priority=80").  Prints one line per run:
#   mode accuracy readout_accuracy pixel_baseline n lost_messages lossy_trials stalled_dropped wall_s
set -eu
MEAD=$1 MEACTL=$2 READOUT=$3 SRC=$4
PY=/usr/bin/python3
$PY -c 'import zmq' 2>/dev/null || { echo "python3-zmq missing: skip"; exit 77; }
set -- ${READOUT_STALLED_SIZES:-40 20 20 20}
TRAIN=$1 VAL=$2 TEST=$3 EVERY=$4
MODES=${READOUT_STALLED_MODES:-alone stalled}

dir=$(mktemp -d /tmp/mead-readout-stalled.XXXXXX)
pids=
cleanup() {
	for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
	rm -rf "$dir"
}
trap cleanup EXIT

run() {
	mode=$1 d=$dir/$1
	mkdir -p "$d"
	pub=ipc://$d/pub ctl=ipc://$d/ctl
	subs=1
	t0=$(date +%s.%N)
	if [ "$mode" = stalled ]; then
		subs=2
		$PY "$(dirname "$0")/stalled_subscriber.py" "$pub" >"$d/stalled.out" 2>&1 &
		pids="$pids $!"
	fi
	"$READOUT" -c "$pub" -p none --json --seed 1 --classes 2 --idle-timeout 10 \
		--images "$SRC/data/mnist/mnist8k-images-idx3-ubyte.gz" --pixel-grid 6 >"$d/readout.json" 2>"$d/readout.err" &
	rpid=$!
	pids="$pids $rpid"
	"$MEAD" -c "$SRC/config/twin-mnist-bio.yaml" -o loop.clock=realtime \
		-o "streams.pub=$pub" -o "streams.control=$ctl" -o streams.wait_subscribers=$subs -o streams.sndhwm=1000 \
		-o protocol.mnist.train_size=$TRAIN -o protocol.mnist.validation_size=$VAL \
		-o protocol.mnist.test_size=$TEST -o protocol.mnist.eval_every=$EVERY -o protocol.mnist.eval_screen=10 \
		${READOUT_STALLED_MEAD_ARGS:-} 2>"$d/mead.log" &
	mpid=$!
	pids="$pids $mpid"
	# the daemon ends itself when the protocol is done; status until then
	while kill -0 "$mpid" 2>/dev/null; do
		"$MEACTL" -e "$ctl" -t 500 --json status >"$d/status.new" 2>/dev/null && mv "$d/status.new" "$d/status.json"
		sleep 1
	done
	set +e
	wait "$mpid"
	mrc=$?
	wait "$rpid"
	rrc=$?
	set -e
	[ $mrc -eq 0 ] || { echo "$mode: mead exited with $mrc"; tail -20 "$d/mead.log"; exit 1; }
	[ $rrc -eq 0 ] || { echo "$mode: mead-readout exited with $rrc"; cat "$d/readout.err"; exit 1; }
	t1=$(date +%s.%N)
	$PY - "$d" "$mode" "$t0" "$t1" "$TEST" <<'PYEOF'
import json, sys
d, mode, t0, t1, test = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
r = json.loads(open(d + "/readout.json").read().strip().splitlines()[-1])
st = json.load(open(d + "/status.json"))
lost = sum(r["lost_messages"].values())
clients = st["streams"].get("clients")
if clients is None:   # a daemon without per-subscriber counters: what its socket refused
    stalled = sum(st["streams"]["hwm_dropped"].values())
else:
    stalled = max((sum(c["dropped"].values()) for c in clients), default=0)
loop = st["loop"]
f = lambda v: "nan" if v is None else "%.4f" % v
print("%-8s accuracy=%s readout_accuracy=%s pixel_baseline=%s n=%d lost_messages=%d lossy_trials=%d "
      "stalled_dropped=%d overruns=%d stim_refused=%d wall=%.1fs"
      % (mode, f(r["accuracy"]), f(r["readout_accuracy"]), f(r["pixel_baseline"]), r["n"], lost,
         r["lossy_trials"], stalled, loop["overruns"], loop["stim_rejected"], t1 - t0))
json.dump({"mode": mode, "readout": r, "stalled_dropped": stalled, "overruns": loop["overruns"],
           "stim_rejected": loop["stim_rejected"]}, open(d + "/summary.json", "w"))
ok = lost == 0 and r["lossy_trials"] == 0 and r["n"] == test
if mode == "stalled":
    ok = ok and stalled > 0
sys.exit(0 if ok else 1)
PYEOF
	for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
	pids=
}

rc=0
for m in $MODES; do
	run "$m" || rc=1
done
[ $rc -eq 0 ] || { echo "FAIL: the readout lost messages or trials (see the lines above)"; exit 1; }
case "$MODES" in
*alone*stalled*|*stalled*alone*)
	# The twin is deterministic given its seeds: when neither run had to
	# refuse a pulse (a machine too busy for the real-time clock), both
	# runs saw the same culture and the readout must score the same.
	$PY - "$dir/alone/summary.json" "$dir/stalled/summary.json" <<'PYEOF' || rc=1
import json, sys
a, s = (json.load(open(p)) for p in sys.argv[1:3])
if a["stim_rejected"] or s["stim_rejected"]:
    print("note: pulses were refused (the machine could not keep the real-time clock): the runs differ")
    sys.exit(0)
for k in ("accuracy", "readout_accuracy", "pixel_baseline"):
    if a["readout"][k] != s["readout"][k]:
        print("FAIL: %s %s alone, %s beside a stalled subscriber" % (k, a["readout"][k], s["readout"][k]))
        sys.exit(1)
print("same figures alone and beside a stalled subscriber")
PYEOF
	;;
esac
exit $rc
