#!/usr/bin/env bash
# The README's two commands as a new user runs them on a fresh machine of this kind:
# a new clone of the committed HEAD, the project's caches removed (~/.cache/tickrun with
# the cluster's binaries and images, containerd's image store, Go's module and build
# caches, pip's cache), the cluster down; then `make demo` and `make test`, each timed.
# Debian packages already installed stay (apt has no cache of ours to clear); everything
# else is rebuilt. Destroys the shared caches, so the next warm run is cold once.
#
# Usage: scripts/fresh-check.sh [WORKDIR]   (default: a new directory under /var/tmp)
# Prints a summary and writes it to WORKDIR/fresh-check.txt; exits non-zero when
# either command fails.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d /var/tmp/tickrun-fresh.XXXXXX)}
mkdir -p "$work"
clone=$work/tickrun
summary=$work/fresh-check.txt
log() { printf '[fresh-check %s] %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$summary" >&2; }

log "HEAD $(git -C "$repo" rev-parse --short HEAD); work in $work"
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
  log "note: uncommitted changes in $repo are not part of the check"
fi

# The cluster down first (its scripts know where everything is), then its caches.
if [ -x "$repo/tests/cluster/down.sh" ]; then "$repo/tests/cluster/down.sh" || true; fi
cache=${XDG_CACHE_HOME:-$HOME/.cache}
rm -rf "$cache/tickrun" /var/lib/tickrun-containerd "$cache/pip"
if command -v go >/dev/null || [ -x /usr/local/go/bin/go ]; then
  gobin=$(command -v go || echo /usr/local/go/bin/go)
  "$gobin" clean -cache -modcache >/dev/null 2>&1 || true
  rm -rf "$("$gobin" env GOCACHE)" "$("$gobin" env GOMODCACHE)"
fi
# buildah's storage holds the base image built by a previous run.
if command -v buildah >/dev/null; then buildah --storage-driver overlay rm -a >/dev/null 2>&1 || true
  buildah --storage-driver overlay rmi -a -f >/dev/null 2>&1 || true; fi

git clone -q "$repo" "$clone"
cd "$clone"
timed() { # timed NAME CMD...: runs CMD with its output in WORKDIR/NAME.log
  local name=$1 start rc=0; shift
  start=$(date +%s)
  log "$name: started ($*)"
  "$@" > "$work/$name.log" 2>&1 < /dev/null || rc=$?
  log "$name: exit $rc in $(( $(date +%s) - start ))s (log: $work/$name.log)"
  return $rc
}
rc=0
timed demo make demo || rc=1
# CI runs .ci/run (which runs `make test`) with CI=true and no terminal.
timed test env CI=true bash .ci/run || rc=1
grep -E "^(cluster-up|cluster-images|cluster set-up|chart tests' set-up|make test)[^:]*: |^=+ .*(passed|failed).* in " \
  "$work/test.log" | tee -a "$summary" >&2 || true
tail -n 3 "$work/test.log" | tee -a "$summary" >&2
log "done: $( ((rc == 0)) && echo passed || echo FAILED)"
exit $rc
