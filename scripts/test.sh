#!/usr/bin/env bash
# The whole test suite: sets up what is missing, then lint, unit and
# integration tests on real components (dbus-daemon, systemd-logind,
# journald, dockerd, lock clients). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets
