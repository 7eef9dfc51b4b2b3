#!/bin/sh
# Runs one command in the kernel test guest: Debian's kernel under QEMU, the
# host's / read-only, chrooted in it as root, with the kernel modules asked
# for loaded first and removed after (docs/kernel-tests.md).
#
#   tests/kernel/run-in-guest.sh [--modules A,B,...] [--module 'NAME PARAM=V ...']
#                                [--timeout S] [--out DIR] [--keep] [--quiet] [-v] [--] CMD [ARG ...]
#
# CMD runs in the current folder, which is read-only in the guest: write to
# $MEAD_TEST_OUT (a folder of the host, kept with --out or --keep) or /tmp
# (the guest's memory).  The exit status is CMD's; 77 when a piece is
# missing (it says which), 124 when the guest stopped answering.
# MEAD_BUILD_ROOT names the build folder (default: build/ of the source tree).
exec /usr/bin/python3 "$(dirname "$0")/guest.py" run "$@"
