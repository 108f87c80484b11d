"""nova-api for instances: validate and resolve what an Instance asks for, then hand it to
the conductor, which owns the rest of the road (record, schedule, claim, project, cast).
Called by the thin kopf handlers."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from kubenova.conductor.api import BuildRequest, ConductorAPI, SpecChange
from kubenova.exception import NotReady
from kubenova.rpc import payloads


class Catalog(Protocol):
    """Where create looks up Flavors and Images by name (the Kubernetes objects, or None)."""

    def get_flavor(self, name: str) -> dict[str, Any] | None: ...

    def get_image(self, name: str) -> dict[str, Any] | None: ...


@dataclasses.dataclass(frozen=True)
class InstanceRequest:
    """One Instance object, as the handlers see it."""

    uid: str
    name: str
    namespace: str
    generation: int
    spec: dict[str, Any]
    status: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def conditions(self) -> list[dict[str, Any]] | None:
        conditions: list[dict[str, Any]] | None = self.status.get("conditions")
        return conditions


class InstanceAPI:
    """Create, change and delete instances."""

    def __init__(self, conductor: ConductorAPI, catalog: Catalog) -> None:
        self.conductor = conductor
        self.catalog = catalog

    def create(
        self, request: InstanceRequest, request_id: str, catalog: Catalog | None = None
    ) -> None:
        """Resolve the flavor and image and hand the build over; raise NotReady to be
        retried later.

        ``catalog`` resolves the flavor and image (the operator passes its watch-fed index);
        by default they are read with the catalog given at construction (the apiserver).
        """
        flavor, image = _resolve(request, catalog or self.catalog)
        self.conductor.build_instance(
            BuildRequest(
                uid=request.uid,
                name=request.name,
                namespace=request.namespace,
                generation=request.generation,
                spec=request.spec,
                flavor=flavor,
                image=image,
                request_id=request_id,
                # Nothing has written the status yet: most likely the first try.
                first_try=not request.status,
                current_status=request.status,
            )
        )

    def apply_spec(
        self, request: InstanceRequest, request_id: str, catalog: Catalog | None = None
    ) -> None:
        """Hand a changed spec (image, flavor, power state, reboot or resize confirmation) to
        the conductor, which starts the next operation it asks for, refuses it, or records it
        applied. The flavor and image are resolved here, as a create resolves them (a rebuild
        and a resize are built from their snapshots)."""
        flavor: dict[str, Any] | None = None
        image: dict[str, Any] | None = None
        unresolved: tuple[str, str] | None = None
        try:
            flavor, image = _resolve(request, catalog or self.catalog)
        except NotReady as exc:
            unresolved = (exc.reason, str(exc))
        self.conductor.apply_spec(
            SpecChange(
                uid=request.uid,
                namespace=request.namespace,
                name=request.name,
                generation=request.generation,
                spec=request.spec,
                request_id=request_id,
                flavor=flavor,
                image=image,
                unresolved=unresolved,
            )
        )

    def pending_status(self, request: InstanceRequest, error: NotReady) -> dict[str, Any]:
        """The Pending status the handler writes while the instance waits."""
        return self.conductor.pending_status(
            request.uid,
            error.reason,
            str(error),
            previous_conditions=request.conditions,
            generation=request.generation,
        )

    def delete(self, request: InstanceRequest, request_id: str) -> bool:
        """Terminate on the host behind the finalizer; True once the record is gone."""
        return self.conductor.delete_instance(request.uid, request_id)


def _resolve(request: InstanceRequest, catalog: Catalog) -> tuple[dict[str, Any], dict[str, Any]]:
    """The flavor and image snapshots the instance is built from, checked against each other
    and against the spec; NotReady names the field and the reason."""
    flavor_name = request.spec["flavor"]
    image_name = request.spec["image"]
    flavor_obj = catalog.get_flavor(flavor_name)
    if flavor_obj is None:
        raise NotReady("FlavorNotFound", f"spec.flavor: Flavor {flavor_name!r} does not exist")
    image_obj = catalog.get_image(image_name)
    if image_obj is None:
        raise NotReady("ImageNotFound", f"spec.image: Image {image_name!r} does not exist")
    fspec, ispec = flavor_obj["spec"], image_obj["spec"]
    flavor = {
        "name": flavor_name,
        "vcpus": int(fspec["vcpus"]),
        "memory_mib": int(fspec["memoryMiB"]),
        "disk_gib": int(fspec["diskGiB"]),
        "extra_specs": dict(fspec.get("extraSpecs") or {}),
    }
    image = {
        "name": image_name,
        "url": ispec["source"]["url"],
        "sha256": ispec["sha256"],
        "disk_format": ispec["diskFormat"],
        "architecture": ispec.get("architecture"),
        "hypervisor_type": ispec.get("hypervisorType"),
    }
    if int(ispec.get("minDiskGiB", 0)) > flavor["disk_gib"]:
        raise NotReady(
            "FlavorDiskTooSmall",
            f"spec.flavor: {flavor_name} has {flavor['disk_gib']} GiB of disk; "
            f"image {image_name} needs {ispec['minDiskGiB']} GiB",
        )
    if int(ispec.get("minMemoryMiB", 0)) > flavor["memory_mib"]:
        raise NotReady(
            "FlavorMemoryTooSmall",
            f"spec.flavor: {flavor_name} has {flavor['memory_mib']} MiB of memory; "
            f"image {image_name} needs {ispec['minMemoryMiB']} MiB",
        )
    user_data = request.spec.get("userData")
    if user_data is not None and len(user_data.encode()) > payloads.MAX_USER_DATA_BYTES:
        raise NotReady("UserDataTooLarge", "spec.userData: more than 64 KiB once encoded")
    return flavor, image
