"""The one road of a build (Nova's ``ComputeTaskManager.schedule_and_build_instances``):
record → schedule → claim → project → cast, and the delete that undoes it.

A first build and a reschedule after a failed one go down the same road; they differ only in
data: the attempt's number, the hosts already tried (which the scheduler ignores), and
whether the record exists yet. A first try writes the record in the claim's own transaction,
already placed (one commit instead of two); a kopf retry of the create, or a reschedule,
claims for the record that exists. Every step is idempotent, because kopf retries a create
that raised and RabbitMQ redelivers a report that was not acknowledged.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import orm

from kubenova.compute import operations, states
from kubenova.conductor import request_spec
from kubenova.conductor.projector import InstanceProjector
from kubenova.config import OperatorSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models, moves
from kubenova.exception import NotReady
from kubenova.k8s.client import KubeClient
from kubenova.rpc import compute_rpcapi, envelope, payloads
from kubenova.scheduler.host_state import RequestSpec
from kubenova.scheduler.manager import NoValidHost, SchedulerManager

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BuildRequest:
    """One instance to build, as the api layer resolved it: its object's identity and spec
    (the placement constraints, hostname, user data and keys), the flavor and image it is
    built from (snapshots: later edits of the Flavor or Image do not change it), and the
    request id its messages carry. ``first_try``: nothing has written the object's status yet,
    so its record most likely does not exist. ``current_status``: the object's status, when
    the caller holds it (spares a GET when the projection has no memory of it)."""

    uid: str
    name: str
    namespace: str
    generation: int
    spec: Mapping[str, Any]
    flavor: dict[str, Any]
    image: dict[str, Any]
    request_id: str
    first_try: bool = False
    current_status: dict[str, Any] | None = None


class ComputeTaskManager:
    """Builds, rebuilds elsewhere and deletes instances, through the scheduler."""

    def __init__(
        self,
        settings: OperatorSettings,
        session_factory: db_engine.SessionFactory,
        kube: KubeClient,
        scheduler: SchedulerManager,
        compute: compute_rpcapi.ComputeAPI,
        projector: InstanceProjector,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.kube = kube
        self.scheduler = scheduler
        self.compute = compute
        self.projector = projector

    # -- build --------------------------------------------------------------------------

    def build_instance(self, build: BuildRequest) -> None:
        """Record, schedule, claim, project and cast the build of a new instance; raise
        :class:`NotReady` (the instance stays Pending, recorded) to be tried again later."""
        if build.first_try:
            try:
                self._schedule_and_build(build, attempt=1, tried=(), record=None)
                return
            except _RecordExists:
                pass  # an earlier try got further than its status shows: the usual road
            except NotReady:
                self._record(build)
                raise
        record = self._record(build)
        if record is None:
            # Past building: the status that said so may have been lost (the operator killed
            # between the host's report and its deferred write). Say what the record says;
            # nothing is written when the object shows it already.
            self.projector.project(build.uid, current_status=build.current_status)
            return
        if record.host is None:
            self._schedule_and_build(build, attempt=1, tried=(), record=record)
            return
        # Claimed by an earlier try whose cast did not happen (the broker was away, say):
        # cast again. The agent's build is idempotent, so a second cast has one effect.
        with db_engine.transaction(self.session_factory) as session:
            db_api.instance_update_unread(session, build.uid, task_state=states.SPAWNING)
        record.task_state = states.SPAWNING
        # Whether that host is still up is the database's to say, not assumed.
        self._project_and_cast(build, record, record.host, host_up=None)

    def reschedule(self, record: models.Instance, tried: Collection[str]) -> str | None:
        """Build ``record`` again, on a host other than those ``tried``, down the same road;
        None once cast, else why no host took it. Its claim must have been released."""
        instance = self.kube.get_instance(record.namespace, record.name)
        if instance is None:
            return "its Instance object is gone"
        build = BuildRequest(
            uid=record.uuid,
            name=record.name,
            namespace=record.namespace,
            generation=record.generation,
            spec=dict(instance.get("spec") or {}),
            flavor=dict(record.flavor),
            image=dict(record.image),
            request_id=record.request_id or envelope.new_request_id(),
            current_status=dict(instance.get("status") or {}),
        )
        try:
            self._schedule_and_build(
                build, attempt=(record.attempts or 1) + 1, tried=tried, record=record
            )
        except NotReady as exc:
            return str(exc)
        LOG.warning("rescheduled instance %s to %s", record.uuid, record.host)
        return None

    def cast_again(self, record: models.Instance) -> None:
        """Cast the build of ``record``, claimed on its host already, once more (a cast that
        may have been lost); the agent's build is idempotent."""
        if record.host is None:
            raise ValueError(f"instance {record.uuid} is placed on no host")
        self.compute.build_and_run_instance(
            record.host, instance_payload(record), record.request_id or envelope.new_request_id()
        )

    def _schedule_and_build(
        self,
        build: BuildRequest,
        *,
        attempt: int,
        tried: Collection[str],
        record: models.Instance | None,
    ) -> None:
        """The road: schedule, claim (writing ``record``'s placement, or with ``record``
        None a new record), project, cast. Raises NotReady when no host takes it, and
        _RecordExists when asked to write a record that exists."""
        spec = self._request_spec(build, tried)
        values = {
            "vm_state": states.BUILDING,
            "task_state": states.SPAWNING,
            "power_state": states.NOSTATE,
            "attempts": attempt,
            "availability_zone": spec.availability_zone,
        }
        recorder = _RecordWithClaim(_insert_values(build)) if record is None else None
        group = request_spec.group_claim(spec)

        def claim(spec: RequestSpec, host: str) -> db_api.ClaimResult:
            return db_api.claim_resources(
                self.session_factory,
                spec.instance_uuid,
                host,
                spec.vcpus,
                spec.memory_mib,
                spec.disk_gib,
                server_group=group,
                instance_values=values,
                record=recorder,
            )

        try:
            host = self.scheduler.schedule(spec, claim)
        except NoValidHost as exc:
            raise NotReady("NoValidHost", str(exc)) from exc
        if recorder is not None:
            if recorder.record is None:
                # claim_resources claimed without calling the recorder: a broken contract.
                raise RuntimeError(f"instance {build.uid} was claimed but not recorded")
            record = recorder.record
        else:
            assert record is not None
            # The detached record is brought up to date with what the claim wrote rather
            # than read again: nothing else writes an instance before its build is cast.
            for key, value in {**values, "host": host}.items():
                setattr(record, key, value)
        self._project_and_cast(build, record, host)

    def _project_and_cast(
        self,
        build: BuildRequest,
        record: models.Instance,
        host: str,
        *,
        host_up: bool | None = True,
    ) -> None:
        # Status first, then the cast: the projections that follow the host's reports must
        # win. A host just claimed was found up, and a building record has no fault: the
        # projection needs no database then. The Building status may wait a moment for the
        # host's report to replace it.
        self.projector.project(
            build.uid,
            record=record,
            host_up=host_up,
            current_status=build.current_status,
            defer=True,
        )
        self.compute.build_and_run_instance(host, instance_payload(record), build.request_id)

    def _request_spec(self, build: BuildRequest, tried: Collection[str]) -> RequestSpec:
        group = None
        group_name = build.spec.get("serverGroup")
        if group_name:
            group_object = self.kube.get_server_group(build.namespace, group_name)
            if group_object is None:
                raise NotReady(
                    "ServerGroupNotFound",
                    f"spec.serverGroup: ServerGroup {group_name!r} does not exist "
                    f"in namespace {build.namespace!r}",
                )
            group = request_spec.server_group(self.session_factory, group_object, build.uid)
        return request_spec.build(
            instance_uuid=build.uid,
            spec=dict(build.spec),
            flavor=build.flavor,
            image=build.image,
            server_group=group,
            ignore_hosts=tried,
        )

    def _record(self, build: BuildRequest) -> models.Instance | None:
        """The instance's record, made if missing; None once it is past building."""
        with db_engine.transaction(self.session_factory) as session:
            record, created = db_api.instance_insert(session, **_insert_values(build))
            if record.vm_state != states.BUILDING:
                LOG.info("instance %s is already %s", build.uid, record.vm_state)
                return None
            if record.host is None and record.task_state == states.SCHEDULING:
                db_api.action_start(
                    session,
                    build.uid,
                    "create",
                    build.request_id,
                    instance=record,
                    new_instance=created,
                )
            if record.request_id != build.request_id:
                # An earlier try's status, which carries the request id, was lost: the
                # messages of this try carry the new one.
                db_api.instance_set(session, record, request_id=build.request_id)
            return record

    # -- delete -------------------------------------------------------------------------

    def delete_instance(self, instance_uuid: str, request_id: str) -> bool:
        """Terminate on the host behind the finalizer; True once the record is gone.

        A host that is down does not block a delete: the record is deleted here and the
        terminate stays in the host's durable queue, so its agent reaps the domain when
        it comes back. Asked again while the host is up (the caller waited and the record is
        still there), the terminate is cast again: the first, or the host's report of it, may
        have been lost, and a terminate done twice only reports again.
        """
        with db_engine.transaction(self.session_factory) as session:
            record = db_api.instance_get(session, instance_uuid)
            if record is None:
                return True
            host = record.host
            first_time = record.task_state != states.DELETING
            moving = record.vm_state == states.RESIZED or (
                record.task_state in operations.RESIZE_TASK_STATES
            )
            # An evacuation holds its source until that host returns, after it is done too.
            moving = moving or moves.evacuation_holds_source(session, instance_uuid)
            if first_time:
                db_api.instance_update(session, instance_uuid, task_state=states.DELETING)
                db_api.action_start(session, instance_uuid, "delete", request_id, instance=record)
            host_up = host is not None and db_api.host_is_up(
                session, host, self.settings.service_down_time_s
            )
        # A resize (or an evacuation) under way ends with the delete: what it held is freed now.
        moving_with = moves.abandon_moves(self.session_factory, instance_uuid) if moving else set()
        if host is not None and first_time:
            self.compute.terminate_instance(host, instance_uuid, request_id)
            for elsewhere in sorted(moving_with - {host}):
                # The other host of a resize under way keeps a copy of the guest.
                self.compute.terminate_instance(elsewhere, instance_uuid, request_id)
            self.projector.project(instance_uuid)
        elif host is not None and host_up:
            self.compute.terminate_instance(host, instance_uuid, request_id)
        if host is not None and host_up:
            return False  # the conductor finishes the delete when the agent reports back
        LOG.info("deleting instance %s locally (host %s is down or none)", instance_uuid, host)
        db_api.release_resources(self.session_factory, instance_uuid)
        with db_engine.transaction(self.session_factory) as session:
            db_api.server_group_remove_member(session, instance_uuid)
            db_api.instance_soft_delete(session, instance_uuid)
        self.projector.forget(instance_uuid)
        return True


def instance_payload(record: models.Instance) -> payloads.InstancePayload:
    """What a host needs to build ``record``, from the record's own snapshots."""
    flavor, image = record.flavor, record.image
    user_data = None
    if record.user_data is not None:
        user_data = base64.b64decode(record.user_data).decode()
    return payloads.InstancePayload(
        uuid=record.uuid,
        name=record.name,
        namespace=record.namespace,
        hostname=record.hostname or record.name,
        vcpus=flavor["vcpus"],
        memory_mib=flavor["memory_mib"],
        disk_gib=flavor["disk_gib"],
        image=payloads.ImagePayload(
            name=image["name"],
            url=image["url"],
            sha256=image["sha256"],
            disk_format=image["disk_format"],
        ),
        user_data=user_data,
        ssh_authorized_keys=tuple(record.ssh_authorized_keys or ()),
    )


def _insert_values(build: BuildRequest) -> dict[str, Any]:
    """The arguments of ``instance_insert`` for this build."""
    user_data = build.spec.get("userData")
    return {
        "uuid": build.uid,
        "name": build.name,
        "namespace": build.namespace,
        "hostname": build.spec.get("hostname") or build.name,
        "flavor": build.flavor,
        "image": build.image,
        "user_data_b64": base64.b64encode(user_data.encode()).decode()
        if user_data is not None
        else None,
        "ssh_keys": list(build.spec.get("sshAuthorizedKeys") or []),
        "request_id": build.request_id,
        "generation": build.generation,
        "availability_zone": build.spec.get("availabilityZone"),
    }


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
