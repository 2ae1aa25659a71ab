# Shared by the benchmark scripts (sourced, never run): logging, cleanup of the processes a
# script started (by their pid, nothing else), loopback ports, the release build and the load
# generator, an origin docker-registry on loopback, and pushing blobs to it.
# Expects BENCH_NAME (for messages) and REPO (where push_blob pushes); sets WORK, LOADGEN,
# TRUSTGATE, ORIGIN.
log() { printf '[%s %s] %s\n' "$BENCH_NAME" "$(date +%T)" "$*" >&2; }
die() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; exit 1; }

WORK=$(mktemp -d -t trustgate-$BENCH_NAME.XXXXXX)
declare -A PID_OF=()
cleanup() {
  local rc=$? name
  for name in "${!PID_OF[@]}"; do kill "${PID_OF[$name]}" 2>/dev/null || true; done
  for name in "${!PID_OF[@]}"; do wait "${PID_OF[$name]}" 2>/dev/null || true; done
  if [ "$rc" -ne 0 ]; then
    for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 10 "$f" >&2; }; done
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "$BENCH_NAME: kept $WORK" >&2; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
start() { local name=$1 logf=$2; shift 2; "$@" > "$logf" 2>&1 & PID_OF[$name]=$!; }
stop() {
  local pid=${PID_OF[$1]:-}
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; unset "PID_OF[$1]"
}
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((10000 + RANDOM % 20000))
    if ! listening "$p"; then PORT=$p; return 0; fi
  done
  die "no free port"
}
wait_http() {
  for _ in $(seq 1 200); do
    curl -s -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.1
  done
  die "$2 did not come up at $1"
}

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "building (cargo build --release, the load generator)"
  cargo build --release --quiet
fi
LOADGEN=$(cargo bench --bench loadgen --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*loadgen-[0-9a-f]*\)).*/\1/p' | tail -n 1)
[ -x "$LOADGEN" ] || die "no load generator"
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
TRUSTGATE=$WORK/trustgate
cp "${TARGET_DIR:-target}/release/trustgate" "$TRUSTGATE"

free_port; ORIGIN=127.0.0.1:$PORT
registry_config() { # FILE PORT STORAGE [REMOTE]
  { echo "version: 0.1"; echo "storage: {filesystem: {rootdirectory: $3}}"; echo "http: {addr: 127.0.0.1:$2}"
    [ -z "${4:-}" ] || echo "proxy: {remoteurl: $4}"; } > "$1"
}
registry_config "$WORK/origin.yml" "${ORIGIN#*:}" "$WORK/origin-data"
start origin "$WORK/origin.log" docker-registry serve "$WORK/origin.yml"
wait_http "http://$ORIGIN/v2/" origin

# push_blob FILE: uploads FILE (streamed) to origin under $REPO; sets DIGEST.
push_blob() {
  DIGEST=sha256:$(sha256sum "$1" | cut -d' ' -f1)
  local loc
  loc=$(curl -fsS -X POST -D - -o /dev/null "http://$ORIGIN/v2/$REPO/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
  case $loc in http*) ;; *) loc="http://$ORIGIN$loc" ;; esac
  case $loc in *\?*) loc="$loc&digest=$DIGEST" ;; *) loc="$loc?digest=$DIGEST" ;; esac
  curl -fsS -X PUT -H 'Content-Type: application/octet-stream' -T "$1" "$loc" > /dev/null
}
random_file() { # FILE MIB SEED
  head -c $(($2 * 1024 * 1024)) /dev/zero | openssl enc -aes-128-ctr -nosalt \
    -K 000102030405060708090a0b0c0d0e0f -iv "$(printf '%032x' "$3")" > "$1"
}
