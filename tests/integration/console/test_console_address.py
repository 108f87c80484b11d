"""Where a console is reached: the address its host last reported (Nova's
vncserver_proxyclient_address), while the token and its checks stay on the host's name."""

from __future__ import annotations

import datetime as dt

import pytest

from kubenova.console import auth
from kubenova.db import api
from kubenova.db import engine as db_engine
from kubenova.subresources import consoleurl
from tests.integration.console.helpers import instance_on, mint
from tests.support.clock import EPOCH

pytestmark = pytest.mark.integration


def report(session_factory: db_engine.SessionFactory, host: str, address: str | None) -> None:
    """The host's agent reports itself, as its heartbeat does."""
    with db_engine.transaction(session_factory) as session:
        api.compute_node_update_from_report(
            session,
            host,
            vcpus=2,
            memory_mib=2048,
            local_gb=10,
            hypervisor_type="QEMU",
            hypervisor_version="7.2.22",
            libvirt_version="9.0.0",
            virt_type="qemu",
            cpu_arch="x86_64",
            running_vms=1,
            console_address=address,
        )


def test_a_token_is_relayed_to_the_address_its_host_reported(db_session_factory):
    uuid = instance_on(db_session_factory, "node-1")
    report(db_session_factory, "node-1", "192.0.2.7")
    minted = mint(db_session_factory, uuid, "node-1", EPOCH)
    info = auth.authorize(
        db_session_factory, minted.token, uuid, console_session="s", clock=lambda: EPOCH
    )
    assert (info.host, info.address) == ("node-1", "192.0.2.7")
    # The same session's next connection (noVNC reconnecting) goes there too.
    again = auth.resume(
        db_session_factory, minted.token, "s", uuid, clock=lambda: EPOCH + dt.timedelta(seconds=1)
    )
    assert again.address == "192.0.2.7"


def test_a_host_that_reported_no_address_is_reached_at_its_name(db_session_factory):
    uuid = instance_on(db_session_factory, "node-2")
    report(db_session_factory, "node-2", None)
    minted = mint(db_session_factory, uuid, "node-2", EPOCH)
    info = auth.authorize(
        db_session_factory, minted.token, uuid, console_session="s", clock=lambda: EPOCH
    )
    assert info.address == "node-2"


def test_a_new_address_in_a_later_report_replaces_the_old(db_session_factory):
    uuid = instance_on(db_session_factory, "node-3")
    report(db_session_factory, "node-3", "192.0.2.7")
    report(db_session_factory, "node-3", "198.51.100.4")
    place = consoleurl.read_place(db_session_factory, uuid)
    assert place is not None
    assert (place.host, place.address) == ("node-3", "198.51.100.4")
