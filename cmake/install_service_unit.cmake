# Installs hmmud.service, at install time (install(CODE) in CMakeLists.txt):
# ExecStart= must name the hmmud of the prefix being installed to, which
# "cmake --install --prefix DIR" and CPack (/usr) choose after configuring.
#
# In:  HMMU_UNIT_TEMPLATE  systemd/hmmud.service.in
#      HMMU_UNIT_SBINDIR   CMAKE_INSTALL_SBINDIR as configured (relative to
#                          the prefix, or absolute)
#      HMMU_UNIT_DIR       where the unit goes (relative, or absolute)
#      HMMU_UNIT_WORK_DIR  a directory of the build tree for the made file
#      CMAKE_INSTALL_PREFIX, $ENV{DESTDIR}: those of this install
foreach(var HMMU_UNIT_TEMPLATE HMMU_UNIT_SBINDIR HMMU_UNIT_DIR HMMU_UNIT_WORK_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "install_service_unit.cmake: ${var} is not set")
  endif()
endforeach()

# The names GNUInstallDirs gives at configure time, now for this prefix.
if(IS_ABSOLUTE "${HMMU_UNIT_SBINDIR}")
  set(CMAKE_INSTALL_FULL_SBINDIR "${HMMU_UNIT_SBINDIR}")
else()
  set(CMAKE_INSTALL_FULL_SBINDIR "${CMAKE_INSTALL_PREFIX}/${HMMU_UNIT_SBINDIR}")
endif()
cmake_path(NORMAL_PATH CMAKE_INSTALL_FULL_SBINDIR)
string(REGEX REPLACE "(.)/$" "\\1" CMAKE_INSTALL_FULL_SBINDIR
       "${CMAKE_INSTALL_FULL_SBINDIR}")
if(IS_ABSOLUTE "${HMMU_UNIT_DIR}")
  set(unit_dir "${HMMU_UNIT_DIR}")
else()
  set(unit_dir "${CMAKE_INSTALL_PREFIX}/${HMMU_UNIT_DIR}")
endif()

# One file per destination: installs into two prefixes may run at once.
string(MD5 key "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}")
set(made "${HMMU_UNIT_WORK_DIR}/${key}/hmmud.service")
configure_file("${HMMU_UNIT_TEMPLATE}" "${made}" @ONLY)
# As the generated install rules do: DESTDIR, the manifest, the message.
file(INSTALL DESTINATION "${unit_dir}" TYPE FILE FILES "${made}")
