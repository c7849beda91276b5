#!/usr/bin/env bash
# Restarts one component of the running test cluster in place, with the very same
# command line (fault-injection tests: kube-apiserver or kubelet going away mid-run).
#   restart.sh COMPONENT [DOWN_SECONDS]
# SIGTERM (SIGKILL after 10s), DOWN_SECONDS of absence (default 0), start again,
# wait until it is healthy. The command line comes from $STATE_DIR/run/NAME.cmd
# (written by up.sh), or from the running process itself for an older cluster.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
name=${1:-} down=${2:-0}
[[ " ${COMPONENTS[*]} " == *" $name "* ]] || die "usage: $0 COMPONENT [DOWN_SECONDS]; one of: ${COMPONENTS[*]}"
lock cluster
RUN=$STATE_DIR/run LOGS=$STATE_DIR/logs
running "$name" || die "$name is not running: make cluster-status"
pid=$(cat "$RUN/$name.pid")
[ -s "$RUN/$name.cmd" ] || cp "/proc/$pid/cmdline" "$RUN/$name.cmd"
mapfile -d '' -t cmd < "$RUN/$name.cmd"
[ ${#cmd[@]} -gt 0 ] || die "no command line recorded for $name"

t0=$(date +%s%N)
kill "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -9 "$pid" 2>/dev/null || true
while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
sleep "$down"
setsid "${cmd[@]}" >>"$LOGS/$name.log" 2>&1 < /dev/null 9>&- &
echo $! > "$RUN/$name.pid"

K=$BIN_DIR/kubectl
healthy() {  # its output is dropped: whether it still runs is asked outside it
  case $name in
    kube-apiserver) "$K" --kubeconfig "$KUBECONFIG_PATH" get --raw /readyz ;;
    kubelet) curl -fsS http://127.0.0.1:10248/healthz ;;
    etcd) "$K" --kubeconfig /dev/null get --raw /health -s http://127.0.0.1:12379 ;;
    containerd) ctr --address "$CONTAINERD_SOCK" version ;;
    *) true ;;
  esac
}
end=$(( $(date +%s) + 90 ))
until healthy >/dev/null 2>&1; do
  alive "$(cat "$RUN/$name.pid")" ||
    { tail -n 30 "$LOGS/$name.log" >&2; die "$name exited after restart"; }
  (( $(date +%s) <= end )) || die "$name not healthy 90s after its restart"
  sleep 0.2
done
log "$name restarted (pid $(cat "$RUN/$name.pid")) in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
