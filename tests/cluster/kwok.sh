#!/usr/bin/env bash
# Builds kwok (https://kwok.sigs.k8s.io, simulated nodes and pods) from its Go module
# into the cluster's bin directory, once per version; prints the binary's path.
# Used by `python -m bench scale`; the test suite does not need it.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# Pinned here, not in versions.env: that file's hash decides when the Kubernetes
# binaries are rebuilt, and kwok is built apart from them.
KWOK_VERSION=v0.8.0
out=$CACHE_ROOT/kwok-$KWOK_VERSION/kwok
if [ ! -x "$out" ]; then
  lock kwok
  if [ ! -x "$out" ]; then
    log "building kwok $KWOK_VERSION (about 90 s the first time)"
    export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath
    tmp=$(mktemp -d)
    GOBIN=$tmp go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" >&2
    mkdir -p "$(dirname "$out")"
    mv "$tmp/kwok" "$out"
    rmdir "$tmp"
  fi
fi
echo "$out"
