"""Property-based run over the OpenAPI document with every schemathesis check: no input
makes the API answer 5xx, and every answer (status, media type, body, headers) is one the
document promises; input it allows is taken, input it forbids is refused."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events

from tests.apiserver import ApiServer, Backend, running_api, token
from tests.servers import Postgres, Redis

DEFAULT_ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
# Every check schemathesis 4 has (max_response_time needs a limit, so `--checks all`
# skips it too); each must judge some answer, so an upgrade cannot quietly make this a
# test of nothing.
EVERY_CHECK = {
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_schema_conformance", "response_headers_conformance", "positive_data_acceptance",
    "negative_data_rejection", "missing_required_header", "unsupported_method",
    "allow_header_conformance", "ignored_auth", "use_after_free", "ensure_resource_availability",
    "object_level_authorization"}


def config(bearer: str) -> SchemathesisConfig:
    """`--checks all`, every phase, positive and negative data (NUL included), a fixed
    seed. Schema-valid input may get an answer the document cannot rule out only where
    said below."""
    return SchemathesisConfig.from_dict({
        "seed": 20261206,
        "headers": {"Authorization": f"Bearer {bearer}"},
        "checks": {"enabled": True},
        # Free-form JSON (parameters, decider_params) is typed as storable JSON: text
        # without NUL, keys too, at any depth.
        "generation": {"mode": "all", "max-examples": 100, "allow-x00": True,
                       "database": "none"},
        "operations": [
            # A well-formed body can still be unplayable, as each operation's description
            # says: a holiday, a future date, an unknown model or replay source, a run cap
            # over the matrix, cron syntax. The calendar, the clock and the database are
            # not in any schema.
            {"include-name": ["POST /v1/runs", "POST /v1/batches", "POST /v1/schedules"],
             "checks": {"positive_data_acceptance": {
                 "expected-statuses": [*DEFAULT_ACCEPTED, "422"]}}},
            # Schemathesis infers links from a run's `schedule_id` and `batch_id` to these
            # paths and follows them with the null of a run no schedule or batch made,
            # as the id "None" (its links count as positive data whatever they carry);
            # and from a comparison's `model_id`, null for a baseline, to the models'.
            {"include-name": [f"{method} /v1/schedules/{{schedule_id}}{tail}"
                              for method, tail in (("GET", ""), ("DELETE", ""),
                                                   ("GET", "/fires"), ("POST", "/pause"),
                                                   ("POST", "/resume"))]
                             + [f"{method} /v1/batches/{{batch_id}}{tail}"
                                for method, tail in (("GET", ""), ("POST", "/stop"),
                                                     ("GET", "/compare"))]
                             + [f"{method} /v1/models/{{model_id}}"
                                for method in ("GET", "PATCH", "DELETE")],
             "checks": {"positive_data_acceptance": {
                 "expected-statuses": [*DEFAULT_ACCEPTED, "422"]}}},
        ],
    })


@pytest.fixture(scope="module")
def api_schema(postgres_server: Postgres, redis_server: Redis,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    import uuid

    import psycopg

    from core.store import open_store

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.url(database="postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = postgres_server.url(database=name)
    store = open_store(url, pool_size=1)
    store.migrate()
    store.close()
    backend = Backend(url, redis_server.url(), f"s{uuid.uuid4().hex[:8]}",
                      Path(tmp_path_factory.mktemp("logs")))
    # No reconciler: generated runs stay queued instead of starting hundreds of runners.
    with running_api(backend, reconcile=False, delete_wait_seconds=0) as api:
        _seed(api)
        yield schemathesis.openapi.from_url(f"{api.url}/openapi.json",
                                            config=config(token("fuzzer"))).exclude(
            path_regex=r"/events$")  # a stream that ends only with its run


def _seed(api: ApiServer) -> None:
    with api.client("fuzzer") as c:
        model = c.post("/v1/models", json={"signature": "seed"}).json()
        c.post("/v1/runs", json={"model_id": model["id"], "mode": "daily", "symbols": ["SPY"],
                                 "start": "2024-01-02", "end": "2024-01-31",
                                 "data": "synthetic"})


@pytest.mark.timeout(900)
def test_the_api_keeps_every_promise_of_its_openapi(api_schema: Any) -> None:
    failures: set[str] = set()
    statuses: Counter[int] = Counter()
    ran: set[str] = set()
    for event in schemathesis.engine.from_schema(api_schema).execute():
        if isinstance(event, events.ScenarioFinished):
            statuses.update(i.response.status_code for i in event.recorder.interactions.values()
                            if i.response is not None)
            ran |= {check.name for checks in event.recorder.checks.values() for check in checks}
            failures |= _failures(event.recorder)
        elif isinstance(event, events.NonFatalError | events.FatalError):
            failures.add(f"schemathesis error: {event!r}")
    assert not failures, f"{len(failures)} failures:\n\n" + "\n\n".join(sorted(failures))
    assert sum(statuses.values()) > 1000 and set(statuses) >= {200, 201, 204, 401}, statuses
    assert ran >= EVERY_CHECK, f"checks that never ran: {EVERY_CHECK - ran}"


def _failures(recorder: Any) -> set[str]:
    """One readable line per distinct failure, with a curl command to reproduce it."""
    found: set[str] = set()
    for checks in recorder.checks.values():
        for check in checks:
            info = check.failure_info
            if info is None:
                continue
            failure = info.failure
            found.add(f"{failure.operation} [{check.name}] {failure.title}\n"
                      f"{failure.message}\n{info.code_sample}")
    return found
