"""Forgetting a host (Nova's compute service delete)."""

import pytest

from kubenova.db import api, models
from kubenova.db import engine as db_engine
from tests.integration.db.helpers import claim, make_host, make_instance

pytestmark = pytest.mark.integration


def test_empty_host_is_forgotten_with_its_service(db_session_factory):
    make_host(db_session_factory, "gone", vcpus=4, memory_mib=4096, local_gb=10)
    with db_engine.transaction(db_session_factory) as session:
        api.service_record_heartbeat(session, "gone", models.AGENT_BINARY, "compute.gone", "1.0")
    with db_engine.transaction(db_session_factory) as session:
        assert api.compute_node_delete(session, "gone") is True
    with db_engine.transaction(db_session_factory) as session:
        assert api.compute_node_get(session, "gone") is None
        assert api.service_get(session, "gone", models.AGENT_BINARY) is None
        assert all(record.node.host != "gone" for record in api.compute_nodes_list(session))


def test_host_with_an_instance_is_not_forgotten(db_session_factory):
    make_host(db_session_factory, "busy", vcpus=4, memory_mib=4096, local_gb=10)
    instance_uuid = make_instance(db_session_factory)
    assert claim(db_session_factory, instance_uuid, "busy")
    with db_engine.transaction(db_session_factory) as session:
        assert api.compute_node_delete(session, "busy") is False
    with db_engine.transaction(db_session_factory) as session:
        assert api.compute_node_get(session, "busy") is not None


def test_unknown_host_is_nothing_to_do(db_session_factory):
    with db_engine.transaction(db_session_factory) as session:
        assert api.compute_node_delete(session, "never-was") is True
