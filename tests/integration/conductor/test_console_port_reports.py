"""A host's report of where a guest's consoles listen lands in its ``instances`` row, in the
UPDATE that writes the rest of the report: the create path sends no statement more for it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from kubenova.conductor.service import Conductor
from kubenova.config import MessagingSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.rpc import envelope, payloads
from tests.integration.conductor.fakes import building_on, node_report, running_instance
from tests.support import RecordingKube

pytestmark = pytest.mark.integration

PORTS = payloads.ConsolePorts(vnc_port=5901, spice_tls_port=5902)


def _from_agent(conductor: Conductor, method: str, args: dict[str, Any]) -> None:
    message = envelope.Envelope(
        request_id=envelope.new_request_id(),
        method=method,
        args=args,
        sender=f"kubenova-agent.{args['host']}",
    )
    conductor.manager.handle(message, MessagingSettings.agent_user(args["host"]))


def _update(uuid: str, **fields: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "instance_uuid": uuid,
        "host": "h1",
        "vm_state": "active",
        "task_state": None,
        "power_state": "running",
        "addresses": ["192.168.122.10"],
    }
    args.update(fields)
    return payloads.InstanceUpdate(**args).model_dump(mode="json", exclude_unset=True)


def _ports(session_factory: db_engine.SessionFactory, uuid: str) -> tuple[Any, ...]:
    with db_engine.transaction(session_factory) as session:
        record = db_api.instance_get(session, uuid)
        assert record is not None
        return record.vnc_port, record.spice_port, record.spice_tls_port


@pytest.fixture
def h1(conductor: Conductor) -> None:
    _from_agent(conductor, "compute_node_report", node_report("h1").model_dump(mode="json"))


def test_the_build_report_records_the_ports_in_its_one_update(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    h1: None,
    statements: list[str],
) -> None:
    launched = dt.datetime.now(dt.UTC).isoformat()
    plain = building_on(db_session_factory, kube, "h1", [])
    with_ports = building_on(db_session_factory, kube, "h1", [])

    statements.clear()
    _from_agent(conductor, "instance_update", _update(plain, launched_at=launched))
    without = list(statements)
    statements.clear()
    _from_agent(
        conductor,
        "instance_update",
        _update(with_ports, launched_at=launched, console_ports=PORTS.model_dump()),
    )

    assert statements == without, "the ports cost no statement of their own"
    assert _ports(db_session_factory, with_ports) == (5901, None, 5902)
    assert _ports(db_session_factory, plain) == (None, None, None)


def test_a_guest_that_stops_has_its_ports_cleared(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    h1: None,
) -> None:
    uuid = running_instance(db_session_factory, kube, "h1")
    _from_agent(conductor, "instance_update", _update(uuid, console_ports=PORTS.model_dump()))
    assert _ports(db_session_factory, uuid) == (5901, None, 5902)

    _from_agent(
        conductor,
        "instance_update",
        _update(uuid, vm_state="stopped", power_state="shutdown", console_ports=None),
    )
    assert _ports(db_session_factory, uuid) == (None, None, None)


def test_ports_that_moved_replace_the_old_ones(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    h1: None,
) -> None:
    uuid = running_instance(db_session_factory, kube, "h1")
    _from_agent(conductor, "instance_update", _update(uuid, console_ports=PORTS.model_dump()))
    moved = payloads.ConsolePorts(vnc_port=5905, spice_tls_port=5906)
    _from_agent(conductor, "instance_update", _update(uuid, console_ports=moved.model_dump()))
    assert _ports(db_session_factory, uuid) == (5905, None, 5906)


def test_a_report_from_an_older_agent_leaves_the_ports_alone(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    h1: None,
) -> None:
    uuid = running_instance(db_session_factory, kube, "h1")
    _from_agent(conductor, "instance_update", _update(uuid, console_ports=PORTS.model_dump()))
    older = _update(uuid, addresses=["192.168.122.11"])
    assert "console_ports" not in older
    _from_agent(conductor, "instance_update", older)
    assert _ports(db_session_factory, uuid) == (5901, None, 5902)


def test_a_report_after_a_resize_records_the_new_ports_and_keeps_it_awaiting_confirmation(
    db_session_factory: db_engine.SessionFactory,
    kube: RecordingKube,
    conductor: Conductor,
    h1: None,
) -> None:
    # The resized guest's QEMU started anew, on new ports: its host reports them, and the
    # instance stays resized (VerifyResize) until the user confirms or reverts.
    uuid = running_instance(db_session_factory, kube, "h1")
    with db_engine.transaction(db_session_factory) as session:
        db_api.instance_update(session, uuid, vm_state="resized")
    moved = payloads.ConsolePorts(vnc_port=5907, spice_tls_port=5908)

    _from_agent(conductor, "instance_update", _update(uuid, console_ports=moved.model_dump()))

    with db_engine.transaction(db_session_factory) as session:
        record = db_api.instance_get(session, uuid)
        assert record is not None
        assert (record.vm_state, record.task_state) == ("resized", None)
    assert _ports(db_session_factory, uuid) == (5907, None, 5908)
