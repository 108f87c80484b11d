"""Placement's rules, written once: how much of a host can be allocated, whether a request
fits, what a server group's hard policy allows, and the words a refusal is counted under.

Three places ask them. The scheduler's filters ask of the cached host states which hosts to
try; the database claim asks of the rows it locks whether the host really takes the request
(:mod:`kubenova.db.claims` builds its conditional UPDATE from :func:`allocatable` on columns);
the Hypervisor status shows what is allocatable. Because the filter and the claim answer with
the same words, "0/5 hosts: 3 insufficient memory, 2 anti-affinity" counts hosts rejected by
either.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Final, Literal, NamedTuple, TypeVar, get_args, overload

# -- resources ---------------------------------------------------------------------------


class AllocationRatios(NamedTuple):
    """How far claims may overcommit each resource of one host (Nova's per compute node
    ``cpu_allocation_ratio``, ``ram_allocation_ratio`` and ``disk_allocation_ratio``)."""

    cpu: float
    memory: float
    disk: float


#: A host's ratios until an administrator sets its own (Nova's ``initial_*_allocation_ratio``
#: options; the compute_nodes columns default to the same).
DEFAULT_ALLOCATION_RATIOS: Final = AllocationRatios(cpu=4.0, memory=1.0, disk=1.0)
#: The largest ratio a Hypervisor accepts. Nova sets no bound; past a thousand a typo is
#: likelier than intent, and the claim's arithmetic stays far from overflow.
MAX_ALLOCATION_RATIO: Final = 1000.0

_Amount = TypeVar("_Amount")


@overload
def allocatable(capacity: float, reserved: float, ratio: float) -> float: ...
@overload
def allocatable(capacity: _Amount, reserved: Any, ratio: Any) -> _Amount: ...
def allocatable(capacity: Any, reserved: Any, ratio: Any) -> Any:
    """What claims may hold of one resource: capacity less what is reserved for the host,
    times the allocation ratio (Nova's placement inventory: ``(total - reserved) *
    allocation_ratio``). Numbers, or SQL column expressions for the claim's UPDATE."""
    return (capacity - reserved) * ratio


#: Why a host cannot take a request: no room for one resource (checked memory first, then
#: vCPU, then disk), disabled by an administrator, or not registered (any more).
REFUSED_NO_MEMORY: Final = "insufficient memory"
REFUSED_NO_VCPU: Final = "insufficient vcpu"
REFUSED_NO_DISK: Final = "insufficient disk"
REFUSED_DISABLED: Final = "disabled"
REFUSED_UNKNOWN_HOST: Final = "not registered"


def missing_resource(*, memory_fits: bool, vcpus_fit: bool, disk_fits: bool) -> str | None:
    """The refusal for the first resource that does not fit, in the order filters and claims
    both name them; None when all three fit."""
    if not memory_fits:
        return REFUSED_NO_MEMORY
    if not vcpus_fit:
        return REFUSED_NO_VCPU
    if not disk_fits:
        return REFUSED_NO_DISK
    return None


# -- server groups -----------------------------------------------------------------------

ServerGroupPolicy = Literal["affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity"]
POLICY_AFFINITY: Final = "affinity"
POLICY_ANTI_AFFINITY: Final = "anti-affinity"
POLICY_SOFT_AFFINITY: Final = "soft-affinity"
POLICY_SOFT_ANTI_AFFINITY: Final = "soft-anti-affinity"
#: Nova's four policies, in Nova's order.
SERVER_GROUP_POLICIES: Final[tuple[str, ...]] = get_args(ServerGroupPolicy)
#: The policies that refuse a host; the soft ones only weigh (see the scheduler's weighers).
HARD_POLICIES: Final = frozenset({POLICY_AFFINITY, POLICY_ANTI_AFFINITY})
#: Nova's limit of an anti-affinity group without a ``max_server_per_host`` rule (API
#: microversion 2.64).
DEFAULT_MAX_SERVER_PER_HOST: Final = 1


def anti_affinity_allows(members_on_host: int, max_server_per_host: int | None) -> bool:
    """Whether a host holding ``members_on_host`` of the group's members takes one more."""
    return members_on_host < (max_server_per_host or DEFAULT_MAX_SERVER_PER_HOST)


def affinity_allows(occupied_hosts: Collection[str], host: str) -> bool:
    """Whether ``host`` may take a member: the first member goes anywhere, every later one
    where a member already is (``occupied_hosts``: the hosts holding at least one)."""
    return not occupied_hosts or host in occupied_hosts


def policy_refusal(
    policy: str, max_server_per_host: int | None, member_hosts: dict[str, int], host: str
) -> str | None:
    """Why the group's policy refuses one more member on ``host`` (a sentence for the log),
    or None when it allows it. ``member_hosts`` counts the group's *other* members per host.
    A refusal is counted under the policy's name, as the filters count theirs."""
    if policy == POLICY_ANTI_AFFINITY:
        here = member_hosts.get(host, 0)
        if not anti_affinity_allows(here, max_server_per_host):
            limit = max_server_per_host or DEFAULT_MAX_SERVER_PER_HOST
            return f"anti-affinity: {host} already holds {here} member(s), at most {limit}"
    elif policy == POLICY_AFFINITY:
        occupied = {h for h, count in member_hosts.items() if count > 0}
        if not affinity_allows(occupied, host):
            return f"affinity: members are on {', '.join(sorted(occupied))}, not on {host}"
    return None
