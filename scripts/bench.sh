#!/usr/bin/env bash
# The trustgate benchmark: trustgate against its peer, the standard pull-through cache
# (docker-registry in proxy mode), on loopback, with real components only.
#
#   origin   docker-registry holding bench/app:1.0 (small manifest + one ~16 MiB layer), the
#            tag signed with the real notary CLI on a real notary-server (plain HTTP, local trust)
#   peer     docker-registry, pull-through proxy of origin
#   signed   trustgate, policy `signed` against the notary-server (enforcement on)
#   allow    trustgate, policy `allow` (the same proxy without signature checks)
#
# For each it measures, warm (after a first pull): manifest GET by tag and by digest (fixed
# request count over keep-alive connections; req/s, p50/p99), and blob throughput (MiB/s,
# sequential and parallel); and, cold (a fresh process and state each time), the latency of
# the first tag resolution — for trustgate-signed that is the trust fetch + verification.
# It prints the figures and the ratio of each trustgate variant to the peer; it asserts on
# nothing. Results are also written to bench-results.txt (gitignored).
#
# Knobs (environment): BENCH_REQUESTS (5000), BENCH_CONCURRENCY (16), BENCH_BLOB_SEQ (8),
# BENCH_BLOB_PAR (32), BENCH_BLOB_CONC (4), BENCH_COLD_RUNS (5), BENCH_LAYER_MIB (16),
# BENCH_REPEATS (3: each warm figure is the median run of this many),
# BENCH_SKIP_DEPS=1 (skip install-deps.sh), BENCH_KEEP=1 (keep the work dir and logs).
#
# Then the blob benchmark, scripts/bench-blobs.sh (issue 9: blob miss and hit against the peer
# and the origin direct, the SHA-256 rate, concurrent cold GETs counted at the origin, peak
# RSS; its knobs are in its header). BENCH_BLOBS=0 skips it; BENCH_ONLY=blobs runs only it.
# Last the memory benchmark, scripts/bench-memory.sh (issue 8: peak RSS under a manifest and
# blob load against the shipped Kubernetes limit). BENCH_MEMORY=0 skips it; BENCH_ONLY=memory
# runs only it.
#
# Only 127.0.0.1 addresses; every process it starts is stopped by its pid on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
case ${BENCH_ONLY:-} in
  blobs | memory)
    [ "${BENCH_SKIP_DEPS:-0}" = 1 ] || scripts/install-deps.sh >&2
    exec "scripts/bench-$BENCH_ONLY.sh" ;;
  "") ;;
  *) echo "bench.sh: BENCH_ONLY is blobs or memory, not $BENCH_ONLY" >&2; exit 2 ;;
esac

REQUESTS=${BENCH_REQUESTS:-5000}
CONC=${BENCH_CONCURRENCY:-16}
BLOB_SEQ=${BENCH_BLOB_SEQ:-8}
BLOB_PAR=${BENCH_BLOB_PAR:-32}
BLOB_CONC=${BENCH_BLOB_CONC:-4}
COLD_RUNS=${BENCH_COLD_RUNS:-5}
REPEATS=${BENCH_REPEATS:-3}
LAYER_MIB=${BENCH_LAYER_MIB:-16}
MAX_SECS=120 # per measurement: a stuck server ends the measurement, not the machine's day
MT=application/vnd.docker.distribution.manifest.v2+json
REPO=bench/app
TAG=1.0

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

WORK=$(mktemp -d -t trustgate-bench.XXXXXX)
declare -A PID_OF=() # name -> pid of every process this script started and has not stopped
cleanup() {
  local rc=$?
  local name
  for name in "${!PID_OF[@]}"; do kill "${PID_OF[$name]}" 2>/dev/null || true; done
  for name in "${!PID_OF[@]}"; do wait "${PID_OF[$name]}" 2>/dev/null || true; done
  if [ "$rc" -ne 0 ]; then
    echo "bench: failed (exit $rc); last log lines:" >&2
    for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }; done
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: kept $WORK" >&2; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME LOGFILE CMD...: runs CMD in the background and remembers its pid under NAME.
start() {
  local name=$1 logf=$2; shift 2
  "$@" > "$logf" 2>&1 &
  PID_OF[$name]=$!
}
# stop NAME: stops the process started under NAME, by its pid.
stop() {
  local pid=${PID_OF[$1]:-}
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PID_OF[$1]"
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# free_port: sets PORT to a random loopback port nobody listens on (and not handed out before),
# below the kernel's ephemeral range, where the many client connections of a run (and other
# programs' 127.0.0.1:0 listeners) take their ports.
USED_PORTS=" "
EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "$EPHEMERAL_LOW" -gt 12000 ] || EPHEMERAL_LOW=32768
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
    case $USED_PORTS in *" $p "*) continue ;; esac
    if ! listening "$p"; then USED_PORTS="$USED_PORTS$p "; PORT=$p; return 0; fi
  done
  die "no free port found"
}
# wait_http URL NAME [PROCNAME]: until URL answers with any HTTP status (~20 s at most).
# With PROCNAME, returns 1 as soon as that started process has exited (e.g. its port was
# taken meanwhile), so the caller can retry on another port.
wait_http() {
  for _ in $(seq 1 200); do
    curl -s -o /dev/null --max-time 1 "$1" && return 0
    if [ -n "${3:-}" ] && ! kill -0 "${PID_OF[$3]}" 2>/dev/null; then
      wait "${PID_OF[$3]}" 2>/dev/null || true
      unset "PID_OF[$3]"
      return 1
    fi
    sleep 0.1
  done
  die "$2 did not come up at $1"
}

# ---------------------------------------------------------------------------------------------
log "installing dependencies and building (cargo build --release)"
[ "${BENCH_SKIP_DEPS:-0}" = 1 ] || scripts/install-deps.sh >&2
cargo build --release --quiet
LOADGEN=$(cargo bench --bench loadgen --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*loadgen-[0-9a-f]*\)).*/\1/p' | tail -n 1)
[ -x "$LOADGEN" ] || die "could not build the load generator (benches/loadgen.rs)"
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
# A copy taken right after the build: a target directory shared with other checkouts (as on
# the development machine) may have its release/trustgate replaced by their builds meanwhile.
TRUSTGATE=$WORK/trustgate
cp "${TARGET_DIR:-target}/release/trustgate" "$TRUSTGATE" || die "trustgate binary not found"
"$TRUSTGATE" serve --help 2>/dev/null | grep -q -- --state-dir || die "$TRUSTGATE is not this checkout's trustgate"

# loadgen ARGS...: one load generator run, its figures line in LG_OUT. Run in the background
# and waited for, so an interrupt stops the benchmark at once rather than after the run (bash
# runs traps only between foreground commands).
loadgen() {
  "$LOADGEN" --max-secs "$MAX_SECS" "$@" > "$WORK/loadgen.out" 2>&1 &
  PID_OF[loadgen]=$!
  local rc=0
  wait "${PID_OF[loadgen]}" || rc=$?
  unset "PID_OF[loadgen]"
  LG_OUT=$(< "$WORK/loadgen.out")
  [ "$rc" -eq 0 ] || die "load generator failed: $LG_OUT"
}

# ---------------------------------------------------------------------------------------------
free_port; ORIGIN_PORT=$PORT
ORIGIN=127.0.0.1:$ORIGIN_PORT
free_port; NOTARY_PORT=$PORT
NOTARY_URL=http://127.0.0.1:$NOTARY_PORT

# registry_config FILE PORT STORAGE [REMOTE]: a docker-registry config; with REMOTE, a
# pull-through cache of it. Default logging (info, access log on), as deployed.
registry_config() {
  {
    echo "version: 0.1"
    echo "storage: {filesystem: {rootdirectory: $3}}"
    echo "http: {addr: 127.0.0.1:$2}"
    [ -z "${4:-}" ] || echo "proxy: {remoteurl: $4}"
  } > "$1"
}

log "starting origin docker-registry on $ORIGIN"
registry_config "$WORK/origin.yml" "$ORIGIN_PORT" "$WORK/origin-data"
start origin "$WORK/origin.log" docker-registry serve "$WORK/origin.yml"
wait_http "http://$ORIGIN/v2/" origin

log "starting notary-server on $NOTARY_URL (plain HTTP, memory storage, local trust)"
cat > "$WORK/notary-server.json" <<EOF
{"server": {"http_addr": "127.0.0.1:$NOTARY_PORT"},
 "trust_service": {"type": "local"},
 "storage": {"backend": "memory"},
 "logging": {"level": "warn"}}
EOF
start notary "$WORK/notary-server.log" notary-server -config "$WORK/notary-server.json"
wait_http "$NOTARY_URL/_notary_server/health" notary-server

# ---------------------------------------------------------------------------------------------
# A deterministic image: the layer is a tar (sorted, mtime 0, numeric owner) of one file of
# pseudo-random, incompressible bytes (AES-CTR keystream under a fixed key), gzip -n.
log "building a deterministic image with a ${LAYER_MIB} MiB layer and pushing $REPO:$TAG"
IMG=$WORK/image
mkdir -p "$IMG/rootfs"
head -c $((LAYER_MIB * 1024 * 1024)) /dev/zero \
  | openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f -iv 00000000000000000000000000000000 > "$IMG/rootfs/data.bin"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$IMG/rootfs" -cf "$IMG/layer.tar" .
DIFFID=$(sha256sum "$IMG/layer.tar" | cut -d' ' -f1)
gzip -n -1 -c "$IMG/layer.tar" > "$IMG/layer.tar.gz"
LAYER_DIGEST=sha256:$(sha256sum "$IMG/layer.tar.gz" | cut -d' ' -f1)
LAYER_SIZE=$(stat -c %s "$IMG/layer.tar.gz")
printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$DIFFID" > "$IMG/config.json"
CONFIG_DIGEST=sha256:$(sha256sum "$IMG/config.json" | cut -d' ' -f1)
printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":%s,"digest":"%s"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":%s,"digest":"%s"}]}' \
  "$MT" "$(stat -c %s "$IMG/config.json")" "$CONFIG_DIGEST" "$LAYER_SIZE" "$LAYER_DIGEST" > "$IMG/manifest.json"
MANIFEST_DIGEST=sha256:$(sha256sum "$IMG/manifest.json" | cut -d' ' -f1)
MANIFEST_SIZE=$(stat -c %s "$IMG/manifest.json")
for pair in "$IMG/layer.tar.gz=$LAYER_DIGEST" "$IMG/config.json=$CONFIG_DIGEST"; do
  file=${pair%%=*}; dig=${pair##*=}
  loc=$(curl -fsS -X POST -D - -o /dev/null "http://$ORIGIN/v2/$REPO/blobs/uploads/" \
        | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
  case $loc in http*) ;; *) loc="http://$ORIGIN$loc" ;; esac
  case $loc in *\?*) loc="$loc&digest=$dig" ;; *) loc="$loc?digest=$dig" ;; esac
  curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$file" "$loc" >/dev/null
done
curl -fsS -X PUT -H "Content-Type: $MT" --data-binary "@$IMG/manifest.json" \
  "http://$ORIGIN/v2/$REPO/manifests/$TAG" >/dev/null
log "manifest $MANIFEST_DIGEST ($MANIFEST_SIZE bytes), layer $LAYER_DIGEST ($LAYER_SIZE bytes)"

# The GUN is the upstream's name for the repository: trustgate's config calls the upstream
# "$ORIGIN", so the GUN is $ORIGIN/$REPO.
GUN=$ORIGIN/$REPO
log "signing $GUN:$TAG with the notary CLI"
cat > "$WORK/notary-client.json" <<EOF
{"trust_dir": "$WORK/trust", "remote_server": {"url": "$NOTARY_URL"}}
EOF
# Throwaway passphrases for throwaway keys.
export NOTARY_ROOT_PASSPHRASE=bench-root NOTARY_TARGETS_PASSPHRASE=bench-targets \
       NOTARY_SNAPSHOT_PASSPHRASE=bench-snapshot NOTARY_DELEGATION_PASSPHRASE=bench-delegation
curl -fsS -H "Accept: $MT" "http://$ORIGIN/v2/$REPO/manifests/$TAG" -o "$WORK/served-manifest.json"
cmp -s "$WORK/served-manifest.json" "$IMG/manifest.json" || die "origin serves other manifest bytes than were pushed"
{
  notary -c "$WORK/notary-client.json" init "$GUN"
  notary -c "$WORK/notary-client.json" add "$GUN" "$TAG" "$WORK/served-manifest.json"
  notary -c "$WORK/notary-client.json" publish "$GUN"
} > "$WORK/notary-cli.log" 2>&1 || die "notary signing failed (see $WORK/notary-cli.log)"
SIGNED=$(notary -c "$WORK/notary-client.json" lookup "$GUN" "$TAG" 2>>"$WORK/notary-cli.log" | awk '{print $2}')
[ "sha256:${SIGNED#sha256:}" = "$MANIFEST_DIGEST" ] || die "notary lookup gave '$SIGNED', expected $MANIFEST_DIGEST"

# ---------------------------------------------------------------------------------------------
cat > "$WORK/policy-signed.toml" <<EOF
version = 1
[trust_servers.bench]
url = "$NOTARY_URL"
[default]
require = "signed"
trust_server = "bench"
gun = "{registry}/{repository}"
roles = ["targets/releases", "targets"]
mode = "enforce"
digest_pulls = "allow"
[default.pinning]
tofu = true
EOF
cat > "$WORK/policy-allow.toml" <<EOF
version = 1
[default]
require = "allow"
EOF

# start_variant NAME [DIR]: starts one server under test on a fresh port with fresh state (or
# the state left in DIR by an earlier run) and sets ADDR to its address and DIR to its
# state directory. NAME is peer, signed or allow. (Not called in $(...): the pid
# must be recorded in this shell.)
RUN=0
start_variant() {
  local name=$1 port dir=${2:-} attempt url
  RUN=$((RUN + 1))
  [ -n "$dir" ] || dir=$WORK/$name-$RUN
  mkdir -p "$dir"
  DIR=$dir
  for attempt in 1 2 3; do
    free_port; port=$PORT
    case $name in
      peer)
        registry_config "$dir/registry.yml" "$port" "$dir/data" "http://$ORIGIN"
        start "$name" "$WORK/$name-$RUN.$attempt.log" docker-registry serve "$dir/registry.yml"
        url=http://127.0.0.1:$port/v2/
        ;;
      signed | allow)
        cat > "$dir/trustgate.toml" <<EOF
listen = ["127.0.0.1:$port"]
policy = "$WORK/policy-$name.toml"
[[upstream]]
name = "$ORIGIN"
url = "http://$ORIGIN"
EOF
        start "$name" "$WORK/$name-$RUN.$attempt.log" "$TRUSTGATE" serve --config "$dir/trustgate.toml" --state-dir "$dir/state"
        url=http://127.0.0.1:$port/healthz
        ;;
      *) die "unknown variant $name" ;;
    esac
    if wait_http "$url" "$name" "$name"; then
      ADDR=127.0.0.1:$port
      return 0
    fi
    log "$name exited at start on port $port (attempt $attempt): $(tail -n 1 "$WORK/$name-$RUN.$attempt.log")"
  done
  die "$name did not start"
}

declare -A R=()      # "variant metric" -> figure
declare -A ERRS=()   # "variant" -> failures seen in its measurements
# measure VARIANT METRICKEY FIELD... -- LOADGEN-ARGS: runs the load generator $REPEATS times
# and records, from the run with the median first FIELD (rps or mib_s), the named fields
# (rps, p50_ms, p99_ms, mib_s) as R[VARIANT KEY.FIELD]: one run is at the mercy of whatever
# else the two cores are doing at that moment.
measure() {
  local variant=$1 key=$2; shift 2
  local fields=()
  while [ "$1" != -- ]; do fields+=("$1"); shift; done
  shift
  local out runs=() i
  for i in $(seq 1 "$REPEATS"); do
    loadgen "$@"; out=$LG_OUT
    echo "$variant $key #$i: $out" >> "$WORK/raw.txt"
    runs+=("$out")
  done
  out=$(printf '%s\n' "${runs[@]}" \
        | awk -v f="${fields[0]}" '{ for (i = 1; i <= NF; i++) if (index($i, f "=") == 1) print substr($i, length(f) + 2) "\t" $0 }' \
        | sort -g | awk -F'\t' '{ a[NR] = $2 } END { print a[int((NR + 1) / 2)] }')
  local f v
  for f in "${fields[@]}"; do
    v=$(sed -n "s/.* $f=\([^ ]*\).*/\1/p" <<< " $out")
    R["$variant $key.$f"]=$v
  done
  local e
  for out in "${runs[@]}"; do
    e=$(sed -n 's/.* errors=\([0-9]*\).*/\1/p' <<< " $out")
    if [ "${e:-0}" != 0 ]; then
      ERRS[$variant]="${ERRS[$variant]:-}$key: $e failed ($(sed -n 's/.*first_error=//p' <<< "$out")); "
    fi
  done
}

VARIANTS=(peer signed allow origin)
for v in "${VARIANTS[@]}"; do
  if [ "$v" = origin ]; then addr=$ORIGIN; else start_variant "$v"; addr=$ADDR; fi
  base=http://$addr/v2/$REPO
  log "$v ($addr): first pull, then warm measurements"
  # The first pull: tag, config, layer (fills the peer's cache, trustgate's trust state).
  loadgen --url "$base/manifests/$TAG" --accept "$MT" --requests 1 --concurrency 1 \
    --expect-digest "$MANIFEST_DIGEST"
  echo "$LG_OUT" > "$WORK/first-$v.txt"
  loadgen --url "$base/blobs/$CONFIG_DIGEST" --requests 1 --concurrency 1
  echo "$LG_OUT" >> "$WORK/first-$v.txt"
  loadgen --url "$base/blobs/$LAYER_DIGEST" --requests 1 --concurrency 1 --expect-len "$LAYER_SIZE"
  echo "$LG_OUT" >> "$WORK/first-$v.txt"
  ! grep -vq ' errors=0 ' "$WORK/first-$v.txt" || die "$v: the first pull failed: $(cat "$WORK/first-$v.txt")"

  measure "$v" tag rps p50_ms p99_ms -- --url "$base/manifests/$TAG" --accept "$MT" \
    --requests "$REQUESTS" --concurrency "$CONC" --expect-digest "$MANIFEST_DIGEST"
  measure "$v" digest rps p50_ms p99_ms -- --url "$base/manifests/$MANIFEST_DIGEST" --accept "$MT" \
    --requests "$REQUESTS" --concurrency "$CONC" --expect-digest "$MANIFEST_DIGEST"
  measure "$v" blobseq mib_s -- --url "$base/blobs/$LAYER_DIGEST" \
    --requests "$BLOB_SEQ" --concurrency 1 --expect-len "$LAYER_SIZE"
  measure "$v" blobpar mib_s -- --url "$base/blobs/$LAYER_DIGEST" \
    --requests "$BLOB_PAR" --concurrency "$BLOB_CONC" --expect-len "$LAYER_SIZE"
  [ "$v" = origin ] || stop "$v"
done

# Cold: a fresh process with empty state (and, for the peer, an empty cache) each run; the
# first tag GET. For trustgate-signed this includes the whole trust update (root,
# timestamp, snapshot, targets; TOFU) and its verification. Then "restart": a new process on
# the state the cold one left (trustgate: the pinned root and trusted metadata on disk, no
# tag cache in memory; peer: its blob and manifest store).
# first_tag VARIANT KEY: one tag GET against $ADDR, its latency appended to SAMPLES.
first_tag() {
  local out
  loadgen --url "http://$ADDR/v2/$REPO/manifests/$TAG" --accept "$MT" \
    --requests 1 --concurrency 1 --expect-digest "$MANIFEST_DIGEST"
  out=$LG_OUT
  echo "$1 $2: $out" >> "$WORK/raw.txt"
  grep -q ' errors=0 ' <<< " $out" || ERRS[$1]="${ERRS[$1]:-}$2: $out; "
  SAMPLES+=("$(sed -n 's/.* p50_ms=\([^ ]*\).*/\1/p' <<< " $out")")
}
# summarize VARIANT KEY: median, min and max of SAMPLES into R.
summarize() {
  local sorted
  sorted=$(printf '%s\n' "${SAMPLES[@]}" | sort -g)
  R["$1 $2.p50_ms"]=$(awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}' <<< "$sorted")
  R["$1 $2.min"]=$(head -n 1 <<< "$sorted")
  R["$1 $2.max"]=$(tail -n 1 <<< "$sorted")
}
for v in peer signed allow; do
  log "$v: cold first tag GET x$COLD_RUNS, and after a restart on the kept state x$COLD_RUNS"
  SAMPLES=()
  dirs=()
  for _ in $(seq 1 "$COLD_RUNS"); do
    start_variant "$v"
    dirs+=("$DIR")
    first_tag "$v" cold
    stop "$v"
  done
  summarize "$v" cold
  SAMPLES=()
  for d in "${dirs[@]}"; do
    start_variant "$v" "$d"
    first_tag "$v" restart
    stop "$v"
  done
  summarize "$v" restart
done
R["origin cold.p50_ms"]="-"; R["origin restart.p50_ms"]="-"

# ---------------------------------------------------------------------------------------------
# ratio A B: A/B to two decimals, "-" when either is missing or B is zero.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
row() { # row LABEL KEY [better]
  local label=$1 key=$2 p s a o
  p=${R["peer $key"]:-}; s=${R["signed $key"]:-}; a=${R["allow $key"]:-}; o=${R["origin $key"]:-}
  printf '%-30s %10s %12s %7s %12s %7s %10s\n' "$label" "$p" "$s" "$(ratio "$s" "$p")" "$a" "$(ratio "$a" "$p")" "$o"
}
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "trustgate benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "machine: $(nproc) cores, shared: other work may be running (load average at the end: $LOAD);"
  echo "  the load generator runs on the same cores. Loopback only; compare ratios, not absolutes."
  echo "image: manifest $MANIFEST_SIZE B, layer $LAYER_SIZE B; manifests: $REQUESTS GETs over $CONC connections;"
  echo "  blobs: $BLOB_SEQ sequential GETs, then $BLOB_PAR GETs over $BLOB_CONC connections; all warm (after a first pull);"
  echo "  each warm figure: the median of $REPEATS runs (all runs listed below)."
  echo "  first tag GET: cold = fresh process, empty state; restart = fresh process on the state a cold
  run left; median of $COLD_RUNS each (min..max below)."
  echo "peer   = docker-registry $(docker-registry --version 2>/dev/null | awk '{print $NF}') as pull-through cache (proxy.remoteurl = origin)"
  echo "signed = trustgate, policy require=signed (notary-server, TOFU; tag -> verified digest)"
  echo "allow  = trustgate, policy require=allow (proxying only); origin = the registry itself, for reference"
  echo "ratio  = trustgate / peer (req/s, MiB/s: >1 is faster; latency: <1 is faster)"
  echo "what a warm GET costs: peer revalidates a tag with origin (HEAD) on every GET and serves"
  echo "  from its store; signed answers a tag from its verified-tag cache (5 min, never past the"
  echo "  TUF expiry) and the manifest from its verified-manifest memory cache; allow forwards"
  echo "  every tag GET to origin. Blobs: both serve their disk copy (the first pull filled it);"
  echo "  trustgate's was verified when written and is not re-hashed while unchanged."
  echo
  printf '%-30s %10s %12s %7s %12s %7s %10s\n' metric peer signed ratio allow ratio origin
  row "manifest by tag     req/s" tag.rps
  row "manifest by tag     p50 ms" tag.p50_ms
  row "manifest by tag     p99 ms" tag.p99_ms
  row "manifest by digest  req/s" digest.rps
  row "manifest by digest  p50 ms" digest.p50_ms
  row "manifest by digest  p99 ms" digest.p99_ms
  row "blob sequential     MiB/s" blobseq.mib_s
  row "blob parallel       MiB/s" blobpar.mib_s
  row "first tag GET, cold ms" cold.p50_ms
  row "first tag GET, restart ms" restart.p50_ms
  for v in peer signed allow; do
    echo "  $v: cold ${R["$v cold.min"]}..${R["$v cold.max"]} ms, restart ${R["$v restart.min"]}..${R["$v restart.max"]} ms (min..max)"
  done
  for v in "${VARIANTS[@]}"; do
    [ -z "${ERRS[$v]:-}" ] || echo "FAILURES $v: ${ERRS[$v]}"
  done
  echo
  echo "raw load generator lines:"
  sed 's/^/  /' "$WORK/raw.txt"
} | tee bench-results.txt

if [ "${BENCH_BLOBS:-1}" = 1 ]; then
  log "blob benchmark (scripts/bench-blobs.sh)"
  BENCH_SKIP_BUILD=1 scripts/bench-blobs.sh
fi
if [ "${BENCH_MEMORY:-1}" = 1 ]; then
  log "memory benchmark (scripts/bench-memory.sh)"
  BENCH_SKIP_BUILD=1 scripts/bench-memory.sh
fi
