#!/usr/bin/env bash
# Runs every example of README.md against a real convd and compares the output with what the
# README shows, so the README stays true. An example is a line "$ curl ..." inside a
# ```console block; the lines after it, up to the next "$ " line or the end of the block, are
# the expected output. Values that change from run to run (elapsed_ms, job ids, drawn seeds)
# are masked on both sides before comparing.
# usage: readme_examples.sh CONVD_BINARY FILE.md [DIR]   (commands run in DIR, default FILE.md's directory)
set -euo pipefail
convd=$1
readme=$2
root=$(cd "${3:-$(dirname "$readme")}" && pwd)
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

"$convd" --listen 127.0.0.1:0 >/dev/null 2>"$work/log" &
pid=$!
port=
for _ in $(seq 100); do
  port=$(grep -o '"msg":"listening".*"port":[0-9]*' "$work/log" | grep -o '[0-9]*$' || true)
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "convd did not start"; cat "$work/log"; exit 1; }

mask() {
  sed -E 's/"elapsed_ms":[-0-9.eE+]+/"elapsed_ms":_/g; s/"job":"[^"]*"/"job":_/g; s/"seed":[0-9]+/"seed":_/g; s/"created_at":"[^"]*"/"created_at":"_"/g; s/j-[0-9a-f]{32}/j-_/g'
}

# True when two outputs have the same text around their numbers and each pair of numbers
# agrees to 1e-5 relative (float32 results may differ in the last digit with the CPU's vector
# width, which changes the order of sums).
same_within_tolerance() {
  awk -v a="$1" -v b="$2" '
    function split_nums(s, nums, skel,   n, t) {
      n = 0; t = s
      while (match(t, /-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?/)) {
        nums[++n] = substr(t, RSTART, RLENGTH)
        skel[0] = skel[0] substr(t, 1, RSTART - 1) "#"
        t = substr(t, RSTART + RLENGTH)
      }
      skel[0] = skel[0] t
      return n
    }
    BEGIN {
      na = split_nums(a, xa, sa); nb = split_nums(b, xb, sb)
      if (na != nb || sa[0] != sb[0]) exit 1
      for (i = 1; i <= na; i++) {
        d = xa[i] - xb[i]; if (d < 0) d = -d
        m = xa[i] < 0 ? -xa[i] : xa[i]
        if (d > 1e-5 * m + 1e-9) exit 1
      }
      exit 0
    }'
}

# Split the README into examples: work/N.cmd and work/N.expected.
awk -v dir="$work" '
  /^```console/ { inblock = 1; next }
  /^```/ { inblock = 0; next }
  inblock && /^\$ / { n++; cmd = substr($0, 3); print cmd > (dir "/" n ".cmd"); printf "" > (dir "/" n ".expected"); next }
  inblock && n { print >> (dir "/" n ".expected") }
' "$readme"

count=0
failed=0
for cmdfile in "$work"/*.cmd; do
  [ -e "$cmdfile" ] || continue
  n=$(basename "$cmdfile" .cmd)
  cmd=$(sed "s/localhost:8080/127.0.0.1:$port/g" "$cmdfile")
  actual=$(cd "$root" && bash -c "$cmd" 2>&1 | mask || true)
  expected=$(mask < "$work/$n.expected")
  count=$((count + 1))
  if same_within_tolerance "$expected" "$actual"; then
    echo "ok $n: $(head -c 100 "$cmdfile")"
  else
    failed=$((failed + 1))
    echo "FAILED $n: $(cat "$cmdfile")"
    diff <(echo "$expected") <(echo "$actual") | head -20 || true
  fi
done
[ "$count" -gt 0 ] || { echo "no examples found in $readme"; exit 1; }
echo "$((count - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
