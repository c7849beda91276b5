#!/usr/bin/env bash
# Builds the test cluster's binaries from Go modules (versions.env, go.mod, helm/go.mod)
# into the user's cache, by version: a second run with the same inputs builds nothing.
#   build.sh [core]  what the cluster runs on: Kubernetes, etcd, coredns, pause (up.sh)
#   build.sh helm    helm, which only the chart tests use: `make test` builds it while
#                    the other cluster tests run, off the fresh machine's critical path
#   build.sh all     both
set -euo pipefail
what=${1:-core}
case $what in core|helm|all) ;; *) echo "usage: $0 [core|helm|all]" >&2; exit 2 ;; esac
. "$(dirname "$0")/lib.sh"
cd "$CLUSTER_SRC"
lock build

export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
# Two cores: compile two packages at a time, link one big binary at a time.
export GOMAXPROCS=${GOMAXPROCS:-2}

minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
vflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  vflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1"
  vflags+=" -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  vflags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
hflags="-X helm.sh/helm/${HELM_VERSION%%.*}/internal/version.version=$HELM_VERSION"
# What the binaries are made of: sources pinned by the go.mod files, flags, the Go.
build_id=$( (cat versions.env go.mod go.sum helm/go.mod helm/go.sum cmd/pause/main.go \
               coredns/go.mod coredns/go.sum coredns/main.go
             echo "$vflags $hflags $GOFLAGS $CGO_ENABLED"; go version) | sha256sum | cut -c1-16)
core=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl
      etcd coredns pause)
# .build-id names the inputs of the binaries in BIN_DIR; a core build removes an older
# helm, so a helm there was built from the same inputs.
cached() {
  [ -f "$BIN_DIR/.build-id" ] && [ "$(cat "$BIN_DIR/.build-id")" = "$build_id" ] || return 1
  local b
  for b in "$@"; do [ -x "$BIN_DIR/$b" ] || return 1; done
}

# The go.mod files must say what versions.env says (gen-gomod.sh rewrites them).
check_versions() {
  local have_k8s have_etcd have_helm have_dns have want
  have_k8s=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
  have_etcd=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
  have_helm=$(cd helm && go list -m -f '{{.Version}}' "helm.sh/helm/${HELM_VERSION%%.*}")
  have_dns=$(cd coredns && go list -m -f '{{.Version}}' github.com/coredns/coredns)
  have=$have_k8s/$have_etcd/$have_helm/$have_dns
  want=$KUBERNETES_VERSION/$ETCD_VERSION/$HELM_VERSION/$COREDNS_VERSION
  [ "$have" = "$want" ] ||
    die "the go.mod files have $have, versions.env wants $want: run tests/cluster/gen-gomod.sh"
}

# Built into a directory on the same filesystem, then renamed in: a running cluster
# keeps its old (unlinked) executables.
build_core() {
  local start b
  start=$(date +%s)
  log "building Kubernetes $KUBERNETES_VERSION, etcd $ETCD_VERSION, coredns" \
      "$COREDNS_VERSION, pause into $BIN_DIR (cold: about 10 minutes on 2 cores)"
  tmp=$(mktemp -d "$BIN_DIR/../build.XXXXXX")  # global: the EXIT trap removes it
  trap 'rm -rf "$tmp"' EXIT
  go build -p 2 -trimpath -ldflags "-s -w$vflags" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl \
    go.etcd.io/etcd/server/v3 ./cmd/pause
  mv "$tmp/server" "$tmp/etcd"
  (cd coredns && go build -p 2 -trimpath \
    -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
    -o "$tmp/coredns" .)
  rm -f "$BIN_DIR/.build-id" "$BIN_DIR/helm"
  for b in "${core[@]}"; do chmod 0755 "$tmp/$b"; mv -f "$tmp/$b" "$BIN_DIR/$b"; done
  echo "$build_id" > "$BIN_DIR/.build-id"
  log "built in $(( $(date +%s) - start ))s: ${core[*]}"
}

build_helm() {
  local start
  start=$(date +%s)
  log "building helm $HELM_VERSION"
  (cd helm && go build -p 2 -trimpath -ldflags "-s -w $hflags" -o "$BIN_DIR/helm.tmp" \
    "helm.sh/helm/${HELM_VERSION%%.*}/cmd/helm")
  chmod 0755 "$BIN_DIR/helm.tmp"
  mv -f "$BIN_DIR/helm.tmp" "$BIN_DIR/helm"
  log "built helm in $(( $(date +%s) - start ))s"
}

mkdir -p "$BIN_DIR"
if [ "$what" != helm ]; then
  if cached "${core[@]}"; then log "binaries cached in $BIN_DIR"
  else check_versions; build_core; fi
fi
if [ "$what" != core ]; then
  cached "${core[@]}" || die "build the cluster's binaries first: $0 core"
  if cached helm; then log "helm cached in $BIN_DIR"; else check_versions; build_helm; fi
fi
