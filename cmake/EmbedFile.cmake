# cv_embed_file(TARGET FILE FUNCTION): builds FILE into TARGET as a NUL-terminated byte array
# behind `const char *FUNCTION(size_t *len)`, generated at configure time (CMake re-runs when
# FILE changes). Used for api/openapi.json and the web page, so the binary serves them with no
# files beside it.
function(cv_embed_file target file function)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${file})
  file(READ ${file} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  file(RELATIVE_PATH rel ${PROJECT_SOURCE_DIR} ${file})
  set(out ${CMAKE_CURRENT_BINARY_DIR}/${function}_data.c)
  file(WRITE ${out}
       "/* Generated from ${rel} by cmake/EmbedFile.cmake. */\n#include <stddef.h>\n"
       "const char *${function}(size_t *len);\n"
       "static const char data[] = {${bytes} 0};\n"
       "const char *${function}(size_t *len) {\n"
       "    if (len != NULL)\n        *len = sizeof data - 1;\n    return data;\n}\n")
  target_sources(${target} PRIVATE ${out})
endfunction()
