# Shared by the test cluster's scripts: versions, paths, logging. Source it.
# shellcheck shell=bash disable=SC2034
CLUSTER_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$CLUSTER_SRC/../.." && pwd)
# shellcheck source=versions.env
. "$CLUSTER_SRC/versions.env"
export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/tickrun/cluster
BIN_DIR=$CACHE_ROOT/$KUBERNETES_VERSION/bin
IMAGE_CACHE=$CACHE_ROOT/images
# Where the running cluster keeps its state (PKI, configs, logs, etcd data, kubeconfig).
STATE_DIR=${TICKRUN_CLUSTER_STATE:-$CACHE_ROOT/state}
KUBECONFIG_PATH=$STATE_DIR/kubeconfig
# The node's pod network (CNI bridge with host-local IPAM); its gateway is the host
# address pods use to reach PostgreSQL and Redis on the host.
POD_CIDR=10.244.0.0/24
BRIDGE_NAME=tickrun0
HOST_ADDRESS_FOR_PODS=10.244.0.1
# The bridge's own MAC, i.e. the MAC of $HOST_ADDRESS_FOR_PODS on the pods' link. Set
# explicitly: a Linux bridge without one takes the lowest MAC of its ports (the pods'
# host-side veths) and changes it whenever a pod comes or goes, and a pod that had
# resolved the old one sends to a MAC nobody owns until its ARP entry expires (~40 s).
BRIDGE_MAC=02:74:72:00:00:01
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1
NODE_NAME=tickrun-node
CONTAINERD_ROOT=/var/lib/tickrun-containerd
CONTAINERD_SOCK=/run/tickrun-containerd/containerd.sock
# The cluster's processes, in start order.
COMPONENTS=(containerd etcd kube-apiserver coredns kube-controller-manager kube-scheduler
            kubelet kube-proxy)

# bridge_mac: the bridge keeps $BRIDGE_MAC, whatever ports come and go. A MAC set by
# hand (addr_assign_type 3, NET_ADDR_SET) is never recalculated from the ports.
bridge_mac() {
  [ "$(cat "/sys/class/net/$BRIDGE_NAME/address" 2>/dev/null)" = "$BRIDGE_MAC" ] &&
    [ "$(cat "/sys/class/net/$BRIDGE_NAME/addr_assign_type" 2>/dev/null)" = 3 ] && return 0
  ip link set dev "$BRIDGE_NAME" address "$BRIDGE_MAC"
  log "bridge $BRIDGE_NAME: MAC set to $BRIDGE_MAC"
}

# running NAME: true when the process in $STATE_DIR/run/NAME.pid is alive and is NAME
# (a stale pid file after a reboot must never make us signal someone else's process).
running() {
  local f=$STATE_DIR/run/$1.pid pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  # Read whole, then matched: `tr | grep -q` under pipefail fails when grep quits before
  # tr has written (SIGPIPE), and a running component read as gone.
  local cmdline
  [ -r "/proc/$pid/cmdline" ] && cmdline=$(tr '\0' ' ' < "/proc/$pid/cmdline") &&
    [[ $cmdline == *"$1"* ]]
}

# alive PID: the process exists and has not exited (a zombie has). For a process this
# script just started: its command line may be mid-exec (empty) for a moment, so
# `running` could take it for gone.
alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# lock NAME: hold $CACHE_ROOT/NAME.lock until this script exits (several checkouts on one
# machine share the cluster and its caches). Daemons must not inherit fd 9.
lock() {
  mkdir -p "$CACHE_ROOT"
  exec 9>"$CACHE_ROOT/$1.lock"
  flock 9
}

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# A step that fails under `set -e` says which one and where, so a CI log that ends at
# "generating the cluster's PKI" says why it ended there.
set -E
trap 'rc=$?; log "error: ${0##*/}:$LINENO: \"$BASH_COMMAND\" exited $rc"' ERR
