#!/usr/bin/env bash
# rootfs.sh SUITE DIR - a minimal Debian SUITE (bookworm: systemd 252,
# trixie: systemd 257) with systemd as init, unpacked into DIR. Built with
# debootstrap once and cached as a tarball under /var/cache/holdfast-test.
set -euo pipefail
suite=$1 dir=$2
cache=${HOLDFAST_ROOTFS_CACHE:-/var/cache/holdfast-test}
tarball=$cache/rootfs-$suite.tar.zst
mkdir -p "$cache" "$dir"
if [ ! -s "$tarball" ]; then
  tmp=$(mktemp -d "$cache/build-$suite.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,libpam-systemd \
    "$suite" "$tmp/root" http://deb.debian.org/debian >"$tmp/log" 2>&1 \
    || { tail -20 "$tmp/log" >&2; exit 1; }
  rm -rf "$tmp/root/var/cache/apt/archives/"*.deb
  tar -C "$tmp/root" --zstd -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
fi
tar -C "$dir" --zstd -xf "$tarball"
