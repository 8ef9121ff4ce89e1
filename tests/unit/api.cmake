# Unit tests of the api layer: base64 on its own (tests/unit/test_base64.c) and the JSON layer
# (tests/unit/test_api.c). test_api also reaches api/src for the number formatter, and reads
# replies back with jansson.
add_executable(test_base64 unit/test_base64.c)
target_link_libraries(test_base64 PRIVATE cv_api PkgConfig::CHECK)
add_test(NAME test_base64 COMMAND test_base64)

add_executable(test_api unit/test_api.c)
target_include_directories(test_api PRIVATE ${PROJECT_SOURCE_DIR}/api/src)
target_link_libraries(test_api PRIVATE cv_api PkgConfig::CHECK PkgConfig::JANSSON)
add_test(NAME test_api COMMAND test_api)
