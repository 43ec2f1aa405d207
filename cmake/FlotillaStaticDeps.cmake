# Third-party C++ libraries are linked from their static archives wherever Debian ships one
# next to the shared library. Why: flotilla-vmm is started for every VM start, restore and
# migration. Linked against ~60 shared libraries (abseil alone has 64), it spent ~15 ms in
# the dynamic loader's symbol lookups before main() and kept ~10 MiB of library pages
# resident. An archive contributes only the objects a program uses. glibc and libstdc++
# stay shared, and so do spdlog and fmt (Debian ships no archives of them).

# The archive next to a shared library path (libfoo.so[.N...] -> libfoo.a), or "".
function(flotilla_archive_for_shared path out)
  set(${out} "" PARENT_SCOPE)
  if(path MATCHES "^(.*)/lib([^/]+)\\.so(\\.[0-9.]+)?$")
    set(archive "${CMAKE_MATCH_1}/lib${CMAKE_MATCH_2}.a")
    if(EXISTS "${archive}")
      set(${out} "${archive}" PARENT_SCOPE)
    endif()
  endif()
endfunction()

# Points every imported target of this directory at its archive where one exists.
function(flotilla_prefer_static_archives)
  get_directory_property(targets IMPORTED_TARGETS)
  set(library_dir "/usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}")
  foreach(target IN LISTS targets)
    get_target_property(type ${target} TYPE)
    if(type STREQUAL "INTERFACE_LIBRARY")
      # pkg-config targets (re2) list "-lname": use the archive's path instead.
      get_target_property(items ${target} INTERFACE_LINK_LIBRARIES)
      if(NOT items)
        continue()
      endif()
      set(rewritten "")
      foreach(item IN LISTS items)
        set(archive "")
        # (Two ifs: ${CMAKE_MATCH_1} is expanded before if() evaluates its MATCHES.)
        if(item MATCHES "^-l(.+)$")
          if(EXISTS "${library_dir}/lib${CMAKE_MATCH_1}.a")
            set(archive "${library_dir}/lib${CMAKE_MATCH_1}.a")
          endif()
        endif()
        if(archive)
          list(APPEND rewritten "${archive}")
        else()
          list(APPEND rewritten "${item}")
        endif()
      endforeach()
      set_target_properties(${target} PROPERTIES INTERFACE_LINK_LIBRARIES "${rewritten}")
      continue()
    endif()
    foreach(property IMPORTED_LOCATION IMPORTED_LOCATION_NONE IMPORTED_LOCATION_RELEASE
                     IMPORTED_LOCATION_RELWITHDEBINFO IMPORTED_LOCATION_DEBUG)
      get_target_property(location ${target} ${property})
      if(location)
        flotilla_archive_for_shared("${location}" archive)
        if(archive)
          set_target_properties(${target} PROPERTIES ${property} "${archive}")
        endif()
      endif()
    endforeach()
  endforeach()
endfunction()
