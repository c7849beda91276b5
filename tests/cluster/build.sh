#!/usr/bin/env bash
# Builds the test cluster's binaries from Go modules (versions.env, go.mod, helm/go.mod)
# into the user's cache, by version: a second run with the same inputs builds nothing.
set -euo pipefail
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
wanted=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl
        etcd helm coredns pause)
if [ -f "$BIN_DIR/.build-id" ] && [ "$(cat "$BIN_DIR/.build-id")" = "$build_id" ]; then
  ok=1
  for b in "${wanted[@]}"; do [ -x "$BIN_DIR/$b" ] || ok=0; done
  if ((ok)); then log "binaries cached in $BIN_DIR"; exit 0; fi
fi

# The go.mod files must say what versions.env says (gen-gomod.sh rewrites them).
have_k8s=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
have_etcd=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
have_helm=$(cd helm && go list -m -f '{{.Version}}' "helm.sh/helm/${HELM_VERSION%%.*}")
have_dns=$(cd coredns && go list -m -f '{{.Version}}' github.com/coredns/coredns)
have=$have_k8s/$have_etcd/$have_helm/$have_dns
want=$KUBERNETES_VERSION/$ETCD_VERSION/$HELM_VERSION/$COREDNS_VERSION
[ "$have" = "$want" ] ||
  die "the go.mod files have $have, versions.env wants $want: run tests/cluster/gen-gomod.sh"

start=$(date +%s)
mkdir -p "$BIN_DIR"
rm -f "$BIN_DIR/.build-id"
log "building Kubernetes $KUBERNETES_VERSION, etcd $ETCD_VERSION, pause into $BIN_DIR" \
    "(cold: about 10 minutes on 2 cores)"
tmp=$(mktemp -d "$BIN_DIR/../build.XXXXXX")  # same filesystem: binaries are renamed in
trap 'rm -rf "$tmp"' EXIT
go build -p 2 -trimpath -ldflags "-s -w$vflags" -o "$tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl \
  go.etcd.io/etcd/server/v3 ./cmd/pause
mv "$tmp/server" "$tmp/etcd"
log "building helm $HELM_VERSION"
(cd helm && go build -p 2 -trimpath -ldflags "-s -w $hflags" -o "$tmp/helm" \
  "helm.sh/helm/${HELM_VERSION%%.*}/cmd/helm")
log "building coredns $COREDNS_VERSION"
(cd coredns && go build -p 2 -trimpath \
  -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
  -o "$tmp/coredns" .)
# Renamed into place: a running cluster keeps its old (unlinked) executables.
for b in "${wanted[@]}"; do chmod 0755 "$tmp/$b"; mv -f "$tmp/$b" "$BIN_DIR/$b"; done
echo "$build_id" > "$BIN_DIR/.build-id"
log "built in $(( $(date +%s) - start ))s: $(ls "$BIN_DIR" | tr '\n' ' ')"
