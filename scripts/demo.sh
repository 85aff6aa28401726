#!/usr/bin/env bash
# Demo: holdfast supervising real containers and honouring an update lock,
# on a private D-Bus system bus with a real systemd-logind, a private dockerd
# and a private registry. Sets up what is missing first (scripts/setup.sh).
# Run as root.
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
scripts/harness.sh registry "$D"
# shellcheck disable=SC1091
. "$D/env"
reg=127.0.0.1:$(cat "$D/registry/port")
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
hf() { "$bin/holdfast" "$@"; }
containers() { docker ps -a --filter label=io.holdfast.app --format '{{.Names}}  {{.Image}}  {{.Status}}'; }
wait_state() { # wait_state APP STATE RELEASE
  for _ in $(seq 600); do
    hf status --json | python3 -c "import json,sys; a=json.load(sys.stdin)['apps'].get('$1',{}); sys.exit(not (a.get('state')=='$2' and a.get('release')=='$3'))" && return 0
    sleep 0.05
  done
  echo "timed out waiting for $1 $2 $3" >&2; return 1
}

step "images v1 and v2 of the app, pushed to a local registry ($reg)"
scripts/busybox-image.sh "$DOCKER_HOST" holdfast-demo/busybox:1
for v in 1 2; do
  docker tag holdfast-demo/busybox:1 "$reg/app1:$v"
  docker push -q "$reg/app1:$v" >/dev/null
  docker rmi "$reg/app1:$v" >/dev/null
done
echo "pushed $reg/app1:1 and $reg/app1:2 (not present in the engine: holdfast pulls them)"

cat > "$D/holdfast.toml" <<CONF
lock_root = "$D/locks"
state_dir = "$D/state"
config_dirs = []
engine.socket = "$D/docker/docker.sock"
target.file = "$D/state/target.json"
api.socket = "$D/api.sock"
config_json = "$D/config.json"
CONF
HOLDFAST_LOG_TARGET=stderr "$bin/holdfastd" --config "$D/holdfast.toml" 2>"$D/holdfastd.log" &
hpid=$!
for _ in $(seq 200); do hf status >/dev/null 2>&1 && break; sleep 0.02; done

target() { # target RELEASE WORKER_TAG
  cat <<JSON
{"version": 1, "apps": {"app1": {"release": "$1", "services": {
  "main":   {"image": "$reg/app1:1", "network_mode": "none", "stop_timeout": 2,
             "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]},
  "worker": {"image": "$reg/app1:$2", "network_mode": "none", "stop_timeout": 2, "depends_on": ["main"],
             "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]}}}}}
JSON
}

step "holdfast apply: release r1 (main + worker) is pulled and started"
target r1 1 > "$D/r1.json"
hf apply "$D/r1.json"
wait_state app1 applied r1
hf status
containers

main=$(docker ps -q --filter label=io.holdfast.service=main)
step "inside main, the app takes its update lock: set -C; : > /tmp/balena/updates.lock"
docker exec "$main" sh -c 'set -C; : > $BALENA_APP_LOCK_PATH && echo locked'

step "release r2 changes only worker; it is downloaded, but applying waits for the lock"
target r2 2 > "$D/r2.json"
hf apply "$D/r2.json"
wait_state app1 waiting r2
hf status
containers
docker image inspect "$reg/app1:2" >/dev/null && echo "pulled while locked: $reg/app1:2"
echo "logind inhibitors (shutdowns wait while locked):"
systemd-inhibit --list --no-pager | grep -E '^ *WHO|holdfast' || true

step "the app releases its lock: the update applies at once (inotify, no polling)"
docker exec "$main" rm /tmp/balena/updates.lock
wait_state app1 applied r2
hf status
containers
echo "main kept its container (its config did not change); worker was replaced."

step "a bad target is rejected with the JSON path; r2 stays in force"
echo '{"version": 1, "apps": {"app1": {"release": "r3", "services": {"main": {"imgae": "x"}}}}}' > "$D/bad.json"
hf apply "$D/bad.json" || echo "(exit $?)"

step "what holdfastd logged"
grep -E 'accepted|pulling|waits|cleared|starting|stopping|is at release|rejected' "$D/holdfastd.log"
