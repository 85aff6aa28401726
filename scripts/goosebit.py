#!/usr/bin/env python3
"""Drives a gooseBit started by `scripts/harness.sh goosebit DIR` through its
management API (/api/v1, bearer token), as the Rust tests need it:

    goosebit.py DIR login                   print a bearer token
    goosebit.py DIR upload FILE.swu         upload; print the software as JSON
    goosebit.py DIR software                every uploaded software
    goosebit.py DIR assign DEVICE SOFTWARE  give DEVICE this software id, or
                                            `latest` (its newest compatible one)
    goosebit.py DIR assign DEVICE rollout [--feed F]
                                            DEVICE follows the rollouts of feed F
                                            (default "default"; new devices do)
    goosebit.py DIR pin DEVICE              DEVICE gets nothing
    goosebit.py DIR token DEVICE TOKEN      DEVICE's target token (at most 32
                                            characters; creates the device)
    goosebit.py DIR force DEVICE [on|off]   force_update: deploy again, also
                                            after a failure (state Error)
    goosebit.py DIR rollout SOFTWARE [--feed F] [--name N]
                                            a rollout: every device of feed F
                                            (default "default") in rollout mode
                                            whose hardware is compatible
    goosebit.py DIR pause ROLLOUT [on|off]
    goosebit.py DIR rollouts                every rollout with its counts
    goosebit.py DIR device DEVICE           the device as JSON, with its
                                            feedback log; exit 1 if unknown
    goosebit.py DIR devices                 every device

DIR/goosebit/admin.json gives the URL and the admin login (and, for an https
URL, `ca_file`: the harness's CA, the only one trusted). Output is JSON on
stdout; an HTTP error prints gooseBit's answer on stderr and exits 2. Only the
standard library: any python3 runs it.
"""

import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid


class Client:
    def __init__(self, d):
        self.dir = os.path.join(d, "goosebit")
        with open(os.path.join(self.dir, "admin.json")) as f:
            self.admin = json.load(f)
        self.url = self.admin["url"]
        # https: gooseBit's certificate is checked (host name included)
        # against the harness's CA only.
        ca = self.admin.get("ca_file")
        self.ssl = ssl.create_default_context(cafile=ca) if ca else None
        self._token = None

    def request(self, method, path, body=None, content_type=None, auth=True, length=None):
        headers = {"Accept": "application/json"}
        if length is not None:
            headers["Content-Length"] = str(length)
        if auth:
            headers["Authorization"] = "Bearer " + self.token()
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            content_type = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.ssl) as r:
                data = r.read()
        except urllib.error.HTTPError as e:
            sys.stderr.write(f"goosebit: {method} {path}: HTTP {e.code}: {e.read().decode(errors='replace')}\n")
            sys.exit(2)
        return json.loads(data) if data else None

    def token(self):
        """The admin's bearer token, kept in DIR/goosebit/token (valid as
        long as this gooseBit runs: its secret key is in its settings)."""
        if self._token:
            return self._token
        path = os.path.join(self.dir, "token")
        try:
            with open(path) as f:
                self._token = f.read().strip()
                return self._token
        except FileNotFoundError:
            pass
        form = urllib.parse.urlencode({"username": self.admin["username"], "password": self.admin["password"]})
        answer = self.request(
            "POST", "/login", form.encode(), "application/x-www-form-urlencoded", auth=False
        )
        self._token = answer["access_token"]
        with open(path + ".tmp", "w") as f:
            f.write(self._token)
        os.replace(path + ".tmp", path)
        return self._token

    def software(self):
        return self.request("GET", "/api/v1/software")["software"]

    def upload(self, path):
        # multipart/form-data with one part, `file` (PUT /api/v1/software),
        # streamed from the file (gooseBit itself reads it whole).
        boundary = uuid.uuid4().hex
        name = os.path.basename(path).replace('"', "_")
        head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        size = len(head) + os.path.getsize(path) + len(tail)

        def body():
            yield head
            with open(path, "rb") as f:
                while chunk := f.read(1 << 16):
                    yield chunk
            yield tail

        sid = self.request(
            "PUT", "/api/v1/software", body(), f"multipart/form-data; boundary={boundary}", length=size
        )["id"]
        return next(s for s in self.software() if s["id"] == sid)

    def devices(self):
        return self.request("GET", "/api/v1/devices")["devices"]

    def device(self, dev):
        # From the list: GET /api/v1/devices/{id} creates an unknown device,
        # and answers 500 once the device has software assigned (gooseBit
        # 0.2.12). The list's assigned_software is what the device gets now.
        d = next((d for d in self.devices() if d["id"] == dev), None)
        if d is not None:
            quoted = urllib.parse.quote(dev, safe="")
            d.update(self.request("GET", f"/api/v1/devices/{quoted}/log"))
        return d

    def update_devices(self, devs, **fields):
        # PUT (not PATCH: that one answers 500 for an unknown device).
        return self.request("PUT", "/api/v1/devices", {"devices": devs, **fields})


def on_off(args, i):
    v = args[i] if len(args) > i else "on"
    if v not in ("on", "off"):
        usage()
    return v == "on"


def usage():
    sys.stderr.write(__doc__)
    sys.exit(64)


def main(argv):
    if len(argv) < 2:
        usage()
    c = Client(argv[0])
    cmd, args = argv[1], argv[2:]
    out = None
    if cmd == "login" and not args:
        out = {"access_token": c.token(), "token_type": "bearer"}
    elif cmd == "upload" and len(args) == 1:
        out = c.upload(args[0])
    elif cmd == "software" and not args:
        out = c.software()
    elif cmd == "assign" and len(args) in (2, 4):
        fields = {"software": args[1]}
        if args[1] == "rollout":
            # Assigning software clears the feed; rollout mode needs one.
            if len(args) == 4 and args[2] != "--feed":
                usage()
            fields["feed"] = args[3] if len(args) == 4 else "default"
        elif len(args) == 4:
            usage()
        out = c.update_devices([args[0]], **fields)
    elif cmd == "token" and len(args) == 2:
        out = c.update_devices([args[0]], auth_token=args[1])
    elif cmd == "pin" and len(args) == 1:
        out = c.update_devices([args[0]], pinned=True)
    elif cmd == "force" and len(args) in (1, 2):
        out = c.update_devices([args[0]], force_update=on_off(args, 1))
    elif cmd == "rollout" and len(args) in (1, 3, 5):
        opts = dict(zip(args[1::2], args[2::2]))
        if set(opts) - {"--feed", "--name"}:
            usage()
        body = {
            "name": opts.get("--name", f"software {args[0]}"),
            "feed": opts.get("--feed", "default"),
            "software_id": int(args[0]),
        }
        out = c.request("PUT", "/api/v1/rollouts", body)
    elif cmd == "pause" and len(args) in (1, 2):
        out = c.request("PATCH", "/api/v1/rollouts", {"ids": [int(args[0])], "paused": on_off(args, 1)})
    elif cmd == "rollouts" and not args:
        out = c.request("GET", "/api/v1/rollouts")["rollouts"]
    elif cmd == "device" and len(args) == 1:
        out = c.device(args[0])
        if out is None:
            print("null")
            return 1
    elif cmd == "devices" and not args:
        out = c.devices()
    else:
        usage()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
