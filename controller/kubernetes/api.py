"""The Kubernetes API as tickrun uses it: a client built from settings (never a
module-level global), and retries the way Kubernetes clients are expected to retry.

Only idempotent calls retry (429, 5xx, timeouts, connection errors), with backoff and
honouring Retry-After; a create that meets AlreadyExists adopts the existing object.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from controller.executor import WorkloadRefused
from controller.kubernetes.settings import KubernetesSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRIABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# Connections kept to the API server: the admission's 16 concurrent unsuspends, the two
# watches, the Event sender and the Lease. The client's default (5 per core, 10 here)
# discarded the admission's connections and opened new ones (a TLS handshake each).
CONNECTION_POOL_SIZE = 32


def api_client(settings: KubernetesSettings) -> client.ApiClient:
    configuration = client.Configuration()
    if settings.kubeconfig:
        config.load_kube_config(config_file=settings.kubeconfig,
                                client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
    configuration.retries = False  # tenacity decides, not urllib3
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    return client.ApiClient(configuration)


def is_retriable(exc: BaseException) -> bool:
    if isinstance(exc, ApiException):
        return exc.status in RETRIABLE_STATUS
    return isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError)


def refused(exc: ApiException) -> WorkloadRefused | None:
    """The API server's refusal of an object, in its own words: 403 (a ResourceQuota,
    an admission policy) lets the run wait; 400/422 (an invalid object) fails it."""
    if exc.status not in (400, 403, 422):
        return None
    try:
        message = str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        message = str(exc.reason)
    return WorkloadRefused(f"{exc.status} {message}"[:500], permanent=exc.status != 403)


def status_of(exc: BaseException | None) -> int | None:
    return exc.status if isinstance(exc, ApiException) else None


def with_retries(call: Callable[[], T], *, attempts: int = 5) -> T:
    """Run an idempotent API call with exponential backoff and jitter."""
    wrapped = retry(
        retry=retry_if_exception(is_retriable),
        wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.2),
        stop=stop_after_attempt(attempts),
        reraise=True,
        before_sleep=lambda state: log.warning(
            "Kubernetes API call failed (%s); retrying",
            status_of(state.outcome.exception()) if state.outcome and
            state.outcome.exception() else None),
    )(call)
    return wrapped()


def unread(call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """A write whose answer is not needed: the client's model objects for it (a whole
    Job) cost more CPU than the request itself, and admission makes many at once.
    Errors still raise ApiException."""
    response = call(*args, _preload_content=False, **kwargs)
    response.read()
    response.release_conn()


def raw(obj: Any) -> dict[str, Any]:
    """A model object as the plain dict the API sent (camelCase keys)."""
    if isinstance(obj, dict):
        return obj
    return dict(client.ApiClient().sanitize_for_serialization(obj))
