#!/usr/bin/env bash
# Proves the MSRV: builds holdfast and runs its unit tests with Debian's
# rustc-web/cargo-web 1.85 (what the targeted Yocto releases can build).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh msrv
RUSTC=/usr/bin/rustc /usr/bin/cargo --version
RUSTC=/usr/bin/rustc /usr/bin/cargo test --locked --lib --bins --target-dir target/msrv
