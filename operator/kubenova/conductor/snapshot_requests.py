"""What a snapshot is made of, apart from its road (:mod:`kubenova.conductor.snapshots`): the
InstanceSnapshot as the handler hands it over, the words of its status, the settings, the
upload's name on the image server, and the Image a finished snapshot becomes."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, Protocol

from kubenova.conductor import instance_status
from kubenova.db import models
from kubenova.k8s import resources
from kubenova.rpc import payloads

#: The instance action, as Nova names it.
ACTION = "createImage"
KIND = "InstanceSnapshot"

IN_PROGRESS = "InProgress"
SUCCEEDED = "Succeeded"
FAILED = "Failed"

#: The condition that tells whether the Image is made.
READY = "Ready"
REFUSED = "InvalidState"
INSTANCE_NOT_FOUND = "InstanceNotFound"
#: The instance was deleted while its snapshot was taken: no Image (Nova's snapshot of a
#: server deleted meanwhile fails, and its image is deleted).
INSTANCE_DELETED = "InstanceDeleted"
IMAGE_EXISTS = "ImageExists"
SNAPSHOT_FAILED = "SnapshotFailed"

#: Labels of the Image a snapshot makes: which instance it was taken of.
SNAPSHOT_OF_LABEL = f"{resources.GROUP}/snapshot-of"
SNAPSHOT_OF_UID_ANNOTATION = f"{resources.GROUP}/snapshot-of-uid"
SNAPSHOT_ANNOTATION = f"{resources.GROUP}/instance-snapshot"

MESSAGE_MAX = 1024
#: The local stack's image server (hack/guest/serve.sh).
DEFAULT_IMAGE_SERVER_URL = "http://127.0.0.1:8089/"


def request_id_of(snapshot_uid: str) -> str:
    """The request id of the snapshot an InstanceSnapshot asks for."""
    return f"req-{snapshot_uid}"


@dataclasses.dataclass(frozen=True)
class SnapshotRequest:
    """One InstanceSnapshot object, as the handler sees it."""

    namespace: str
    name: str
    uid: str
    generation: int
    instance: str
    image_name: str
    status: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def request_id(self) -> str:
        return request_id_of(self.uid)

    def reference(self) -> dict[str, Any]:
        """What an Event needs to name the object."""
        return {
            "apiVersion": resources.API_VERSION,
            "kind": KIND,
            "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid},
        }


class SnapshotObjects(Protocol):
    """The apiserver calls of snapshots (``kubenova.k8s.snapshots.SnapshotObjectsClient``)."""

    def get_instance(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def get_image(self, name: str) -> dict[str, Any] | None: ...

    def get_snapshot(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def list_snapshots(self, namespace: str) -> list[dict[str, Any]]: ...

    def create_image(self, body: dict[str, Any]) -> bool: ...

    def patch_snapshot_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool: ...

    def post_event(
        self, obj: dict[str, Any], *, reason: str, message: str, type_: str = "Warning"
    ) -> None: ...


def upload_url(image_server_url: str, request: SnapshotRequest) -> str:
    """Where the host uploads the snapshot:
    ``<server>/snapshots/<namespace>/<name, cut to 100>-<uid>.qcow2``: unique per object, so an
    upload never meets another's file, and a name the image server takes (segments of at most
    200 characters)."""
    base = image_server_url if image_server_url.endswith("/") else image_server_url + "/"
    return f"{base}snapshots/{request.namespace}/{request.name[:100]}-{request.uid}.qcow2"


def image_body(
    report: payloads.SnapshotFinished, record: models.Instance, description: str | None = None
) -> dict[str, Any]:
    """The Image of a finished snapshot: the uploaded file, its digest, the flavor's disk as its
    smallest disk (Nova's min_disk), the source image's architecture and hypervisor type, and
    the InstanceSnapshot's ``description``. It names the InstanceSnapshot's uid, from which the
    EC2 API derives the AMI id it answered CreateImage with."""
    assert report.url is not None
    assert report.sha256 is not None
    spec: dict[str, Any] = {
        "source": {"url": report.url},
        "sha256": report.sha256,
        "diskFormat": "qcow2",
        "minDiskGiB": int((record.flavor or {}).get("disk_gib") or 0),
    }
    if description:
        spec["description"] = description
    image = record.image or {}
    if image.get("architecture"):
        spec["architecture"] = image["architecture"]
    if image.get("hypervisor_type"):
        spec["hypervisorType"] = image["hypervisor_type"]
    return {
        "apiVersion": resources.API_VERSION,
        "kind": "Image",
        "metadata": {
            "name": report.image_name,
            "labels": {SNAPSHOT_OF_LABEL: record.name[:63]},
            "annotations": {
                SNAPSHOT_OF_UID_ANNOTATION: record.uuid,
                SNAPSHOT_ANNOTATION: f"{record.namespace}/{report.snapshot_name}",
                resources.SNAPSHOT_UID_ANNOTATION: report.snapshot_uid,
            },
        },
        "spec": spec,
    }


@dataclasses.dataclass(frozen=True)
class SnapshotSettings:
    """Where snapshots go, and how long a host may take over one."""

    #: The image server's base URL, as the hosts reach it: they upload there, and the Images
    #: made point there (``KUBENOVA_IMAGE_SERVER_URL``).
    image_server_url: str = DEFAULT_IMAGE_SERVER_URL
    #: Seconds without an answer before a snapshot is rolled back
    #: (``KUBENOVA_SNAPSHOT_TIMEOUT``): copying, flattening and uploading a large disk takes
    #: minutes.
    timeout_s: float = 1800.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SnapshotSettings:
        env = os.environ if environ is None else environ
        url = env.get("KUBENOVA_IMAGE_SERVER_URL") or DEFAULT_IMAGE_SERVER_URL
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"KUBENOVA_IMAGE_SERVER_URL must be an http(s) URL, not {url!r}")
        timeout = float(env.get("KUBENOVA_SNAPSHOT_TIMEOUT") or 1800.0)
        if timeout <= 0:
            raise ValueError("KUBENOVA_SNAPSHOT_TIMEOUT must be positive")
        return cls(image_server_url=url, timeout_s=timeout)


def write_status(
    objects: SnapshotObjects,
    namespace: str,
    name: str,
    previous: dict[str, Any],
    status: dict[str, Any],
    ready: dict[str, Any],
) -> None:
    """Merge ``status`` and the ``Ready`` condition ``ready`` into an InstanceSnapshot's."""
    conditions = instance_status.merge_conditions(previous.get("conditions"), [ready])
    objects.patch_snapshot_status(namespace, name, {**status, "conditions": conditions})


def deleted_message(instance: str) -> str:
    """What an InstanceSnapshot whose instance was deleted meanwhile says."""
    return f"instance {instance} was deleted during the snapshot; no Image is made"


def short(message: str | None) -> str | None:
    """An action's message fits its column (the event keeps the whole text)."""
    return message[:255] if message else None
