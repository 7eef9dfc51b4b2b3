#!/bin/sh
# Installs what mead needs to build, test and run on Debian 12, as root.
# chromium: the live view's browser test loads the page in it, headless;
# python3-pil: the resize is checked against Pillow itself.
# slurm-wlm, munge: the slurm suite runs a sweep on a one-machine cluster it starts.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
  build-essential meson ninja-build pkg-config \
  libzmq3-dev libyaml-dev libusb-1.0-0-dev libcomedi-dev zlib1g-dev libsystemd-dev \
  libcmocka-dev umockdev libumockdev-dev \
  python3 python3-zmq python3-numpy python3-pil \
  libhdf5-dev python3-h5py python3-hdmf python3-neo python3-yaml \
  rt-tests valgrind clang libclang-rt-14-dev \
  qemu-system-x86 busybox-static kmod libcomedi0 \
  chromium \
  slurm-wlm munge

# The kernel suite (tests/kernel/) boots Debian's own kernel under QEMU.  The
# image is unpacked into a cache rather than installed: installing
# linux-image-amd64 would run update-initramfs and the bootloader hooks and
# change what this machine boots next, and in a container it fails in those
# hooks.  The cache holds the version linux-image-amd64 points at now; a
# second run with that version in place downloads nothing.
kernel_cache=/var/cache/mead/kernel
kpkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1)
if [ -z "$kpkg" ]; then
  echo "install-deps: cannot tell which kernel image linux-image-amd64 depends on" >&2
  exit 1
fi
kver=${kpkg#linux-image-}
if [ ! -s "$kernel_cache/$kver/lib/modules/$kver/modules.dep" ] || [ ! -s "$kernel_cache/$kver/boot/vmlinuz-$kver" ]; then
  mkdir -p "$kernel_cache"
  rm -rf "$kernel_cache"/.download.*
  dl=$(mktemp -d "$kernel_cache/.download.XXXXXX")
  # apt drops privileges to _apt for downloads; it needs to write here
  chown _apt "$dl" 2>/dev/null || true
  (cd "$dl" && apt-get download "$kpkg")
  rm -rf "$kernel_cache/$kver.new"
  dpkg-deb -x "$dl"/*.deb "$kernel_cache/$kver.new"
  depmod -b "$kernel_cache/$kver.new" "$kver"
  rm -rf "$dl" "$kernel_cache/$kver"
  mv "$kernel_cache/$kver.new" "$kernel_cache/$kver"
fi
ln -sfn "$kver" "$kernel_cache/current"
# older versions left behind by a kernel update
for d in "$kernel_cache"/*; do
  case "${d##*/}" in
    "$kver" | current) ;;
    *) rm -rf "$d" ;;
  esac
done
