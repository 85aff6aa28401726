#!/usr/bin/env python3
"""Builds a SWUpdate-style .swu carrying a holdfast target.

    make-swu.py OUT.swu --version 1.2.0 --target target.json
                [--hw-compat REV ...] [--board NAME]
                [--image app.tar ...] [--compose docker-compose.yml --app NAME]
                [--format crc|newc] [--description TEXT]
                [--sign KEY.pem [--sign-cert CERT.pem]]

The archive is cpio in SWUpdate's layout (docs/hawkbit.md): `sw-description`
first, then the files it lists, then the `TRAILER!!!` entry, padded to 512
bytes. `--format crc` (the default, what SWUpdate's own tooling writes with
`cpio -H crc`) gives magic 070702 and each entry's checksum, the 32-bit sum
of its data bytes, which SWUpdate verifies; `--format newc` gives magic
070701 and checksum 0 (SWUpdate does not check it then). gooseBit accepts
both: it only looks at the first 4 bytes ("0707").

`--sign KEY.pem` adds `sw-description.sig` right after `sw-description`,
as SWUpdate built for signed images wants it: an RSA PKCS#1 v1.5 SHA-256
signature (`openssl dgst -sha256 -sign`; SWUpdate's RSA mode, `-k
PUBLIC.pem`), or with `--sign-cert CERT.pem` a detached DER CMS signature
(`openssl cms -sign -binary -nosmimecap`; SWUpdate's CMS mode, the one
Debian's swupdate is built with, `-k CERT.pem`).

sw-description (libconfig):

    software = {
        version = "1.2.0";
        description = "...";
        hardware-compatibility = [ "1.0" ];      # --hw-compat, top level
        images: (
            { filename = "holdfast-target.json"; type = "holdfast-target";
              sha256 = "..."; },
            { filename = "app.tar"; type = "holdfast-image"; sha256 = "..."; }
        );
    };

With `--board NAME` the compatibility and the images go into a board group
(`software = { version = ...; NAME = { hardware-compatibility = [...];
images: (...); }; }`), SWUpdate's board-specific form; gooseBit then files
the software under hardware model NAME instead of "default".

Only the standard library; files are streamed, never read whole.
"""

import argparse
import hashlib
import os
import subprocess
import sys

TARGET_NAME = "holdfast-target.json"
COMPOSE_NAME = "docker-compose.yml"
BUF = 1 << 16


def file_digest(path):
    """sha256 hex and the cpio 'crc' checksum (sum of bytes mod 2^32)."""
    sha = hashlib.sha256()
    total = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(BUF)
            if not chunk:
                break
            sha.update(chunk)
            total += sum(chunk)
    return sha.hexdigest(), total & 0xFFFFFFFF


def quote(s):
    """A libconfig string literal."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sw_description(args, entries):
    imgs = []
    for e in entries:
        fields = [
            f"filename = {quote(e['name'])};",
            f"type = {quote(e['type'])};",
            f"sha256 = {quote(e['sha256'])};",
        ]
        if e.get("properties"):
            props = " ".join(f"{k} = {quote(v)};" for k, v in e["properties"].items())
            fields.append(f"properties = {{ {props} }};")
        imgs.append("{ " + " ".join(fields) + " }")
    body = []
    if args.hw_compat:
        body.append("hardware-compatibility = [ " + ", ".join(quote(r) for r in args.hw_compat) + " ];")
    body.append("images: (\n" + ",\n".join("    " + i for i in imgs) + "\n);")
    lines = ["software = {", f"  version = {quote(args.version)};"]
    if args.description:
        lines.append(f"  description = {quote(args.description)};")
    if args.board:
        lines.append(f"  {args.board} = {{")
        lines += ["    " + line for b in body for line in b.split("\n")]
        lines.append("  };")
    else:
        lines += ["  " + line for b in body for line in b.split("\n")]
    lines.append("};")
    return ("\n".join(lines) + "\n").encode()


class Writer:
    def __init__(self, out, fmt):
        self.out = out
        self.magic = b"070702" if fmt == "crc" else b"070701"
        self.crc = fmt == "crc"
        self.offset = 0
        self.ino = 0

    def write(self, data):
        self.out.write(data)
        self.offset += len(data)

    def pad(self, align):
        n = (-self.offset) % align
        if n:
            self.write(b"\0" * n)

    def header(self, name, size, mode, check):
        self.ino += 1
        raw_name = name.encode() + b"\0"
        fields = [
            self.ino if name != "TRAILER!!!" else 0,
            mode,
            0,  # uid
            0,  # gid
            1,  # nlink
            0,  # mtime: reproducible archives
            size,
            0, 0, 0, 0,  # dev major/minor, rdev major/minor
            len(raw_name),
            check if self.crc else 0,
        ]
        self.write(self.magic + b"".join(b"%08X" % v for v in fields))
        self.write(raw_name)
        self.pad(4)

    def add_bytes(self, name, data):
        self.header(name, len(data), 0o100644, sum(data) & 0xFFFFFFFF)
        self.write(data)
        self.pad(4)

    def add_file(self, name, path, check):
        size = os.path.getsize(path)
        self.header(name, size, 0o100644, check)
        with open(path, "rb") as f:
            while True:
                chunk = f.read(BUF)
                if not chunk:
                    break
                self.write(chunk)
        self.pad(4)

    def trailer(self):
        self.header("TRAILER!!!", 0, 0, 0)
        self.pad(512)


def main():
    p = argparse.ArgumentParser(description="Build a SWUpdate .swu carrying a holdfast target.")
    p.add_argument("out")
    p.add_argument("--version", required=True, help="software version (SWUpdate numbers or semver)")
    p.add_argument("--target", help=f"target state JSON, stored as {TARGET_NAME}")
    p.add_argument("--compose", help=f"compose file, stored as {COMPOSE_NAME} (with --app)")
    p.add_argument("--app", help="the app name the compose file is for")
    p.add_argument("--image", action="append", default=[], help="a `docker save` tarball (repeatable)")
    p.add_argument("--hw-compat", action="append", default=[], help="a hardware revision (repeatable)")
    p.add_argument("--board", help="put compatibility and images in this board's group")
    p.add_argument("--description")
    p.add_argument("--format", choices=["crc", "newc"], default="crc")
    p.add_argument("--sign", metavar="KEY.pem", help="private key: add sw-description.sig")
    p.add_argument("--sign-cert", metavar="CERT.pem", help="with --sign: a CMS signature by this certificate")
    args = p.parse_args()
    if bool(args.target) == bool(args.compose):
        p.error("give exactly one of --target or --compose")
    if args.compose and not args.app:
        p.error("--compose needs --app")
    if args.sign_cert and not args.sign:
        p.error("--sign-cert needs --sign")
    if args.board and not args.hw_compat:
        p.error("--board needs --hw-compat (without it gooseBit files the software under board 'default')")

    files = []  # (name in archive, path, type, properties)
    if args.target:
        files.append((TARGET_NAME, args.target, "holdfast-target", None))
    else:
        files.append((COMPOSE_NAME, args.compose, "holdfast-compose", {"app": args.app}))
    for img in args.image:
        files.append((os.path.basename(img), img, "holdfast-image", None))
    names = [f[0] for f in files]
    if len(set(names)) != len(names) or {"sw-description", "sw-description.sig"} & set(names):
        p.error(f"file names in the archive must be unique: {names}")

    entries = []
    for name, path, typ, props in files:
        sha, check = file_digest(path)
        entries.append({"name": name, "path": path, "type": typ, "sha256": sha, "check": check, "properties": props})

    desc = sw_description(args, entries)
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as out:
        w = Writer(out, args.format)
        w.add_bytes("sw-description", desc)
        if args.sign:
            if args.sign_cert:
                cmd = ["openssl", "cms", "-sign", "-binary", "-nosmimecap", "-outform", "DER",
                       "-signer", args.sign_cert, "-inkey", args.sign]
            else:
                cmd = ["openssl", "dgst", "-sha256", "-sign", args.sign]
            sig = subprocess.run(cmd, input=desc, stdout=subprocess.PIPE, check=True).stdout
            w.add_bytes("sw-description.sig", sig)
        for e in entries:
            w.add_file(e["name"], e["path"], e["check"])
        w.trailer()
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
