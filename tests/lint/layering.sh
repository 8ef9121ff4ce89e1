#!/usr/bin/env bash
# The layers point one way: compute <- api <- store <- server. This checks the includes that
# CMake's link graph cannot see: compute uses no jansson, libmicrohttpd or pthreads; api uses no
# libmicrohttpd or pthreads; store uses no libmicrohttpd, jansson or server code, and is the only
# layer with SQL (sqlite3.h, libpq-fe.h); nothing below store includes the store; server uses no
# jansson (all JSON goes through cv_api); server/reqparse.[ch] use no libmicrohttpd either.
set -euo pipefail
cd "$(dirname "$0")/../.."
bad=0
check() { # dir pattern what
  if grep -rnE "$2" "$1"; then echo "layering: $1 must not use $3"; bad=1; fi
}
check compute '#include *<(jansson|microhttpd|pthread)\.h>' 'jansson, libmicrohttpd or pthreads'
check compute '#include *[<"](cv_store|cv_store_codec)\.h[>"]' 'the store'
check api '#include *<(microhttpd|pthread)\.h>' 'libmicrohttpd or pthreads'
check api '#include *[<"](cv_store|cv_store_codec)\.h[>"]' 'the store'
check store '#include *<(microhttpd|jansson)\.h>' 'libmicrohttpd or jansson'
check store '#include *"server\.h"' 'server internals'
check server '#include *<jansson\.h>' 'jansson'
# server/reqparse.[ch] stay pure (bytes in, parsed value out) so the fuzzer and unit tests reach
# them without a connection.
for f in server/reqparse.c server/reqparse.h; do
  check "$f" '#include *(<(microhttpd|pthread)\.h>|"server\.h")' 'libmicrohttpd, pthreads or server.h'
done
for dir in compute api server clients bench; do
  [ -d "$dir" ] && check "$dir" '#include *<(sqlite3|libpq-fe)\.h>' 'SQL (only store/ does)'
done
# SQL text outside store/: a statement keyword followed by a table of ours.
for dir in compute api server; do
  check "$dir" '"[^"]*\b(SELECT|INSERT INTO|UPDATE|DELETE FROM)\b[^"]*\b(jobs|events|checkpoints|kernels)\b' 'SQL text'
done
[ "$bad" -eq 0 ] && echo "layering ok"
exit "$bad"
