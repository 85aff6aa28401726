#!/usr/bin/env bash
# The whole test suite, as CI runs it. Sets up what is missing, then:
# fmt, clippy, unit + real-component tests (dbus-daemon, logind, journald,
# dockerd, lock clients, an etcd cluster for the fleet feature), the Yocto
# layer checks, the MSRV build with rustc-web 1.85, ARM cross builds with
# tests under qemu-user, the systemd-nspawn end-to-end tests on systemd
# 252 and 257, and the gooseBit (hawkBit DDI server) fixture. Run as root.
#   test.sh --quick   only fmt, clippy and cargo test
set -euo pipefail
cd "$(dirname "$0")/.."
quick=false
[ "${1:-}" = --quick ] && quick=true

# A run starts from a clean clone: incremental caches (several GB) would
# never be reused.
export CARGO_INCREMENTAL=0
stages=0
free() { df -h --output=avail . | tail -1 | tr -d ' '; }
# Each stage is bounded (the whole run takes about 25 minutes on 2 cores)
# so a hang names its stage instead of using up CI's time.
stage() {
  echo; echo "######## $* (disk free: $(free))"
  timeout -k 60 1800 "$@" || { echo "stage failed ($?): $*"; return 1; }
  stages=$((stages + 1))
}
# What only one stage builds (the MSRV and cross target dirs) goes once the
# stage passed: later stages never read it, and CI's disk is not ours alone.
done_with() { rm -rf "$@"; }

if $quick; then scripts/setup.sh; else scripts/setup.sh msrv cross nspawn layer hawkbit; fi
stage cargo fmt --all -- --check
stage cargo clippy --all-targets --quiet -- -D warnings
stage cargo clippy --all-targets --quiet --features fleet -- -D warnings
stage cargo test --all-targets
# The fleet feature: its unit tests, a real three-member etcd cluster
# (about 20 s) and one with TLS and client certificates (about 2 s); the
# other integration tests do not change with it.
stage cargo test --features fleet --lib
stage cargo test --features fleet --test fleet_lock
stage cargo test --features fleet --test fleet_tls
# hawkBit's DDI where gooseBit has none of it (cancelAction, sha256,
# GatewayToken), served by the test; a real dockerd (about 10 s).
stage cargo test --features fleet --test hawkbit_ddi
# A hostile DDI server written in the test (pacing, disk, token, escaping,
# a crashed read, the lock path while a release is read; about 40 s).
stage cargo test --features fleet --test hostile_hawkbit
if ! $quick; then
  stage scripts/check-layer.sh
  stage tests/goosebit_fixture.sh
  # Releases from gooseBit end to end (about a minute): needs its venv.
  stage cargo test --features fleet --test hawkbit
  # The same over https with a target token (about 25 s).
  stage cargo test --features fleet --test hawkbit_tls
  stage scripts/msrv.sh
  done_with target/msrv
  stage scripts/cross.sh
  done_with target/cross
  # Bounded: a machine that hangs must fail its stage, not CI's clock.
  stage timeout -k 60 900 tests/nspawn/run.sh bookworm
  stage timeout -k 60 900 tests/nspawn/run.sh trixie
fi
echo
echo "test.sh: every stage passed (disk free: $(free))"
echo "$stages passed, 0 failed"
