"""EC2's Query protocol, read by botocore's EC2 service model (API version 2016-11-15).

A request is a flat list of ``Name=value`` pairs (the form body of a POST, or the query of a
GET): ``Action``, ``Version`` and the input shape's members, flattened as botocore's
``EC2Serializer`` flattens them. This module turns those pairs back into the nested value of
the action's input shape:

- a member is named by its ``queryName``, else its ``locationName`` with the first letter made
  upper case, else its own name (``Placement.AvailabilityZone``);
- a list is always flattened, its members numbered from 1 (``InstanceId.1``,
  ``Filter.1.Value.2``);
- integers, booleans, timestamps and blobs are decoded by their shape's type.

Building on the model rather than on moto's server-side parser: the model is botocore's public,
versioned data, the same the SDKs serialize from, while moto's parser is an internal of a mock
library that changes between its releases (see docs/ec2.md).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
from collections.abc import Mapping
from typing import Any

from botocore import loaders
from botocore import model as botocore_model

from kubenova.ec2 import errors

API_VERSION = "2016-11-15"
SERVICE = "ec2"


@functools.cache
def service_model() -> Any:
    """botocore's EC2 service model of :data:`API_VERSION` (loaded once: about 0.3 s)."""
    loader = loaders.create_loader()
    description = loader.load_service_model(SERVICE, "service-2", API_VERSION)
    return botocore_model.ServiceModel(description, service_name=SERVICE)


def operation_model(action: str) -> Any:
    """The model of ``action``; InvalidAction when EC2 has no such action."""
    try:
        return service_model().operation_model(action)
    except botocore_model.OperationNotFoundError:
        raise errors.Ec2Error(
            errors.INVALID_ACTION, f"The action {action} is not valid for this web service."
        ) from None


def parse_params(shape: Any, params: Mapping[str, str]) -> dict[str, Any]:
    """The input of an action from its flat ``params`` (``Action`` and ``Version`` aside).

    Members the shape does not name are ignored, as EC2 ignores them; a value of the wrong type
    is InvalidParameterValue naming the parameter."""
    if shape is None:
        return {}
    parsed = _structure(shape, params, _Keys(params), "")
    return parsed or {}


class _Keys:
    """The parameter names, indexed by prefix: what lists and structures look up."""

    def __init__(self, params: Mapping[str, str]) -> None:
        self.names = frozenset(params)

    def under(self, prefix: str) -> bool:
        dotted = prefix + "."
        return any(name.startswith(dotted) for name in self.names)

    def indexes(self, prefix: str) -> list[int]:
        """The list positions present under ``prefix`` (``prefix.N`` or ``prefix.N.…``)."""
        dotted = prefix + "."
        found: set[int] = set()
        for name in self.names:
            if name.startswith(dotted):
                head = name[len(dotted) :].split(".", 1)[0]
                if head.isdigit():
                    found.add(int(head))
        return sorted(found)


def serialized_name(member_shape: Any, member_name: str) -> str:
    """The name a member goes by in EC2's Query parameters (botocore's EC2Serializer rule)."""
    serialization = member_shape.serialization
    if "queryName" in serialization:
        return str(serialization["queryName"])
    if "name" in serialization:
        name = str(serialization["name"])
        return name[0].upper() + name[1:]
    return member_name


def _value(shape: Any, params: Mapping[str, str], keys: _Keys, name: str) -> Any:
    kind = shape.type_name
    if kind == "structure":
        return _structure(shape, params, keys, name + ".")
    if kind == "list":
        return _list(shape, params, keys, name)
    if kind == "map":
        return _map(shape, params, keys, name)
    if name not in params:
        return None
    return _scalar(kind, params[name], name)


def _structure(shape: Any, params: Mapping[str, str], keys: _Keys, prefix: str) -> Any:
    if prefix and not keys.under(prefix[:-1]):
        return None
    result: dict[str, Any] = {}
    for member_name, member_shape in shape.members.items():
        value = _value(
            member_shape, params, keys, prefix + serialized_name(member_shape, member_name)
        )
        if value is not None:
            result[member_name] = value
    return result


def _list(shape: Any, params: Mapping[str, str], keys: _Keys, name: str) -> Any:
    indexes = keys.indexes(name)
    if not indexes:
        return None
    items = [_value(shape.member, params, keys, f"{name}.{index}") for index in indexes]
    return [item for item in items if item is not None]


def _map(shape: Any, params: Mapping[str, str], keys: _Keys, name: str) -> Any:
    entries: dict[str, Any] = {}
    for index in keys.indexes(name):
        key = params.get(f"{name}.{index}.Key")
        if key is not None:
            entries[key] = _value(shape.value, params, keys, f"{name}.{index}.Value")
    return entries or None


def _scalar(kind: str, raw: str, name: str) -> Any:
    try:
        if kind in ("integer", "long"):
            return int(raw)
        if kind in ("float", "double"):
            return float(raw)
        if kind == "boolean":
            lowered = raw.lower()
            if lowered not in ("true", "false"):
                raise ValueError("must be true or false")
            return lowered == "true"
        if kind == "timestamp":
            return datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if kind == "blob":
            return base64.b64decode(raw, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise errors.invalid(name, f"{raw!r} is not a valid {kind} ({exc})") from None
    return raw
