require holdfast.inc

PV = "0.1.0+git"
SRC_URI = "git://github.com/holdfast/holdfast.git;protocol=https;branch=main;destsuffix=${BP}"
SRCREV = "a1e6f60ebe300d11ded184de1b078b0ebb40e35f"

require ${BPN}-crates.inc
