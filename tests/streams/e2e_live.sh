#!/bin/sh
# End to end on the real daemon: mead (twin or null driver, real-time clock)
# + the Python subscriber for 5 s + meactl status.
#   e2e_live.sh MEAD MEACTL CONFIG [SUBSCRIBER_PY]
# Checks: every message decodes, no seq gap, sample never decreases,
# electrodes in range; the counters meactl reports are the ones the status
# topic carried (same fields, never smaller, and the subscriber's own counts
# equal the status it received last); shutdown through meactl ends mead
# with exit status 0.  Endpoints and the recording path are overridden so
# the test never touches the default ports or /tmp paths of a running rig.
# E2E_ALLOW_NO_SPIKES=1 accepts a driver that produces no spikes;
# E2E_MEAD_ARGS adds arguments, e.g. "-o loop.clock=realtime -o loop.duration_s=0".
set -eu
MEAD=$1 MEACTL=$2 CONFIG=$3
SUB=${4:-$(dirname "$0")/../../tools/mead_subscriber.py}
PY=/usr/bin/python3
$PY -c 'import zmq, numpy' 2>/dev/null || { echo "python3-zmq/numpy missing: skip"; exit 77; }
. "$(dirname "$0")/daemon.sh"

dir=$(mktemp -d /tmp/mead-e2e-live.XXXXXX)
mpid=
cleanup() { [ -n "$mpid" ] && kill -9 "$mpid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
base=$((20000 + $$ % 20000))
PUB=tcp://127.0.0.1:$base
CTL=tcp://127.0.0.1:$((base + 1))

# The subscriber connects first and the daemon holds its first message until
# it has subscribed, so the subscriber sees every topic from seq 0.
$PY "$SUB" --endpoint "$PUB" --seconds 5 --json >"$dir/sub.json" &
spid=$!
mead_start -c "$CONFIG" -o "streams.pub=$PUB" -o "streams.control=$CTL" -o streams.wait_subscribers=1 \
	-o "recording.path=$dir/live.mrec" ${E2E_MEAD_ARGS:-}
wait "$spid"
"$MEACTL" -e "$CTL" --json status >"$dir/status.json"
"$MEACTL" -e "$CTL" status >"$dir/status.txt"
mead_shutdown

$PY - "$dir" "${E2E_ALLOW_NO_SPIKES:-0}" <<'PYEOF'
import json, sys
d, allow_no_spikes = sys.argv[1], sys.argv[2] == "1"
sub = json.load(open(d + "/sub.json"))
st = json.load(open(d + "/status.json"))
def check(c, what):
    if not c:
        print("FAIL:", what)
        print("subscriber:", json.dumps(sub))
        print("meactl status:", json.dumps(st))
        sys.exit(1)
check(sub["decode_errors"] == 0, "every message decodes %s" % sub["decode_error_examples"])
check(sum(sub["gaps"].values()) == 0, "no seq gaps %s" % sub["gaps"])
check(sub["seq_violations"] == 0 and sub["sample_violations"] == 0, "seq and sample never go back")
check(sub["electrode_violations"] == 0, "electrodes in range")
check(sub["messages"]["status"] >= 3, "status at least once a second")
check(allow_no_spikes or sub["spikes"] > 0, "spikes arrived")
check(st["ok"] is True, "meactl status ok")
topic = sub["last_status_streams"]
check(topic is not None, "a status message arrived")
check(set(topic) == set(st["streams"]), "status topic and meactl report the same stream fields")
for key in ("produced", "published", "ring_dropped", "hwm_dropped"):
    for t, v in topic[key].items():
        check(st["streams"][key][t] >= v, "%s.%s: meactl %d >= status topic %d" % (key, t, st["streams"][key][t], v))
for t in ("spikes", "stim", "events", "status"):
    if sub["first_seq"].get(t, 0) == 0:
        check(sub["messages_at_last_status"][t] == topic["published"][t],
              "%s: subscriber counted %d before the last status, which says %d published"
              % (t, sub["messages_at_last_status"][t], topic["published"][t]))
check(st["loop"]["ticks"] >= sub["last_status_loop"]["ticks"] > 0, "loop ticks")
check(sum(st["streams"]["hwm_dropped"].values()) == 0 and sum(st["streams"]["ring_dropped"].values()) == 0,
      "nothing dropped with one local subscriber")
print("ok: %d spikes in %d messages over %.1f s, no loss; meactl agrees with the status topic"
      % (sub["spikes"], sub["messages"]["spikes"], sub["seconds"]))
PYEOF
