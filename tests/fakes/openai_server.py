"""A local OpenAI-compatible chat completions server for the llm decider's tests.

The tests drive the real ChatOpenAI client over HTTP against it, so what is tested is
what runs in production: request building, tool-call parsing, usage, errors, timeouts.
Answers are scripted per model name (a list played in order, or a function of the
request); every request is recorded; a request without the expected bearer key gets a
401 and is counted. Slow answers wait on an event, so stopping the server never hangs.
"""

from __future__ import annotations

import itertools
import json
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
        return Reply(self.content, self.tool_calls, self.status, seconds, self.tokens_in,
                     self.tokens_out, self.cost)


@dataclass
class ChatRequest:
    """One chat completion request as the server saw it."""

    model: str
    body: dict[str, Any]
    authorized: bool
    received_at: float
    headers: dict[str, str] = field(default_factory=dict)  # all but Authorization
    answered_at: float | None = None

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
                 host: str = "127.0.0.1") -> None:
        self.api_key = api_key
        self.default = default or Reply.text("Nothing to do: hold.")
        self.requests: list[ChatRequest] = []
        self.unauthorized = 0
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
        reply = self._reply_for(request, script)
        if reply.delay and self._stopping.wait(reply.delay):
            return 503, {}, _error_body(503, "server stopping")
        try:
            if reply.status != 200:
                extra = {"retry-after-ms": "10"} if reply.status == 429 else {}
                return reply.status, extra, _error_body(reply.status, f"scripted {reply.status}")
            return 200, {}, json.dumps(self._completion(request.model, reply)).encode()
        finally:
            request.answered_at = time.perf_counter()

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
        return {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()),
                "model": model, "usage": usage,
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": "tool_calls" if calls else "stop"}]}


def _error_body(status: int, message: str) -> bytes:
    kind = {401: "invalid_request_error", 429: "rate_limit_exceeded"}.get(status, "server_error")
    return json.dumps({"error": {"message": message, "type": kind, "code": status}}).encode()


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
def fake_openai(api_key: str, *, default: Reply | None = None) -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(api_key, default=default).start()
    try:
        yield server
    finally:
        server.stop()
