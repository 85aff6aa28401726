#!/usr/bin/env bash
# Cross-builds holdfast for aarch64 and armv7 with Debian's rustc-web (the
# MSRV, 1.85) and private target std sysroots, runs the unit tests of both
# under qemu-user-static, and runs the aarch64 holdfastd under qemu-user
# against a private bus + logind until it has taken and dropped an inhibitor
# for a lock. Prints binary sizes and build times. Run as root.
#   cross.sh [aarch64|armv7 ...]     (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh cross
root=$PWD
cache=$root/.cache/cross
V=$(sed -n 's/^RUST_WEB_VERSION=//p' scripts/setup.sh)
targets=("${@:-aarch64 armv7}")
[ $# -gt 0 ] || targets=(aarch64 armv7)

# triple deb-arch gcc-prefix qemu
info() {
  case $1 in
    aarch64) echo "aarch64-unknown-linux-gnu arm64 aarch64-linux-gnu qemu-aarch64-static" ;;
    armv7) echo "armv7-unknown-linux-gnueabihf armhf arm-linux-gnueabihf qemu-arm-static" ;;
    *) echo "cross: unknown target $1" >&2; exit 2 ;;
  esac
}

# The target std, unpacked privately: no dpkg --add-architecture (it breaks
# qemu -L and apt on this machine; see ../shared/notes/yocto.md).
sysroot() {
  local arch=$1 dir=$cache/sysroot-$1
  if [ ! -d "$dir/usr/lib/rustlib" ]; then
    mkdir -p "$cache/lists/partial" "$cache/debs" "$dir"
    local opts=(-o "Dir::State::Lists=$cache/lists" -o "APT::Architectures::=amd64"
                -o "APT::Architectures::=arm64" -o "APT::Architectures::=armhf")
    apt-get "${opts[@]}" update -qq 2>/dev/null || true
    (cd "$cache/debs" && apt-get "${opts[@]}" download -qq \
      "libstd-rust-web-dev:$arch=$V" "libstd-rust-web-1.85:$arch=$V" 2>/dev/null)
    for deb in "$cache/debs/"*"_$arch.deb"; do dpkg -x "$deb" "$dir"; done
  fi
  echo "$dir/usr"
}

export RUSTC=/usr/bin/rustc
cargo=/usr/bin/cargo
for t in "${targets[@]}"; do
  read -r triple arch gcc qemu <<<"$(info "$t")"
  up=$(echo "$triple" | tr 'a-z-' 'A-Z_')
  export "CARGO_TARGET_${up}_LINKER=$gcc-gcc"
  export "CARGO_TARGET_${up}_RUSTFLAGS=--sysroot $(sysroot "$arch")"
  export "CARGO_TARGET_${up}_RUNNER=$qemu -L /usr/$gcc"
  # ring (rustls, feature fleet) builds C and assembly with the cc crate:
  # name the cross compiler rather than rely on cc's guess of the prefix.
  low=$(echo "$triple" | tr - _)
  export "CC_${low}=$gcc-gcc" "AR_${low}=$gcc-ar"

  # The release build (LTO) is what ships; it is measured on aarch64, the
  # size target. Debug builds share their dependencies with the test build.
  profile=debug
  [ "$t" = aarch64 ] && profile=release
  echo "== $triple: $profile build"
  start=$(date +%s)
  if [ $profile = release ]; then
    $cargo build --locked --release --bins --target "$triple" --target-dir target/cross
  else
    $cargo build --locked --bins --target "$triple" --target-dir target/cross
  fi
  secs=$(( $(date +%s) - start ))
  for bin in holdfastd holdfast; do
    f=target/cross/$triple/$profile/$bin
    "$gcc-strip" -o "$f.stripped" "$f"
    echo "size $triple $bin $(stat -c %s "$f.stripped") bytes stripped ($profile); build ${secs}s"
  done

  echo "== $triple: unit tests under $qemu"
  start=$(date +%s)
  $cargo test --locked --lib --bins --target "$triple" --target-dir target/cross
  echo "unit tests $triple: build and run $(( $(date +%s) - start ))s"
done

if printf '%s\n' "${targets[@]}" | grep -qx aarch64; then
  echo "== aarch64 holdfastd under qemu-user on a private bus + logind"
  D=$(mktemp -d /tmp/hf-cross.XXXXXX)
  trap 'kill "${hpid:-}" 2>/dev/null; scripts/harness.sh down "$D" >/dev/null 2>&1; rm -rf "$D"' EXIT
  scripts/harness.sh up "$D"
  . "$D/env"
  printf 'lock_root = "%s/locks"\nstate_dir = "%s/state"\nconfig_dirs = []\n' "$D" "$D" > "$D/holdfast.toml"
  mkdir -p "$D/locks/app1/main"
  file target/cross/aarch64-unknown-linux-gnu/release/holdfastd | cut -d, -f1-2
  HOLDFAST_LOG_TARGET=stderr qemu-aarch64-static -L /usr/aarch64-linux-gnu \
    target/cross/aarch64-unknown-linux-gnu/release/holdfastd --config "$D/holdfast.toml" 2>"$D/log" &
  hpid=$!
  inhibitors() { busctl --system call org.freedesktop.login1 /org/freedesktop/login1 \
    org.freedesktop.login1.Manager ListInhibitors; }
  waitfor() { for _ in $(seq 500); do eval "$1" && return 0; sleep 0.02; done; cat "$D/log"; return 1; }
  waitfor 'busctl --system status org.holdfast.Supervisor1 >/dev/null 2>&1'
  ( set -C; : > "$D/locks/app1/main/updates.lock" )
  waitfor 'inhibitors | grep -q "holdfast"'
  inhibitors
  rm "$D/locks/app1/main/updates.lock"
  waitfor '! inhibitors | grep -q "holdfast"'
  echo "aarch64 holdfastd took and dropped the inhibitor:"
  grep -E "inhibitor (taken|released)" "$D/log"
fi
echo "cross checks passed"
