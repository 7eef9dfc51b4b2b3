#!/bin/sh
# A stalled subscriber costs only itself, on the real daemon: the twin at
# the real-time clock (config/twin-live.yaml).  One subscriber connects and
# stops reading (a paused notebook); once status says its queue is losing,
# a healthy subscriber (tools/mead_subscriber.py) listens for 5 s.
#   stalled_live.sh MEAD MEACTL CONFIG SUBSCRIBER_PY
# Checks: the healthy one sees every seq number of every topic from the one
# it joined at; status lists both, the stalled one losing with its drops
# counted and the healthy one with none; hwm_dropped is the stalled one's
# count; nothing was dropped in the loop's ring; the recording has every
# message published.
set -eu
MEAD=$1 MEACTL=$2 CONFIG=$3 SUB=$4
PY=/usr/bin/python3
$PY -c 'import zmq, numpy' 2>/dev/null || { echo "python3-zmq/numpy missing: skip"; exit 77; }
. "$(dirname "$0")/daemon.sh"

dir=$(mktemp -d /tmp/mead-stalled-live.XXXXXX)
mpid= stpid=
cleanup() {
	[ -n "$mpid" ] && kill -9 "$mpid" 2>/dev/null
	[ -n "$stpid" ] && kill "$stpid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
base=$((20000 + ($$ + 7919) % 20000))
PUB=tcp://127.0.0.1:$base
CTL=tcp://127.0.0.1:$((base + 1))

$PY "$(dirname "$0")/stalled_subscriber.py" "$PUB" 120 >"$dir/stalled.out" 2>&1 &
stpid=$!

mead_start -c "$CONFIG" -o "streams.pub=$PUB" -o "streams.control=$CTL" -o streams.wait_subscribers=1 \
	-o streams.sndhwm=1000 -o "recording.path=$dir/live.mrec"

# Until the stalled one's queue refuses messages.
i=0
until "$MEACTL" -e "$CTL" --json status | $PY -c '
import json, sys
c = json.load(sys.stdin)["streams"]["clients"]
sys.exit(0 if c and c[0]["losing"] else 1)'; do
	i=$((i + 1))
	[ $i -gt 60 ] && { echo "the stalled subscriber never lost a message"; "$MEACTL" -e "$CTL" --json status; exit 1; }
	sleep 0.5
done

$PY "$SUB" --endpoint "$PUB" --seconds 5 --json >"$dir/healthy.json"
"$MEACTL" -e "$CTL" --json status >"$dir/status.json"
"$MEACTL" -e "$CTL" status >"$dir/status.txt"
mead_shutdown
grep -q "lost" "$dir/status.txt" || { echo "meactl status does not name the losing subscriber:"; cat "$dir/status.txt"; exit 1; }

$PY - "$dir" <<'PYEOF'
import json, sys
d = sys.argv[1]
h = json.load(open(d + "/healthy.json"))
st = json.load(open(d + "/status.json"))
def check(c, what):
    if not c:
        print("FAIL:", what)
        print("healthy:", json.dumps(h))
        print("status.streams:", json.dumps(st["streams"]))
        sys.exit(1)
s = st["streams"]
check(sum(s["ring_dropped"].values()) == 0, "no message dropped in the loop's ring %s" % s["ring_dropped"])
check(h["decode_errors"] == 0 and h["seq_violations"] == 0, "the healthy subscriber decodes everything")
check(h["messages"]["spikes"] > 1000 and h["messages"]["status"] >= 3, "the healthy subscriber received the streams")
check(sum(h["gaps"].values()) == 0, "the healthy subscriber saw every seq number: gaps %s" % h["gaps"])
cl = {c["id"]: c for c in s["clients"]}
check(len(cl) == 1, "one client left at the end (the stalled one): %s" % list(cl))
stalled = cl[min(cl)]
check(stalled["losing"] and stalled["dropped"]["spikes"] > 0, "the stalled one is losing")
check(stalled["peer"].startswith("127.0.0.1:"), "the stalled one's address is shown")
check(sum(s["hwm_dropped"].values()) >= sum(stalled["dropped"].values()), "hwm_dropped counts its drops")
last = h["last_status_streams"]
healthy_entries = [c for c in last["clients"] if c["id"] != stalled["id"]]
check(len(healthy_entries) == 1 and sum(healthy_entries[0]["dropped"].values()) == 0,
      "the healthy one lost nothing by its own counter: %s" % healthy_entries)
check(st["recording"]["state"] == "recording" or st["recording"]["state"] == "ready", "recording on")
for t in ("spikes", "stim", "events"):
    check(st["recording"]["lost"][t] == 0, "the recording lost no %s" % t)
print("ok: healthy subscriber %d spikes messages, no gap; stalled subscriber %s lost %d messages"
      % (h["messages"]["spikes"], stalled["peer"], sum(stalled["dropped"].values())))
PYEOF
