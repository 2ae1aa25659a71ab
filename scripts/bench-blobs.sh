#!/usr/bin/env bash
# The blob benchmark (issue 9), run by scripts/bench.sh after its manifest figures, or alone.
# Real components only, loopback only:
#
#   origin   docker-registry holding bench/big: one BENCH_BLOB_MIB blob (and a manifest naming
#            it), one BENCH_RSS_MIB blob; its access log counts the upstream GETs
#   peer     docker-registry, pull-through cache of origin (fresh process and storage each run)
#   trustgate  policy `allow`, content cache on (fresh process and state each run). The blob
#            path is the same under `signed` (digest pulls of blobs are not re-judged per byte)
#
# Figures: the single-core SHA-256 rate of the sha2 crate trustgate hashes with (measured in
# this run: the ceiling of a verifying miss); a blob miss and hit (curl, median of
# BENCH_BLOB_REPEATS, each after a memory warm-up and a sync) against origin direct, the peer and trustgate, with the
# CPU each process spent on it (from /proc: steadier than MiB/s on shared cores) and what the
# miss goals leave for the whole machine; BENCH_SF_CLIENTS
# concurrent cold GETs of the blob (every body hashed by the client) and BENCH_SF_MANIFESTS
# concurrent cold manifest GETs, counted at origin; peak RSS (VmHWM) of the server while
# BENCH_RSS_CLIENTS clients stream the BENCH_RSS_MIB blob, cold then warm. It prints each
# figure, the peer's, the ratio and whether the issue's goal holds; it asserts nothing.
#
# Knobs: BENCH_BLOB_MIB (256), BENCH_BLOB_REPEATS (5), BENCH_SF_CLIENTS (100),
# BENCH_SF_MANIFESTS (50), BENCH_RSS_CLIENTS (20), BENCH_RSS_MIB (1024),
# BENCH_SKIP_BUILD=1 (use the release binaries already built), BENCH_KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."

BLOB_MIB=${BENCH_BLOB_MIB:-256}
REPEATS=${BENCH_BLOB_REPEATS:-5}
SF_CLIENTS=${BENCH_SF_CLIENTS:-100}
SF_MANIFESTS=${BENCH_SF_MANIFESTS:-50}
RSS_CLIENTS=${BENCH_RSS_CLIENTS:-20}
RSS_MIB=${BENCH_RSS_MIB:-1024}
REPO=bench/big
MT=application/vnd.docker.distribution.manifest.v2+json

BENCH_NAME=bench-blobs
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
log "pushing a $BLOB_MIB MiB blob and a $RSS_MIB MiB blob to origin"
random_file "$WORK/blob" "$BLOB_MIB" 1
push_blob "$WORK/blob"; BLOB=$DIGEST; BLOB_LEN=$(stat -c %s "$WORK/blob"); BLOB_HEX=${BLOB#sha256:}
rm -f "$WORK/blob"
if [ "$RSS_MIB" = "$BLOB_MIB" ]; then RSSBLOB=$BLOB; RSS_LEN=$BLOB_LEN; else
  random_file "$WORK/rss" "$RSS_MIB" 2
  push_blob "$WORK/rss"; RSSBLOB=$DIGEST; RSS_LEN=$(stat -c %s "$WORK/rss"); rm -f "$WORK/rss"
fi
printf '{}' > "$WORK/config.json"; push_blob "$WORK/config.json"; CONFIG=$DIGEST
printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":2,"digest":"%s"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":%s,"digest":"%s"}]}' \
  "$MT" "$CONFIG" "$BLOB_LEN" "$BLOB" > "$WORK/manifest.json"
MANIFEST=sha256:$(sha256sum "$WORK/manifest.json" | cut -d' ' -f1)
curl -fsS -X PUT -H "Content-Type: $MT" --data-binary "@$WORK/manifest.json" "http://$ORIGIN/v2/$REPO/manifests/1" > /dev/null

# start_variant NAME: a fresh peer or trustgate; sets ADDR and SPID.
RUN=0
start_variant() {
  RUN=$((RUN + 1)); local dir=$WORK/$1-$RUN; mkdir -p "$dir"; free_port
  case $1 in
    peer)
      registry_config "$dir/registry.yml" "$PORT" "$dir/data" "http://$ORIGIN"
      start "$1" "$WORK/$1-$RUN.log" docker-registry serve "$dir/registry.yml"
      wait_http "http://127.0.0.1:$PORT/v2/" "$1" ;;
    trustgate)
      printf 'version = 1\n[default]\nrequire = "allow"\n' > "$dir/policy.toml"
      printf 'listen = ["127.0.0.1:%s"]\npolicy = "%s"\n[[upstream]]\nname = "%s"\nurl = "http://%s"\n' \
        "$PORT" "$dir/policy.toml" "$ORIGIN" "$ORIGIN" > "$dir/trustgate.toml"
      start "$1" "$WORK/$1-$RUN.log" "$TRUSTGATE" serve --config "$dir/trustgate.toml" --state-dir "$dir/state"
      wait_http "http://127.0.0.1:$PORT/healthz" "$1" ;;
  esac
  ADDR=127.0.0.1:$PORT; SPID=${PID_OF[$1]}
}
cpu_ms() { awk '{ print ($14 + $15) * 10 }' "/proc/$1/stat"; } # PID: user+system CPU so far, ms
# This VM's host takes back guest memory the guest leaves free (virtio-balloon free page
# reporting): the first write into such memory costs the guest a host fault per page, so
# writing 256 MiB to page cache takes ~1.1 s of system CPU instead of ~0.07 s (dd, measured
# here). Page cache that grows over a run lands on such memory in waves, and whichever server
# fills a blob then pays 3x its CPU. Writing and deleting a scratch file first hands the next
# writer memory the guest has just used (reporting waits ~2 s), so every miss is measured on
# the same, ordinary, memory.
warm_memory() {
  dd if=/dev/zero of="$WORK/warm" bs=1M count=$(( 2 * BLOB_MIB )) status=none; rm -f "$WORK/warm"
}
# page_cache_write_ms: system+user CPU of writing one blob's size to a new file, after a warm-up
# (the page-cache part of a miss's floor).
page_cache_write_ms() {
  local t
  warm_memory; sync; sleep 0.2
  TIMEFORMAT='%3U %3S'
  t=$( { time dd if=/dev/zero of="$WORK/pcw" bs=1M count="$BLOB_MIB" status=none; } 2>&1 )
  rm -f "$WORK/pcw"
  awk '{ printf "%.0f", ($1 + $2) * 1000 }' <<< "$t"
}
# get URL SERVER_PID: one GET with curl after a sync (so writeback of an earlier run's data is
# not charged to this one); sets GOT (MiB/s, curl's average), SERVER_MS (CPU the serving
# process spent), ORIGIN_MS (CPU origin spent) and CLIENT_MS (curl's CPU). A wrong length is
# fatal.
get() {
  local out t s0 o0
  warm_memory; sync; sleep 0.2
  s0=$(cpu_ms "$2"); o0=$(cpu_ms "${PID_OF[origin]}")
  TIMEFORMAT='%3U %3S'
  t=$( { time curl -fsS -o /dev/null -w '%{speed_download} %{size_download}' "$1" > "$WORK/curl.out"; } 2>&1 )
  SERVER_MS=$(( $(cpu_ms "$2") - s0 )); ORIGIN_MS=$(( $(cpu_ms "${PID_OF[origin]}") - o0 ))
  CLIENT_MS=$(awk '{ printf "%.0f", ($1 + $2) * 1000 }' <<< "$t")
  out=$(< "$WORK/curl.out")
  [ "${out#* }" = "$BLOB_LEN" ] || die "GET $1: ${out#* } bytes, expected $BLOB_LEN"
  GOT=$(awk -v b="${out%% *}" 'BEGIN { printf "%.0f", b / 1048576 }')
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
upstream_gets() { grep -c "\"GET /v2/$REPO/$1" "$WORK/origin.log" || true; }

declare -A R=()
log "single-core SHA-256 rate"
R[sha]=$("$LOADGEN" --sha256-rate 2048 | sed -n 's/sha256_mib_s=//p'); R[sha]=${R[sha]%.*}

R[pcw]=$(page_cache_write_ms)

log "blob miss and hit: origin direct, peer, trustgate (median of $REPEATS)"
# The variants take turns, run by run, so a slow spell of the shared machine falls on each.
declare -A MISS=() HIT=() MCPU=() HCPU=() OCPU=() CCPU=()
for _ in $(seq 1 "$REPEATS"); do
  for v in direct peer trustgate; do
    if [ "$v" = direct ]; then ADDR=$ORIGIN; SPID=${PID_OF[origin]}; else start_variant "$v"; fi
    get "http://$ADDR/v2/$REPO/blobs/$BLOB" "$SPID"
    MISS[$v]+=" $GOT"; MCPU[$v]+=" $SERVER_MS"; OCPU[$v]+=" $ORIGIN_MS"; CCPU[$v]+=" $CLIENT_MS"
    get "http://$ADDR/v2/$REPO/blobs/$BLOB" "$SPID"
    HIT[$v]+=" $GOT"; HCPU[$v]+=" $SERVER_MS"
    [ "$v" = direct ] || stop "$v"
  done
done
for v in direct peer trustgate; do
  # shellcheck disable=SC2086 # the lists are space-separated numbers
  {
    R[$v.miss]=$(median ${MISS[$v]}); R[$v.hit]=$(median ${HIT[$v]})
    R[$v.miss_cpu]=$(median ${MCPU[$v]}); R[$v.hit_cpu]=$(median ${HCPU[$v]})
    R[$v.origin_cpu]=$(median ${OCPU[$v]}); R[$v.client_cpu]=$(median ${CCPU[$v]})
  }
  echo "$v miss:${MISS[$v]}  hit:${HIT[$v]} MiB/s; CPU ms, server miss:${MCPU[$v]}  hit:${HCPU[$v]}  origin (miss):${OCPU[$v]}  curl (miss):${CCPU[$v]}" >> "$WORK/raw.txt"
done

log "$SF_CLIENTS concurrent cold blob GETs and $SF_MANIFESTS concurrent cold manifest GETs"
for v in peer trustgate; do
  start_variant "$v"
  before=$(upstream_gets "blobs/$BLOB")
  out=$("$LOADGEN" --url "http://$ADDR/v2/$REPO/blobs/$BLOB" --requests "$SF_CLIENTS" --concurrency "$SF_CLIENTS" \
        --expect-len "$BLOB_LEN" --expect-sha256 "$BLOB_HEX" --max-secs 600)
  sleep 1
  R[$v.sf]=$(( $(upstream_gets "blobs/$BLOB") - before ))
  R[$v.sf_err]=$(sed -n 's/.* errors=\([0-9]*\).*/\1/p' <<< " $out")
  echo "$v $SF_CLIENTS cold blob GETs: $out" >> "$WORK/raw.txt"
  before=$(upstream_gets "manifests/$MANIFEST")
  out=$("$LOADGEN" --url "http://$ADDR/v2/$REPO/manifests/$MANIFEST" --accept "$MT" --requests "$SF_MANIFESTS" \
        --concurrency "$SF_MANIFESTS" --expect-digest "$MANIFEST")
  sleep 1
  R[$v.sfm]=$(( $(upstream_gets "manifests/$MANIFEST") - before ))
  R[$v.sfm_err]=$(sed -n 's/.* errors=\([0-9]*\).*/\1/p' <<< " $out")
  echo "$v $SF_MANIFESTS cold manifest GETs: $out" >> "$WORK/raw.txt"
  stop "$v"
done

log "peak RSS while $RSS_CLIENTS clients stream the $RSS_MIB MiB blob (cold, then warm)"
for v in peer trustgate; do
  start_variant "$v"
  for pass in cold warm; do
    out=$("$LOADGEN" --url "http://$ADDR/v2/$REPO/blobs/$RSSBLOB" --requests "$RSS_CLIENTS" \
          --concurrency "$RSS_CLIENTS" --expect-len "$RSS_LEN" --max-secs 900)
    echo "$v $RSS_CLIENTS x $RSS_MIB MiB $pass: $out" >> "$WORK/raw.txt"
  done
  R[$v.rss]=$(awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$SPID/status")
  stop "$v"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
holds() { if awk "BEGIN { exit !($1) }"; then echo yes; else echo NO; fi; }
{
  echo "blob benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) shared cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "blob $BLOB_LEN B; miss = first GET from a fresh server, hit = the second; curl, median of $REPEATS"
  echo "peer = docker-registry $(docker-registry --version 2>/dev/null | awk '{print $NF}') pull-through; direct = origin docker-registry"
  printf '%-44s %10s %10s %7s  %-34s %s\n' figure trustgate peer ratio goal holds
  sm=${R[trustgate.miss]}; pm=${R[peer.miss]}
  printf '%-44s %10s %10s %7s  %-34s %s\n' "SHA-256, one core (MiB/s)" "${R[sha]}" - - "" ""
  printf '%-44s %10s %10s %7s  %-34s %s\n' "blob miss (MiB/s)" "$sm" "$pm" "$(ratio "$sm" "$pm")" ">= 1.3x peer miss" "$(holds "$sm >= 1.3 * $pm")"
  printf '%-44s %10s %10s %7s  %-34s %s\n' "blob miss / SHA-256 rate" "$(ratio "$sm" "${R[sha]}")" - - ">= 0.8" "$(holds "$sm >= 0.8 * ${R[sha]}")"
  printf '%-44s %10s %10s %7s  %-34s %s\n' "blob hit (MiB/s)" "${R[trustgate.hit]}" "${R[peer.hit]}" "$(ratio "${R[trustgate.hit]}" "${R[peer.hit]}")" "" ""
  printf '%-44s %10s %10s %7s  %-34s %s\n' "blob hit vs direct (MiB/s; direct hit)" "${R[trustgate.hit]}" "${R[direct.hit]}" "$(ratio "${R[trustgate.hit]}" "${R[direct.hit]}")" ">= 1.0x direct" "$(holds "${R[trustgate.hit]} >= ${R[direct.hit]}")"
  printf '%-44s %10s %10s %7s  %-34s %s\n' "direct miss (MiB/s, origin)" "-" "${R[direct.miss]}" - "" ""
  printf '%-44s %10s %10s %7s  %-34s %s\n' "server CPU per miss (ms)" "${R[trustgate.miss_cpu]}" "${R[peer.miss_cpu]}" "$(ratio "${R[trustgate.miss_cpu]}" "${R[peer.miss_cpu]}")" "" ""
  printf '%-44s %10s %10s %7s  %-34s %s\n' "server CPU per hit (ms; direct: origin)" "${R[trustgate.hit_cpu]}" "${R[direct.hit_cpu]}" "$(ratio "${R[trustgate.hit_cpu]}" "${R[direct.hit_cpu]}")" "" ""
  printf '%-44s %10s %10s %7s  %-34s %s\n' "page-cache write of the blob (ms, dd)" "${R[pcw]}" - - "" ""
  printf '%-44s %10s %10s %7s  %-34s %s\n' "origin + curl CPU per miss (ms)" "$(( R[trustgate.origin_cpu] + R[trustgate.client_cpu] ))" "$(( R[peer.origin_cpu] + R[peer.client_cpu] ))" - "" ""
  # What the miss goals leave for the whole machine: at the goal's rate the miss lasts
  # BLOB/rate, and every process of it (origin, proxy, client) shares $(nproc) cores in that
  # time. The origin's and the client's CPU and the hash itself (BLOB at the SHA-256 rate)
  # and writing it to page cache (dd) are a floor no caching proxy that verifies goes below;
  # receiving and sending it again on loopback come on top.
  floor=$(awk -v o="$(( R[trustgate.origin_cpu] + R[trustgate.client_cpu] + R[pcw] ))" -v b="$BLOB_LEN" -v sha="${R[sha]}" \
    'BEGIN { printf "%.0f", o + b / 1048576 / sha * 1000 }')
  for g in "1.3x peer miss:$(awk -v p="$pm" 'BEGIN { print 1.3 * p }')" "0.8x SHA-256:$(awk -v s="${R[sha]}" 'BEGIN { print 0.8 * s }')"; do
    budget=$(awk -v r="${g#*:}" -v b="$BLOB_LEN" -v n="$(nproc)" 'BEGIN { printf "%.0f", n * b / 1048576 / r * 1000 }')
    printf '%-44s %10s %10s %7s  %-34s %s\n' "CPU budget at ${g%%:*} (ms, all cores)" "$budget" - - "floor: origin+curl+hash+write $floor" "$(holds "$floor <= $budget" | sed 's/NO/out of reach here/; s/yes/reachable/')"
  done
  printf '%-44s %10s %10s %7s  %-34s %s\n' "$SF_CLIENTS cold blob GETs: upstream GETs" "${R[trustgate.sf]}" "${R[peer.sf]}" - "exactly 1, every body right" "$(holds "${R[trustgate.sf]} == 1 && ${R[trustgate.sf_err]} == 0")"
  printf '%-44s %10s %10s %7s  %-34s %s\n' "  ... client errors (length/sha256/cut)" "${R[trustgate.sf_err]}" "${R[peer.sf_err]}" - "" ""
  printf '%-44s %10s %10s %7s  %-34s %s\n' "$SF_MANIFESTS cold manifest GETs: upstream GETs" "${R[trustgate.sfm]}" "${R[peer.sfm]}" - "exactly 1" "$(holds "${R[trustgate.sfm]} == 1 && ${R[trustgate.sfm_err]} == 0")"
  printf '%-44s %10s %10s %7s  %-34s %s\n' "peak RSS, $RSS_CLIENTS x $RSS_MIB MiB (MiB)" "${R[trustgate.rss]}" "${R[peer.rss]}" "$(ratio "${R[trustgate.rss]}" "${R[peer.rss]}")" "< 64 MiB$([ "$RSS_MIB" = 1024 ] || echo " (scaled: $RSS_MIB MiB blobs)")" "$(holds "${R[trustgate.rss]} < 64")"
  echo "raw:"
  sed 's/^/  /' "$WORK/raw.txt"
} | tee bench-blobs-results.txt
