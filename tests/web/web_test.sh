#!/usr/bin/env bash
# Tests the web page (clients/web/index.html, served by GET /) in a real browser against a real
# daemon: starts convd on a free loopback port, opens /?selftest=1 in headless Chromium, where the
# page drives its own UI (the same functions its buttons call: load the textbook example, run
# corr2d with "edge", train from [[0.5,0.5]] and watch 20 losses stream in, error cases, upload,
# drawing, Stop cancelling a long training) and writes "ok - ..." / "not ok - ..." lines into
# <pre id="selftest">. Then the same against a daemon with --token-file (401 until the page sends
# the token). The browser is driven over the DevTools protocol on a pipe (--remote-debugging-pipe)
# and polled in real time, bounded by WEB_TEST_TIMEOUT seconds a run: --dump-dom with
# --virtual-time-budget dumps as soon as the page idles between fetches, too early for a page
# that awaits image decoding and streams.
# usage: web_test.sh CONVD_BINARY    (Chromium comes from tools/test-packages.txt; without it the test fails)
# WEB_SCREENSHOT=/tmp/convd-web.png saves a 1280x900 screenshot of the page after its self-test.
set -euo pipefail
convd=${1:?usage: web_test.sh CONVD_BINARY}
timeout_s=${WEB_TEST_TIMEOUT:-60}
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "web: chromium is not installed (tools/test.sh installs tools/test-packages.txt; or apt-get install chromium)"
  exit 1
fi
[ -x "$convd" ] || { echo "web: $convd is not an executable"; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $1"; }

# start_convd NAME ARGS...: starts a daemon on a free port, sets $port
start_convd() {
  local name=$1
  shift
  "$convd" --listen 127.0.0.1:0 "$@" 2>"$work/$name.log" &
  pids+=("$!")
  port=
  for _ in $(seq 100); do
    port=$(grep -so '"msg":"listening".*"port":[0-9]*' "$work/$name.log" | grep -o '[0-9]*$' || true)
    [ -n "$port" ] && return 0
    sleep 0.1
  done
  echo "convd did not start:"
  cat "$work/$name.log"
  exit 1
}

# --- DevTools protocol over a pipe: NUL-terminated JSON messages on fds 3 (in) and 4 (out) ------
cdp_id=0
cdp_send() { # METHOD PARAMS [SESSION]: sends a command, sets $cdp_reply to its answer
  cdp_id=$((cdp_id + 1))
  local session=${3:+\"sessionId\":\"$3\",}
  printf '{"id":%d,%s"method":"%s","params":%s}\0' "$cdp_id" "$session" "$1" "$2" >&5
  local msg
  while IFS= read -r -d '' -t 20 msg <&6; do
    if [[ $msg == "{\"id\":$cdp_id,"* ]]; then
      cdp_reply=$msg
      return 0
    fi
  done
  cdp_reply=
  return 1
}
json_str() { # KEY: the first "KEY":"value" of $cdp_reply
  [[ $cdp_reply =~ \"$1\":\"([^\"]*)\" ]] && printf '%s' "${BASH_REMATCH[1]}"
}

# run_page URL SCREENSHOT: opens URL, polls <pre id="selftest"> until it leaves RUNNING; the
# result text is left in $work/selftest.txt
run_page() {
  local url=$1 shot=$2 profile
  profile=$(mktemp -d -p "$work")
  rm -f "$work/in" "$work/out"
  mkfifo "$work/in" "$work/out"
  exec 5<>"$work/in" 6<>"$work/out"
  "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --disable-extensions --mute-audio --hide-scrollbars \
    --user-data-dir="$profile" --window-size=1280,900 --remote-debugging-pipe "$url" \
    3<"$work/in" 4>"$work/out" 2>>"$work/chromium.log" &
  local bpid=$!
  pids+=("$bpid")
  local target='' session='' result='' deadline=$((SECONDS + timeout_s))
  while [ -z "$target" ] && [ $SECONDS -lt $deadline ]; do
    cdp_send Target.getTargets '{}' || break
    target=$(grep -o '"targetId":"[^"]*","type":"page"' <<<"$cdp_reply" | head -1 | sed 's/"targetId":"\([^"]*\)".*/\1/' || true)
    [ -n "$target" ] || sleep 0.2
  done
  if [ -n "$target" ] && cdp_send Target.attachToTarget "{\"targetId\":\"$target\",\"flatten\":true}"; then
    session=$(json_str sessionId)
    # lay the page out at 1280 x 900 CSS pixels, whatever the headless window's frame takes
    cdp_send Emulation.setDeviceMetricsOverride '{"width":1280,"height":900,"deviceScaleFactor":1,"mobile":false}' \
      "$session" || true
  fi
  local expr="btoa(unescape(encodeURIComponent((document.getElementById('selftest')||{}).textContent||'')))"
  while [ -n "$session" ] && [ $SECONDS -lt $deadline ]; do
    cdp_send Runtime.evaluate "{\"expression\":\"$expr\",\"returnByValue\":true}" "$session" || break
    result=$(json_str value | base64 -d 2>/dev/null || true)
    case $result in
      PASS* | FAIL*) break ;;
    esac
    sleep 0.25
  done
  printf '%s\n' "${result:-no result (the browser did not answer)}" >"$work/selftest.txt"
  if [ -n "$shot" ] && [ -n "$session" ]; then
    if cdp_send Page.captureScreenshot '{"format":"png"}' "$session"; then json_str data | base64 -d >"$shot" || true; fi
  fi
  if kill -0 "$bpid" 2>/dev/null; then cdp_send Browser.close '{}' || true; fi
  for _ in $(seq 50); do kill -0 "$bpid" 2>/dev/null || break; sleep 0.1; done
  kill "$bpid" 2>/dev/null || true
  wait "$bpid" 2>/dev/null || true
  exec 5>&- 6<&-
}

# report NAME: counts the page's own checks
report() {
  local name=$1 line
  case $(head -1 "$work/selftest.txt") in
    PASS* | FAIL*) ;;
    *)
      not_ok "$name: the self-test did not finish within ${timeout_s}s: $(head -c 300 "$work/selftest.txt")"
      return
      ;;
  esac
  while IFS= read -r line; do
    case $line in
      "ok - "*) ok "$name: ${line#ok - }" ;;
      "not ok - "*) not_ok "$name: ${line#not ok - }" ;;
    esac
  done <"$work/selftest.txt"
}

# --- the page as served ---------------------------------------------------------------------------
start_convd open
base="http://127.0.0.1:$port"
curl -s -D "$work/headers" -o "$work/page.html" "$base/"
if grep -qi '^content-type: text/html' "$work/headers" && grep -q 'id="selftest"' "$work/page.html"; then
  ok "GET / serves the page as text/html"
else
  not_ok "GET / serves the page as text/html: $(head -1 "$work/headers")"
fi
if grep -Eqi '(src|href|action)=["'"'"']?(https?:)?//|url\((["'"'"'])?(https?:)?//|@import|https?://' "$work/page.html"; then
  not_ok "the page is self-contained: $(grep -Eoi '.{20}https?://.{20}' "$work/page.html" | head -3)"
else
  ok "the page is self-contained (no external URLs)"
fi

# --- self-test against an open daemon ---------------------------------------------------------------
run_page "$base/?selftest=1" "${WEB_SCREENSHOT:-}"
report "page"

# --- no freezing: 100,000 streamed steps, then Stop (?stalltest=1) ---------------------------------
# The page times its own work per task; a page that does DOM work per event takes seconds, so a
# miss from a moment without CPU on a loaded machine is told apart by running again (3 tries).
for try in 1 2 3; do
  run_page "$base/?stalltest=1" ""
  head -1 "$work/selftest.txt" | grep -q '^PASS' && break
  echo "# stall test try $try: $(tr '\n' ' ' <"$work/selftest.txt" | head -c 600)"
done
grep '^# ' "$work/selftest.txt" || true
report "stall"

# --- self-test against a daemon with --token-file ---------------------------------------------------
token="web-test-$RANDOM$RANDOM"
printf '%s\n' "$token" >"$work/token"
start_convd token --token-file "$work/token"
run_page "http://127.0.0.1:$port/?selftest=1&token=$token" ""
report "token"
if grep -q '"path":"/kernels","status":401' "$work/token.log" && grep -q '"path":"/train","status":200' "$work/token.log"; then
  ok "token: the daemon saw a 401 without the token and 200s with it"
else
  not_ok "token: the daemon saw a 401 without the token and 200s with it"
fi

if [ "$failed" -gt 0 ]; then
  echo "--- chromium log (tail)"
  grep -v 'dbus\|unexpected operator' "$work/chromium.log" | tail -20 || true
fi
echo "web: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
