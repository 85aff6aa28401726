#!/usr/bin/env bash
# What the fleet feature costs an idle device (docs/performance.md): a
# release holdfastd built with `--features fleet`, a private bus and logind
# (harness.sh up), gooseBit on loopback giving a 30 s poll interval, no
# target. After start-up settles it reads VmRSS (and RssAnon), then counts
# the CPU time (/proc/PID/schedstat of every thread) over POLLS polls and
# divides by the polls gooseBit saw (its log). Prints one Markdown table
# row per measurement.
#   scripts/fleet-idle.sh [POLLS]     (default 4: about two and a half minutes)
# Needs root and `scripts/setup.sh hawkbit`.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
polls=${1:-4}
D=$(mktemp -d /tmp/hf-fleet-idle-XXXXXX)
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true
  "$here/scripts/harness.sh" down "$D" >/dev/null 2>&1 || true
  rm -rf "$D"
}
trap cleanup EXIT

(cd "$here" && cargo build --release --quiet --features fleet --bin holdfastd)
bin=$here/target/release/holdfastd
"$here/scripts/harness.sh" up "$D" >/dev/null
HARNESS_GOOSEBIT_POLL=00:00:30 HARNESS_GOOSEBIT_ACCESS_LOG=1 "$here/scripts/harness.sh" goosebit "$D" >/dev/null
url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$D/goosebit/admin.json")
mkdir -p "$D/state" "$D/config.d"
cat > "$D/holdfast.toml" <<CONF
lock_root = "$D/locks"
state_dir = "$D/state"
config_dirs = ["$D/config.d"]
target.file = "$D/state/target.json"
engine.socket = "$D/docker/docker.sock"
engine.registry_auth = "$D/registry-auth.json"
api.socket = "$D/api.sock"
config_json = "$D/boot/config.json"
boot.config_txt = "$D/boot/config.txt"
[fleet]
id = "hf-idle-1"
[fleet.hawkbit]
url = "$url"
CONF
DBUS_SYSTEM_BUS_ADDRESS="unix:path=$D/system_bus_socket" HOLDFAST_LOG_TARGET=stderr \
  "$bin" --config "$D/holdfast.toml" 2> "$D/holdfastd.log" &
pid=$!
polls_seen() { grep -c "\"GET /DEFAULT/controller/v1/hf-idle-1 HTTP" "$D/goosebit/log" || true; }
cpu_ns() { cat /proc/$pid/task/*/schedstat | awk '{s += $1} END {print s}'; }
# Start-up, the first poll, configData and the poll right after it.
deadline=$((SECONDS + 30))
until [ "$(polls_seen)" -ge 2 ]; do
  [ $SECONDS -lt $deadline ] || { echo "fleet-idle: holdfastd never polled twice" >&2; tail "$D/holdfastd.log" >&2; exit 1; }
  sleep 0.2
done
sleep 3
rss=$(awk '/^VmRSS/ {print $2}' /proc/$pid/status)
anon=$(awk '/^RssAnon/ {print $2}' /proc/$pid/status)
first=$(polls_seen)
start_ns=$(cpu_ns)
start_s=$SECONDS
until [ "$(polls_seen)" -ge $((first + polls)) ]; do
  [ $((SECONDS - start_s)) -lt $((polls * 40)) ] || { echo "fleet-idle: polls stopped" >&2; exit 1; }
  sleep 0.5
done
sleep 1
end_ns=$(cpu_ns)
n=$(( $(polls_seen) - first ))
rss_after=$(awk '/^VmRSS/ {print $2}' /proc/$pid/status)
size=$(stat -c %s "$bin")
stripped=$(mktemp /tmp/hf-fleet-idle-bin-XXXXXX)
strip -o "$stripped" "$bin"
ssize=$(stat -c %s "$stripped")
rm -f "$stripped"
echo "| idle VmRSS after start-up (RssAnon) | ${rss} kB (${anon} kB) |"
echo "| VmRSS after $n polls | ${rss_after} kB |"
echo "| CPU per poll (30 s interval, $n polls, $(( SECONDS - start_s )) s) | $(awk -v c=$((end_ns - start_ns)) -v n=$n 'BEGIN {printf "%.2f ms", c / n / 1e6}') |"
echo "| holdfastd --features fleet, stripped | ${ssize} B |"
