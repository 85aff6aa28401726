require holdfast.inc

PV = "0.1.0+git"
SRC_URI = "git://github.com/holdfast/holdfast.git;protocol=https;branch=main;destsuffix=${BP}"
SRCREV = "14ae5e5154e8ce19d07493281c44b3e5a8f9e455"

require ${BPN}-crates.inc
