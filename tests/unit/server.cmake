# Unit tests of server/ pieces that stand alone (tests/unit/test_log.c compiles server/log.c).
add_executable(test_log unit/test_log.c ${PROJECT_SOURCE_DIR}/server/log.c)
target_include_directories(test_log PRIVATE ${PROJECT_SOURCE_DIR}/server)
target_compile_definitions(test_log PRIVATE _GNU_SOURCE)
target_link_libraries(test_log PRIVATE cv_api cv_store PkgConfig::CHECK PkgConfig::JANSSON)
add_test(NAME test_log COMMAND test_log)
# server/reqparse.c: request targets, routes, query values and the events cursor (pure).
add_executable(test_reqparse unit/test_reqparse.c ${PROJECT_SOURCE_DIR}/server/reqparse.c)
target_include_directories(test_reqparse PRIVATE ${PROJECT_SOURCE_DIR}/server)
target_compile_definitions(test_reqparse PRIVATE _GNU_SOURCE)
target_link_libraries(test_reqparse PRIVATE cv_api PkgConfig::CHECK)
add_test(NAME test_reqparse COMMAND test_reqparse)
