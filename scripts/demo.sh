#!/usr/bin/env bash
# The trustgate demo. Brings up a real registry (docker-registry, 127.0.0.1:5001) and a real
# Notary trust server (notary-server, plain HTTP, 127.0.0.1:4443) in a temporary directory,
# publishes a signed tag (demo/signed:1.0, signed with the real notary CLI, exactly what
# `docker trust sign` does underneath) and an unsigned one (demo/unsigned:1.0), then starts
# trustgate on its embedded default and pulls both through it with skopeo: the signed tag is
# rewritten to its signed digest, the unsigned one refused. Then the migration: a second
# trustgate, whose policy accepts DCT, a cosign or a Notation signature (any_of), serves a
# cosign-signed and a Notation-signed image by their digests, the DCT-signed one as before,
# and still refuses the unsigned one.
#
# Everything listens on loopback only. On exit (success, failure or Ctrl-C) it stops exactly
# the processes it started, by pid, and removes its temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."

REGISTRY=127.0.0.1:5001
NOTARY_URL=http://127.0.0.1:4443
GUN_PREFIX=$REGISTRY # a GUN is the registry's own name for the repository

say()  { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die()  { printf '\033[31mdemo: %s\033[0m\n' "$*" >&2; exit 1; }

WORK=$(mktemp -d -t trustgate-demo.XXXXXX)
PIDS=()
cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "$rc" -ne 0 ] && [ -d "$WORK" ]; then
    echo "demo: failed (exit $rc); logs:" >&2
    for log in "$WORK"/*.log; do [ -f "$log" ] && { echo "--- $log" >&2; tail -n 20 "$log" >&2; }; done
  fi
  [ -n "${DEMO_KEEP:-}" ] && cp -r "$WORK" "$DEMO_KEEP"; rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_http URL NAME PID: until URL answers (any HTTP status), or give up after ~20 s. The
# answer must come from our own process: if PID has exited (e.g. it could not bind because
# another demo holds the port), fail instead of talking to someone else's server.
wait_http() {
  for _ in $(seq 1 100); do
    alive "$2" "$3"
    if curl -s -o /dev/null "$1"; then
      sleep 0.3
      alive "$2" "$3"
      return 0
    fi
    sleep 0.2
  done
  die "$2 did not come up at $1"
}

# alive NAME PID: fails the demo, with the log, if a server it started has exited.
alive() {
  kill -0 "$2" 2>/dev/null && return 0
  echo "demo: $1 (pid $2) exited (is another demo using its port?); its log:" >&2
  cat "$WORK/$1.log" >&2 || true
  exit 1
}

port_free() { ! curl -s -o /dev/null --max-time 1 "http://$1/"; }

# push_image REPO TAG [VARIANT]: builds a one-layer linux/amd64 image deterministically (sorted tar,
# mtime 0, gzip -n: same bytes on every run), pushes it with the registry API (no Docker
# engine needed), and prints its manifest digest.
push_image() {
  local repo=$1 tag=$2 variant=${3:-} work="$WORK/images/$1/$2${3:+-$3}"
  mkdir -p "$work/rootfs"
  echo "hello from $repo:$tag${variant:+ ($variant)}" > "$work/rootfs/hello.txt"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/rootfs" -cf "$work/layer.tar" .
  local diffid ldig lsize cdig csize
  diffid=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  gzip -n -c "$work/layer.tar" > "$work/layer.tar.gz"
  ldig=$(sha256sum "$work/layer.tar.gz" | cut -d' ' -f1); lsize=$(stat -c %s "$work/layer.tar.gz")
  printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$diffid" > "$work/config.json"
  cdig=$(sha256sum "$work/config.json" | cut -d' ' -f1); csize=$(stat -c %s "$work/config.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":%s,"digest":"sha256:%s"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":%s,"digest":"sha256:%s"}]}' \
    "$csize" "$cdig" "$lsize" "$ldig" > "$work/manifest.json"
  local pair file dig loc
  for pair in "$work/layer.tar.gz:$ldig" "$work/config.json:$cdig"; do
    file=${pair%%:*}; dig=${pair##*:}
    loc=$(curl -fsS -X POST -D - -o /dev/null "http://$REGISTRY/v2/$repo/blobs/uploads/" \
          | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
    case $loc in http*) ;; *) loc="http://$REGISTRY$loc" ;; esac
    case $loc in *\?*) loc="$loc&digest=sha256:$dig" ;; *) loc="$loc?digest=sha256:$dig" ;; esac
    curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$file" "$loc" >/dev/null
  done
  curl -fsS -X PUT -H 'Content-Type: application/vnd.docker.distribution.manifest.v2+json' \
    --data-binary "@$work/manifest.json" "http://$REGISTRY/v2/$repo/manifests/$tag" >/dev/null
  echo "sha256:$(sha256sum "$work/manifest.json" | cut -d' ' -f1)"
}

# push_blob REPO FILE: uploads FILE as a blob (monolithic upload) and prints its digest.
push_blob() {
  local dig loc
  dig=$(sha256sum "$2" | cut -d' ' -f1)
  loc=$(curl -fsS -X POST -D - -o /dev/null "http://$REGISTRY/v2/$1/blobs/uploads/" \
        | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
  case $loc in http*) ;; *) loc="http://$REGISTRY$loc" ;; esac
  case $loc in *\?*) loc="$loc&digest=sha256:$dig" ;; *) loc="$loc?digest=sha256:$dig" ;; esac
  curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$2" "$loc" >/dev/null
  echo "sha256:$dig"
}

# b64url: base64url without padding (JWS), of stdin.
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

# ---------------------------------------------------------------------------------------------
say "Installing dependencies (scripts/install-deps.sh) and building trustgate"
scripts/install-deps.sh
cargo build --release --quiet
# The target directory may be configured elsewhere (e.g. ~/.cargo/config.toml); ask cargo.
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
TRUSTGATE=${TARGET_DIR:-target}/release/trustgate
[ -x "$TRUSTGATE" ] || die "built binary not found"
info "binary: $TRUSTGATE"

for addr in "$REGISTRY" "${NOTARY_URL#http://}"; do
  port_free "$addr" || die "$addr is already in use; stop whatever listens there and retry"
done

# ---------------------------------------------------------------------------------------------
say "Starting docker-registry on $REGISTRY (work dir $WORK)"
cat > "$WORK/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $WORK/registry}}
http: {addr: $REGISTRY}
EOF
docker-registry serve "$WORK/registry.yml" > "$WORK/registry.log" 2>&1 &
PIDS+=($!)
REGISTRY_PID=${PIDS[-1]}
wait_http "http://$REGISTRY/v2/" registry "$REGISTRY_PID"
info "registry up (pid $REGISTRY_PID)"

say "Starting notary-server on $NOTARY_URL (plain HTTP, in-memory storage, local signing service)"
cat > "$WORK/notary-server.json" <<EOF
{"server": {"http_addr": "${NOTARY_URL#http://}"},
 "trust_service": {"type": "local"},
 "storage": {"backend": "memory"},
 "logging": {"level": "info"}}
EOF
notary-server -config "$WORK/notary-server.json" > "$WORK/notary-server.log" 2>&1 &
PIDS+=($!)
NOTARY_PID=${PIDS[-1]}
wait_http "$NOTARY_URL/_notary_server/health" notary-server "$NOTARY_PID"
info "trust server up (pid $NOTARY_PID)"

# ---------------------------------------------------------------------------------------------
say "Pushing two images"
SIGNED_DIGEST=$(push_image demo/signed 1.0)
UNSIGNED_DIGEST=$(push_image demo/unsigned 1.0)
info "$REGISTRY/demo/signed:1.0    $SIGNED_DIGEST"
info "$REGISTRY/demo/unsigned:1.0  $UNSIGNED_DIGEST"

say "Signing demo/signed:1.0 with the notary CLI (GUN $GUN_PREFIX/demo/signed)"
cat > "$WORK/notary-client.json" <<EOF
{"trust_dir": "$WORK/trust", "remote_server": {"url": "$NOTARY_URL"}}
EOF
# Throwaway passphrases for throwaway keys; a publisher keeps these secret.
export NOTARY_ROOT_PASSPHRASE=demo-root NOTARY_TARGETS_PASSPHRASE=demo-targets \
       NOTARY_SNAPSHOT_PASSPHRASE=demo-snapshot NOTARY_DELEGATION_PASSPHRASE=demo-delegation
notary() { command notary -c "$WORK/notary-client.json" "$@"; }
# The signed target is the manifest exactly as the registry serves it, so its hash is the
# manifest digest. The Accept header keeps the registry from converting it to schema1.
curl -fsS -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
  "http://$REGISTRY/v2/demo/signed/manifests/1.0" -o "$WORK/signed-manifest.json"
notary init "$GUN_PREFIX/demo/signed" > "$WORK/notary-cli.log" 2>&1
notary add "$GUN_PREFIX/demo/signed" 1.0 "$WORK/signed-manifest.json" >> "$WORK/notary-cli.log" 2>&1
notary publish "$GUN_PREFIX/demo/signed" >> "$WORK/notary-cli.log" 2>&1
info "published; the trust server now says:"
notary lookup "$GUN_PREFIX/demo/signed" 1.0 | sed 's/^/    /'
LOOKED_UP=$(notary lookup "$GUN_PREFIX/demo/signed" 1.0 | awk '{print $2}')
[ "${LOOKED_UP#sha256:}" = "${SIGNED_DIGEST#sha256:}" ] || die "signed digest $LOOKED_UP != pushed $SIGNED_DIGEST"
alive notary-server "$NOTARY_PID"
info "demo/unsigned has no trust data:"
notary list "$GUN_PREFIX/demo/unsigned" 2>&1 | sed 's/^/    /' || true

alive notary-server "$NOTARY_PID"
alive registry "$REGISTRY_PID"
say "Moving demo/signed:1.0 in the registry to other, unsigned content"
info "(what anyone with write access to the registry could do after the publisher signed)"
MOVED_DIGEST=$(push_image demo/signed 1.0 moved)
info "the registry now serves $REGISTRY/demo/signed:1.0 as $MOVED_DIGEST"
info "the publisher signed                          $SIGNED_DIGEST"

# ---------------------------------------------------------------------------------------------
TRUSTGATE_ADDR=127.0.0.1:5000
say "Starting trustgate on its embedded default (listen $TRUSTGATE_ADDR, upstream $REGISTRY, every image signed, trust server $NOTARY_URL)"
"$TRUSTGATE" serve --state-dir "$WORK/state" > "$WORK/trustgate.log" 2>&1 &
PIDS+=($!)
wait_http "http://$TRUSTGATE_ADDR/readyz" trustgate "${PIDS[-1]}"
info "trustgate up (pid ${PIDS[-1]}): $(curl -fsS "http://$TRUSTGATE_ADDR/readyz")"

say "Resolving demo/signed:1.0 through trustgate (what containerd does: HEAD the tag)"
curl -fsS -I -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
  "http://$TRUSTGATE_ADDR/v2/demo/signed/manifests/1.0" | tr -d '\r' \
  | grep -i -E '^(HTTP|docker-content-digest|content-length)' | sed 's/^/    /'

say "Pulling demo/signed:1.0 through trustgate with skopeo"
skopeo --insecure-policy copy --src-tls-verify=false \
  "docker://$TRUSTGATE_ADDR/demo/signed:1.0" "dir:$WORK/pulled-signed" > "$WORK/skopeo.log" 2>&1 \
  || { cat "$WORK/skopeo.log"; die "the signed pull failed"; }
GOT="sha256:$(sha256sum "$WORK/pulled-signed/manifest.json" | cut -d' ' -f1)"
info "pulled manifest digest: $GOT"
[ "$GOT" = "$SIGNED_DIGEST" ] || die "expected the signed digest $SIGNED_DIGEST"
info "= the signed digest: the tag pull was rewritten to the signed content, not the registry's $MOVED_DIGEST"

say "Pulling demo/unsigned:1.0 through trustgate (must be refused)"
if skopeo --insecure-policy copy --retry-times 0 --src-tls-verify=false \
     "docker://$TRUSTGATE_ADDR/demo/unsigned:1.0" "dir:$WORK/pulled-unsigned" 2> "$WORK/unsigned.err"; then
  die "the unsigned tag was served"
fi
info "refused, as it should be; skopeo says:"
sed 's/^/    /' "$WORK/unsigned.err"
info "and the raw answer:"
curl -sS -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
  -w '\n    (HTTP %{http_code})\n' "http://$TRUSTGATE_ADDR/v2/demo/unsigned/manifests/1.0" | sed 's/^/    /'

# ---------------------------------------------------------------------------------------------
say "Migrating to Sigstore cosign or Notation: one policy that accepts DCT, cosign or Notation (any_of)"
info "Docker Content Trust is being retired; a scope can accept either signature while it moves."
# A cosign key pair and a signature in cosign's simple-signing format, made with openssl (what
# `cosign generate-key-pair` and `cosign sign --key` produce: an ECDSA P-256 key, a DER
# signature over the payload, stored in the registry under the tag sha256-<hex>.sig).
openssl ecparam -genkey -name prime256v1 -noout -out "$WORK/cosign.key" 2>/dev/null
openssl ec -in "$WORK/cosign.key" -pubout -out "$WORK/cosign.pub" 2>/dev/null
COSIGNED_DIGEST=$(push_image demo/cosigned 1.0)
info "$REGISTRY/demo/cosigned:1.0  $COSIGNED_DIGEST (no DCT trust data)"
printf '{"critical":{"identity":{"docker-reference":"%s/demo/cosigned"},"image":{"docker-manifest-digest":"%s"},"type":"cosign container image signature"},"optional":null}' \
  "$REGISTRY" "$COSIGNED_DIGEST" > "$WORK/cosign-payload.json"
SIG=$(openssl dgst -sha256 -sign "$WORK/cosign.key" "$WORK/cosign-payload.json" | base64 -w0)
printf '{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}' > "$WORK/cosign-config.json"
for file in "$WORK/cosign-payload.json" "$WORK/cosign-config.json"; do
  dig=$(sha256sum "$file" | cut -d' ' -f1)
  loc=$(curl -fsS -X POST -D - -o /dev/null "http://$REGISTRY/v2/demo/cosigned/blobs/uploads/" \
        | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
  case $loc in http*) ;; *) loc="http://$REGISTRY$loc" ;; esac
  case $loc in *\?*) loc="$loc&digest=sha256:$dig" ;; *) loc="$loc?digest=sha256:$dig" ;; esac
  curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$file" "$loc" >/dev/null
done
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":%s,"digest":"sha256:%s"},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":%s,"digest":"sha256:%s","annotations":{"dev.cosignproject.cosign/signature":"%s"}}]}' \
  "$(stat -c %s "$WORK/cosign-config.json")" "$(sha256sum "$WORK/cosign-config.json" | cut -d' ' -f1)" \
  "$(stat -c %s "$WORK/cosign-payload.json")" "$(sha256sum "$WORK/cosign-payload.json" | cut -d' ' -f1)" \
  "$SIG" > "$WORK/cosign-sig-manifest.json"
curl -fsS -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
  --data-binary "@$WORK/cosign-sig-manifest.json" \
  "http://$REGISTRY/v2/demo/cosigned/manifests/sha256-${COSIGNED_DIGEST#sha256:}.sig" >/dev/null
info "signed with the cosign key: tag sha256-${COSIGNED_DIGEST#sha256:}.sig"

# A Notation signature, made with openssl as `notation sign` makes it for a registry without
# the referrers API: a code-signing leaf under a CA, a JWS envelope (PS256) over the payload
# naming the manifest, a signature manifest whose subject is the image, and the index listing
# it under the tag sha256-<hex> (the distribution spec's tag-schema fallback).
N="$WORK/notation-keys"; mkdir -p "$N"
openssl req -new -newkey rsa:2048 -nodes -keyout "$N/ca.key" -out "$N/ca.csr" \
  -subj "/C=US/ST=WA/O=trustgate demo/CN=Demo Notation CA" 2>/dev/null
printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n' > "$N/ca.ext"
openssl x509 -req -in "$N/ca.csr" -signkey "$N/ca.key" -days 30 -extfile "$N/ca.ext" -out "$N/ca.crt" 2>/dev/null
openssl req -new -newkey rsa:2048 -nodes -keyout "$N/leaf.key" -out "$N/leaf.csr" \
  -subj "/C=US/ST=WA/O=trustgate demo/CN=demo signer" 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\nauthorityKeyIdentifier=keyid\n' > "$N/leaf.ext"
openssl x509 -req -in "$N/leaf.csr" -CA "$N/ca.crt" -CAkey "$N/ca.key" -CAcreateserial -days 7 \
  -extfile "$N/leaf.ext" -out "$N/leaf.crt" 2>/dev/null
NOTATION_DIGEST=$(push_image demo/notation 1.0)
NOTATION_SIZE=$(stat -c %s "$WORK/images/demo/notation/1.0/manifest.json")
info "$REGISTRY/demo/notation:1.0  $NOTATION_DIGEST (no DCT trust data, no cosign signature)"
printf '{"targetArtifact":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"%s","size":%s}}' \
  "$NOTATION_DIGEST" "$NOTATION_SIZE" > "$N/payload.json"
printf '{"alg":"PS256","crit":["io.cncf.notary.signingScheme"],"cty":"application/vnd.cncf.notary.payload.v1+json","io.cncf.notary.signingScheme":"notary.x509","io.cncf.notary.signingTime":"%s"}' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$N/protected.json"
PROTECTED_B64=$(b64url < "$N/protected.json")
PAYLOAD_B64=$(b64url < "$N/payload.json")
printf '%s.%s' "$PROTECTED_B64" "$PAYLOAD_B64" \
  | openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 -sign "$N/leaf.key" > "$N/signature.bin"
printf '{"payload":"%s","protected":"%s","header":{"x5c":["%s","%s"],"io.cncf.notary.signingAgent":"trustgate demo (openssl)"},"signature":"%s"}' \
  "$PAYLOAD_B64" "$PROTECTED_B64" \
  "$(openssl x509 -in "$N/leaf.crt" -outform DER | base64 -w0)" \
  "$(openssl x509 -in "$N/ca.crt" -outform DER | base64 -w0)" \
  "$(b64url < "$N/signature.bin")" > "$N/envelope.jws"
printf '{}' > "$N/empty.json"
EMPTY_DIGEST=$(push_blob demo/notation "$N/empty.json")
ENVELOPE_DIGEST=$(push_blob demo/notation "$N/envelope.jws")
# The annotation is a JSON array in a string: the SHA-256 of each certificate of the chain.
THUMBPRINTS=$(printf '[\\"%s\\",\\"%s\\"]' \
  "$(openssl x509 -in "$N/leaf.crt" -outform DER | sha256sum | cut -d' ' -f1)" \
  "$(openssl x509 -in "$N/ca.crt" -outform DER | sha256sum | cut -d' ' -f1)")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.cncf.notary.signature","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[{"mediaType":"application/jose+json","digest":"%s","size":%s}],"subject":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"%s","size":%s},"annotations":{"io.cncf.notary.x509chain.thumbprint#S256":"%s"}}' \
  "$EMPTY_DIGEST" "$ENVELOPE_DIGEST" "$(stat -c %s "$N/envelope.jws")" "$NOTATION_DIGEST" "$NOTATION_SIZE" \
  "$THUMBPRINTS" > "$N/sig-manifest.json"
SIG_DIGEST="sha256:$(sha256sum "$N/sig-manifest.json" | cut -d' ' -f1)"
curl -fsS -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
  --data-binary "@$N/sig-manifest.json" "http://$REGISTRY/v2/demo/notation/manifests/$SIG_DIGEST" >/dev/null
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"artifactType":"application/vnd.cncf.notary.signature","annotations":{"io.cncf.notary.x509chain.thumbprint#S256":"%s"}}]}' \
  "$SIG_DIGEST" "$(stat -c %s "$N/sig-manifest.json")" "$THUMBPRINTS" > "$N/index.json"
curl -fsS -X PUT -H 'Content-Type: application/vnd.oci.image.index.v1+json' \
  --data-binary "@$N/index.json" \
  "http://$REGISTRY/v2/demo/notation/manifests/sha256-${NOTATION_DIGEST#sha256:}" >/dev/null
info "signed with Notation (JWS, notary.x509): $SIG_DIGEST, listed under sha256-${NOTATION_DIGEST#sha256:}"
# The Notation CLI's configuration directory, as `notation cert add` and a trust policy file
# leave it.
mkdir -p "$WORK/notation/truststore/x509/ca/demo"
cp "$N/ca.crt" "$WORK/notation/truststore/x509/ca/demo/"
cat > "$WORK/notation/trustpolicy.oci.json" <<EOF
{"version": "1.0", "trustPolicies": [{
  "name": "demo-images", "registryScopes": ["$REGISTRY/demo/notation"],
  "signatureVerification": {"level": "strict", "override": {"revocation": "skip"}},
  "trustStores": ["ca:demo"],
  "trustedIdentities": ["x509.subject: C=US, ST=WA, O=trustgate demo"]}]}
EOF

cat > "$WORK/migration-policy.toml" <<EOF
version = 1
[trust_servers.local]
url = "$NOTARY_URL"

[verifiers.dct]
type = "notary"
trust_server = "local"

[verifiers.release]
type = "cosign"
keys = ["$WORK/cosign.pub"]
tlog = false

[verifiers.corp]
type = "notation"
config_dir = "$WORK/notation"

[[rules]]
name = "demo, migrating from DCT to cosign or Notation"
scope = "$REGISTRY/demo/**"
require = "signed"
signed_by = { any_of = ["dct", "release", "corp"] }

[default]
require = "reject"
EOF
cat > "$WORK/migration.toml" <<EOF
listen = ["127.0.0.1:5002"]
policy = "$WORK/migration-policy.toml"
state_dir = "$WORK/state-migration"
[[upstream]]
name = "$REGISTRY"
url = "http://$REGISTRY"
EOF
info "which rule and verifiers apply (trustgate policy explain):"
"$TRUSTGATE" policy explain "$WORK/migration-policy.toml" "$REGISTRY/demo/cosigned" | sed 's/^/    /'
port_free 127.0.0.1:5002 || die "127.0.0.1:5002 is already in use"
"$TRUSTGATE" serve --config "$WORK/migration.toml" > "$WORK/trustgate-migration.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:5002/readyz" trustgate-migration "${PIDS[-1]}"
for image in demo/cosigned demo/notation demo/signed; do
  skopeo --insecure-policy copy --src-tls-verify=false \
    "docker://127.0.0.1:5002/$image:1.0" "dir:$WORK/pulled-m-${image#demo/}" > "$WORK/skopeo-m.log" 2>&1 \
    || { cat "$WORK/skopeo-m.log"; die "$image:1.0 was refused under any_of"; }
  info "$image:1.0 served as sha256:$(sha256sum "$WORK/pulled-m-${image#demo/}/manifest.json" | cut -d' ' -f1)"
done
GOT_C="sha256:$(sha256sum "$WORK/pulled-m-cosigned/manifest.json" | cut -d' ' -f1)"
[ "$GOT_C" = "$COSIGNED_DIGEST" ] || die "expected the cosign-signed digest $COSIGNED_DIGEST"
GOT_N="sha256:$(sha256sum "$WORK/pulled-m-notation/manifest.json" | cut -d' ' -f1)"
[ "$GOT_N" = "$NOTATION_DIGEST" ] || die "expected the Notation-signed digest $NOTATION_DIGEST"
GOT_S="sha256:$(sha256sum "$WORK/pulled-m-signed/manifest.json" | cut -d' ' -f1)"
[ "$GOT_S" = "$SIGNED_DIGEST" ] || die "expected the DCT-signed digest $SIGNED_DIGEST"
info "(demo/cosigned by its cosign signature, demo/notation by its Notation signature;"
info " demo/signed by DCT, still as its signed digest)"
if skopeo --insecure-policy copy --retry-times 0 --src-tls-verify=false \
     "docker://127.0.0.1:5002/demo/unsigned:1.0" "dir:$WORK/pulled-m-unsigned" 2>/dev/null; then
  die "the unsigned tag was served under any_of"
fi
info "demo/unsigned:1.0 refused by all three verifiers:"
curl -sS -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
  -w '\n    (HTTP %{http_code})\n' "http://127.0.0.1:5002/v2/demo/unsigned/manifests/1.0" | sed 's/^/    /'

say "The audit trail (one event per decision) and the counters"
grep 'pull decision' "$WORK/trustgate.log" | sed 's/^/    /' || true
curl -fsS "http://$TRUSTGATE_ADDR/metrics" | grep '^trustgate_decisions' | grep -v ' 0$' | sed 's/^/    /' || true

say "Done; stopping what the demo started and removing $WORK"
