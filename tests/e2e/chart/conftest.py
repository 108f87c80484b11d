"""Kubenova installed into the local cluster with its Helm chart, as `make up` installs it."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import (
    HOST,
    KUBECONFIG,
    ROOT,
    apply,
    flavor_manifest,
    get,
    kubectl,
    wait_for,
)
from tests.unit.chart.chartlib import HELM3, HELM4, helm_path

NAMESPACE = "kubenova-system"
INSTANCES_PATH = pathlib.Path(
    os.environ.get("KUBENOVA_INSTANCES_PATH", "/var/lib/kubenova/instances")
)
FLAVOR = "chart-nano"


# The Helm versions pinned in hack/helm/versions.sh, and where hack/helm/build.sh put them.
HELM_VERSION = HELM4
HELM3_VERSION = HELM3
HELM = helm_path(HELM_VERSION)


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(HELM), *args, "--namespace", NAMESPACE, "--kubeconfig", str(KUBECONFIG)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"helm {' '.join(args)}: {done.stdout}{done.stderr}"
    return done


def helm_install(*flags: str, helm_version: str = HELM_VERSION) -> subprocess.CompletedProcess[str]:
    """`helm upgrade --install` of the chart, as `make up` runs it (with Helm 4, unless
    ``helm_version`` names another Helm that hack/helm/build.sh built)."""
    done = subprocess.run(
        [str(ROOT / "hack/helm/install.sh"), *flags],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "KUBENOVA_INSTALL_HELM": helm_version},
    )
    assert done.returncode == 0, f"install.sh {' '.join(flags)}: {done.stdout}{done.stderr}"
    return done


@pytest.fixture(scope="session")
def release() -> str:
    """The installed release, with this host's agent reporting in; yields its namespace."""
    helm_install()
    wait_for(
        f"Hypervisor {HOST} to be up",
        lambda: ((get("hypervisors", HOST) or {}).get("status") or {}).get("state") == "up",
        timeout=180,
    )
    apply(flavor_manifest(FLAVOR, 1, 128, 1))
    return NAMESPACE


@pytest.fixture
def user_namespace(release: str) -> Iterator[str]:
    name = f"chart-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def instance(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "compute.kubenova.io/v1alpha1",
        "kind": "Instance",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"flavor": FLAVOR, "image": "kubenova-tiny"},
    }


def running(name: str, namespace: str, timeout: float = 240) -> dict[str, Any]:
    """Wait for the instance to be Running; returns it."""
    found: dict[str, Any] = wait_for(
        f"instance {namespace}/{name} to be Running",
        lambda: (
            (obj := get("instances", name, namespace))
            and (obj.get("status") or {}).get("phase") == "Running"
            and obj
        ),
        timeout=timeout,
    )
    return found


def qemu_pid(instance_uuid: str) -> int | None:
    """The QEMU process of a guest, found from the host by its -uuid argument."""
    found = subprocess.run(
        ["pgrep", "-f", "--", f"-uuid {instance_uuid}"], capture_output=True, text=True
    )
    pids = [int(pid) for pid in found.stdout.split()]
    assert len(pids) <= 1, f"more than one QEMU for {instance_uuid}: {pids}"
    return pids[0] if pids else None


def guest_ready(instance_uuid: str) -> bool:
    console = INSTANCES_PATH / instance_uuid / "console.log"
    return console.exists() and "kubenova-guest: ready" in console.read_text(errors="replace")


def pod_process(pod: str, command: str) -> int:
    """The host pid of ``command`` running in pod ``pod`` (found by the POD_NAME it was given)."""
    marker = f"POD_NAME={pod}".encode()
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if command.encode() in cmdline and marker in environ.split(b"\0"):
            return int(entry.name)
    raise AssertionError(f"no {command} process of pod {pod}")


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
