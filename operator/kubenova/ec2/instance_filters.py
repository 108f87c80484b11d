"""DescribeInstances' choice of instances: by id, by filter, and a page at a time.

Filters are EC2's: within one filter any value may match, and every filter must match.
A page is the instances after the last one of the page before, in the order of creation; the
NextToken names that last instance by its place in the order, so an instance deleted between
two pages does not shift the next page.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any, NoReturn

from kubenova.ec2 import errors, ids

#: EC2's bounds of MaxResults for DescribeInstances.
MIN_RESULTS = 5
MAX_RESULTS = 1000

View = dict[str, Any]

_FILTERS: dict[str, Callable[[View], str]] = {
    "instance-id": lambda view: str(view["InstanceId"]),
    "instance-state-name": lambda view: str(view["State"]["Name"]),
    "instance-state-code": lambda view: str(view["State"]["Code"]),
    "instance-type": lambda view: str(view["InstanceType"]),
    "availability-zone": lambda view: str(view["Placement"]["AvailabilityZone"]),
    "image-id": lambda view: str(view["ImageId"]),
    "private-dns-name": lambda view: str(view["PrivateDnsName"]),
    "private-ip-address": lambda view: str(view.get("PrivateIpAddress") or ""),
}


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


_TAG_FILTERS = ("tag:KEY", "tag-key", "tag-value")


def matches(view: View, filters: list[dict[str, Any]]) -> bool:
    """Whether ``view`` passes every filter (each an EC2 ``Filter``: Name and Values)."""
    for entry in filters:
        name = str(entry.get("Name") or "")
        values = [str(value) for value in entry.get("Values") or []]
        if name.startswith("tag:") or name in _TAG_FILTERS:
            if not _tag_matches(view, name, values):
                return False
            continue
        read = _FILTERS.get(name)
        if read is None:
            refuse_filter(name, (*_FILTERS, *_TAG_FILTERS))
        if read(view) not in values:
            return False
    return True


def _tag_matches(view: View, name: str, values: list[str]) -> bool:
    """EC2's tag filters: ``tag:KEY`` (a tag KEY with one of the values), ``tag-key`` (a tag
    with one of these keys, whatever its value), ``tag-value`` (one of these values, whatever
    its key)."""
    tagged = {str(tag["Key"]): str(tag["Value"]) for tag in view.get("Tags") or []}
    if name == "tag-key":
        return any(key in values for key in tagged)
    if name == "tag-value":
        return any(value in values for value in tagged.values())
    key = name.removeprefix("tag:")
    return key in tagged and tagged[key] in values


def refuse_filter(name: str, supported: tuple[str, ...]) -> NoReturn:
    raise errors.invalid(
        "Filter", f"the filter '{name}' is not supported (only {', '.join(supported)})"
    )


def page_size(params: dict[str, Any]) -> int | None:
    raw = params.get("MaxResults")
    if raw is None:
        return None
    if params.get("InstanceIds"):
        raise errors.invalid("MaxResults", "it cannot be given together with instance IDs")
    if not MIN_RESULTS <= int(raw) <= MAX_RESULTS:
        raise errors.invalid(
            "MaxResults", f"{raw} is out of range: it must be from {MIN_RESULTS} to {MAX_RESULTS}"
        )
    return int(raw)


def order_key(obj: dict[str, Any]) -> tuple[str, str]:
    """An Instance's place in the order of pages: created first, then by name."""
    meta = obj["metadata"]
    return (str(meta.get("creationTimestamp") or ""), str(meta["name"]))


def token_of(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def after_token(token: str) -> tuple[str, str]:
    """The order key a NextToken names; InvalidPaginationToken when it is not one of ours."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error):
        decoded = None
    if (
        not isinstance(decoded, list)
        or len(decoded) != 2
        or not all(isinstance(part, str) for part in decoded)
    ):
        raise errors.Ec2Error(errors.INVALID_PAGINATION_TOKEN, f"Invalid token: {token!r}")
    return (decoded[0], decoded[1])
