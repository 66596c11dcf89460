# The Debian packages, one per install component (CMakeLists.txt, "install"):
#
#   hmmu         component daemon       hmmud, hmmuctl, hmmu-run, hmmu-demo,
#                                       the dmirror shim, the systemd units,
#                                       sysusers.d/hmmu.conf, the udev rule
#   libhmmu1     component runtime      libhmmu.so.1*, with symbols and shlibs
#   libhmmu-dev  component development  headers, libhmmu.so, hmmu.pc,
#                                       hmmu-driver.pc, the CMake package,
#                                       the man pages of the API
#
# Made by "cpack -G DEB" in a build directory configured with
# -DCMAKE_INSTALL_PREFIX=/usr, so that GNUInstallDirs picks Debian's
# multiarch libdir (tests/ci/deb.sh does so); CPack installs under /usr
# whatever the configured prefix. Needs dpkg-dev (dpkg-shlibdeps) and file.

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME hmmu)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
# No CPACK_PACKAGE_DESCRIPTION_SUMMARY: CPack would put it above each
# package's own first line, the Debian synopsis.
set(HMMU_DEB_MAINTAINER "hmmu maintainers <hmmu@invalid>" CACHE STRING
    "The Maintainer: field of the Debian packages")
set(CPACK_PACKAGE_CONTACT "${HMMU_DEB_MAINTAINER}")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL daemon runtime development)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # NAME_VERSION_ARCH.deb
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# The libraries each package's programs link, from dpkg-shlibdeps (libc6,
# liburing2, ...). libhmmu.so.1 is this build's, found in the build
# directory and known to no package yet: its dependency is written below.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${CMAKE_CURRENT_BINARY_DIR})

get_target_property(hmmu_soversion hmmu SOVERSION)
set(HMMU_DEB_LIB libhmmu${hmmu_soversion})
set(hmmu_deb_exact "${HMMU_DEB_LIB} (= ${CPACK_PACKAGE_VERSION})")

set(CPACK_DEBIAN_DAEMON_PACKAGE_NAME hmmu)
set(CPACK_DEBIAN_DAEMON_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_DAEMON_PACKAGE_DEPENDS "${hmmu_deb_exact}")
set(CPACK_DEBIAN_DAEMON_PACKAGE_CONTROL_EXTRA
    ${CMAKE_CURRENT_SOURCE_DIR}/packaging/deb/hmmu/postinst
    ${CMAKE_CURRENT_SOURCE_DIR}/packaging/deb/hmmu/prerm
    ${CMAKE_CURRENT_SOURCE_DIR}/packaging/deb/hmmu/postrm)
set(CPACK_COMPONENT_DAEMON_DESCRIPTION
"hmmu daemon and tools: Linux HMM emulated in userspace
hmmud emulates the MMU of accelerators: it mirrors client processes'
address spaces into device page tables, kept coherent with the CPU through
each client's userfaultfd. This package holds hmmud with its systemd units
(hmmud.socket, hmmud.service; not enabled on install), group hmmu and a udev
rule giving that group /dev/userfaultfd; hmmuctl, hmmu-demo, and hmmu-run
with libhmmu-dmirror.so, which runs programs written for the kernel's HMM
test device (/dev/hmm_dmirrorN).")

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME ${HMMU_DEB_LIB})
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
set(HMMU_DEB_CONTROL_DIR ${CMAKE_CURRENT_BINARY_DIR}/packaging/${HMMU_DEB_LIB})
include(cmake/debian_symbols.cmake)
hmmu_debian_symbols(${CMAKE_CURRENT_SOURCE_DIR}/libhmmu/libhmmu.map
  libhmmu.so.${hmmu_soversion} ${HMMU_DEB_LIB} libhmmu-dev
  ${CPACK_PACKAGE_VERSION} ${HMMU_DEB_CONTROL_DIR}/symbols ${HMMU_DEB_CONTROL_DIR}/shlibs)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_EXTRA
    ${HMMU_DEB_CONTROL_DIR}/symbols ${HMMU_DEB_CONTROL_DIR}/shlibs)
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION
"hmmu client library: Linux HMM emulated in userspace
libhmmu connects a process to hmmud, which mirrors the process's address
space into emulated devices' page tables: device reads and writes,
migration to device memory, accelerator jobs over the process's pointers.")

set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_NAME libhmmu-dev)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_DEPENDS "${hmmu_deb_exact}")
set(CPACK_COMPONENT_DEVELOPMENT_DESCRIPTION
"hmmu client library and driver API: development files
The headers of libhmmu (hmmu/hmmu.h) and of the driver API for device
models (hmmu/driver.h), with pkg-config files (hmmu, hmmu-driver) and a
CMake package (find_package(hmmu): hmmu::hmmu, hmmu::driver).")

include(CPack)
