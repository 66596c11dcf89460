# Removes the files of an install, as its manifest lists them:
#   cmake --build build --target uninstall    (build/install_manifest.txt)
#   cmake -DMANIFEST=FILE -P cmake/uninstall.cmake
# "cmake --install" writes the manifest of the last install from that build
# directory, without DESTDIR: a DESTDIR set now is put in front again.
# Directories are left, except hmmu's own (include/hmmu, lib/hmmu,
# lib/cmake/hmmu) once empty: the others may hold files of other software.
if(NOT MANIFEST)
  message(FATAL_ERROR "uninstall.cmake: give -DMANIFEST=FILE")
endif()
if(NOT EXISTS "${MANIFEST}")
  message(FATAL_ERROR "${MANIFEST} does not exist: nothing was installed "
          "from this build directory (\"cmake --install\" writes it)")
endif()

file(STRINGS "${MANIFEST}" files)
set(removed 0)
set(own_dirs "")
foreach(file IN LISTS files)
  set(path "$ENV{DESTDIR}${file}")
  if(IS_SYMLINK "${path}" OR EXISTS "${path}")
    message(STATUS "Removing: ${path}")
    file(REMOVE "${path}")
    if(IS_SYMLINK "${path}" OR EXISTS "${path}")
      message(FATAL_ERROR "could not remove ${path}")
    endif()
    math(EXPR removed "${removed} + 1")
  else()
    message(STATUS "Not there: ${path}")
  endif()
  get_filename_component(dir "${path}" DIRECTORY)
  get_filename_component(name "${dir}" NAME)
  if(name STREQUAL "hmmu")
    list(APPEND own_dirs "${dir}")
  endif()
endforeach()

list(REMOVE_DUPLICATES own_dirs)
foreach(dir IN LISTS own_dirs)
  file(GLOB left "${dir}/*" "${dir}/.*")
  if(IS_DIRECTORY "${dir}" AND NOT left)
    message(STATUS "Removing: ${dir}/")
    file(REMOVE_RECURSE "${dir}")
  endif()
endforeach()
list(LENGTH files listed)
message(STATUS "Removed ${removed} of the ${listed} files in ${MANIFEST}")
