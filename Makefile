# tickrun: `make demo` runs a session on the embedded default; `make test` runs everything.
SHELL := /bin/bash
PY := .venv/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: deps demo test lint typecheck architecture unit integration cluster-tests bench

-include tests/cluster/cluster.mk

deps:
	@scripts/install-deps.sh

demo: deps
	$(PY) -m api.cli demo

lint: deps
	.venv/bin/ruff check core runner controller api bench tests

typecheck: deps
	.venv/bin/mypy

architecture: deps
	.venv/bin/lint-imports

# The whole suite (scripts/run-tests.sh): the dependencies and the static checks while
# the test cluster's binaries build, then every test tier (unit, integration, e2e, ui) in
# parallel processes while the test cluster is set up and its tests run beside them.
# pytest's "no tests ran" (exit 5) fails the build.
test:
	@scripts/run-tests.sh

unit: deps
	$(PY) -m pytest tests/unit

integration: deps
	$(PY) -m pytest tests/integration tests/e2e

bench: deps
	$(PY) -m bench engine
