require holdfast.inc

PV = "0.1.0+git"
SRC_URI = "git://github.com/holdfast/holdfast.git;protocol=https;branch=main;destsuffix=${BP}"
SRCREV = "35e756f3814eb6a60a2d7d316e5343318b060150"

require ${BPN}-crates.inc
