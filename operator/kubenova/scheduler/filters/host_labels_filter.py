"""HostLabelsFilter: the host carries the labels the request and its flavor ask for.

Two sources, both exact matches against the Hypervisor's labels:

- the instance's ``nodeSelector`` (as a Pod's), rejected as "node selector";
- the flavor's extra specs, rejected as "flavor extra specs". As Nova's
  AggregateInstanceExtraSpecsFilter, an unscoped key or one scoped
  ``aggregate_instance_extra_specs:`` is a host requirement (the scope is stripped); a key
  with any other scope (``hw:cpu_policy``, ``quota:disk_read_bytes_sec``) configures
  something else and is not matched. Kubernetes label keys cannot contain ":", so such a
  key could never match a label anyway. Nova's value operators (``<in>``, ``>=``...) are
  not supported: a value must equal the label.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

from kubenova.scheduler.filters.base import PASS, BaseHostFilter, FilterContext, FilterResult
from kubenova.scheduler.host_state import HostState, RequestSpec

LOG = logging.getLogger(__name__)

NODE_SELECTOR: Final = FilterResult.reject("node selector")
EXTRA_SPECS: Final = FilterResult.reject("flavor extra specs")

#: The one extra-spec scope that names a host requirement (Nova's).
HOST_SCOPE: Final = "aggregate_instance_extra_specs"


def host_requirement(key: str) -> str | None:
    """The label an extra spec key requires, or None when the key is not about the host."""
    scope, sep, rest = key.partition(":")
    if not sep:
        return key
    return rest if scope == HOST_SCOPE else None


def _mismatch(labels: Mapping[str, str], wanted: Mapping[str, str], scoped: bool) -> str | None:
    """The first wanted key whose label is missing or different, or None."""
    for key, value in wanted.items():
        label = host_requirement(key) if scoped else key
        if label is not None and labels.get(label) != value:
            return key
    return None


class HostLabelsFilter(BaseHostFilter):
    """Reject a host whose labels miss the node selector or the flavor's extra specs."""

    name = "HostLabelsFilter"

    def host_passes(
        self, host_state: HostState, spec: RequestSpec, context: FilterContext
    ) -> FilterResult:
        del context
        labels = host_state.labels
        if spec.node_selector:
            key = _mismatch(labels, spec.node_selector, scoped=False)
            if key is not None:
                LOG.debug("%s: label %s does not match the node selector", host_state.host, key)
                return NODE_SELECTOR
        if spec.flavor_extra_specs:
            key = _mismatch(labels, spec.flavor_extra_specs, scoped=True)
            if key is not None:
                LOG.debug("%s: label for extra spec %s does not match", host_state.host, key)
                return EXTRA_SPECS
        return PASS
