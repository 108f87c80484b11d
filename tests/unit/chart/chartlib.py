"""Running the real Helm binaries against the chart, and reading what they render.

The binaries are the ones hack/helm/build.sh builds into $KUBENOVA_TOOLS_BIN, at the versions
pinned in hack/helm/versions.sh.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "kubenova"
RELEASE = "kubenova"
NAMESPACE = "kubenova-system"


def _pinned_versions() -> dict[str, str]:
    text = (ROOT / "hack" / "helm" / "versions.sh").read_text()
    return dict(re.findall(r"^(KUBENOVA_HELM3?_VERSION)=(\S+)$", text, re.MULTILINE))


VERSIONS = _pinned_versions()
HELM4 = VERSIONS["KUBENOVA_HELM_VERSION"]
HELM3 = VERSIONS["KUBENOVA_HELM3_VERSION"]


def helm_path(version: str) -> pathlib.Path:
    tools = os.environ.get("KUBENOVA_TOOLS_BIN") or os.path.join(
        os.environ.get("KUBENOVA_CACHE", "/var/cache/kubenova"), "bin"
    )
    return pathlib.Path(tools) / f"helm-{version}"


@dataclasses.dataclass(frozen=True)
class Helm:
    """One Helm binary, running against the chart in this repository."""

    version: str
    path: pathlib.Path

    def run(
        self, *args: str, values: dict[str, Any] | None = None
    ) -> subprocess.CompletedProcess[str]:
        command = [str(self.path), *args]
        if values is not None:
            # JSON is YAML; a file keeps types exact (--set would turn "2" into 2).
            command += ["--values", "-"]
        return subprocess.run(
            command,
            input=json.dumps(values) if values is not None else None,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "HELM_CACHE_HOME": "/tmp/kubenova-helm-cache"},
        )

    def template(
        self, values: dict[str, Any] | None = None, *extra: str, release: str = RELEASE
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            "template", release, str(CHART), "--namespace", NAMESPACE, *extra, values=values
        )


class Rendered:
    """The objects one `helm template` produced, with ways to find them."""

    def __init__(self, text: str) -> None:
        self.objects = [doc for doc in yaml.safe_load_all(text) if doc]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.objects)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        for obj in self.of_kind(kind):
            if obj["metadata"]["name"] == name:
                return obj
        return None

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = self.find(kind, name)
        if found is None:
            names = [obj["metadata"]["name"] for obj in self.of_kind(kind)]
            raise AssertionError(f"no {kind} {name!r}; the {kind}s are {names}")
        return found


def container(pod_owner: dict[str, Any], name: str, *, init: bool = False) -> dict[str, Any]:
    """A container of a Deployment, DaemonSet, StatefulSet or Job, by name."""
    spec = pod_owner["spec"]["template"]["spec"]
    for found in spec.get("initContainers" if init else "containers", []):
        if found["name"] == name:
            return dict(found)
    raise AssertionError(f"{pod_owner['metadata']['name']} has no container {name!r}")


def env_of(container_spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A container's environment: name -> the EnvVar."""
    return {var["name"]: var for var in container_spec.get("env", [])}


def volumes_of(pod_owner: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {vol["name"]: vol for vol in pod_owner["spec"]["template"]["spec"].get("volumes", [])}
