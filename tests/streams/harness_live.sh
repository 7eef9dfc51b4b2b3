#!/bin/sh
# Streams end to end without a driver: stream-harness (ring, publisher,
# recorder, control, status fed by a synthetic loop at 1 ms ticks) + the
# Python subscriber + meactl + mead-export.
#   harness_live.sh STREAM_HARNESS MEACTL MEAD_EXPORT SUBSCRIBER_PY
set -eu
HARNESS=$1 MEACTL=$2 EXPORT=$3 SUB=$4
PY=/usr/bin/python3
$PY -c 'import zmq, numpy' 2>/dev/null || { echo "python3-zmq/numpy missing: skip"; exit 77; }

dir=$(mktemp -d /tmp/mead-harness-live.XXXXXX)
hpid=
cleanup() { [ -n "$hpid" ] && kill "$hpid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

# Ports: pick free ones through the harness itself ("*"), read back from its first line.
"$HARNESS" --seconds 3 --digital --wait-subscribers 1 --record "$dir/live.meadrec" >"$dir/harness.out" 2>"$dir/harness.err" &
hpid=$!
i=0
until grep -q '"pub"' "$dir/harness.out" 2>/dev/null; do
	i=$((i + 1)); [ $i -gt 100 ] && { echo "harness did not start"; cat "$dir/harness.err"; exit 1; }
	sleep 0.05
done
PUB=$($PY -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["pub"])' "$dir/harness.out")
CTL=$($PY -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["ctl"])' "$dir/harness.out")

# The subscriber outlives the run, so it sees every message from seq 0 to the end.
$PY "$SUB" --endpoint "$PUB" --seconds 5 --json >"$dir/sub.json" &
spid=$!
sleep 1.5
"$MEACTL" -e "$CTL" --json status >"$dir/status.json"
"$MEACTL" -e "$CTL" status >"$dir/status.txt"
"$MEACTL" -e "$CTL" --json stim --electrodes 3,17 --amplitude-ua -1 --phase-us 200 --interphase-us 50 --pulses 5 --rate-hz 20 >/dev/null
set +e
"$MEACTL" -e "$CTL" stim --electrodes 14 --amplitude-ua -1 --phase-us 200 --pulses 5 --rate-hz 20 2>"$dir/stim.err"
rc=$?
set -e
[ $rc -eq 1 ] || { echo "stim on an excluded electrode: exit $rc, want 1"; exit 1; }
grep -q excluded "$dir/stim.err"
wait "$spid"
wait "$hpid"
hpid=
"$EXPORT" "$dir/live.meadrec" --to npy -o "$dir/export" >/dev/null

$PY - "$dir" <<'PYEOF'
import json, sys
import numpy as np
d = sys.argv[1]
sub = json.load(open(d + "/sub.json"))
status = json.load(open(d + "/status.json"))
final = json.loads(open(d + "/harness.out").read().splitlines()[-1])
side = json.load(open(d + "/export/recording.json"))
def check(cond, what):
    if not cond:
        print("FAIL:", what)
        print("subscriber:", json.dumps(sub))
        sys.exit(1)
check(sub["decode_errors"] == 0, "every message decodes")
check(sum(sub["gaps"].values()) == 0, "no seq gaps")
check(sub["seq_violations"] == 0 and sub["sample_violations"] == 0, "seq/sample never go back")
check(sub["electrode_violations"] == 0, "electrodes in range")
check(sub["first_seq"].get("spikes") == 0, "wait_subscribers: the subscriber saw spikes seq 0")
check(status["ok"] is True and status["state"] == "running", "meactl status mid-run")
check(0 < status["streams"]["published"]["spikes"] <= status["streams"]["produced"]["spikes"], "status counters")
pub = final["streams"]["published"]
# Everything published reached the subscriber; the last status it got (the
# publisher's last word) and the final counters agree with what it counted.
for t in ("spikes", "stim", "events"):
    check(sub["messages"][t] == pub[t], "subscriber %s count %d == published %d" % (t, sub["messages"][t], pub[t]))
    check(sub["last_status_streams"]["published"][t] == pub[t], "last status topic counter for " + t)
    check(final["recording"]["recorded"][t] == pub[t], "recorded == published for " + t)
check(final["recording"]["recorded"]["status"] == pub["status"], "recorded == published for status")
for t in ("spikes", "stim", "events", "status"):
    check(sub["messages_at_last_status"][t] == sub["last_status_streams"]["published"][t],
          "messages received before the last status == its published counter for " + t)
check(final["recording"]["state"] == "stopped", "recording stopped cleanly")
spikes = np.load(d + "/export/spikes.npy")
check(len(spikes) == sub["spikes"], "export has every spike the subscriber saw")
# digital inputs: per line the events and the last level, as recorded
ev = np.load(d + "/export/events.npy")
dig = ev[ev["type"] == 19]
want = {str(l): {"events": int((dig["electrode"] == l).sum()), "level": int(dig[dig["electrode"] == l]["value"][-1])}
        for l in sorted(set(int(x) for x in dig["electrode"]))}
check(len(dig) > 3 and sub["digital_lines"] == want, "subscriber digital lines %s == recorded %s" % (sub["digital_lines"], want))
check(np.all(np.diff(spikes["sample"].astype(np.int64)) >= 0), "exported samples sorted")
check(side["losses"]["torn_tail"] is False and side["losses"]["corrupt_records"] == 0, "recording intact")
print("ok: %d spikes in %d messages, no loss; meactl, recording and export agree" % (sub["spikes"], sub["messages"]["spikes"]))
PYEOF
