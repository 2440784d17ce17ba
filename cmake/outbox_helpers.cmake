# The two helpers every component's CMakeLists.txt uses.
include_guard(GLOBAL)
include(GoogleTest)

function(outbox_target_defaults target)
  target_compile_features(${target} PUBLIC cxx_std_20)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
                                           -Wold-style-cast -Wcast-align -Wunused -Woverloaded-virtual)
  if(OUTBOX_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  get_target_property(_type ${target} TYPE)
  if(TARGET outbox_tsan_c11_threads AND _type STREQUAL "EXECUTABLE")
    target_link_libraries(${target} PRIVATE outbox_tsan_c11_threads)
  endif()
endfunction()

# outbox_add_library(<name> SOURCES ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
# Builds outbox_<name>, aliased outbox::<name>; public headers in ./include.
function(outbox_add_library name)
  cmake_parse_arguments(A "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(outbox_${name} ${A_SOURCES})
  add_library(outbox::${name} ALIAS outbox_${name})
  set_target_properties(outbox_${name} PROPERTIES EXPORT_NAME ${name} POSITION_INDEPENDENT_CODE ON)
  target_include_directories(outbox_${name}
    PUBLIC $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include> $<INSTALL_INTERFACE:include>
    PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(outbox_${name} PUBLIC ${A_PUBLIC_DEPS} PRIVATE ${A_PRIVATE_DEPS})
  outbox_target_defaults(outbox_${name})
endfunction()

# outbox_add_test(<name> LABEL unit|integration|fault|compat SOURCES ... [DEPS ...])
# One GoogleTest binary; each test case becomes a CTest test carrying LABEL.
function(outbox_add_test name)
  cmake_parse_arguments(A "" "LABEL" "SOURCES;DEPS" ${ARGN})
  if(NOT A_LABEL)
    message(FATAL_ERROR "outbox_add_test(${name}) needs LABEL unit|integration|fault|compat")
  endif()
  add_executable(${name} ${A_SOURCES})
  target_link_libraries(${name} PRIVATE ${A_DEPS} GTest::gtest GTest::gmock)
  if(NOT "outbox::test_support" IN_LIST A_DEPS)
    target_link_libraries(${name} PRIVATE GTest::gtest_main)
  endif()
  outbox_target_defaults(${name})
  # A hung test fails on its own clock instead of eating the suite's time budget.
  set(_timeout_unit 120)
  set(_timeout_integration 300)
  set(_timeout_fault 600)
  set(_timeout_compat 600)
  gtest_discover_tests(${name}
    PROPERTIES LABELS ${A_LABEL} TIMEOUT ${_timeout_${A_LABEL}}
    DISCOVERY_TIMEOUT 30
    TEST_PREFIX "${A_LABEL}.")
endfunction()
