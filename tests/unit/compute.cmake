# Unit tests of the compute layer (tests/unit/test_compute.c), one check suite.
add_executable(test_compute unit/test_compute.c)
target_link_libraries(test_compute PRIVATE cv_compute PkgConfig::CHECK)
add_test(NAME test_compute COMMAND test_compute)
