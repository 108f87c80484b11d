"""Mutations of a manifest's shape, by kind: wrong types, missing required fields, values past
the CRD's bounds, huge values, fields the schema does not have, a wrong apiVersion or kind.
The bounds are the CRDs' in crds/."""

from __future__ import annotations

from typing import Any

import hostile_values as hv
import manifests
from edits import Edit, remove, set_to
from manifests import FLAVOR, IMAGE, INSTANCE, KINDS, NOWHERE, PREFIX_LABEL, SERVER_GROUP, Kind

# -- wrong types, missing fields, bounds ---------------------------------------------------

_OF_TYPE: dict[str, Any] = {
    "string": "a string",
    "integer": 7,
    "number": -1.5,
    "boolean": True,
    "array": [1, "two"],
    "object": {"nested": {"deep": 1}},
    "null": None,
}

_TYPED_FIELDS: dict[str, dict[str, str]] = {
    "common": {"spec": "object", "metadata.labels": "object", "metadata.name": "string"},
    FLAVOR.name: {
        "spec.vcpus": "integer",
        "spec.memoryMiB": "integer",
        "spec.diskGiB": "integer",
        "spec.description": "string",
        "spec.extraSpecs": "object",
    },
    IMAGE.name: {
        "spec.source": "object",
        "spec.source.url": "string",
        "spec.sha256": "string",
        "spec.diskFormat": "string",
        "spec.minDiskGiB": "integer",
        "spec.minMemoryMiB": "integer",
        "spec.architecture": "string",
    },
    SERVER_GROUP.name: {"spec.policy": "string", "spec.rules": "object"},
    INSTANCE.name: {
        "spec.flavor": "string",
        "spec.image": "string",
        "spec.hostname": "string",
        "spec.userData": "string",
        "spec.nodeSelector": "object",
        "spec.serverGroup": "string",
        "spec.powerState": "string",
        "spec.reboot": "object",
        "spec.sshAuthorizedKeys": "array",
    },
}


def wrong_types(kind: Kind) -> list[Edit]:
    """Each typed field of ``kind`` with a value of every other JSON type to draw from."""
    fields = _TYPED_FIELDS["common"] | _TYPED_FIELDS[kind.name]
    return [
        set_to(path, [value for name, value in _OF_TYPE.items() if name != expected])
        for path, expected in fields.items()
    ]


_REBOOT = {"spec.reboot": {"type": "Hard"}}
_REQUIRED: dict[str, list[Edit]] = {
    FLAVOR.name: [remove(p) for p in ("spec", "spec.vcpus", "spec.memoryMiB", "spec.diskGiB")],
    IMAGE.name: [
        remove(p)
        for p in ("spec", "spec.source", "spec.source.url", "spec.sha256", "spec.diskFormat")
    ],
    SERVER_GROUP.name: [remove("spec"), remove("spec.policy")],
    INSTANCE.name: [
        remove("spec"),
        remove("spec.flavor"),
        remove("spec.image"),
        remove("spec.reboot.requestedAt", first=_REBOOT),
        remove("spec.confirmResize.requestedAt", first={"spec.confirmResize": {}}),
    ],
}


def missing(kind: Kind) -> list[Edit]:
    """Each required field of ``kind`` removed."""
    return [*_REQUIRED[kind.name], remove("metadata.name")]


def _over(length: int) -> str:
    return "a" * length


_ANTI = {"spec.policy": "anti-affinity"}
OUT_OF_RANGE: dict[str, list[Edit]] = {
    FLAVOR.name: [
        set_to("spec.vcpus", [0, 257]),
        set_to("spec.memoryMiB", [63, 4194305]),
        set_to("spec.diskGiB", [0, 65537]),
        set_to("spec.description", [_over(256)]),
        set_to("spec.extraSpecs", [{f"k{i}": "v" for i in range(65)}]),
        set_to("spec.extraSpecs", [{"fuzz": _over(256)}]),
    ],
    IMAGE.name: [
        set_to("spec.diskFormat", ["vmdk", "QCOW2", ""]),
        set_to("spec.architecture", ["sparc64"]),
        set_to("spec.hypervisorType", ["xen"]),
        set_to("spec.minDiskGiB", [-1]),
        set_to("spec.minMemoryMiB", [-1]),
        set_to("spec.sha256", ["0" * 63, "A" * 64, "g" * 64]),
        set_to("spec.source.url", ["ftp://fuzz.invalid/x", "file:///etc/passwd", "http://a b"]),
        set_to("spec.source.url", ["http://fuzz.invalid/" + _over(2030)]),
        set_to("spec.description", [_over(256)]),
    ],
    SERVER_GROUP.name: [
        set_to("spec.policy", ["random", "Affinity", ""]),
        set_to("spec.rules.maxServerPerHost", [0], first=_ANTI),
        set_to("spec.rules.maxServerPerHost", [2], first={"spec.policy": "affinity"}),
    ],
    INSTANCE.name: [
        set_to("spec.flavor", ["", _over(254)]),
        set_to("spec.image", ["", _over(254)]),
        set_to("spec.hostname", [_over(64)]),
        set_to("spec.availabilityZone", [_over(64)]),
        set_to("spec.powerState", ["Exploded", "running"]),
        set_to("spec.runStrategy", ["Sometimes"]),
        set_to("spec.reboot", [{"requestedAt": "now", "type": "Gentle"}, {"requestedAt": ""}]),
        set_to("spec.reboot", [{"requestedAt": _over(65)}], field="spec.reboot.requestedAt"),
        set_to("spec.sshAuthorizedKeys", [[manifests.BASE_SSH_KEY] * 17]),
        set_to("spec.sshAuthorizedKeys", [["not-a-key"]], field="spec.sshAuthorizedKeys[0]"),
        set_to(
            "spec.nodeSelector",
            [{PREFIX_LABEL: NOWHERE, **{f"k{i}": "v" for i in range(32)}}],
        ),
        set_to("spec.nodeSelector", [{PREFIX_LABEL: NOWHERE, "fuzz": _over(64)}]),
        set_to("spec.userData", [_over(65537)]),
    ],
}


# -- huge values ----------------------------------------------------------------------------


def huge(kind: Kind) -> list[Edit]:
    """Huge values where ``kind`` has strings (and, for an Instance, at the user data cap)."""
    common = [
        set_to(
            "metadata.annotations", [lambda _: {"fuzz.kubenova.io/huge": hv.huge_text(300_000)}]
        ),
        set_to("metadata.labels", [lambda _: {"fuzz": hv.huge_text(100_000)}]),
        set_to("metadata.name", [lambda _: _over(100_000)]),
    ]
    described = [set_to("spec.description", [lambda _: hv.huge_text(100_000)])]
    by_kind: dict[str, list[Edit]] = {
        FLAVOR.name: described,
        IMAGE.name: [
            *described,
            set_to("spec.source.url", [lambda _: "http://x/" + hv.huge_text(hv.MIB)]),
        ],
        SERVER_GROUP.name: [set_to("spec.policy", [lambda _: hv.huge_text(100_000)])],
        INSTANCE.name: [
            set_to("spec.userData", [lambda _: hv.huge_text(hv.MIB)]),
            # At the cap in characters, which the CRD counts: the multi-byte one is over three
            # times the cap in bytes, which the operator counts.
            set_to(
                "spec.userData", [lambda _: hv.huge_text(65536), lambda _: hv.huge_unicode(65536)]
            ),
            set_to("spec.flavor", [lambda _: hv.huge_text(100_000)]),
            set_to(
                "spec.sshAuthorizedKeys",
                [lambda _: [f"{manifests.BASE_SSH_KEY} {hv.huge_text(100_000)}"]],
                field="spec.sshAuthorizedKeys[0]",
            ),
            set_to(
                "spec.nodeSelector",
                [lambda _: {PREFIX_LABEL: NOWHERE, hv.huge_text(100_000): "x"}],
            ),
            set_to(
                "metadata.annotations",
                [lambda _: {"fuzz.kubenova.io/big": hv.huge_text(200_000)}],
            ),
        ],
    }
    return common + by_kind[kind.name]


# -- fields the schema does not have, apiVersion and kind ------------------------------------


def unknown_fields(kind: Kind) -> list[Edit]:
    """A field ``kind``'s schema does not have, at the top, in spec, in metadata, nested."""
    paths = ["fuzzUnknown", "spec.fuzzUnknown", "metadata.fuzzUnknown"]
    paths += {
        FLAVOR.name: ["status"],
        IMAGE.name: ["status", "spec.source.fuzzUnknown"],
        SERVER_GROUP.name: ["spec.rules.fuzzUnknown"],
        INSTANCE.name: ["spec.reboot.fuzzUnknown"],
    }[kind.name]
    reboot = {"spec.reboot": {"requestedAt": "now"}}
    found = [
        set_to(path, hv.ALL_HOSTILE, first=reboot if "reboot" in path else None) for path in paths
    ]
    if kind in (INSTANCE, SERVER_GROUP):
        # Their status is a subresource: the apiserver drops a status sent with a create.
        found.append(
            set_to("status", [{"phase": "Running", "host": f"{NOWHERE}-001", "memberCount": -1}])
        )
    return found


def api_version_kind(kind: Kind) -> list[Edit]:
    """Another apiVersion or kind, or none."""
    others = [other.name for other in KINDS if other is not kind]
    api_versions = [
        "compute.kubenova.io/v1",
        "compute.kubenova.io/v1beta1",
        "v1",
        "apps/v1",
        "",
        "compute.kubenova.io/v1alpha1/extra",
        "COMPUTE.KUBENOVA.IO/v1alpha1",
    ]
    kinds = [*others, kind.name.lower(), "Pod", "", f"{kind.name} ", "</kind>"]
    # "the API version in the data (v1) does not match ...", "Object 'Kind' is missing in ...",
    # and for a version of the group that is not served, the decoder's 'Instance in version
    # "v1beta1" cannot be handled as a Instance'.
    api_version, kind_ = ("API version", "apiVersion", "in version"), ("Kind",)
    return [
        set_to("apiVersion", api_versions, aliases=api_version),
        set_to("kind", kinds, aliases=kind_),
        remove("apiVersion", aliases=api_version),
        remove("kind", aliases=kind_),
    ]
