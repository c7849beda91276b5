"""SSE: replay then live, resume with Last-Event-ID across a server restart, fan-out."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from httpx_sse import connect_sse

from tests.apiserver import Backend, running_api, wait_for, wait_status
from tests.integration.test_api_runs import SLOW, create, create_model, intraday, sse_events

pytestmark = pytest.mark.timeout(240)


def test_resume_across_a_server_restart_misses_nothing(backend: Backend) -> None:
    first_part: list[tuple[str, str, dict[str, Any]]]
    with running_api(backend, runner_env=SLOW) as api, api.client() as c:
        run = create(c, intraday(create_model(c)))
        first_part = sse_events(c, run["id"], limit=60)
        port = api.port
    # The server is gone (its runners were stopped with it); a new one serves the rest.
    with running_api(backend, port=port) as api, api.client() as c:
        rest = sse_events(c, run["id"], last_id=first_part[-1][0])
        wait_status(c, run["id"], {"stopped", "completed"})
    ids = [e[0] for e in first_part + rest]
    history = [e.id for e in backend.event_log().read(run["id"], count=100_000)]
    assert ids == history, "every event exactly once, in order"
    assert rest[-1][1] == "result" and len(first_part) == 60


def test_many_followers_get_the_same_stream(backend: Backend) -> None:
    with running_api(backend, runner_env=SLOW) as api, api.client() as c:
        run = create(c, intraday(create_model(c)))
        results: list[list[str]] = []
        errors: list[BaseException] = []

        def follow() -> None:
            try:
                with api.client() as own:
                    results.append([e[0] for e in sse_events(own, run["id"])])
            except BaseException as exc:
                errors.append(exc)
        threads = [threading.Thread(target=follow) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == [] and len(results) == 20
        assert all(r == results[0] for r in results) and len(results[0]) > 390
        # Every feed closes with its last follower (the server's side ends just after).
        wait_for(lambda: api.services.hub.feeds == {}, timeout=10)


def test_a_stream_of_a_finished_run_ends_even_without_its_final_event(
        backend: Backend) -> None:
    with running_api(backend) as api, api.client() as c:
        run = create(c, intraday(create_model(c), date="2025-03-04"))
        wait_status(c, run["id"], {"completed"})
        backend.event_log().delete(run["id"])  # as if Redis had lost the stream
        with connect_sse(c, "GET", f"/v1/runs/{run['id']}/events") as source:
            events = list(source.iter_sse())
        assert [e.event for e in events] == ["result"]
        assert json.loads(events[0].data)["data"]["status"] == "completed"
