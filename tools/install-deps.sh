#!/bin/sh
# Installs what mead needs to build, test and run on Debian 12, as root.
# chromium: the live view's browser test loads the page in it, headless.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
  build-essential meson ninja-build pkg-config \
  libzmq3-dev libyaml-dev libusb-1.0-0-dev libcomedi-dev zlib1g-dev libsystemd-dev \
  libcmocka-dev umockdev libumockdev-dev \
  python3 python3-zmq python3-numpy \
  rt-tests valgrind clang libclang-rt-14-dev \
  chromium
