"""Property-based run over the OpenAPI document: no input makes the API answer 5xx."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.apiserver import ApiServer, Backend, running_api, token
from tests.servers import Postgres, Redis


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
        yield schemathesis.openapi.from_url(f"{api.url}/openapi.json").exclude(
            path_regex=r"/events$")


def _seed(api: ApiServer) -> None:
    with api.client("fuzzer") as c:
        model = c.post("/v1/models", json={"signature": "seed"}).json()
        c.post("/v1/runs", json={"model_id": model["id"], "mode": "daily", "symbols": ["SPY"],
                                 "start": "2024-01-02", "end": "2024-01-31"})


@pytest.mark.timeout(1200)
def test_no_input_makes_a_5xx(api_schema: Any) -> None:
    # Hypothesis drives each operation directly (schemathesis' pytest plugin predates
    # pytest 9); the checks are schemathesis' own.
    headers = {"Authorization": f"Bearer {token('fuzzer')}"}
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case: schemathesis.Case) -> None:
            response = case.call_and_validate(headers=headers, checks=[not_a_server_error])
            statuses[response.status_code] += 1

        try:
            call()
        except Exception as exc:
            failures.append(f"{operation.label}: {exc}")
    assert failures == []
    assert sum(statuses.values()) > 200 and set(statuses) & {200, 201, 204}, statuses
