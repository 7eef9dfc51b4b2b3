#!/bin/bash
# The daemon on the null driver: configuration errors, --check, a virtual-
# clock run stopped by SIGTERM, a run that ends by itself, SIGHUP handling.
set -u
mead=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# --- configuration errors name file, line, column and key; exit 2
printf 'loop:\n  period_us: 5\n' > "$tmp/bad.yaml"
"$mead" --check -c "$tmp/bad.yaml" 2> "$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "out-of-range value: exit $rc, expected 2"
grep -q "bad.yaml:2:[0-9]*: loop.period_us" "$tmp/err" || fail "no file:line:col for period_us: $(cat "$tmp/err")"

printf 'loop:\n  perod_us: 1000\n' > "$tmp/bad2.yaml"
"$mead" -c "$tmp/bad2.yaml" 2> "$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "unknown key: exit $rc"
grep -q "bad2.yaml:2:3: loop.perod_us" "$tmp/err" || fail "unknown key not located: $(cat "$tmp/err")"

printf 'driver:\n  name: null\n  options:\n    spike_rate_hz: lots\n' > "$tmp/bad3.yaml"
"$mead" --check -c "$tmp/bad3.yaml" 2> "$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "bad driver option: exit $rc"
grep -q "bad3.yaml:4:[0-9]*: driver.options.spike_rate_hz" "$tmp/err" || fail "driver option not located: $(cat "$tmp/err")"

"$mead" --check -c "$src/config/null-virtual.yaml" -o driver.name=no-such-driver 2> "$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "missing driver: exit $rc"
grep -q "no-such-driver" "$tmp/err" || fail "missing driver not named"

"$mead" --check -c "$src/config/null-virtual.yaml" -o loop.clock=sideways 2> "$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "bad override: exit $rc"
grep -q "<command line>:1:[0-9]*: loop.clock" "$tmp/err" || fail "override error not located: $(cat "$tmp/err")"

"$mead" --frobnicate 2>/dev/null; rc=$?
[ $rc -eq 1 ] || fail "usage error: exit $rc"

# --- docs/configuration.md carries the schema's own table
"$mead" --list-keys > "$tmp/keys" || fail "--list-keys"
diff <(grep '^|' "$src/docs/configuration.md") "$tmp/keys" > "$tmp/keydiff" || fail "docs/configuration.md is out of date (regenerate with mead --list-keys): $(head -5 "$tmp/keydiff")"

# --- every shipped configuration validates
for f in "$src"/config/*.yaml; do
  "$mead" --check -c "$f" > /dev/null 2> "$tmp/err" || fail "$f does not validate: $(cat "$tmp/err")"
done
"$mead" --check --print -c "$src/config/null-virtual.yaml" -o loop.period_us=40 > "$tmp/print" || fail "--print"
grep -q "^loop.period_us = 40$" "$tmp/print" || fail "override not shown by --print"

# --- a virtual-clock run, stopped with SIGTERM: exit 0, summary logged
"$mead" -c "$src/config/null-virtual.yaml" -o loop.duration_s=0 -o streams.pub=tcp://127.0.0.1:* \
  -o streams.control=tcp://127.0.0.1:* 2> "$tmp/log" &
pid=$!
for i in $(seq 100); do grep -q "running:" "$tmp/log" && break; sleep 0.05; done
grep -q "running:" "$tmp/log" || { kill -9 $pid; fail "daemon did not start: $(cat "$tmp/log")"; }
sleep 0.5
kill -TERM $pid
wait $pid; rc=$?
[ $rc -eq 0 ] || fail "SIGTERM stop: exit $rc: $(cat "$tmp/log")"
grep -q "SIGTERM: stopping" "$tmp/log" || fail "no stop message"
ticks=$(sed -n 's/.*run: ticks=\([0-9]*\).*/\1/p' "$tmp/log")
[ -n "$ticks" ] && [ "$ticks" -gt 1000 ] || fail "virtual clock should run far ahead of real time (ticks=$ticks)"

# --- a run that ends by itself after its duration; SIGHUP re-validates only
"$mead" -c "$src/config/null-virtual.yaml" -o loop.clock=realtime -o loop.duration_s=1.5 \
  -o streams.pub=tcp://127.0.0.1:* -o streams.control=tcp://127.0.0.1:* 2> "$tmp/log2" &
pid=$!
for i in $(seq 100); do grep -q "running:" "$tmp/log2" && break; sleep 0.05; done
kill -HUP $pid
wait $pid; rc=$?
[ $rc -eq 0 ] || fail "timed run: exit $rc: $(cat "$tmp/log2")"
grep -q "SIGHUP: .* validates; the running configuration is kept" "$tmp/log2" || fail "SIGHUP not reported: $(cat "$tmp/log2")"
grep -q "run: ticks=1500 " "$tmp/log2" || fail "1.5 s at 1 ms should be 1500 ticks: $(grep 'run:' "$tmp/log2")"
echo "ok"
