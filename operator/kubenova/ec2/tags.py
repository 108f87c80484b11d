"""EC2 tags: how they are written on a Kubenova object, and EC2's rules for them.

EC2 lets a tag's key and value hold characters a Kubernetes label refuses (spaces, ``*``, any
Unicode; keys up to 128 characters, values up to 256), so tags are not labels: a resource's tags
are one JSON object, ``{"key": "value", …}``, held whole in the annotation
``ec2.kubenova.io/tags`` of an Instance (and in one entry of a ConfigMap for images, see
:mod:`tag_store`). JSON gives back exactly the strings it was given, whatever they hold.

One annotation for all the tags means a change is read, changed and written back; the write
carries the resourceVersion it read, so a concurrent change makes it fail (409) and it is done
again on what is there now, rather than one tag silently replacing another (:mod:`tag_store`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from kubenova.ec2 import errors

LOG = logging.getLogger(__name__)

TAGS_ANNOTATION = "ec2.kubenova.io/tags"
#: EC2's limits: tags per resource, and the lengths of a key and of a value.
MAX_TAGS = 50
MAX_KEY = 128
MAX_VALUE = 256
#: Keys EC2 keeps for AWS itself, refused from users.
RESERVED_PREFIX = "aws:"
TAG_LIMIT_EXCEEDED = "TagLimitExceeded"

Tags = dict[str, str]


def decode(raw: Any) -> Tags:
    """The tags a stored JSON object names; none when there is nothing readable (an annotation
    someone else wrote badly does not stop the instance from being described)."""
    if not isinstance(raw, str) or not raw:
        return {}
    try:
        loaded = json.loads(raw)
    except ValueError:
        LOG.warning("ignoring tags that are not JSON: %.80r", raw)
        return {}
    if not isinstance(loaded, dict):
        return {}
    return {str(key): str(value) for key, value in loaded.items() if isinstance(value, str)}


def encode(tags: Tags) -> str | None:
    """The stored form of ``tags``; None (the annotation removed) when there are none."""
    if not tags:
        return None
    return json.dumps(dict(sorted(tags.items())), ensure_ascii=False, separators=(",", ":"))


def of_object(obj: dict[str, Any]) -> Tags:
    return decode((obj["metadata"].get("annotations") or {}).get(TAGS_ANNOTATION))


def as_output(tags: Tags) -> list[dict[str, str]]:
    """EC2's TagList, by key."""
    return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]


def parse(raw: Any, parameter: str, values_required: bool) -> dict[str, str | None]:
    """The tags of a request's ``Tag.N.Key``/``Tag.N.Value`` list, checked by EC2's rules;
    a value left out is None (DeleteTags: whatever the value), else "" when ``values_required``
    (CreateTags: EC2 makes a tag without a value an empty one)."""
    parsed: dict[str, str | None] = {}
    for index, entry in enumerate(raw or [], start=1):
        key = entry.get("Key") if isinstance(entry, dict) else None
        if key is None:
            raise errors.missing(f"{parameter}.{index}.Key")
        value = entry.get("Value")
        require_key(str(key))
        if value is not None and len(str(value)) > MAX_VALUE:
            raise errors.invalid(
                f"{parameter}.{index}.Value",
                f"the value of the tag '{key}' is longer than {MAX_VALUE} characters",
            )
        parsed[str(key)] = str(value) if value is not None else ("" if values_required else None)
    return parsed


def require_key(key: str) -> None:
    if not 1 <= len(key) <= MAX_KEY:
        raise errors.invalid("Tag.Key", f"a tag key has 1 to {MAX_KEY} characters: '{key}'")
    if key.lower().startswith(RESERVED_PREFIX):
        raise errors.invalid(
            "Tag.Key",
            f"the tag '{key}': keys starting with '{RESERVED_PREFIX}' are reserved for AWS",
        )


def require_count(tags: Tags, resource_id: str) -> None:
    if len(tags) > MAX_TAGS:
        raise errors.Ec2Error(
            TAG_LIMIT_EXCEEDED,
            f"The maximum number of tags per resource is {MAX_TAGS}; {resource_id} would have"
            f" {len(tags)}.",
        )


def from_specifications(raw: Any, resource_type: str) -> Tags:
    """The tags TagSpecifications give the ``resource_type`` an action makes (RunInstances'
    instances, CreateImage's image); a specification for a resource Kubenova does not make (a
    volume, a network interface, an EBS snapshot) is refused by name rather than dropped
    silently."""
    tags: Tags = {}
    for index, spec in enumerate(raw or [], start=1):
        kind = str(spec.get("ResourceType") or "")
        if kind != resource_type:
            raise errors.invalid(
                f"TagSpecification.{index}.ResourceType",
                f"only '{resource_type}' resources can be tagged here, not '{kind}'",
            )
        given = parse(spec.get("Tags"), f"TagSpecification.{index}.Tag", values_required=True)
        tags.update({key: value or "" for key, value in given.items()})
    require_count(tags, f"the {resource_type}")
    return tags
