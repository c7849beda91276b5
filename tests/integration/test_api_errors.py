"""Bad input gets a clear 4xx problem+json and changes nothing; bad tokens get 401."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.apiserver import AUDIENCE, JWT_SECRET, ApiServer, Backend, running_api, token


@pytest.fixture
def api(backend: Backend) -> Iterator[ApiServer]:
    with running_api(backend, reconcile=False) as server:
        yield server


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


GOOD = {"mode": "daily", "symbols": ["MSFT"], "start": "2024-01-02", "end": "2024-02-28",
        "data": "synthetic"}


@pytest.mark.parametrize(("body", "status", "needle"), [
    ({**GOOD, "start": "2024-13-01"}, 422, "start"),
    ({**GOOD, "end": "2023-01-01"}, 422, "before"),
    ({**GOOD, "unknown": 1}, 422, "unknown"),
    ({**GOOD, "initial_cash": "lots"}, 422, "initial_cash"),
    ({**GOOD, "initial_cash": -5}, 422, "initial_cash"),
    ({**GOOD, "symbols": "MSFT"}, 422, "symbols"),
    ({**GOOD, "symbols": ["not a ticker"]}, 422, "symbols"),
    ({**GOOD, "mode": "weekly"}, 422, "mode"),
    ({"mode": "intraday", "symbols": ["AAPL"], "date": "2025-12-25"}, 422, "session"),
    ({"mode": "intraday", "symbols": ["AAPL"], "date": "2099-01-02"}, 422, "future"),
    ({**GOOD, "model_id": "one"}, 422, "model_id"),
    ({**GOOD, "decider": "replay"}, 422, "source_run_id"),
])
def test_bad_run_specs_are_refused_clearly(api: ApiServer, body: dict[str, Any], status: int,
                                           needle: str) -> None:
    with api.client() as c:
        model_id = c.post("/v1/models", json={"signature": "m"}).json()["id"]
        payload = {"model_id": model_id, **body}
        assert needle in problem(c.post("/v1/runs", json=payload), status)["detail"]
        assert c.get("/v1/runs").json()["items"] == []


def test_malformed_and_huge_bodies(api: ApiServer) -> None:
    with api.client() as c:
        r = c.post("/v1/runs", content=b"{not json", headers={"content-type": "application/json"})
        problem(r, 400)
        problem(c.post("/v1/models", json=["a", "list"]), 422)
        # Text no database stores (schemathesis found these as 500s).
        problem(c.post("/v1/models", json={"signature": "x", "parameters": {"k": "a\x00"}}),
                422)
        problem(c.post("/v1/models", content=b'{"signature": "x", "llm": "\\udb0a"}',
                       headers={"content-type": "application/json"}), 422)
        huge = {"signature": "x", "custom_rules": "y" * 200_000}
        problem(c.post("/v1/models", json=huge), 413)

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"signature": "x", "custom_rules": "'
            for _ in range(100):
                yield b"z" * 1024
            yield b'"}'
        problem(c.post("/v1/models", content=chunks(),
                       headers={"content-type": "application/json"}), 413)
        problem(c.get("/v1/runs/not-a-number"), 422)
        problem(c.get("/v1/runs/99999999999999999999999"), 422)
        problem(c.get("/v1/runs/12345"), 404)
        problem(c.get("/v1/runs", params={"status": "sleeping"}), 422)
        problem(c.get("/v1/runs/1/events", headers={"Last-Event-ID": "x; drop"}), 422)
        problem(c.get("/v1/runs/1/events", headers={"Last-Event-ID": "1-0"}), 404)
        assert c.get("/v1/models").json()["items"] == []


def test_a_last_event_id_outside_its_pattern_is_a_422(api: ApiServer) -> None:
    with api.client() as c:
        mid = c.post("/v1/models", json={"signature": "m"}).json()["id"]
        rid = c.post("/v1/runs", json={"model_id": mid, **GOOD}).json()["id"]
        for bad in ("x; drop", "null", "1-", "-1", "1" * 19):
            answer = c.get(f"/v1/runs/{rid}/events", headers={"Last-Event-ID": bad})
            problem(answer, 422)
            assert answer.json()["errors"][0]["loc"] == ["header", "Last-Event-ID"]


def _alg_none(sub: str) -> str:
    import base64

    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'sub': sub, 'aud': AUDIENCE, 'exp': int(time.time()) + 600})}."  # noqa: E501


@pytest.mark.parametrize("bearer", [
    None,
    "garbage",
    token("user-a", expires_in=-3600),
    token("user-a", audience="someone-else"),
    token("user-a", secret="another-secret-that-is-long-enough!!"),
    token(""),
    _alg_none("user-a"),
    jwt.encode({"sub": "user-a", "aud": AUDIENCE}, JWT_SECRET, algorithm="HS256"),  # no exp
    jwt.encode({"sub": "user-a", "aud": AUDIENCE, "exp": int(time.time()) + 600},
               JWT_SECRET + "x" * 30, algorithm="HS512"),
])
def test_bad_tokens_are_refused(api: ApiServer, bearer: str | None) -> None:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    with httpx.Client(base_url=api.url, headers=headers) as c:
        for method, path in (("GET", "/v1/runs"), ("POST", "/v1/models"), ("GET", "/v1/runs/1")):
            r = c.request(method, path, json={"signature": "x"} if method == "POST" else None)
            problem(r, 401)
            assert r.headers["www-authenticate"].startswith("Bearer")


def test_a_token_accepted_within_the_leeway_is_refused_once_past_it(api: ApiServer) -> None:
    """The API remembers verified tokens (api.auth.VerifiedTokens), never past `exp`: a
    token 28 s expired passes within the 30 s leeway and is refused 3 s later."""
    late = token("user-a", expires_in=-28)
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {late}"}) as c:
        assert c.get("/v1/runs").status_code == 200
        time.sleep(3)
        problem(c.get("/v1/runs"), 401)


class _Jwks(BaseHTTPRequestHandler):
    body = b"{}"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        return None


def test_asymmetric_tokens_from_a_jwks_url(backend: Backend) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    _Jwks.body = json.dumps({"keys": [{**public, "kid": "k1", "alg": "RS256",
                                       "use": "sig"}]}).encode()
    jwks = ThreadingHTTPServer(("127.0.0.1", 0), _Jwks)
    threading.Thread(target=jwks.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{jwks.server_address[1]}/auth/v1/.well-known/jwks.json"
    try:
        with running_api(backend, reconcile=False, jwks_url=url) as api:
            claims = {"sub": "user-rsa", "aud": AUDIENCE, "exp": int(time.time()) + 600}
            good = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
            with httpx.Client(base_url=api.url,
                              headers={"Authorization": f"Bearer {good}"}) as c:
                assert c.get("/v1/runs").status_code == 200
            # An HS256 token signed with the *public* key (alg confusion) is refused.
            forged = jwt.encode(claims, JWT_SECRET + "-not-it", algorithm="HS256")
            with httpx.Client(base_url=api.url,
                              headers={"Authorization": f"Bearer {forged}"}) as c:
                problem(c.get("/v1/runs"), 401)
    finally:
        jwks.shutdown()


def test_health_ready_and_metrics_by_route_template(api: ApiServer) -> None:
    with api.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").status_code == 200
        for i in range(3):
            c.get(f"/v1/runs/{1000 + i}")
        metrics = c.get("/metrics").text
        assert 'route="/v1/runs/{run_id}"' in metrics
        assert 'route="/v1/runs/1000"' not in metrics
        assert "tickrun_api_request_duration_seconds_bucket" in metrics
