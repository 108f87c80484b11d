"""Kubenova installed with its Helm chart runs instances, and survives what a cluster does to
its pods: the active operator killed, the agent's or libvirt's pod deleted, a namespace deleted,
an upgrade, an uninstall and a reinstall."""

from __future__ import annotations

import json
import pathlib
import time
import uuid

import pytest

from tests.e2e.chart.conftest import (
    HELM3_VERSION,
    NAMESPACE,
    guest_ready,
    helm,
    helm_install,
    instance,
    qemu_pid,
    running,
)
from tests.e2e.conftest import HOST, apply, domain_exists, get, kubectl, wait_for

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


def _libvirtd_pid() -> int | None:
    """The node's libvirtd, found from the host (the libvirt pod shares its PID namespace)."""
    pids = [
        int(entry.name)
        for entry in pathlib.Path("/proc").iterdir()
        if entry.name.isdigit() and _read(entry / "comm") == "libvirtd\n"
    ]
    assert len(pids) <= 1, f"more than one libvirtd: {pids}"
    return pids[0] if pids else None


def _read(path: pathlib.Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def test_a_deleted_libvirt_pod_comes_back_and_takes_over_the_running_guests(user_namespace):
    apply(instance("outlives-libvirt", user_namespace))
    instance_uuid = running("outlives-libvirt", user_namespace)["metadata"]["uid"]
    wait_for("the guest to finish booting", lambda: guest_ready(instance_uuid), timeout=240)
    pid = qemu_pid(instance_uuid)
    assert pid is not None
    old_libvirtd = _libvirtd_pid()
    assert old_libvirtd is not None
    # libvirtd, and so QEMU, left the pod's cgroups for the image's own, in every hierarchy.
    for line in _read(pathlib.Path(f"/proc/{pid}/cgroup")).splitlines():
        assert "kubepods" not in line, f"QEMU is in a pod's cgroup: {line}"
    assert "/kubenova-libvirt" in _read(pathlib.Path(f"/proc/{old_libvirtd}/cgroup"))

    (libvirt,) = _pods("libvirt")
    kubectl("delete", "pod", libvirt["metadata"]["name"], "-n", NAMESPACE, "--wait=true")
    wait_for(
        "the DaemonSet's new libvirt pod to be ready",
        lambda: [pod for pod in _pods("libvirt") if _ready(pod)],
        timeout=180,
    )
    new_libvirtd = _libvirtd_pid()
    assert new_libvirtd not in (None, old_libvirtd)
    # The same QEMU process, known to the new libvirtd as the same running domain.
    assert qemu_pid(instance_uuid) == pid, "the guest's QEMU process changed"
    assert domain_exists(instance_uuid)

    # The new libvirtd drives it: a delete through Kubenova ends that QEMU, and another
    # instance boots.
    apply(instance("after-libvirt", user_namespace))
    running("after-libvirt", user_namespace)
    kubectl("delete", "instance", "outlives-libvirt", "-n", user_namespace, "--wait=true")
    wait_for("the guest's QEMU to end", lambda: qemu_pid(instance_uuid) is None, timeout=120)
    assert not domain_exists(instance_uuid)


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
    """The reinstall is Helm 3's, so both Helm majors install the chart for real; then Helm 4
    upgrades that release, as a user who moves from Helm 3 to Helm 4 does."""
    apply(instance("kept", user_namespace))
    instance_uuid = running("kept", user_namespace)["metadata"]["uid"]
    pid = qemu_pid(instance_uuid)

    # A plain `helm uninstall`, Instances still there.
    helm("uninstall", "kubenova", "--wait", "--timeout", "5m")
    # The garbage collector deletes the Deployments' and DaemonSets' pods after them.
    wait_for(
        "the release's pods to go",
        lambda: not any(_pods(component) for component in ("operator", "agent", "libvirt")),
        timeout=120,
    )
    # What the chart's README says: the CRDs, the Instances and their guests stay.
    assert get("instances", "kept", user_namespace) is not None
    assert qemu_pid(instance_uuid) == pid

    reinstall = helm_install(helm_version=HELM3_VERSION)
    assert "STATUS: deployed" in reinstall.stdout
    release = json.loads(helm("status", "kubenova", "-o", "json").stdout)
    assert release["version"] == 1  # a new release, not an upgrade of the uninstalled one
    running("kept", user_namespace)
    assert qemu_pid(instance_uuid) == pid
    apply(instance("after-reinstall", user_namespace))
    running("after-reinstall", user_namespace)

    upgrade = helm_install()
    assert "has been upgraded" in upgrade.stdout
    assert json.loads(helm("status", "kubenova", "-o", "json").stdout)["version"] == 2
    apply(instance("after-helm4-upgrade", user_namespace))
    running("after-helm4-upgrade", user_namespace)
    assert qemu_pid(instance_uuid) == pid
