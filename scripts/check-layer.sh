#!/usr/bin/env bash
# Yocto layer and systemd integration checks that need no oe-core:
# crates.inc freshness, BitBake syntax parse, oelint-adv for scarthgap and
# wrynose, systemd-analyze verify of the unit, the D-Bus policy loaded by a
# real dbus-daemon. (The full checks against oe-core: scripts/check-yocto.sh.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh layer
py=.cache/venv/bin

echo "== holdfast-crates.inc matches Cargo.lock"
python3 scripts/gen-crates-inc.py --check

echo "== BitBake parse"
$py/python scripts/layercheck/parse.py

for rel in scarthgap wrynose; do
  echo "== oelint-adv --release $rel"
  # inconspaces: the generated crates.inc has oe-core's own 'SRC_URI += " \' form.
  $py/oelint-adv --release "$rel" --hide info --quiet \
    --suppress oelint.vars.homepageping --suppress oelint.vars.inconspaces \
    meta-layer/recipes-*/*/*.bb
done

tmp=$(mktemp -d)
trap 'kill "$(cat "$tmp/dbus.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$tmp"' EXIT

echo "== systemd-analyze verify holdfast.service"
cargo build --quiet --bin holdfastd
sed "s|/usr/bin/holdfastd|$PWD/target/debug/holdfastd|" systemd/holdfast.service > "$tmp/holdfast.service"
out=$(systemd-analyze verify "$tmp/holdfast.service" 2>&1 || true)
if [ -n "$out" ]; then echo "$out"; exit 1; fi

echo "== D-Bus policy loads in dbus-daemon"
cat > "$tmp/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$tmp/bus</listen>
  <include>$PWD/systemd/org.holdfast.Supervisor1.conf</include>
</busconfig>
CONF
dbus-daemon --config-file="$tmp/bus.conf" --fork --print-pid=3 --nosyslog 3>"$tmp/dbus.pid"

echo "layer checks passed"
