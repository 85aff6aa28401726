#!/usr/bin/env bash
# Proves the MSRV: builds holdfast and runs its unit tests with Debian's
# rustc-web/cargo-web 1.85 (what the targeted Yocto releases can build),
# with and without the fleet feature.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh msrv
RUSTC=/usr/bin/rustc /usr/bin/cargo --version
RUSTC=/usr/bin/rustc /usr/bin/cargo test --locked --lib --bins --target-dir target/msrv
# The fleet feature's code too (its tests need an etcd cluster: test.sh).
RUSTC=/usr/bin/rustc /usr/bin/cargo check --locked --lib --bins --features fleet --target-dir target/msrv
