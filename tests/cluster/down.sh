#!/usr/bin/env bash
# Stops the test cluster and removes its state (etcd data, PKI, pods, pod network).
# Binaries and images stay cached, so the next `make cluster-up` is a warm start.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
RUN=$STATE_DIR/run
[ "${TICKRUN_CLUSTER_LOCKED:-}" = 1 ] || lock cluster

stop() { # stop NAME: SIGTERM, then SIGKILL after 10s
  local f=$RUN/$1.pid pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if running "$1"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}
# Reverse start order; containerd last, after the pods' containers are gone.
for ((i = ${#COMPONENTS[@]} - 1; i > 0; i--)); do stop "${COMPONENTS[i]}"; done
# The pods' containers, while containerd still runs (images stay).
if [ -S "$CONTAINERD_SOCK" ] && running containerd; then
  ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }
  for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
  sleep 0.5
  for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$t" >/dev/null 2>&1 || true; done
  for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$c" >/dev/null 2>&1 || true; done
fi
stop containerd
# Leftover shims, mounts and network namespaces of the pods.
pkill_shims() {
  local p
  for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" || true); do
    kill -9 "$p" 2>/dev/null || true
  done
}
pkill_shims
awk '{print $2}' /proc/mounts |
  { grep -E "^(/var/lib/tickrun-kubelet|$(dirname "$CONTAINERD_SOCK")|/run/netns/cni-)" || true; } |
  sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
rm -f /run/netns/cni-* 2>/dev/null || true
# containerd's run state (its socket too); its root with the images stays.
rm -rf "$(dirname "$CONTAINERD_SOCK")"
rm -rf /var/lib/tickrun-cni /var/lib/tickrun-kubelet
ip link del "$BRIDGE_NAME" 2>/dev/null || true
# kube-proxy's rules (it would clean them itself with --cleanup).
if [ -x "$BIN_DIR/kube-proxy" ]; then "$BIN_DIR/kube-proxy" --cleanup >/dev/null 2>&1 || true; fi
rm -rf "$STATE_DIR"
log "cluster down (binaries in $BIN_DIR and images in containerd kept)"
