"""Kubenova installed with its Helm chart runs instances, and survives what a cluster does to
its pods: the active operator killed, the agent's pod deleted, a namespace deleted, an upgrade,
an uninstall and a reinstall."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.e2e.chart.conftest import (
    NAMESPACE,
    guest_ready,
    helm,
    helm_install,
    instance,
    qemu_pid,
    running,
)
from tests.e2e.conftest import HOST, apply, get, kubectl, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.chart]

LEASE = "kubenova-operator"


def _pods(component: str) -> list[dict]:
    listed = kubectl(
        "get", "pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/component={component}",
        "-o", "json",
    )  # fmt: skip
    return [
        pod for pod in json.loads(listed.stdout)["items"]
        if not pod["metadata"].get("deletionTimestamp")
    ]  # fmt: skip


def _ready(pod: dict) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _lease_holder() -> str:
    lease = get("lease", LEASE, NAMESPACE) or {}
    holder: str = (lease.get("spec") or {}).get("holderIdentity") or ""
    return holder


def test_the_installed_chart_boots_an_instance_with_one_active_operator(user_namespace):
    operators = _pods("operator")
    assert len(operators) == 2
    assert _lease_holder() in {pod["metadata"]["name"] for pod in operators}

    apply(instance("vm1", user_namespace))
    obj = running("vm1", user_namespace)
    assert obj["status"]["host"] == HOST
    instance_uuid = obj["metadata"]["uid"]
    assert qemu_pid(instance_uuid) is not None
    wait_for("the guest to finish booting", lambda: guest_ready(instance_uuid), timeout=240)
    kubectl("wait", "--for=condition=Ready", "instance/vm1", "-n", user_namespace)


def test_the_standby_takes_over_from_a_killed_active_operator_and_a_create_meanwhile_runs(
    user_namespace,
):
    leader = _lease_holder()
    assert leader
    killed = time.monotonic()
    kubectl("delete", "pod", leader, "-n", NAMESPACE, "--grace-period=0", "--force")
    # Created while no replica may be leading: it waits for the next one.
    apply(instance("during-failover", user_namespace))
    new_leader = wait_for(
        "another operator to hold the Lease",
        lambda: (holder := _lease_holder()) not in ("", leader) and holder,
        timeout=90,
        interval=0.2,
    )
    takeover_s = time.monotonic() - killed
    print(f"\noperator takeover after the active pod was killed: {takeover_s:.1f} s")
    assert new_leader != leader
    running("during-failover", user_namespace)
    # The Deployment made a new standby in place of the killed pod.
    wait_for(
        "two ready operator pods again",
        lambda: sum(_ready(pod) for pod in _pods("operator")) == 2,
        timeout=180,
    )


def test_a_deleted_agent_pod_comes_back_and_the_guests_keep_running(user_namespace):
    apply(instance("survivor", user_namespace))
    instance_uuid = running("survivor", user_namespace)["metadata"]["uid"]
    pid = qemu_pid(instance_uuid)
    assert pid is not None

    (agent,) = _pods("agent")
    kubectl("delete", "pod", agent["metadata"]["name"], "-n", NAMESPACE, "--wait=true")
    replacement = wait_for(
        "the DaemonSet's new agent pod to be ready",
        lambda: [pod for pod in _pods("agent") if _ready(pod)],
        timeout=180,
    )[0]
    assert replacement["metadata"]["name"] != agent["metadata"]["name"]
    # The new agent reports again: a heartbeat newer than the deletion.
    deleted_at = time.time()
    wait_for(
        "the host's heartbeat from the new agent",
        lambda: (
            ((get("hypervisors", HOST) or {}).get("status") or {}).get("state") == "up"
            and time.time() - deleted_at > 1
        ),
        timeout=120,
    )
    assert qemu_pid(instance_uuid) == pid, "the guest's QEMU process changed"
    assert get("instances", "survivor", user_namespace)["status"]["phase"] == "Running"


def test_deleting_a_namespace_takes_its_instances_and_guests_away(release):
    name = f"chart-nsdel-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    apply(instance("doomed", name))
    instance_uuid = running("doomed", name)["metadata"]["uid"]
    kubectl("delete", "namespace", name, "--wait=false")
    wait_for("the namespace to be gone", lambda: get("namespace", name) is None, timeout=240)
    assert qemu_pid(instance_uuid) is None


def test_an_upgrade_keeps_the_guests_running_and_loses_no_create(user_namespace):
    apply(instance("before-upgrade", user_namespace))
    instance_uuid = running("before-upgrade", user_namespace)["metadata"]["uid"]
    pid = qemu_pid(instance_uuid)
    old_operators = {pod["metadata"]["name"] for pod in _pods("operator")}

    # A changed chart value replaces every operator pod (and the agent's); one create is
    # applied while that happens.
    marker = uuid.uuid4().hex[:8]
    # --set-string: a marker of digits only would otherwise be a number, which the schema
    # refuses for an annotation.
    upgrade = helm_install(
        "--set-string", f"operator.podAnnotations.kubenova\\.io/upgrade={marker}"
    )
    assert "has been upgraded" in upgrade.stdout
    apply(instance("during-upgrade", user_namespace))
    running("during-upgrade", user_namespace)

    assert not old_operators & {pod["metadata"]["name"] for pod in _pods("operator")}
    assert qemu_pid(instance_uuid) == pid, "the guest's QEMU process changed"
    assert get("instances", "before-upgrade", user_namespace)["status"]["phase"] == "Running"
    # Every new operator pod brought the schema to head before it started.
    for pod in _pods("operator"):
        sync = kubectl("logs", pod["metadata"]["name"], "-n", NAMESPACE, "-c", "db-sync")
        assert sync.returncode == 0


def test_uninstall_leaves_instances_and_guests_and_a_reinstall_takes_them_back(user_namespace):
    apply(instance("kept", user_namespace))
    instance_uuid = running("kept", user_namespace)["metadata"]["uid"]
    pid = qemu_pid(instance_uuid)

    # A plain `helm uninstall`, Instances still there.
    helm("uninstall", "kubenova", "--wait", "--timeout", "5m")
    assert _pods("operator") == []
    # What the chart's README says: the CRDs, the Instances and their guests stay.
    assert get("instances", "kept", user_namespace) is not None
    assert qemu_pid(instance_uuid) == pid

    helm_install()
    running("kept", user_namespace)
    assert qemu_pid(instance_uuid) == pid
    apply(instance("after-reinstall", user_namespace))
    running("after-reinstall", user_namespace)
