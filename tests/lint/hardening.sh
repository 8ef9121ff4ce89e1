#!/usr/bin/env bash
# The release binary carries its hardening (CMakeLists.txt, CV_HARDEN): a position-independent
# executable, full RELRO (GNU_RELRO + BIND_NOW), stack-protector and _FORTIFY_SOURCE calls.
# Registered only for builds that apply the flags. Usage: hardening.sh path/to/convd
set -euo pipefail
bin=$1
command -v readelf >/dev/null || { echo "readelf missing (binutils)"; exit 1; }
bad=0
fail() { echo "hardening: $bin: $1"; bad=1; }
readelf -h "$bin" | grep -q 'Type:.*DYN' || fail "not a PIE (ELF type is not DYN)"
readelf -lW "$bin" | grep -q 'GNU_RELRO' || fail "no GNU_RELRO segment (-Wl,-z,relro)"
readelf -dW "$bin" | grep -Eq 'BIND_NOW|FLAGS.*NOW' || fail "no BIND_NOW (-Wl,-z,now: partial RELRO)"
syms=$(readelf -sW --dyn-syms "$bin")
grep -q '__stack_chk_fail' <<<"$syms" || fail "no __stack_chk_fail (-fstack-protector-strong)"
grep -Eq '__(v?snprintf|memcpy|memset|strcpy|vsnprintf)_chk' <<<"$syms" || fail "no fortified calls (-D_FORTIFY_SOURCE=2)"
[ "$bad" -eq 0 ] && echo "hardening ok: PIE, full RELRO, stack protector, fortify"
exit "$bad"
