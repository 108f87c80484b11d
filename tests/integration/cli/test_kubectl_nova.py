"""``kubectl nova`` run by kubectl against the real kube-apiserver, with a stand-in for the
operator (fake_operator.py): exit codes, output, the patches it makes, and how it finds the
cluster and namespace."""

from __future__ import annotations

import json
import os
import re
import time

import pytest
import yaml

from tests.integration.cli import fake_operator
from tests.integration.cli.conftest import KUBECONFIG, kubectl, nova

pytestmark = pytest.mark.integration

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def test_kubectl_finds_the_plugin_on_path():
    listed = kubectl("plugin", "list", check=False)
    assert "kubectl-nova" in listed.stdout

    helped = nova("--help")
    assert helped.returncode == 0
    assert "usage: kubectl nova" in helped.stdout
    assert nova("stop", "--help").returncode == 0


def test_a_usage_error_exits_2():
    result = nova("stop")

    assert result.returncode == 2
    assert "the following arguments are required: NAME" in result.stderr


def test_stop_patches_the_spec_and_shows_the_operators_progress(
    namespace, make_instance, get_instance
):
    make_instance("web-stop")

    result = nova("stop", "web-stop", "-n", namespace)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "web-stop: Running",
        "web-stop: Running → powering-off",
        "web-stop: Stopped",
        "instance.compute.kubenova.io/web-stop stopped",
    ]
    obj = get_instance("web-stop")
    assert obj["spec"]["powerState"] == "Stopped"
    assert obj["status"]["phase"] == "Stopped"


def test_a_state_already_reached_is_not_patched_again(namespace, make_instance, get_instance):
    generation = make_instance("web-idle", phase="Stopped")["metadata"]["generation"]

    result = nova("stop", "web-idle", "-n", namespace)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "instance web-idle is already stopped\n"
    assert get_instance("web-idle")["metadata"]["generation"] == generation


def test_every_power_verb_goes_there_and_back(namespace, make_instance, get_instance):
    make_instance("web-cycle")
    for verb, phase in [
        ("pause", "Paused"),
        ("unpause", "Running"),
        ("suspend", "Suspended"),
        ("resume", "Running"),
        ("stop", "Stopped"),
        ("start", "Running"),
    ]:
        result = nova(verb, "web-cycle", "-n", namespace)

        assert result.returncode == 0, (verb, result.stderr)
        assert result.stdout.splitlines()[-2] == f"web-cycle: {phase}"
        assert get_instance("web-cycle")["spec"]["powerState"] == phase


def test_reboot_stamps_a_new_request_each_time(namespace, make_instance, get_instance):
    make_instance("web-reboot")

    soft = nova("reboot", "web-reboot", "-n", namespace)
    first = get_instance("web-reboot")["spec"]["reboot"]
    hard = nova("reboot", "web-reboot", "--hard", "-n", namespace)
    second = get_instance("web-reboot")["spec"]["reboot"]

    assert soft.returncode == 0, soft.stderr
    assert "web-reboot: Running → rebooting" in soft.stdout
    assert soft.stdout.endswith("instance.compute.kubenova.io/web-reboot rebooted\n")
    assert hard.returncode == 0, hard.stderr
    assert "web-reboot: Running → rebooting_hard" in hard.stdout
    assert first["type"] == "Soft"
    assert second["type"] == "Hard"
    assert STAMP.match(first["requestedAt"])
    assert STAMP.match(second["requestedAt"])
    assert first["requestedAt"] < second["requestedAt"]


def test_start_of_an_instance_its_guest_powered_off_reboots_it_hard(
    namespace, make_instance, get_instance
):
    # runStrategy Manual: the guest shut itself down, the spec still says Running.
    make_instance("web-manual", phase="Stopped", power_state="Running", run_strategy="Manual")

    result = nova("start", "web-manual", "-n", namespace)

    assert result.returncode == 0, result.stderr
    assert "starting it with a hard reboot" in result.stdout
    assert result.stdout.splitlines()[-1] == "instance.compute.kubenova.io/web-manual started"
    obj = get_instance("web-manual")
    assert obj["spec"]["reboot"]["type"] == "Hard"
    assert obj["spec"]["powerState"] == "Running"
    assert obj["status"]["phase"] == "Running"


def test_an_operation_the_operator_refuses_exits_1_with_its_message(namespace, make_instance):
    make_instance("web-refused", phase="Stopped")

    result = nova("pause", "web-refused", "-n", namespace)

    assert result.returncode == 1
    assert result.stderr == (
        "error: pause of instance web-refused refused (InvalidState): cannot pause: the "
        "instance is stopped; pause needs vm_state active\n"
    )
    # The refused pause left it stopped: start fits, and starts it.
    started = nova("start", "web-refused", "-n", namespace)
    assert started.returncode == 0, started.stderr
    assert started.stdout.splitlines()[-1] == "instance.compute.kubenova.io/web-refused started"


def test_an_operation_the_host_fails_exits_1_with_its_message(namespace, make_instance):
    make_instance("web-fails", annotations={fake_operator.FAIL: "yes"})

    result = nova("suspend", "web-fails", "-n", namespace)

    assert result.returncode == 1
    assert "suspend of instance web-fails failed (OperationFailed)" in result.stderr
    assert "libvirt said no" in result.stderr


def test_a_verb_that_does_not_fit_is_refused_without_a_patch(
    namespace, make_instance, get_instance
):
    generation = make_instance("web-misfit", phase="Stopped")["metadata"]["generation"]

    result = nova("unpause", "web-misfit", "-n", namespace)

    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot unpause instance web-misfit: it is Stopped")
    assert get_instance("web-misfit")["metadata"]["generation"] == generation


def test_no_wait_returns_once_the_request_is_recorded(namespace, make_instance, get_instance):
    # Stuck: the operation would never end, so only a command that does not wait returns.
    make_instance("web-nowait", annotations={fake_operator.STUCK: "yes"})

    result = nova("stop", "web-nowait", "-n", namespace, "--no-wait", timeout=30)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "instance.compute.kubenova.io/web-nowait stop requested\n"
    assert get_instance("web-nowait")["spec"]["powerState"] == "Stopped"


def test_the_timeout_ends_the_wait_with_exit_1(namespace, make_instance):
    make_instance("web-stuck", annotations={fake_operator.STUCK: "yes"})

    started = time.monotonic()
    result = nova("stop", "web-stuck", "-n", namespace, "--timeout", "3s", timeout=60)
    elapsed = time.monotonic() - started

    assert result.returncode == 1
    assert result.stderr == (
        "error: timed out after 3s waiting for instance web-stuck to stop "
        "(last seen: Running → powering-off)\n"
    )
    assert 3 <= elapsed < 20


def test_a_missing_instance_is_not_found(namespace, operator):
    result = nova("stop", "nope", "-n", namespace)

    assert result.returncode == 1
    assert result.stderr == (
        'Error from server (NotFound): instances.compute.kubenova.io "nope" not found\n'
    )


def test_the_namespace_comes_from_the_chosen_context(namespace, make_instance, tmp_path):
    make_instance("web-ctx", phase="Stopped")
    config = yaml.safe_load(KUBECONFIG.read_text())
    base = config["contexts"][0]["context"]
    config["contexts"].append({"name": "cli-test", "context": {**base, "namespace": namespace}})
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "KUBECONFIG": str(path)}

    in_context = nova("--context", "cli-test", "stop", "web-ctx", env=env)
    in_current = nova("stop", "web-ctx", env=env)
    flag_wins = nova("stop", "web-ctx", "--context", "cli-test", "-n", "default", env=env)
    unknown = nova("stop", "web-ctx", "--context", "nope", env=env)

    assert in_context.returncode == 0, in_context.stderr
    assert in_context.stdout == "instance web-ctx is already stopped\n"
    # The current context's namespace is "default", where there is no web-ctx.
    assert in_current.returncode == 1
    assert "NotFound" in in_current.stderr
    assert flag_wins.returncode == 1
    assert "NotFound" in flag_wins.stderr
    assert unknown.returncode == 1
    assert unknown.stderr == "error: context was not found for specified context: nope\n"


def test_the_kubeconfig_flag_is_read_without_the_environment(namespace, make_instance, tmp_path):
    make_instance("web-flag", phase="Stopped")
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = str(tmp_path)  # no ~/.kube/config either

    found = nova("--kubeconfig", str(KUBECONFIG), "stop", "web-flag", "-n", namespace, env=env)
    lost = nova("stop", "web-flag", "-n", namespace, env={**env, "KUBECONFIG": ""})

    assert found.returncode == 0, found.stderr
    assert found.stdout == "instance web-flag is already stopped\n"
    assert lost.returncode == 1
    assert "no kubeconfig file" in lost.stderr


def test_events_list_the_operations_oldest_first_and_show_one(namespace, make_instance):
    make_instance("web-events")
    for verb in ("stop", "start"):
        assert nova(verb, "web-events", "-n", namespace).returncode == 0
    assert nova("pause", "web-events", "-n", namespace, "--no-wait").returncode == 0
    time.sleep(2 * fake_operator.RUN_SECONDS + 1)

    listed = nova("events", "web-events", "-n", namespace)

    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == [
        "REQUEST ID",
        "ACTION",
        "RESULT",
        "START TIME",
        "FINISH TIME",
        "MESSAGE",
    ]
    rows = [line.split() for line in lines[1:]]
    assert [(row[1], row[2]) for row in rows] == [
        ("stop", "Success"),
        ("start", "Success"),
        ("pause", "Success"),
    ]
    request_id = rows[0][0]

    shown = nova("events", "web-events", request_id, "-n", namespace)

    assert shown.returncode == 0, shown.stderr
    assert f"Request ID:    {request_id}" in shown.stdout
    assert "compute_stop_instance" in shown.stdout
    assert fake_operator.HOST in shown.stdout

    as_json = json.loads(nova("events", "web-events", "-n", namespace, "-o", "json").stdout)
    assert [item["action"] for item in as_json["items"]] == ["stop", "start", "pause"]
    as_yaml = yaml.safe_load(
        nova("events", "web-events", request_id, "-n", namespace, "-o", "yaml").stdout
    )
    assert as_yaml["requestId"] == request_id


def test_events_of_an_instance_without_operations_and_of_a_missing_one(namespace, make_instance):
    make_instance("web-quiet")

    quiet = nova("events", "web-quiet", "-n", namespace)
    missing = nova("events", "web-missing", "-n", namespace)
    unknown = nova("events", "web-quiet", "req-unknown", "-n", namespace)

    assert quiet.returncode == 0
    assert quiet.stdout == "No actions found for instance web-quiet.\n"
    assert missing.returncode == 1
    assert missing.stderr == (
        'Error from server (NotFound): instances.compute.kubenova.io "web-missing" not found\n'
    )
    assert unknown.returncode == 1
    assert 'no action with request ID "req-unknown"' in unknown.stderr
