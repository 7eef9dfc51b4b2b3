#!/bin/sh
# SPDX-License-Identifier: MIT
# mead-driver-comedi against comedi_test in the kernel test guest, the
# driver module driven directly (tests/drivers/comedi_stream_check.c):
#
#   tests/kernel/run-in-guest.sh --modules comedi_test -- tests/kernel/comedi/stream.sh [SCENARIO ...]
#
# SCENARIO: rates stream loopback underrun stop leads removal (default: all).
# Exit 77 outside the guest or without the built check.
build=${MEAD_BUILD_ROOT:-$(dirname "$0")/../../../build}
check=$build/tests/drivers/comedi-stream-check
if [ -z "$MEAD_GUEST" ]; then
	echo "runs inside the kernel test guest: tests/kernel/run-in-guest.sh --modules comedi_test -- $0 $*"
	exit 77
fi
if [ ! -x "$check" ]; then
	echo "$check is not built (ninja -C $build)"
	exit 77
fi
export MEAD_DRIVER_PATH=${MEAD_DRIVER_PATH:-$build/drivers}
exec "$check" "$@"
