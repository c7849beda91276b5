#!/usr/bin/env bash
# Prints one of the test cluster's paths: kubeconfig | host-address | bin | state |
# containerd-sock.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
case ${1:-} in
  kubeconfig) echo "$KUBECONFIG_PATH" ;;
  host-address) echo "$HOST_ADDRESS_FOR_PODS" ;;
  bin) echo "$BIN_DIR" ;;
  state) echo "$STATE_DIR" ;;
  containerd-sock) echo "$CONTAINERD_SOCK" ;;
  *) die "usage: $0 kubeconfig|host-address|bin|state|containerd-sock" ;;
esac
