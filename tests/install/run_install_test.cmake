# Installs the build tree into a fresh prefix, then configures, builds and runs tests/install against it.
#   cmake -DOUTBOX_BUILD_DIR=... -DOUTBOX_SOURCE_DIR=... -DWORK_DIR=... -DGENERATOR=... -P run_install_test.cmake
foreach(var OUTBOX_BUILD_DIR OUTBOX_SOURCE_DIR WORK_DIR GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_install_test.cmake: -D${var}=... is required")
  endif()
endforeach()

function(step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}")
  endif()
  message(STATUS "${what}: ok")
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
step("install the sdk component into ${WORK_DIR}/prefix"
     ${CMAKE_COMMAND} --install "${OUTBOX_BUILD_DIR}" --component sdk --prefix "${WORK_DIR}/prefix")
step("configure the out-of-tree project"
     ${CMAKE_COMMAND} -S "${OUTBOX_SOURCE_DIR}/tests/install" -B "${WORK_DIR}/build" -G "${GENERATOR}"
     "-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix" -DCMAKE_BUILD_TYPE=Release)
step("build the out-of-tree project" ${CMAKE_COMMAND} --build "${WORK_DIR}/build" -j2)
step("run the out-of-tree program" "${WORK_DIR}/build/outbox-install-check")
if(NOT last_output MATCHES "outbox consumer SDK: linked")
  message(FATAL_ERROR "unexpected output:\n${last_output}")
endif()
