#!/usr/bin/env bash
# Starts the single-node test cluster: containerd (+ runc, CNI bridge), etcd,
# kube-apiserver, CoreDNS, kube-controller-manager, kube-scheduler, kubelet and
# kube-proxy, as background processes with their state, logs and kubeconfig under
# $STATE_DIR. Idempotent: a healthy running cluster is left alone.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || die "the test cluster needs root (containerd, kubelet, iptables)"
lock cluster
t0=$(date +%s)
RUN=$STATE_DIR/run LOGS=$STATE_DIR/logs PKI=$STATE_DIR/pki CONF=$STATE_DIR/conf
K=$BIN_DIR/kubectl

start() { # start NAME CMD...: a daemon in its own session, logging to $LOGS/NAME.log
  local name=$1; shift
  running "$name" && return 0
  setsid "$@" >>"$LOGS/$name.log" 2>&1 < /dev/null 9>&- &
  echo $! > "$RUN/$name.pid"
  printf '%s\0' "$@" > "$RUN/$name.cmd"  # restart.sh starts it again the same way
}
wait_for() { # wait_for WHAT SECONDS CMD...: CMD's output is dropped, so a component
  # that exited is noticed here, outside it (a `die` inside CMD would say nothing).
  local what=$1 secs=$2; shift 2
  local end=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    started_alive
    if (( $(date +%s) > end )); then
      log "$what not ready after ${secs}s; last log lines:"
      tail -n 25 "$LOGS"/*.log >&2 || true
      die "$what did not come up"
    fi
    sleep 0.3
  done
}
admin() { "$K" --kubeconfig "$KUBECONFIG_PATH" "$@"; }
started_alive() { # every component started so far still runs; else its log, and die
  local f c
  for f in "$RUN"/*.pid; do
    [ -e "$f" ] || continue
    c=$(basename "$f" .pid)
    alive "$(cat "$f")" ||
      { tail -n 30 "$LOGS/$c.log" >&2 || true; die "$c exited during start-up"; }
  done
}

all_running() {
  local c
  for c in "${COMPONENTS[@]}"; do running "$c" || return 1; done
}
if [ -f "$KUBECONFIG_PATH" ] && all_running && admin get --raw /readyz >/dev/null 2>&1; then
  # A cluster started before the bridge had a fixed MAC gets it now.
  bridge_mac
  log "cluster already running; kubeconfig: $KUBECONFIG_PATH"
  exit 0
fi

# Leftovers of a cluster that did not stop cleanly (a killed session, a reboot): start
# from a clean slate, with a new PKI and an empty etcd.
if [ -d "$STATE_DIR" ]; then
  log "cleaning up a cluster that is not (fully) running"
  TICKRUN_CLUSTER_LOCKED=1 "$CLUSTER_SRC/down.sh"
fi
"$CLUSTER_SRC/install-deps.sh"
"$CLUSTER_SRC/build.sh"
mkdir -p "$RUN" "$LOGS" "$CONF"

# Host networking: the bridge exists before anything starts, so its address is the
# node's address, the API server's advertised address and the host address for pods.
modprobe br_netfilter 2>/dev/null || true
sysctl -qw net.ipv4.ip_forward=1
[ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ] ||
  sysctl -qw net.bridge.bridge-nf-call-iptables=1
if ! ip link show "$BRIDGE_NAME" >/dev/null 2>&1; then
  ip link add "$BRIDGE_NAME" type bridge
fi
# A fixed MAC (BRIDGE_MAC in lib.sh): else the host's MAC on this link is the lowest of
# the pods' veths', a pod's teardown changes it, and a new pod that had just resolved
# 10.244.0.1 sends its SYNs to a MAC no port owns until its ARP entry expires (~40 s).
bridge_mac
ip addr replace "$HOST_ADDRESS_FOR_PODS/${POD_CIDR#*/}" dev "$BRIDGE_NAME"
ip link set "$BRIDGE_NAME" up

if [ ! -f "$PKI/ca.crt" ]; then
  log "generating the cluster's PKI"
  NODE_NAME=$NODE_NAME "$CLUSTER_SRC/pki.sh" "$PKI" "$HOST_ADDRESS_FOR_PODS" "$SERVICE_IP"
fi

kubeconfig() { # kubeconfig FILE USER CERT SERVER
  local ca crt key
  ca=$(base64 -w0 < "$PKI/ca.crt"); crt=$(base64 -w0 < "$PKI/$3.crt")
  key=$(base64 -w0 < "$PKI/$3.key")
  cat > "$1" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: tickrun-test
  cluster:
    server: ${4:-https://127.0.0.1:6443}
    certificate-authority-data: $ca
users:
- name: $2
  user:
    client-certificate-data: $crt
    client-key-data: $key
contexts:
- name: tickrun-test
  context: {cluster: tickrun-test, user: $2, namespace: default}
current-context: tickrun-test
KUBECONFIG
  chmod 600 "$1"
}
kubeconfig "$CONF/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
kubeconfig "$CONF/scheduler.kubeconfig" system:kube-scheduler scheduler
kubeconfig "$CONF/kubelet.kubeconfig" "system:node:$NODE_NAME" kubelet
kubeconfig "$CONF/kube-proxy.kubeconfig" system:kube-proxy kube-proxy
kubeconfig "$CONF/coredns.kubeconfig" system:coredns coredns
kubeconfig "$KUBECONFIG_PATH" tickrun-admin admin
echo "$HOST_ADDRESS_FOR_PODS" > "$STATE_DIR/host-address"

# containerd: our own instance (own socket and root), cgroupfs, runc, the CNI bridge.
mkdir -p "$CONF/cni" "$(dirname "$CONTAINERD_SOCK")" "$CONTAINERD_ROOT"
cat > "$CONF/cni/10-tickrun.conflist" <<CNI
{
  "cniVersion": "1.0.0",
  "name": "tickrun",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE_NAME", "isGateway": true, "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$HOST_ADDRESS_FOR_PODS"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "/var/lib/tickrun-cni/networks"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CNI
cat > "$CONF/containerd.toml" <<TOML
version = 2
root = "$CONTAINERD_ROOT"
state = "$(dirname "$CONTAINERD_SOCK")"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "tickrun.test/pause:$PAUSE_VERSION"
  # No CAP_SYS_RESOURCE here: a negative oom_score_adj would be refused.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    discard_unpacked_layers = false
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CONF/cni"
TOML
start containerd containerd --config "$CONF/containerd.toml"

# etcd: loopback only, plain HTTP, fresh per cluster.
start etcd "$BIN_DIR/etcd" --name tickrun --data-dir "$STATE_DIR/etcd" \
  --listen-client-urls http://127.0.0.1:12379 --advertise-client-urls http://127.0.0.1:12379 \
  --listen-peer-urls http://127.0.0.1:12380 --initial-advertise-peer-urls http://127.0.0.1:12380 \
  --initial-cluster tickrun=http://127.0.0.1:12380 --unsafe-no-fsync \
  --listen-metrics-urls http://127.0.0.1:12381 --log-level warn
wait_for containerd 30 ctr --address "$CONTAINERD_SOCK" version
"$CLUSTER_SRC/images.sh" pause

start kube-apiserver "$BIN_DIR/kube-apiserver" \
  --advertise-address="$HOST_ADDRESS_FOR_PODS" --bind-address=0.0.0.0 --secure-port=6443 \
  --etcd-servers=http://127.0.0.1:12379 \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --allow-privileged=true --anonymous-auth=true \
  --client-ca-file="$PKI/ca.crt" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$PKI/ca.crt" \
  --kubelet-preferred-address-types=InternalIP \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" \
  --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range="$SERVICE_CIDR" --service-node-port-range=30000-32767 \
  --profiling=false --v=1
wait_for etcd 30 "$K" --kubeconfig /dev/null get --raw /health -s http://127.0.0.1:12379
wait_for kube-apiserver 90 admin get --raw /readyz

# Cluster DNS: CoreDNS on the host at the bridge address (kubelet's clusterDNS), serving
# cluster.local from the API and forwarding the rest to the host's resolver.
admin apply -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "tickrun:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "tickrun:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "tickrun:coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}
YAML
cat > "$CONF/Corefile" <<COREFILE
.:53 {
    bind $HOST_ADDRESS_FOR_PODS
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $CONF/coredns.kubeconfig tickrun-test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    forward . /etc/resolv.conf
    cache 30
    loadbalance
}
COREFILE
start coredns "$BIN_DIR/coredns" -conf "$CONF/Corefile"

start kube-controller-manager "$BIN_DIR/kube-controller-manager" \
  --kubeconfig="$CONF/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$CONF/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$CONF/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --controllers='*' \
  --use-service-account-credentials=true \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --root-ca-file="$PKI/ca.crt" --service-account-private-key-file="$PKI/sa.key" \
  --service-cluster-ip-range="$SERVICE_CIDR" --allocate-node-cidrs=false \
  --concurrent-gc-syncs=5 --v=1
start kube-scheduler "$BIN_DIR/kube-scheduler" \
  --kubeconfig="$CONF/scheduler.kubeconfig" \
  --authentication-kubeconfig="$CONF/scheduler.kubeconfig" \
  --authorization-kubeconfig="$CONF/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --v=1

# kubelet: kind's single-node settings; cgroup v1 with cgroupfs like containerd.
cat > "$CONF/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "$PKI/kubelet-serving.crt"
tlsPrivateKeyFile: "$PKI/kubelet-serving.key"
address: "$HOST_ADDRESS_FOR_PODS"
healthzBindAddress: 127.0.0.1
podCIDR: "$POD_CIDR"
clusterDomain: cluster.local
clusterDNS: ["$HOST_ADDRESS_FOR_PODS"]
resolvConf: /etc/resolv.conf
evictionHard: {nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
protectKernelDefaults: false
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
YAML
start kubelet "$BIN_DIR/kubelet" --config="$CONF/kubelet.yaml" \
  --kubeconfig="$CONF/kubelet.kubeconfig" --hostname-override="$NODE_NAME" \
  --node-ip="$HOST_ADDRESS_FOR_PODS" --root-dir=/var/lib/tickrun-kubelet --v=1

cat > "$CONF/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$CONF/kube-proxy.kubeconfig"}
mode: iptables
clusterCIDR: "$POD_CIDR"
hostnameOverride: "$NODE_NAME"
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Pods on one bridge: masquerade service traffic so replies come back through the host.
iptables: {masqueradeAll: true}
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
start kube-proxy "$BIN_DIR/kube-proxy" --config="$CONF/kube-proxy.yaml" --v=1

node_ready() {
  [ "$(admin get node "$NODE_NAME" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
wait_for "node $NODE_NAME Ready" 90 node_ready
wait_for "default service account" 60 admin -n default get serviceaccount default
wait_for coredns 30 "$K" --kubeconfig /dev/null get --raw /ready -s http://127.0.0.1:18181
started_alive
elapsed=$(( $(date +%s) - t0 ))
echo "$elapsed" > "$STATE_DIR/up-seconds"
if (( $(stat -c %Y "$BIN_DIR/.build-id") >= t0 )); then kind="cold: binaries built"
else kind="warm: binaries cached"; fi
log "cluster up in ${elapsed}s ($kind; Kubernetes $KUBERNETES_VERSION)"
log "kubeconfig: $KUBECONFIG_PATH   e.g. $K --kubeconfig $KUBECONFIG_PATH get nodes"
log "pods reach host services (PostgreSQL, Redis) at $HOST_ADDRESS_FOR_PODS"
