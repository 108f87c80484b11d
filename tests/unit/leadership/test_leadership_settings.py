"""Leader election and probe settings from the flags' environment variables."""

from __future__ import annotations

import os
import pathlib

import pytest

from kubenova.leadership import settings
from kubenova.leadership.settings import HealthSettings, LeaderElectionSettings

_VARIABLES = (
    "KUBENOVA_LEADER_ELECT_LEASE",
    "KUBENOVA_LEADER_ELECT_NAMESPACE",
    "KUBENOVA_LEADER_ELECT_LEASE_DURATION",
    "KUBENOVA_LEADER_ELECT_RENEW_DEADLINE",
    "KUBENOVA_LEADER_ELECT_RETRY_PERIOD",
    "KUBENOVA_HEALTH_PORT",
    "KUBENOVA_HEALTH_ADDR",
    "POD_NAME",
)
# Not in a pod: no service account namespace file.
NO_POD = pathlib.Path("/nonexistent/namespace")


def from_env(lease_name: str | None = None) -> LeaderElectionSettings:
    return LeaderElectionSettings.from_env(lease_name, namespace_file=NO_POD)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_client_go_timings_by_default() -> None:
    elect = from_env()
    assert (elect.lease_duration_s, elect.renew_deadline_s, elect.retry_period_s) == (15, 10, 2)
    assert (elect.lease_name, elect.namespace) == ("kubenova-operator", "default")


def test_the_flag_names_the_lease_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBENOVA_LEADER_ELECT_LEASE", "from-env")
    assert from_env().lease_name == "from-env"
    assert from_env("from-flag").lease_name == "from-flag"


def test_the_namespace_is_the_variable_else_the_pods(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("kubenova-system\n")
    in_pod = LeaderElectionSettings.from_env(namespace_file=namespace_file)
    assert in_pod.namespace == "kubenova-system"
    monkeypatch.setenv("KUBENOVA_LEADER_ELECT_NAMESPACE", "elsewhere")
    assert LeaderElectionSettings.from_env(namespace_file=namespace_file).namespace == "elsewhere"


def test_the_identity_is_the_pod_name_else_host_and_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    assert from_env().identity.endswith(f"_{os.getpid()}")
    monkeypatch.setenv("POD_NAME", "kubenova-operator-7d9f-x2x")
    assert from_env().identity == "kubenova-operator-7d9f-x2x"


def test_timings_that_would_let_two_lead_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBENOVA_LEADER_ELECT_RENEW_DEADLINE", "15")
    with pytest.raises(ValueError, match="lease duration > renew deadline > retry period"):
        from_env()


def test_a_bad_timing_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBENOVA_LEADER_ELECT_RETRY_PERIOD", "soon")
    with pytest.raises(ValueError, match="KUBENOVA_LEADER_ELECT_RETRY_PERIOD must be a positive"):
        from_env()


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("false", False)])
def test_the_leader_elect_variable_is_a_boolean(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("KUBENOVA_LEADER_ELECT", value)
    assert settings.env_flag("KUBENOVA_LEADER_ELECT") is expected


def test_a_leader_elect_variable_that_is_not_a_boolean_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBENOVA_LEADER_ELECT", "maybe")
    with pytest.raises(ValueError, match="KUBENOVA_LEADER_ELECT must be true or false"):
        settings.env_flag("KUBENOVA_LEADER_ELECT")


def test_the_probes_are_served_on_every_address_of_the_chosen_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert HealthSettings.from_env(default_port=8081) == HealthSettings(8081, "0.0.0.0")
    assert HealthSettings.from_env(default_port=0).port == 0
    monkeypatch.setenv("KUBENOVA_HEALTH_PORT", "9000")
    monkeypatch.setenv("KUBENOVA_HEALTH_ADDR", "127.0.0.1")
    assert HealthSettings.from_env(default_port=0) == HealthSettings(9000, "127.0.0.1")
