#!/usr/bin/env bash
# The memory benchmark (issue 8, D10): do the shipped Kubernetes limits hold under load?
# Real components only, loopback only:
#
#   origin     docker-registry holding bench/mem: BENCH_MEM_MANIFESTS distinct manifests of
#              BENCH_MEM_MANIFEST_KIB each (more than the in-memory manifest cache holds, so it
#              churns), and one BENCH_MEM_BLOB_MIB blob
#   trustgate  the [cache] and [limits] sections of deploy/kubernetes/trustgate.toml as shipped,
#              listening on loopback (plain HTTP: TLS adds a fixed cost per connection, not a
#              growing one), policy `allow`, a fresh state directory
#
# Load, all at once: BENCH_MEM_CONCURRENCY clients fetching the manifests by tag and by digest
# in turn (BENCH_MEM_REQUESTS GETs), and BENCH_MEM_BLOB_CLIENTS clients streaming the blob,
# cold. Figures: the server's peak RSS (VmHWM) against the memory limit in
# deploy/kubernetes/deployment.yaml, what it used beyond the two configured bounds
# (memory_max_bytes + max_buffered_bytes: connections, runtime, allocator), and the clients' errors (a 503 from
# the buffered-bytes budget is the designed answer to overload, so it is counted apart). It
# prints each figure and whether the limit holds; it asserts nothing.
#
# Knobs: BENCH_MEM_MANIFESTS (300), BENCH_MEM_MANIFEST_KIB (1024), BENCH_MEM_REQUESTS (3000),
# BENCH_MEM_CONCURRENCY (64), BENCH_MEM_BLOB_MIB (256), BENCH_MEM_BLOB_CLIENTS (20),
# BENCH_SKIP_BUILD=1, BENCH_KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."

MANIFESTS=${BENCH_MEM_MANIFESTS:-300}
MANIFEST_KIB=${BENCH_MEM_MANIFEST_KIB:-1024}
REQUESTS=${BENCH_MEM_REQUESTS:-3000}
CONCURRENCY=${BENCH_MEM_CONCURRENCY:-64}
BLOB_MIB=${BENCH_MEM_BLOB_MIB:-256}
BLOB_CLIENTS=${BENCH_MEM_BLOB_CLIENTS:-20}
REPO=bench/mem
MT=application/vnd.oci.image.manifest.v1+json
SHIPPED=deploy/kubernetes/trustgate.toml
DEPLOYMENT=deploy/kubernetes/deployment.yaml

BENCH_NAME=bench-memory
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

# The Deployment's memory limit, in MiB (`limits:` then `memory: 512Mi`).
LIMIT_MIB=$(awk '/limits:/ {l=1} l && /memory:/ {v=$2; sub(/Mi$/, "", v); print v; exit}' "$DEPLOYMENT")
[ -n "$LIMIT_MIB" ] || die "no memory limit in $DEPLOYMENT"
# The shipped [cache] and [limits] sections, as they are.
awk '/^\[/ {keep = ($0 == "[cache]" || $0 == "[limits]")} keep' "$SHIPPED" > "$WORK/shipped.toml"
conf_bytes() { awk -v k="$1" '$1 == k {print $3; exit}' "$WORK/shipped.toml"; }
MEM_MAX=$(conf_bytes memory_max_bytes); BUF_MAX=$(conf_bytes max_buffered_bytes)
[ -n "$MEM_MAX" ] && [ -n "$BUF_MAX" ] || die "$SHIPPED: memory_max_bytes or max_buffered_bytes missing"
BOUNDS_MIB=$(( (MEM_MAX + BUF_MAX) / 1048576 ))

log "pushing $MANIFESTS manifests of $MANIFEST_KIB KiB and a $BLOB_MIB MiB blob to origin"
random_file "$WORK/blob" "$BLOB_MIB" 3
push_blob "$WORK/blob"; BLOB=$DIGEST; BLOB_LEN=$(stat -c %s "$WORK/blob"); rm -f "$WORK/blob"
printf '{}' > "$WORK/config.json"; push_blob "$WORK/config.json"; CONFIG=$DIGEST
mkdir -p "$WORK/manifests"
python3 - "$WORK/manifests" "$MANIFESTS" "$MANIFEST_KIB" "$CONFIG" "$BLOB" "$BLOB_LEN" "$MT" <<'PY'
import json, sys
out, n, kib, config, blob, blob_len, mt = sys.argv[1:]
for i in range(int(n)):
    m = {"schemaVersion": 2, "mediaType": mt,
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2, "digest": config},
         "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": int(blob_len), "digest": blob}],
         "annotations": {"bench.index": str(i), "bench.pad": "x" * (int(kib) * 1024)}}
    body = json.dumps(m, separators=(",", ":")).encode()
    open(f"{out}/{i}", "wb").write(body)
PY
> "$WORK/manifests.txt"
for f in "$WORK"/manifests/*; do
  i=${f##*/}
  curl -fsS -X PUT -H "Content-Type: $MT" --data-binary "@$f" "http://$ORIGIN/v2/$REPO/manifests/t$i" > /dev/null
  echo "$i sha256:$(sha256sum "$f" | cut -d' ' -f1)" >> "$WORK/manifests.txt"
done
rm -rf "$WORK/manifests"

free_port; ADDR=127.0.0.1:$PORT
mkdir -p "$WORK/tg"
printf 'version = 1\n[default]\nrequire = "allow"\n' > "$WORK/tg/policy.toml"
{ printf 'listen = ["%s"]\npolicy = "%s"\ndefault_upstream = "%s"\n' "$ADDR" "$WORK/tg/policy.toml" "$ORIGIN"
  cat "$WORK/shipped.toml"
  printf '[[upstream]]\nname = "%s"\nurl = "http://%s"\n' "$ORIGIN" "$ORIGIN"; } > "$WORK/tg/trustgate.toml"
start trustgate "$WORK/trustgate.log" "$TRUSTGATE" serve --config "$WORK/tg/trustgate.toml" --state-dir "$WORK/tg/state"
wait_http "http://$ADDR/healthz" trustgate
SPID=${PID_OF[trustgate]}
awk -v a="$ADDR" -v r="$REPO" '{print "http://" a "/v2/" r "/manifests/t" $1; print "http://" a "/v2/" r "/manifests/" $2}' \
  "$WORK/manifests.txt" > "$WORK/urls.txt"

log "load: $REQUESTS manifest GETs over $CONCURRENCY connections, and $BLOB_CLIENTS clients streaming the blob"
"$LOADGEN" --url "http://$ADDR/v2/$REPO/blobs/$BLOB" --requests "$BLOB_CLIENTS" --concurrency "$BLOB_CLIENTS" \
  --expect-len "$BLOB_LEN" --max-secs 900 > "$WORK/blob-load.txt" &
BLOB_LOAD=$!
MANIFEST_OUT=$("$LOADGEN" --urls "$WORK/urls.txt" --accept "$MT" --requests "$REQUESTS" --concurrency "$CONCURRENCY" --max-secs 600)
wait "$BLOB_LOAD"
BLOB_OUT=$(cat "$WORK/blob-load.txt")
RSS=$(awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$SPID/status")
stop trustgate

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<< " $2"; }
holds() { if awk "BEGIN { exit !($1) }"; then echo yes; else echo NO; fi; }
{
  echo "memory benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) shared cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "trustgate with $SHIPPED's [cache] and [limits]: memory_max_bytes $MEM_MAX, max_buffered_bytes $BUF_MAX"
  echo "load: $MANIFESTS distinct manifests x $MANIFEST_KIB KiB by tag and digest, $REQUESTS GETs over $CONCURRENCY connections; $BLOB_CLIENTS x $BLOB_MIB MiB blob streams, cold, at the same time"
  printf '%-40s %10s  %-36s %s\n' figure trustgate goal holds
  printf '%-40s %10s  %-36s %s\n' "peak RSS (MiB)" "$RSS" "< $LIMIT_MIB MiB ($DEPLOYMENT limit)" "$(holds "$RSS < $LIMIT_MIB")"
  printf '%-40s %10s  %-36s %s\n' "  beyond the configured bounds (MiB)" "$((RSS - BOUNDS_MIB))" "(bounds: $BOUNDS_MIB MiB)" ""
  printf '%-40s %10s  %-36s %s\n' "manifest GETs answered 200" "$(field ok "$MANIFEST_OUT")" "" ""
  printf '%-40s %10s  %-36s %s\n' "manifest GETs refused or failed" "$(field errors "$MANIFEST_OUT")" "" ""
  printf '%-40s %10s  %-36s %s\n' "blob streams complete" "$(field ok "$BLOB_OUT")" "all $BLOB_CLIENTS" "$(holds "$(field ok "$BLOB_OUT") == $BLOB_CLIENTS")"
  echo "raw:"
  echo "  manifests: $MANIFEST_OUT"
  echo "  blob: $BLOB_OUT"
} | tee bench-memory-results.txt
