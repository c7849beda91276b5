"""Outside tools for the llm decider: MCP servers (streamable HTTP) that a model names.

A model's `parameters.mcp_servers` lists servers (McpServer). At the decider's first
step, on the decider thread's event loop, each server's tools are listed once
(langchain-mcp-adapters' `load_mcp_tools`); a server that does not answer then, or
whose header's variable is not set, is logged once and its tools are absent from the
run. Each step then gets LangChain tools named `<server>__<tool>`, bound to that step:
every call carries the decision's as-of instant (`StepContext.as_of`, the end of the
bar being decided) and the run's id in the MCP request's `_meta`:

    session.call_tool(name, arguments, read_timeout_seconds=..., meta={
        "tickrun/as_of": "2025-06-02T13:31:00+00:00", "tickrun/run_id": 42})

(the adapters' interceptors can change a call's name, arguments and headers, not its
`_meta`, so the call is made here through the SDK's `ClientSession.call_tool`).

A server is trusted to answer as of that instant only when the model says so
(`point_in_time`); the prompt tells the agent which servers are, and every recorded
call says which server answered and whether it was point-in-time.

Each call opens a session of its own (initialize, call, terminate): nothing stays
open between steps or needs closing, any event loop can make a call, and a server that
restarted or expired its sessions costs nothing. The price is a few more HTTP requests
per call than over a kept session. A call is bounded by the server's timeout, by the
time left to the decision and by a stop request. Whatever goes wrong (the server
reports an error, refuses the arguments, does not answer in time, cannot be reached)
is the tool's answer for the agent, `{"status": "error", "reason": ...}`, never an
exception out of the tool.

Header values come from the runner's environment (variables named MCP_*, which the
deployment fills from Kubernetes Secrets); the model stores only the variables' names,
and only MCP_* names, so a model cannot send another of the runner's secrets (the
database URL, the LLM key) to a server of its choosing. No value is ever logged or
recorded: any answer or reason that quotes one has it blanked, and so does what the MCP
client library logs (at DEBUG it logs what servers answer, which may quote one back).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from runner.deciders.base import StepContext

if TYPE_CHECKING:
    from langchain_mcp_adapters.sessions import StreamableHttpConnection
    from mcp.types import CallToolResult

log = logging.getLogger(__name__)

T = TypeVar("T")

META_AS_OF = "tickrun/as_of"
META_RUN_ID = "tickrun/run_id"
SEPARATOR = "__"  # <server>__<tool>
# What OpenAI (and OpenRouter) accept as a function's name.
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_SERVERS = 10
MAX_HEADERS = 20
MAX_DESCRIPTION = 1024
MAX_ANSWER_CHARS = 16_000  # of an answer's JSON, for the model and the decision's record
MAX_REASON_CHARS = 500
POLL_SECONDS = 0.05  # how often a call in flight looks at the stop request and the clock
CANCEL_GRACE_SECONDS = 1.0  # what a call cut short gets to close its session
# Set by the HTTP client or the MCP transport: a model may not set them.
RESERVED_HEADERS = frozenset({
    "accept", "connection", "content-length", "content-type", "host", "last-event-id",
    "mcp-protocol-version", "mcp-session-id", "te", "trailer", "transfer-encoding",
    "upgrade"})

ServerName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,20}$")]
HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,99}$")]
# The NAME of an environment variable, never its value: MCP_* only (see the docstring).
EnvName = Annotated[str, StringConstraints(pattern=r"^MCP_[A-Z0-9_]{1,96}$")]


def _http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not hold credentials: send them in headers, from the "
                         "environment")
    if parts.fragment:
        raise ValueError("must not have a fragment")
    try:
        parts.port  # noqa: B018  (a bad port raises)
    except ValueError as exc:
        raise ValueError(f"has a bad port: {exc}") from None
    return url


def _allowed_headers(headers: dict[str, str]) -> dict[str, str]:
    reserved = sorted(h for h in headers if h.lower() in RESERVED_HEADERS)
    if reserved:
        raise ValueError(f"headers the transport sets cannot be given: {', '.join(reserved)}")
    lowered = [h.lower() for h in headers]
    if len(set(lowered)) != len(lowered):
        raise ValueError("a header is named twice (names are case-insensitive)")
    return headers


class McpServer(BaseModel):
    """An MCP server whose tools the agent may call (one entry of `mcp_servers`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ServerName = Field(description="Its tools are named <name>__<tool>")
    url: Annotated[str, StringConstraints(max_length=2000), AfterValidator(_http_url)] = Field(
        description="The streamable HTTP endpoint, e.g. https://mcp.example.com/mcp")
    point_in_time: bool = Field(
        default=False, description="The server answers only what was known at the call's "
                                   f"{META_AS_OF} (_meta): no look-ahead")
    headers: Annotated[dict[HeaderName, EnvName], AfterValidator(_allowed_headers)] = Field(
        default_factory=dict, max_length=MAX_HEADERS,
        description="Header name -> the NAME of the runner's environment variable (MCP_*) "
                    "that holds its value; a value is never stored in the model")
    timeout_seconds: float = Field(default=10.0, gt=0, le=120,
                                   description="Per call, and for listing its tools")

    @property
    def where(self) -> str:
        """The URL for a message: no query (it may hold a token)."""
        parts = urlsplit(self.url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def _allowed(server: McpServer, hosts: Sequence[str]) -> bool:
    """The server's host (or host:port) is one the operator allows: a model picks the
    URL and which MCP_* secrets go there, so only trusted servers may be named."""
    parts = urlsplit(server.url)
    host = (parts.hostname or "").lower()
    allowed = {h.lower() for h in hosts}
    return host in allowed or f"{host}:{parts.port}" in allowed


def _unique_names(servers: list[McpServer]) -> list[McpServer]:
    names = [s.name for s in servers]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"server names must be unique: {', '.join(twice)}")
    return servers


McpServers = Annotated[list[McpServer], Field(max_length=MAX_SERVERS),
                       AfterValidator(_unique_names)]


def outside_fields(tool: BaseTool) -> dict[str, Any]:
    """What a recorded call of an outside tool adds: its server and whether that server is
    point-in-time. Empty for tickrun's own tools."""
    meta = tool.metadata or {}
    if "mcp_server" not in meta:
        return {}
    return {"server": meta["mcp_server"], "point_in_time": bool(meta["point_in_time"])}


@dataclass(frozen=True, slots=True)
class _Listed:
    """One tool of one server, as listed at the start."""

    server: McpServer
    tool: str  # its name on the server
    description: str
    schema: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.server.name}{SEPARATOR}{self.tool}"


class _Unanswered(Exception):
    """A call cut short here: the server's timeout, the decision's deadline, a stop."""


class OutsideTools:
    """The outside tools of one run (one decider)."""

    def __init__(self, servers: Sequence[McpServer], *, run_id: int,
                 allowed_hosts: Sequence[str] = (),
                 environ: Mapping[str, str] | None = None) -> None:
        self.servers = tuple(s for s in servers if _allowed(s, allowed_hosts))
        for server in servers:
            if server not in self.servers:
                log.warning("MCP server %r at %s: its host is not in "
                            "TICKRUN_LLM_MCP_ALLOWED_HOSTS; its tools are absent from this run",
                            server.name, server.where)
        self.run_id = run_id
        env = os.environ if environ is None else environ
        self._headers: dict[str, dict[str, str]] = {}
        self._unset: dict[str, list[str]] = {}  # server -> variables that are not set
        for server in self.servers:
            self._headers[server.name] = {h: env[v] for h, v in server.headers.items()
                                          if env.get(v)}
            self._unset[server.name] = [v for v in server.headers.values() if not env.get(v)]
        self._secrets = sorted({v for h in self._headers.values() for v in h.values()
                                if len(v) >= 4}, key=len, reverse=True)
        _Redacted.add(self._secrets)
        self._listed: list[_Listed] | None = None

    # -- the decider's side ------------------------------------------------------------
    async def tools(self, ctx: StepContext, *, time_left: Callable[[], float]
                    ) -> list[BaseTool]:
        """This step's outside tools (the servers' tools are listed at the first step)."""
        if not self.servers:
            return []
        if self._listed is None:
            self._listed = await self._list_all(ctx, time_left)
        return [self._bound(item, ctx, time_left) for item in self._listed]

    def _bound(self, item: _Listed, ctx: StepContext, time_left: Callable[[], float]
               ) -> BaseTool:
        async def call(**arguments: Any) -> dict[str, Any]:
            return await self._call(item, arguments, ctx, time_left)

        return StructuredTool(
            name=item.name, description=item.description, args_schema=item.schema,
            coroutine=call, metadata={"mcp_server": item.server.name,
                                      "point_in_time": item.server.point_in_time})

    # -- listing, once -----------------------------------------------------------------
    async def _list_all(self, ctx: StepContext, time_left: Callable[[], float]
                        ) -> list[_Listed]:
        found = await asyncio.gather(*(self._list(s, ctx, time_left) for s in self.servers))
        listed: list[_Listed] = []
        names: set[str] = set()
        for server, items in zip(self.servers, found, strict=True):
            for item in items:
                if not TOOL_NAME.match(item.name) or item.name in names:
                    why = "taken" if item.name in names else "not a valid function name"
                    log.warning("MCP server %r: tool %r left out: %s is %s", server.name,
                                item.tool[:100], item.name[:100], why)
                    continue
                names.add(item.name)
                listed.append(item)
        return listed

    async def _list(self, server: McpServer, ctx: StepContext,
                    time_left: Callable[[], float]) -> list[_Listed]:
        absent = f"MCP server {server.name!r} at {server.where}: its tools are absent from " \
                 "this run"
        if unset := self._unset[server.name]:
            log.warning("%s: environment variable(s) %s not set", absent, ", ".join(unset))
            return []
        from langchain_mcp_adapters.tools import load_mcp_tools

        limit = max(0.0, min(server.timeout_seconds, time_left()))
        try:
            tools = await self._bounded(
                load_mcp_tools(None, connection=self._connection(server),
                               server_name=server.name),
                limit, ctx.stop_requested)
        except Exception as exc:  # whatever it is, the server is left out
            log.warning("%s: %s", absent, self._reason(exc, limit))
            return []
        items = [_Listed(server=server, tool=t.name,
                         description=_clip(t.description or "", MAX_DESCRIPTION),
                         schema=_schema(t.args_schema))
                 for t in tools]
        log.info("MCP server %r at %s: %d tool(s)%s", server.name, server.where, len(items),
                 "" if server.point_in_time else " (not point-in-time)")
        return items

    # -- one call ----------------------------------------------------------------------
    async def _call(self, item: _Listed, arguments: dict[str, Any], ctx: StepContext,
                    time_left: Callable[[], float]) -> dict[str, Any]:
        server = item.server
        limit = max(0.0, min(server.timeout_seconds, time_left()))
        try:
            meta = {META_AS_OF: ctx.as_of.astimezone(dt.UTC).isoformat(),
                    META_RUN_ID: self.run_id}
            if limit <= 0:
                raise _Unanswered("no time left for the decision")
            result = await self._bounded(self._request(server, item.tool, arguments, meta,
                                                       limit),
                                         limit, ctx.stop_requested)
            answer = _answer(result)
        except Exception as exc:  # whatever it is, it is the agent's answer
            answer = {"status": "error",
                      "reason": f"{self._reason(exc, limit)} ({server.name} at {server.where})"}
        scrubbed: dict[str, Any] = self._scrub(answer)
        if scrubbed.get("status") == "error":
            log.info("step %d: %s: %s", ctx.step, item.name, scrubbed.get("reason"))
        return scrubbed

    async def _request(self, server: McpServer, tool: str, arguments: dict[str, Any],
                       meta: dict[str, Any], limit: float) -> CallToolResult:
        from langchain_mcp_adapters.sessions import create_session

        result: CallToolResult | None = None
        failure: Exception | None = None
        async with create_session(self._connection(server)) as session:
            # Kept and raised outside: the transport's exit may swallow an exception
            # raised inside it (as langchain-mcp-adapters does for the same reason).
            try:
                await session.initialize()
                result = await session.call_tool(
                    tool, arguments, read_timeout_seconds=dt.timedelta(seconds=limit),
                    meta=meta)
            except Exception as exc:
                failure = exc
        if failure is not None:
            raise failure
        if result is None:
            raise ConnectionError("the session ended without an answer")
        return result

    def _connection(self, server: McpServer) -> StreamableHttpConnection:
        return {"transport": "streamable_http", "url": server.url,
                "headers": dict(self._headers[server.name]),
                "timeout": server.timeout_seconds, "sse_read_timeout": server.timeout_seconds}

    async def _bounded(self, work: Awaitable[T], limit: float,
                       stop: Callable[[], bool]) -> T:
        """Await `work` for at most `limit` seconds, giving up at once on a stop."""
        task = asyncio.ensure_future(work)
        end = time.monotonic() + limit
        try:
            while True:
                left = end - time.monotonic()
                done, _ = await asyncio.wait({task}, timeout=max(0.0, min(POLL_SECONDS, left)))
                if done:
                    return task.result()
                if stop():
                    raise _Unanswered("stop requested")
                if left <= 0:
                    raise _Unanswered(f"no answer within {limit:.3g}s")
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=CANCEL_GRACE_SECONDS)
                # A task that takes longer to close is left to end on its own, quietly.
                task.add_done_callback(lambda t: t.cancelled() or t.exception())

    # -- what the agent and the logs see -----------------------------------------------
    def _reason(self, exc: BaseException, limit: float) -> str:
        from mcp.shared.exceptions import McpError

        exc = _leaf(exc)
        if isinstance(exc, _Unanswered):
            text = str(exc)
        elif isinstance(exc, McpError):
            text = f"the server refused the call: {exc.error.message}"
        elif isinstance(exc, TimeoutError):
            text = f"no answer within {limit:.3g}s"
        else:
            import httpx

            what = "cannot reach the server" if isinstance(
                exc, httpx.TransportError | ConnectionError | OSError) else "the call failed"
            text = f"{what}: {type(exc).__name__}: {_first_line(exc)}"
        return self._scrub_text(text)

    def _scrub(self, value: Any) -> Any:
        """The answer without header values or NUL characters (which no database stores)."""
        if isinstance(value, str):
            return self._scrub_text(value)
        if isinstance(value, dict):
            return {self._scrub(k): self._scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._scrub(v) for v in value]
        return value

    def _scrub_text(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text.replace("\x00", "")


class _Redacted(logging.Filter):
    """Blanks header values in what the MCP client library logs. Its modules log to
    these loggers ("client" is its session's; mcp.shared.session logs to the root
    logger itself); a filter on a logger sees only what is logged to it by name, and
    only records its level lets through, so nothing else is touched or slowed."""

    LOGGERS: ClassVar[tuple[str, ...]] = (
        "mcp.client.streamable_http", "mcp.client.sse", "client", "")
    secrets: ClassVar[list[str]] = []  # longest first

    @classmethod
    def add(cls, secrets: Sequence[str]) -> None:
        if not secrets:
            return
        cls.secrets = sorted(set(cls.secrets) | set(secrets), key=len, reverse=True)
        for name in cls.LOGGERS:
            logger = logging.getLogger(name)
            if not any(isinstance(f, cls) for f in logger.filters):
                logger.addFilter(cls())

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record that cannot be formatted is left as it is
            return True
        if any(secret in message for secret in self.secrets):
            record.msg, record.args = self._blank(message), None
        if record.exc_text and any(secret in record.exc_text for secret in self.secrets):
            record.exc_text = self._blank(record.exc_text)
        return True

    def _blank(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def _answer(result: CallToolResult) -> dict[str, Any]:
    """The tool's result as a small JSON object: its structured content when it has some
    (a text part then repeats it as JSON, by the protocol's advice), else its text."""
    from mcp.types import TextContent

    texts = [c.text for c in result.content if isinstance(c, TextContent)]
    skipped = sorted({c.type for c in result.content if not isinstance(c, TextContent)})
    text = "\n".join(texts).strip()
    if result.isError:
        return {"status": "error",
                "reason": _clip(text or "the tool reported an error", MAX_REASON_CHARS * 4)}
    answer: dict[str, Any] = {"status": "ok"}
    if result.structuredContent is not None:
        answer["data"] = result.structuredContent
    else:
        answer["content"] = text
    if skipped:
        answer["omitted"] = f"parts that are not text: {', '.join(skipped)}"
    if len(json.dumps(answer, default=str)) > MAX_ANSWER_CHARS:
        whole = text if "content" in answer else json.dumps(answer["data"], default=str)
        answer = {"status": "ok", "content": whole[:MAX_ANSWER_CHARS - 200], "truncated": True}
    return answer


def _schema(args_schema: Any) -> dict[str, Any]:
    """The tool's input schema as the model sees it (an object, even when empty)."""
    schema = dict(args_schema) if isinstance(args_schema, dict) else {}
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return schema


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside exception groups (the transport's task groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or ["no detail"])[0][:MAX_REASON_CHARS]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
