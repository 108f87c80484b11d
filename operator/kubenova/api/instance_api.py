"""nova-api for instances: create and delete, called by the thin kopf handlers.

Create walks Nova's road: record the instance (vm_state building, task_state
scheduling, action ``create``), let the scheduler claim a host, project the record
into status, then cast ``build_and_run_instance`` to that host. Every step is
idempotent, because kopf retries a handler that raised. On the first try the record is
written by the claim's own transaction, already placed (one commit instead of two); a
retry, or a first try that finds the record written after all, takes the road above.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy import orm

from kubenova.api import request_spec
from kubenova.compute import states
from kubenova.conductor import status as status_mod
from kubenova.conductor.manager import (
    ConductorManager,
    Projection,
    host_is_up,
    instance_payload,
)
from kubenova.config import OperatorSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models
from kubenova.k8s.client import KubeClient
from kubenova.rpc import compute_rpcapi, payloads
from kubenova.scheduler.host_state import RequestSpec
from kubenova.scheduler.manager import ClaimFn, NoValidHost, SchedulerManager, Selection

LOG = logging.getLogger(__name__)


class NotReady(Exception):
    """The instance cannot move on yet; ``reason`` and the message go into its conditions."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


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
    """Create and delete instances."""

    def __init__(
        self,
        settings: OperatorSettings,
        session_factory: db_engine.SessionFactory,
        kube: KubeClient,
        scheduler: SchedulerManager,
        compute: compute_rpcapi.ComputeAPI,
        conductor: ConductorManager,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.kube = kube
        self.scheduler = scheduler
        self.compute = compute
        self.conductor = conductor

    def create(
        self, request: InstanceRequest, request_id: str, catalog: Catalog | None = None
    ) -> None:
        """Record, schedule and cast the build; raise NotReady to be retried later.

        ``catalog`` resolves the flavor and image (the operator passes its watch-fed index);
        by default they are read from the apiserver.
        """
        flavor, image = self._resolve(request, catalog or self.kube)
        if not request.status:
            # The first try (nothing has written the status yet): record the instance in the
            # claim's transaction, one transaction instead of two.
            placed = self._record_with_claim(request, request_id, flavor, image)
            if placed is not None:
                self._cast_build(request, request_id, placed[0], placed[1].host)
                return
        record = self._record(request, request_id, flavor, image)
        if record is None:
            return
        # The detached record is current: nothing else writes an instance before its build
        # is cast. It is brought up to date with what is written below rather than read
        # again (it is never flushed).
        host = record.host
        if host is None:
            # The claim records the first build with it (see request_spec.claim).
            selection = self._schedule(request, flavor, image)
            host = selection.host
            _apply(
                record,
                {
                    "host": host,
                    "task_state": states.SPAWNING,
                    "attempts": 1,
                    "alternates": list(selection.alternates),
                },
            )
            self._cast_build(request, request_id, record, host)
            return
        # A retry after the claim (say the broker was down for the cast) casts again; the
        # agent's build is idempotent, so that has one effect.
        with db_engine.transaction(self.session_factory) as session:
            db_api.instance_update_unread(session, request.uid, task_state=states.SPAWNING)
            record.task_state = states.SPAWNING
            projection = self.conductor.projection(session, record, current_status=request.status)
        self._write_then_cast(projection, host, record, request_id)

    def _cast_build(
        self, request: InstanceRequest, request_id: str, record: models.Instance, host: str
    ) -> None:
        # The scheduler just found the host up, and a building record has no fault: the
        # projection needs no database.
        projection = self.conductor.projection(
            None, record, host_up=True, current_status=request.status
        )
        self._write_then_cast(projection, host, record, request_id)

    def _write_then_cast(
        self, projection: Projection | None, host: str, record: models.Instance, request_id: str
    ) -> None:
        # Status first, then the cast: the conductor's later projections must win. The
        # Building status may wait a moment for the host's report to replace it.
        self.conductor.write_status(projection, defer=True)
        self.compute.build_and_run_instance(host, instance_payload(record), request_id)

    def _record_with_claim(
        self,
        request: InstanceRequest,
        request_id: str,
        flavor: dict[str, Any],
        image: dict[str, Any],
    ) -> tuple[models.Instance, Selection] | None:
        """Schedule, and write the new record with the claim; None when a record exists
        after all (an earlier try got that far but wrote no status), for the usual road.

        When the instance cannot be placed its record is written before it is declared
        Pending, as on the usual road.
        """
        recorder = _RecordWithClaim(self._insert_values(request, request_id, flavor, image))

        def claim(spec: RequestSpec, host: str, alternates: tuple[str, ...]) -> db_api.ClaimResult:
            return request_spec.claim(self.session_factory, spec, host, alternates, record=recorder)

        try:
            selection = self._schedule(request, flavor, image, claim=claim)
        except _RecordExists:
            return None
        except NotReady:
            self._record(request, request_id, flavor, image)
            raise
        if recorder.record is None:
            # claim_resources claimed without calling the recorder: a broken contract.
            raise RuntimeError(f"instance {request.uid} was claimed but not recorded")
        return recorder.record, selection

    def _insert_values(
        self,
        request: InstanceRequest,
        request_id: str,
        flavor: dict[str, Any],
        image: dict[str, Any],
    ) -> dict[str, Any]:
        """The arguments of ``instance_insert`` for this request."""
        return {
            "uuid": request.uid,
            "name": request.name,
            "namespace": request.namespace,
            "hostname": request.spec.get("hostname") or request.name,
            "flavor": flavor,
            "image": image,
            "user_data_b64": _encode_user_data(request.spec.get("userData")),
            "ssh_keys": list(request.spec.get("sshAuthorizedKeys") or []),
            "request_id": request_id,
            "generation": request.generation,
            "availability_zone": request.spec.get("availabilityZone"),
        }

    def _record(
        self,
        request: InstanceRequest,
        request_id: str,
        flavor: dict[str, Any],
        image: dict[str, Any],
    ) -> models.Instance | None:
        """The instance's record, made on the first try; None once it is past building."""
        with db_engine.transaction(self.session_factory) as session:
            record, created = db_api.instance_insert(
                session, **self._insert_values(request, request_id, flavor, image)
            )
            if record.vm_state != states.BUILDING:
                LOG.info("instance %s is already %s", request.uid, record.vm_state)
                return None
            if record.host is None and record.task_state == states.SCHEDULING:
                db_api.action_start(
                    session,
                    request.uid,
                    "create",
                    request_id,
                    instance=record,
                    new_instance=created,
                )
            if record.request_id != request_id:
                # An earlier try's status, which carries the request id, was lost: the
                # messages of this try carry the new one.
                db_api.instance_set(session, record, request_id=request_id)
            return record

    def _schedule(
        self,
        request: InstanceRequest,
        flavor: dict[str, Any],
        image: dict[str, Any],
        *,
        claim: ClaimFn | None = None,
    ) -> Selection:
        group = None
        group_name = request.spec.get("serverGroup")
        if group_name:
            group_object = self.kube.get_server_group(request.namespace, group_name)
            if group_object is None:
                raise NotReady(
                    "ServerGroupNotFound",
                    f"spec.serverGroup: ServerGroup {group_name!r} does not exist "
                    f"in namespace {request.namespace!r}",
                )
            group = request_spec.server_group(self.session_factory, group_object, request.uid)
        spec = request_spec.build(
            instance_uuid=request.uid,
            spec=request.spec,
            flavor=flavor,
            image=image,
            server_group=group,
        )
        try:
            return self.scheduler.schedule(spec, claim)
        except NoValidHost as exc:
            raise NotReady("NoValidHost", str(exc)) from exc

    def pending_status(self, request: InstanceRequest, error: NotReady) -> dict[str, Any]:
        """The Pending status the handler writes; the conductor's memory of it is dropped."""
        self.conductor.written.forget(request.uid)
        return status_mod.pending(
            error.reason,
            str(error),
            previous_conditions=request.conditions,
            generation=request.generation,
        )

    def delete(self, request: InstanceRequest, request_id: str) -> bool:
        """Terminate on the host behind the finalizer; True once the record is gone.

        A host that is down does not block a delete: the record is deleted here and the
        terminate stays in the host's durable queue, so its agent reaps the domain when
        it comes back.
        """
        with db_engine.transaction(self.session_factory) as session:
            record = db_api.instance_get(session, request.uid)
            if record is None:
                return True
            host = record.host
            first_time = record.task_state != states.DELETING
            if first_time:
                db_api.instance_update(session, request.uid, task_state=states.DELETING)
                db_api.action_start(session, request.uid, "delete", request_id, instance=record)
            host_up = host is not None and host_is_up(
                session, host, self.settings.service_down_time_s
            )
        if host is not None and first_time:
            self.compute.terminate_instance(host, request.uid, request_id)
            self.conductor.project_instance(request.uid, request.namespace, request.name)
        if host is not None and host_up:
            return False  # the conductor finishes the delete when the agent reports back
        LOG.info("deleting instance %s locally (host %s is down or none)", request.uid, host)
        db_api.release_resources(self.session_factory, request.uid)
        with db_engine.transaction(self.session_factory) as session:
            db_api.server_group_remove_member(session, request.uid)
            db_api.instance_soft_delete(session, request.uid)
        self.conductor.written.forget(request.uid)
        return True

    def _resolve(
        self, request: InstanceRequest, catalog: Catalog
    ) -> tuple[dict[str, Any], dict[str, Any]]:
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


class _RecordExists(Exception):
    """The claim found the instance recorded already: it was undone."""


class _RecordWithClaim:
    """Writes a new instance's record, placed, and its create action, in the claim's
    transaction (``kubenova.db.api.RecordNewInstance``); keeps the record it wrote."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values
        self.record: models.Instance | None = None

    def __call__(self, session: orm.Session, placed: Mapping[str, Any]) -> None:
        record, created = db_api.instance_insert(session, **self._values, placed=placed)
        if not created:
            raise _RecordExists(record.uuid)
        db_api.action_start(
            session,
            record.uuid,
            "create",
            self._values["request_id"],
            instance=record,
            new_instance=True,
        )
        self.record = record


def _apply(record: models.Instance, values: dict[str, Any]) -> None:
    """Bring a detached record up to date with values written to its row."""
    for key, value in values.items():
        setattr(record, key, value)


def _encode_user_data(user_data: str | None) -> str | None:
    return base64.b64encode(user_data.encode()).decode() if user_data is not None else None
