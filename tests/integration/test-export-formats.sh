#!/bin/sh
# mead-export --to nwb and --to openephys on recordings of the real daemon,
# read back by h5py, hdmf and Neo and compared value for value with the
# recordings, whole and cut at random byte offsets (export_check.py).
#   test-export-formats.sh MEAD MEAD_EXPORT SOURCE_ROOT
set -eu
mead=$1 export_tool=$2 src=$3
PY=/usr/bin/python3
if ! $PY -c 'import numpy, h5py, hdmf, neo, yaml' 2>/dev/null; then
  echo "skip: python3-numpy, python3-h5py, python3-hdmf, python3-neo and python3-yaml are needed (tools/install-deps.sh)"
  exit 77
fi
tmp=$(mktemp -d /tmp/mead-export-formats.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# The null driver at 25 kHz with raw noise and synthetic spikes under the
# Ruaro protocol: raw, trials (item, phase) and bursts of pulses.
"$mead" -c "$src/config/null-virtual.yaml" -o loop.duration_s=1.5 \
  -o driver.options.sample_rate_hz=25000 -o driver.options.raw=true -o driver.options.spike_rate_hz=20 \
  -o streams.raw=true -o streams.pub="ipc://$tmp/pub1" -o streams.control="ipc://$tmp/ctl1" \
  -o recording.enabled=true -o recording.path="$tmp/null-ruaro.mrec" \
  -o protocol.autostart=ruaro -o protocol.ruaro.probes=2 -o protocol.ruaro.tetanus_trials=2 \
  -o protocol.ruaro.probe_ms=100 -o protocol.ruaro.tetanus_ms=100 \
  -o safety.max_rate_hz=1000 -o safety.max_duty_cycle=1 2> "$tmp/null.log" || { cat "$tmp/null.log"; exit 1; }
# The twin under random patterned stimulation (the twin has no raw samples).
"$mead" -c "$src/config/twin-live.yaml" -o loop.clock=virtual -o loop.duration_s=1.5 -o loop.priority=0 \
  -o streams.pub="ipc://$tmp/pub2" -o streams.control="ipc://$tmp/ctl2" \
  -o recording.path="$tmp/twin-random.mrec" 2> "$tmp/twin.log" || { cat "$tmp/twin.log"; exit 1; }

$PY "$src/tests/integration/export_check.py" "$export_tool" "$tmp" "$tmp/null-ruaro.mrec" "$tmp/twin-random.mrec"
