#!/usr/bin/env bash
# Demo: holdfast supervising a real container's update lock, on a private
# D-Bus system bus with a real systemd-logind and a private dockerd.
# Sets up what is missing first (scripts/setup.sh). Run as root.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
scripts/setup.sh
cargo build --release --quiet --bins
bin=$here/target/release

D=$(mktemp -d /tmp/hf-demo.XXXXXX)
cleanup() {
  [ -n "${hpid:-}" ] && kill "$hpid" 2>/dev/null && wait "$hpid" 2>/dev/null
  scripts/harness.sh down "$D" >/dev/null 2>&1 || true
  rm -rf "$D"
}
trap cleanup EXIT
scripts/harness.sh up "$D" --docker
# shellcheck disable=SC1091
. "$D/env"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cat > "$D/holdfast.toml" <<CONF
lock_root = "$D/locks"
state_dir = "$D/state"
config_dirs = []
CONF
mkdir -p "$D/locks/app1/main"
HOLDFAST_LOG_TARGET=stderr "$bin/holdfastd" --config "$D/holdfast.toml" 2>"$D/holdfastd.log" &
hpid=$!
for _ in $(seq 200); do "$bin/holdfast" status >/dev/null 2>&1 && break; sleep 0.02; done

step "holdfastd is up (private bus, real logind)"
"$bin/holdfast" status

step "a real container; its service lock dir is bind-mounted at /tmp/balena and /tmp/resin"
scripts/busybox-image.sh "$DOCKER_HOST" holdfast-demo/busybox:1
docker run -d --name hf-demo-app1-main --network none \
  --mount "type=bind,source=$D/locks/app1/main,target=/tmp/balena" \
  --mount "type=bind,source=$D/locks/app1/main,target=/tmp/resin" \
  holdfast-demo/busybox:1 sh -c 'sleep 600' >/dev/null
docker ps --format '{{.Names}}  {{.Image}}  {{.Status}}'

step "the app takes its lock inside the container: set -C; : > /tmp/balena/updates.lock"
docker exec hf-demo-app1-main sh -c 'set -C; : > /tmp/balena/updates.lock'
sleep 0.1
"$bin/holdfast" status
step "logind now lists holdfast's block inhibitor: shutdowns wait"
systemd-inhibit --list --no-pager

step "holdfast may not take the app's locks now (all-or-nothing; exit 75)"
"$bin/holdfast" take app1 || echo "(exit $?)"

step "the app releases its lock"
docker exec hf-demo-app1-main rm /tmp/balena/updates.lock
sleep 0.1
"$bin/holdfast" status
systemd-inhibit --list --no-pager

step "now holdfast takes every lock of app1 itself (uid 65534); the app's attempt fails"
"$bin/holdfast" take app1
docker exec hf-demo-app1-main sh -c 'set -C; : > /tmp/balena/updates.lock' 2>&1 || echo "(the app knows an update is coming)"
ls -ln "$D/locks/app1/main"
"$bin/holdfast" release app1

step "what holdfastd logged"
cat "$D/holdfastd.log"
docker rm -f hf-demo-app1-main >/dev/null
