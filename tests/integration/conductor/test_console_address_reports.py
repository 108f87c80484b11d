"""A heartbeat records where the console proxy reaches its host's consoles (since 1.8), and a
report of an older agent, which says nothing of it, leaves the host reached at its name."""

from __future__ import annotations

import pytest

from kubenova.conductor.service import Conductor
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from tests.integration.conductor.fakes import node_report

pytestmark = pytest.mark.integration


def _address(session_factory: db_engine.SessionFactory, host: str) -> str | None:
    with db_engine.transaction(session_factory) as session:
        node = db_api.compute_node_get(session, host)
        assert node is not None
        return node.console_address


def test_the_reported_console_address_is_recorded_and_follows_later_reports(
    db_session_factory: db_engine.SessionFactory, conductor: Conductor
) -> None:
    conductor.hypervisors.compute_node_report(node_report("h1", console_address="192.0.2.7"))
    assert _address(db_session_factory, "h1") == "192.0.2.7"
    conductor.hypervisors.compute_node_report(node_report("h1", console_address="192.0.2.8"))
    assert _address(db_session_factory, "h1") == "192.0.2.8"
    # An agent of an older contract reports none: its host is reached at its name again.
    conductor.hypervisors.compute_node_report(node_report("h1"))
    assert _address(db_session_factory, "h1") is None
