#!/bin/bash
# The daemon with CURVE access control (docs/safety.md): key generation,
# configuration errors, an authorised meactl answered, unauthorised clients
# (wrong key, no CURVE, wrong server key) answered nothing and counted,
# streams that an unkeyed subscriber cannot read.
#   test-auth.sh MEAD MEACTL SUBSCRIBER_PY NULL_CONFIG
set -u
mead=$1 meactl=$2 sub=$3 conf=$4
PY=/usr/bin/python3
tmp=$(mktemp -d /tmp/mead-auth.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$tmp/log" ] && { echo "--- daemon log"; cat "$tmp/log"; }; exit 1; }
# One field of a JSON document on stdin, by a Python expression on d.
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# --- meactl keygen: secret 0600, public 0644, the public key on stdout, no overwrite
for who in server alice mallory; do
  "$meactl" keygen --out "$tmp/$who" > "$tmp/$who.stdout" 2>/dev/null || fail "keygen $who"
done
[ "$(stat -c %a "$tmp/alice.key")" = 600 ] || fail "secret key mode $(stat -c %a "$tmp/alice.key")"
[ "$(stat -c %a "$tmp/alice.pub")" = 644 ] || fail "public key mode $(stat -c %a "$tmp/alice.pub")"
[ "$(grep -v '^#' "$tmp/alice.pub")" = "$(cat "$tmp/alice.stdout")" ] || fail "keygen printed another key than alice.pub"
cp "$tmp/alice.key" "$tmp/alice.key.orig"
"$meactl" keygen --out "$tmp/alice" 2> "$tmp/err" && fail "keygen replaced an existing key pair"
grep -q "File exists" "$tmp/err" || fail "keygen refusal not explained: $(cat "$tmp/err")"
cmp -s "$tmp/alice.key" "$tmp/alice.key.orig" || fail "keygen changed an existing secret key"
cat "$tmp/alice.pub" > "$tmp/authorized"        # comments and all, as an operator would

curve=(-o streams.curve.enabled=true -o "streams.curve.server_secret_key_file=$tmp/server.key"
       -o "streams.curve.authorized_keys_file=$tmp/authorized")

# --- configuration errors stop the daemon before any device is opened: exit 2
"$mead" --check -c "$conf" -o streams.curve.enabled=true 2> "$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "curve without key files: exit $rc"
grep -q "streams.curve.enabled needs streams.curve.server_secret_key_file" "$tmp/err" || fail "$(cat "$tmp/err")"
"$mead" --check -c "$conf" -o streams.curve.streams=true 2> "$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "curve.streams alone: exit $rc"
grep -q "streams.curve.streams needs streams.curve.enabled" "$tmp/err" || fail "$(cat "$tmp/err")"
chmod 644 "$tmp/server.key"
"$mead" --check -c "$conf" "${curve[@]}" 2> "$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "world-readable secret key: exit $rc"
grep -q "server.key: a secret key must not be accessible to others (mode 0644; chmod 600 it)" "$tmp/err" ||
  fail "world-readable secret key: $(cat "$tmp/err")"
chmod 600 "$tmp/server.key"
{ echo "# ops team"; sed -n 2p "$tmp/alice.pub" | sed 's/^\(.....\)./\1~/'; } > "$tmp/bad-authorized"
"$mead" --check -c "$conf" "${curve[@]}" -o "streams.curve.authorized_keys_file=$tmp/bad-authorized" 2> "$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "bad authorised key: exit $rc"
grep -q "bad-authorized:2:6: '~' is not a Z85 character" "$tmp/err" || fail "bad key not located: $(cat "$tmp/err")"
"$mead" --check -c "$conf" "${curve[@]}" > /dev/null 2> "$tmp/err" || fail "good key files rejected: $(cat "$tmp/err")"

# --- CURVE on control and streams
ctl="ipc://$tmp/ctl" pubep="ipc://$tmp/pub"
"$mead" -c "$conf" -o loop.clock=realtime -o loop.duration_s=0 -o "streams.control=$ctl" -o "streams.pub=$pubep" \
  "${curve[@]}" -o streams.curve.streams=true 2> "$tmp/log" &
pid=$!
for i in $(seq 100); do grep -q "running:" "$tmp/log" && break; sleep 0.05; done
grep -q "running:" "$tmp/log" || fail "daemon did not start"
grep -qF "access control: CURVE on control and streams, 1 authorised key, server public key $(sed -n 2p "$tmp/server.pub")" \
  "$tmp/log" || fail "access control not logged"

alice=(--server-key "$tmp/server.pub" --client-key "$tmp/alice.key")
timeout 10 "$meactl" -e "$ctl" "${alice[@]}" ping > "$tmp/out" || fail "authorised ping: exit $?"
grep -q "ok pong=yes" "$tmp/out" || fail "authorised ping: $(cat "$tmp/out")"
# The server key given as text rather than a file.
timeout 10 "$meactl" -e "$ctl" --server-key "$(sed -n 2p "$tmp/server.pub")" --client-key "$tmp/alice.key" ping \
  > /dev/null || fail "server key as Z85 text"

# Refused: a key not on the list, no CURVE at all, the wrong server key.
# Each gets no answer (exit 2), and nothing of the request is applied.
timeout 10 "$meactl" -e "$ctl" -t 800 --server-key "$tmp/server.pub" --client-key "$tmp/mallory.key" shutdown \
  > "$tmp/out" 2>&1; rc=$?
[ $rc -eq 2 ] || fail "unlisted key: exit $rc: $(cat "$tmp/out")"
timeout 10 "$meactl" -e "$ctl" -t 800 shutdown > "$tmp/out" 2>&1; rc=$?
[ $rc -eq 2 ] || fail "no CURVE: exit $rc: $(cat "$tmp/out")"
timeout 10 "$meactl" -e "$ctl" -t 800 --server-key "$tmp/mallory.pub" --client-key "$tmp/alice.key" shutdown \
  > "$tmp/out" 2>&1; rc=$?
[ $rc -eq 2 ] || fail "wrong server key: exit $rc: $(cat "$tmp/out")"
kill -0 $pid 2>/dev/null || fail "a refused shutdown stopped the daemon"
"$meactl" -e "$ctl" --client-key "$tmp/alice.key" ping 2> "$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q "go together" "$tmp/err" || fail "--client-key alone: exit $rc"

timeout 10 "$meactl" -e "$ctl" "${alice[@]}" --json status > "$tmp/status.json" || fail "status"
a=$(field 'd["access"]' < "$tmp/status.json")
[ "$(field 'd["access"]["control"]["curve"] and d["access"]["streams"]["curve"]' < "$tmp/status.json")" = True ] ||
  fail "status does not show CURVE: $a"
[ "$(field 'd["access"]["authorized_keys"]' < "$tmp/status.json")" = 1 ] || fail "authorized_keys: $a"
[ "$(field 'd["access"]["control"]["refused"] >= 1' < "$tmp/status.json")" = True ] || fail "refusal not counted: $a"
# Unlisted key, no CURVE and wrong server key each fail the handshake.
[ "$(field 'd["access"]["control"]["handshakes_failed"] >= 3' < "$tmp/status.json")" = True ] ||
  fail "failed handshakes not counted: $a"
[ "$(field 'd["access"]["control"]["accepted"] >= 3' < "$tmp/status.json")" = True ] || fail "accepted: $a"
grep -q "control: client .* refused: client key not authorised" "$tmp/log" || fail "refusal not logged"

# Streams: alice reads them; an unkeyed subscriber and one with an unlisted
# key, both connected at the same time, receive nothing and leave the
# subscriber count alone.
$PY -c 'import zmq, numpy' 2>/dev/null || { echo "python3-zmq/numpy missing: stream part skipped"; exit 77; }
timeout 20 $PY "$sub" --endpoint "$pubep" --seconds 3 --json "${alice[@]}" > "$tmp/alice.json" &
apid=$!
timeout 20 $PY "$sub" --endpoint "$pubep" --seconds 2 --json > "$tmp/open.json" &
opid=$!
timeout 20 $PY "$sub" --endpoint "$pubep" --seconds 2 --json --server-key "$tmp/server.pub" \
  --client-key "$tmp/mallory.key" > "$tmp/mallory.json" &
mpid=$!
sleep 1.5
timeout 10 "$meactl" -e "$ctl" "${alice[@]}" --json status > "$tmp/status2.json" || fail "status during streams"
wait $apid || fail "authorised subscriber: exit $?"
wait $opid || fail "unkeyed subscriber: exit $?"
wait $mpid || fail "unlisted subscriber: exit $?"
[ "$(field 'd["messages"]["status"] >= 2 and d["decode_errors"] == 0' < "$tmp/alice.json")" = True ] ||
  fail "authorised subscriber: $(cat "$tmp/alice.json")"
[ "$(field 'sum(d["messages"].values())' < "$tmp/open.json")" = 0 ] || fail "unkeyed subscriber got messages"
[ "$(field 'sum(d["messages"].values())' < "$tmp/mallory.json")" = 0 ] || fail "unlisted subscriber got messages"
s=$(field 'd["streams"]["subscribers"], d["access"]["streams"]' < "$tmp/status2.json")
[ "$(field 'd["streams"]["subscribers"]' < "$tmp/status2.json")" = 1 ] || fail "subscribers while refused ones retry: $s"
[ "$(field 'd["access"]["streams"]["refused"] >= 1 and d["access"]["streams"]["handshakes_failed"] >= 2' \
  < "$tmp/status2.json")" = True ] || fail "stream refusals not counted: $s"

timeout 10 "$meactl" -e "$ctl" "${alice[@]}" shutdown > /dev/null || fail "authorised shutdown"
wait $pid; rc=$?
pid=
[ $rc -eq 0 ] || fail "daemon exit $rc"

# --- CURVE on control only: the streams stay open to anyone (the separate switch)
"$mead" -c "$conf" -o loop.clock=realtime -o loop.duration_s=0 -o "streams.control=$ctl" -o "streams.pub=$pubep" \
  "${curve[@]}" 2> "$tmp/log" &
pid=$!
for i in $(seq 100); do grep -q "running:" "$tmp/log" && break; sleep 0.05; done
timeout 20 $PY "$sub" --endpoint "$pubep" --seconds 1.5 --json > "$tmp/open.json" || fail "subscriber on open streams"
[ "$(field 'd["messages"]["status"] >= 1' < "$tmp/open.json")" = True ] || fail "open streams: $(cat "$tmp/open.json")"
timeout 10 "$meactl" -e "$ctl" -t 800 ping > /dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "control without CURVE answered with streams.curve.streams off: exit $rc"
timeout 10 "$meactl" -e "$ctl" "${alice[@]}" --json status > "$tmp/status3.json" || fail "status"
[ "$(field 'd["access"]["control"]["curve"], d["access"]["streams"]["curve"]' < "$tmp/status3.json")" = "True False" ] ||
  fail "status access: $(field 'd["access"]' < "$tmp/status3.json")"
timeout 10 "$meactl" -e "$ctl" "${alice[@]}" shutdown > /dev/null || fail "authorised shutdown"
wait $pid; rc=$?
pid=
[ $rc -eq 0 ] || fail "daemon exit $rc"
echo ok
