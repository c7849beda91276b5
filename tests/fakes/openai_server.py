"""A local OpenAI-compatible chat completions server for the llm decider's tests.

The tests drive the real ChatOpenAI client over HTTP against it, so what is tested is
what runs in production: request building, tool-call parsing, usage, errors, timeouts.
Answers are scripted per model name (a list played in order, or a function of the
request); every request is recorded; a request without the expected bearer key gets a
401 and is counted. Slow answers wait on an event, so stopping the server never hangs.

An optional rate limit (FakeRateLimit) is a real token bucket per dimension, as OpenAI
enforces it: every answer carries OpenAI's x-ratelimit-* headers, and a request over the
limit gets a 429 with Retry-After and retry-after-ms and is counted (`rate_limited`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """One scripted answer: text, tool calls, an HTTP error, after an optional delay."""

    content: str | None = None
    # (name, arguments): a dict is sent as JSON, a str verbatim (to send malformed JSON)
    tool_calls: Sequence[tuple[str, dict[str, Any] | str]] = ()
    status: int = 200
    delay: float = 0.0
    tokens_in: int = 120
    tokens_out: int = 30
    cost: float | None = None  # OpenRouter reports usage.cost
    # Of tokens_in, served from the prompt cache: prompt_tokens_details.cached_tokens
    tokens_cached: int = 0
    retry_after: float | None = None  # a scripted 429's Retry-After (default: 10 ms)
    # An error's type and code, as OpenAI sends them (e.g. "insufficient_quota" on a 429)
    error_code: str | None = None

    @classmethod
    def text(cls, content: str, **kw: Any) -> Reply:
        return cls(content=content, **kw)

    @classmethod
    def call(cls, name: str, content: str | None = None, **arguments: Any) -> Reply:
        return cls(content=content, tool_calls=[(name, arguments)])

    @classmethod
    def error(cls, status: int, **kw: Any) -> Reply:
        return cls(status=status, **kw)

    def after(self, seconds: float) -> Reply:
        return dataclasses.replace(self, delay=seconds)


@dataclass(frozen=True)
class FakeRateLimit:
    """The limit of the fake's one key: a bucket of `burst_seconds` worth per dimension."""

    requests_per_second: float
    tokens_per_minute: float | None = None  # a request costs its prompt chars / 4 + max_tokens
    burst_seconds: float = 1.0
    send_headers: bool = True


class _Bucket:
    """A token bucket: `rate` per second, holding at most `capacity`."""

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate, self.capacity = rate, capacity
        self.level, self.updated = capacity, time.monotonic()

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def short_by(self, cost: float) -> float:
        """Seconds until `cost` fits (a cost over the capacity needs a full bucket)."""
        need = min(cost, self.capacity) - self.level
        return max(0.0, need / self.rate)

    def headers(self, what: str, per_minute: float) -> dict[str, str]:
        return {f"x-ratelimit-limit-{what}": str(round(per_minute)),
                f"x-ratelimit-remaining-{what}": str(max(0, math.floor(self.level))),
                f"x-ratelimit-reset-{what}": _go_duration(
                    (self.capacity - self.level) / self.rate)}


def _go_duration(seconds: float) -> str:
    """OpenAI's format: "20ms", "1.5s", "6m0s"."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:g}s" if minutes else f"{rest:g}s"


@dataclass
class ChatRequest:
    """One chat completion request as the server saw it."""

    model: str
    body: dict[str, Any]
    authorized: bool
    received_at: float
    headers: dict[str, str] = field(default_factory=dict)  # all but Authorization
    answered_at: float | None = None
    rate_limited: bool = False  # answered 429 by the fake's rate limit

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    @property
    def tools(self) -> list[str]:
        return [t["function"]["name"] for t in self.body.get("tools", [])]

    @property
    def last_role(self) -> str:
        return str(self.messages[-1]["role"]) if self.messages else ""

    @property
    def last_tool_result(self) -> str:
        tool = [m for m in self.messages if m["role"] == "tool"]
        return str(tool[-1]["content"]) if tool else ""

    def text_of(self, role: str) -> str:
        return "\n".join(_text(m.get("content")) for m in self.messages if m["role"] == role)

    @property
    def step(self) -> int | None:
        """The 0-based step the runner's prompt names ("Step 3 of 9" is step 2)."""
        found = re.search(r"Step (\d+) of \d+", self.text_of("user"))
        return int(found.group(1)) - 1 if found else None


Script = Callable[[ChatRequest], Reply]


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


class FakeOpenAI:
    def __init__(self, api_key: str, *, default: Reply | None = None,
                 host: str = "127.0.0.1", rate_limit: FakeRateLimit | None = None) -> None:
        self.api_key = api_key
        self.default = default or Reply.text("Nothing to do: hold.")
        self.requests: list[ChatRequest] = []
        self.unauthorized = 0
        self.rate_limit = rate_limit
        self.rate_limited = 0  # requests answered 429 by the rate limit
        self._buckets = _buckets(rate_limit) if rate_limit else {}
        self._scripts: dict[str, deque[Reply] | Script] = {}
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer((host, 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name="fake-openai")

    # -- lifecycle -------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # -- scripting -------------------------------------------------------------------
    def script(self, model: str, replies: Sequence[Reply] | Script) -> None:
        """Answers for requests naming `model`: in order (then the default), or a function."""
        with self._lock:
            self._scripts[model] = replies if callable(replies) else deque(replies)

    def requests_for(self, model: str) -> list[ChatRequest]:
        with self._lock:
            return [r for r in self.requests if r.model == model]

    def wait_for_requests(self, count: int, timeout: float = 30.0) -> None:
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.requests) >= count, timeout):
                raise TimeoutError(f"{len(self.requests)} of {count} requests after {timeout}s")

    # -- answering -------------------------------------------------------------------
    def _answer(self, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, str], bytes]:
        received = time.perf_counter()
        authorized = headers.get("authorization") == f"Bearer {self.api_key}"
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            return 400, {}, _error_body(400, "request body is not JSON")
        request = ChatRequest(model=str(body.get("model", "")), body=body,
                              authorized=authorized, received_at=received,
                              headers={k: v for k, v in headers.items()
                                       if k != "authorization"})
        with self._arrived:
            self.requests.append(request)
            self._arrived.notify_all()
            if not authorized:
                self.unauthorized += 1
            script = self._scripts.get(request.model)
        if not authorized:
            return 401, {}, _error_body(401, "Incorrect API key provided")
        limited, limit_headers = self._take(request)
        if limited:
            request.answered_at = time.perf_counter()
            return 429, limit_headers, _error_body(429, "Rate limit reached for requests")
        reply = self._reply_for(request, script)
        if reply.delay and self._stopping.wait(reply.delay):
            return 503, {}, _error_body(503, "server stopping")
        try:
            if reply.status != 200:
                extra = dict(limit_headers)
                if reply.status == 429:
                    extra.update(_retry_after(reply.retry_after or 0.01))
                return reply.status, extra, _error_body(reply.status, f"scripted {reply.status}",
                                                        reply.error_code)
            return 200, limit_headers, json.dumps(self._completion(request.model, reply)).encode()
        finally:
            request.answered_at = time.perf_counter()

    def _take(self, request: ChatRequest) -> tuple[bool, dict[str, str]]:
        """Charge the request to the buckets: (over the limit, the headers to send)."""
        if self.rate_limit is None:
            return False, {}
        costs = {"requests": 1.0, "tokens": estimated_tokens(request.body)}
        with self._lock:
            now = time.monotonic()
            for bucket in self._buckets.values():
                bucket.refill(now)
            short = max(b.short_by(costs[what]) for what, b in self._buckets.items())
            if short > 0:
                self.rate_limited += 1
                request.rate_limited = True
            else:
                for what, bucket in self._buckets.items():
                    bucket.level -= costs[what]
            headers = self._limit_headers()
        if short > 0:
            headers.update(_retry_after(short))
        return short > 0, headers

    def _limit_headers(self) -> dict[str, str]:
        limit = self.rate_limit
        if limit is None or not limit.send_headers:
            return {}
        headers = self._buckets["requests"].headers("requests", limit.requests_per_second * 60)
        if limit.tokens_per_minute is not None:
            headers.update(self._buckets["tokens"].headers("tokens", limit.tokens_per_minute))
        return headers

    def _reply_for(self, request: ChatRequest, script: deque[Reply] | Script | None) -> Reply:
        if script is None:
            return self.default
        if callable(script):
            return script(request)
        with self._lock:
            return script.popleft() if script else self.default

    def _completion(self, model: str, reply: Reply) -> dict[str, Any]:
        n = next(self._ids)
        calls = [{"id": f"call_{n}_{i}", "type": "function",
                  "function": {"name": name, "arguments": args if isinstance(args, str)
                               else json.dumps(args)}}
                 for i, (name, args) in enumerate(reply.tool_calls)]
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if calls:
            message["tool_calls"] = calls
        usage: dict[str, Any] = {"prompt_tokens": reply.tokens_in,
                                 "completion_tokens": reply.tokens_out,
                                 "total_tokens": reply.tokens_in + reply.tokens_out}
        if reply.cost is not None:
            usage["cost"] = reply.cost
        if reply.tokens_cached:
            usage["prompt_tokens_details"] = {"cached_tokens": reply.tokens_cached}
        return {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()),
                "model": model, "usage": usage,
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": "tool_calls" if calls else "stop"}]}


def _buckets(limit: FakeRateLimit) -> dict[str, _Bucket]:
    rps = limit.requests_per_second
    buckets = {"requests": _Bucket(rps, max(1.0, rps * limit.burst_seconds))}
    if limit.tokens_per_minute is not None:
        tps = limit.tokens_per_minute / 60
        buckets["tokens"] = _Bucket(tps, max(1.0, tps * limit.burst_seconds))
    return buckets


def estimated_tokens(body: dict[str, Any]) -> float:
    """What OpenAI charges before answering: about four characters a token of the tools
    and the messages' text, plus max_tokens."""
    chars = len(json.dumps(body.get("tools", []))) + sum(
        len(_text(m.get("content"))) for m in body.get("messages", []))
    return chars / 4 + float(body.get("max_tokens") or body.get("max_completion_tokens") or 0)


def _retry_after(seconds: float) -> dict[str, str]:
    return {"retry-after": str(max(1, math.ceil(seconds))),
            "retry-after-ms": str(max(1, math.ceil(seconds * 1000)))}


def _error_body(status: int, message: str, code: str | None = None) -> bytes:
    kind = code or {401: "invalid_request_error", 429: "rate_limit_exceeded"}.get(
        status, "server_error")
    return json.dumps({"error": {"message": message, "type": kind,
                                 "code": code or status}}).encode()


def _handler_for(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes: without this, Nagle's algorithm
            # holds the body for the client's delayed ACK (~40 ms a request).
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, {}, _error_body(404, f"no route {self.path}"))
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            self._send(*fake._answer(headers, raw))

        def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout or a stop): nothing to answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def fake_openai(api_key: str, *, default: Reply | None = None,
                rate_limit: FakeRateLimit | None = None) -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(api_key, default=default, rate_limit=rate_limit).start()
    try:
        yield server
    finally:
        server.stop()
