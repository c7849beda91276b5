#!/usr/bin/env bash
# Shows the test cluster's processes, node and pods, and how to reach it.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
RUN=$STATE_DIR/run
rc=0
for c in "${COMPONENTS[@]}"; do
  if running "$c"; then
    printf '%-24s running (pid %s, log %s)\n' "$c" "$(cat "$RUN/$c.pid")" "$STATE_DIR/logs/$c.log"
  else
    printf '%-24s stopped\n' "$c"; rc=1
  fi
done
if [ -f "$KUBECONFIG_PATH" ]; then
  echo "kubeconfig: $KUBECONFIG_PATH"
  echo "kubectl:    $BIN_DIR/kubectl --kubeconfig $KUBECONFIG_PATH ..."
  echo "pods reach host services at $(cat "$STATE_DIR/host-address" 2>/dev/null)"
  "$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_PATH" get nodes -o wide || rc=1
  "$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_PATH" get pods -A || rc=1
else
  echo "no cluster: make cluster-up"; rc=1
fi
exit $rc
