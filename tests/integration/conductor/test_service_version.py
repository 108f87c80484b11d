"""A heartbeat records its agent service's version, as Nova records what each service speaks:
the newest contract version the agent implements, which its report carries (since 1.2), or for
an older agent the version its report came in."""

from __future__ import annotations

import pytest

from kubenova.conductor.service import Conductor
from kubenova.config import MessagingSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models
from kubenova.rpc import envelope
from tests.integration.conductor.fakes import node_report

pytestmark = pytest.mark.integration


def _report_in(
    version: str, host: str = "h1", service_version: str | None = None
) -> envelope.Envelope:
    report = node_report(host).model_copy(update={"service_version": service_version})
    return envelope.Envelope(
        version=version,
        request_id=envelope.new_request_id(),
        method="compute_node_report",
        args=report.model_dump(mode="json", exclude_none=True),
        sender=MessagingSettings.agent_user(host),
    )


def _recorded_version(session_factory: db_engine.SessionFactory, host: str = "h1") -> str | None:
    with db_engine.transaction(session_factory) as session:
        service = db_api.service_get(session, host, models.AGENT_BINARY)
    assert service is not None
    return service.version


def test_the_agent_service_records_the_version_its_agent_implements(
    db_session_factory: db_engine.SessionFactory, conductor: Conductor
) -> None:
    # An agent older than 1.2 says nothing itself: the version its report came in stands.
    conductor.manager.handle(_report_in("1.0"), MessagingSettings.agent_user("h1"))
    assert _recorded_version(db_session_factory) == "1.0"

    # A current agent reports what it implements, whatever the method's own version.
    conductor.manager.handle(
        _report_in("1.2", service_version=envelope.VERSION), MessagingSettings.agent_user("h1")
    )
    assert _recorded_version(db_session_factory) == envelope.VERSION


def test_a_report_handed_over_directly_is_of_the_current_contract(
    db_session_factory: db_engine.SessionFactory, conductor: Conductor
) -> None:
    conductor.hypervisors.compute_node_report(node_report("h2"))
    assert _recorded_version(db_session_factory, "h2") == envelope.VERSION
