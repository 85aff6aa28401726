require holdfast.inc

PV = "0.1.0+git"
SRC_URI = "git://github.com/holdfast/holdfast.git;protocol=https;branch=main;destsuffix=${BP}"
SRCREV = "291380c0cfde64b462ebaae22f43ad7c4d0db585"

require ${BPN}-crates.inc
