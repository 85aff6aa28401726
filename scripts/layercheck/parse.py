#!/usr/bin/env python3
"""BitBake syntax check of meta-layer without oe-core: BitBake's own parser
(from the bitbake-setup wheel) on layer.conf and every recipe, with empty stub
classes for each inherit. Catches syntax errors, missing requires and old
override syntax; it does not evaluate oe-core's classes (see check-yocto.sh).
"""
import os
import pathlib
import re
import sys
import tempfile
import types

LAYER = pathlib.Path(__file__).resolve().parents[2] / "meta-layer"

# BitBake imports these servers' client modules at import time; not needed here.
for name in ("hashserv", "hashserv.client", "prserv", "prserv.serv", "prserv.db", "prserv.client"):
    mod = types.ModuleType(name)
    mod.__path__ = []
    sys.modules.setdefault(name, mod)

import bb  # noqa: E402
import bb.data  # noqa: E402
import bb.parse  # noqa: E402
import bb.parse.parse_py  # noqa: E402,F401


def main() -> int:
    failures = 0
    with tempfile.TemporaryDirectory() as stubs:
        inherits = set()
        for f in [*LAYER.rglob("*.bb"), *LAYER.rglob("*.bbappend"), *LAYER.rglob("*.inc")]:
            inherits.update(re.findall(r"^inherit\s+(.+)$", f.read_text(), re.M))
        classes = {c for line in inherits for c in line.split()} | {"base"}
        for sub in ("classes", "classes-recipe", "classes-global"):
            os.makedirs(os.path.join(stubs, sub))
        for c in classes:
            pathlib.Path(stubs, "classes", f"{c}.bbclass").write_text("")
        os.makedirs(os.path.join(stubs, "conf"))

        d = bb.data.init()
        d.setVar("BBPATH", f"{stubs}:{LAYER}")
        d.setVar("LAYERDIR", str(LAYER))
        try:
            bb.parse.handle(str(LAYER / "conf/layer.conf"), d, include=True)
            for key in ("BBFILE_COLLECTIONS", "LAYERSERIES_COMPAT_holdfast", "LAYERDEPENDS_holdfast"):
                if not d.getVar(key):
                    raise ValueError(f"layer.conf does not set {key}")
            print(f"ok   conf/layer.conf: collections={d.getVar('BBFILE_COLLECTIONS').strip()} "
                  f"compat={d.getVar('LAYERSERIES_COMPAT_holdfast')}")
        except Exception as e:  # noqa: BLE001
            print(f"FAIL conf/layer.conf: {e}")
            failures += 1

        for recipe in sorted(LAYER.glob("recipes-*/*/*.bb")):
            pn, _, pv = recipe.stem.partition("_")
            rd = bb.data.init()
            rd.setVar("BBPATH", f"{stubs}:{LAYER}:{recipe.parent}")
            for k, v in {"PN": pn, "BPN": pn, "PV": pv, "BP": "${BPN}-${PV}",
                         "WORKDIR": "/work", "UNPACKDIR": "/work/sources",
                         "COMMON_LICENSE_DIR": "/licenses",
                         "__bbclasstype": "recipe"}.items():
                rd.setVar(k, v)
            try:
                bb.parse.init_parser(rd)
                bb.parse.handle(str(recipe), rd, include=False)
                for key in ("LICENSE", "LIC_FILES_CHKSUM", "SRC_URI", "SUMMARY"):
                    if not rd.getVar(key):
                        raise ValueError(f"{key} is not set")
                print(f"ok   {recipe.relative_to(LAYER)}: LICENSE={rd.getVar('LICENSE')}")
            except Exception as e:  # noqa: BLE001
                print(f"FAIL {recipe.relative_to(LAYER)}: {e!r}")
                failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
