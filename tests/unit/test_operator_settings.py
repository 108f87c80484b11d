"""Operator settings from the environment: a bad value is refused with the variable named, and
the database URL has no default."""

from __future__ import annotations

import dataclasses
import inspect
import logging

import pytest

from kubenova import config
from kubenova.cmd import operator as operator_cmd
from kubenova.config import OperatorSettings
from kubenova.db import engine as db_engine


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


def test_the_database_url_has_no_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBENOVA_DB_URL", raising=False)
    with pytest.raises(RuntimeError, match="no database URL: set KUBENOVA_DB_URL"):
        db_engine.url_from_env()
    monkeypatch.setenv("KUBENOVA_DB_URL", "  ")
    with pytest.raises(RuntimeError, match="KUBENOVA_DB_URL"):
        db_engine.url_from_env()
    monkeypatch.setenv("KUBENOVA_DB_URL", "mysql+pymysql://u:p@db:3306/nova")
    assert db_engine.url_from_env() == "mysql+pymysql://u:p@db:3306/nova"


def test_the_settings_the_agent_imports_hold_nothing_about_the_database() -> None:
    # The node-agent imports kubenova.config (directly and through kubenova.rpc).
    assert [f.name for f in dataclasses.fields(OperatorSettings) if "db" in f.name] == []
    source = inspect.getsource(config)
    assert "mysql" not in source
    assert "DB_URL" not in source


def test_the_operator_exits_at_once_without_a_database_url(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def must_not_start(*args: object, **kwargs: object) -> None:
        raise AssertionError("the operator went on without a database URL")

    monkeypatch.delenv("KUBENOVA_DB_URL", raising=False)
    # log.setup would replace the handlers caplog reads.
    monkeypatch.setattr(operator_cmd.log, "setup", lambda *args, **kwargs: None)
    monkeypatch.setattr(operator_cmd.k8s, "load_config", must_not_start)
    monkeypatch.setattr(operator_cmd, "_serve", must_not_start)
    with caplog.at_level(logging.ERROR):
        assert operator_cmd.main([]) == operator_cmd.EXIT_CONFIG_ERROR == 2
    assert "no database URL: set KUBENOVA_DB_URL" in caplog.text


def test_the_scheduler_candidate_bound_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBENOVA_SCHEDULER_MAX_CANDIDATES", raising=False)
    assert OperatorSettings.from_env().scheduler_max_candidates == 200
    monkeypatch.setenv("KUBENOVA_SCHEDULER_MAX_CANDIDATES", "0")
    assert OperatorSettings.from_env().scheduler_max_candidates == 0
    monkeypatch.setenv("KUBENOVA_SCHEDULER_MAX_CANDIDATES", "50")
    assert OperatorSettings.from_env().scheduler_max_candidates == 50


@pytest.mark.parametrize("value", ["-1", "2.5", "all"])
def test_a_bad_scheduler_candidate_bound_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("KUBENOVA_SCHEDULER_MAX_CANDIDATES", value)
    with pytest.raises(
        ValueError, match="KUBENOVA_SCHEDULER_MAX_CANDIDATES must be a whole number >= 0, got"
    ):
        OperatorSettings.from_env()
