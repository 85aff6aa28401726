SUMMARY = "Default configuration for holdfast"
DESCRIPTION = "The main holdfast configuration file. To ship your own, add a \
holdfast-config.bbappend with FILESEXTRAPATHS:prepend pointing at a directory \
holding your holdfast.toml, or put drop-ins in /etc/holdfast/config.d."
HOMEPAGE = "https://github.com/holdfast/holdfast"
SECTION = "admin"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

SRC_URI = "file://holdfast.toml"

S = "${UNPACKDIR}"

inherit allarch

do_install() {
    install -d ${D}${sysconfdir}/holdfast/config.d
    install -m 0644 ${UNPACKDIR}/holdfast.toml ${D}${sysconfdir}/holdfast/holdfast.toml
}

FILES:${PN} = "${sysconfdir}/holdfast"
CONFFILES:${PN} = "${sysconfdir}/holdfast/holdfast.toml"
