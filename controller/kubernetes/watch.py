"""Watching Jobs and Pods: list, then watch from the list's resourceVersion.

Three small layers, as in kopf: `watch_forever` reconnects forever; `list_and_watch`
lists, then watches and returns on 410 Gone (the caller re-lists); `read_stream` reads
the raw stream with an inactivity timeout, so a silently hung connection (the known
failure of Python watchers) is replaced: bookmarks arrive about once a minute, so a
longer silence means the stream is dead. No polling loop anywhere.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from controller.kubernetes.api import with_retries

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, or SYNC for each object of a (re-)list
    object: dict[str, Any]


class Gone(Exception):
    """410: the resourceVersion is too old; list again."""


ListFn = Callable[..., Any]


def read_stream(list_fn: ListFn, *, resource_version: str, label_selector: str,
                timeout_seconds: int, inactivity_seconds: float,
                stop: threading.Event) -> Iterator[dict[str, Any]]:
    response = list_fn(label_selector=label_selector, watch=True, allow_watch_bookmarks=True,
                       resource_version=resource_version, timeout_seconds=timeout_seconds,
                       _preload_content=False, _request_timeout=(10, inactivity_seconds))
    try:
        buffer = b""
        for chunk in response.stream(amt=None, decode_content=True):
            if stop.is_set():
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    yield json.loads(line)
    finally:
        response.release_conn()


def list_and_watch(list_fn: ListFn, *, label_selector: str, timeout_seconds: int,
                   inactivity_seconds: float, stop: threading.Event,
                   on_restart: Callable[[str], None]) -> Iterator[WatchEvent]:
    listed = with_retries(lambda: list_fn(label_selector=label_selector,
                                          _preload_content=False))
    body = json.loads(listed.data)
    for item in body.get("items") or []:
        yield WatchEvent("SYNC", item)
    yield WatchEvent("SYNCED", {})
    version = body["metadata"]["resourceVersion"]
    while not stop.is_set():
        try:
            for raw_event in read_stream(list_fn, resource_version=version,
                                         label_selector=label_selector,
                                         timeout_seconds=timeout_seconds,
                                         inactivity_seconds=inactivity_seconds, stop=stop):
                kind, obj = raw_event["type"], raw_event["object"]
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(obj.get("message", ""))
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                version = obj["metadata"]["resourceVersion"]
                if kind != "BOOKMARK":
                    yield WatchEvent(kind, obj)
            on_restart("timeout")  # the server ended the watch; resume from `version`
        except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError) as exc:
            log.warning("watch stream silent or broken (%s); resuming", type(exc).__name__)
            on_restart("inactivity")
        except ApiException as exc:
            if exc.status == 410:
                raise Gone(str(exc)) from exc
            raise


def watch_forever(list_fn: ListFn, *, label_selector: str, timeout_seconds: int,
                  inactivity_seconds: float, stop: threading.Event,
                  on_restart: Callable[[str], None]) -> Iterator[WatchEvent]:
    while not stop.is_set():
        try:
            yield from list_and_watch(list_fn, label_selector=label_selector,
                                      timeout_seconds=timeout_seconds,
                                      inactivity_seconds=inactivity_seconds, stop=stop,
                                      on_restart=on_restart)
        except Gone:
            log.info("watch expired (410 Gone); listing again")
            on_restart("gone")
        except Exception as exc:
            log.warning("watch failed (%s); listing again shortly", exc)
            on_restart("error")
            stop.wait(2.0)
