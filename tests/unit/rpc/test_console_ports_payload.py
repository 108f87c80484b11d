"""Console ports in the contract (1.6): carried by instance_update and
instance_operation_finished, and told apart from an older agent's silence about them."""

from __future__ import annotations

import datetime

import pydantic
import pytest

from kubenova.conductor import console_ports
from kubenova.rpc import envelope, payloads

UUID = "6f1c1d9e-0000-4000-8000-000000000001"
UPDATE = {
    "instance_uuid": UUID,
    "host": "h1",
    "vm_state": "active",
    "task_state": None,
    "power_state": "running",
}


def test_ports_travel_and_read_back():
    update = payloads.InstanceUpdate(
        **UPDATE, console_ports=payloads.ConsolePorts(vnc_port=5900, spice_tls_port=5901)
    )
    received = payloads.InstanceUpdate.model_validate_json(update.model_dump_json())
    assert received.console_ports == payloads.ConsolePorts(vnc_port=5900, spice_tls_port=5901)
    assert console_ports.values(received) == {
        "vnc_port": 5900,
        "spice_port": None,
        "spice_tls_port": 5901,
    }


def test_a_report_from_a_1_5_agent_leaves_the_columns_alone():
    old = envelope.Envelope(
        request_id="req-1", method="instance_update", args=UPDATE, sender="h1", version="1.0"
    )
    old.check_version()
    received = payloads.InstanceUpdate.model_validate(old.args)
    assert not payloads.console_ports_reported(received)
    assert console_ports.values(received) == {}


def test_no_console_running_clears_every_column():
    received = payloads.InstanceUpdate.model_validate({**UPDATE, "console_ports": None})
    assert console_ports.values(received) == dict.fromkeys(console_ports.COLUMNS)


def test_operation_finished_carries_ports_too():
    now = datetime.datetime.now(datetime.UTC)
    finished = payloads.InstanceOperationFinished(
        instance_uuid=UUID,
        host="h1",
        operation="start",
        result="Success",
        started_at=now,
        finished_at=now,
        vm_state="active",
        power_state="running",
        console_ports=payloads.ConsolePorts(vnc_port=6900, spice_tls_port=6901),
    )
    assert console_ports.values(finished)["vnc_port"] == 6900


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_a_port_outside_tcps_range_is_refused(port):
    with pytest.raises(pydantic.ValidationError):
        payloads.ConsolePorts(vnc_port=port)


def test_the_contract_is_at_1_6_for_both_reports():
    assert envelope.parse_version(envelope.VERSION) >= (1, 6)
    assert payloads.METHODS["instance_update"].version == "1.6"
    assert payloads.METHODS["instance_operation_finished"].version == "1.6"
