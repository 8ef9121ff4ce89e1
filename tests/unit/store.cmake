# Unit tests of the store layer: the cv_store.h contract on every back end (memory and a fresh
# SQLite file per test by default; pass URLs, e.g. a postgres:// one, to run it elsewhere), the
# blob codec, and what only SQLite has.
add_executable(test_store unit/test_store.c)
target_link_libraries(test_store PRIVATE cv_store PkgConfig::CHECK PkgConfig::SQLITE3)
add_test(NAME test_store COMMAND test_store)
set_tests_properties(test_store PROPERTIES TIMEOUT 300)
