#!/usr/bin/env bash
# Private real components for one test run, sharing nothing with others:
#   harness.sh up DIR [--docker]   dbus-daemon + systemd-logind (+ dockerd),
#                                  tmpfs lock root at DIR/locks; writes DIR/env
#   harness.sh restart-logind DIR  kill logind and start a new one
#   harness.sh restart-bus DIR     kill dbus-daemon and logind, start both again
#   harness.sh restart-docker DIR  stop dockerd (containers stop with it), start it again
#   harness.sh remount-locks DIR ro|rw
#                                  make the lock root read-only, or writable again
#   harness.sh registry DIR        a docker-registry on a free loopback port
#                                  (written to DIR/registry/port)
#   harness.sh registry-auth DIR USER PASSWORD
#                                  one that wants USER/PASSWORD (htpasswd, basic
#                                  auth); port in DIR/registry-auth/port
#   harness.sh goosebit DIR        a gooseBit (hawkBit DDI server, venv from
#                                  `setup.sh hawkbit`) on a free loopback port:
#                                  fresh sqlite database migrated with aerich,
#                                  artifacts, log and settings under DIR/goosebit;
#                                  port in DIR/goosebit/port, URL, tenant and
#                                  admin login in DIR/goosebit/admin.json
#                                  (drive it with scripts/goosebit.py);
#                                  HARNESS_GOOSEBIT_POLL (poll interval it gives,
#                                  default 00:00:01), HARNESS_GOOSEBIT_TENANT
#                                  (default DEFAULT), HARNESS_GOOSEBIT_DEVICE_AUTH
#                                  (unset: devices need no token; setup, lax or
#                                  strict: gooseBit's TargetToken modes),
#                                  HARNESS_GOOSEBIT_TLS=1 (https: a CA and a
#                                  certificate for 127.0.0.1 made by openssl
#                                  in DIR/goosebit/tls, ca.pem named as
#                                  ca_file in admin.json),
#                                  HARNESS_GOOSEBIT_ACCESS_LOG=1 (a line per
#                                  request in DIR/goosebit/log)
#   harness.sh down DIR            stop everything, unmount
# Needs root (mounts, logind). Source DIR/env for DBUS_SYSTEM_BUS_ADDRESS.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:?usage: harness.sh up|down|restart-logind DIR}
D=${2:?DIR}
mkdir -p "$D"
D=$(cd "$D" && pwd)
bus="unix:path=$D/system_bus_socket"

wait_for() { # wait_for SECONDS CMD...
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || { echo "harness: timed out waiting for: $*" >&2; return 1; }
    sleep 0.02
  done
}

has_name() {
  DBUS_SYSTEM_BUS_ADDRESS=$bus busctl --system call org.freedesktop.DBus /org/freedesktop/DBus \
    org.freedesktop.DBus NameHasOwner s "$1" | grep -q true
}

start_bus() {
  rm -f "$D/system_bus_socket"
  dbus-daemon --config-file="$D/bus.conf" --fork --print-pid=3 --nosyslog 3>"$D/dbus.pid"
  wait_for 5 test -S "$D/system_bus_socket"
}

start_logind() {
  rm -f "$D/logind.pid"
  DBUS_SYSTEM_BUS_ADDRESS=$bus setsid unshare --mount --propagation private sh -c '
    echo $$ > "$0/logind.pid"
    mount -t tmpfs -o mode=755 tmpfs /run/systemd 2>/dev/null || { mkdir -p /run/systemd && mount -t tmpfs -o mode=755 tmpfs /run/systemd; }
    mkdir -p /run/systemd/logind.conf.d
    printf "[Login]\nNAutoVTs=0\nReserveVT=0\n" > /run/systemd/logind.conf.d/t.conf
    # Settings a test asks for (Env::set_logind_conf), one per line.
    [ ! -f "$0/logind.extra" ] || cat "$0/logind.extra" >> /run/systemd/logind.conf.d/t.conf
    exec /lib/systemd/systemd-logind' "$D" </dev/null >>"$D/logind.log" 2>&1 &
  wait_for 10 has_name org.freedesktop.login1
}

# A zombie counts as gone: this machine's PID 1 may reap late.
alive() { [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat"; }

kill_pidfile() { # kill_pidfile FILE [SIGNAL]
  local f=$1 sig=${2:-TERM}
  [ -s "$f" ] || return 0
  local pid; pid=$(cat "$f")
  kill -s "$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 100); do alive "$pid" || break; sleep 0.02; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$f"
}

start_docker() {
  mkdir -p "$D/docker"
  # App networks come from a pool of 256 /24s of our own (the defaults
  # hold ~30 networks, shared with every other engine on the machine); the
  # engine skips subnets another engine's bridge already routes.
  local pool=${HARNESS_POOL:-$((RANDOM % 150 + 100))}
  setsid dockerd -H "unix://$D/docker/docker.sock" --data-root "$D/docker/data" \
    --exec-root "$D/docker/exec" --pidfile "$D/docker/docker.pid" --bridge=none \
    --default-address-pool "base=10.$pool.0.0/16,size=24" \
    --iptables=false --ip-masq=false </dev/null >>"$D/docker/dockerd.log" 2>&1 &
  wait_for 30 docker -H "unix://$D/docker/docker.sock" version
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Answers at all (401 included: a registry with auth refuses /v2/ unasked).
registry_up() {
  python3 - "$1" <<'PY'
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v2/", timeout=1)
except urllib.error.HTTPError as e:
    sys.exit(0 if e.code == 401 else 1)
PY
}

start_registry() { # start_registry SUBDIR [EXTRA-CONFIG]
  local R=$D/$1 port
  mkdir -p "$R/data"
  port=$(free_port)
  cat > "$R/config.yml" <<CONF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $R/data
http:
  addr: 127.0.0.1:$port
${2:-}
CONF
  setsid docker-registry serve "$R/config.yml" </dev/null >"$R/log" 2>&1 &
  echo $! > "$R/pid"
  wait_for 10 registry_up "$port"
  echo "$port" > "$R/port"
}

# A bcrypt htpasswd line (all the registry accepts): apache2-utils, else
# python3's crypt (glibc's bcrypt).
htpasswd_line() { # htpasswd_line USER PASSWORD
  if command -v htpasswd >/dev/null; then
    htpasswd -Bbn "$1" "$2" | head -n 1
  else
    python3 -W ignore -c 'import crypt, sys; print(sys.argv[1] + ":" + crypt.crypt(sys.argv[2], crypt.mksalt(crypt.METHOD_BLOWFISH)))' "$1" "$2"
  fi
}

# gooseBit answers at all (its /login redirects to the setup page while it
# has no user): goosebit_up URL [CA-FILE].
goosebit_up() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 ${2:+--cacert "$2"} "$1/login") || return 1
  [ "$code" = 302 ]
}

# A CA and a server certificate for 127.0.0.1 (EC P-256, two days), made
# with openssl in DIR: ca.pem (what clients trust), server.pem,
# server-key.pem; the CA's key is removed once it has signed.
make_tls() { # make_tls DIR
  local T=$1
  mkdir -p "$T"
  cat > "$T/openssl.cnf" <<'CNF'
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
subjectAltName = IP:127.0.0.1
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
CNF
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  (
    cd "$T"
    openssl req -x509 -config openssl.cnf -extensions ca "${ec[@]}" -days 2 \
      -subj "/CN=holdfast test gooseBit CA" -keyout ca-key.pem -out ca.pem
    openssl req -new -config openssl.cnf "${ec[@]}" -subj /CN=127.0.0.1 \
      -keyout server-key.pem -out server.csr
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
      -extfile openssl.cnf -extensions server -out server.pem
    rm -f ca-key.pem server.csr ca.srl
    chmod 600 server-key.pem
  ) >"$T/openssl.log" 2>&1 || { cat "$T/openssl.log" >&2; return 1; }
}

start_goosebit() {
  local G=$D/goosebit venv=$here/.cache/goosebit port migrations v
  local tenant=${HARNESS_GOOSEBIT_TENANT:-DEFAULT} scheme=http ca= tls=()
  # gooseBit reads GOOSEBIT_* before its settings file: none from outside.
  for v in $(compgen -e | grep '^GOOSEBIT_' || true); do unset "$v"; done
  [ -x "$venv/bin/uvicorn" ] || { echo "harness: $venv missing: run scripts/setup.sh hawkbit" >&2; return 1; }
  kill_pidfile "$G/pid"
  rm -rf "$G"
  mkdir -p "$G/artifacts"
  port=$(free_port)
  if [ "${HARNESS_GOOSEBIT_TLS:-}" = 1 ]; then
    make_tls "$G/tls"
    scheme=https ca=$G/tls/ca.pem
    tls=(--ssl-certfile "$G/tls/server.pem" --ssl-keyfile "$G/tls/server-key.pem")
  fi
  # Its settings file, so that no goosebit.yaml in the working directory or
  # /etc is read. Logging: gooseBit applies this dictConfig on import; the
  # default one disables uvicorn's loggers, and with them every traceback.
  cat > "$G/goosebit.yaml" <<CONF
port: $port
tenant: $tenant
poll_time: "${HARNESS_GOOSEBIT_POLL:-00:00:01}"
db_uri: sqlite://$G/db.sqlite3
artifacts_dir: $G/artifacts
secret_key: $(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
track_device_ip: true
device_auth:
  enable: $([ -n "${HARNESS_GOOSEBIT_DEVICE_AUTH:-}" ] && echo true || echo false)
  mode: ${HARNESS_GOOSEBIT_DEVICE_AUTH:-strict}
logging:
  version: 1
  disable_existing_loggers: false
  formatters: {simple: {format: "%(asctime)s %(name)s %(levelname)s %(message)s"}}
  handlers: {console: {class: logging.StreamHandler, formatter: simple}}
  loggers:
    tortoise: {level: WARNING}
    aiosqlite: {level: WARNING}
    multipart: {level: INFO}
  root: {level: INFO, handlers: [console]}
CONF
  # The migrations ship inside the package; aerich needs them named in a
  # config file of its own.
  migrations=$("$venv/bin/python" -c 'import importlib.util, os; print(os.path.join(importlib.util.find_spec("goosebit").submodule_search_locations[0], "db", "migrations"))')
  cat > "$G/aerich.toml" <<CONF
[tool.aerich]
tortoise_orm = "goosebit.db.config.TORTOISE_CONF"
location = "$migrations"
src_folder = "."
CONF
  # HARNESS_GOOSEBIT_ACCESS_LOG=1: one log line per request (what
  # scripts/fleet-idle.sh counts polls by).
  local access=(--no-access-log)
  [ "${HARNESS_GOOSEBIT_ACCESS_LOG:-}" = 1 ] && access=()
  (cd "$G" && GOOSEBIT_SETTINGS=$G/goosebit.yaml "$venv/bin/aerich" -c aerich.toml upgrade) >"$G/migrate.log" 2>&1 \
    || { cat "$G/migrate.log" >&2; return 1; }
  # uvicorn itself, not `python -m goosebit`: that one binds 0.0.0.0.
  # With TLS, uvicorn gives the app the scheme https, and gooseBit's links
  # (request.url_for) come out https. --no-proxy-headers: by default uvicorn
  # takes X-Forwarded-Proto/-For from loopback (FORWARDED_ALLOW_IPS
  # 127.0.0.1), so any local client could turn the links http or change
  # the IP gooseBit records; here only the connection itself counts.
  (cd "$G" && GOOSEBIT_SETTINGS=$G/goosebit.yaml exec setsid sh -c 'echo $$ > pid; exec "$0" "$@"' \
    "$venv/bin/uvicorn" goosebit:app --host 127.0.0.1 --port "$port" "${access[@]}" \
    --no-proxy-headers "${tls[@]}" \
    </dev/null >>"$G/log" 2>&1) &
  wait_for 5 test -s "$G/pid"
  local end=$((SECONDS + 30))
  until goosebit_up "$scheme://127.0.0.1:$port" "$ca" 2>/dev/null; do
    if ! alive "$(cat "$G/pid")" || [ $SECONDS -ge $end ]; then
      echo "harness: gooseBit did not come up:" >&2; cat "$G/log" >&2; return 1
    fi
    sleep 0.05
  done
  # A fresh gooseBit has no user; POST /setup makes the first one, with
  # every permission ("*").
  local user=admin@holdfast.test pass
  pass=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
  curl -sf -o /dev/null ${ca:+--cacert "$ca"} -X POST "$scheme://127.0.0.1:$port/setup" \
    --data-urlencode "username=$user" --data-urlencode "password=$pass" \
    || { echo "harness: gooseBit setup of $user failed" >&2; return 1; }
  printf '{"url": "%s://127.0.0.1:%s", "tenant": "%s", "username": "%s", "password": "%s"%s}\n' \
    "$scheme" "$port" "$tenant" "$user" "$pass" "${ca:+, \"ca_file\": \"$ca\"}" > "$G/admin.json"
  echo "$port" > "$G/port"
}

case $cmd in
up)
  cat > "$D/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>$bus</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <includedir>/usr/share/dbus-1/system.d</includedir>
  <include>$here/systemd/org.holdfast.Supervisor1.conf</include>
</busconfig>
CONF
  start_bus
  start_logind
  mkdir -p "$D/locks" "$D/state"
  mountpoint -q "$D/locks" || mount -t tmpfs -o mode=755,size=16m tmpfs "$D/locks"
  {
    echo "export DBUS_SYSTEM_BUS_ADDRESS=$bus"
    echo "export HOLDFAST_TEST_DIR=$D"
  } > "$D/env"
  if [ "${3:-}" = "--docker" ]; then
    start_docker
    echo "export DOCKER_HOST=unix://$D/docker/docker.sock" >> "$D/env"
  fi
  ;;
restart-bus)
  # The bus and logind both go away, then come back on the same socket.
  kill_pidfile "$D/logind.pid" KILL
  kill_pidfile "$D/dbus.pid" KILL
  start_bus
  start_logind
  ;;
restart-docker)
  kill_pidfile "$D/docker/docker.pid"
  start_docker
  ;;
registry)
  start_registry registry
  ;;
goosebit)
  start_goosebit
  ;;
registry-auth)
  user=${3:?harness.sh registry-auth DIR USER PASSWORD}
  pass=${4:?harness.sh registry-auth DIR USER PASSWORD}
  mkdir -p "$D/registry-auth"
  htpasswd_line "$user" "$pass" > "$D/registry-auth/htpasswd"
  start_registry registry-auth "auth:
  htpasswd:
    realm: holdfast-test
    path: $D/registry-auth/htpasswd"
  ;;
restart-logind)
  kill_pidfile "$D/logind.pid" KILL
  start_logind
  ;;
remount-locks)
  # Read-only as a bind mount over the lock root: a plain remount is
  # refused (busy) while holdfastd holds its own locks open to flock them.
  case ${3:-} in
  ro)
    [ -e "$D/locks.ro" ] || { mount --bind "$D/locks" "$D/locks" && touch "$D/locks.ro"; }
    mount -o remount,bind,ro "$D/locks"
    ;;
  # Lazily: holdfastd may hold a leftover lock open (flocked) through it.
  rw) [ ! -e "$D/locks.ro" ] || { umount -l "$D/locks" && rm "$D/locks.ro"; } ;;
  *) echo "harness: remount-locks DIR ro|rw" >&2; exit 2 ;;
  esac
  ;;
down)
  if [ -S "$D/docker/docker.sock" ]; then
    docker -H "unix://$D/docker/docker.sock" ps -aq 2>/dev/null \
      | xargs -r docker -H "unix://$D/docker/docker.sock" rm -f >/dev/null 2>&1 || true
    # An engine leaves its networks' bridges behind when it stops: they
    # would hold their subnets from every later engine.
    docker -H "unix://$D/docker/docker.sock" network prune -f >/dev/null 2>&1 || true
  fi
  kill_pidfile "$D/docker/docker.pid"
  kill_pidfile "$D/registry/pid"
  kill_pidfile "$D/registry-auth/pid"
  kill_pidfile "$D/goosebit/pid"
  # logind takes ~2 s to stop gracefully; nothing here needs that.
  kill_pidfile "$D/logind.pid" KILL
  kill_pidfile "$D/dbus.pid" KILL
  if [ -d "$D/docker/exec" ]; then
    grep " $D/docker" /proc/mounts | awk '{print $2}' | sort -r | xargs -r umount -l 2>/dev/null || true
  fi
  # The tmpfs, and a read-only bind mount over it if a test left one.
  for _ in 1 2; do mountpoint -q "$D/locks" && umount -l "$D/locks" || true; done
  ;;
*) echo "harness: unknown command $cmd" >&2; exit 2 ;;
esac
