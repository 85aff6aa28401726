#!/usr/bin/env bash
# End-to-end on real systemd as PID 1 (systemd-nspawn), run as root:
#   tests/nspawn/run.sh bookworm|trixie
# holdfast is installed into a Debian rootfs exactly as the recipe installs
# it; a private dockerd on the host runs a real container whose lock dir is
# the same host directory bound into the nspawn machine's lock root. The
# machine's holdfast drives that engine through its bound socket (lock root
# at the same path on both sides, as bind sources are host paths).
set -uo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
suite=${1:?suite}
cd "$here"
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "PASS $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }

D=$(mktemp -d /tmp/hf-nspawn.XXXXXX)
R=$D/root
# The same path on the host and in the machine (bind sources the machine's
# holdfast gives the host's engine are host paths), under /run/holdfast where
# the unit may write.
LOCKS=/run/holdfast/nspawn-${D##*.}
# Stops the machine: a poweroff (extra arguments go to systemctl), then
# SIGKILL if it still runs after 10 s.
stop_machine() {
  if [ -n "${P1:-}" ]; then in_machine systemctl poweroff "$@" >/dev/null 2>&1 || true; fi
  for _ in $(seq 100); do kill -0 "$NSPID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$NSPID" 2>/dev/null || true
}
cleanup() {
  if [ -n "${NSPID:-}" ]; then stop_machine; fi
  [ -n "${DOCKER_HOST:-}" ] && docker rm -f hf-nspawn-app $(docker ps -aq --filter label=io.holdfast.app) >/dev/null 2>&1
  scripts/harness.sh down "$D/h" >/dev/null 2>&1
  umount -R "$R" 2>/dev/null || true
  rm -rf "$D" "$LOCKS"
}
trap cleanup EXIT
trap "exit 143" TERM INT

# The debug build cargo test made already: behaviour is the same, CI time is not.
cargo build --quiet --bins || exit 1
tests/nspawn/rootfs.sh "$suite" "$R" || exit 1

# Install as meta-layer/recipes-support/holdfast/holdfast.inc does.
install -m 0755 target/debug/holdfastd target/debug/holdfast "$R/usr/bin/"
install -D -m 0644 systemd/holdfast.service "$R/usr/lib/systemd/system/holdfast.service"
install -D -m 0644 systemd/org.holdfast.Supervisor1.conf "$R/usr/share/dbus-1/system.d/org.holdfast.Supervisor1.conf"
install -D -m 0644 systemd/holdfast.tmpfiles "$R/usr/lib/tmpfiles.d/holdfast.conf"
install -D -m 0644 systemd/holdfast.catalog "$R/usr/lib/systemd/catalog/holdfast.catalog"
install -d "$R/usr/lib/holdfast/config.d" "$R/etc/holdfast/config.d"
install -m 0644 systemd/holdfast.toml "$R/etc/holdfast/holdfast.toml"
printf 'lock_root = "%s"\nengine.socket = "/run/hf-docker.sock"\n' "$LOCKS" > "$R/etc/holdfast/config.d/10-test.toml"

# A private engine on the host, and the shared lock root.
scripts/harness.sh up "$D/h" --docker >/dev/null || exit 1
export DOCKER_HOST=unix://$D/h/docker/docker.sock
mkdir -p "$LOCKS/app1/main" "$D/marks" "$D/boot"
printf 'dtoverlay=vc4-kms-v3d\n' > "$D/boot/config.txt"
scripts/busybox-image.sh "$DOCKER_HOST" holdfast-test/busybox:1

setsid systemd-nspawn -D "$R" -b --register=no --keep-unit -M "hf$$" --console=read-only \
  --bind="$LOCKS" --bind="$D/h/docker/docker.sock:/run/hf-docker.sock" --bind="$D/boot:/mnt/boot" </dev/null >"$D/nspawn.log" 2>&1 &
NSPID=$!
for _ in $(seq 200); do P1=$(pgrep -P "$NSPID" -x systemd) && break; sleep 0.05; done
[ -n "${P1:-}" ] || { cat "$D/nspawn.log"; echo "1 passed, 1 failed"; exit 1; }
in_machine() { nsenter -t "$P1" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
for _ in $(seq 300); do
  state=$(in_machine systemctl is-system-running 2>/dev/null)
  case $state in running|degraded) break ;; esac
  sleep 0.1
done
echo "machine $suite is $state; $(in_machine systemctl --version | head -1)"
until_ok() { for _ in $(seq 200); do "$@" && return 0; sleep 0.05; done; return 1; }
inhibitors() { in_machine systemd-inhibit --list --no-pager 2>/dev/null; }

in_machine systemctl start holdfast
check "systemctl start holdfast reaches active" test "$(in_machine systemctl is-active holdfast)" = active
status=$(in_machine systemctl show -p StatusText --value holdfast)
check "STATUS= line ($status)" test "$status" = "no locks; no inhibitor"

# A lock from inside a real container.
docker run -d --name hf-nspawn-app --network none \
  --mount "type=bind,source=$LOCKS/app1/main,target=/tmp/balena" \
  --mount "type=bind,source=$LOCKS/app1/main,target=/tmp/resin" \
  holdfast-test/busybox:1 sleep 600 >/dev/null
docker exec hf-nspawn-app sh -c 'set -C; : > /tmp/balena/updates.lock'
check "systemd-inhibit --list shows holdfast's block inhibitor" \
  until_ok sh -c "$(declare -f in_machine inhibitors); P1=$P1; inhibitors | grep -E '^holdfast .* shutdown +update lock held by app1/main +block'"
check "holdfast status shows the lock" sh -c "$(declare -f in_machine); P1=$P1; in_machine holdfast status | grep -q '1 lock: app1/main; inhibitor held'"
check "STATUS= follows" test "$(in_machine systemctl show -p StatusText --value holdfast)" = "1 lock: app1/main; inhibitor held"

# Reload re-reads the config.
printf '[inhibit]\nwhat = ["shutdown", "sleep"]\n' > "$R/etc/holdfast/config.d/50-sleep.toml"
in_machine systemctl reload holdfast
check "systemctl reload re-reads config (inhibitor now shutdown:sleep)" \
  until_ok sh -c "$(declare -f in_machine inhibitors); P1=$P1; inhibitors | grep -q '^holdfast .* shutdown:sleep '"
rm "$R/etc/holdfast/config.d/50-sleep.toml"

# Structured journal entries.
journal=$(in_machine journalctl -u holdfast -o json --no-pager)
for id in 6f0a1c3e5b7d4e2f8a9b0c1d2e3f4a51 6f0a1c3e5b7d4e2f8a9b0c1d2e3f4a54; do
  check "journal has MESSAGE_ID $id from holdfast.service" \
    sh -c "printf '%s\n' \"\$0\" | grep \"\\\"MESSAGE_ID\\\":\\\"$id\\\"\" | grep -q '\"_SYSTEMD_UNIT\":\"holdfast.service\"'" "$journal"
done
check "journal entry carries SERVICE=app1/main" sh -c "printf '%s\n' \"\$0\" | grep -q '\"SERVICE\":\"app1/main\"'" "$journal"

# The live interface matches docs/.
in_machine busctl introspect --xml-interface org.holdfast.Supervisor1 /org/holdfast/Supervisor1 > "$D/live.xml"
check "busctl introspect matches docs/org.holdfast.Supervisor1.xml" \
  python3 tests/nspawn/same_interface.py "$D/live.xml" docs/org.holdfast.Supervisor1.xml
check "busctl introspect lists the members" grep -q 'name="TakeLocks"' "$D/live.xml"

# Policy: a non-root user may read but not call.
denied=$(in_machine setpriv --reuid=65534 --regid=65534 --clear-groups busctl call \
  org.holdfast.Supervisor1 /org/holdfast/Supervisor1 org.holdfast.Supervisor1 TakeLocks sas app1 0 2>&1)
check "non-root caller is denied ($denied)" sh -c 'echo "$0" | grep -qi "access denied"' "$denied"
check "non-root caller may read properties" sh -c "$(declare -f in_machine); P1=$P1; in_machine setpriv --reuid=65534 --regid=65534 --clear-groups busctl get-property org.holdfast.Supervisor1 /org/holdfast/Supervisor1 org.holdfast.Supervisor1 Locked | grep -q true"

if [ "$suite" = trixie ]; then
  # systemd >= 257: a block inhibitor binds root too.
  out=$(in_machine systemctl reboot 2>&1); rc=$?
  check "foreign root 'systemctl reboot' is refused while locked ($out)" test $rc -ne 0
  check "the machine did not reboot" test "$(in_machine systemctl is-active holdfast)" = active
fi

# The watchdog: a main loop that makes no progress gets restarted.
mkdir -p "$R/etc/systemd/system/holdfast.service.d"
printf '[Service]\nWatchdogSec=2s\n' > "$R/etc/systemd/system/holdfast.service.d/wd.conf"
in_machine systemctl daemon-reload
in_machine systemctl restart holdfast
pid=$(in_machine systemctl show -p MainPID --value holdfast)
sleep 3
check "holdfast feeds the watchdog while it makes progress" test "$(in_machine systemctl show -p MainPID --value holdfast)" = "$pid"
in_machine sh -c "kill -STOP $pid"
restarted() {
  local now; now=$(in_machine systemctl show -p MainPID --value holdfast)
  [ "$now" != "$pid" ] && [ "$now" != 0 ] && [ "$(in_machine systemctl is-active holdfast)" = active ]
}
check "SIGSTOPped holdfast is killed by the watchdog and restarted" until_ok restarted
check "NRestarts counted it" test "$(in_machine systemctl show -p NRestarts --value holdfast)" -ge 1
check "the journal says why" sh -c "$(declare -f in_machine); P1=$P1; in_machine journalctl -u holdfast --no-pager | grep -qi 'watchdog timeout'"
check "after the restart the inhibitor is back" \
  until_ok sh -c "$(declare -f in_machine inhibitors); P1=$P1; inhibitors | grep -q '^holdfast '"
rm -rf "$R/etc/systemd/system/holdfast.service.d"
in_machine systemctl daemon-reload

# Stop leaves no inhibitor behind (the app's lock is still there).
in_machine systemctl stop holdfast
check "systemctl stop leaves no inhibitor" sh -c "! { $(declare -f in_machine inhibitors); P1=$P1; inhibitors | grep -q '^holdfast '; }"
check "and the app's lock is untouched" test -e "$LOCKS/app1/main/updates.lock"

# holdfast's own reboot path: refused while locked, then it reboots the machine.
in_machine systemctl start holdfast
until_ok sh -c "$(declare -f in_machine inhibitors); P1=$P1; inhibitors | grep -q '^holdfast '"

# A managed app: holdfast runs it on the engine and stops it gracefully
# when the machine goes down (logind delay inhibitor + PrepareForShutdown).
cat > "$R/etc/holdfast/t.json" <<JSON
{"version": 1, "config": {"BALENA_HOST_CONFIG_gpu_mem": "64"}, "apps": {"svc": {"release": "r1", "services": {"main": {
  "image": "holdfast-test/busybox:1", "network_mode": "none", "volumes": ["$D/marks:/marks"],
  "command": ["sh", "-c", "trap 'echo graceful > /marks/main; exit 0' TERM; while :; do sleep 0.2; done"]}}}}}
JSON
out=$(in_machine holdfast apply /etc/holdfast/t.json 2>&1)
check "holdfast apply accepts a target ($out)" sh -c 'echo "$0" | grep -q "target accepted: svc release r1"' "$out"
managed() { docker ps --filter label=io.holdfast.app=svc --filter status=running -q | grep -q .; }
check "the managed container runs on the engine" until_ok managed
check "holdfast status shows the app applied" until_ok sh -c "$(declare -f in_machine); P1=$P1; in_machine holdfast status | grep -q '^app svc applied release r1'"
check "a logind delay inhibitor guards the graceful stop" \
  until_ok sh -c "$(declare -f in_machine inhibitors); P1=$P1; inhibitors | grep -qE '^holdfast .* shutdown +stop app containers gracefully +delay'"
cid=$(docker ps -q --filter label=io.holdfast.app=svc)
check "boot config is staged, not written, while an app holds a lock" sh -c \
  "$(declare -f in_machine); P1=$P1; in_machine holdfast status | grep -q 'pending: reboot when unlocked (staged boot config' && ! grep -q gpu_mem '$D/boot/config.txt'"

out=$(in_machine holdfast reboot 2>&1); rc=$?
check "holdfast reboot is refused while locked (exit $rc: $out)" test $rc -eq 75
if [ "$suite" = trixie ]; then
  # systemd 257: our own block inhibitor would refuse our own request; holdfast
  # releases it first. Forced through the app's lock.
  out=$(in_machine holdfast reboot --force 2>&1)
else
  # Reboot when the locks clear: nothing happens while the app holds its lock.
  out=$(in_machine holdfast reboot --when-unlocked 2>&1)
  sleep 1
  check "holdfast reboot --when-unlocked waits while locked ($out)" \
    sh -c "$(declare -f in_machine); P1=$P1; in_machine holdfast status | grep -q 'pending: reboot when unlocked (requested'"
  docker exec hf-nspawn-app rm /tmp/balena/updates.lock
fi
rebooted() { ! kill -0 "$NSPID" 2>/dev/null; }
for _ in $(seq 600); do rebooted && break; sleep 0.1; done
check "holdfast reboot rebooted the machine ($out)" rebooted
# A machine that did not reboot is stopped, so the run ends with its FAILs.
rebooted || stop_machine --force --force
wait "$NSPID"; code=$?
check "systemd-nspawn reports a reboot (exit $code)" test "$code" -eq 133
state=$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$cid")
check "the managed container was stopped gracefully before the reboot ($state)" \
  sh -c 'test "$0" = "exited 0" && grep -q graceful "$1/marks/main"' "$state" "$D"
check "the staged boot config was written to config.txt for that reboot ($(tr '\n' ' ' < "$D/boot/config.txt"))" \
  test "$(cat "$D/boot/config.txt")" = "$(printf 'dtoverlay=vc4-kms-v3d\ngpu_mem=64')"
check "the container holdfast does not manage was not touched" \
  test "$(docker inspect -f '{{.State.Status}}' hf-nspawn-app)" = running
P1="" NSPID=""

echo "nspawn $suite: $pass passed, $fail failed"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
