# The real single-node Kubernetes the tests run against (tests/cluster/README in the
# top-level README, "Test cluster"). Included by the top-level Makefile.
.PHONY: cluster-build cluster-up cluster-down cluster-status cluster-images cluster-tests cluster-kwok

# Build (cold, once per version) or find in the cache the Kubernetes, etcd, coredns,
# pause and helm binaries.
cluster-build:
	@tests/cluster/install-deps.sh
	@start=$$(date +%s); tests/cluster/build.sh all && \
	  echo "cluster-build: $$(( $$(date +%s) - start ))s"

# Start the cluster (builds first if needed); prints its cold or warm set-up time. A
# start-up that fails (in CI twice: the components were killed from outside while they
# started) is tried once more from a clean slate; a real defect fails twice, loudly.
cluster-up:
	@if [ "$${TICKRUN_SKIP_CLUSTER:-}" = 1 ]; then \
	  echo "cluster-up: skipped (TICKRUN_SKIP_CLUSTER=1)"; exit 0; fi; \
	start=$$(date +%s); \
	tests/cluster/up.sh || { echo "cluster-up: failed; once more from a clean slate" >&2; \
	  sleep 5; tests/cluster/up.sh; } && \
	  echo "cluster-up: $$(( $$(date +%s) - start ))s (kubeconfig: $$(tests/cluster/paths.sh kubeconfig))"

cluster-down:
	@tests/cluster/down.sh

cluster-status:
	@tests/cluster/status.sh

# The pause, base, runner and api images, rebuilt only when their inputs change.
cluster-images: cluster-up
	@if [ "$${TICKRUN_SKIP_CLUSTER:-}" = 1 ]; then exit 0; fi; \
	start=$$(date +%s); tests/cluster/images.sh all && \
	  echo "cluster-images: $$(( $$(date +%s) - start ))s"

cluster-tests: deps cluster-up cluster-images
	$(PY) -m pytest -p no:cacheprovider tests/cluster

# kwok for `python -m bench scale` (simulated nodes); not part of `make test`.
cluster-kwok:
	@tests/cluster/kwok.sh
