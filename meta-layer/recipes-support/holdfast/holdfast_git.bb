require holdfast.inc

PV = "0.1.0+git"
SRC_URI = "git://github.com/holdfast/holdfast.git;protocol=https;branch=main;destsuffix=${BP}"
SRCREV = "24ed52702a972fbe11153b722a51741486ee0bc0"

require ${BPN}-crates.inc
