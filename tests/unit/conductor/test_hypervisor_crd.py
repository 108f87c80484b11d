"""The Hypervisor CRD as crds/ installs it, against what the operator reads from its spec and
writes into its status: the ratios the schema admits are the ones the operator applies, the
status the conductor writes survives the kube-apiserver's pruning, and the printer columns
show it."""

from __future__ import annotations

import datetime
import pathlib
import re
import uuid
from typing import Any

import pytest
import yaml

from kubenova import placement
from kubenova.conductor import hypervisor_spec, hypervisor_status
from kubenova.db import api as db_api

_CRD = pathlib.Path(__file__).resolve().parents[3] / "crds" / "compute.kubenova.io_hypervisors.yaml"


@pytest.fixture(scope="module")
def version() -> dict[str, Any]:
    crd = yaml.safe_load(_CRD.read_text())
    [served] = crd["spec"]["versions"]
    return dict(served)


def _schema(version: dict[str, Any], part: str) -> dict[str, Any]:
    return dict(version["schema"]["openAPIV3Schema"]["properties"][part])


def _refusal(schema: dict[str, Any], value: Any) -> str | None:
    """Why the kube-apiserver refuses ``value`` under the OpenAPI v3.0 ``schema`` (the
    number, boolean and object rules the Hypervisor's spec uses), or None."""
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return "must be an object"
        known = schema.get("properties") or {}
        for key, item in value.items():
            if key in known and (why := _refusal(known[key], item)) is not None:
                return f"{key}: {why}"
        return None
    if kind == "boolean":
        return None if isinstance(value, bool) else "must be a boolean"
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be a number"
        if "minimum" in schema:
            exclusive = schema.get("exclusiveMinimum", False)
            if value < schema["minimum"] or (exclusive and value == schema["minimum"]):
                return "below the minimum"
        if "maximum" in schema:
            exclusive = schema.get("exclusiveMaximum", False)
            if value > schema["maximum"] or (exclusive and value == schema["maximum"]):
                return "above the maximum"
        return None
    raise AssertionError(f"the test's validator does not know {kind!r}")


def _pruned(schema: dict[str, Any], value: Any, where: str = "status") -> list[str]:
    """The fields of ``value`` a structural ``schema`` does not name (the kube-apiserver
    drops them without a word)."""
    if isinstance(value, dict) and schema.get("type") == "object":
        known = schema.get("properties")
        if known is None:
            return []
        found = [f"{where}.{key}" for key in value if key not in known]
        for key, item in value.items():
            if key in known:
                found += _pruned(known[key], item, f"{where}.{key}")
        return found
    if isinstance(value, list) and schema.get("type") == "array":
        return [p for i, item in enumerate(value) for p in _pruned(schema["items"], item, where)]
    return []


def _column_value(obj: dict[str, Any], path: str) -> Any:
    """What kubectl shows for a printer column's ``path``: dotted fields, and the condition
    filter ``.status.conditions[?(@.type=="X")].field``."""
    filtered = re.fullmatch(r"\.status\.conditions\[\?\(@\.type==\"(\w+)\"\)\]\.(\w+)", path)
    if filtered is not None:
        type_, field = filtered.groups()
        matching = [c for c in obj["status"].get("conditions", []) if c["type"] == type_]
        return matching[0][field] if matching else None
    value: Any = obj
    for part in path.lstrip(".").split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _written_status(**ratios: float) -> dict[str, Any]:
    """The status the conductor writes for a host with ``ratios``: a heartbeat's, then the
    periodic check's count and conditions."""
    node = db_api.ReportedNode(
        uuid=str(uuid.uuid4()),
        vcpus=8,
        vcpus_used=20,
        memory_mib=8192,
        memory_mib_used=1024,
        local_gb=100,
        local_gb_used=5,
        cpu_allocation_ratio=ratios.get("cpu", 4.0),
        ram_allocation_ratio=ratios.get("memory", 1.0),
        disk_allocation_ratio=ratios.get("disk", 1.0),
        reserved_host_memory_mib=0,
        reserved_host_disk_gib=0,
        hypervisor_type="QEMU",
        hypervisor_version="8.2.2",
        libvirt_version="10.0.0",
        virt_type="kvm",
        cpu_arch="x86_64",
        running_vms=3,
        disabled=False,
        disabled_reason=None,
    )
    status = hypervisor_status.reported_status(node, datetime.datetime.now(datetime.UTC))
    status["instances"] = 3
    status["conditions"] = hypervisor_status.capacity_conditions(status, None)
    return status


def test_each_ratio_is_a_described_number_above_zero_up_to_the_operators_maximum(
    version: dict[str, Any],
) -> None:
    ratios = _schema(version, "spec")["properties"]["allocationRatios"]
    assert ratios["type"] == "object"
    assert ratios["description"]
    assert set(ratios["properties"]) == {"cpu", "memory", "disk"}
    for field, schema in ratios["properties"].items():
        assert schema["type"] == "number", field
        assert schema["description"], field
        assert (schema["minimum"], schema["exclusiveMinimum"]) == (0, True), field
        assert schema["maximum"] == placement.MAX_ALLOCATION_RATIO, field


@pytest.mark.parametrize("value", [0.01, 1, 1.5, 4, 1000, 0, -1, 1000.5, "2", True])
@pytest.mark.parametrize("field", ["cpu", "memory", "disk"])
def test_the_schema_admits_exactly_the_ratios_the_operator_applies(
    version: dict[str, Any], field: str, value: Any
) -> None:
    spec = {"allocationRatios": {field: value}}
    admitted = _refusal(_schema(version, "spec"), spec) is None
    try:
        hypervisor_spec.allocation_ratios(spec)
        applied = True
    except hypervisor_spec.InvalidAllocationRatioError:
        applied = False
    assert admitted == applied


def test_the_schema_refuses_a_ratio_of_zero_naming_it(version: dict[str, Any]) -> None:
    refusal = _refusal(_schema(version, "spec"), {"allocationRatios": {"memory": 0}})
    assert refusal == "allocationRatios: memory: below the minimum"


def test_nothing_the_conductor_writes_into_the_status_is_pruned(version: dict[str, Any]) -> None:
    status = _written_status(cpu=2.0, memory=1.5)
    assert _pruned(_schema(version, "status"), status) == []


def test_kubectl_get_shows_the_cpu_and_memory_ratios_and_wide_adds_disk_and_capacity(
    version: dict[str, Any],
) -> None:
    columns = {column["name"]: column for column in version["additionalPrinterColumns"]}
    obj = {"metadata": {"name": "h1"}, "status": _written_status(cpu=2.0, memory=1.5, disk=3.0)}

    shown = {name: _column_value(obj, column["jsonPath"]) for name, column in columns.items()}
    assert (shown["CPU-RATIO"], shown["RAM-RATIO"], shown["DISK-RATIO"]) == (2.0, 1.5, 3.0)
    assert shown["VCPUS"] == "20/16"
    assert shown["OVER-CAPACITY"] == "True"
    assert shown["DISK-GIB"] == "5/300"
    default_view = {name for name, column in columns.items() if not column.get("priority")}
    assert {"CPU-RATIO", "RAM-RATIO"} <= default_view
    assert not {"DISK-RATIO", "OVER-CAPACITY", "DISK-GIB"} & default_view
    for name in ("CPU-RATIO", "RAM-RATIO", "DISK-RATIO"):
        assert columns[name]["type"] == "number", name
