# The native core's C++ tests (FOCAL_NATIVE_TESTS=ON), included by the top
# CMakeLists.txt so that the kernels compile here with the wheel's per-source
# flags. One executable, no test framework; each ctest entry runs one group.
#
#   cmake -S . -B build/native-tests -DFOCAL_NATIVE_MODULE=OFF -DFOCAL_NATIVE_TESTS=ON
#   cmake --build build/native-tests -j 2 && ctest --test-dir build/native-tests --output-on-failure

set(FOCAL_TEST_DIR ${CMAKE_CURRENT_SOURCE_DIR}/tests/native)
set(FOCAL_TEST_SOURCES
    ${FOCAL_TEST_DIR}/test_main.cpp
    ${FOCAL_TEST_DIR}/test_gemm.cpp
    ${FOCAL_TEST_DIR}/test_select.cpp
    ${FOCAL_TEST_DIR}/test_half.cpp
    ${FOCAL_TEST_DIR}/test_mst.cpp
    ${FOCAL_TEST_DIR}/test_kmeans.cpp
    ${FOCAL_TEST_DIR}/test_blockdct.cpp
    ${FOCAL_TEST_DIR}/test_gridzeros.cpp)
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  # The references compute in double without fused multiply-adds, as the
  # kernels they check.
  set_source_files_properties(${FOCAL_TEST_SOURCES} PROPERTIES COMPILE_OPTIONS "-ffp-contract=off")
endif()

add_executable(focal_native_tests ${FOCAL_TEST_SOURCES} ${FOCAL_NATIVE_KERNELS})
target_include_directories(focal_native_tests PRIVATE ${FOCAL_NATIVE_DIR} ${FOCAL_TEST_DIR})
target_compile_options(focal_native_tests PRIVATE ${FOCAL_NATIVE_OPTIONS})
focal_native_threads(focal_native_tests)

foreach(group kernels select half mst kmeans blockdct gridzeros isa)
  add_test(NAME native_${group} COMMAND focal_native_tests ${group})
endforeach()
# The whole MST under each capped family (FOCAL_NATIVE_ISA picks the tables
# mutual_reachability_mst uses; the kernel groups loop over every family).
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  foreach(cap avx2 generic)
    add_test(NAME native_mst_${cap} COMMAND focal_native_tests mst isa)
    set_tests_properties(native_mst_${cap} PROPERTIES ENVIRONMENT "FOCAL_NATIVE_ISA=${cap}")
    add_test(NAME native_blockdct_${cap} COMMAND focal_native_tests blockdct)
    set_tests_properties(native_blockdct_${cap} PROPERTIES ENVIRONMENT "FOCAL_NATIVE_ISA=${cap}")
    add_test(NAME native_gridzeros_${cap} COMMAND focal_native_tests gridzeros)
    set_tests_properties(native_gridzeros_${cap} PROPERTIES ENVIRONMENT "FOCAL_NATIVE_ISA=${cap}")
  endforeach()
endif()
