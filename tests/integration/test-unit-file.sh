#!/bin/sh
# The unit file as systemd reads it: systemd-analyze verify on a copy whose
# commands point at the built daemon, and the steps safety depends on are
# there (ExecStopPost= zeroes the outputs after any end of the daemon).
#   test-unit-file.sh UNIT MEAD
set -u
unit=$1 mead=$2
command -v systemd-analyze >/dev/null 2>&1 || { echo "SKIP: systemd-analyze not installed"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|/[^ ]*/sbin/mead |$mead |g" "$unit" > "$tmp/mead.service"
grep -q "^ExecStopPost=$mead --safe-outputs " "$tmp/mead.service" || { echo "FAIL: no ExecStopPost= --safe-outputs"; exit 1; }
grep -q "^WatchdogSec=" "$tmp/mead.service" || { echo "FAIL: no WatchdogSec="; exit 1; }
out=$(systemd-analyze verify "$tmp/mead.service" 2>&1)
if [ -n "$out" ]; then
	echo "FAIL: systemd-analyze verify:"
	echo "$out"
	exit 1
fi
echo "ok: systemd-analyze verify accepts the unit; ExecStopPost= makes the outputs safe"
