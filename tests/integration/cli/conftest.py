"""The plugin against the local cluster's real kube-apiserver (hack/cluster-up.sh starts it;
hack/kube/up.sh is enough): ``kubectl nova`` runs as kubectl runs it, found on PATH, while a
thread (fake_operator.py) stands in for the operator.

Each test module works in a namespace of its own; what it made is deleted afterwards (the
Instances lose the operator's finalizer first: no operator is here to remove it).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from kubenova.k8s.resources import GROUP, INSTANCE_ACTIONS, INSTANCES, VERSION
from tests.integration.cli import fake_operator
from tests.support import required

ROOT = pathlib.Path(__file__).resolve().parents[3]
STATE = pathlib.Path(os.environ.get("KUBENOVA_STATE", ROOT / ".kubenova"))
KUBECONFIG = pathlib.Path(os.environ.get("KUBECONFIG", STATE / "kubeconfig"))
KUBECTL = STATE / "bin" / "kubectl"
#: Where `pip install` put the kubectl-nova script: the bin directory of this interpreter.
SCRIPTS = pathlib.Path(sys.executable).parent
CRDS = [
    ROOT / "crds" / "compute.kubenova.io_instances.yaml",
    ROOT / "crds" / "compute.kubenova.io_instanceactions.yaml",
]


def kubectl(
    *args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The local stack's kubectl; with the plugin's directory first on PATH, as a user who
    installed Kubenova has it."""
    environment = dict(os.environ if env is None else env)
    environment["PATH"] = f"{SCRIPTS}{os.pathsep}{environment.get('PATH', '')}"
    environment.setdefault("KUBECONFIG", str(KUBECONFIG))
    return subprocess.run(
        [str(KUBECTL), *args],
        env=environment,
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


def nova(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    """``kubectl nova ARGS``: the plugin run by kubectl itself."""
    return kubectl("nova", *args, env=env, check=False, timeout=timeout)


@pytest.fixture(scope="session")
def api_client() -> Iterator[k8s_client.ApiClient]:
    if not (SCRIPTS / "kubectl-nova").exists():
        pytest.fail(f"no kubectl-nova in {SCRIPTS}: run `pip install -e . --no-deps`")
    if not KUBECTL.exists() or not KUBECONFIG.exists():
        required.missing(f"no local cluster at {STATE} (start it with hack/cluster-up.sh)")
    if kubectl("get", "--raw", "/readyz", check=False, timeout=20).returncode:
        required.missing("the local kube-apiserver is not up (start it with hack/cluster-up.sh)")
    # The plugin's objects must be those of this tree; applying them is idempotent.
    kubectl("apply", "--server-side", "--force-conflicts", *(f"--filename={c}" for c in CRDS))
    kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", *(f"--filename={c}" for c in CRDS)
    )
    api = k8s_config.new_client_from_config(config_file=str(KUBECONFIG), persist_config=False)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="module")
def namespace(api_client: k8s_client.ApiClient) -> Iterator[str]:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    core = k8s_client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        _clean(api_client, name)


def _clean(api_client: k8s_client.ApiClient, namespace: str) -> None:
    custom = k8s_client.CustomObjectsApi(api_client)
    for obj in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, INSTANCES)["items"]:
        name = obj["metadata"]["name"]
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, INSTANCES, name, {"metadata": {"finalizers": None}}
        )
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, INSTANCES, name)
    custom.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, INSTANCE_ACTIONS)
    # Without kube-controller-manager the namespace may stay Terminating; it is empty by now.
    k8s_client.CoreV1Api(api_client).delete_namespace(namespace)


@pytest.fixture(scope="module")
def operator(
    api_client: k8s_client.ApiClient, namespace: str
) -> Iterator[fake_operator.FakeOperator]:
    stand_in = fake_operator.FakeOperator(api_client, namespace)
    stand_in.start()
    try:
        yield stand_in
    finally:
        stand_in.stop()
    assert not stand_in.errors, f"the stand-in operator failed: {stand_in.errors!r}"


@pytest.fixture
def make_instance(
    api_client: k8s_client.ApiClient, namespace: str, operator: fake_operator.FakeOperator
) -> Any:
    """``make_instance(name, phase=..., power_state=..., annotations=...)``: an Instance at rest
    in ``phase``, its spec applied (as the operator would have left it)."""
    custom = k8s_client.CustomObjectsApi(api_client)

    def make(
        name: str,
        *,
        phase: str = "Running",
        power_state: str | None = None,
        run_strategy: str = "Always",
        annotations: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Instance",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {
                "flavor": "m1.tiny",
                "image": "kubenova-tiny",
                "powerState": power_state or phase,
                "runStrategy": run_strategy,
            },
        }
        created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, INSTANCES, body)
        status = fake_operator.settled_status(phase, created["metadata"]["generation"])
        return dict(
            custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, INSTANCES, name, {"status": status}
            )
        )

    return make


@pytest.fixture
def get_instance(api_client: k8s_client.ApiClient, namespace: str) -> Any:
    custom = k8s_client.CustomObjectsApi(api_client)

    def get(name: str) -> dict[str, Any]:
        return dict(custom.get_namespaced_custom_object(GROUP, VERSION, namespace, INSTANCES, name))

    return get
