"""A node-agent's RabbitMQ user from hack/rabbitmq-agent-user.sh reaches its own queue only.

Runs against the broker that ``hack/services.sh up`` starts, with the settings of
hack/lib/env.sh (same variables, same defaults), and needs root because the script runs
rabbitmqctl. Each run makes a throwaway agent user and deletes it at the end.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import secrets
import stat
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pika.exceptions
import pytest

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "rabbitmq-agent-user.sh"


def _setting(name: str, default: str) -> str:
    """One hack/lib/env.sh setting; as with ``${NAME:-default}``, empty means the default."""
    return os.environ.get(name) or default


STATE = pathlib.Path(_setting("KUBENOVA_STATE", str(ROOT / ".kubenova")))
VHOST = _setting("KUBENOVA_AMQP_VHOST", "kubenova")
OPERATOR_USER = _setting("KUBENOVA_AMQP_OPERATOR_USER", "kubenova-operator")
OPERATOR_PASSWORD = _setting("KUBENOVA_AMQP_OPERATOR_PASSWORD", "kubenova-dev")
AMQP_URL = _setting(
    "KUBENOVA_AMQP_URL",
    f"amqp://{OPERATOR_USER}:{OPERATOR_PASSWORD}@127.0.0.1:5672/{VHOST}",
)

# The messaging contract's exchanges (kubenova.config.MessagingSettings).
EXCHANGE = "kubenova"
DEAD_LETTER_EXCHANGE = "kubenova-dlx"
CONDUCTOR_TOPIC = "conductor"
ACCESS_REFUSED = 403
NOT_FOUND = 404
PRECONDITION_FAILED = 406


@dataclasses.dataclass(frozen=True)
class Agent:
    """A throwaway agent host and what the script made for it."""

    host: str

    @property
    def user(self) -> str:
        return f"agent-{self.host}"

    @property
    def queue(self) -> str:
        return f"compute.{self.host}"

    @property
    def url_file(self) -> pathlib.Path:
        return STATE / "agents" / f"{self.host}.amqp-url"

    @property
    def url(self) -> str:
        return self.url_file.read_text().strip()


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False
    )


def make_agent() -> Agent:
    # A dot in the name, so the tests also prove that it is escaped in the regexes.
    agent = Agent(f"itest-{secrets.token_hex(4)}.lab")
    result = run_script(agent.host)
    assert result.returncode == 0, result.stderr
    return agent


def connect(url: str) -> Any:
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    return pika.BlockingConnection(params)


def assert_refused(action: Callable[[], object]) -> None:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        action()
    assert info.value.reply_code == ACCESS_REFUSED, info.value.reply_text


def declare_own_queue(channel: Any, agent: Agent) -> None:
    """What the agent does at start (kubenova.rpc.amqp.declare_queue)."""
    channel.queue_declare(
        agent.queue, durable=True, arguments={"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE}
    )
    channel.queue_bind(agent.queue, EXCHANGE, routing_key=agent.queue)


@pytest.fixture(scope="module")
def operator() -> Iterator[Any]:
    try:
        connection = connect(AMQP_URL)
    except pika.exceptions.AMQPConnectionError as exc:
        pytest.fail(
            f"RabbitMQ does not accept {OPERATOR_USER} on vhost {VHOST} ({exc!r}); "
            "start it with hack/services.sh up"
        )
    try:
        yield connection
    finally:
        if connection.is_open:
            connection.close()


@pytest.fixture(scope="module")
def topology(operator: Any) -> None:
    """The exchanges the operator declares at start; declared here when no operator ran yet."""
    for name, kind in ((EXCHANGE, "topic"), (DEAD_LETTER_EXCHANGE, "fanout")):
        channel = operator.channel()
        try:
            channel.exchange_declare(name, exchange_type=kind, durable=True, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != NOT_FOUND:
                raise
            channel = operator.channel()
            channel.exchange_declare(name, exchange_type=kind, durable=True)
        channel.close()


@pytest.fixture(scope="module")
def agent(operator: Any, topology: None) -> Iterator[Agent]:
    agent = make_agent()
    try:
        yield agent
    finally:
        channel = operator.channel()
        channel.queue_delete(agent.queue)
        channel.close()
        result = run_script("--delete", agent.host)
        assert result.returncode == 0, result.stderr


@pytest.fixture
def other_queue(operator: Any, agent: Agent) -> Iterator[str]:
    """Another host's queue, existing, so that a refusal is about rights and not a 404."""
    name = f"compute.{agent.host}-other"
    channel = operator.channel()
    channel.queue_declare(name, durable=True)
    try:
        yield name
    finally:
        channel.queue_delete(name)
        channel.close()


@pytest.fixture
def agent_channel(agent: Agent) -> Iterator[Any]:
    connection = connect(agent.url)
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()


def test_url_file_is_private_and_names_the_agent_user(agent: Agent) -> None:
    assert stat.S_IMODE(agent.url_file.stat().st_mode) == 0o600
    lines = agent.url_file.read_text().splitlines()
    assert len(lines) == 1
    url = urllib.parse.urlparse(lines[0])
    assert (url.scheme, url.username, url.hostname, url.port, url.path) == (
        "amqp",
        agent.user,
        "127.0.0.1",
        5672,
        f"/{VHOST}",
    )
    assert url.password is not None
    assert len(url.password) >= 32


def test_second_run_keeps_the_password(agent: Agent) -> None:
    before = agent.url
    result = run_script(agent.host)
    assert result.returncode == 0, result.stderr
    assert agent.url == before
    connect(agent.url).close()


def test_agent_declares_and_binds_its_own_queue_with_dead_lettering(
    agent_channel: Any, agent: Agent
) -> None:
    declare_own_queue(agent_channel, agent)
    assert agent_channel.queue_declare(agent.queue, passive=True).method.queue == agent.queue


def test_agent_consumes_what_is_routed_to_its_queue(
    agent_channel: Any, agent: Agent, operator: Any
) -> None:
    declare_own_queue(agent_channel, agent)
    agent_channel.queue_purge(agent.queue)
    publisher = operator.channel()
    publisher.confirm_delivery()
    publisher.basic_publish(EXCHANGE, agent.queue, b"for the agent", mandatory=True)
    publisher.close()
    _, _, body = agent_channel.basic_get(agent.queue, auto_ack=True)
    assert body == b"for the agent"


def test_agent_publishes_to_the_conductor_as_itself(
    agent_channel: Any, agent: Agent, operator: Any
) -> None:
    listener = operator.channel()
    queue = listener.queue_declare("", exclusive=True).method.queue
    listener.queue_bind(queue, EXCHANGE, routing_key="conductor")
    agent_channel.confirm_delivery()
    agent_channel.basic_publish(
        EXCHANGE,
        "conductor",
        b'{"probe": "agent permissions test"}',
        pika.BasicProperties(user_id=agent.user),
        mandatory=True,
    )
    deadline = time.monotonic() + 5
    method = None
    while method is None and time.monotonic() < deadline:
        method, properties, _ = listener.basic_get(queue, auto_ack=True)
    listener.close()
    assert method is not None, "the message never reached the conductor's routing key"
    assert properties.user_id == agent.user


def _conductor_bodies(listener: Any, queue: str, until: bytes) -> list[bytes]:
    """The bodies routed to the conductor's routing key, read from ``queue`` until ``until``
    arrives (within 5 s). Other agents' reports on the shared broker may be among them."""
    bodies: list[bytes] = []
    deadline = time.monotonic() + 5
    while until not in bodies and time.monotonic() < deadline:
        method, _, body = listener.basic_get(queue, auto_ack=True)
        if method is not None:
            bodies.append(body)
    assert until in bodies, "the agent's own message never reached the conductor's routing key"
    return bodies


@pytest.mark.parametrize("impersonated", ["another-agent", "operator"])
def test_agent_cannot_publish_to_the_conductor_as_another_user(
    agent_channel: Any, agent: Agent, operator: Any, impersonated: str
) -> None:
    """The conductor trusts the user_id of a report because RabbitMQ refuses a user_id that
    is not the publisher's own (406), so an agent cannot pass for another host or for the
    operator. The queue bound to the conductor's routing key here gets a copy of whatever
    that key routes, as the conductor's queue does: the forgery must not be among it."""
    user_id = OPERATOR_USER if impersonated == "operator" else f"agent-{agent.host}-other"
    forged = f"forged as {user_id} {secrets.token_hex(8)}".encode()
    genuine = f"sent as {agent.user} {secrets.token_hex(8)}".encode()
    listener = operator.channel()
    queue = listener.queue_declare("", exclusive=True).method.queue
    listener.queue_bind(queue, EXCHANGE, routing_key=CONDUCTOR_TOPIC)

    agent_channel.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        agent_channel.basic_publish(
            EXCHANGE,
            CONDUCTOR_TOPIC,
            forged,
            pika.BasicProperties(user_id=user_id),
            mandatory=True,
        )
    assert info.value.reply_code == PRECONDITION_FAILED, info.value.reply_text
    assert user_id in info.value.reply_text

    # The same agent, on a new channel, still gets its own report through: the listener hears
    # what is routed, and only that arrived.
    channel = agent_channel.connection.channel()
    channel.confirm_delivery()
    channel.basic_publish(
        EXCHANGE, CONDUCTOR_TOPIC, genuine, pika.BasicProperties(user_id=agent.user), mandatory=True
    )
    channel.close()
    bodies = _conductor_bodies(listener, queue, until=genuine)
    listener.queue_delete(queue)
    listener.close()
    assert forged not in bodies


def test_agent_cannot_consume_another_hosts_queue(agent_channel: Any, other_queue: str) -> None:
    assert_refused(lambda: agent_channel.basic_consume(other_queue, lambda *_: None))


def test_agent_cannot_publish_with_another_hosts_routing_key(
    agent_channel: Any, other_queue: str
) -> None:
    agent_channel.confirm_delivery()
    assert_refused(lambda: agent_channel.basic_publish(EXCHANGE, other_queue, b"x"))


def test_agent_cannot_bind_its_queue_to_another_hosts_routing_key(
    agent_channel: Any, agent: Agent, other_queue: str
) -> None:
    declare_own_queue(agent_channel, agent)
    assert_refused(lambda: agent_channel.queue_bind(agent.queue, EXCHANGE, routing_key=other_queue))


def test_agent_cannot_declare_another_hosts_queue(agent_channel: Any, other_queue: str) -> None:
    assert_refused(lambda: agent_channel.queue_declare(other_queue, durable=True))


@pytest.mark.parametrize(
    ("dot", "stand_in"),
    [("compute.", "computex"), (".lab", "xlab")],
    ids=["after-compute", "inside-host-name"],
)
def test_dots_in_queue_name_match_only_a_dot(
    agent_channel: Any, agent: Agent, dot: str, stand_in: str
) -> None:
    lookalike = agent.queue.replace(dot, stand_in)
    assert lookalike != agent.queue
    assert_refused(lambda: agent_channel.queue_declare(lookalike, auto_delete=True))


def test_agent_cannot_publish_to_the_default_exchange(agent_channel: Any, agent: Agent) -> None:
    agent_channel.confirm_delivery()
    assert_refused(lambda: agent_channel.basic_publish("", agent.queue, b"x"))


def test_agent_cannot_declare_the_shared_exchange(agent_channel: Any) -> None:
    assert_refused(
        lambda: agent_channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
    )


def test_deleted_agent_user_can_no_longer_log_in(topology: None) -> None:
    agent = make_agent()
    url = agent.url
    connect(url).close()
    result = run_script("--delete", agent.host)
    assert result.returncode == 0, result.stderr
    assert not agent.url_file.exists()
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect(url)
