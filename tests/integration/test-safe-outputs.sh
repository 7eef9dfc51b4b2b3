#!/bin/bash
# Outputs off after any death.  The null driver pretends a stimulator whose
# state outlives the process (driver.options.outputs_file: '1' while on):
#  - SIGKILL, which no handler sees, leaves it on; `mead --safe-outputs`,
#    the unit file's ExecStopPost=, turns it off;
#  - a crash (SIGSEGV, SIGABRT) turns it off from the fatal-signal handler,
#    and the daemon still dies of the signal (a core for the bug report);
#  - --safe-outputs on the twin and with a driver that cannot open.
#   test-safe-outputs.sh MEAD MEACTL SOURCE_ROOT
set -u
mead=$1 meactl=$2 src=$3
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; [ -f "$tmp/log" ] && sed 's/^/  log: /' "$tmp/log"; exit 1; }
flag() { head -c 1 "$tmp/outputs" 2>/dev/null; }

cfg=(-c "$src/config/null-virtual.yaml" -o loop.clock=realtime -o loop.duration_s=0
     -o "streams.pub=ipc://$tmp/pub" -o "streams.control=ipc://$tmp/ctl"
     -o "driver.options.outputs_file=$tmp/outputs")

start_stimulating() {
	"$mead" "${cfg[@]}" 2> "$tmp/log" &
	pid=$!
	for i in $(seq 200); do grep -q "running:" "$tmp/log" && break; sleep 0.05; done
	grep -q "running:" "$tmp/log" || fail "the daemon did not start"
	"$meactl" -e "ipc://$tmp/ctl" stim --electrodes 3 --amplitude-ua -1 --phase-us 100 --pulses 100 \
		--rate-hz 10 > /dev/null || fail "stim request refused"
	for i in $(seq 100); do [ "$(flag)" = 1 ] && break; sleep 0.02; done
	[ "$(flag)" = 1 ] || fail "the pretend stimulator never came on"
}

# --- SIGKILL: nothing in the process can act; ExecStopPost= does
start_stimulating
kill -9 $pid
wait $pid 2>/dev/null
pid=
[ "$(flag)" = 1 ] || fail "after SIGKILL the outputs should still be as the daemon left them"
"$mead" "${cfg[@]}" --safe-outputs 2> "$tmp/safe"; rc=$?
[ $rc -eq 0 ] || fail "--safe-outputs: exit $rc: $(cat "$tmp/safe")"
[ "$(flag)" = 0 ] || fail "--safe-outputs left the outputs on"
grep -q "outputs at zero" "$tmp/safe" || fail "--safe-outputs did not say so: $(cat "$tmp/safe")"

# --- a crash: the fatal-signal handler zeroes the outputs, then the signal kills
for sig in SEGV ABRT; do
	start_stimulating
	kill -$sig $pid
	wait $pid; rc=$?
	pid=
	want=$(( 128 + $(kill -l $sig) ))
	[ $rc -eq $want ] || fail "SIG$sig: exit $rc, expected death by the signal ($want)"
	[ "$(flag)" = 0 ] || fail "SIG$sig left the outputs on"
	grep -q "fatal signal: outputs zeroed" "$tmp/log" || fail "SIG$sig: the handler did not run"
done

# --- the twin, and a device that is not there
"$mead" -c "$src/config/twin-live.yaml" --safe-outputs 2> "$tmp/safe" || fail "--safe-outputs on the twin: $(cat "$tmp/safe")"
"$mead" -c "$src/config/null-virtual.yaml" -o "driver.options.outputs_file=/nonexistent/dir/x" --safe-outputs \
	2> "$tmp/safe"; rc=$?
[ $rc -eq 3 ] || fail "--safe-outputs with a driver that cannot open: exit $rc, expected 3"
grep -q "could not be made safe" "$tmp/safe" || fail "no clear message: $(cat "$tmp/safe")"
echo "ok: SIGKILL then --safe-outputs, SIGSEGV and SIGABRT through the handler: outputs off every time"
