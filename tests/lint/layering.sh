#!/usr/bin/env bash
# The layers point one way: compute <- api <- server. This checks the includes that CMake's
# link graph cannot see: compute uses no jansson, libmicrohttpd or pthreads; api uses no
# libmicrohttpd or pthreads; server uses no jansson (all JSON goes through cv_api).
set -euo pipefail
cd "$(dirname "$0")/../.."
bad=0
check() { # dir pattern what
  if grep -rnE "$2" "$1"; then echo "layering: $1 must not use $3"; bad=1; fi
}
check compute '#include *<(jansson|microhttpd|pthread)\.h>' 'jansson, libmicrohttpd or pthreads'
check api '#include *<(microhttpd|pthread)\.h>' 'libmicrohttpd or pthreads'
check server '#include *<jansson\.h>' 'jansson'
[ "$bad" -eq 0 ] && echo "layering ok"
exit "$bad"
