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

# The whole suite: static checks, then every test tier (unit, integration, e2e and the
# real-cluster tests). pytest's "no tests ran" (exit 5) fails the build.
test: deps lint typecheck architecture
	@if grep -q '^cluster-up:' tests/cluster/cluster.mk 2>/dev/null; then \
	  $(MAKE) --no-print-directory cluster-up cluster-images; fi
	$(PY) -m pytest -p no:cacheprovider tests; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

unit: deps
	$(PY) -m pytest tests/unit

integration: deps
	$(PY) -m pytest tests/integration tests/e2e

bench: deps
	$(PY) -m bench engine
