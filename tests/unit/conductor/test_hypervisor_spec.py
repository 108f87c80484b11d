"""A Hypervisor's spec.allocationRatios as the operator reads it: Nova's default for each ratio
left out, and a refusal naming the field for a value no host can have."""

from __future__ import annotations

import math

import pytest

from kubenova import placement
from kubenova.conductor import hypervisor_spec
from kubenova.db import models
from kubenova.scheduler.host_state import HostState


def test_a_spec_without_ratios_asks_for_novas_defaults() -> None:
    assert hypervisor_spec.allocation_ratios({"disabled": False}) == (4.0, 1.0, 1.0)
    assert hypervisor_spec.allocation_ratios({"allocationRatios": None}) == (4.0, 1.0, 1.0)


def test_each_ratio_left_out_or_null_is_its_default_and_the_others_are_kept() -> None:
    ratios = hypervisor_spec.allocation_ratios({"allocationRatios": {"memory": 1.5, "disk": None}})
    assert ratios == placement.AllocationRatios(cpu=4.0, memory=1.5, disk=1.0)
    ratios = hypervisor_spec.allocation_ratios({"allocationRatios": {"cpu": 16, "disk": 2.5}})
    assert ratios == placement.AllocationRatios(cpu=16.0, memory=1.0, disk=2.5)
    assert isinstance(ratios.cpu, float)


@pytest.mark.parametrize("value", [0.01, 1, 4.0, placement.MAX_ALLOCATION_RATIO])
def test_any_ratio_above_zero_up_to_the_maximum_is_taken(value: float) -> None:
    assert hypervisor_spec.allocation_ratios({"allocationRatios": {"cpu": value}}).cpu == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (0, "greater than 0"),
        (-1.5, "greater than 0"),
        (1000.5, "at most 1000"),
        ("2", "must be a number"),
        (True, "must be a number"),
        (math.nan, "must be a number"),
        (math.inf, "must be a number"),
    ],
)
@pytest.mark.parametrize("field", ["cpu", "memory", "disk"])
def test_a_ratio_no_host_can_have_is_refused_naming_its_field(
    field: str, value: object, reason: str
) -> None:
    with pytest.raises(hypervisor_spec.InvalidAllocationRatioError) as refused:
        hypervisor_spec.allocation_ratios({"allocationRatios": {field: value}})
    assert f"spec.allocationRatios.{field}: " in str(refused.value)
    assert reason in str(refused.value)


def test_ratios_that_are_not_an_object_are_refused() -> None:
    with pytest.raises(
        hypervisor_spec.InvalidAllocationRatioError, match=r"^spec\.allocationRatios: "
    ):
        hypervisor_spec.allocation_ratios({"allocationRatios": 2.0})


def test_the_defaults_are_the_ones_the_records_and_the_scheduler_start_from() -> None:
    """A host nobody set ratios for gets the same ratios from its new row, from the
    scheduler's host state and from a spec that names none."""
    columns = models.ComputeNode.__table__.c
    from_columns = placement.AllocationRatios(
        columns.cpu_allocation_ratio.default.arg,
        columns.ram_allocation_ratio.default.arg,
        columns.disk_allocation_ratio.default.arg,
    )
    from_server = placement.AllocationRatios(
        float(columns.cpu_allocation_ratio.server_default.arg),
        float(columns.ram_allocation_ratio.server_default.arg),
        float(columns.disk_allocation_ratio.server_default.arg),
    )
    state = HostState("h1", 1, 0, 1, 0, 1, 0)
    from_state = placement.AllocationRatios(
        state.cpu_allocation_ratio, state.ram_allocation_ratio, state.disk_allocation_ratio
    )
    assert from_columns == from_server == from_state == placement.DEFAULT_ALLOCATION_RATIOS
    assert hypervisor_spec.allocation_ratios({}) == placement.DEFAULT_ALLOCATION_RATIOS
