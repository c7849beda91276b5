#!/usr/bin/env bash
# Everything the tests need on a fresh machine: Debian's servers and the project's venv.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
command -v runuser >/dev/null || need_apt+=(util-linux)
# A real Prometheus scrapes the chart's pods in tests/cluster/test_helm_release.py.
command -v prometheus >/dev/null || need_apt+=(prometheus)
# The schedule cluster test runs a controller on a shifted clock (libfaketime): a fire due
# on a trading day whatever day the suite runs.
command -v faketime >/dev/null || need_apt+=(faketime)
# `python -m bench api` loads the API with wrk, a compiled load generator: the numbers are
# the server's, not a Python client's.
command -v wrk >/dev/null || need_apt+=(wrk)
# The web console's tests (tests/ui) drive a headless Chromium through its driver.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
if ((${#need_apt[@]})); then
  echo "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian's postgresql and prometheus packages start servers of their own; the tests start
# theirs.
if command -v systemctl >/dev/null && systemctl is-active -q prometheus 2>/dev/null; then
  systemctl stop prometheus || true
fi
id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql postgres

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# The runtime dependencies and the api extra (the API, controller and CLI) at the versions
# the images pin (constraints.txt), and the dev tools.
stamp=.venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[api,dev]' -c constraints.txt
  rm -f .venv/.installed-*
  touch "$stamp"
fi
