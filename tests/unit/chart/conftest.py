"""Fixtures that render the chart with Helm 4, or with each supported Helm version.

A test that needs a Helm binary that is not built is skipped, saying how to build it
(hack/helm/build.sh; hack/test.sh builds it first).
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import pytest

from tests.unit.chart.chartlib import HELM3, HELM4, Helm, Rendered, helm_path


def _require(version: str) -> Helm:
    path = helm_path(version)
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path.name} is not built in {path.parent}: run hack/helm/build.sh")
    return Helm(version, path)


@functools.cache
def _render_cached(version: str, values_json: str, extra: tuple[str, ...]) -> Rendered:
    helm = _require(version)
    result = helm.template(json.loads(values_json), *extra)
    if result.returncode != 0:
        raise AssertionError(f"helm {version} template failed:\n{result.stderr}")
    return Rendered(result.stdout)


@pytest.fixture(params=[HELM4, HELM3], ids=["helm4", "helm3"])
def any_helm(request: pytest.FixtureRequest) -> Helm:
    """Each of the Helm versions the chart supports, one test run per version."""
    return _require(request.param)


@pytest.fixture
def helm() -> Helm:
    """Helm 4, the version the chart is installed with."""
    return _require(HELM4)


@pytest.fixture
def render() -> Any:
    """render(values, *extra_args) -> Rendered, with Helm 4; the same input renders once."""

    def _render(values: dict[str, Any] | None = None, *extra: str) -> Rendered:
        return _render_cached(HELM4, json.dumps(values or {}, sort_keys=True), tuple(extra))

    return _render
