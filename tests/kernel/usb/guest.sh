#!/bin/sh
# SPDX-License-Identifier: MIT
# mead-driver-usb, unmodified, against the reference device (mead-usb-device
# on FunctionFS) through the real kernel: dummy_hcd joins the gadget and the
# host side in one guest, and the driver reaches the device through usbfs
# and libusb as it would on a rig.  Run as root inside the kernel test guest
# (meson test -C build kernel-usb boots it: tests/kernel/usb.list); prints "ok NAME" or "not ok NAME # why"
# per check and exits 0 when all passed, 1 when one failed, 77 when a piece
# is missing.  Logs (the device's log and truth files, every usb-check
# output) go to $MEAD_TEST_OUT, or a folder under /tmp.
#
#   guest.sh [BUILD_DIR] [DEVICE]
#
# BUILD_DIR: this tree's build (MEAD_BUILD_ROOT: the driver module,
# usb-check and the device); DEVICE: another mead-usb-device binary
# (MEAD_USB_DEVICE).
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
build=${1:-${MEAD_BUILD_ROOT:-$src/build}}
dev_bin=${2:-${MEAD_USB_DEVICE:-$build/gadget/mead-usb-device}}
check=$build/tests/kernel/usb-check
out=${MEAD_TEST_OUT:-$(mktemp -d /tmp/mead-usb-guest.XXXXXX)}
mkdir -p "$out"
export MEAD_DRIVER_PATH=$build/drivers

skip() { echo "usb guest: skipped: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root"
[ -x "$dev_bin" ] || skip "no device program $dev_bin"
[ -x "$check" ] || skip "no $check (ninja -C $build)"
[ -f "$build/drivers/usb/mead-driver-usb.so" ] || skip "no driver module in $build"

for m in libcomposite usb_f_fs dummy_hcd; do
	[ -d "/sys/module/$m" ] && continue
	if [ -n "${MEAD_GUEST_MODROOT:-}" ]; then
		modprobe -d "$MEAD_GUEST_MODROOT" "$m" 2>/dev/null
	else
		modprobe "$m" 2>/dev/null
	fi
done
grep -q " /sys/kernel/config " /proc/mounts || mount -t configfs none /sys/kernel/config 2>/dev/null
[ -d /sys/kernel/config/usb_gadget ] || skip "no configfs gadget support (libcomposite)"
udc=$(ls /sys/class/udc 2>/dev/null)
case "$udc" in
dummy_udc.*) ;;
*) skip "no dummy_udc (found: '${udc:-none}')" ;;
esac

gadget=meadusbv2
udc_file=/sys/kernel/config/usb_gadget/$gadget/UDC
fails=0
passes=0
devpid=

ok() { echo "ok $1${2:+ # $2}"; passes=$((passes + 1)); }
notok() { echo "not ok $1${2:+ # $2}"; fails=$((fails + 1)); }

present() {
	for d in /sys/bus/usb/devices/*; do
		[ "$(cat "$d/idVendor" 2>/dev/null)" = 1209 ] && [ "$(cat "$d/idProduct" 2>/dev/null)" = 4d45 ] && return 0
	done
	return 1
}

# device NAME [OPTION...]: the reference device, 8 channels at 25 kHz,
# a queue of 8 pulses
device() {
	step=$1
	shift
	"$dev_bin" --gadget $gadget --ffs-name $gadget --ffs-dir /dev/usb-ffs/$gadget --channels 8 --queue 8 \
		--log "$out/$step.device.log" --truth "$out/$step.truth.csv" "$@" > "$out/$step.device.out" 2>&1 &
	devpid=$!
	i=0
	while [ $i -lt 100 ] && ! present; do
		sleep 0.1
		i=$((i + 1))
	done
	present || { notok "$step-device" "$(tail -3 "$out/$step.device.out")"; stop; return 1; }
	return 0
}

stop() {
	[ -n "$devpid" ] || return 0
	kill -TERM "$devpid" 2>/dev/null
	wait "$devpid" 2>/dev/null
	devpid=
}
trap stop EXIT INT TERM

# run NAME SCENARIO [ARG...]: usb-check's verdict line is the check's
run() {
	name=$1
	shift
	"$check" "$@" > "$out/$name.check.out" 2>&1
	rc=$?
	v=$(grep -E '^(not )?ok ' "$out/$name.check.out" | tail -1)
	case "$v" in
	"ok "*) ok "$name" "$(grep -E '^(stream|truth|unplug|replug|caps)' "$out/$name.check.out" | head -3 | tr '\n' ' ')" ;;
	*) notok "$name" "${v#*# } (exit $rc)"; sed 's/^/#   /' "$out/$name.check.out" | tail -25 ;;
	esac
	return $rc
}

# the device's log, flushed every 250 ms and at exit
logline() { grep -E "$2" "$out/$1.device.log" 2>/dev/null; }

# noise of 1 uV against 100 uV spikes: the trough is the planted sample, so
# a spike's timing is checked to the sample
if device main --noise-uv 1 --spp 125; then
	# the guest's vCPUs stall for tens of ms at times: the watchdog is
	# 100 ms only where it is what is tested (the killed host); 5 ms
	# ticks of one 125-sample packet each, as under TCG a loop thread
	# does not keep 1 ms ticks
	wdopt="-o watchdog_ms=1000 -t 5000"
	run info info
	grep -q "describe=.*\"endpoint_out\":\"0x02\"" "$out/info.check.out" &&
		ok endpoints-from-descriptor "$(grep -o '"endpoint_in":"[^"]*","endpoint_out":"[^"]*"' "$out/info.check.out")" ||
		notok endpoints-from-descriptor "$(grep -o '"endpoint_[a-z]*":"[^"]*"' "$out/info.check.out" | tr '\n' ' ')"
	run stream $wdopt stream 10 "$out/main.truth.csv"
	run stim $wdopt stim
	sleep 0.5
	# what the device logged for each pulse is what was sent and what
	# the driver said became of it
	pulses=$(logline main "pulse seq=0 idx=0 start=[0-9]* electrode=1 flags=0 amp_na=-20000 phase_us=200 interphase_us=50")
	[ -n "$pulses" ] && ok stim-arrives-as-sent "$(echo "$pulses" | head -1 | cut -d' ' -f2-)" ||
		notok stim-arrives-as-sent "no such pulse in the device's log"
	bad=
	for k in "0 0 0" "0 1 1" "0 2 2" "0 3 3" "1 0 4" "1 1 4" "2 8 5" "2 9 5"; do
		set -- $k
		logline main "pulse seq=$1 idx=$2 .*status=$3\\(" > /dev/null || bad="$bad seq=$1/idx=$2/status=$3"
	done
	[ -z "$bad" ] && ok stim-statuses-in-device-log || notok stim-statuses-in-device-log "missing:$bad"

	# a host killed without a word: the bus stays configured, the device's
	# watchdog stops the outputs and drops the queued pulse
	"$check" -t 5000 hold > "$out/hold.check.out" 2>&1 &
	holdpid=$!
	i=0
	while [ $i -lt 100 ] && ! grep -q "hold queued" "$out/hold.check.out"; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -KILL $holdpid 2>/dev/null
	wait $holdpid 2>/dev/null
	sleep 1
	w=$(logline main "watchdog fired" | tail -1)
	d=$(logline main "pulse seq=0 idx=0 -> status=4\\(dropped\\).*by=watchdog" | tail -1)
	[ -n "$w" ] && [ -n "$d" ] && ok killed-host-watchdog "$(echo "$w" | cut -d' ' -f2-)" ||
		notok killed-host-watchdog "watchdog: '${w:-none}' dropped: '${d:-none}'"
	wd=$(logline main "SET_WATCHDOG .*wValue=100 " | head -1)
	[ -n "$wd" ] && ok watchdog-armed-at-start || notok watchdog-armed-at-start "no SET_WATCHDOG 100 in the device's log"

	# unplug while streaming, plug back: usb-check unbinds and binds itself
	run unplug $wdopt unplug "$udc_file" "$udc"
	# the pulse after the reattach started as late as the driver said:
	# the device's samples and the loop's are mapped right
	late=$(sed -n 's/^after-replug late_by=//p' "$out/unplug.check.out")
	dl=$(logline main "pulse seq=1 idx=0 -> status=[01]\(" | tail -1)
	ds=$(echo "$dl" | sed -n 's/.* started=\([0-9]*\) requested=\([0-9]*\).*/\1 \2/p')
	if [ -n "$late" ] && [ -n "$ds" ] && [ $(( ${ds% *} - ${ds#* } )) = "$late" ]; then
		ok replug-mapping "late by $late samples, as the device says"
	else
		notok replug-mapping "driver: late by '${late:-?}', device: '${dl:-no line}'"
	fi
	z=$(logline main "outputs zero .*by=(disable|unbind)" | tail -1)
	[ -n "$z" ] && ok unplug-outputs-zero "$(echo "$z" | cut -d' ' -f2-)" || notok unplug-outputs-zero "no such line"
	stop
fi

# the IN endpoint halts once: the driver clears it and counts it
if device stall --spp 125 --stall-after-packets 300; then
	run stall -o watchdog_ms=1000 -t 5000 stall 4
	logline stall "in-halt after=300" > /dev/null && ok stall-device-side || notok stall-device-side "$(logline stall in-halt)"
	stop
fi

# the daemon itself, with the respond protocol, on the device: every
# pulse the device played is in the recording at the sample it played it,
# and the spike-to-command figures (mead-bench closed-loop; 5 ms ticks, as
# above; the figures under TCG are the emulator's, the ticks are the point)
bench=$build/bench/mead-bench
if [ ! -x "$bench" ] || [ ! -x "$build/daemon/mead" ]; then
	notok closed-loop "no $bench or $build/daemon/mead (ninja -C $build)"
elif device closed-loop --spp 125 --spike-electrodes 0,2,4,6 --spike-every-ms 100; then
	"$bench" closed-loop --gadget-log "$out/closed-loop.device.log" --gadget-truth "$out/closed-loop.truth.csv" \
		--channels 8 --target 7 --seconds 20 --period-us 5000 --priority 50 --keep "$out/closed-loop" \
		-o driver.options.watchdog_ms=1000 > "$out/closed-loop.bench.out" 2>&1
	rc=$?
	sed 's/^/#   /' "$out/closed-loop.bench.out"
	agree=$(grep "record vs device" "$out/closed-loop.bench.out")
	if [ $rc = 0 ] && echo "$agree" | grep -q " 0 recorded but not played, 0 played but not recorded"; then
		ok closed-loop "$(grep -o 'latency_ticks_p50=.*' "$out/closed-loop.bench.out" | head -1)"
	else
		notok closed-loop "exit $rc: ${agree:-no figures}"
	fi
	stop
fi

echo "note: usb guest: $passes checks passed, $fails failed; logs in $out"
[ $fails = 0 ]
