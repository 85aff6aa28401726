#!/usr/bin/env bash
# The gooseBit fixture end to end, without holdfast: `harness.sh goosebit`
# starts it, make-swu.py builds releases, goosebit.py uploads and assigns
# them, and curl plays the device on the DDI API (what holdfast will do):
# registration, configData, deploymentBase, download, feedback. SWUpdate
# checks the .swu. Checks the facts docs/hawkbit.md states. Needs
# `scripts/setup.sh hawkbit`.
#   tests/goosebit_fixture.sh [DIR]   (DIR is kept; by default a temporary
#                                     one, removed at the end)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${1:-}" ]; then D=$1 keep=true; else D=$(mktemp -d /tmp/hf-goosebit-XXXXXX) keep=false; fi
mkdir -p "$D"
start=$SECONDS
cleanup() {
  "$here/scripts/harness.sh" down "$D" >/dev/null 2>&1 || true
  $keep || rm -rf "$D"
}
trap cleanup EXIT

fail() { echo "goosebit_fixture: FAIL: $*" >&2; echo "--- gooseBit log:" >&2; tail -n 30 "$D/goosebit/log" >&2 || true; exit 1; }
# json EXPR: EXPR (Python, the document is `d`) over the JSON on stdin.
json() { python3 -c 'import json, sys; d = json.load(sys.stdin); v = eval(sys.argv[1]); print(json.dumps(v) if isinstance(v, (dict, list)) else v)' "$1"; }
expect() { # expect WHAT GOT WANT
  [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
  echo "ok: $1 = $3"
}
gb() { python3 "$here/scripts/goosebit.py" "$D" "$@"; }

"$here/scripts/harness.sh" goosebit "$D"
echo "gooseBit up in $((SECONDS - start)) s"
url=$(json 'd["url"]' < "$D/goosebit/admin.json")
tenant=$(json 'd["tenant"]' < "$D/goosebit/admin.json")
expect "port file" "$url" "http://127.0.0.1:$(cat "$D/goosebit/port")"
ddi=$url/$tenant/controller/v1
dev=hf-smoke-1

# Releases: a target, and one with an image archive beside it.
mkdir -p "$D/swu"
echo '{"version": 1, "apps": {}}' > "$D/swu/target.json"
head -c 5000 /dev/urandom > "$D/swu/app1.tar"
python3 "$here/scripts/make-swu.py" "$D/swu/r1.swu" --version 1.0.0 --hw-compat 1.0 --target "$D/swu/target.json"
python3 "$here/scripts/make-swu.py" "$D/swu/r2.swu" --version 1.0.1 --hw-compat 1.0 --target "$D/swu/target.json" \
  --image "$D/swu/app1.tar" --format newc
python3 "$here/scripts/make-swu.py" "$D/swu/b1.swu" --version 2.0.0 --board holdfast-test --hw-compat 1.0 \
  --target "$D/swu/target.json"
expect "r1 magic" "$(head -c 6 "$D/swu/r1.swu")" 070702
expect "r2 magic" "$(head -c 6 "$D/swu/r2.swu")" 070701
expect "r1 first entry" "$(cpio -t --quiet < "$D/swu/r1.swu" | tr '\n' ' ')" "sw-description holdfast-target.json "
# GNU cpio checks the crc format's checksums when it extracts.
(mkdir -p "$D/swu/x" && cd "$D/swu/x" && cpio -id --quiet < ../r1.swu) || fail "cpio rejects r1.swu"
expect "r1 target sha256 in sw-description" \
  "$(grep -c "sha256 = \"$(sha256sum < "$D/swu/target.json" | cut -d' ' -f1)\"" "$D/swu/x/sw-description")" 1

# Real SWUpdate (Debian's, built for CMS-signed images) reads the archive:
# signature, version, compatibility and entries. Only holdfast's handler
# types are unknown to it. A wrong crc checksum is refused.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$D/swu/key.pem" -out "$D/swu/cert.pem" -days 1 \
  -subj /CN=holdfast-test -addext keyUsage=digitalSignature -addext extendedKeyUsage=emailProtection 2>/dev/null
python3 "$here/scripts/make-swu.py" "$D/swu/signed.swu" --version 0.9.0 --hw-compat 1.0 --target "$D/swu/target.json" \
  --image "$D/swu/app1.tar" --sign "$D/swu/key.pem" --sign-cert "$D/swu/cert.pem"
swupdate_check() { # swupdate_check FILE: SWUpdate's log of `-c` (check only)
  mkdir -p "$D/swu/tmp"
  TMPDIR=$D/swu/tmp timeout 30 swupdate -c -v -k "$D/swu/cert.pem" -H default:1.0 -i "$1" 2>&1 || true
}
log=$(swupdate_check "$D/swu/signed.swu")
for line in "Verified OK" "Version 0.9.0" "Accepted Hw Revision : 1.0" "Found Image: holdfast-target.json" \
  "Found Image: app1.tar in device :  for handler holdfast-image" \
  "feature 'holdfast-target' required for 'holdfast-target.json' in sw-description is absent"; do
  grep -qF "$line" <<<"$log" || fail "SWUpdate did not say '$line':
$log"
done
echo "ok: SWUpdate reads signed.swu up to its unknown handler types"
python3 -c 'import sys; d = bytearray(open(sys.argv[1], "rb").read()); d[102:110] = b"0000ABCD"; open(sys.argv[2], "wb").write(d)' \
  "$D/swu/signed.swu" "$D/swu/badsum.swu"
grep -q "Checksum WRONG" <<<"$(swupdate_check "$D/swu/badsum.swu")" || fail "SWUpdate took a wrong crc checksum"
echo "ok: SWUpdate refuses a wrong crc checksum"

# Upload: gooseBit reads version and compatibility from sw-description.
s1=$(gb upload "$D/swu/r1.swu")
expect "r1 version" "$(json 'd["version"]' <<<"$s1")" 1.0.0
expect "r1 compatibility" "$(json '[(c["model"], c["revision"]) for c in d["compatibility"]]' <<<"$s1")" '[["default", "1.0"]]'
expect "r1 hash is its sha1" "$(json 'd["hash"]' <<<"$s1")" "$(sha1sum < "$D/swu/r1.swu" | cut -d' ' -f1)"
s2=$(gb upload "$D/swu/r2.swu")
b1=$(gb upload "$D/swu/b1.swu")
expect "b1 compatibility" "$(json '[(c["model"], c["revision"]) for c in d["compatibility"]]' <<<"$b1")" '[["holdfast-test", "1.0"]]'
expect "signed.swu version" "$(gb upload "$D/swu/signed.swu" | json 'd["version"]')" 0.9.0
if gb upload "$D/swu/r1.swu" 2>/dev/null; then fail "same version uploaded twice"; fi
echo "ok: same version and compatibility again is refused (409)"
id1=$(json 'd["id"]' <<<"$s1")
id2=$(json 'd["id"]' <<<"$s2")

# The device registers by polling; gooseBit asks for configData first.
poll=$(curl -sf "$ddi/$dev")
expect "first poll" "$poll" "{\"config\":{\"polling\":{\"sleep\":\"00:00:10\"}},\"_links\":{\"configData\":{\"href\":\"$ddi/$dev/configData\"}}}"
expect "state after first poll" "$(gb device $dev | json 'd["last_state"]')" Unknown
curl -sf -X PUT -H 'Content-Type: application/json' \
  -d '{"mode": "merge", "data": {"hw_boardname": "default", "hw_revision": "1.0", "holdfast_version": "0.0.0"}}' \
  "$ddi/$dev/configData" >/dev/null
expect "poll, registered, nothing assigned" "$(curl -sf "$ddi/$dev")" '{"config":{"polling":{"sleep":"00:00:01"}},"_links":{}}'
expect "state" "$(gb device $dev | json 'd["last_state"]')" Registered

# Assigned: the poll links the deployment; its action id is the software id.
gb assign $dev "$id1" >/dev/null
expect "poll, assigned" "$(curl -sf "$ddi/$dev" | json 'd["_links"]["deploymentBase"]["href"]')" "$ddi/$dev/deploymentBase/$id1"
base=$(curl -sf "$ddi/$dev/deploymentBase/$id1")
echo "deploymentBase: $base"
expect "deployment id" "$(json 'd["id"]' <<<"$base")" "$id1"
expect "download/update" "$(json 'd["deployment"]["download"] + "/" + d["deployment"]["update"]' <<<"$base")" forced/forced
expect "artifact hashes (sha1 only)" "$(json 'd["deployment"]["chunks"][0]["artifacts"][0]["hashes"]' <<<"$base")" \
  "{\"sha1\": \"$(sha1sum < "$D/swu/r1.swu" | cut -d' ' -f1)\"}"
expect "artifact size" "$(json 'd["deployment"]["chunks"][0]["artifacts"][0]["size"]' <<<"$base")" "$(stat -c %s "$D/swu/r1.swu")"
link=$(json 'd["deployment"]["chunks"][0]["artifacts"][0]["_links"]["download"]["href"]' <<<"$base")
expect "download link" "$link" "$ddi/$dev/download"
curl -sf -o "$D/swu/got.swu" "$link"
cmp "$D/swu/got.swu" "$D/swu/r1.swu" || fail "download differs from the upload"
echo "ok: download is the uploaded file"
expect "ranged download" "$(curl -sf -r 100-199 "$link" | wc -c)" 100

feedback() { # feedback ACTION JSON
  curl -sf -X POST -H 'Content-Type: application/json' -d "$2" "$ddi/$dev/deploymentBase/$1/feedback"
}
expect "feedback answer" "$(feedback "$id1" '{"status": {"execution": "proceeding", "result": {"finished": "none", "progress": {"cnt": 1, "of": 3}}, "details": ["downloading 40%"]}}')" "{\"id\":\"$id1\"}"
feedback "$id1" '{"status": {"execution": "proceeding", "result": {"finished": "none"}, "details": ["waiting for lock: app1/main"]}}' >/dev/null
expect "state while proceeding" "$(gb device $dev | json 'd["last_state"]')" Running
feedback "$id1" '{"status": {"execution": "closed", "result": {"finished": "success"}, "details": ["applied: every app healthy"]}}' >/dev/null
d=$(gb device $dev)
expect "state after success" "$(json 'd["last_state"]' <<<"$d")" Finished
expect "sw_version after success" "$(json 'd["sw_version"]' <<<"$d")" 1.0.0
expect "feedback log" "$(json 'd["log"]' <<<"$d" | tr '\n' '|')" "downloading 40%|waiting for lock: app1/main|applied: every app healthy||"
expect "poll after success" "$(curl -sf "$ddi/$dev" | json 'd["_links"]')" '{}'

# A rollout of r2 (the device follows rollouts of feed "default") that fails.
gb assign $dev rollout >/dev/null
rollout=$(gb rollout "$id2" | json 'd["id"]')
expect "poll, rollout" "$(curl -sf "$ddi/$dev" | json 'd["_links"]["deploymentBase"]["href"]')" "$ddi/$dev/deploymentBase/$id2"
expect "r2 chunk version" "$(curl -sf "$ddi/$dev/deploymentBase/$id2" | json 'd["deployment"]["chunks"][0]["version"]')" 1.0.1
feedback "$id2" '{"status": {"execution": "proceeding", "result": {"finished": "none"}}}' >/dev/null
feedback "$id2" '{"status": {"execution": "closed", "result": {"finished": "failure"}, "details": ["rolled back: app1 unhealthy"]}}' >/dev/null
d=$(gb device $dev)
expect "state after failure" "$(json 'd["last_state"]' <<<"$d")" Error
expect "sw_version after failure" "$(json 'd["sw_version"]' <<<"$d")" 1.0.0
expect "rollout counts" "$(gb rollouts | json "[(r['success_count'], r['failure_count']) for r in d if r['id'] == $rollout]")" '[[0, 1]]'
expect "poll in error state" "$(curl -sf "$ddi/$dev" | json 'd["_links"]')" '{}'
gb force $dev >/dev/null
expect "poll, forced again" "$(curl -sf "$ddi/$dev" | json 'd["_links"]["deploymentBase"]["href"]')" "$ddi/$dev/deploymentBase/$id2"
feedback "$id2" '{"status": {"execution": "closed", "result": {"finished": "success"}}}' >/dev/null
d=$(gb device $dev)
expect "state after forced success" "$(json 'd["last_state"] + " " + d["sw_version"] + " " + str(d["force_update"])' <<<"$d")" "Finished 1.0.1 False"

# What it does not serve.
expect "cancelAction" "$(curl -s -o /dev/null -w '%{http_code}' "$ddi/$dev/cancelAction/$id2")" 404
expect "lower-case tenant" "$(curl -s -o /dev/null -w '%{http_code}' "$url/${tenant,,}/controller/v1/$dev")" 404

echo "goosebit_fixture: passed in $((SECONDS - start)) s"
