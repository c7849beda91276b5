"""The CLI's HTTP client: the same /v1 API any user calls, problem details as errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8321"
DEV_TOKEN_FILE = Path(".tickrun") / "dev-token"


class ApiError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


def default_token() -> str | None:
    token = os.environ.get("TICKRUN_TOKEN")
    if token:
        return token
    if DEV_TOKEN_FILE.exists():
        return DEV_TOKEN_FILE.read_text().strip()
    return None


def problem_detail(response: httpx.Response) -> str:
    """The `detail` of a problem+json answer, else the body as it came."""
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text


class ApiClient:
    def __init__(self, base_url: str | None = None, token: str | None = None,
                 timeout: float = 30.0) -> None:
        self.base_url = (base_url or os.environ.get("TICKRUN_API_URL") or DEFAULT_URL)
        self.token = token if token is not None else default_token()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(0, f"cannot reach {self.base_url} ({exc}); is `tickrun dev` "
                              "running?") from exc
        if response.status_code >= 400:
            raise ApiError(response.status_code, problem_detail(response))
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path,
                            params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=body, **kwargs)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
