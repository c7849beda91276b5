"""`python -m bench api`: the API server's throughput and latency, and SSE fan-out.

- HTTP: wrk (a compiled load generator, one thread) loads each route for 10 s, so the
  numbers are the server's and not a Python client's: GET /v1/runs/{id} at 50 connections
  and at 1, GET /v1/runs?limit=50 (a full page) and POST /v1/runs at 50. The API runs
  as the chart runs it (`python -m api --workers N`, N = 1 and 2, each on fresh
  PostgreSQL + Redis seeded with 200 runs, started as a runner starts them and with a
  step's progress in Redis, so that a document reads the live view a follower polls)
  without a controller: a POST queues a run and no runner starts. wrk, the API
  workers, PostgreSQL and Redis share this machine's cores: the JSON gives each one's
  CPU seconds during every measurement, and the load average before it. A route with
  failed requests is listed in `routes_with_errors`, never averaged away.
- The ceiling, in the same run: a bare FastAPI app (bench/bare_app.py: an async route,
  the same uvicorn, uvloop and httptools, as many workers) answering GET /v1/runs/{id}
  with the API's own document, under the same wrk; `share_of_ceiling` is the API's
  rate over it, the figure to compare across machines and runs.
- SSE: 1,000 concurrent subscribers of one run on one API process, and 10,000 over two
  (`--workers 2`); events are appended to Redis with their send time, and each
  subscriber measures delivery latency. wrk cannot follow a stream, and a Python client
  with 10,000 streams would measure itself: the subscribers are bench/sseload, a small
  Go program built on first use (Go's standard library only).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from bench._support import emit

if TYPE_CHECKING:
    from tests.servers import Postgres, Redis

CONNECTIONS = 50
DURATION_S = 10
WARM_UP_S = 2
SEED_RUNS = 200
WRK_THREADS = 1
# wrk leaves a request slower than its timeout (2 s by default) out of the latency
# distribution and counts it as a socket timeout: a slow route must show in the numbers.
WRK_TIMEOUT = "30s"
SUBSCRIBERS = {1: 1000, 2: 10_000}  # by API worker count
EVENTS = 40
USER = "bench-user"


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str  # "{id}" cycles through the seeded runs
    connections: int


ROUTES = (
    Route("get_run_50", "GET", "/v1/runs/{id}", CONNECTIONS),
    Route("get_run_1", "GET", "/v1/runs/{id}", 1),
    Route("list_50", "GET", "/v1/runs?limit=50", CONNECTIONS),
    Route("post_50", "POST", "/v1/runs", CONNECTIONS),  # last: it adds runs
)
WARM_UP = ("get_run_50", "list_50")  # seeding has already warmed POST


def _run_body(model_id: int) -> dict[str, Any]:
    """A valid daily run on synthetic data (tests/integration/test_api_runs.py daily())."""
    return {"model_id": model_id, "mode": "daily", "symbols": ["MSFT"], "start": "2024-01-02",
            "end": "2024-04-30", "decider": "sma_crossover", "data": "synthetic",
            "decider_params": {"fast": 3, "slow": 8}}


# -- wrk ----------------------------------------------------------------------------------

def _wrk_version() -> str:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: scripts/install-deps.sh installs it (apt-get install "
                         "wrk)")
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    match = re.search(r"^wrk (\S+)", out, re.M)
    return match.group(1) if match else "unknown"


def _lua(route: Route, token: str, body: str, run_ids: Sequence[int]) -> str:
    """The wrk script of a route: method, headers, body; a GET of one run cycles ids."""
    lines = [f'wrk.method = "{route.method}"',
             f'wrk.headers["Authorization"] = "Bearer {token}"']
    if route.method == "POST":
        lines += ['wrk.headers["Content-Type"] = "application/json"',
                  f"wrk.body = [==[{body}]==]"]
    if "{id}" in route.path:
        prefix = route.path.split("{id}")[0]
        lines += [f"local ids = {{{', '.join(map(str, run_ids))}}}", "local i = 0",
                  "request = function()", "  i = i % #ids + 1",
                  f'  return wrk.format(nil, "{prefix}" .. ids[i])', "end"]
    return "\n".join(lines) + "\n"


_TO_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"not a wrk time: {text!r}")
    return round(float(match.group(1)) * _TO_MS[match.group(2)], 3)


def parse_wrk(out: str) -> dict[str, Any]:
    """wrk --latency's report: rate, latency percentiles, failed requests."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    done = re.search(r"^\s+(\d+) requests in ([\d.]+\w+),", out, re.M)
    latency = re.search(r"^\s+Latency\s+(\S+)\s+\S+\s+(\S+)", out, re.M)
    dist = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", out, re.M))
    if rps is None or done is None or latency is None or len(dist) != 4:
        raise ValueError(f"unexpected wrk output:\n{out}")
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                     out)
    socket_errors = dict(zip(("connect", "read", "write", "timeout"),
                             (int(n) for n in sock.groups()) if sock else (0, 0, 0, 0),
                             strict=True))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    non_2xx_count = int(non_2xx.group(1)) if non_2xx else 0
    return {"rps": round(float(rps.group(1)), 1), "requests": int(done.group(1)),
            "p50_ms": _ms(dist["50"]), "p75_ms": _ms(dist["75"]), "p90_ms": _ms(dist["90"]),
            "p99_ms": _ms(dist["99"]), "avg_ms": _ms(latency.group(1)),
            "max_ms": _ms(latency.group(2)), "non_2xx": non_2xx_count,
            "socket_errors": socket_errors,
            "errors": non_2xx_count + sum(socket_errors.values())}


def _wrk(url: str, connections: int, seconds: int, script: Path) -> tuple[str, float]:
    """Run wrk; its report and the CPU seconds it used itself."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        ["wrk", "--latency", "-t", str(WRK_THREADS), "-c", str(connections),
         "-d", f"{seconds}s", "--timeout", WRK_TIMEOUT, "-s", str(script), url],
        capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr}{done.stdout}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done.stdout, cpu


# -- who used the cores -------------------------------------------------------------------

def _cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process tree (exited children included)."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        pid = int(stat.parent.name)
        parent[pid] = int(fields[1])
        ticks[pid] = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)

    def tree(pid: int) -> int:
        return ticks.get(pid, 0) + sum(tree(c) for c in children.get(pid, []))
    hz = os.sysconf("SC_CLK_TCK")
    return {name: tree(pid) / hz for name, pid in roots.items()}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- one measurement ----------------------------------------------------------------------

@dataclass
class Target:
    url: str
    token: str
    body: str
    run_ids: list[int]
    processes: dict[str, int]  # name -> root pid of a process tree
    scripts: Path


def _script(target: Target, route: Route) -> Path:
    path = target.scripts / f"{route.name}.lua"
    if not path.exists():
        path.write_text(_lua(route, target.token, target.body, target.run_ids))
    return path


def _route_url(target: Target, route: Route) -> str:
    return target.url + route.path.replace("{id}", str(target.run_ids[0]))


def measure(target: Target, route: Route, seconds: int) -> dict[str, Any]:
    load = _load()
    cpu_before = _cpu_seconds(target.processes)
    out, wrk_cpu = _wrk(_route_url(target, route), route.connections, seconds,
                        _script(target, route))
    cpu_after = _cpu_seconds(target.processes)
    result = {**parse_wrk(out), "connections": route.connections, "load_before": load,
              "cpu_s": {"wrk": round(wrk_cpu, 2),
                        **{k: round(cpu_after[k] - cpu_before[k], 2) for k in cpu_before}}}
    # Each process's CPU per request: where a request's cost goes (the app, the database,
    # Redis, the load generator), and so what rate the shared cores allow at best.
    if result["requests"]:
        result["cpu_us_per_request"] = {k: round(v / result["requests"] * 1e6)
                                        for k, v in result["cpu_s"].items()}
    if result["errors"]:
        result["probe"] = _probe(target, route)
    return result


def _probe(target: Target, route: Route) -> str:
    """One request of a route that failed under load: what does it answer alone?"""
    try:
        r = httpx.request(route.method, _route_url(target, route), content=target.body
                          if route.method == "POST" else None, timeout=30,
                          headers={"Authorization": f"Bearer {target.token}",
                                   "Content-Type": "application/json"})
        return f"{r.status_code} {r.text[:300]}"
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"


def _describe(workers: int, route: Route, r: dict[str, Any]) -> str:
    cpu = " ".join(f"{k} {v:.1f}" for k, v in r["cpu_s"].items())
    line = (f"workers={workers} {route.name:<10} {r['rps']:>8.1f} req/s  p50 {r['p50_ms']:.2f}"
            f" p90 {r['p90_ms']:.2f} p99 {r['p99_ms']:.2f} ms  errors {r['errors']}"
            f"  (load before {r['load_before'][0]:.2f}; cpu s: {cpu})")
    if r["errors"]:
        line += (f"\n  WARNING: {r['non_2xx']} non-2xx, socket errors {r['socket_errors']};"
                 f" alone it answers: {r['probe']}")
    return line


# -- servers ------------------------------------------------------------------------------

def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


@contextmanager
def _backends() -> Iterator[tuple[Postgres, Redis]]:
    """Fresh PostgreSQL (migrated) and Redis, as the tests start them."""
    from core.store import open_store
    from tests.servers import start_postgres, start_redis

    pg, redis = start_postgres(), start_redis()
    try:
        store = open_store(pg.url())
        store.migrate()
        store.close()
        yield pg, redis
    finally:
        pg.stop()
        redis.stop()


def _api_env(pg: Postgres, redis: Redis, log_dir: str) -> dict[str, str]:
    from tests.apiserver import JWT_SECRET

    return {**{k: v for k, v in os.environ.items() if not k.startswith("TICKRUN_")},
            "TICKRUN_DATABASE_URL": pg.url(), "TICKRUN_REDIS_URL": redis.url(),
            "TICKRUN_JWT_SECRET": JWT_SECRET, "TICKRUN_EMBEDDED_CONTROLLER": "false",
            "TICKRUN_LOCAL_LOG_DIR": log_dir}


@contextmanager
def _api(env: dict[str, str], port: int, workers: int) -> Iterator[subprocess.Popen[bytes]]:
    """The API as the chart starts it; its logs go to stderr, away from the JSON line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "api", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers)], env=env, stdout=sys.stderr)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/readyz", proc, workers)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], workers: int,
                what: str = "API") -> None:
    """Until `url` answers 200 and every worker of the server `proc` runs."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    else:
        raise RuntimeError(f"{what} did not start")
    # One worker answering does not mean all are: wait for the others' start-up too.
    while workers > 1 and len(api_workers(proc.pid)) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} started fewer than {workers} workers")
        time.sleep(0.1)
    time.sleep(3 if workers > 1 else 0)


def api_workers(pid: int) -> list[int]:
    """The worker processes of a multi-worker uvicorn (not its resource tracker)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    children = [int(c) for c in path.read_text().split()] if path.exists() else []
    return [c for c in children if b"spawn_main" in _cmdline(c)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _seed(url: str, token: str, pg: Postgres, redis: Redis) -> tuple[str, list[int]]:
    """A model and SEED_RUNS runs of the user (full list pages), each started as a runner
    starts it and with a step's progress in Redis: the documents read what a follower of
    a playing run reads (a queued run has no live view to read). The run body."""
    with httpx.Client(base_url=url, timeout=60,
                      headers={"Authorization": f"Bearer {token}"}) as c:
        model = c.post("/v1/models", json={"signature": "bench"}).raise_for_status().json()
        body = _run_body(int(model["id"]))
        ids = [int(c.post("/v1/runs", json=body).raise_for_status().json()["id"])
               for _ in range(SEED_RUNS)]
    _playing(pg, redis, ids)
    return json.dumps(body, separators=(",", ":")), ids


def _playing(pg: Postgres, redis: Redis, run_ids: list[int]) -> None:
    """The runs admitted, started (an attempt counted) and at their step 10."""
    from bench._support import admit, start
    from core.eventlog.payloads import step_progress
    from core.eventlog.redis_log import RedisEventLog
    from core.store import open_store

    store, events = open_store(pg.url()), RedisEventLog(redis.url())
    try:
        admit(store, run_ids[0])  # all of them: no limit
        for run_id in run_ids:
            start(store, run_id, "sma_crossover")
            events.set_progress(run_id, step_progress(
                step=10, total=390, equity=Decimal("100012.5"), cash=Decimal("98000"),
                bar_time=dt.datetime(2025, 3, 3, 14, 40, tzinfo=dt.UTC), last_action="hold"))
    finally:
        store.close()
        events.close()


# -- SSE fan-out (Python: wrk cannot follow a stream) -------------------------------------

def _sseload() -> Path:
    """bench/sseload built into the cache (seconds; the standard library only)."""
    source = Path(__file__).resolve().parent / "sseload"
    out = Path.home() / ".cache" / "tickrun" / "bench" / "sseload"
    if not out.exists() or out.stat().st_mtime < (source / "main.go").stat().st_mtime:
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["go", "build", "-o", str(out), "."], cwd=source, check=True,
                       env={**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"})
    return out


def _fan_out(url: str, token: str, run_id: int, subscribers: int,
             append: Any) -> dict[str, Any]:
    client = subprocess.Popen(
        [str(_sseload()), f"-url={url}", f"-token={token}", f"-run={run_id}",
         f"-n={subscribers}"], stdout=subprocess.PIPE, text=True)
    assert client.stdout is not None
    started = time.monotonic()
    line = client.stdout.readline()
    if not line.startswith("connected"):
        client.kill()
        raise RuntimeError(f"sseload did not connect its subscribers: {line!r}")
    connect_s = time.monotonic() - started
    time.sleep(1.0)
    for i in range(EVENTS):
        append("progress", {"step": i, "sent": time.time()})
        time.sleep(0.05)
    append("result", {"status": "completed", "sent": time.time()})
    out = json.loads(client.stdout.read().strip().splitlines()[-1])
    client.wait()
    return {"sse_subscribers": subscribers, "sse_events": EVENTS + 1,
            "sse_connect_s": round(connect_s, 1),
            "sse_delivered": out["delivered"], "sse_expected": subscribers * (EVENTS + 1),
            "sse_p50_ms": round(out["p50_ms"], 2), "sse_p99_ms": round(out["p99_ms"], 2),
            "sse_max_ms": round(out["max_ms"], 2), "sse_errors": out["errors"],
            "sse_client": "bench/sseload (Go)"}


def _sse(url: str, token: str, redis: Redis, run_id: int, subscribers: int
         ) -> dict[str, Any]:
    from core.eventlog import EventType
    from core.eventlog.redis_log import RedisEventLog

    log = RedisEventLog(redis.url())
    return _fan_out(url, token, run_id, subscribers,
                    lambda kind, data: log.append(run_id, EventType(kind), data))


# -- one API configuration ----------------------------------------------------------------

def bench_workers(workers: int, seconds: int,
                  with_sse: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Every route against `python -m api --workers N` on fresh servers; and SSE if asked."""
    from tests.apiserver import token
    from tests.servers import free_port

    user, port = token(USER, expires_in=7200), free_port()
    url = f"http://127.0.0.1:{port}"
    routes: dict[str, Any] = {}
    sse: dict[str, Any] | None = None
    with (_backends() as (pg, redis), tempfile.TemporaryDirectory() as tmp,
          _api(env := _api_env(pg, redis, tmp), port, workers) as api):
        body, run_ids = _seed(url, user, pg, redis)
        # Who shares the cores with wrk; each API worker too, to show how wrk's
        # connections spread over them.
        processes = {"api": api.pid, "postgres": pg.process.pid, "redis": redis.process.pid,
                     **{f"api_worker_{i}": pid
                        for i, pid in enumerate(api_workers(api.pid), start=1)}}
        target = Target(url, user, body, run_ids, scripts=Path(tmp), processes=processes)
        for route in ROUTES:  # warm-up, not measured: pools, first calls
            if route.name in WARM_UP:
                _wrk(_route_url(target, route), CONNECTIONS, WARM_UP_S, _script(target, route))
        for route in ROUTES:
            if route.method == "POST":  # the ceilings read the pages the GETs read
                answers = _answers(target)
                routes["ceiling_get_run_50"], = _ceiling(target, workers, seconds,
                                                         {**os.environ, **answers})
                routes["reading_ceiling_get_run_50"], routes["reading_ceiling_list_50"] = \
                    _ceiling(target, workers, seconds,
                             {**env, **answers, "TICKRUN_BENCH_READS": "1"}, reading=True)
            time.sleep(1)
            routes[route.name] = measure(target, route, seconds)
            print(_describe(workers, route, routes[route.name]), flush=True)
        _shares(workers, routes)
        if with_sse:
            sse = {"api_workers": workers, "load_before": _load(),
                   **_sse(url, user, redis, run_ids[0], SUBSCRIBERS.get(workers, 1000))}
            print(f"workers={workers} sse: {json.dumps(sse)}", flush=True)
    return routes, sse


def _shared(target: Target) -> dict[str, int]:
    """The database and Redis of a target: their CPU counts beside a ceiling's too."""
    return {k: pid for k, pid in target.processes.items() if k in ("postgres", "redis")}


def _shares(workers: int, routes: dict[str, Any]) -> None:
    """The GET's rate as a share of each ceiling, and the reading ceiling's of the bare
    app's: what a route that reads the store and the live view can reach at most."""
    bare, reading = routes["ceiling_get_run_50"], routes["reading_ceiling_get_run_50"]
    get = routes["get_run_50"]
    get["share_of_ceiling"] = round(get["rps"] / bare["rps"], 3)
    get["share_of_reading_ceiling"] = round(get["rps"] / reading["rps"], 3)
    reading["share_of_ceiling"] = round(reading["rps"] / bare["rps"], 3)
    listing = routes["list_50"]
    listing["share_of_reading_ceiling"] = round(
        listing["rps"] / routes["reading_ceiling_list_50"]["rps"], 3)
    print(f"workers={workers} get_run_50 is {get['share_of_ceiling']:.0%} of the bare app's "
          f"rate in this run, {get['share_of_reading_ceiling']:.0%} of the reading bare "
          f"app's; the reading bare app is {reading['share_of_ceiling']:.0%} of the bare "
          "app's", flush=True)
    print(f"workers={workers} list_50 is {listing['share_of_reading_ceiling']:.0%} of the "
          "reading bare app's rate", flush=True)


def _ceiling(target: Target, workers: int, seconds: int, env: dict[str, str], *,
             reading: bool = False) -> list[dict[str, Any]]:
    """GET /v1/runs/{id} at 50 connections against the bare app (bench/bare_app.py)
    answering the API's own document for that run, on as many workers; `env`, its whole
    environment, has _answers. `reading`: the bare app that reads first (`env` has the
    API's settings and TICKRUN_BENCH_READS), and its GET /v1/runs?limit=50 too."""
    from tests.servers import free_port

    routes = [ROUTES[0], *([ROUTES[2]] if reading else [])]
    label = "reading_bare_app" if reading else "bare_app"
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.bare_app", str(port), str(workers)],
                            env=env, stdout=sys.stderr)
    try:
        bare = Target(f"http://127.0.0.1:{port}", target.token, target.body, target.run_ids,
                      {label: proc.pid, **_shared(target)}, target.scripts)
        _wait_ready(_route_url(bare, ROUTES[0]), proc, workers, "the bare app")
        results = []
        for route in routes:
            _wrk(_route_url(bare, route), CONNECTIONS, WARM_UP_S, _script(bare, route))
            time.sleep(1)
            results.append(measure(bare, route, seconds))
            print(_describe(workers, Route(f"{label} {route.name}", "GET", route.path,
                                           CONNECTIONS), results[-1]), flush=True)
        return results
    finally:
        proc.terminate()
        proc.wait(30)


def _answers(target: Target) -> dict[str, str]:
    """What the API answers now to GET one run and to a page of 50, and whose they are:
    the bare app's settings (bench/bare_app.py)."""
    def answer(route: Route) -> str:
        return httpx.get(_route_url(target, route), timeout=30, headers={
            "Authorization": f"Bearer {target.token}"}).raise_for_status().text
    return {"TICKRUN_BENCH_USER": USER, "TICKRUN_BENCH_RUN_DOC": answer(ROUTES[0]),
            "TICKRUN_BENCH_RUN_PAGE": answer(ROUTES[2])}


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    parser = argparse.ArgumentParser(prog="python -m bench api")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="API worker counts to measure (default: 1 2)")
    parser.add_argument("--duration", type=int, default=DURATION_S,
                        help="seconds of load per route")
    parser.add_argument("--no-sse", action="store_true", help="skip the SSE fan-out")
    args = parser.parse_args(argv)
    version = _wrk_version()
    _raise_fd_limit()
    print(f"load generator: wrk {version}, {WRK_THREADS} thread, {args.duration}s per route; "
          f"load now {_load()}", flush=True)
    per_workers: dict[str, Any] = {}
    sse: dict[str, Any] = {}
    for n in args.workers:
        per_workers[str(n)], got = bench_workers(n, args.duration, with_sse=not args.no_sse)
        if got:
            sse[str(n)] = got
    failed = [f"workers={n}/{name}" for n, routes in per_workers.items()
              for name, r in routes.items() if r["errors"]]
    emit({"bench": "api", "workers": per_workers, "sse": sse,
          "routes_with_errors": failed,
          "load_generator": f"wrk {version}, {WRK_THREADS} thread",
          "duration_s": args.duration, "seed_runs": SEED_RUNS,
          "wrk_timeout": WRK_TIMEOUT, "cpus": os.cpu_count(),
          "shared_cores": f"wrk ({WRK_THREADS} thread), the API (python -m api --workers N), "
                          f"PostgreSQL and Redis all ran on these {os.cpu_count()} cores; "
                          "cpu_s per route says how much each used, load_before is "
                          "os.getloadavg() just before it"})
    return 0
