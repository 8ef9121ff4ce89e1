#!/usr/bin/env bash
# The HTTP benchmark of issue 6: starts its own convd on 127.0.0.1 and measures
#   - seed /corr2d requests/s and p50/p99 latency with wrk -t2 -c64 (a Lua script POSTs the body),
#   - large /corr2d requests end to end (1024² and 2048² b64, 1000x1000 nested): median of N curls,
#   - /train: time to the first byte and to the first streamed step,
#   - where the time of a large request goes (api parse / compute / reply), with bench/http_parts.c
#     built against the same build's static libraries,
# and writes bench/HTTP.md with the numbers.
#
#   bench/http_bench.sh [path/to/convd]        (default build/server/convd)
#
# Environment: DURATION (wrk seconds, 10), N (curl repeats, 11), OUT (bench/HTTP.md),
# BEFORE (a convd binary to measure too, for a before/after table) and BEFORE_PARTS (an
# http_parts binary built against the "before" libraries). Without BEFORE, the before/after
# section of the existing OUT is kept as it is.
# Needs: wrk, curl, python3 (for the streamed /train timing), cc. Nothing here needs root.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
bin="$(realpath "${1:-$root/build/server/convd}")"
build="$(cd "$(dirname "$bin")/.." && pwd)"
duration="${DURATION:-10}"
n="${N:-11}"
out="${OUT:-$here/HTTP.md}"

for tool in wrk curl python3 cc; do
    command -v "$tool" >/dev/null || {
        echo "http_bench: $tool is missing (apt-get install wrk curl python3 gcc)" >&2
        exit 1
    }
done
[ -x "$bin" ] || {
    echo "http_bench: no convd at $bin (build it first)" >&2
    exit 1
}

tmp="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

# ---- bodies, and the parse/compute/reply program -------------------------------------------
cc -O2 -std=gnu11 -I"$root/api/include" -I"$root/compute/include" "$here/http_parts.c" \
    "$build/api/libcv_api.a" "$build/compute/libcv_compute.a" -ljansson -fopenmp -lm \
    -o "$tmp/http_parts"
parts="$tmp/http_parts"
seed='{"input":[[0,1,2],[3,4,5],[6,7,8]],"kernel":[[0,1],[2,3]]}'
printf '%s' "$seed" >"$tmp/seed.json"
"$parts" body corr2d 1024 1024 b64 >"$tmp/b64_1024.json"
"$parts" body corr2d 2048 2048 b64 >"$tmp/b64_2048.json"
"$parts" body corr2d 1000 1000 nested >"$tmp/nested_1000.json"
"$parts" body train 512 512 b64 >"$tmp/train_512.json"
edge_x='[[1,1,0,0,0,0,1,1],[1,1,0,0,0,0,1,1],[1,1,0,0,0,0,1,1],[1,1,0,0,0,0,1,1],[1,1,0,0,0,0,1,1],[1,1,0,0,0,0,1,1]]'
edge_y='[[0,1,0,0,0,-1,0],[0,1,0,0,0,-1,0],[0,1,0,0,0,-1,0],[0,1,0,0,0,-1,0],[0,1,0,0,0,-1,0],[0,1,0,0,0,-1,0]]'
printf '{"input":%s,"target":%s,"kernel_size":[1,2],"bias":false,"lr":0.012,"steps":20}' \
    "$edge_x" "$edge_y" >"$tmp/train_seed.json"

# ---- a daemon of our own -----------------------------------------------------------------
# start_convd BINARY: starts it on a free port, sets $port and $base.
start_convd() {
    "$1" --listen 127.0.0.1:0 --log-format json 2>"$tmp/convd.log" &
    pids+=($!)
    port=""
    for _ in $(seq 100); do
        port="$(grep -o '"port":[0-9]*' "$tmp/convd.log" | head -1 | cut -d: -f2 || true)"
        [ -n "$port" ] && break
        sleep 0.05
    done
    [ -n "$port" ] || {
        echo "http_bench: convd did not start:" >&2
        cat "$tmp/convd.log" >&2
        exit 1
    }
    base="http://127.0.0.1:$port"
    curl -sf "$base/healthz" >/dev/null
}

stop_convd() {
    local p="${pids[-1]}"
    kill "$p"
    wait "$p" 2>/dev/null || true
    unset 'pids[-1]'
}

# median_curl FILE PATH: median time_total in ms over $n POSTs (after one warm-up); fails
# unless every reply is 200.
median_curl() {
    local file="$1" path="$2" times=() code t
    curl -s -o /dev/null -H 'Content-Type: application/json' --data-binary @"$file" "$base$path"
    for _ in $(seq "$n"); do
        read -r code t < <(curl -s -o /dev/null -w '%{http_code} %{time_total}\n' \
            -H 'Content-Type: application/json' --data-binary @"$file" "$base$path")
        [ "$code" = 200 ] || {
            echo "http_bench: POST $path with $(basename "$file") gave $code" >&2
            exit 1
        }
        times+=("$t")
    done
    printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]*1000}'
}

# first_step FILE: median ms to the first byte and to the first "step" line of a streamed /train.
first_step() {
    python3 - "$port" "$1" "$n" <<'EOF'
import socket, statistics, sys, time
port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
body = open(path, 'rb').read()
head = ('POST /train HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n'
        'Accept: application/x-ndjson\r\nConnection: close\r\nContent-Length: %d\r\n\r\n' % len(body)).encode()
first_byte, first_step = [], []
for i in range(n + 1):
    s = socket.create_connection(('127.0.0.1', port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.perf_counter()
    s.sendall(head + body)
    got, t_byte, t_step = b'', None, None
    while t_step is None:
        chunk = s.recv(65536)
        if not chunk:
            break
        if t_byte is None:
            t_byte = time.perf_counter()
        got += chunk
        if b'"event":"step"' in got:
            t_step = time.perf_counter()
    s.close()
    if t_step is None or not got.startswith(b'HTTP/1.1 200'):
        sys.exit('no step event: %r' % got[:300])
    if i > 0:  # the first run warms up
        first_byte.append((t_byte - t0) * 1e3)
        first_step.append((t_step - t0) * 1e3)
print('%.2f %.2f' % (statistics.median(first_byte), statistics.median(first_step)))
EOF
}

# measure BINARY PREFIX: the end-to-end numbers of one binary into variables PREFIX_*.
measure_large() {
    start_convd "$1"
    local p="$2"
    printf -v "${p}_b64_1024" '%s' "$(median_curl "$tmp/b64_1024.json" /corr2d)"
    printf -v "${p}_b64_2048" '%s' "$(median_curl "$tmp/b64_2048.json" /corr2d)"
    printf -v "${p}_nested_1000" '%s' "$(median_curl "$tmp/nested_1000.json" /corr2d)"
    stop_convd
}

# ---- measurements --------------------------------------------------------------------------
load_before="$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?')"
start_convd "$bin"
version="$("$bin" --version 2>&1 | head -1)"

# Seed /corr2d with wrk: a short warm-up, then the measured run.
cat >"$tmp/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$seed'
EOF
wrk -t2 -c64 -d2s -s "$tmp/post.lua" "$base/corr2d" >/dev/null
wrk -t2 -c64 -d"${duration}s" --latency -s "$tmp/post.lua" "$base/corr2d" >"$tmp/wrk.txt"
rps="$(awk '/^Requests\/sec:/ {print $2}' "$tmp/wrk.txt")"
p50="$(awk '/^ +50%/ {print $2}' "$tmp/wrk.txt")"
p99="$(awk '/^ +99%/ {print $2}' "$tmp/wrk.txt")"
total="$(awk '/requests in/ {print $1}' "$tmp/wrk.txt")"
non2xx="$(awk '/Non-2xx/ {print $NF}' "$tmp/wrk.txt")"
sockerr="$(awk '/Socket errors/ {print $0}' "$tmp/wrk.txt" | sed 's/^ *//')"
non2xx="${non2xx:-0}"
sockerr="${sockerr:-none}"

read -r train_seed_byte train_seed_step < <(first_step "$tmp/train_seed.json")
read -r train_512_byte train_512_step < <(first_step "$tmp/train_512.json")
stop_convd

measure_large "$bin" now
"$parts" 7 1 >"$tmp/parts.md"

if [ -n "${BEFORE:-}" ]; then
    measure_large "$(realpath "$BEFORE")" before
    if [ -n "${BEFORE_PARTS:-}" ]; then "$BEFORE_PARTS" 7 1 >"$tmp/parts_before.md"; fi
fi

# ---- the report ----------------------------------------------------------------------------
cpu="$(lscpu 2>/dev/null | awk -F': *' '/^Model name/ {print $2; exit}')"
{
    cat <<EOF
# HTTP benchmark

Written by \`bench/http_bench.sh\` on $(date -u +%Y-%m-%d) — $(nproc) cores ($cpu), $version, default flags
(\`--threads 1\`, workers = cores), daemon and clients on the same machine over 127.0.0.1; load average
$load_before when the run began, $(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?') when it ended (other work on the machine makes every number worse).
Rerun: \`bench/http_bench.sh build/server/convd\` (needs \`wrk\`, \`curl\`, \`python3\`).

## Seed /corr2d under load

\`wrk -t2 -c64 -d${duration}s --latency\`, POST \`$seed\` (the issue's target: ≥ 30k requests/s, 0 errors, p50 < 1 ms).

| requests/s | requests | p50 | p99 | non-2xx | socket errors |
|---:|---:|---:|---:|---:|---|
| $rps | $total | $p50 | $p99 | $non2xx | $sockerr |

## Large /corr2d requests end to end

Median of $n \`curl --data-binary\` POSTs (\`time_total\`: upload, parse, compute, reply, download), one at a
time, 3x3 kernel, reply in the input's form.

| request | body | ms |
|---|---:|---:|
| 1024x1024 b64 | $(du -h "$tmp/b64_1024.json" | cut -f1) | $now_b64_1024 |
| 2048x2048 b64 | $(du -h "$tmp/b64_2048.json" | cut -f1) | $now_b64_2048 |
| 1000x1000 nested | $(du -h "$tmp/nested_1000.json" | cut -f1) | $now_nested_1000 |

## /train: time to the first streamed step

Median of $n streamed (NDJSON) requests: ms from sending the request to the first byte of the reply and to the
first \`"event":"step"\` line.

| request | first byte ms | first step ms |
|---|---:|---:|
| the textbook's edge example (6x8, kernel 1x2, 20 steps) | $train_seed_byte | $train_seed_step |
| 512x512 b64 input and target, 3x3 kernel + bias, MSE | $train_512_byte | $train_512_step |

## Where the time of a large request goes

\`bench/http_parts.c\` (built by this script against the same build): the api layer's parse
(\`cv_api_corr2d_parse\`), the compute (\`cv_corr2d_forward\`, 1 thread as the daemon runs it) and the reply
(\`cv_api_corr2d_reply_dump\`), medians of 7. Bodies hold random float32 in [-1, 1) as shortest decimals or base64.
What the end-to-end time adds to these is HTTP: the upload, libmicrohttpd, the worker hand-off and the download.

EOF
    cat "$tmp/parts.md"
    cat <<'EOF'

How the api layer reads and writes tensors (`api/src/body_scan.c`, `numbers.c`, `base64.c`): a pre-pass takes
large tensor values out of the raw body before jansson sees it — base64 strings are decoded straight into the
tensor, arrays of numbers are read by a purpose-built scanner (Clinger's fast path, else `strtod`, so the floats are
bit for bit those of the jansson path) — and jansson parses only the small rest. Replies print float32 with Ryu
(shortest round trip). Anything unusual (escapes in a base64 string, a ragged array, any error) goes the plain
jansson way, so errors are unchanged. A request's own breakdown would be a `Server-Timing` header
(`parse;dur=…, queue;dur=…, compute;dur=…, render;dur=…`), which needs the server.

EOF
    if [ -n "${BEFORE:-}" ]; then
        echo "<!-- before-after:start -->"
        echo "## Before and after the transport work"
        echo
        echo "End to end (median of $n curls, ms), the same bodies and machine, run back to back; \"before\" is the"
        echo "daemon as it was when the transport work began (its compute took ~1 ms of these):"
        echo
        echo "| request | before | after | speed-up |"
        echo "|---|---:|---:|---:|"
        for k in b64_1024 b64_2048 nested_1000; do
            b="before_$k" a="now_$k"
            case "$k" in
            b64_1024) label="1024x1024 b64" ;;
            b64_2048) label="2048x2048 b64" ;;
            *) label="1000x1000 nested" ;;
            esac
            printf '| %s | %s | %s | %sx |\n' "$label" "${!b}" "${!a}" \
                "$(awk -v b="${!b}" -v a="${!a}" 'BEGIN {printf "%.1f", b/a}')"
        done
        if [ -f "$tmp/parts_before.md" ]; then
            echo
            echo "The api layer before (same program, the earlier libraries):"
            echo
            cat "$tmp/parts_before.md"
        fi
        echo "<!-- before-after:end -->"
    elif [ -f "$out" ]; then
        sed -n '/<!-- before-after:start -->/,/<!-- before-after:end -->/p' "$out"
    fi
} >"$tmp/HTTP.md"
mv "$tmp/HTTP.md" "$out"
echo "http_bench: wrote $out"
cat "$out"
