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


def test_the_building_status_delay_defaults_to_half_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBENOVA_BUILDING_STATUS_DELAY", raising=False)
    assert OperatorSettings.from_env().building_status_delay_s == 0.5
    monkeypatch.setenv("KUBENOVA_BUILDING_STATUS_DELAY", "")
    assert OperatorSettings.from_env().building_status_delay_s == 0.5


@pytest.mark.parametrize(("value", "expected"), [("0", 0.0), ("1.5", 1.5)])
def test_the_building_status_delay_is_read(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: float
) -> None:
    monkeypatch.setenv("KUBENOVA_BUILDING_STATUS_DELAY", value)
    assert OperatorSettings.from_env().building_status_delay_s == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "must be a finite number >= 0, got -1.0"),
        ("inf", "must be a finite number >= 0, got inf"),
        ("nan", "must be a finite number >= 0, got nan"),
        ("abc", "must be a number"),
    ],
)
def test_a_bad_building_status_delay_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("KUBENOVA_BUILDING_STATUS_DELAY", value)
    with pytest.raises(ValueError, match=f"KUBENOVA_BUILDING_STATUS_DELAY {message}"):
        OperatorSettings.from_env()
