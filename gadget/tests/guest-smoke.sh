#!/bin/sh
# SPDX-License-Identifier: MIT
# mead-usb-device against the real kernel: FunctionFS on dummy_udc, and the
# host side through usbfs and libusb (tests/mead-usb-client), in one guest
# (docs/usb-gadget.md, "Tests").  Run as root inside a guest that has
# dummy_hcd, libcomposite and usb_f_fs (loaded here when missing):
#
#   gadget/tests/guest-smoke.sh [BUILD_DIR]            the checks
#   gadget/tests/guest-smoke.sh --rates [BUILD_DIR]    the checks, then the
#                                                      rates it holds
#   gadget/tests/guest-smoke.sh --rates-only [BUILD_DIR]
#
# Exit status: 0 all passed, 1 a check failed, 77 no gadget stack here.
# Each step prints "ok NAME" or "not ok NAME"; the device's log, truth files
# and the client's output stay in $MEAD_GADGET_OUT (default: a new folder
# under /tmp), named after the step.
set -u

rates=0
checks=1
case "${1:-}" in
--rates) rates=1; shift ;;
--rates-only) rates=1; checks=0; shift ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${1:-${MEAD_BUILD_ROOT:-$src/build}}
dev_bin=$build/gadget/mead-usb-device
cli=$build/gadget/tests/mead-usb-client
setup=$src/gadget/mead-gadget-setup.sh
out=${MEAD_GADGET_OUT:-$(mktemp -d /tmp/mead-gadget.XXXXXX)}
mkdir -p "$out"

skip() { echo "guest-smoke: skipped: $*"; exit 77; }

[ "$(id -u)" = 0 ] || skip "needs root"
[ -x "$dev_bin" ] || skip "$dev_bin not built"
[ -x "$cli" ] || skip "$cli not built (needs libusb-1.0)"

modload() {
	for m in "$@"; do
		[ -d "/sys/module/$m" ] && continue
		if [ -n "${MEAD_GUEST_MODROOT:-}" ]; then
			modprobe -d "$MEAD_GUEST_MODROOT" "$m" 2>/dev/null
		else
			modprobe "$m" 2>/dev/null
		fi
	done
}
modload libcomposite usb_f_fs dummy_hcd
[ -d /sys/kernel/config ] || skip "no configfs"
grep -q " /sys/kernel/config " /proc/mounts || mount -t configfs none /sys/kernel/config 2>/dev/null
[ -d /sys/kernel/config/usb_gadget ] || skip "no configfs gadget support (libcomposite)"
udcs=$(ls /sys/class/udc 2>/dev/null)
case "$udcs" in
dummy_udc.*) ;;
"") skip "no USB device controller (dummy_hcd)" ;;
*) skip "a real device controller is here ($udcs); this test wants the emulated one" ;;
esac
# (functionfs appears in /proc/filesystems only once a function exists)
[ -d /sys/module/usb_f_fs ] || skip "no FunctionFS (usb_f_fs)"

export MEAD_GADGET=meadtest MEAD_FFS_NAME=meadtest MEAD_FFS_DIR=/dev/usb-ffs/meadtest
fails=0
devpid=
step=

ok() { echo "ok $1${2:+ # $2}"; }
notok() { echo "not ok $1${2:+ # $2}"; fails=$((fails + 1)); }

present() {
	for d in /sys/bus/usb/devices/*; do
		[ "$(cat "$d/idVendor" 2>/dev/null)" = 1209 ] && [ "$(cat "$d/idProduct" 2>/dev/null)" = 4d45 ] && return 0
	done
	return 1
}

wait_present() {
	i=0
	while [ $i -lt 100 ]; do
		present && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# start_device NAME [OPTION...]: the device, its log and truth under $out
start_device() {
	step=$1
	shift
	"$dev_bin" --gadget "$MEAD_GADGET" --ffs-name "$MEAD_FFS_NAME" --ffs-dir "$MEAD_FFS_DIR" \
		--log "$out/$step.device.log" --truth "$out/$step.truth.csv" --queue 8 --rt-priority 20 "$@" \
		> "$out/$step.device.out" 2>&1 &
	devpid=$!
	if ! wait_present; then
		notok "$step-enumerates" "$(tail -3 "$out/$step.device.out")"
		stop_device
		return 1
	fi
	return 0
}

stop_device() {
	[ -n "$devpid" ] || return 0
	kill -TERM "$devpid" 2>/dev/null
	wait "$devpid" 2>/dev/null
	rc=$?
	devpid=
	return $rc
}

alive() { [ -n "$devpid" ] && kill -0 "$devpid" 2>/dev/null; }

# client NAME ARG...: one scenario, its output kept and shown on failure
client() {
	name=$1
	shift
	if "$cli" "$@" > "$out/$name.client.out" 2>&1; then
		ok "$name" "$(grep -E '^(stream|watchdog|clock|stall|truth|info|gone)' "$out/$name.client.out" | head -2 | tr '\n' ' ')"
		return 0
	fi
	notok "$name"
	sed 's/^/#   /' "$out/$name.client.out" | tail -15
	return 1
}

cleanup() {
	stop_device
	"$setup" down > /dev/null 2>&1
}
trap cleanup EXIT INT TERM

# --- one device, many hosts: info, streams, START after STOP, stimulation,
# watchdog, a killed host
if [ $checks = 1 ] && start_device main; then
	client info info
	# gaps are allowed where the guest's vCPUs stall (a busy host); the
	# rates below are measured without them
	client stream --truth "$out/main.truth.csv" stream --allow-gaps 2000
	client stream-again stream --allow-gaps 300
	client stim stim --queue 8
	client watchdog watchdog 200

	# a host that dies without a word: the bus stays configured
	"$cli" hold 200 60 > "$out/hold.client.out" 2>&1 &
	holdpid=$!
	i=0
	while [ $i -lt 50 ] && ! grep -q "hold queued" "$out/hold.client.out"; do
		sleep 0.1
		i=$((i + 1))
	done
	sleep 0.3
	kill -KILL $holdpid 2>/dev/null
	wait $holdpid 2>/dev/null
	# the watchdog, then the log's next flush (every 250 ms)
	sleep 2
	w=$(grep "watchdog fired" "$out/main.device.log" | tail -1)
	d=$(grep -c "pulse seq=300 idx=[01] -> status=4(dropped)" "$out/main.device.log")
	if [ -n "$w" ] && [ "$d" = 2 ]; then
		ok killed-host "$(echo "$w" | cut -d' ' -f2-)"
	else
		notok killed-host "watchdog line: '${w:-none}', dropped pulses logged: $d"
	fi
	client after-killed-host stream --allow-gaps 200
	client watchdog-off set-watchdog 0

	# unplug while streaming, plug back: the same process carries on
	"$cli" until-gone 30 > "$out/unplug.client.out" 2>&1 &
	gonepid=$!
	sleep 1.5
	"$setup" unplug
	if wait $gonepid; then
		ok unplug "$(grep '^gone' "$out/unplug.client.out")"
	else
		notok unplug "$(tail -3 "$out/unplug.client.out")"
	fi
	sleep 0.5
	if alive; then ok unplugged-device-alive; else notok unplugged-device-alive; fi
	"$setup" plug
	client replug wait-back 10
	client after-replug stream --allow-gaps 500
	"$setup" unplug
	sleep 0.3
	"$setup" plug
	client replug-twice wait-back 10
	client after-replug-twice stream --allow-gaps 300
	sleep 0.5
	ev=$(grep -o "event [A-Z]*" "$out/main.device.log" | cut -d' ' -f2 | tr '\n' ' ')
	case "$ev" in
	# a suspended device (the host suspends it when nobody has it open)
	# gets UNBIND without DISABLE
	*"UNBIND BIND ENABLE"*"UNBIND BIND ENABLE"*) ok replug-events "$ev" ;;
	*) notok replug-events "$ev" ;;
	esac
	if stop_device; then ok device-exit; else notok device-exit "status $rc"; fi
fi

# --- a board's own set-up: the gadget from mead-gadget-setup.sh, the UDC
# bound by the setup script once the device has written its descriptors
if [ $checks = 0 ]; then
	:
elif "$setup" up > "$out/board.setup.out" 2>&1; then
	step=board
	"$dev_bin" --gadget "$MEAD_GADGET" --ffs-name "$MEAD_FFS_NAME" --ffs-dir "$MEAD_FFS_DIR" --no-bind \
		--log "$out/board.device.log" > "$out/board.device.out" 2>&1 &
	devpid=$!
	i=0
	while [ $i -lt 50 ] && ! grep -q " ready " "$out/board.device.log" 2>/dev/null; do
		sleep 0.1
		i=$((i + 1))
	done
	"$setup" plug
	if wait_present; then
		client board info
	else
		notok board "no device after plug"
	fi
	stop_device
	"$setup" down && ok board-down || notok board-down
else
	notok board-setup "$(tail -2 "$out/board.setup.out")"
fi

# --- a device clock 500 ppm fast
if [ $checks = 1 ] && start_device clock --clock-ppm 500; then
	client clock clock 8 --ppm 500 --tol-ppm 100
	stop_device
fi

# --- the IN endpoint halts once: the host clears it and goes on
if [ $checks = 1 ] && start_device stall --stall-after-packets 300; then
	client stall stall 300
	grep -q "in-halt after=300 packets result=Bad message" "$out/stall.device.log" &&
		ok stall-by-wrong-direction-io || notok stall-by-wrong-direction-io "$(grep in-halt "$out/stall.device.log")"
	stop_device
fi

# --- packets that are whole multiples of wMaxPacketSize end with a ZLP:
# 248 x 1 x 2 + 16 = 512
if [ $checks = 1 ] && start_device zlp --channels 1 --spp 248 --rate 24800 --spike-electrodes 0; then
	client zlp stream --allow-gaps 200
	stop_device
fi

# --- the highest rate held without a lost packet: 5000 packets (5 s at the
# default of one packet per ms) with none lost, device and reader both
# buffering 256 ms, so that a guest vCPU descheduled by a busy host is not
# what is measured; each rate gets three tries
if [ $rates = 1 ]; then
	for ch in 60 8; do
		best=0
		if [ $ch = 60 ]; then
			list="25000 30000 40000 50000 60000 80000 100000 125000 150000"
		else
			list="25000 50000 100000 150000 200000 300000 400000 500000 600000 800000 1000000"
		fi
		for r in $list; do
			held=0
			for try in 1 2 3; do
				n=rate-$ch-$r-$try
				start_device "$n" --channels $ch --rate $r --in-queue 256 --fifo-packets 256 || break
				"$cli" --transfers 64 stream 5000 > "$out/$n.client.out" 2>&1
				crc=$?
				stop_device
				echo "# $n $(grep '^stream' "$out/$n.client.out") $(grep 'stream end' "$out/$n.device.log" |
					grep -o 'failed=[0-9]*\|dropped=[0-9]*\|overrun=[0-9]*\|wake_late_max_us=[0-9]*' | tr '\n' ' ')"
				if [ $crc = 0 ]; then
					held=1
					break
				fi
			done
			[ $held = 1 ] || break
			best=$r
		done
		echo "# rate-held channels=$ch rate=$best load=$(cut -d' ' -f1-3 /proc/loadavg)"
	done
fi

echo "guest-smoke: $fails failed; logs in $out"
[ $fails = 0 ]
