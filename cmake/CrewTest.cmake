# crew_add_test(SRC LIBRARY): one test program and one CTest test from SRC,
# linked with LIBRARY, with tests/crew_test.h on its include path. SRC may set
# its timeout with a line "// CREW_TEST_TIMEOUT <seconds>" (default 60) and
# its tier with "// CREW_TEST_LABEL stress" (default "quick").
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
  set(timeout 60)
  set(label quick)
  file(STRINGS ${src} t REGEX "^// CREW_TEST_TIMEOUT [0-9]+")
  if(t)
    string(REGEX REPLACE "^// CREW_TEST_TIMEOUT ([0-9]+).*" "\\1" timeout "${t}")
  endif()
  file(STRINGS ${src} l REGEX "^// CREW_TEST_LABEL [a-z]+")
  if(l)
    string(REGEX REPLACE "^// CREW_TEST_LABEL ([a-z]+).*" "\\1" label "${l}")
  endif()
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${timeout} LABELS ${label})
endfunction()
