#!/usr/bin/env bash
# Installs what holdfast's demo, tests and checks need on a fresh Debian 12
# machine. Idempotent: what is present is skipped.
#   setup.sh            base: engine, D-Bus, logind, lock clients, etcd, schemathesis
#                       (venv in .cache/schemathesis, for tests/api_schema.rs)
#   setup.sh msrv       + Debian rustc-web/cargo-web pinned to the MSRV (1.85)
#   setup.sh cross      + msrv, ARM cross linkers, qemu-user-static
#   setup.sh nspawn     + systemd-nspawn, debootstrap
#   setup.sh layer      + Python tools for the Yocto layer checks (venv in .cache/)
#   setup.sh bench      + docker-compose (updatebench compares against it)
#   setup.sh hawkbit    + gooseBit, a hawkBit DDI server (venv in .cache/goosebit,
#                       pinned; scripts/harness.sh goosebit starts it), and
#                       SWUpdate, which checks the .swu files of the tests
set -euo pipefail
cd "$(dirname "$0")/.."

# The MSRV toolchain: the rustc-web version that exists for amd64, arm64 and armhf.
RUST_WEB_VERSION=1.85.0+dfsg3-1~deb12u3

# etcd-server, etcd-client: the etcd cluster of tests/fleet_lock.rs (etcd, etcdctl);
# openssl: the throwaway CAs of tests/fleet_tls.rs and the fleet::http unit tests;
# ca-certificates: the system bundle the fleet TLS client trusts (a test
# checks an unknown issuer is refused against it).
pkgs=(dbus systemd procmail busybox-static docker.io docker-registry apache2-utils util-linux psmisc polkitd python3 python3-venv curl cpio etcd-server etcd-client openssl ca-certificates)
pinned=()
for profile in "$@"; do
  case $profile in
    msrv|cross)
      pinned+=("rustc-web=$RUST_WEB_VERSION" "cargo-web=$RUST_WEB_VERSION" "libstd-rust-web-dev=$RUST_WEB_VERSION")
      [ "$profile" = cross ] && pkgs+=(gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross libc6-dev-armhf-cross qemu-user-static)
      ;;
    nspawn) pkgs+=(systemd-container debootstrap) ;;
    layer) pkgs+=(python3-venv) ;;
    bench) pkgs+=(docker-compose) ;;
    hawkbit) pkgs+=(swupdate openssl) ;;
    *) echo "setup: unknown profile $profile" >&2; exit 2 ;;
  esac
done

have() { dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null | grep -q "install ok installed${2:+ $2}"; }
need=()
for p in "${pkgs[@]}"; do have "$p" || need+=("$p"); done
for p in "${pinned[@]}"; do have "${p%%=*}" "${p#*=}" || need+=("$p"); done

sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends --allow-downgrades "${need[@]}" >/dev/null
fi

for profile in "$@"; do
  if [ "$profile" = layer ] && [ ! -x .cache/venv/bin/oelint-adv ]; then
    python3 -m venv .cache/venv
    .cache/venv/bin/pip install -q oelint-adv bitbake-setup
  fi
done

# schemathesis checks the HTTP API against docs/openapi.yaml in every
# cargo test run; pinned with what it runs on.
st_req=scripts/schemathesis-requirements.txt
st_ver=$(sed -n 's/^schemathesis==//p' "$st_req")
if ! compgen -G ".cache/schemathesis/lib/python3*/site-packages/schemathesis-$st_ver.dist-info" >/dev/null \
  || ! cmp -s "$st_req" .cache/schemathesis/requirements.txt; then
  echo "setup: installing schemathesis $st_ver in .cache/schemathesis" >&2
  rm -rf .cache/schemathesis
  python3 -m venv .cache/schemathesis
  .cache/schemathesis/bin/pip install -q --disable-pip-version-check -r "$st_req"
  cp "$st_req" .cache/schemathesis/requirements.txt
fi

# gooseBit needs Python >= 3.11 (Debian 12 has 3.11); pinned with what it
# runs on, skipped when the pinned set is there.
if [[ " $* " == *" hawkbit "* ]]; then
  gb_req=scripts/goosebit-requirements.txt
  gb_ver=$(sed -n 's/^goosebit==//p' "$gb_req")
  if ! compgen -G ".cache/goosebit/lib/python3*/site-packages/goosebit-$gb_ver.dist-info" >/dev/null \
    || ! cmp -s "$gb_req" .cache/goosebit/requirements.txt; then
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
      || { echo "setup: gooseBit needs Python 3.11 or later, python3 is $(python3 -V)" >&2; exit 1; }
    echo "setup: installing gooseBit $gb_ver in .cache/goosebit" >&2
    rm -rf .cache/goosebit
    python3 -m venv .cache/goosebit
    .cache/goosebit/bin/pip install -q --disable-pip-version-check -r "$gb_req"
    cp "$gb_req" .cache/goosebit/requirements.txt
  fi
fi

command -v cargo >/dev/null || { echo "setup: cargo not found (install Rust first)" >&2; exit 1; }
