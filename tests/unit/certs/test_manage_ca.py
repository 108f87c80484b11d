"""``kubenova-manage ca``: what an administrator sees and is told; the rotation itself is
tested in test_administrators_rotation."""

from __future__ import annotations

import argparse
import datetime

import pytest

from kubenova.certs import store
from kubenova.cmd import manage, manage_ca
from tests.unit.agent_credentials.fakes import FakeObjects


class _CountingPass:
    def __init__(self) -> None:
        self.runs = 0

    def run_once(self) -> list[object]:
        self.runs += 1
        return [object(), object()]


@pytest.fixture
def objs() -> FakeObjects:
    ca_store = FakeObjects()
    store.ensure_ca(ca_store)
    return ca_store


def test_status_shows_the_signing_ca_then_the_announced_one_then_the_retiring(
    objs: FakeObjects,
) -> None:
    (line,) = manage_ca.status(objs, argparse.Namespace(), None)
    assert line.startswith("current:  serial ")
    assert line.endswith(", signing")

    manage_ca.rotate_ca(objs, argparse.Namespace(signs_in=3600), None)
    current, upcoming = manage_ca.status(objs, argparse.Namespace(), None)
    assert upcoming.startswith("next:     serial ")
    assert ", trusted, signs from " in upcoming

    manage_ca.promote_ca(objs, argparse.Namespace(), None)
    current, retiring = manage_ca.status(objs, argparse.Namespace(), None)
    assert upcoming.split(",")[0].split()[-1] in current  # the announced one signs
    assert retiring.startswith("retiring: serial ")
    assert ", trusted until " in retiring


def test_rotate_says_when_the_new_ca_signs_and_runs_the_certificate_pass_where_it_can(
    objs: FakeObjects,
) -> None:
    certificate_pass = _CountingPass()
    before = datetime.datetime.now(datetime.UTC)
    lines = manage_ca.rotate_ca(objs, argparse.Namespace(signs_in=120), certificate_pass)
    assert lines[0].startswith("announced serial ")
    assert ": trusted now, signs from " in lines[0]
    signs_from = datetime.datetime.fromisoformat(lines[0].rsplit(" ", 1)[1].replace("Z", "+00:00"))
    assert 119 <= (signs_from - before).total_seconds() <= 125
    assert lines[1] == "certificate pass done (2 certificates checked)"
    assert certificate_pass.runs == 1


def test_without_the_operators_settings_the_pass_is_left_to_the_operator(
    objs: FakeObjects,
) -> None:
    manage_ca.rotate_ca(objs, argparse.Namespace(signs_in=0), None)
    lines = manage_ca.promote_ca(objs, argparse.Namespace(), None)
    assert lines[0].startswith("promoted serial ")
    assert lines[0].endswith("it signs from now on")
    assert lines[1].startswith("retiring serial ")
    assert lines[-1] == (
        "the operator reissues certificates and publishes the bundles at its next pass"
    )


def test_a_refusal_is_one_line_on_stderr_and_exit_status_1(
    objs: FakeObjects, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(manage_ca.k8s_client, "load_config", lambda: None)
    monkeypatch.setattr(manage_ca.objects, "NamespacedObjects", lambda namespace: objs)
    monkeypatch.setattr(manage_ca, "_certificate_pass", lambda: None)

    assert manage.main(["ca", "promote"]) == 1
    assert capsys.readouterr().err == (
        "kubenova-manage: error: no next CA is announced: rotate first\n"
    )
    assert manage.main(["ca", "rotate", "--signs-in", "60"]) == 0
    assert capsys.readouterr().out.startswith("announced serial ")


def test_the_namespace_is_the_flag_then_the_pods_then_the_charts(
    monkeypatch: pytest.MonkeyPatch, objs: FakeObjects
) -> None:
    seen: list[str] = []
    monkeypatch.setattr(manage_ca.k8s_client, "load_config", lambda: None)
    monkeypatch.setattr(
        manage_ca.objects, "NamespacedObjects", lambda namespace: seen.append(namespace) or objs
    )
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    for argv in (["ca", "status"], ["ca", "status", "-n", "mine"]):
        assert manage.main(argv) == 0
    monkeypatch.setenv("POD_NAMESPACE", "from-pod")
    assert manage.main(["ca", "status"]) == 0
    assert seen == ["kubenova-system", "mine", "from-pod"]


@pytest.mark.parametrize("value", ["-1", "soon"])
def test_a_bad_signs_in_is_a_usage_error(value: str) -> None:
    with pytest.raises(SystemExit) as exited:
        manage.main(["ca", "rotate", "--signs-in", value])
    assert exited.value.code == 2
