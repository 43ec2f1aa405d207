# Helpers that give every Flotilla target the same warnings and test conventions.

# Warnings as errors for Flotilla's own code. Generated and third-party code does not link
# this (its headers are included as SYSTEM).
add_library(flotilla_warnings INTERFACE)
target_compile_options(flotilla_warnings INTERFACE
  -Wall -Wextra -Wshadow -Wconversion -Wsign-conversion -Wnon-virtual-dtor
  -Wold-style-cast -Woverloaded-virtual -Wimplicit-fallthrough
  -Werror)

# flotilla_library(NAME SOURCES ... [DEPS ...]) declares a component library; its headers
# are included as "component/file.h" from the source root.
function(flotilla_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS} PRIVATE flotilla_warnings)
  if(FLOTILLA_CLANG_TIDY_COMMAND)
    set_target_properties(${name} PROPERTIES CXX_CLANG_TIDY "${FLOTILLA_CLANG_TIDY_COMMAND}")
  endif()
endfunction()

# flotilla_executable(NAME SOURCES ... [DEPS ...]) declares a program in build/bin/.
# Relative relocations are packed (DT_RELR, glibc >= 2.36): a position-independent program
# then reads and writes far fewer pages when it starts.
function(flotilla_executable name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} flotilla_warnings)
  target_link_options(${name} PRIVATE -Wl,-z,pack-relative-relocs)
endfunction()

# flotilla_test(NAME LABEL unit|integration|e2e SOURCES ... [DEPS ...] [TIMEOUT s])
# declares a GoogleTest binary whose tests ctest discovers when it runs (not at build time).
function(flotilla_test name)
  cmake_parse_arguments(ARG "" "LABEL;TIMEOUT" "SOURCES;DEPS" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gmock GTest::gtest_main
                                        flotilla_warnings)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  gtest_discover_tests(${name}
    DISCOVERY_MODE PRE_TEST
    PROPERTIES LABELS ${ARG_LABEL} TIMEOUT ${ARG_TIMEOUT})
endfunction()
