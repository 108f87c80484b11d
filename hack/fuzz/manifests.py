"""The valid manifests the fuzz starts from, one per kind, and the rule that keeps every
Instance it sends on its own simulated hosts.

The shapes follow the CRDs in crds/ (compute.kubenova.io/v1alpha1). Every name carries the
run's tag, so that nothing a run creates can collide with another object, and every object
carries the label :data:`RUN_LABEL` with the tag.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

GROUP = "compute.kubenova.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: The label every simulated host carries (hack/sim-hosts.sh), and the fuzz's hosts' value.
PREFIX_LABEL = "kubenova.io/sim-prefix"
SIM_PREFIX = "fuzz"
#: A value of :data:`PREFIX_LABEL` no host has: what a mutated node selector keeps, so that it
#: selects nothing.
NOWHERE = "fuzz-none"
#: Names the run's tag on everything it creates.
RUN_LABEL = "kubenova.io/fuzz-run"


@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind of object the fuzz sends."""

    name: str
    plural: str
    namespaced: bool
    #: The letter in its objects' names (fuzz-<tag>-f0001).
    letter: str


FLAVOR = Kind("Flavor", "flavors", namespaced=False, letter="f")
IMAGE = Kind("Image", "images", namespaced=False, letter="i")
SERVER_GROUP = Kind("ServerGroup", "servergroups", namespaced=True, letter="g")
INSTANCE = Kind("Instance", "instances", namespaced=True, letter="v")

#: In the order they are sent: what an Instance refers to exists before it.
KINDS: tuple[Kind, ...] = (FLAVOR, IMAGE, SERVER_GROUP, INSTANCE)
KIND_BY_NAME = {kind.name: kind for kind in KINDS}

#: The user data of a valid Instance.
BASE_USER_DATA = "#!/bin/sh\necho fuzz\n"
#: A public key of the form spec.sshAuthorizedKeys accepts.
BASE_SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzz fuzz"

# A DNS name no host can have: anything but letters, digits, dots, dashes and underscores.
_NOT_A_HOST_NAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclasses.dataclass(frozen=True)
class RunNames:
    """The names of the objects the run creates valid before the fuzzed ones, which fuzzed
    Instances refer to."""

    tag: str

    @property
    def flavor(self) -> str:
        return f"fuzz-{self.tag}-flavor"

    @property
    def image(self) -> str:
        return f"fuzz-{self.tag}-image"

    @property
    def server_group(self) -> str:
        return f"fuzz-{self.tag}-group"

    def object_name(self, kind: Kind, index: int) -> str:
        """The name of the ``index``-th fuzzed object of ``kind``."""
        return f"fuzz-{self.tag}-{kind.letter}{index:04d}"


def base_manifest(kind: Kind, names: RunNames, index: int) -> dict[str, Any]:
    """A valid manifest of ``kind``: what a mutation starts from."""
    metadata: dict[str, Any] = {
        "name": names.object_name(kind, index),
        "labels": {RUN_LABEL: names.tag},
    }
    spec: dict[str, Any]
    if kind is FLAVOR:
        spec = {"vcpus": 1, "memoryMiB": 64, "diskGiB": 1, "description": "fuzz"}
    elif kind is IMAGE:
        spec = {
            "source": {"url": "http://127.0.0.1:8089/fuzz.qcow2"},
            "sha256": "0" * 64,
            "diskFormat": "qcow2",
            "description": "fuzz",
        }
    elif kind is SERVER_GROUP:
        spec = {"policy": "soft-anti-affinity"}
    else:
        spec = {
            "flavor": names.flavor,
            "image": names.image,
            "hostname": "fuzz",
            "userData": BASE_USER_DATA,
            "sshAuthorizedKeys": [BASE_SSH_KEY],
            "nodeSelector": {PREFIX_LABEL: SIM_PREFIX},
        }
    return {"apiVersion": API_VERSION, "kind": kind.name, "metadata": metadata, "spec": spec}


def confinement_problem(body: dict[str, Any]) -> str | None:
    """Why an Instance manifest might land somewhere but the fuzz's simulated hosts; None when
    it cannot.

    It cannot when its node selector asks for :data:`PREFIX_LABEL` = ``fuzz`` (or a value no
    host has, ``fuzz-none...``) and its forced host, if any, is a fuzz host or no host name at
    all (a forced host skips the node selector). A manifest the apiserver must refuse whatever
    else it holds (its spec or node selector of a type other than an object, or no spec) is
    confined as well. A null is not: the apiserver drops null fields, so a null node selector
    would be no selector.
    """
    if "spec" not in body:
        return None  # spec is required
    spec = body["spec"]
    if spec is None:
        return "spec is null (dropped, so the body would have no spec)"
    if not isinstance(spec, dict):
        return None  # not an object: refused
    selector = spec.get("nodeSelector")
    if selector is None:
        return "spec.nodeSelector is missing or null"
    if isinstance(selector, dict):
        value = selector.get(PREFIX_LABEL)
        if not isinstance(value, str) or not (value == SIM_PREFIX or value.startswith(NOWHERE)):
            return f"spec.nodeSelector[{PREFIX_LABEL}] is {value!r}, not {SIM_PREFIX!r}"
    forced = spec.get("forcedHost")
    if not isinstance(forced, str):
        return None  # none (a null is dropped), or of another type: refused
    if re.fullmatch(rf"{SIM_PREFIX}-\d{{3}}", forced) or _NOT_A_HOST_NAME.search(forced):
        return None
    return f"spec.forcedHost {forced!r} could name a real host"
