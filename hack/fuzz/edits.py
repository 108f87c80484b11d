"""The building blocks of mutations: edits of a manifest that say which field they touched.

An edit changes a manifest (a plain dict, as it will be sent) in place and returns a
:class:`Mutation`: the field a refusal should name (a dotted JSON path as the apiserver writes
it, ``spec.sshAuthorizedKeys[0]``; for an entry of a map, the map's path), other spellings the
apiserver uses for it, and what was done, short enough to print.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

from manifests import Kind, RunNames


@dataclasses.dataclass(frozen=True)
class Mutation:
    """What an edit did."""

    field: str
    change: str
    #: Other names of the field in the apiserver's messages ("API version" for apiVersion).
    aliases: tuple[str, ...] = ()


@dataclasses.dataclass
class Context:
    """What an edit may draw on: the seeded generator, the run's names, and the kind and
    number of objects of each kind (for references between them)."""

    rng: random.Random
    names: RunNames
    kind: Kind
    counts: dict[str, int]


#: An edit: changes the manifest in place and says what it did.
Edit = Callable[[Context, dict[str, Any]], Mutation]
#: Where a drawn value goes: like an edit, with the value given.
Position = Callable[[Context, dict[str, Any], Any], Mutation]

# RFC 1123 subdomain: what metadata.name must be.
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def short(value: Any) -> str:
    """``value`` for a report line: its JSON (ASCII), cut to about 60 characters, with the
    length of anything longer."""
    text = json.dumps(value)
    if len(text) <= 60:
        return text
    return f"{text[:40]}... ({len(text)} characters of JSON)"


def put(body: dict[str, Any], path: str, value: Any) -> None:
    """Set the dotted ``path`` of ``body`` to ``value``, making (or replacing with) objects on
    the way."""
    *parents, last = path.split(".")
    node = body
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[last] = value


def drop(body: dict[str, Any], path: str) -> None:
    """Remove the dotted ``path`` from ``body`` (nothing when it is not there)."""
    *parents, last = path.split(".")
    node: Any = body
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(last, None)


def own_name(value: str, names: RunNames) -> str:
    """``value`` as a metadata.name: itself when the apiserver must refuse it, else made the
    run's own (``fuzz-<tag>-...``), so that an accepted one cannot collide with another
    object."""
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        return value
    return f"fuzz-{names.tag}-{value}"[:253].rstrip("-.")


def set_to(
    path: str,
    values: Sequence[Any],
    *,
    field: str | None = None,
    first: dict[str, Any] | None = None,
    aliases: tuple[str, ...] = (),
) -> Edit:
    """An edit setting ``path`` to one of ``values`` (a callable value is called with the
    generator to make it); ``first`` sets other paths before, to reach the case wanted."""

    def edit(ctx: Context, body: dict[str, Any]) -> Mutation:
        for other, other_value in (first or {}).items():
            put(body, other, copy.deepcopy(other_value))
        value = ctx.rng.choice(values)
        # A copy: the same list or dict must not end up in two manifests.
        value = value(ctx.rng) if callable(value) else copy.deepcopy(value)
        put(body, path, value)
        return Mutation(field or path, f"{path} = {short(value)}", aliases)

    return edit


def remove(
    path: str, *, first: dict[str, Any] | None = None, aliases: tuple[str, ...] = ()
) -> Edit:
    """An edit removing ``path`` (after setting ``first``)."""

    def edit(ctx: Context, body: dict[str, Any]) -> Mutation:
        del ctx
        for other, other_value in (first or {}).items():
            put(body, other, copy.deepcopy(other_value))
        drop(body, path)
        return Mutation(path, f"{path} removed", aliases)

    return edit


def at(
    path: str, *, field: str | None = None, wrap: Callable[[Any], Any] | None = None
) -> Position:
    """A position: the drawn value (through ``wrap``) at ``path``."""

    def place(ctx: Context, body: dict[str, Any], value: Any) -> Mutation:
        del ctx
        placed = wrap(value) if wrap is not None else value
        put(body, path, placed)
        return Mutation(field or path, f"{path} = {short(placed)}")

    return place


def name_at() -> Position:
    """A position: the drawn value as metadata.name (see :func:`own_name`)."""

    def place(ctx: Context, body: dict[str, Any], value: Any) -> Mutation:
        name = own_name(value, ctx.names) if isinstance(value, str) else value
        put(body, "metadata.name", name)
        return Mutation("metadata.name", f"metadata.name = {short(name)}")

    return place


def entry(map_path: str, *, key: str | None = None, value: str | None = None) -> Position:
    """A position: an entry of the map at ``map_path`` (kept with what it holds), the drawn
    value as its value under ``key``, or as its key with ``value``."""

    def place(ctx: Context, body: dict[str, Any], drawn: Any) -> Mutation:
        del ctx
        *parents, last = map_path.split(".")
        node = body
        for part in parents:
            node = node.setdefault(part, {})
        mapping = node.get(last)
        if not isinstance(mapping, dict):
            mapping = node[last] = {}
        entry_key, entry_value = (key, drawn) if key is not None else (drawn, value)
        mapping[entry_key] = entry_value
        return Mutation(map_path, f"{map_path}[{short(entry_key)}] = {short(entry_value)}")

    return place


def drawn_from(values: Sequence[Any], positions: Sequence[Position]) -> list[Edit]:
    """One edit per position, each putting one of ``values`` there."""

    def edit_for(position: Position) -> Edit:
        def edit(ctx: Context, body: dict[str, Any]) -> Mutation:
            return position(ctx, body, ctx.rng.choice(values))

        return edit

    return [edit_for(position) for position in positions]
