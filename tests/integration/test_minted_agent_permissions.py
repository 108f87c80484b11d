"""A node's agent user minted through RabbitMQ's management API reaches its own queue only.

The operator mints these users in a cluster (``kubenova.agent_credentials.minter`` through
``rabbitmq_admin``); the local stack's script makes the same users with rabbitmqctl. The
checks of tests/integration/test_rabbitmq_agent_permissions.py are taken in below and run here
again against a minted user: pytest collects every ``test_*`` function of a module, and their
``agent`` fixture resolves to this module's.

Needs the broker of ``hack/services.sh up`` with its management plugin (loopback port 15672)
and the operator's user tagged administrator; the Secret side is the unit tests' fake store.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pika.exceptions
import pytest

from kubenova.agent_credentials import minter, rabbitmq_admin, settings
from tests.integration import test_rabbitmq_agent_permissions as script_user
from tests.unit.agent_credentials.fakes import FakeObjects

pytestmark = pytest.mark.integration

# The fixtures and checks of the script's users, run here again against a minted user.
operator = script_user.operator
topology = script_user.topology
other_queue = script_user.other_queue
agent_channel = script_user.agent_channel
connect = script_user.connect
test_agent_declares_and_binds_its_own_queue_with_dead_lettering = (
    script_user.test_agent_declares_and_binds_its_own_queue_with_dead_lettering
)
test_agent_consumes_what_is_routed_to_its_queue = (
    script_user.test_agent_consumes_what_is_routed_to_its_queue
)
test_agent_publishes_to_the_conductor_as_itself = (
    script_user.test_agent_publishes_to_the_conductor_as_itself
)
test_agent_cannot_publish_to_the_conductor_as_another_user = (
    script_user.test_agent_cannot_publish_to_the_conductor_as_another_user
)
test_agent_cannot_consume_another_hosts_queue = (
    script_user.test_agent_cannot_consume_another_hosts_queue
)
test_agent_cannot_publish_with_another_hosts_routing_key = (
    script_user.test_agent_cannot_publish_with_another_hosts_routing_key
)
test_agent_cannot_bind_its_queue_to_another_hosts_routing_key = (
    script_user.test_agent_cannot_bind_its_queue_to_another_hosts_routing_key
)
test_agent_cannot_declare_another_hosts_queue = (
    script_user.test_agent_cannot_declare_another_hosts_queue
)
test_dots_in_queue_name_match_only_a_dot = script_user.test_dots_in_queue_name_match_only_a_dot
test_agent_cannot_publish_to_the_default_exchange = (
    script_user.test_agent_cannot_publish_to_the_default_exchange
)
test_agent_cannot_declare_the_shared_exchange = (
    script_user.test_agent_cannot_declare_the_shared_exchange
)

MANAGEMENT_URL = os.environ.get("KUBENOVA_AMQP_MANAGEMENT_URL") or settings.management_url_for(
    script_user.AMQP_URL
)
BROKER_URL = settings.without_credentials(script_user.AMQP_URL)


@dataclasses.dataclass(frozen=True)
class MintedAgent:
    """What the imported checks need of an agent: its host, user, queue and URL."""

    host: str
    url: str

    @property
    def user(self) -> str:
        return f"agent-{self.host}"

    @property
    def queue(self) -> str:
        return f"compute.{self.host}"


@pytest.fixture(scope="module")
def admin() -> rabbitmq_admin.ManagementClient:
    client = rabbitmq_admin.ManagementClient(MANAGEMENT_URL)
    try:
        client.delete_user("agent-kubenova-probe-of-the-management-api")
    except rabbitmq_admin.ManagementError as exc:
        pytest.fail(
            f"RabbitMQ's management API does not answer as an administrator ({exc}); "
            "hack/services.sh up enables it",
            pytrace=False,
        )
    return client


@pytest.fixture(scope="module")
def store() -> FakeObjects:
    return FakeObjects()


@pytest.fixture(scope="module")
def mint(admin: rabbitmq_admin.ManagementClient, store: FakeObjects) -> minter.Minter:
    return minter.Minter(store, admin, BROKER_URL)


@pytest.fixture(scope="module")
def agent(operator: Any, topology: None, mint: minter.Minter) -> Iterator[MintedAgent]:
    # A dot in the name, so the checks also prove that it is escaped in the regexes.
    host = f"itest-{secrets.token_hex(4)}.lab"
    minted = MintedAgent(host, mint.ensure(host).amqp_url)
    try:
        yield minted
    finally:
        channel = operator.channel()
        channel.queue_delete(minted.queue)
        channel.close()
        mint.revoke(host)


def test_a_second_mint_keeps_the_password(agent: MintedAgent, mint: minter.Minter) -> None:
    assert mint.ensure(agent.host).amqp_url == agent.url
    connect(agent.url).close()


def test_the_minted_user_may_not_use_the_management_api(agent: MintedAgent) -> None:
    url = urllib.parse.urlsplit(settings.management_url_for(agent.url))
    request = urllib.request.Request(f"{url.scheme}://{url.hostname}:{url.port}/api/whoami")
    basic = base64.b64encode(f"{agent.user}:{url.password}".encode()).decode()
    request.add_header("Authorization", f"Basic {basic}")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    info.value.close()
    assert info.value.code == 401


def test_a_revoked_user_can_no_longer_log_in(
    operator: Any, topology: None, mint: minter.Minter
) -> None:
    host = f"itest-{secrets.token_hex(4)}.lab"
    url = mint.ensure(host).amqp_url
    connect(url).close()
    assert mint.revoke(host)
    assert host not in mint.minted_nodes()
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect(url)
