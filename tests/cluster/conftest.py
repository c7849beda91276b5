"""Fixtures for the real single-node Kubernetes test cluster (`make cluster-up`).

The cluster is started by `make cluster-up cluster-images` (part of `make test`). A
missing cluster is an error, never a silent skip; TICKRUN_SKIP_CLUSTER=1 skips these
tests on purpose, with that reason.

- `cluster`: the session's connection (kubeconfig, API clients, image names, and the
  address pods use to reach services on the host, such as PostgreSQL and Redis).
- `namespace`: a fresh namespace per test module, deleted at the end of the module.
- `wait_for_job_condition`, `wait_for_pod`, `wait_gone`, `pod_logs`: polling helpers
  that fail with the namespace's events and logs for diagnosis.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.apiserver import ApiServer
from tests.cluster.helpers import (
    API_IMAGE,
    RUNNER_IMAGE,
    Cluster,
    cluster_path,
    exists,
    runtime_images,
    wait_until,
)
from tests.cluster.stack import Stack
from tests.servers import Postgres, Redis


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    if os.environ.get("TICKRUN_SKIP_CLUSTER") == "1":
        pytest.skip("TICKRUN_SKIP_CLUSTER=1: the real-Kubernetes tests are skipped on purpose")
    kubeconfig = Path(os.environ.get("TICKRUN_KUBECONFIG") or cluster_path("kubeconfig"))
    if not kubeconfig.is_file():
        pytest.fail(f"no test cluster (no {kubeconfig}): run `make cluster-up cluster-images`"
                    " or set TICKRUN_SKIP_CLUSTER=1 to skip the cluster tests", pytrace=False)
    api = _answering_cluster(kubeconfig)
    present = runtime_images()
    # The api image is the chart tests' alone (`api_image`): `make test` builds it while
    # the others run.
    if f"docker.io/{RUNNER_IMAGE}" not in present:
        pytest.fail(f"the test cluster lacks {RUNNER_IMAGE}: run `make cluster-images`",
                    pytrace=False)
    core = client.CoreV1Api(api)
    host_file = kubeconfig.parent / "host-address"
    host = host_file.read_text().strip() if host_file.is_file() else cluster_path("host-address")
    yield Cluster(kubeconfig=kubeconfig, api=api, core=core,
                  batch=client.BatchV1Api(api), host_address=host)
    api.close()


def _answering_cluster(kubeconfig: Path) -> client.ApiClient:
    """The cluster's API client; a cluster that stopped since `make cluster-up` (its
    processes killed from outside) is started again once by the idempotent up.sh,
    which says so in the output."""
    for attempt in (1, 2):
        api = config.new_client_from_config(config_file=str(kubeconfig))
        try:
            client.VersionApi(api).get_code(_request_timeout=10)
            return api
        except Exception as exc:
            api.close()
            if attempt == 2 or os.environ.get("TICKRUN_KUBECONFIG"):
                pytest.fail(f"the test cluster at {kubeconfig} is not ready ({exc}): "
                            "`make cluster-status`, `make cluster-up`", pytrace=False)
            print(f"the test cluster does not answer ({exc}); starting it again", flush=True)
            subprocess.run([str(Path(__file__).parent / "up.sh")], check=False, timeout=600)
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def api_image(cluster: Cluster) -> str:
    """The API's image in the cluster's runtime (the chart's pods run it)."""
    if f"docker.io/{API_IMAGE}" not in runtime_images():
        pytest.fail(f"the test cluster lacks {API_IMAGE}: run `make cluster-images`",
                    pytrace=False)
    return API_IMAGE


@pytest.fixture(scope="session")
def host_address(cluster: Cluster) -> str:
    """The address pods use to reach services listening on the host."""
    return cluster.host_address


@pytest.fixture(scope="module")
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace for this test module, deleted (with everything in it) at its end."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    name = f"t-{module.replace('_', '-')[:40]}-{uuid.uuid4().hex[:6]}"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=name, labels={"app.kubernetes.io/managed-by": "tickrun-tests"})))
    # Pods are refused until the service account controller made `default`.
    wait_until(lambda: exists(lambda: cluster.core.read_namespaced_service_account(
        "default", name)), 30, f"service account default in {name}")
    yield name
    if exists(lambda: cluster.core.read_namespace(name)):
        cluster.core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="module")
def stack(cluster: Cluster, namespace: str, postgres_server: Postgres, redis_server: Redis,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """tickrun on the cluster for one test module: a controller process (c1) on the
    host, runs as Jobs in the module's namespace, PostgreSQL and Redis on the host."""
    s = Stack(cluster, namespace, postgres_server, redis_server,
              Path(tmp_path_factory.mktemp("k8s-logs")))
    s.start_controller("c1")
    yield s
    s.close(postgres_server)


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[ApiServer]:
    """The API (in-process, real HTTP) creating Jobs in the module's namespace."""
    with stack.api() as server:
        yield server
