"""Operator settings from the environment: a bad value is refused with the variable named."""

from __future__ import annotations

import pytest

from kubenova.config import OperatorSettings


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KUBENOVA_API_WORKERS", "0"),
        ("KUBENOVA_API_WORKERS", "many"),
        ("KUBENOVA_HYPERVISOR_CHECK_INTERVAL", "0"),
        ("KUBENOVA_HYPERVISOR_CHECK_INTERVAL", "-5"),
        ("KUBENOVA_AUDIT_INTERVAL", "soon"),
    ],
)
def test_a_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"{name} must be a positive number, got"):
        OperatorSettings.from_env()


def test_the_periodic_intervals_and_workers_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBENOVA_API_WORKERS", "6")
    monkeypatch.setenv("KUBENOVA_HYPERVISOR_CHECK_INTERVAL", "2.5")
    monkeypatch.setenv("KUBENOVA_AUDIT_INTERVAL", "30")
    settings = OperatorSettings.from_env()
    assert (settings.api_workers, settings.hypervisor_check_interval_s) == (6, 2.5)
    assert settings.audit_interval_s == 30.0


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "KUBENOVA_API_WORKERS",
        "KUBENOVA_HYPERVISOR_CHECK_INTERVAL",
        "KUBENOVA_AUDIT_INTERVAL",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = OperatorSettings.from_env()
    assert (settings.api_workers, settings.hypervisor_check_interval_s) == (16, 10.0)
    assert settings.audit_interval_s == 60.0
