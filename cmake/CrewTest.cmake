# crew_add_test(SRC LIBRARY): one test program and one CTest test from SRC,
# linked with LIBRARY, with tests/crew_test.h on its include path. SRC may set
# its tier with "// CREW_TEST_LABEL stress" (default "quick").
#
# Timeouts: the runner in crew_test.h runs each case of SRC in a process of
# its own under the case's timeout: 30 s, or "// CREW_TEST_TIMEOUT <seconds>"
# for every case of SRC, or TEST_CASE_TIMEOUT(fn, <seconds>) for one case;
# times CREW_TEST_TIMEOUT_SCALE under a sanitizer. The CTest timeout of SRC
# is the sum over its cases (read from the TEST_CASE and TEST_CASE_TIMEOUT
# entries of the source) plus 30 s, so CTest never kills the runner before
# it has reported every case; the runner checks that against
# CREW_TEST_CTEST_TIMEOUT and refuses to run if it does not hold.
set(CREW_TEST_CASE_TIMEOUT 30)
if(CREW_SANITIZE)
  # A sanitized case does a tenth of the loops (test_scale) at 5-20x the
  # cost, and the thread sanitizer more: room for the slow end.
  set(CREW_TEST_TIMEOUT_SCALE 3)
else()
  set(CREW_TEST_TIMEOUT_SCALE 1)
endif()

function(crew_add_test src library)
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_compile_definitions(${name} PRIVATE _GNU_SOURCE)
  target_compile_options(${name} PRIVATE ${CREW_WARNINGS})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(${name} PRIVATE ${library})
  if(CREW_SANITIZE)
    # Tests shrink their loops under sanitizers (see test_scale in crew_test.h).
    target_compile_definitions(${name} PRIVATE CREW_TEST_SANITIZED=1)
  endif()
  # The timeouts come from the source's text: re-read it when it changes.
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${src})
  file(READ ${src} text)
  set(case_timeout ${CREW_TEST_CASE_TIMEOUT})
  if("\n${text}" MATCHES "\n// CREW_TEST_TIMEOUT ([0-9]+)")
    set(case_timeout ${CMAKE_MATCH_1})
  endif()
  string(REGEX MATCHALL "TEST_CASE\\([A-Za-z0-9_]+\\)" plain "${text}")
  list(LENGTH plain n)
  math(EXPR total "${n} * ${case_timeout}")
  string(REGEX MATCHALL "TEST_CASE_TIMEOUT\\([A-Za-z0-9_]+, *[0-9]+\\)" own "${text}")
  foreach(c IN LISTS own)
    string(REGEX REPLACE ".*, *([0-9]+)\\)" "\\1" s "${c}")
    math(EXPR total "${total} + ${s}")
  endforeach()
  math(EXPR timeout "${total} * ${CREW_TEST_TIMEOUT_SCALE} + 30")
  target_compile_definitions(${name} PRIVATE CREW_TEST_CASE_TIMEOUT=${case_timeout}
    CREW_TEST_TIMEOUT_SCALE=${CREW_TEST_TIMEOUT_SCALE})
  set(label quick)
  if("\n${text}" MATCHES "\n// CREW_TEST_LABEL ([a-z]+)")
    set(label ${CMAKE_MATCH_1})
  endif()
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${timeout} LABELS ${label}
    ENVIRONMENT CREW_TEST_CTEST_TIMEOUT=${timeout})
endfunction()
