#!/usr/bin/env bash
# Prints one of the test cluster's paths: kubeconfig | host-address | bin | state.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
case ${1:-} in
  kubeconfig) echo "$KUBECONFIG_PATH" ;;
  host-address) echo "$HOST_ADDRESS_FOR_PODS" ;;
  bin) echo "$BIN_DIR" ;;
  state) echo "$STATE_DIR" ;;
  *) die "usage: $0 kubeconfig|host-address|bin|state" ;;
esac
