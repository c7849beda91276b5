#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it.
#
# The test cluster (build, start, images: minutes on a fresh machine) is set up in the
# background while the tests run in parallel processes (pytest-xdist). Each test module
# stays on one process, and the cluster tests all on one (tests/conftest.py); that
# process waits for the set-up before its first cluster test, the others do not.
# pytest's "no tests ran" (exit 5) fails the build.
set -uo pipefail
cd "$(dirname "$0")/.."

workers=${TICKRUN_TEST_WORKERS:-3}
setup_dir=$(mktemp -d -t tickrun-cluster-setup.XXXXXX)
export TICKRUN_CLUSTER_SETUP_LOG=$setup_dir/log TICKRUN_CLUSTER_SETUP_STATUS=$setup_dir/status
if [ "${TICKRUN_SKIP_CLUSTER:-}" = 1 ] || ! grep -q '^cluster-up:' tests/cluster/cluster.mk; then
  echo 0 >"$TICKRUN_CLUSTER_SETUP_STATUS"
  setup_pid=
else
  echo "test cluster: set up in the background (log: $TICKRUN_CLUSTER_SETUP_LOG)"
  # The status file appears whole (rename), only once the set-up ended.
  ( make --no-print-directory cluster-up cluster-images >"$TICKRUN_CLUSTER_SETUP_LOG" 2>&1
    echo $? >"$setup_dir/status.new" && mv "$setup_dir/status.new" "$TICKRUN_CLUSTER_SETUP_STATUS"
  ) &
  setup_pid=$!
fi

.venv/bin/python -m pytest -p no:cacheprovider -n "$workers" --dist loadgroup tests "$@"
rc=$?

if [ -n "$setup_pid" ]; then
  wait "$setup_pid"
  echo "---- test cluster set-up (make cluster-up cluster-images) ----"
  cat "$TICKRUN_CLUSTER_SETUP_LOG"
  setup_rc=$(cat "$TICKRUN_CLUSTER_SETUP_STATUS" 2>/dev/null || echo 1)
  if [ "$setup_rc" != 0 ] && [ "$rc" = 0 ]; then
    echo "the test cluster's set-up failed (exit $setup_rc)"; rc=1
  fi
fi
rm -rf "$setup_dir"
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi
exit "$rc"
