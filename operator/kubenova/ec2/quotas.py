"""Kubernetes' object-count quota on Instances, as EC2's instance limit.

A ResourceQuota with ``count/instances.compute.kubenova.io`` in its ``spec.hard`` limits how
many Instances its namespace holds: the kube-apiserver's quota admission refuses a create past
it with 403 Forbidden, "exceeded quota: NAME, requested: ..., used: ..., limited: ...". EC2
calls that ``InstanceLimitExceeded``, and launches as many instances as the limit allows when
that is at least MinCount. So RunInstances reads the namespace's quotas first
(:func:`allowed`): fewer than MinCount left is InstanceLimitExceeded with nothing made, and
MaxCount is cut to the room left. A create the kube-apiserver refuses anyway (another writer
took the room meanwhile) is recognised by :func:`refusal`; any other 403 is not this.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Final

from kubernetes.client import exceptions as k8s_exceptions
from kubernetes.utils import parse_quantity

from kubenova.ec2 import errors
from kubenova.k8s import resources

#: The quota's name for the number of Instances in a namespace.
INSTANCE_COUNT: Final = f"count/{resources.INSTANCES}.{resources.GROUP}"
_EXCEEDED: Final = "exceeded quota: "


@dataclasses.dataclass(frozen=True)
class InstanceQuota:
    """One ResourceQuota's limit on Instances and what is used of it."""

    name: str
    used: int
    limited: int

    @property
    def left(self) -> int:
        return max(0, self.limited - self.used)

    def exceeded(self, requested: int) -> str:
        """The quota admission's own words for ``requested`` Instances more than it allows."""
        return (
            f"{_EXCEEDED}{self.name}, requested: {INSTANCE_COUNT}={requested}, "
            f"used: {INSTANCE_COUNT}={self.used}, limited: {INSTANCE_COUNT}={self.limited}"
        )


def instance_quotas(quota_objects: list[dict[str, Any]]) -> list[InstanceQuota]:
    """The quotas among ``quota_objects`` that count Instances.

    A quota with scopes counts no Instance (the kube-apiserver's object-count evaluator
    matches no scope), so it is left out. The limit is ``spec.hard`` (what admission
    enforces once the quota controller has copied it into the status); the use is
    ``status.used``, which admission updates with every create it lets through.
    """
    found = []
    for quota in quota_objects:
        spec = quota.get("spec") or {}
        if spec.get("scopes") or spec.get("scopeSelector"):
            continue
        hard = (spec.get("hard") or {}).get(INSTANCE_COUNT)
        if hard is None:
            continue
        used = ((quota.get("status") or {}).get("used") or {}).get(INSTANCE_COUNT, "0")
        found.append(
            InstanceQuota(
                name=str(quota["metadata"]["name"]),
                used=_count(used),
                limited=_count(hard),
            )
        )
    return found


def _count(quantity: Any) -> int:
    """A quota's figure ("5", or "1k" as a quantity may also say) as a number."""
    return int(parse_quantity(str(quantity)))  # type: ignore[no-untyped-call]


def allowed(quota_objects: list[dict[str, Any]], minimum: int, maximum: int) -> int:
    """How many of ``maximum`` Instances the quotas let the namespace make;
    InstanceLimitExceeded, in the quota's words, when fewer than ``minimum``."""
    quotas = instance_quotas(quota_objects)
    if not quotas:
        return maximum
    tightest = min(quotas, key=lambda quota: (quota.left, quota.name))
    if tightest.left < minimum:
        raise errors.Ec2Error(errors.INSTANCE_LIMIT_EXCEEDED, tightest.exceeded(minimum))
    return min(maximum, tightest.left)


def refusal(failed: k8s_exceptions.ApiException) -> errors.Ec2Error | None:
    """InstanceLimitExceeded for the kube-apiserver's quota refusal of a create, with the
    quota's message; None for every other refusal, other 403s included."""
    if failed.status != 403:
        return None
    try:
        status = json.loads(failed.body or "")
    except ValueError:
        return None
    if not isinstance(status, dict) or status.get("reason") != "Forbidden":
        return None
    message = str(status.get("message") or "")
    # "instances.compute.kubenova.io "NAME" is forbidden: exceeded quota: ..." names an
    # object the EC2 user never asked for by name: the quota's part is what says why.
    at = message.find(_EXCEEDED)
    if at < 0:
        return None
    return errors.Ec2Error(errors.INSTANCE_LIMIT_EXCEEDED, message[at:])
