#!/usr/bin/env bash
# Installs everything the tests and the demo need on a fresh Debian machine. Idempotent:
# when every program is already present it installs nothing.
set -euo pipefail
need=()
for pair in docker-registry:docker-registry notary-server:notary notary-signer:notary notary:notary \
            skopeo:skopeo containerd:containerd ctr:containerd podman:podman openssl:openssl \
            curl:curl docker:docker.io; do
  bin=${pair%%:*}; pkg=${pair##*:}
  command -v "$bin" >/dev/null 2>&1 || need+=("$pkg")
done
# podman's rootful vfs storage needs these helpers on a minimal image.
for pair in newuidmap:uidmap iptables:iptables; do
  bin=${pair%%:*}; pkg=${pair##*:}
  command -v "$bin" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  echo "install-deps: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
command -v cargo >/dev/null || { echo "install-deps: cargo (Rust toolchain) is required" >&2; exit 1; }
