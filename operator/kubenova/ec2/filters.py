"""EC2's ``Filters``, as every Describe action takes them: within one filter any value may
match, and every filter must match. A value may hold wildcards (:mod:`wildcards`).

Each action names the filters it serves, each read from what the action describes (the
dictionary it answers with, keyed by botocore's output shape); a filter it does not serve is
refused by name before anything is read, rather than ignored, which would describe more than
was asked for. The tag filters are read from that dictionary's ``Tags`` the same way for every
action that takes them:

- ``tag:KEY``: a tag KEY whose value is one of the values (KEY itself is taken as it is);
- ``tag-key``: a tag with one of these keys, whatever its value;
- ``tag-value``: a tag with one of these values, whatever its key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn, TypeVar

from kubenova.ec2 import errors, wildcards

View = Mapping[str, Any]
#: What a filter compares its values with: one text, several (any may match), or none.
Read = Callable[[View], str | Iterable[str] | None]
Described = TypeVar("Described", bound=Mapping[str, Any])

TAG_PREFIX = "tag:"
TAG_FILTERS = ("tag:KEY", "tag-key", "tag-value")


@dataclasses.dataclass(frozen=True)
class Filter:
    name: str
    read: Read
    patterns: tuple[wildcards.Pattern, ...]

    def passes(self, view: View) -> bool:
        read = self.read(view)
        texts = [read] if isinstance(read, str) else list(read or ())
        return any(pattern.matches(text) for text in texts for pattern in self.patterns)


def parse(raw: Any, fields: Mapping[str, Read], *, tag_filters: bool = False) -> list[Filter]:
    """The request's Filters, each with what it reads; InvalidParameterValue naming a filter
    that is not in ``fields`` (nor a tag filter, when ``tag_filters``)."""
    parsed = []
    for entry in raw or []:
        name = str(entry.get("Name") or "")
        read = fields.get(name)
        if read is None and tag_filters:
            read = _tag_read(name)
        if read is None:
            refuse_filter(name, (*fields, *(TAG_FILTERS if tag_filters else ())))
        values = tuple(wildcards.Pattern(str(value)) for value in entry.get("Values") or [])
        parsed.append(Filter(name, read, values))
    return parsed


def passes(view: View, parsed: Iterable[Filter]) -> bool:
    return all(entry.passes(view) for entry in parsed)


def chosen(views: Iterable[Described], parsed: list[Filter]) -> list[Described]:
    """The ``views`` that pass every filter, in their order."""
    return [view for view in views if passes(view, parsed)]


def refuse_filter(name: str, supported: Iterable[str]) -> NoReturn:
    raise errors.invalid(
        "Filter", f"the filter '{name}' is not supported (only {', '.join(supported)})"
    )


def _tag_read(name: str) -> Read | None:
    if name == "tag-key":
        return lambda view: list(_tags(view))
    if name == "tag-value":
        return lambda view: list(_tags(view).values())
    if name.startswith(TAG_PREFIX) and len(name) > len(TAG_PREFIX):
        key = name.removeprefix(TAG_PREFIX)
        return lambda view: _tags(view).get(key)
    return None


def _tags(view: View) -> dict[str, str]:
    return {str(tag["Key"]): str(tag["Value"]) for tag in view.get("Tags") or []}
