#!/bin/sh
# SPDX-License-Identifier: MIT
# The configfs side of mead-usb-device, for boards that set their gadget up
# at boot (docs/usb-gadget.md):
#   mead-gadget-setup.sh up       gadget + FunctionFS function, functionfs mounted
#   mead-gadget-setup.sh down     unbind, unmount, remove the gadget
#   mead-gadget-setup.sh unplug   unbind the UDC: the host sees the device leave
#   mead-gadget-setup.sh plug     bind it again (mead-usb-device must be running)
# The UDC must only be bound once mead-usb-device has written its
# descriptors; mead-usb-device binds it itself unless given --no-bind.
# Environment: MEAD_GADGET (mead), MEAD_FFS_NAME (mead), MEAD_FFS_DIR
# (/dev/usb-ffs/$MEAD_FFS_NAME), MEAD_UDC (the only one in /sys/class/udc),
# MEAD_SERIAL (MEAD0001).
set -eu

name=${MEAD_GADGET:-mead}
ffs=${MEAD_FFS_NAME:-mead}
ffsdir=${MEAD_FFS_DIR:-/dev/usb-ffs/$ffs}
serial=${MEAD_SERIAL:-MEAD0001}
cfs=/sys/kernel/config
g=$cfs/usb_gadget/$name

die() { echo "mead-gadget-setup: $*" >&2; exit 1; }

udc() {
	if [ -n "${MEAD_UDC:-}" ]; then
		echo "$MEAD_UDC"
		return
	fi
	set -- $(ls /sys/class/udc 2>/dev/null)
	[ $# -eq 1 ] || die "$# device controllers in /sys/class/udc ($*): set MEAD_UDC"
	echo "$1"
}

up() {
	if [ ! -d $cfs/usb_gadget ]; then
		modprobe libcomposite 2>/dev/null || true
		mountpoint -q $cfs 2>/dev/null || mount -t configfs none $cfs
	fi
	[ -d $cfs/usb_gadget ] || die "$cfs/usb_gadget missing: load libcomposite"
	modprobe usb_f_fs 2>/dev/null || true
	if [ ! -d "$g" ]; then
		mkdir "$g"
		echo 0x1209 > "$g/idVendor"
		echo 0x4d45 > "$g/idProduct"
		echo 0x0200 > "$g/bcdDevice"
		echo 0x0200 > "$g/bcdUSB"
		mkdir -p "$g/strings/0x409"
		echo mead > "$g/strings/0x409/manufacturer"
		echo "mead MEA front-end (reference device)" > "$g/strings/0x409/product"
		echo "$serial" > "$g/strings/0x409/serialnumber"
		mkdir -p "$g/configs/c.1/strings/0x409"
		echo 100 > "$g/configs/c.1/MaxPower"
		echo "mead protocol v2" > "$g/configs/c.1/strings/0x409/configuration"
		mkdir "$g/functions/ffs.$ffs" || die "cannot make function ffs.$ffs: load usb_f_fs"
		ln -s "$g/functions/ffs.$ffs" "$g/configs/c.1/"
	fi
	mkdir -p "$ffsdir"
	if ! grep -q " $ffsdir functionfs " /proc/mounts; then
		mount -t functionfs "$ffs" "$ffsdir"
	fi
	echo "gadget $g ready; start mead-usb-device --gadget $name --ffs-name $ffs --ffs-dir $ffsdir"
}

down() {
	[ -d "$g" ] || return 0
	if [ -n "$(cat "$g/UDC" 2>/dev/null)" ]; then
		echo > "$g/UDC"
	fi
	if grep -q " $ffsdir functionfs " /proc/mounts; then
		umount "$ffsdir"
	fi
	rm -f "$g/configs/c.1/ffs.$ffs"
	rmdir "$g/configs/c.1/strings/0x409" "$g/configs/c.1" 2>/dev/null || true
	rmdir "$g/functions/ffs.$ffs" 2>/dev/null || true
	rmdir "$g/strings/0x409" 2>/dev/null || true
	rmdir "$g" || die "cannot remove $g (is mead-usb-device still running?)"
}

case "${1:-}" in
up) up ;;
down) down ;;
unplug)
	[ -d "$g" ] || die "no gadget $g"
	echo > "$g/UDC"
	;;
plug)
	[ -d "$g" ] || die "no gadget $g"
	u=$(udc)
	echo "$u" > "$g/UDC"
	;;
*)
	echo "usage: mead-gadget-setup.sh up|down|unplug|plug" >&2
	exit 2
	;;
esac
