"""Mutations of metadata (labels, annotations, finalizers, owner references, namespace,
generateName, timestamps, managed fields, the annotations kopf keeps its state in), and of the
references an Instance makes to the fuzz's other objects."""

from __future__ import annotations

from typing import Any

import edits
import hostile_values as hv
import manifests
from edits import Context, Edit, Mutation, drawn_from, entry, remove, set_to
from manifests import FLAVOR, IMAGE, INSTANCE, SERVER_GROUP, Kind
from value_edits import generate_name

# -- metadata --------------------------------------------------------------------------------

BAD_LABEL_KEYS: tuple[str, ...] = (
    "a/b/c",
    "-x",
    "x" * 64,
    "UPPER_CASE.example.com/x",
    "kubenova.io/",
    "/x",
    "fuzz.kubenova.io/$(reboot)",
    "\u043a\u043b\u044e\u0447",
    "with space",
)
BAD_LABEL_VALUES: tuple[str, ...] = ("$(reboot)", "a" * 64, "-x", "</x>", "with space", "\u00e9")


def _many_labels(ctx: Context, body: dict[str, Any]) -> Mutation:
    """300 valid labels besides the run's: nothing limits their number."""
    del ctx
    body["metadata"]["labels"].update({f"fuzz-{i}": str(i) for i in range(300)})
    return Mutation("metadata.labels", "metadata.labels + 300 labels")


def metadata_abuse(kind: Kind) -> list[Edit]:
    """The metadata_abuse family for ``kind``."""
    found = [
        *drawn_from(BAD_LABEL_KEYS, [entry("metadata.labels", value="x")]),
        *drawn_from(BAD_LABEL_VALUES, [entry("metadata.labels", key="fuzz")]),
        _many_labels,
        *drawn_from(BAD_LABEL_KEYS, [entry("metadata.annotations", value="x")]),
        *drawn_from(hv.ALL_HOSTILE, [entry("metadata.annotations", key="fuzz.kubenova.io/x")]),
        set_to(
            "metadata.annotations",
            [lambda _: {f"fuzz.kubenova.io/a{i}": hv.huge_text(100_000) for i in range(3)}],
        ),
        set_to(
            "metadata.finalizers",
            [["$(reboot)"], ["with space"], ["</x>"], ["fuzz.kubenova.io/" + "a" * 400]],
        ),
        set_to("metadata.namespace", ["default", "kube-system", "</x>"], aliases=("namespace",)),
        generate_name,
        set_to(
            "metadata.ownerReferences",
            [
                [{"apiVersion": "v1", "kind": "Pod", "name": "$(reboot)"}],
                [{"apiVersion": "v1", "kind": "Pod", "name": "x", "uid": "u", "controller": "yes"}],
            ],
            aliases=("ownerReferences",),
        ),
        # "resourceVersion should not be set on objects to be created": the bare names count.
        set_to("metadata.resourceVersion", ["1", "$(reboot)"], aliases=("resourceVersion",)),
        set_to(
            "metadata.creationTimestamp",
            ["$(reboot)", "9999-99-99T99:99:99Z"],
            # The decoder's refusal: 'parsing time "9999-99-99T99:99:99Z": month out of range'
            # (the only time a manifest may carry).
            aliases=("creationTimestamp", "parsing time"),
        ),
        set_to(
            "metadata.managedFields",
            [[{"manager": "$(reboot)", "operation": "Hack", "fieldsType": "FieldsV1"}]],
            aliases=("managedFields",),
        ),
        set_to("metadata.uid", ["$(reboot)", "</uid>"]),
    ]
    if kind is INSTANCE:
        kopf_state = ["$(reboot)", "{not json", '{"started": "</x>", "retries": -1}', "null"]
        found += [
            *drawn_from(
                kopf_state,
                [
                    entry("metadata.annotations", key="kopf.zalando.org/create_instance"),
                    entry(
                        "metadata.annotations", key="kopf.zalando.org/last-handled-configuration"
                    ),
                ],
            )
        ]
    return found


# -- references between the fuzz's objects (Instance) ---------------------------------------


def _fuzzed(kind: Kind, path: str) -> Edit:
    """``path`` naming one of the run's fuzzed objects of ``kind`` (refused or not)."""

    def edit(ctx: Context, body: dict[str, Any]) -> Mutation:
        name = ctx.names.object_name(kind, ctx.rng.randrange(max(1, ctx.counts[kind.name])))
        edits.put(body, path, name)
        return Mutation(path, f"{path} = {edits.short(name)} (fuzzed)")

    return edit


def _missing_object(path: str) -> Edit:
    """``path`` naming an object of the run that is never created."""

    def edit(ctx: Context, body: dict[str, Any]) -> Mutation:
        name = f"fuzz-{ctx.names.tag}-missing"
        edits.put(body, path, name)
        return Mutation(path, f"{path} = {edits.short(name)} (no such object)")

    return edit


def _base_group(ctx: Context, body: dict[str, Any]) -> Mutation:
    """The valid ServerGroup the run creates first."""
    edits.put(body, "spec.serverGroup", ctx.names.server_group)
    return Mutation("spec.serverGroup", f"spec.serverGroup = {ctx.names.server_group}")


REFERENCES: list[Edit] = [
    _fuzzed(FLAVOR, "spec.flavor"),
    _fuzzed(IMAGE, "spec.image"),
    _fuzzed(SERVER_GROUP, "spec.serverGroup"),
    _base_group,
    _missing_object("spec.flavor"),
    _missing_object("spec.image"),
    _missing_object("spec.serverGroup"),
    set_to("spec.availabilityZone", ["fuzz-nowhere", "nova"]),
    set_to("spec.forcedHost", [f"{manifests.SIM_PREFIX}-003", f"{manifests.SIM_PREFIX}-999"]),
    set_to("spec.powerState", ["Stopped", "Paused", "Suspended"]),
    set_to("spec.runStrategy", ["Manual"]),
    set_to("spec.reboot", [{"requestedAt": "2020-01-01T00:00:00Z", "type": "Hard"}]),
    set_to("spec.confirmResize", [{"requestedAt": "2020-01-01T00:00:00Z"}]),
    remove("spec.hostname"),
    remove("spec.userData"),
    remove("spec.sshAuthorizedKeys"),
]
