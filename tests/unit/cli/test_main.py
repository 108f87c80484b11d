"""The verbs end to end over a fake of the plugin's API calls: exit codes and output."""

import json

import pytest
from kubernetes.client import exceptions as k8s_exceptions

from kubenova.cli import kube, kubectl_nova, wait
from tests.unit.cli import helpers
from tests.unit.cli.helpers import instance

NOT_FOUND = k8s_exceptions.ApiException(
    status=404,
    reason="Not Found",
    body=json.dumps(
        {
            "kind": "Status",
            "reason": "NotFound",
            "message": 'instances.compute.kubenova.io "web-9" not found',
        }
    ),
)


@pytest.fixture
def cluster(monkeypatch):
    """An Instance web-1 that the patch moves to ``after_patch`` (as the operator would)."""

    class Fake:
        obj = instance()
        after_patch = None
        patches: list = []
        actions: list = []
        connected: list = []

    def connect(kubeconfig, context, namespace):
        Fake.connected.append((kubeconfig, context, namespace))
        return helpers.cluster(namespace or "default")

    def get_instance(cluster, name):
        if name != "web-1":
            raise NOT_FOUND
        return Fake.obj

    def patch_instance(cluster, name, patch):
        Fake.patches.append(patch)
        return Fake.after_patch or Fake.obj

    def no_watch(cluster, name, resource_version, timeout_seconds):
        return iter(())

    monkeypatch.setattr(kube, "connect", connect)
    monkeypatch.setattr(kube, "get_instance", get_instance)
    monkeypatch.setattr(kube, "patch_instance", patch_instance)
    monkeypatch.setattr(kube, "watch_instance", no_watch)
    monkeypatch.setattr(kube, "list_instance_actions", lambda cluster, name: Fake.actions)
    monkeypatch.setattr(wait, "POLL_INTERVAL", 0.01)
    return Fake


def test_a_missing_instance_is_not_found_in_kubectls_words(cluster, capsys):
    assert kubectl_nova.main(["stop", "web-9"]) == 1

    captured = capsys.readouterr()
    assert captured.err == (
        'Error from server (NotFound): instances.compute.kubenova.io "web-9" not found\n'
    )
    assert cluster.patches == []


def test_an_instance_already_there_is_left_alone(cluster, capsys):
    assert kubectl_nova.main(["start", "web-1"]) == 0

    assert capsys.readouterr().out == "instance web-1 is already running\n"
    assert cluster.patches == []


def test_a_verb_that_does_not_fit_the_state_is_refused_before_any_patch(cluster, capsys):
    cluster.obj = instance(power_state="Stopped", phase="Stopped")

    assert kubectl_nova.main(["unpause", "web-1"]) == 1

    assert "error: cannot unpause instance web-1: it is Stopped" in capsys.readouterr().err
    assert cluster.patches == []


def test_no_wait_patches_and_says_the_request_is_recorded(cluster, capsys):
    assert kubectl_nova.main(["stop", "web-1", "--no-wait", "-n", "prod"]) == 0

    assert capsys.readouterr().out == "instance.compute.kubenova.io/web-1 stop requested\n"
    assert cluster.patches == [{"spec": {"powerState": "Stopped"}}]
    assert cluster.connected == [(None, None, "prod")]


def test_an_applied_change_exits_0_after_its_progress(cluster, capsys):
    cluster.after_patch = instance(
        power_state="Stopped", phase="Stopped", generation=2, observed=2, synced=("True", "S", 2)
    )

    assert kubectl_nova.main(["stop", "web-1"]) == 0

    assert capsys.readouterr().out.splitlines() == [
        "web-1: Stopped",
        "instance.compute.kubenova.io/web-1 stopped",
    ]


def test_a_refusal_by_the_operator_exits_1_with_its_message(cluster, capsys):
    message = "cannot pause: the instance is stopped; pause needs vm_state active"
    cluster.after_patch = instance(
        power_state="Paused",
        phase="Stopped",
        generation=2,
        observed=2,
        synced=("False", "InvalidState", 2),
        message=message,
    )

    assert kubectl_nova.main(["pause", "web-1"]) == 1

    captured = capsys.readouterr()
    assert captured.err == f"error: pause of instance web-1 refused (InvalidState): {message}\n"


def test_a_timeout_exits_1_with_a_message(cluster, capsys):
    cluster.after_patch = instance(power_state="Stopped", generation=2, observed=1)
    cluster.obj = cluster.after_patch  # every read shows the operator has not acted

    assert kubectl_nova.main(["stop", "web-1", "--timeout", "50ms"]) == 1

    assert "error: timed out after 50ms waiting for instance web-1 to stop" in (
        capsys.readouterr().err
    )


def test_start_of_an_instance_its_guest_stopped_says_it_reboots_it_hard(cluster, capsys):
    cluster.obj = instance(power_state="Running", phase="Stopped")

    assert kubectl_nova.main(["start", "web-1", "--no-wait"]) == 0

    out = capsys.readouterr().out.splitlines()
    assert "hard reboot" in out[0]
    assert out[1] == "instance.compute.kubenova.io/web-1 start requested"
    assert cluster.patches[0]["spec"]["reboot"]["type"] == "Hard"


def test_reboot_patches_a_new_request(cluster, capsys):
    assert kubectl_nova.main(["reboot", "web-1", "--hard", "--no-wait"]) == 0

    assert cluster.patches[0]["spec"]["reboot"]["type"] == "Hard"
    assert capsys.readouterr().out == "instance.compute.kubenova.io/web-1 reboot requested\n"


def test_events_of_an_instance_without_actions(cluster, capsys):
    assert kubectl_nova.main(["events", "web-1"]) == 0

    assert capsys.readouterr().out == "No actions found for instance web-1.\n"


def test_events_of_a_missing_instance_is_not_found(cluster, capsys):
    assert kubectl_nova.main(["events", "web-9"]) == 1

    assert "Error from server (NotFound)" in capsys.readouterr().err


def test_events_of_an_unknown_request_id_is_an_error(cluster, capsys):
    cluster.actions = [{"requestId": "req-1", "instanceUID": "uid-1", "metadata": {"name": "a"}}]

    assert kubectl_nova.main(["events", "web-1", "req-2"]) == 1

    assert (
        capsys.readouterr().err == 'error: instance web-1 has no action with request ID "req-2"\n'
    )


def test_events_as_json_is_an_empty_list_when_there_are_none(cluster, capsys):
    assert kubectl_nova.main(["events", "web-1", "-o", "json"]) == 0

    assert json.loads(capsys.readouterr().out)["items"] == []
