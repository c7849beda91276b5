#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it: two streams at once.
#
# First the test cluster's binaries start building (a Go build of Kubernetes: minutes on
# a fresh machine, nothing when cached) while the project's own dependencies install and
# the static checks (ruff, mypy, import-linter) run. Then:
# - the cluster stream: the test cluster's set-up (on a fresh machine a Go build of
#   Kubernetes and the images: most of the wall time; the Debian base image is made
#   while the binaries build), then the real-cluster tests
#   (tests/cluster) in one process: they share one cluster and some restart its parts.
#   helm and the api image serve only the chart tests: they are built while the other
#   cluster tests run, and the chart tests come last;
# - every other test in TICKRUN_TEST_WORKERS (default 2) pytest-xdist processes, each
#   module on one process (its module fixtures); each process starts its own PostgreSQL
#   and Redis.
#
# TICKRUN_TEST_WORKERS=0 runs everything in one pytest process after the cluster's
# set-up instead (slower; for a failure that may depend on the parallel load).
#
# The cluster stream's output is printed after the other's. Either failing fails the
# build; pytest's "no tests ran" (exit 5) too.
set -uo pipefail
cd "$(dirname "$0")/.."

workers=${TICKRUN_TEST_WORKERS:-2}
pytest=(.venv/bin/python -m pytest -p no:cacheprovider)
chart_tests=(tests/cluster/test_chart.py tests/cluster/test_helm_release.py)
build_log=$(mktemp -t tickrun-cluster-build.XXXXXX)
build_pgid=""
trap '[ -z "$build_pgid" ] || kill -- "-$build_pgid" 2>/dev/null; rm -f "$build_log"' EXIT

# pytest's exit code, with "no tests ran" (5) a failure.
checked() {
  "$@"
  local rc=$?
  if [ "$rc" -eq 5 ]; then echo "pytest collected no tests: failing"; return 1; fi
  return "$rc"
}

# joined PID LOG: wait for a background step, print its output and forget it; its exit
# status.
joined() {
  local rc=0
  wait "$1" || rc=$?
  cat "$2"; rm -f "$2"
  return "$rc"
}

# The cluster's binaries build in a process group of their own (stopped if the checks
# fail); `make cluster-up` below waits for that build through its lock.
if [ "${TICKRUN_SKIP_CLUSTER:-}" != 1 ]; then
  setsid tests/cluster/build.sh core >"$build_log" 2>&1 &
  build_pgid=$!
fi
make --no-print-directory deps lint typecheck architecture || exit 1

if [ "$workers" -eq 0 ]; then
  if [ "${TICKRUN_SKIP_CLUSTER:-}" != 1 ]; then
    make --no-print-directory cluster-up cluster-images || { cat "$build_log"; exit 1; }
    build_pgid=""
  fi
  checked "${pytest[@]}" tests
  exit
fi

cluster_stream() {
  if [ "${TICKRUN_SKIP_CLUSTER:-}" = 1 ]; then
    checked "${pytest[@]}" tests/cluster
    return
  fi
  local start=$SECONDS base_log base_pid chart_log chart_pid rc=0
  # The Debian base image (debootstrap: mostly downloads) needs no running cluster: it
  # is made while the binaries still build.
  tests/cluster/install-deps.sh || return 1
  base_log=$(mktemp -t tickrun-base-image.XXXXXX)
  tests/cluster/images.sh base >"$base_log" 2>&1 &
  base_pid=$!
  make --no-print-directory cluster-up || { cat "$build_log"; return 1; }
  cat "$build_log"
  joined "$base_pid" "$base_log" || return 1
  tests/cluster/images.sh runner || return 1
  echo "cluster set-up: $((SECONDS - start))s"
  chart_log=$(mktemp -t tickrun-chart-build.XXXXXX)
  (tests/cluster/build.sh helm && tests/cluster/images.sh api) >"$chart_log" 2>&1 &
  chart_pid=$!
  checked "${pytest[@]}" tests/cluster "${chart_tests[@]/#/--ignore=}" || rc=1
  joined "$chart_pid" "$chart_log" || { echo "building helm or the api image failed"; return 1; }
  echo "chart tests' set-up (helm, the api image) done: $((SECONDS - start))s into the stream"
  checked "${pytest[@]}" "${chart_tests[@]}" || rc=1
  return "$rc"
}

cluster_log=$(mktemp -t tickrun-cluster-tests.XXXXXX)
echo "cluster tests: set-up and tests in the background (output below, after the others)"
cluster_stream >"$cluster_log" 2>&1 &
cluster_pid=$!

checked "${pytest[@]}" -n "$workers" --dist loadfile --ignore=tests/cluster tests
rc=$?
others_s=$SECONDS

echo "================ the cluster stream (tests/cluster) ================"
joined "$cluster_pid" "$cluster_log"
cluster_rc=$?

if [ "$cluster_rc" -ne 0 ]; then echo "the cluster stream failed (exit $cluster_rc)"; fi
echo "make test: ${SECONDS}s (the other tests were done at ${others_s}s)"
[ "$rc" -eq 0 ] && [ "$cluster_rc" -eq 0 ]
