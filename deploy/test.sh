#!/usr/bin/env bash
# deploy/test.sh: builds convd's container image from this repository and tests it alone and with its
# SQLite store on a named volume, then the compose fleet (replicas on one PostgreSQL behind nginx: any
# replica serves any job, a killed replica's training resumes on another, --scale, down + up), the
# Kubernetes manifests (offline) and the systemd unit. docs/deploy.md lists the checks and their cost.
# Runs as root on Debian 12 with no image registry: it installs what it needs with apt-get, makes the
# debian:bookworm-slim base with debootstrap, starts its own dockerd (own socket, data root, bridge)
# and removes every container, volume, network and process it started when it ends, failed or not.
# Only loopback ports are published. Cached between runs under $CONVD_DEPLOY_WORK (base image, image
# layers, npm packages); CONVD_DEPLOY_REFRESH=1 rebuilds the base image and builds without cache.
# Last line: "deploy: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${CONVD_DEPLOY_WORK:-/var/tmp/convd-deploy}
REFRESH=${CONVD_DEPLOY_REFRESH:-0}
SUITE=bookworm
BASE=debian:$SUITE-slim
IMAGE=convd:deploy-test
NGINX_IMAGE=convd-nginx:deploy-test
PG_IMAGE=convd-postgres:deploy-test
PROJECT=convddeploy$$                  # compose project: unique per run (start_engine prunes older ones)
SMOKE=convd-deploy-smoke
MDWE=convd-deploy-mdwe
SQLITE_CTR=convd-deploy-sqlite
SQLITE_VOL=convd-deploy-sqlite-$$      # the SQLite test's named volume
BRIDGE=convd-br0                       # our own bridge instead of docker0
BRIDGE_ADDR=${CONVD_DEPLOY_BRIDGE:-10.213.254.1/24}
POOL=${CONVD_DEPLOY_POOL:-10.213.0.0/17}  # compose networks
COMPOSE_FILE=$ROOT/deploy/compose.yaml
TOKEN=deploy-test-$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')
export DEBIAN_FRONTEND=noninteractive DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0
export DOCKER_HOST=unix://$WORK/docker.sock
export COMPOSE_HTTP_TIMEOUT=120
# what deploy/compose.yaml reads: our image tags, a token file, nginx on a free loopback port
export CONVD_IMAGE=$IMAGE NGINX_IMAGE=$NGINX_IMAGE POSTGRES_IMAGE=$PG_IMAGE CONVD_ENV_FILE=$WORK/convd.env \
       CONVD_PG_PASSWORD_FILE=$WORK/pg-password CONVD_BIND=127.0.0.1 CONVD_HTTP_PORT=
mkdir -p "$WORK"
T_START=$EPOCHREALTIME

# ---- reporting ------------------------------------------------------------------------------------
PASS=0 FAIL=0 CUR_STEP=
ok()  { PASS=$((PASS + 1)); echo "ok   - $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL - $*"; }
check() {  # check NAME CMD...: CMD's status decides (CMD must return it, set -e is off inside)
  local name=$1; shift
  if "$@"; then ok "$name"; else bad "$name"; fi
}
declare -A TIMES=()
step() {  # step NAME CMD...: infrastructure; a failure aborts the run (reported by the trap)
  local name=$1 t0=$EPOCHREALTIME; shift
  CUR_STEP=$name
  echo "== $name"
  "$@"
  TIMES[$name]=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}')
  echo "   [$name: ${TIMES[$name]} s]"
  CUR_STEP=
}
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}'; }
quiet() {  # quiet LOG CMD...: output to LOG, shown (tail) only on failure
  local log=$1 rc=0; shift
  "$@" >"$log" 2>&1 || rc=$?
  [ $rc = 0 ] && return 0
  echo "---- $* failed (rc=$rc), last lines of $log:"; tail -n 40 "$log"; return $rc
}

# ---- one run at a time (the data root, bridge and socket are shared between runs) ---------------
exec 9>"$WORK/lock"
if ! flock -w 5 9; then
  # held by a dockerd that a killed run left behind (older versions of this script let it inherit the lock)?
  stale=$(cat "$WORK/dockerd.pid" 2>/dev/null || true)
  if [ -n "$stale" ] && ls -l "/proc/$stale/fd" 2>/dev/null | grep -q -- "-> $WORK/lock\$"; then
    echo "stopping the dockerd left by a killed run (pid $stale)"
    kill -TERM "$stale" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$stale" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$stale" 2>/dev/null || true
  else
    echo "waiting for another deploy/test.sh (lock $WORK/lock)"
  fi
  if ! flock -w 900 9; then echo "deploy: $WORK/lock still held after 900 s"; exit 1; fi
fi

# ---- cleanup, whatever happens -------------------------------------------------------------------
ENGINE_PID= BRIDGE_MADE= BG_PIDS=() ROOTFS_PROC=
compose() { timeout 300 docker-compose -p "$PROJECT" -f "$COMPOSE_FILE" "$@"; }
stop_engine() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  [ -n "$ROOTFS_PROC" ] && umount "$ROOTFS_PROC" 2>/dev/null
  if [ -n "$ENGINE_PID" ]; then
    timeout 60 docker rm -f -v "$SMOKE" "$MDWE" "$SQLITE_CTR" "$SQLITE_CTR-2" >/dev/null 2>&1
    (cd "$ROOT" && compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1)
    timeout 30 docker ps -aq | xargs -r timeout 60 docker rm -f -v >/dev/null 2>&1
    timeout 60 docker volume rm -f "$SQLITE_VOL" >/dev/null 2>&1
    stop_engine "$ENGINE_PID"
    rm -f "$WORK/docker.sock"
  fi
  [ -n "$BRIDGE_MADE" ] && ip link del "$BRIDGE" 2>/dev/null
  rm -f "$WORK/convd.env" "$WORK/pg-password"
  if [ $rc -ne 0 ] && [ -n "$CUR_STEP" ]; then
    FAIL=$((FAIL + 1)); echo "FAIL - step '$CUR_STEP' aborted the run (rc=$rc)"
    [ -s "$WORK/dockerd.log" ] && { echo "---- last lines of $WORK/dockerd.log:"; tail -n 15 "$WORK/dockerd.log"; }
  fi
  echo "deploy: total $(elapsed "$T_START") s"
  echo "deploy: $PASS passed, $FAIL failed"
  [ $rc -eq 0 ] && [ $FAIL -gt 0 ] && rc=1
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# the compose fleet's env file (token, store) and database password; the password file is bind-mounted
# into containers that run as other users (postgres, 10001), so it is 0644 inside a 0700 directory
umask 077; printf 'CONVD_TOKEN=%s\nCONVD_STORE=postgres://convd@postgres:5432/convd\nCONVD_CHECKPOINT_EVERY=0.2\nCONVD_MAX_STEPS=1000000\n' "$TOKEN" > "$WORK/convd.env"
od -An -tx1 -N16 /dev/urandom | tr -d ' \n' > "$WORK/pg-password"; chmod 0644 "$WORK/pg-password"; chmod 0700 "$WORK"; umask 022

# ---- 1. packages ---------------------------------------------------------------------------------
install_packages() {
  local want=(docker.io containerd runc iptables debootstrap docker-compose curl ca-certificates iproute2 jq)
  command -v kubectl >/dev/null || want+=(kubernetes-client)
  local missing=() p
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    quiet "$WORK/apt.log" apt-get update -q
    # no Recommends: docker-compose would pull apparmor and needrestart, docker.io cgroupfs-mount etc.
    quiet "$WORK/apt.log" apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

# ---- 2. base image debian:bookworm-slim from Debian's mirror (no registry) -----------------------
apt_uri() {  # the mirror apt uses: first URI matching $1 in deb822 or one-line sources
  { awk '/^URIs:/{for(i=2;i<=NF;i++) print $i}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true
    awk '$1=="deb"{for(i=2;i<=NF;i++) if ($i ~ /^[a-z+]+:\/\//) {print $i; break}}' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true
  } | grep -E "$1" | sed -n 1p || true
}
make_base_tar() {  # debootstrap minbase, updates + security, slimmed like the official -slim images
  local R=$WORK/rootfs TAR=$WORK/debian-$SUITE-slim.tar M S
  if [ -s "$TAR" ] && [ "$REFRESH" != 1 ]; then echo "reusing $TAR"; return 0; fi
  M=$(apt_uri '/debian/?$'); : "${M:?no Debian mirror in the apt sources}"
  S=$(apt_uri '/debian-security/?$'); : "${S:?no debian-security mirror in the apt sources}"
  echo "mirror: $M  security: $S"
  rm -rf "$R"
  quiet "$WORK/debootstrap.log" debootstrap --variant=minbase "$SUITE" "$R" "$M"
  rm -f "$R/etc/apt/sources.list"
  printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$M" "$SUITE" "$SUITE" "$S" "$SUITE" > "$R/etc/apt/sources.list.d/debian.sources"
  cat > "$R/etc/dpkg/dpkg.cfg.d/docker" <<'X'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
X
  echo force-unsafe-io > "$R/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
  cat > "$R/etc/apt/apt.conf.d/docker-clean" <<'X'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
X
  echo 'Acquire::GzipIndexes "true";' > "$R/etc/apt/apt.conf.d/docker-gzip-indexes"
  echo 'Acquire::Languages "none";' > "$R/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' > "$R/etc/apt/apt.conf.d/docker-autoremove-suggests"
  mount -t proc proc "$R/proc"; ROOTFS_PROC=$R/proc
  quiet "$WORK/base-upgrade.log" sh -c "chroot '$R' apt-get update -qq && chroot '$R' apt-get -y -qq upgrade"
  umount "$R/proc"; ROOTFS_PROC=
  rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/archives/*.deb "$R"/var/cache/apt/*.bin \
         "$R"/var/log/*.log "$R"/var/log/apt/* "$R"/var/cache/debconf/*-old "$R"/var/lib/dpkg/*-old \
         "$R"/usr/share/man/* "$R"/usr/share/info/* "$R"/usr/share/groff/* "$R"/usr/share/lintian/*
  find "$R/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
  find "$R/usr/share/doc" -mindepth 1 -type d -empty -delete
  find "$R/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  : > "$R/etc/machine-id"; : > "$R/etc/resolv.conf"; echo localhost > "$R/etc/hostname"
  tar --numeric-owner -C "$R" -cf "$TAR.tmp" . && mv "$TAR.tmp" "$TAR"
  rm -rf "$R"
  du -h "$TAR"
}

# ---- 3. engine: Debian's dockerd, ours alone ------------------------------------------------------
start_engine() {
  local old i
  # a dockerd left behind by a run of this script that was killed (same data root): stop it
  if [ -s "$WORK/dockerd.pid" ]; then
    old=$(cat "$WORK/dockerd.pid")
    if kill -0 "$old" 2>/dev/null && tr '\0' ' ' < "/proc/$old/cmdline" | grep -q -- "--data-root $WORK/docker-data"; then
      echo "stopping the dockerd of an earlier run (pid $old)"; stop_engine "$old"
    fi
    rm -f "$WORK/dockerd.pid"
  fi
  rm -f "$WORK/docker.sock"
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$BRIDGE_ADDR" dev "$BRIDGE"
  fi
  BRIDGE_MADE=1
  ip link set "$BRIDGE" up
  dockerd --data-root "$WORK/docker-data" --exec-root "$WORK/docker-exec" --pidfile "$WORK/dockerd.pid" \
          -H "$DOCKER_HOST" --bridge "$BRIDGE" --default-address-pool "base=$POOL,size=24" \
          > "$WORK/dockerd.log" 2>&1 9>&- &   # 9>&-: the daemon must not hold our lock
  ENGINE_PID=$!
  for i in $(seq 60); do
    curl -fsS -m 2 --unix-socket "$WORK/docker.sock" http://d/_ping >/dev/null 2>&1 && break
    kill -0 "$ENGINE_PID" 2>/dev/null || { tail -n 20 "$WORK/dockerd.log"; return 1; }
    sleep 0.5
  done
  timeout 20 docker version --format 'engine {{.Server.Version}}, client {{.Client.Version}}'
  # everything in this data root is ours: remove what a killed run may have left
  timeout 60 docker ps -aq | xargs -r timeout 120 docker rm -f -v >/dev/null
  timeout 60 docker network prune -f >/dev/null
  timeout 60 docker volume prune -f >/dev/null
}
import_base() {
  if [ "$REFRESH" != 1 ] && timeout 20 docker image inspect "$BASE" >/dev/null 2>&1; then
    echo "base image $BASE present"; return 0
  fi
  make_base_tar
  timeout 300 docker import --change 'CMD ["bash"]' "$WORK/debian-$SUITE-slim.tar" "docker.io/library/$BASE" >/dev/null
  timeout 20 docker tag "docker.io/library/$BASE" "localhost/$BASE"
}

# ---- 4. image ------------------------------------------------------------------------------------
build_image() {
  local nocache=(); [ "$REFRESH" = 1 ] && nocache=(--no-cache)
  quiet "$WORK/build.log" timeout 1200 docker build "${nocache[@]}" -f deploy/Dockerfile -t "$IMAGE" .
  tail -n 2 "$WORK/build.log"
  timeout 120 docker image prune -f --filter until=168h >/dev/null   # untagged images older than a week (keeps the build cache)
}
IMAGE_MB=
check_image() {
  local user ports hc stop env
  IMAGE_MB=$(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.1f", $1/1e6}')
  echo "image $IMAGE: $IMAGE_MB MB"
  user=$(docker image inspect -f '{{.Config.User}}' "$IMAGE")
  ports=$(docker image inspect -f '{{json .Config.ExposedPorts}}' "$IMAGE")
  hc=$(docker image inspect -f '{{json .Config.Healthcheck.Test}}' "$IMAGE")
  stop=$(docker image inspect -f '{{.Config.StopSignal}}' "$IMAGE")
  env=$(docker image inspect -f '{{json .Config.Env}}' "$IMAGE")
  check "image runs as user 10001:10001 (is '$user')" test "$user" = 10001:10001
  check "image exposes 8080/tcp" grep -q '"8080/tcp"' <<<"$ports"
  check "image HEALTHCHECK is convd --probe /healthz" grep -q -- '--probe.*/healthz' <<<"$hc"
  check "image STOPSIGNAL is SIGTERM" test "$stop" = SIGTERM
  check "image sets CONVD_LISTEN=0.0.0.0:8080" grep -q 'CONVD_LISTEN=0.0.0.0:8080' <<<"$env"
  local vols; vols=$(docker image inspect -f '{{json .Config.Volumes}}' "$IMAGE")
  check "image keeps its store on the volume /var/lib/convd (CONVD_STORE=sqlite:/var/lib/convd/convd.db; volumes $vols)" \
    eval 'grep -q "CONVD_STORE=sqlite:/var/lib/convd/convd.db" <<<"$env" && grep -q "\"/var/lib/convd\"" <<<"$vols"'
  check "image size under 100 MB ($IMAGE_MB MB)" awk -v s="$IMAGE_MB" 'BEGIN{exit !(s < 100)}'
  local pk
  pk=$(timeout 60 docker run --rm --entrypoint /bin/sh "$IMAGE" -c \
       'dpkg-query -W -f="\${Package} " libmicrohttpd12 libjansson4 libgomp1 libsqlite3-0 libpq5; for t in gcc cc cmake make curl; do command -v $t; done; true')
  check "runtime has libmicrohttpd12 libjansson4 libgomp1 libsqlite3-0 libpq5 and no compiler or curl ($pk)" \
    test "$(tr ' ' '\n' <<<"$pk" | sort | paste -sd' ')" = " libgomp1 libjansson4 libmicrohttpd12 libpq5 libsqlite3-0"
}

# ---- helpers for the HTTP checks ------------------------------------------------------------------
AUTH=(-H "Authorization: Bearer $TOKEN")
CORR_BODY='{"input":[[0,1,2],[3,4,5],[6,7,8]],"kernel":[[0,1],[2,3]]}'
CORR_WANT='{"output":[[19,25],[37,43]]}'
# the API tour's streamed train example (docs/api-tour.md): its step losses and learned kernel (elapsed_ms varies)
README_LOSSES=$(grep -E '^\{"event":"step"' docs/api-tour.md | sed -E 's/.*"loss":([^,}]*).*/\1/' | paste -sd' ' || true)
README_WEIGHT=$(grep -E '^\{"event":"done"' docs/api-tour.md | sed -n 1p | sed -E 's/.*"weight":(\[\[[^]]*\]\]).*/\1/' || true)
same_numbers() {  # same_numbers "A..." "B...": same count of numbers, each pair within 1e-5 relative
  awk -v a="$1" -v b="$2" 'BEGIN {
    gsub(/[][,]/, " ", a); gsub(/[][,]/, " ", b); na = split(a, x, " "); nb = split(b, y, " ")
    if (na != nb || na == 0) { print "   " na " numbers in the README, " nb " here"; exit 1 }
    for (i = 1; i <= na; i++) { d = x[i] - y[i]; m = (x[i] < 0 ? -x[i] : x[i]); if (d < 0) d = -d
      if (d > 1e-5 * m + 1e-12) { print "   number " i ": README " x[i] ", here " y[i]; exit 1 } }
  }'
}
wait_http() {  # wait_http URL SECONDS: until it answers 2xx
  local i
  for i in $(seq $(($2 * 4))); do curl -fsS -o /dev/null -m 2 "$1" 2>/dev/null && return 0; sleep 0.25; done
  return 1
}
check_seed_corr2d() {  # check_seed_corr2d BASEURL LABEL
  local got
  got=$(curl -sS -m 10 "${AUTH[@]}" --json "$CORR_BODY" "$1/corr2d" || true)
  check "$2: README corr2d gives $CORR_WANT (got $got)" test "$got" = "$CORR_WANT"
}
check_seed_train() {  # check_seed_train BASEURL LABEL: the README's streamed train, line by line
  local out steps losses done
  out=$(curl -sS -N -m 30 "${AUTH[@]}" --json @clients/examples/train-seed.json "$1/train" || true)
  steps=$(grep -c '"event":"step"' <<<"$out" || true)
  losses=$(grep '"event":"step"' <<<"$out" | sed -E 's/.*"loss":([^,}]*).*/\1/' | paste -sd' ' || true)
  done=$(tail -n 1 <<<"$out")
  check "$2: streamed train gives start, 20 step lines and done (steps=$steps)" \
    eval '[ "$steps" = 20 ] && grep -q "\"event\":\"start\"" <<<"$(head -n 1 <<<"$out")" && grep -q "\"event\":\"done\",\"status\":\"succeeded\"" <<<"$done"'
  if [ -n "$README_LOSSES" ]; then
    local weight; weight=$(sed -E 's/.*"weight":(\[\[[^]]*\]\]).*/\1/' <<<"$done")
    check "$2: the 20 losses and the learned kernel are the README's (to 1e-5 relative)" \
      same_numbers "$README_LOSSES $README_WEIGHT" "$losses $weight"
  fi
}
SLOW_JOB=$WORK/slow-train.json
make_slow_job() {  # the longest training allowed (100000 steps, 128x128, ~1 s here) with 10 step lines
  awk -v n=128 'BEGIN{srand(1); printf "{\"input\":[";
    for(i=0;i<n;i++){printf "%s[", i?",":""; for(j=0;j<n;j++) printf "%s%.3f", j?",":"", rand(); printf "]"}
    printf "],\"target\":[";
    for(i=0;i<n-2;i++){printf "%s[", i?",":""; for(j=0;j<n-2;j++) printf "%s%.3f", j?",":"", rand(); printf "]"}
    printf "],\"kernel_size\":3,\"loss\":\"mse\",\"optimizer\":\"sgd\",\"lr\":0.01,\"steps\":100000,\"report_every\":10000,\"seed\":1}\n"}' > "$SLOW_JOB"
}
stream_stamped() {  # stream_stamped URL OUT: the slow job's lines, each prefixed by its arrival time
  echo "$EPOCHREALTIME request" > "$2"
  curl -sS -N -m 120 "${AUTH[@]}" --json @"$SLOW_JOB" "$1/train" 2>/dev/null |
    while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done >> "$2" || true
}

# ---- 5. the image alone: run, health, examples, non-root, SIGTERM drain --------------------------
smoke() {
  local cid port base i st pid status
  cid=$(timeout 60 docker run -d --name "$SMOKE" --read-only --cap-drop ALL --security-opt no-new-privileges \
        -e CONVD_TOKEN="$TOKEN" -p 127.0.0.1::8080 "$IMAGE")
  port=$(docker port "$SMOKE" 8080/tcp | sed -n 1p | sed 's/.*://')
  base=http://127.0.0.1:$port
  echo "container ${cid:0:12} on $base (read-only root, no capabilities, no-new-privileges)"
  st=
  for i in $(seq 120); do
    st=$(docker inspect -f '{{.State.Health.Status}}' "$SMOKE")
    [ "$st" = healthy ] && break
    [ "$(docker inspect -f '{{.State.Running}}' "$SMOKE")" = true ] || break
    sleep 0.5
  done
  check "container becomes healthy (HEALTHCHECK convd --probe) in $(elapsed "$T_RUN") s" test "$st" = healthy
  check "container answers /healthz, /livez and /readyz on $base" \
    eval 'wait_http "$base/healthz" 10 && wait_http "$base/livez" 2 && wait_http "$base/readyz" 2'
  check_seed_corr2d "$base" container
  echo "   (corr2d without the token: HTTP $(curl -s -o /dev/null -m 5 -w '%{http_code}' --json "$CORR_BODY" "$base/corr2d"): 401 where convd enforces CONVD_TOKEN)"
  check_seed_train "$base" container
  pid=$(docker inspect -f '{{.State.Pid}}' "$SMOKE")
  status=$(awk '/^(Uid|Gid|CapEff|NoNewPrivs):/{printf "%s %s; ", $1, $2}' "/proc/$pid/status")
  echo "main process: $(docker top "$SMOKE" -o uid,gid,pid,args | tail -n +2 | sed -n 1p); $status"
  check "process runs as uid 10001 with no capabilities (docker top, /proc: $status)" \
    eval '[ "$(docker top "$SMOKE" -o uid,pid | awk "NR > 1 {print \$1}" | sort -u)" = 10001 ] && grep -q "Uid: 10001; Gid: 10001; CapEff: 0000000000000000; NoNewPrivs: 1;" <<<"$status"'
  # SIGTERM while a stream runs: convd stops taking connections, lets the job finish, exits 0
  stream_stamped "$base" "$WORK/drain-stream.txt" & BG_PIDS+=($!)
  for i in $(seq 200); do grep -q '"event":"step"' "$WORK/drain-stream.txt" 2>/dev/null && break; sleep 0.05; done
  local t0=$EPOCHREALTIME
  timeout 60 docker stop -t 35 "$SMOKE" >/dev/null
  local took code
  took=$(elapsed "$t0")
  wait "${BG_PIDS[-1]}" || true
  code=$(docker inspect -f '{{.State.ExitCode}}' "$SMOKE")
  check "docker stop (SIGTERM) exits 0 after $took s (exit code $code)" test "$code" = 0
  local drain; drain=$(docker logs "$SMOKE" 2>&1 | grep -o '"msg":"draining".*' | sed -n 1p)
  check "the stream running at SIGTERM was drained: it ends with done/succeeded (log: ${drain:-no draining line})" \
    eval 'grep -q "\"event\":\"done\",\"status\":\"succeeded\"" <<<"$(tail -n 1 "$WORK/drain-stream.txt")" && [ -n "$drain" ]'
  timeout 60 docker rm -v "$SMOKE" >/dev/null
}

# MemoryDenyWriteExecute (convd.service) with the image's libgomp: the kernel's prctl(PR_SET_MDWE)
# refuses writable+executable memory the way the unit's seccomp filter does; run OpenMP jobs under it
mdwe() {
  local port base out
  if [ "$(uname -m)" != x86_64 ]; then echo "skipped: PR_SET_MDWE check written for x86_64"; return 0; fi
  timeout 60 docker run -d --name "$MDWE" --read-only -e CONVD_TOKEN="$TOKEN" -e CONVD_WORKERS=1 -e CONVD_THREADS=2 \
    -p 127.0.0.1::8080 --entrypoint /usr/bin/perl "$IMAGE" \
    -e 'syscall(157, 65, 1, 0, 0, 0) == 0 or die "prctl(PR_SET_MDWE): $!\n"; exec @ARGV' /usr/local/bin/convd >/dev/null
  port=$(docker port "$MDWE" 8080/tcp | sed -n 1p | sed 's/.*://')
  base=http://127.0.0.1:$port
  if ! wait_http "$base/healthz" 15; then
    if docker logs "$MDWE" 2>&1 | grep -q 'prctl(PR_SET_MDWE)'; then
      echo "skipped: this kernel has no PR_SET_MDWE (Linux >= 6.3): $(docker logs "$MDWE" 2>&1 | tail -n 1)"
      timeout 60 docker rm -f -v "$MDWE" >/dev/null; return 0
    fi
  fi
  out=$(curl -sS -m 30 "${AUTH[@]}" --json @clients/examples/train-seed.json "$base/train" | tail -n 1 || true)
  check "under MemoryDenyWriteExecute (PR_SET_MDWE) convd with 2 OpenMP threads serves corr2d and train" \
    eval 'check_seed_corr2d_quiet "$base" && grep -q "\"status\":\"succeeded\"" <<<"$out"'
  timeout 60 docker rm -f -v "$MDWE" >/dev/null
}
check_seed_corr2d_quiet() { [ "$(curl -sS -m 10 "${AUTH[@]}" --json "$CORR_BODY" "$1/corr2d")" = "$CORR_WANT" ]; }

# ---- helpers for jobs (POST /jobs, GET /jobs/{id}, /events) ---------------------------------------
LONG_JOB=$WORK/long-train.json
LONG_STEPS=200000
make_long_job() {  # an async training of a few seconds on one thread, checkpointed as it goes (resume tests)
  awk -v n=128 -v steps="$LONG_STEPS" 'BEGIN{srand(2); printf "{\"kind\":\"train\",\"input\":[";
    for(i=0;i<n;i++){printf "%s[", i?",":""; for(j=0;j<n;j++) printf "%s%.3f", j?",":"", rand(); printf "]"}
    printf "],\"target\":[";
    for(i=0;i<n-2;i++){printf "%s[", i?",":""; for(j=0;j<n-2;j++) printf "%s%.3f", j?",":"", rand(); printf "]"}
    printf "],\"kernel_size\":3,\"loss\":\"mse\",\"optimizer\":\"adam\",\"lr\":0.001,\"steps\":%d,\"report_every\":%d,\"seed\":3}\n", steps, steps/40}' > "$LONG_JOB"
}
SEED_JOB=$WORK/seed-job.json
make_seed_job() { jq -c '. + {kind: "train"} | del(.stream)' clients/examples/train-seed.json > "$SEED_JOB"; }
post_job() {  # post_job BASE FILE [REQUEST_ID]: prints the new job's id (empty on failure)
  curl -sS -m 30 "${AUTH[@]}" -H "X-Request-Id: ${3:-deploy-post}" --json @"$2" "$1/jobs" 2>/dev/null | jq -r '.id // empty' 2>/dev/null || true
}
get_job() { curl -sS -m 10 "${AUTH[@]}" -H "X-Request-Id: ${3:-deploy-get}" "$1/jobs/$2" 2>/dev/null || true; }
job_status() { get_job "$1" "$2" | jq -r '.status // empty' 2>/dev/null || true; }
wait_job() {  # wait_job BASE ID SECONDS: until the job is finished; prints its last status
  local i st=
  for i in $(seq $(($3 * 4))); do
    st=$(job_status "$1" "$2")
    case $st in succeeded|failed|cancelled) break ;; esac
    sleep 0.25
  done
  echo "${st:-none}"
}
wait_progress() {  # wait_progress BASE ID STEP SECONDS: until the job has run STEP steps (or finished)
  local i p
  for i in $(seq $(($4 * 10))); do
    p=$(get_job "$1" "$2" | jq -r 'if .status == "running" then (.progress.step // 0) else -1 end' 2>/dev/null || true)
    [ "${p:-0}" = -1 ] && { [ "$(job_status "$1" "$2")" = queued ] || return 1; }
    [ "${p:-0}" -ge "$3" ] 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
job_weight() { get_job "$1" "$2" | jq -c '[.result.weight, .result.bias]' 2>/dev/null || true; }
job_events() { curl -sS -m 30 "${AUTH[@]}" -H 'Accept: application/x-ndjson' "$1/jobs/$2/events" 2>/dev/null || true; }
same_weights() {  # same_weights A B: the same numbers, to 1e-6 relative (the resume contract of issue 10)
  awk -v a="$1" -v b="$2" 'BEGIN {
    gsub(/[][,]/, " ", a); gsub(/[][,]/, " ", b); na = split(a, x, " "); nb = split(b, y, " ")
    if (na != nb || na < 9) { print "   " na " numbers against " nb; exit 1 }
    for (i = 1; i <= na; i++) { d = x[i] - y[i]; m = (x[i] < 0 ? -x[i] : x[i]); if (d < 0) d = -d
      if (d > 1e-6 * m + 1e-12) { print "   number " i ": " x[i] " against " y[i]; exit 1 } }
  }'
}
in_ctr_get() {  # in_ctr_get CONTAINER PATH: GET from inside (the image has bash, no curl)
  timeout 20 docker exec "$1" bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080 && printf "GET %s HTTP/1.0\r\n\r\n" "$0" >&3 && cat <&3' "$2" 2>/dev/null || true
}
busy_workers() { in_ctr_get "$1" /metrics | awk '$1 == "convd_workers_busy" {print $2 + 0}'; }

# ---- 5b. the image with SQLite on a named volume: jobs survive the container ------------------------
LONG_REF=   # the weights of an uninterrupted LONG_JOB (1 thread), shared with the fleet test
sqlite_run() {  # sqlite_run NAME: the image on the SQLite volume, read-only root, one worker of one thread
  timeout 60 docker run -d --name "$1" --read-only --cap-drop ALL --security-opt no-new-privileges \
    -e CONVD_TOKEN="$TOKEN" -e CONVD_WORKERS=1 -e CONVD_THREADS=1 -e CONVD_CHECKPOINT_EVERY=0.2 \
    -e CONVD_MAX_STEPS=1000000 -v "$SQLITE_VOL:/var/lib/convd" -p 127.0.0.1::8080 "$IMAGE" >/dev/null
  SQ_BASE=http://127.0.0.1:$(docker port "$1" 8080/tcp | sed -n 1p | sed 's/.*://')
  wait_http "$SQ_BASE/readyz" 60
}
sqlite_test() {
  local id1 id2 id3 w1 st t0 ev files out rc
  timeout 60 docker volume create "$SQLITE_VOL" >/dev/null
  check "image on a named volume with a read-only root becomes ready" sqlite_run "$SQLITE_CTR"
  id1=$(post_job "$SQ_BASE" "$SEED_JOB")
  st=$(wait_job "$SQ_BASE" "$id1" 60); w1=$(job_weight "$SQ_BASE" "$id1")
  check "POST /jobs (the README's training) succeeds on SQLite (job $id1: $st)" test "$st" = succeeded
  id2=$(post_job "$SQ_BASE" "$LONG_JOB")
  t0=$EPOCHREALTIME
  if wait_progress "$SQ_BASE" "$id2" $((LONG_STEPS * 3 / 10)) 120; then
    echo "   job $id2 at step $(get_job "$SQ_BASE" "$id2" | jq -r .progress.step) after $(elapsed "$t0") s: docker kill (SIGKILL)"
  else echo "   job $id2 did not reach 30% while running ($(job_status "$SQ_BASE" "$id2"))"; fi
  timeout 60 docker kill "$SQLITE_CTR" >/dev/null; timeout 60 docker rm -v "$SQLITE_CTR" >/dev/null
  files=$(timeout 60 docker run --rm -v "$SQLITE_VOL:/d" --entrypoint /bin/ls "$IMAGE" -ln /d | awk 'NR > 1 {print $3 ":" $4 " " $9}' | paste -sd' ')
  check "the store is on the volume, owned by 10001 ($files)" grep -q '^10001:10001 convd.db' <<<"$files"
  t0=$EPOCHREALTIME
  check "a new container on the same volume becomes ready" sqlite_run "$SQLITE_CTR"
  # one process per SQLite file: a second container on the volume refuses to start
  out=$(timeout 60 docker run --name "$SQLITE_CTR-2" --read-only -e CONVD_TOKEN="$TOKEN" \
        -v "$SQLITE_VOL:/var/lib/convd" "$IMAGE" 2>&1) && rc=0 || rc=$?
  timeout 60 docker rm -f -v "$SQLITE_CTR-2" >/dev/null 2>&1 || true
  check "a second convd on the same volume refuses to start (exit $rc: $(tail -n 1 <<<"$out" | cut -c1-160))" \
    test "$rc" != 0 -a "$rc" != 124
  check "the finished job survived the kill: status and kernel as before" \
    eval '[ "$(job_status "$SQ_BASE" "$id1")" = succeeded ] && [ -n "$w1" ] && [ "$(job_weight "$SQ_BASE" "$id1")" = "$w1" ]'
  st=$(wait_job "$SQ_BASE" "$id2" 180)
  ev=$(job_events "$SQ_BASE" "$id2")
  echo "   killed job: $st after $(elapsed "$t0") s; $(grep -m1 '"event":"resumed"' <<<"$ev")"
  check "the killed training resumes in the new container (resumed event) and succeeds ($st)" \
    eval '[ "$st" = succeeded ] && grep -q "\"event\":\"resumed\"" <<<"$ev"'
  # the same training uninterrupted, for the weights
  id3=$(post_job "$SQ_BASE" "$LONG_JOB")
  st=$(wait_job "$SQ_BASE" "$id3" 180); LONG_REF=$(job_weight "$SQ_BASE" "$id3")
  echo "   uninterrupted run: $st"
  check "the resumed training ends with the weights of an uninterrupted one (1e-6 relative)" \
    same_weights "$LONG_REF" "$(job_weight "$SQ_BASE" "$id2")"
  timeout 60 docker stop -t 35 "$SQLITE_CTR" >/dev/null; timeout 60 docker rm -v "$SQLITE_CTR" >/dev/null
  timeout 60 docker volume rm "$SQLITE_VOL" >/dev/null
}

# ---- 6. compose: a fleet of replicas on one PostgreSQL behind nginx -----------------------------------------------------------
compose_logs() {  # the stack's last log lines, for a failure
  echo "---- docker-compose ps and logs (last lines):"; compose ps 2>&1 | sed 's/^/   /'
  compose logs --no-color --tail 15 2>&1 | sed 's/^/   /'
}
compose_images() {  # nginx and postgres from Debian's packages (convd's image is the one built above)
  check "docker-compose config accepts deploy/compose.yaml" compose config -q
  quiet "$WORK/compose-build.log" compose build nginx postgres
  echo "   images: $(docker image inspect -f '{{index .RepoTags 0}} {{.Size}}' "$NGINX_IMAGE" "$PG_IMAGE" | awk '{printf "%s %.1f MB; ", $1, $2/1e6}')"
}
compose_test() {
  local t0=$EPOCHREALTIME
  quiet "$WORK/compose-up.log" compose up -d --no-build || { compose_logs; return 1; }
  local up_s; up_s=$(elapsed "$t0")
  local lb ids=() i n1 n2 got okc=0 pg
  lb=http://$(compose port nginx 8080 | sed -n 1p)
  mapfile -t ids < <(compose ps -q convd)
  pg=$(compose ps -q postgres)
  echo "stack up in $up_s s (replicas waited for PostgreSQL, nginx for healthy replicas): nginx on $lb, replicas ${ids[*]:0:2}"
  check "postgres (Debian's package) is healthy (pg_isready) with its data on the named volume ${PROJECT}_pgdata" \
    eval '[ "$(docker inspect -f "{{.State.Health.Status}}" "$pg")" = healthy ] &&
          docker inspect -f "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}};{{end}}" "$pg" | grep -q "volume ${PROJECT}_pgdata /var/lib/postgresql/data;"'
  check "2 convd replicas running and healthy" \
    eval '[ ${#ids[@]} = 2 ] && [ "$(docker inspect -f "{{.State.Health.Status}}" "${ids[@]}" | sort -u)" = healthy ]'
  local hc
  hc=$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} {{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}' "${ids[@]}" | sort -u)
  check "replicas: read-only root, cap_drop ALL, no-new-privileges, 1 CPU and 1 GiB ($hc)" \
    test "$hc" = "true [ALL] [no-new-privileges=true] 1073741824 1000000000"
  check "nginx published on loopback only ($lb)" grep -q '^http://127\.0\.0\.1:' <<<"$lb"
  check "nginx answers /healthz" wait_http "$lb/healthz" 20
  for i in $(seq 20); do
    got=$(curl -sS -m 10 "${AUTH[@]}" -H "X-Request-Id: deploy-lb-$i" --json "$CORR_BODY" "$lb/corr2d" || true)
    [ "$got" = "$CORR_WANT" ] && okc=$((okc + 1))
  done
  check "20 corr2d requests through nginx all give $CORR_WANT ($okc/20)" test $okc = 20
  n1=$(docker logs "${ids[0]}" 2>&1 | grep -c '"request_id":"deploy-lb-' || true)
  n2=$(docker logs "${ids[1]}" 2>&1 | grep -c '"request_id":"deploy-lb-' || true)
  check "requests reached both replicas (their access logs: $n1 + $n2 of 20)" \
    eval '[ "$n1" -gt 0 ] && [ "$n2" -gt 0 ] && [ $((n1 + n2)) = 20 ]'
  # one PostgreSQL: whichever replica nginx picks knows every job
  local seed_id seed_w st code okg=0
  seed_id=$(post_job "$lb" "$SEED_JOB" deploy-fleet-post)
  st=$(wait_job "$lb" "$seed_id" 60); seed_w=$(job_weight "$lb" "$seed_id")
  for i in $(seq 20); do
    code=$(curl -s -o /dev/null -m 10 -w '%{http_code}' "${AUTH[@]}" -H "X-Request-Id: deploy-fleet-get-$i" "$lb/jobs/$seed_id" || true)
    [ "$code" = 200 ] && okg=$((okg + 1))
  done
  n1=$(docker logs "${ids[0]}" 2>&1 | grep -c '"request_id":"deploy-fleet-get-' || true)
  n2=$(docker logs "${ids[1]}" 2>&1 | grep -c '"request_id":"deploy-fleet-get-' || true)
  check "a job created through nginx ($seed_id, $st) is found by $okg/20 GETs through nginx, both replicas served some ($n1 + $n2)" \
    eval '[ "$st" = succeeded ] && [ $okg = 20 ] && [ "$n1" -gt 0 ] && [ "$n2" -gt 0 ]'
  check_seed_train "$lb" nginx
  # streaming is not buffered: step lines come as the job runs (the first after ~10% of it), not all
  # at the end; measured as a share of the whole request, so it holds whatever the compute speed
  stream_stamped "$lb" "$WORK/lb-stream.txt"
  local t_req first last nl share
  nl=$(grep -c '"event":"step"' "$WORK/lb-stream.txt" || true)
  t_req=$(sed -n 1p "$WORK/lb-stream.txt" | cut -d' ' -f1)
  first=$(grep -m1 '"event":"step"' "$WORK/lb-stream.txt" | cut -d' ' -f1 || true)
  last=$(grep '"event":"done"' "$WORK/lb-stream.txt" | cut -d' ' -f1 || true)
  share=$(awk -v r="$t_req" -v a="${first:-0}" -v b="${last:-0}" 'BEGIN{printf "%.2f", (b > r) ? (b-a)/(b-r) : 0}')
  check "a long stream through nginx arrives line by line ($nl step lines; the first came $(awk -v a="${first:-0}" -v b="${last:-0}" 'BEGIN{printf "%.2f", b-a}') s, $share of the request, before done)" \
    eval '[ "$nl" = 10 ] && [ -n "$first" ] && [ -n "$last" ] && awk -v s="$share" "BEGIN{exit !(s >= 0.5)}"'

  # a replica dies (SIGKILL, no drain) in the middle of a training: its lease lapses, the other resumes it
  local long_id runner= busy c resumed
  long_id=$(post_job "$lb" "$LONG_JOB" deploy-fleet-long)
  t0=$EPOCHREALTIME
  wait_progress "$lb" "$long_id" $((LONG_STEPS * 3 / 10)) 120 ||
    echo "   job $long_id did not reach 30% while running ($(job_status "$lb" "$long_id"))"
  for c in "${ids[@]}"; do busy=$(busy_workers "$c"); [ "${busy:-0}" = 1 ] && runner=$c; done
  echo "   job $long_id at step $(get_job "$lb" "$long_id" | jq -r .progress.step) after $(elapsed "$t0") s on replica ${runner:0:12}: docker kill"
  if [ -n "$runner" ]; then
    timeout 60 docker update --restart=no "$runner" >/dev/null   # stays dead: the other one must finish it
    timeout 60 docker kill "$runner" >/dev/null
  fi
  t0=$EPOCHREALTIME
  st=$(wait_job "$lb" "$long_id" 240)
  resumed=$(job_events "$lb" "$long_id" | grep -m1 '"event":"resumed"' || true)
  echo "   the job ended $st $(elapsed "$t0") s after the kill; ${resumed:-no resumed event}"
  check "docker kill of the replica running a training: the job finishes on the other with a resumed event ($st)" \
    eval '[ -n "$runner" ] && [ "$st" = succeeded ] && [ -n "$resumed" ] && [ "$(docker inspect -f "{{.State.Running}}" "$runner")" = false ]'
  if [ -z "$LONG_REF" ]; then   # the SQLite step did not give the uninterrupted weights: make them here
    local ref_id; ref_id=$(post_job "$lb" "$LONG_JOB" deploy-fleet-ref)
    [ "$(wait_job "$lb" "$ref_id" 240)" = succeeded ] && LONG_REF=$(job_weight "$lb" "$ref_id")
  fi
  local long_w; long_w=$(job_weight "$lb" "$long_id")
  check "the resumed job's final weights equal an uninterrupted run's (1e-6 relative)" same_weights "$LONG_REF" "$long_w"

  # scale out: nginx finds new replicas by itself (it asks Docker's DNS again every 5 s)
  t0=$EPOCHREALTIME
  quiet "$WORK/compose-scale.log" compose up -d --no-build --no-recreate --scale convd=3
  mapfile -t ids < <(compose ps -q convd)
  local healthy=0
  for i in $(seq 120); do
    healthy=$(docker inspect -f '{{.State.Health.Status}}' "${ids[@]}" | grep -c '^healthy$' || true)
    [ "$healthy" = 3 ] && break; sleep 0.5
  done
  local seen=() k r
  for i in $(seq 120); do   # until each of the 3 has served one (bounded: 120 requests)
    curl -sS -o /dev/null -m 10 "${AUTH[@]}" -H "X-Request-Id: deploy-scale-$i" --json "$CORR_BODY" "$lb/corr2d" || true
    if [ $((i % 10)) = 0 ]; then
      seen=(); for c in "${ids[@]}"; do seen+=("$(docker logs "$c" 2>&1 | grep -c '"request_id":"deploy-scale-' || true)"); done
      r=0; for k in "${seen[@]}"; do [ "$k" -gt 0 ] && r=$((r + 1)); done
      [ $r = 3 ] && break
    fi
  done
  check "up --scale convd=3: 3 healthy replicas ($healthy) and nginx sends requests to each without a restart (${seen[*]} of $i, $(elapsed "$t0") s)" \
    eval '[ "$healthy" = 3 ] && [ "$r" = 3 ]'
  check "no replica's log shows the database password" \
    eval '! compose logs --no-color convd 2>&1 | grep -qF -- "$(cat "$WORK/pg-password")"'

  # failover: stop one replica; every request must still succeed, quickly
  t0=$EPOCHREALTIME
  timeout 60 docker stop -t 35 "${ids[0]}" >/dev/null
  code=$(docker inspect -f '{{.State.ExitCode}}' "${ids[0]}")
  check "a replica stopped with SIGTERM under compose exits 0 ($code, $(elapsed "$t0") s)" test "$code" = 0
  okc=0; t0=$EPOCHREALTIME
  for i in $(seq 10); do
    got=$(curl -sS -m 5 "${AUTH[@]}" --json "$CORR_BODY" "$lb/corr2d" || true)
    [ "$got" = "$CORR_WANT" ] && okc=$((okc + 1))
  done
  check "with one replica stopped, 10/10 requests through nginx succeed ($okc/10 in $(elapsed "$t0") s)" test $okc = 10

  # the whole stack down (volumes kept) and up again: finished jobs are still there
  t0=$EPOCHREALTIME
  quiet "$WORK/compose-down.log" compose down --timeout 30
  quiet "$WORK/compose-up2.log" compose up -d --no-build
  lb=http://$(compose port nginx 8080 | sed -n 1p)
  wait_http "$lb/readyz" 60 || true
  check "down + up of the whole stack ($(elapsed "$t0") s) keeps finished jobs: both found through nginx with the same results" \
    eval '[ "$(job_status "$lb" "$seed_id")" = succeeded ] && [ "$(job_weight "$lb" "$seed_id")" = "$seed_w" ] &&
          [ "$(job_status "$lb" "$long_id")" = succeeded ] && [ "$(job_weight "$lb" "$long_id")" = "$long_w" ]'

  t0=$EPOCHREALTIME
  quiet "$WORK/compose-down.log" compose down -v --remove-orphans --timeout 30
  local left vols
  left=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" | wc -l)
  vols=$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT" | wc -l)
  check "docker-compose down -v removes the stack ($left containers, $vols volumes left, $(elapsed "$t0") s)" \
    test "$left" = 0 -a "$vols" = 0
}

# ---- 7. Kubernetes manifests and systemd unit, offline ---------------------------------------------
k8s_test() {
  local out rc
  # kubectl's --dry-run=client still asks an API server for discovery and the OpenAPI schema, and
  # there is none here: kubectl parses the manifests locally, kubernetes-models checks the schema
  out=$(HOME=$WORK/kube KUBECONFIG=/dev/null timeout 60 kubectl annotate --local -f deploy/k8s/ -f deploy/k8s/sqlite/ validated=offline -o name 2>&1 || true)
  check "kubectl parses deploy/k8s and deploy/k8s/sqlite locally ($(paste -sd' ' <<<"$out"))" \
    eval '[ "$(grep -cx "deployment.apps/convd" <<<"$out")" = 2 ] && grep -qx "service/convd" <<<"$out" && grep -qx "persistentvolumeclaim/convd-data" <<<"$out"'
  if command -v npm >/dev/null && command -v node >/dev/null; then
    mkdir -p "$WORK/k8s-validate"
    if [ ! -x "$WORK/k8s-validate/node_modules/.bin/tsc" ]; then
      quiet "$WORK/npm.log" npm install --prefix "$WORK/k8s-validate" --no-audit --no-fund --no-save \
        kubernetes-models@5.1.0 yaml@2.9.1 typescript@5.9.3
    fi
    cp deploy/k8s-validate.mjs "$WORK/k8s-validate/"
    # one deployable set per run: the fleet, then the single-replica SQLite variant
    out=$(timeout 120 node "$WORK/k8s-validate/k8s-validate.mjs" "$ROOT"/deploy/k8s/*.yaml 2>&1) && rc=0 || rc=$?
    sed 's/^/   /' <<<"$out"
    check "deploy/k8s (fleet on PostgreSQL): Kubernetes schema, no unknown fields, store and password from Secrets" test $rc = 0
    out=$(timeout 120 node "$WORK/k8s-validate/k8s-validate.mjs" "$ROOT"/deploy/k8s/service.yaml "$ROOT"/deploy/k8s/sqlite/*.yaml 2>&1) && rc=0 || rc=$?
    sed 's/^/   /' <<<"$out"
    check "deploy/k8s/sqlite: schema, no unknown fields, 1 replica, Recreate, SQLite on a ReadWriteOnce claim" test $rc = 0
    # the rules must bite: a SQLite Deployment scaled to 2 with a rolling update is refused
    sed -e 's/^  replicas: 1$/  replicas: 2/' -e 's/^    type: Recreate$/    type: RollingUpdate/' \
      deploy/k8s/sqlite/deployment.yaml > "$WORK/k8s-validate/bad-sqlite.yaml"
    out=$(K8S_VALIDATE_RULES_ONLY=1 timeout 120 node "$WORK/k8s-validate/k8s-validate.mjs" "$WORK/k8s-validate/bad-sqlite.yaml" "$ROOT"/deploy/k8s/sqlite/pvc.yaml 2>&1) && rc=0 || rc=$?
    check "the validator refuses a SQLite Deployment with 2 replicas and a rolling update ($(grep -c 'INVALID convd rule' <<<"$out") rule errors)" \
      eval '[ $rc != 0 ] && grep -q "SQLite allows one replica" <<<"$out" && grep -q "needs strategy Recreate" <<<"$out"'
    # ... and a fleet whose database URL (with its password) is written in the manifest
    awk '/- name: CONVD_STORE_PASSWORD_FILE/ {print "            - name: CONVD_STORE"; print "              value: postgres://convd:secret@db:5432/convd"} {print}' \
      deploy/k8s/deployment.yaml > "$WORK/k8s-validate/bad-fleet.yaml"
    out=$(K8S_VALIDATE_RULES_ONLY=1 timeout 120 node "$WORK/k8s-validate/k8s-validate.mjs" "$WORK/k8s-validate/bad-fleet.yaml" 2>&1) && rc=0 || rc=$?
    check "the validator refuses a fleet whose CONVD_STORE is written in the manifest (and does not print its password)" \
      eval '[ $rc != 0 ] && grep -q "belongs in the Secret" <<<"$out" && ! grep -q secret@ <<<"$out"'
  else
    echo "skipped the schema check: no node/npm on this machine"
  fi
  local g d f
  for f in deploy/k8s/deployment.yaml deploy/k8s/sqlite/deployment.yaml; do
    g=$(grep -m1 -oE 'terminationGracePeriodSeconds: *[0-9]+' "$f" | grep -oE '[0-9]+$')
    d=$(grep -A1 'name: CONVD_DRAIN_TIMEOUT' "$f" | grep -oE '"[0-9]+"' | tr -d '"')
    check "$f: terminationGracePeriodSeconds ($g) exceeds the drain timeout ($d) plus the 5 s preStop" \
      eval '[ -n "$g" ] && [ -n "$d" ] && [ "$g" -gt $((d + 5)) ]'
    check "$f: runAsNonRoot, readOnlyRootFilesystem, no privilege escalation, capabilities drop ALL, /livez and /readyz probes" \
      has_all "$f" "runAsNonRoot: true" "readOnlyRootFilesystem: true" \
        "allowPrivilegeEscalation: false" 'drop: ["ALL"]' "path: /livez" "path: /readyz"
  done
}
has_all() {  # has_all FILE STRING...: every string occurs in FILE
  local f=$1 k; shift
  for k in "$@"; do grep -qF -- "$k" "$f" || { echo "   missing in $f: $k"; return 1; }; done
}
systemd_test() {
  if ! command -v systemd-analyze >/dev/null; then echo "skipped: no systemd-analyze"; return 0; fi
  # verify wants ExecStart to exist: point it at the binary taken from the image
  local d=$WORK/systemd out cid
  rm -rf "$d"; mkdir -p "$d/bin"
  cid=$(timeout 60 docker create "$IMAGE")
  timeout 60 docker cp "$cid:/usr/local/bin/convd" "$d/bin/convd" && timeout 60 docker rm -v "$cid" >/dev/null
  sed "s|/usr/local/bin/convd|$d/bin/convd|" deploy/convd.service > "$d/convd.service"
  out=$(timeout 60 systemd-analyze verify "$d/convd.service" 2>&1) && rc=0 || rc=$?
  check "systemd-analyze verify deploy/convd.service: no warnings ${out:+($out)}" eval '[ $rc = 0 ] && [ -z "$out" ]'
  out=$(timeout 60 systemd-analyze security --offline=yes "$d/convd.service" 2>&1 | grep -o 'Overall exposure level.*' || true)
  echo "   $out"
  local ts; ts=$(grep -oE '^TimeoutStopSec=[0-9]+' deploy/convd.service | grep -oE '[0-9]+$')
  check "convd.service: TimeoutStopSec ($ts s) > drain timeout (25 s), KillSignal=SIGTERM" \
    eval '[ "${ts:-0}" -gt 25 ] && grep -q "^KillSignal=SIGTERM" deploy/convd.service'
  check "convd.service keeps its SQLite store in StateDirectory=convd (writable under ProtectSystem=strict)" \
    has_all deploy/convd.service "StateDirectory=convd" "Environment=CONVD_STORE=sqlite:%S/convd/convd.db" "ProtectSystem=strict"
}

T_RUN=$EPOCHREALTIME
step packages     install_packages
step engine       start_engine
step base-image   import_base
step build        build_image
step image-checks check_image
make_slow_job; make_long_job; make_seed_job
T_RUN=$EPOCHREALTIME
step run          smoke
step mdwe         mdwe
step sqlite       sqlite_test
step compose-images compose_images
step compose      compose_test
step k8s          k8s_test
step systemd      systemd_test
echo "deploy: image $IMAGE_MB MB; times: $(for k in packages engine base-image build run sqlite compose-images compose k8s; do printf '%s %ss, ' "$k" "${TIMES[$k]:-?}"; done)"
