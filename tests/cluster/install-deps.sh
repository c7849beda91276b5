#!/usr/bin/env bash
# Debian packages the test cluster needs, installed only when missing (root; a fresh
# machine has none of them). Called by `make cluster-build` / `make cluster-up`.
set -euo pipefail
pkgs=(containerd runc containernetworking-plugins buildah debootstrap openssl iptables
      conntrack iproute2 ethtool socat util-linux mount kmod procps ca-certificates
      fuse-overlayfs uidmap)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing Debian packages for the test cluster: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian package starts containerd with its own config; the cluster runs its own.
if command -v systemctl >/dev/null && systemctl is-active -q containerd 2>/dev/null; then
  systemctl stop containerd || true
fi
if [ ! -x /usr/local/go/bin/go ] && ! command -v go >/dev/null; then
  echo "Go is needed to build the test cluster (expected at /usr/local/go/bin/go)" >&2
  exit 1
fi
