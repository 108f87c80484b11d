"""What an administrator sets in a Hypervisor's spec, applied to its host's compute node:
``disabled`` (with ``disabledReason``, Nova's service disable) and ``allocationRatios``
(Nova's per compute node cpu, ram and disk allocation ratios).

Two callers apply it, in their own transaction: the Hypervisor handler, to every field at
once (:func:`apply`), and a heartbeat that read the object, to what differs from the row it
just wrote (:func:`apply_to_report`), which is how a spec set before the host's first
heartbeat reaches the row that heartbeat creates.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, Final

from kubenova import placement
from kubenova.db import api as db_api
from kubenova.db import models

LOG = logging.getLogger(__name__)

#: Where the ratios are in the spec, and each ratio's field within it.
ALLOCATION_RATIOS_FIELD: Final = "allocationRatios"
_RATIO_FIELDS: Final = ("cpu", "memory", "disk")


class InvalidAllocationRatioError(ValueError):
    """A ratio the operator cannot apply; its message names the field and the reason."""


def allocation_ratios(spec: Mapping[str, Any]) -> placement.AllocationRatios:
    """The ratios ``spec`` asks for, Nova's default for each one it leaves out (or sets to
    null), so removing a ratio puts the default back.

    The CRD's schema refuses what this refuses; the check is repeated because an object
    stored under an older schema, or written with validation off, is not re-validated.
    """
    given = spec.get(ALLOCATION_RATIOS_FIELD)
    if given is None:
        return placement.DEFAULT_ALLOCATION_RATIOS
    if not isinstance(given, Mapping):
        raise InvalidAllocationRatioError(
            f"spec.{ALLOCATION_RATIOS_FIELD}: must be an object with cpu, memory and disk, "
            f"not {given!r}"
        )
    defaults = placement.DEFAULT_ALLOCATION_RATIOS._asdict()
    return placement.AllocationRatios(
        **{field: _ratio(field, given.get(field), defaults[field]) for field in _RATIO_FIELDS}
    )


def _ratio(field: str, value: Any, default: float) -> float:
    if value is None:
        return default
    # bool is an int to Python, never a ratio to an administrator.
    number = (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    )
    if number is None or not math.isfinite(number):
        raise InvalidAllocationRatioError(
            f"spec.{ALLOCATION_RATIOS_FIELD}.{field}: must be a number, not {value!r}"
        )
    if not 0 < number <= placement.MAX_ALLOCATION_RATIO:
        raise InvalidAllocationRatioError(
            f"spec.{ALLOCATION_RATIOS_FIELD}.{field}: must be greater than 0 and at most "
            f"{placement.MAX_ALLOCATION_RATIO:g}, not {value!r}"
        )
    return number


def _requested_ratios(host: str, spec: Mapping[str, Any]) -> placement.AllocationRatios | None:
    """The ratios to apply, or None (logged) when the spec asks for ratios no host can have:
    the recorded ones then stay, as lowering or raising them by surprise could be worse."""
    try:
        return allocation_ratios(spec)
    except InvalidAllocationRatioError as exc:
        LOG.warning("hypervisor %s: %s; its allocation ratios stay as recorded", host, exc)
        return None


def apply(session: Any, host: str, spec: Mapping[str, Any]) -> models.ComputeNode | None:
    """Record every field of ``spec`` on ``host``'s compute node; the node as it now is, or
    None for a host with no live compute node (its first heartbeat applies the spec)."""
    node = db_api.compute_node_set_disabled(
        session, host, bool(spec.get("disabled", False)), spec.get("disabledReason")
    )
    if node is None:
        return None
    ratios = _requested_ratios(host, spec)
    if ratios is not None:
        node = db_api.compute_node_set_allocation_ratios(session, host, ratios) or node
    return node


def apply_to_report(
    session: Any, host: str, spec: Mapping[str, Any], node: db_api.ReportedNode
) -> tuple[db_api.ReportedNode, bool]:
    """Record what ``spec`` says differently from ``node``, the row a heartbeat just wrote;
    the node as it now is, and whether anything changed (a change the scheduler's cached
    view of hosts must be told of)."""
    changed = False
    disabled = bool(spec.get("disabled", False))
    if disabled != node.disabled:
        updated = db_api.compute_node_set_disabled(
            session, host, disabled, spec.get("disabledReason")
        )
        if updated is not None:
            node = node._replace(disabled=updated.disabled, disabled_reason=updated.disabled_reason)
            changed = True
    ratios = _requested_ratios(host, spec)
    if ratios is None or ratios == db_api.compute_node_allocation_ratios(node):
        return node, changed
    if db_api.compute_node_set_allocation_ratios(session, host, ratios) is not None:
        node = node._replace(
            cpu_allocation_ratio=ratios.cpu,
            ram_allocation_ratio=ratios.memory,
            disk_allocation_ratio=ratios.disk,
        )
        changed = True
    return node, changed
