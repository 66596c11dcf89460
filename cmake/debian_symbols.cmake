# The Debian symbols and shlibs files of libhmmu, made from the linker
# version script: every global symbol of every version node, and the node
# itself, at the hmmu release that brought that node. A node names that
# release in a comment on its first line, "HMMU_1.1 { /* since 0.2.0 */";
# one without says nothing yet, and gets the version being built. So adding
# a symbol to libhmmu.map is all it takes; the test
# debian_symbols_match_libhmmu (tests/packaging/debian_symbols.sh) checks
# the result against the built library with dpkg-gensymbols.
#
# hmmu_debian_symbols(MAP SONAME PACKAGE DEV_PACKAGE VERSION SYMBOLS SHLIBS)
#   MAP          the version script
#   SONAME       libhmmu.so.1
#   PACKAGE      the runtime package, libhmmu1
#   DEV_PACKAGE  the package to build-depend on, libhmmu-dev
#   VERSION      the version being built, for nodes that name none
#   SYMBOLS, SHLIBS  the files to write
function(hmmu_debian_symbols map soname package dev_package version
         symbols_out shlibs_out)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${map}")
  file(STRINGS "${map}" lines)
  set(id "[A-Za-z_][A-Za-z0-9_]*")
  set(node "")
  set(global FALSE)
  set(entries "")
  set(newest "")
  foreach(line IN LISTS lines)
    if(line MATCHES "^[ \t]*(${id}(\\.[0-9]+)*)[ \t]*{(.*)$")
      set(node "${CMAKE_MATCH_1}")
      set(since "${version}")
      if(CMAKE_MATCH_3 MATCHES "since[ \t]+([0-9][0-9A-Za-z.+~-]*)")
        set(since "${CMAKE_MATCH_1}")
      endif()
      if(NOT newest OR since VERSION_GREATER newest)
        set(newest "${since}")
      endif()
      list(APPEND entries "${node}@${node} ${since}")
      set(global FALSE)
    elseif(line MATCHES "^[ \t]*}")
      set(node "")
    elseif(line MATCHES "^[ \t]*global:")
      set(global TRUE)
    elseif(line MATCHES "^[ \t]*local:")
      set(global FALSE)
    elseif(node AND global AND line MATCHES "^[ \t]*(${id})[ \t]*;")
      list(APPEND entries "${CMAKE_MATCH_1}@${node} ${since}")
    elseif(node AND global AND line MATCHES "[*?[]")
      message(FATAL_ERROR "${map}: a pattern among the global symbols "
              "(\"${line}\"): the symbols file lists names one by one")
    endif()
  endforeach()
  if(NOT entries)
    message(FATAL_ERROR "${map}: no version node found")
  endif()
  list(SORT entries)
  list(TRANSFORM entries PREPEND " ")
  list(JOIN entries "\n" body)
  file(CONFIGURE OUTPUT "${symbols_out}" @ONLY CONTENT
"${soname} ${package} #MINVER#
* Build-Depends-Package: ${dev_package}
${body}
")
  # "libhmmu 1 libhmmu1 (>= V)": for tools that read shlibs only; V is the
  # release of the newest node, which has every symbol.
  string(REGEX REPLACE "\\.so\\..*$" "" libname "${soname}")
  string(REGEX REPLACE "^.*\\.so\\." "" soversion "${soname}")
  file(CONFIGURE OUTPUT "${shlibs_out}" @ONLY CONTENT
"${libname} ${soversion} ${package} (>= ${newest})
")
endfunction()
