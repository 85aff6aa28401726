SUMMARY = "Default configuration for holdfast"
DESCRIPTION = "The main holdfast configuration file. To ship your own, add a \
holdfast-config.bbappend with FILESEXTRAPATHS:prepend pointing at a directory \
holding your holdfast.toml, or put drop-ins in /etc/holdfast/config.d."
HOMEPAGE = "https://github.com/holdfast/holdfast"
SECTION = "admin"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://holdfast.toml;beginline=1;endline=1;md5=b2dccaa94b3629a08bfb4f983cad6f89"

SRC_URI = "file://holdfast.toml"

S = "${UNPACKDIR}"

inherit allarch

do_install() {
    install -d ${D}${sysconfdir}/holdfast/config.d
    install -m 0644 ${UNPACKDIR}/holdfast.toml ${D}${sysconfdir}/holdfast/holdfast.toml
}

FILES:${PN} += "${sysconfdir}/holdfast"
CONFFILES:${PN} = "${sysconfdir}/holdfast/holdfast.toml"
