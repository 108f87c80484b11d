"""DescribeInstances' choice of instances: by id, by filter, and a page at a time.

Filters are EC2's (:mod:`filters`): the ones below, read from each instance as described, and
the tag filters. A page is the instances after the last one of the page before, in the order of
creation (:mod:`paging`); the NextToken names that last instance by its place in the order, so
an instance deleted between two pages does not shift the next page.
"""

from __future__ import annotations

from typing import Any

from kubenova.ec2 import errors, filters, ids, paging

#: The instance filters, each read from an EC2 Instance as DescribeInstances answers it.
FIELDS: dict[str, filters.Read] = {
    "instance-id": lambda view: str(view["InstanceId"]),
    "instance-state-name": lambda view: str(view["State"]["Name"]),
    "instance-state-code": lambda view: str(view["State"]["Code"]),
    "instance-type": lambda view: str(view["InstanceType"]),
    "availability-zone": lambda view: str(view["Placement"]["AvailabilityZone"]),
    "image-id": lambda view: str(view["ImageId"]),
    "private-dns-name": lambda view: str(view["PrivateDnsName"]),
    # None, not "": an instance without an address is not matched by ``*``.
    "private-ip-address": lambda view: view.get("PrivateIpAddress"),
}


def parse_filters(raw: Any) -> list[filters.Filter]:
    """DescribeInstances' Filters: the instance filters and the tag filters."""
    return filters.parse(raw, FIELDS, tag_filters=True)


def require_instance_id(value: str) -> None:
    if not ids.well_formed(value, ids.INSTANCE_PREFIX):
        raise errors.Ec2Error(
            errors.INVALID_INSTANCE_ID_MALFORMED,
            f'Invalid id: "{value}" (expecting "i-" and 17 hex digits)',
        )


def not_found(missing: list[str]) -> errors.Ec2Error:
    quoted = ", ".join(f"'{value}'" for value in missing)
    plural = "s" if len(missing) > 1 else ""
    verb = "do" if len(missing) > 1 else "does"
    return errors.Ec2Error(
        errors.INVALID_INSTANCE_ID_NOT_FOUND, f"The instance ID{plural} {quoted} {verb} not exist"
    )


def page_size(params: dict[str, Any]) -> int | None:
    if params.get("MaxResults") is not None and params.get("InstanceIds"):
        raise errors.invalid("MaxResults", "it cannot be given together with instance IDs")
    return paging.page_size(params.get("MaxResults"))


def order_key(obj: dict[str, Any]) -> tuple[str, str]:
    """An Instance's place in the order of pages: created first, then by name."""
    meta = obj["metadata"]
    return (str(meta.get("creationTimestamp") or ""), str(meta["name"]))


def token_of(key: tuple[str, str]) -> str:
    return paging.token_of(key)


def after_token(token: str) -> tuple[str, str]:
    """The order key a NextToken names; InvalidPaginationToken when it is not one of ours."""
    key = paging.key_of(token, 2)
    if key is None:
        raise errors.Ec2Error(errors.INVALID_PAGINATION_TOKEN, f"Invalid token: {token!r}")
    return (key[0], key[1])
