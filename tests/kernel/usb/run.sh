#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs tests/kernel/usb/guest.sh in the kernel test guest: builds usb-check
# against this tree's build first (it links tests/lib's harness), then boots
# the guest with the kernel test harness's runner.
#
#   tests/kernel/usb/run.sh [BUILD_DIR]
#
# MEAD_GUEST_RUNNER: the runner (default tests/kernel/run-in-guest.sh here,
# else /work/wt-kernel/tests/kernel/run-in-guest.sh); MEAD_USB_DEVICE: the
# mead-usb-device binary; MEAD_TEST_KEEP: a folder that keeps the logs.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
runner=${MEAD_GUEST_RUNNER:-}
if [ -z "$runner" ]; then
	runner=$src/tests/kernel/run-in-guest.sh
	[ -x "$runner" ] || runner=/work/wt-kernel/tests/kernel/run-in-guest.sh
fi
[ -x "$runner" ] || { echo "run.sh: no guest runner ($runner)" >&2; exit 77; }
[ -f "$build/tests/lib/libmeadtest.a" ] || { echo "run.sh: build $build first (ninja -C $build)" >&2; exit 2; }

mkdir -p "$build/tests-kernel-usb"
cc -std=gnu17 -O2 -g -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -D_GNU_SOURCE \
	-I"$src" -I"$src/include" "$here/usb-check.c" "$build/tests/lib/libmeadtest.a" -ldl -lm \
	-o "$build/tests-kernel-usb/usb-check"

keep=
[ -n "${MEAD_TEST_KEEP:-}" ] && keep="--out $MEAD_TEST_KEEP"
cd "$src"
# shellcheck disable=SC2086
exec "$runner" --modules libcomposite,usb_f_fs,dummy_hcd --timeout 400 $keep -- \
	sh tests/kernel/usb/guest.sh "$build" ${MEAD_USB_DEVICE:-}
