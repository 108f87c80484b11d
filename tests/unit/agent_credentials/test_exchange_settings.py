"""The exchange's settings: off by default, and every default derived from what the operator
already knows (its namespace, its own AMQP URL)."""

from __future__ import annotations

import pytest

from kubenova.agent_credentials.settings import (
    ExchangeSettings,
    management_url_for,
    without_credentials,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "KUBENOVA_AGENT_CREDENTIALS_PORT",
        "KUBENOVA_AGENT_SERVICE_ACCOUNT",
        "KUBENOVA_AMQP_MANAGEMENT_URL",
        "KUBENOVA_AGENT_BROKER_URL",
        "KUBENOVA_AGENT_CREDENTIALS_DNS_NAMES",
        "KUBENOVA_HYPERVISOR_NODE_SELECTOR",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("POD_NAMESPACE", "kubenova")
    monkeypatch.setenv("KUBENOVA_AMQP_URL", "amqp://kubenova-operator:s3cret@rabbitmq:5672/nova")


def test_the_exchange_is_off_unless_a_port_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not ExchangeSettings.from_env().enabled
    monkeypatch.setenv("KUBENOVA_AGENT_CREDENTIALS_PORT", "8443")
    assert ExchangeSettings.from_env().port == 8443


def test_defaults_follow_the_operators_namespace_and_amqp_url() -> None:
    settings = ExchangeSettings.from_env()
    assert settings.agent_username == "system:serviceaccount:kubenova:kubenova-agent"
    assert settings.dns_names == (
        "kubenova-operator.kubenova.svc",
        "kubenova-operator.kubenova.svc.cluster.local",
    )
    assert settings.management_url == "http://kubenova-operator:s3cret@rabbitmq:15672/"
    assert settings.broker_url == "amqp://rabbitmq:5672/nova"
    assert settings.node_selector == "kubenova.io/hypervisor=true"


def test_the_agent_service_account_may_live_in_another_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBENOVA_AGENT_SERVICE_ACCOUNT", "compute:nova-compute")
    settings = ExchangeSettings.from_env()
    assert settings.agent_username == "system:serviceaccount:compute:nova-compute"


def test_amqps_means_the_management_apis_https_port() -> None:
    assert management_url_for("amqps://u:p@mq.example:5671/") == "https://u:p@mq.example:15671/"


def test_a_broker_url_loses_only_its_credentials() -> None:
    assert without_credentials("amqps://u:p%40ss@mq:5671/a%2Fb?heartbeat=30") == (
        "amqps://mq:5671/a%2Fb?heartbeat=30"
    )
