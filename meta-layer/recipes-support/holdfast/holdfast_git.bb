require holdfast.inc

PV = "0.1.0+git"
SRC_URI = "git://github.com/holdfast/holdfast.git;protocol=https;branch=main;destsuffix=${BP}"
SRCREV = "c34786c2b0f5cb38701259726473dc188b4b6acb"

require ${BPN}-crates.inc
