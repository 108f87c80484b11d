"""Builds down the conductor's one road, for the create and reschedule tests: a conductor over
the recording fakes, hosts registered by their heartbeats, and Instance objects in the fake
apiserver whose spec the build (and any rebuild) is made from."""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from kubenova.conductor.compute_tasks import BuildRequest
from kubenova.conductor.service import Conductor
from kubenova.config import OperatorSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models
from kubenova.rpc import compute_rpcapi, payloads
from kubenova.scheduler.host_manager import HostManager, load_host_states
from tests.integration.conductor.fakes import node_report
from tests.integration.db.helpers import FLAVOR, IMAGE, allocations_of
from tests.support import NAMESPACE, RecordingCaster, RecordingKube


def conductor_over(
    session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    caster: RecordingCaster,
    *,
    host_manager: HostManager | None = None,
    **settings: Any,
) -> Conductor:
    """A conductor with ``settings`` over the fakes. Its scheduler reads the hosts afresh for
    every build unless given a ``host_manager``, so a test that changes a host in the
    database needs no wait for a cached view to expire."""
    host_manager = host_manager or HostManager(
        lambda: load_host_states(session_factory), refresh_s=0.0
    )
    return Conductor.build(
        OperatorSettings(**settings),
        session_factory,
        kube,  # type: ignore[arg-type]
        compute_rpcapi.ComputeAPI(caster),
        host_manager=host_manager,
    )


def register(conductor: Conductor, *hosts: str, **report: Any) -> None:
    """Each host's agent reports (an 8 vCPU, 8 GiB, 100 GiB host in zone az1 unless
    ``report`` says otherwise): the host is recorded and up."""
    for host in hosts:
        conductor.hypervisors.compute_node_report(node_report(host, **report))


def add_instance(kube: RecordingKube, uid: str | None = None, **spec: Any) -> str:
    """An Instance object of the m1.tiny flavor and tiny image, with ``spec`` added; its uid."""
    uid = uid or str(uuidlib.uuid4())
    name = object_name(uid)
    kube.add_instance(name)
    kube.instances[(NAMESPACE, name)]["spec"].update(spec)
    return uid


def object_name(uid: str) -> str:
    return f"vm-{uid[:8]}"


def add_server_group(
    kube: RecordingKube, name: str, policy: str, max_server_per_host: int | None = None
) -> None:
    """A ServerGroup object as the apiserver holds it."""
    spec: dict[str, Any] = {"policy": policy}
    if max_server_per_host is not None:
        spec["rules"] = {"maxServerPerHost": max_server_per_host}
    kube.server_groups[(NAMESPACE, name)] = {
        "metadata": {"uid": str(uuidlib.uuid4()), "name": name, "namespace": NAMESPACE},
        "spec": spec,
        "status": {},
    }


def build_request(
    kube: RecordingKube, uid: str, *, first_try: bool = True, request_id: str | None = None
) -> BuildRequest:
    """What the api layer hands the conductor for the Instance object ``uid``."""
    obj = kube.instances[(NAMESPACE, object_name(uid))]
    return BuildRequest(
        uid=uid,
        name=object_name(uid),
        namespace=NAMESPACE,
        generation=1,
        spec=dict(obj["spec"]),
        flavor=dict(FLAVOR, extra_specs={}),
        image=dict(IMAGE, architecture=None, hypervisor_type=None),
        request_id=request_id or f"req-{uid}",
        first_try=first_try,
        current_status=dict(obj["status"]),
    )


def build(conductor: Conductor, kube: RecordingKube, **spec: Any) -> str:
    """Create an Instance object with ``spec`` and build it (its first try); its uid."""
    uid = add_instance(kube, **spec)
    conductor.api.build_instance(build_request(kube, uid))
    return uid


def failed(
    uid: str, host: str, *, reschedulable: bool = True, message: str = "disk on fire"
) -> payloads.InstanceBuildFailed:
    """``host``'s report that the build of ``uid`` failed."""
    return payloads.InstanceBuildFailed(
        instance_uuid=uid,
        host=host,
        reason="BuildAbortedException",
        message=message,
        reschedulable=reschedulable,
    )


def record(session_factory: db_engine.SessionFactory, uid: str) -> models.Instance:
    """A fresh read of the instance's record."""
    with db_engine.transaction(session_factory) as session:
        found = db_api.instance_get(session, uid)
        assert found is not None
        return found


def allocated_hosts(session_factory: db_engine.SessionFactory, uid: str) -> list[str]:
    """The hosts of the instance's allocation rows (one per resource class)."""
    with db_engine.transaction(session_factory) as session:
        node_ids = {a.compute_node_id for a in allocations_of(session, uid)}
        return sorted(
            n.node.host for n in db_api.compute_nodes_list(session) if n.node.id in node_ids
        )


def fault(session_factory: db_engine.SessionFactory, uid: str) -> models.InstanceFault:
    """The instance's latest fault."""
    with db_engine.transaction(session_factory) as session:
        found = db_api.fault_get_latest(session, uid)
        assert found is not None
        return found


def cast_hosts(caster: RecordingCaster) -> list[str]:
    """The host of each build cast, in order (the uid is checked by the caller)."""
    return [
        cast.topic.removeprefix("compute.")
        for cast in caster.casts
        if cast.method == "build_and_run_instance"
    ]
