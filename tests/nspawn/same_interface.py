#!/usr/bin/env python3
"""same_interface.py LIVE.xml DOC.xml: the org.holdfast.Supervisor1 members
(methods, signals, properties, args, annotations) are the same in both."""
import sys
import xml.etree.ElementTree as ET

IFACE = "org.holdfast.Supervisor1"


def members(path):
    root = ET.parse(path).getroot()
    iface = root if root.get("name") == IFACE else root.find(f"interface[@name='{IFACE}']")
    out = set()
    for m in iface:
        children = tuple(sorted(tuple(sorted(c.attrib.items())) for c in m))
        out.add((m.tag, tuple(sorted(m.attrib.items())), children))
    return out


live, doc = members(sys.argv[1]), members(sys.argv[2])
for extra in sorted(live - doc):
    print("only live:", extra)
for missing in sorted(doc - live):
    print("only documented:", missing)
sys.exit(0 if live == doc else 1)
