"""The seeded generator of malformed and hostile manifests: each is a valid manifest of one kind
(:mod:`manifests`) with one mutation of one family (:mod:`mutation_tables` lists them).

Each kind's manifests go through its families in turn, so that every family is sent for every
kind once a kind has as many manifests as families; within a family, the seeded generator
picks the edit and the value. The same seed and tag give the same manifests.

Every Instance keeps its node selector on the fuzz's simulated hosts (or one that selects no
host); the generator draws again until :func:`manifests.confinement_problem` finds none.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import manifests
from edits import Context
from manifests import INSTANCE, KINDS, Kind
from mutation_tables import EDITS, families_of

#: How often the generator may draw again for an Instance that would not stay confined.
_MAX_DRAWS = 50


@dataclasses.dataclass(frozen=True)
class Case:
    """One manifest to send, and what was done to it."""

    kind: Kind
    index: int
    family: str
    #: The field a refusal should name, and its other spellings (see ``edits.Mutation``).
    field: str
    aliases: tuple[str, ...]
    change: str
    body: dict[str, Any]


def split(count: int) -> dict[str, int]:
    """How many manifests of each kind make ``count``: as even as can be, the first kinds
    taking what does not divide."""
    share, extra = divmod(count, len(KINDS))
    return {kind.name: share + (1 if i < extra else 0) for i, kind in enumerate(KINDS)}


def generate(seed: int, count: int, tag: str) -> list[Case]:
    """``count`` cases, the same for the same seed and tag: Flavors, Images, ServerGroups,
    then Instances (the order to send them in)."""
    rng = random.Random(seed)
    names = manifests.RunNames(tag)
    counts = split(count)
    cases: list[Case] = []
    for kind in KINDS:
        families = families_of(kind)
        for index in range(counts[kind.name]):
            ctx = Context(rng, names, kind, counts)
            cases.append(_case(ctx, index, families[index % len(families)]))
    return cases


def _case(ctx: Context, index: int, family: str) -> Case:
    choices = EDITS[family][ctx.kind.name]
    for _ in range(_MAX_DRAWS):
        body = manifests.base_manifest(ctx.kind, ctx.names, index)
        mutation = ctx.rng.choice(choices)(ctx, body)
        if ctx.kind is INSTANCE and manifests.confinement_problem(body) is not None:
            continue
        return Case(
            ctx.kind, index, family, mutation.field, mutation.aliases, mutation.change, body
        )
    raise RuntimeError(f"no confined {ctx.kind.name} of family {family} in {_MAX_DRAWS} draws")
