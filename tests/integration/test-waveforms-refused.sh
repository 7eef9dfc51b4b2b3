#!/bin/sh
# The daemon refuses spike waveforms from drivers with no raw signal (the
# twin, replay), saying so, and runs the twin as before without them.
#   test-waveforms-refused.sh MEAD SOURCE_ROOT
set -eu
mead=$1 src=$2
tmp=$(mktemp -d /tmp/mead-waveforms-refused.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
run() {
	"$mead" -c "$src/config/twin-live.yaml" -o loop.clock=virtual -o loop.duration_s=0.1 -o loop.priority=0 \
		-o streams.pub="ipc://$tmp/pub" -o streams.control="ipc://$tmp/ctl" -o recording.enabled=false "$@"
}
if run -o driver.options.waveforms=true 2>"$tmp/err"; then
	echo "FAIL: the twin accepted waveforms: true"; exit 1
fi
grep -q "waveforms: driver twin has no raw signal, so no spike waveforms" "$tmp/err" ||
	{ echo "FAIL: no reason given:"; cat "$tmp/err"; exit 1; }
run -o driver.options.waveforms=false 2>"$tmp/err2" || { echo "FAIL: waveforms: false refused"; cat "$tmp/err2"; exit 1; }
run 2>"$tmp/err3" || { echo "FAIL: the twin without waveform options"; cat "$tmp/err3"; exit 1; }
echo "ok: twin refuses waveforms ($(cat "$tmp/err" | head -1))"
