"""Where hostile values go, by kind: the string fields a hostile string (XML, shell, Unicode)
or a name that is no DNS name is put in, and the numbers a negative or huge one is put in."""

from __future__ import annotations

from typing import Any

import edits
import hostile_values as hv
import manifests
from edits import Context, Edit, Mutation, at, drawn_from, entry, name_at
from manifests import FLAVOR, IMAGE, INSTANCE, NOWHERE, PREFIX_LABEL, SERVER_GROUP, Kind

# -- hostile strings where strings go -------------------------------------------------------


def selector_entry(as_key: bool) -> edits.Position:
    """A node selector entry holding the drawn value, beside a prefix no host has."""

    def place(ctx: Context, body: dict[str, Any], value: Any) -> Mutation:
        extra = {value: "x"} if as_key else {"fuzz": value}
        return at("spec.nodeSelector")(ctx, body, {PREFIX_LABEL: NOWHERE, **extra})

    return place


def text_positions(kind: Kind) -> list[edits.Position]:
    """Where ``kind`` has strings: for the XML, shell and Unicode families."""
    common = [
        entry("metadata.annotations", key="fuzz.kubenova.io/note"),
        entry("metadata.labels", key="fuzz-value"),
        entry("metadata.labels", value="x"),
        name_at(),
    ]
    by_kind: dict[str, list[edits.Position]] = {
        FLAVOR.name: [
            at("spec.description"),
            entry("spec.extraSpecs", key="fuzz"),
            entry("spec.extraSpecs", value="x"),
        ],
        IMAGE.name: [
            at("spec.description"),
            at("spec.source.url", wrap=lambda v: f"http://fuzz.invalid/{v}"),
            at("spec.sha256"),
        ],
        SERVER_GROUP.name: [at("spec.policy")],
        INSTANCE.name: [
            at("spec.userData", wrap=lambda v: f"#!/bin/sh\necho {v}\n"),
            at("spec.userData"),
            at(
                "spec.sshAuthorizedKeys",
                field="spec.sshAuthorizedKeys[0]",
                wrap=lambda v: [f"{manifests.BASE_SSH_KEY} {v}"],
            ),
            at("spec.reboot", field="spec.reboot.requestedAt", wrap=lambda v: {"requestedAt": v}),
            selector_entry(as_key=False),
            selector_entry(as_key=True),
            at("spec.flavor"),
            at("spec.image"),
            at("spec.forcedHost"),
            at("spec.hostname"),
            at("spec.availabilityZone"),
            at("spec.serverGroup"),
        ],
    }
    return common + by_kind[kind.name]


def dns_positions(kind: Kind) -> list[edits.Position]:
    """Where ``kind`` has names: for the invalid_dns family."""
    positions: list[edits.Position] = [name_at(), entry("metadata.labels", value="x")]
    if kind is INSTANCE:
        positions += [
            at("spec.hostname"),
            at("spec.serverGroup"),
            at("spec.flavor"),
            at("spec.image"),
            selector_entry(as_key=True),
        ]
    return positions


def generate_name(ctx: Context, body: dict[str, Any]) -> Mutation:
    """No name, and a generateName no generated name can be valid with."""
    body["metadata"].pop("name", None)
    value = ctx.rng.choice(hv.INVALID_DNS_NAMES + hv.SHELL_INJECTION)
    body["metadata"]["generateName"] = value
    return Mutation("metadata.generateName", f"metadata.generateName = {edits.short(value)}")


# -- numbers ---------------------------------------------------------------------------------

#: Negative and huge numbers: past 32 and 64 bits, past a double's integers, fractions.
QUANTITIES: tuple[int | float, ...] = (
    -1,
    0,
    -(2**31),
    2**31,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63) - 1,
    1e308,
    1.5,
)


def quantities(kind: Kind) -> list[Edit]:
    """The quantity family: a negative or huge number in each of ``kind``'s numbers."""
    positions: dict[str, list[edits.Position]] = {
        FLAVOR.name: [at("spec.vcpus"), at("spec.memoryMiB"), at("spec.diskGiB")],
        IMAGE.name: [at("spec.minDiskGiB"), at("spec.minMemoryMiB")],
        SERVER_GROUP.name: [
            at("spec", field="spec.rules.maxServerPerHost", wrap=lambda n: _anti_limit(n))
        ],
        # An Instance has no numbers: numbers where its strings go.
        INSTANCE.name: [
            at("spec.flavor"),
            at("spec.userData"),
            at("spec.reboot", field="spec.reboot.requestedAt", wrap=lambda n: {"requestedAt": n}),
            at("spec.sshAuthorizedKeys", field="spec.sshAuthorizedKeys[0]", wrap=lambda n: [n]),
            selector_entry(as_key=False),
        ],
    }
    return drawn_from(QUANTITIES, positions[kind.name])


def _anti_limit(limit: Any) -> dict[str, Any]:
    return {"policy": "anti-affinity", "rules": {"maxServerPerHost": limit}}
