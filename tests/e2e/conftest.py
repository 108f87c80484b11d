"""The end-to-end stack: the real kube-apiserver, MariaDB, RabbitMQ and libvirtd that
``make test`` brings up, plus an operator and an agent started here as processes."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import libvirt
import pytest
import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from tests import localstack
from tests.support import second_host

ROOT = pathlib.Path(__file__).resolve().parents[2]
STATE = pathlib.Path(os.environ.get("KUBENOVA_STATE", ROOT / ".kubenova"))
KUBECONFIG = pathlib.Path(os.environ.get("KUBECONFIG", STATE / "kubeconfig"))
KUBECTL = STATE / "bin" / "kubectl"
HOST = os.environ.get("KUBENOVA_HOST") or socket.gethostname().split(".")[0]
LOGS = STATE / "logs"


def kubectl(
    *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the project's kubectl against the local stack."""
    return subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(KUBECONFIG), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


def apply(
    manifest: dict[str, Any] | list[dict[str, Any]], check: bool = True
) -> subprocess.CompletedProcess[str]:
    docs = manifest if isinstance(manifest, list) else [manifest]
    return kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs), check=check)


def get(kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
    args = ["get", kind, name, "-o", "json"]
    if namespace:
        args += ["-n", namespace]
    result = kubectl(*args, check=False)
    if result.returncode != 0:
        if "NotFound" in result.stderr:
            return None
        raise AssertionError(result.stderr)
    obj: dict[str, Any] = yaml.safe_load(result.stdout)
    return obj


def wait_for(what: str, predicate: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    """Poll until ``predicate`` returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def api_configuration() -> k8s_client.Configuration:
    """The admin kubeconfig of the local stack, for tests that use the Python client; fails
    the test when the stack is not up."""
    if not KUBECONFIG.exists() or kubectl("get", "--raw", "/readyz", check=False).returncode:
        pytest.fail("the local stack is not up: run the tests with `make test`")
    configuration = k8s_client.Configuration()
    k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=os.fspath(KUBECONFIG), client_configuration=configuration
    )
    return configuration


def domain_exists(instance_uuid: str) -> bool:
    """Whether this host's libvirtd has a domain for the instance."""
    connection = libvirt.open("qemu:///system")
    try:
        connection.lookupByUUIDString(instance_uuid)
    except libvirt.libvirtError:
        return False
    finally:
        connection.close()
    return True


def _start(name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    LOGS.mkdir(parents=True, exist_ok=True)
    # The child keeps its own copy of the descriptor; the parent's closes with the block.
    with open(LOGS / f"e2e-{name}.log", "ab") as log:
        return subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class AgentProcess:
    """This host's agent, which a test may kill (SIGKILL, as a crash) and start again."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}

    def start(self, env: dict[str, str]) -> None:
        # Without the database settings, as in a cluster: the agent must never need them.
        self.env = {k: v for k, v in env.items() if not k.startswith("KUBENOVA_DB_")}
        self.process = _start(
            "agent",
            [
                str(ROOT / ".venv/bin/kubenova-agent"),
                "--host",
                HOST,
                "--amqp-url-file",
                str(STATE / "agents" / f"{HOST}.amqp-url"),
            ],
            self.env,
        )

    def kill(self) -> None:
        """SIGKILL the agent and everything it started."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def restart(self) -> None:
        self.start(self.env)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


class OperatorProcess:
    """The operator the ``stack`` fixture runs, which a test may kill (SIGKILL, as a crash)
    and start again."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}

    def start(self, env: dict[str, str]) -> None:
        self.env = dict(env)
        self.process = _start("operator", [str(ROOT / ".venv/bin/kubenova-operator")], env)

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def restart(self) -> None:
        self.start(self.env)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


#: The agent the ``stack`` fixture runs.
AGENT = AgentProcess()
#: The operator the ``stack`` fixture runs.
OPERATOR = OperatorProcess()


@pytest.fixture(scope="package")
def stack() -> Iterator[dict[str, str]]:
    """Operator and agent processes on the local stack; yields the environment they use.

    Stopped once the end-to-end tests are done: the tests that come after them (the plugin's
    integration tests, with a stand-in operator) must not have a real one reacting to their
    Instances."""
    if not KUBECONFIG.exists() or kubectl("get", "--raw", "/readyz", check=False).returncode:
        pytest.fail("the local stack is not up: run the tests with `make test`")
    env = dict(os.environ, KUBECONFIG=str(KUBECONFIG), KUBENOVA_LOG_LEVEL="INFO")
    env["KUBENOVA_DB_URL"] = localstack.db_url()
    # Hosts go down quickly here, so the tests of a host that is down need not wait a minute.
    env["KUBENOVA_SERVICE_DOWN_TIME"] = "20"
    # A stop or soft reboot the guest ignores becomes hard after this long (Nova's 60 s
    # would make the tests of such a guest wait a minute each).
    env["KUBENOVA_SHUTDOWN_TIMEOUT"] = "10"
    # This host's libvirtd as the second host's agent reaches it (tests/support/second_host.py):
    # without it, no live or cold migration could come back here.
    env["KUBENOVA_MIGRATION_URI"] = second_host.FIRST_HOST_MIGRATION_URI
    # The plugin, as kubectl finds it: on the PATH.
    env["PATH"] = f"{ROOT / '.venv/bin'}{os.pathsep}{env.get('PATH', '')}"
    # Not the port of an operator that `make dev-up` may have running.
    env["KUBENOVA_METRICS_PORT"] = "9091"
    subprocess.run([str(ROOT / ".venv/bin/kubenova-manage"), "db", "sync"], check=True, env=env)
    subprocess.run(
        [str(ROOT / "hack/rabbitmq-agent-user.sh"), HOST], check=True, env=env, capture_output=True
    )
    subprocess.run([str(ROOT / "hack/register-image.sh")], check=True, env=env, capture_output=True)
    if os.environ.get("KUBENOVA_E2E_USE_RUNNING_STACK") == "1":
        # For quick iterations against `make dev-up`'s operator and agent (not what CI does).
        yield env
        return
    OPERATOR.start(env)
    assert OPERATOR.process is not None
    env["KUBENOVA_E2E_OPERATOR_PID"] = str(OPERATOR.process.pid)  # for the benchmark's smoke test
    AGENT.start(env)
    try:
        wait_for(
            f"Hypervisor {HOST} to be up",
            lambda: ((get("hypervisors", HOST) or {}).get("status") or {}).get("state") == "up",
            timeout=90,
        )
        yield env
    finally:
        AGENT.stop()
        OPERATOR.stop()


@pytest.fixture
def namespace(stack: dict[str, str]) -> Iterator[str]:
    """A namespace of this test's own, deleted (with what is left in it) afterwards."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "instances", "--all", "-n", name, "--timeout=90s", check=False)
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def instance_manifest(name: str, namespace: str, flavor: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "compute.kubenova.io/v1alpha1",
        "kind": "Instance",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"flavor": flavor, "image": "kubenova-tiny", **spec},
    }


def flavor_manifest(name: str, vcpus: int, memory_mib: int, disk_gib: int) -> dict[str, Any]:
    return {
        "apiVersion": "compute.kubenova.io/v1alpha1",
        "kind": "Flavor",
        "metadata": {"name": name},
        "spec": {"vcpus": vcpus, "memoryMiB": memory_mib, "diskGiB": disk_gib},
    }


class SimHosts:
    """Simulated hosts (the real agent on libvirt's test driver) of one test.

    ``sim_hosts(name, memory_mib=..., vcpus=..., labels={...}, fail_builds=None)`` returns
    the host name, made unique per test, once its Hypervisor is up; ``process(host)`` is
    its agent's process, for tests that kill it.
    """

    def __init__(self, env: dict[str, str]) -> None:
        self._env = env
        self._run_id = uuid.uuid4().hex[:6]
        self._started: dict[str, subprocess.Popen[bytes]] = {}

    def __call__(
        self,
        name: str,
        *,
        memory_mib: int = 8192,
        vcpus: int = 8,
        disk_gib: int = 100,
        labels: dict[str, str] | None = None,
        fail_builds: str | None = None,
    ) -> str:
        host = f"e2e-{self._run_id}-{name}"
        subprocess.run(
            [str(ROOT / "hack/rabbitmq-agent-user.sh"), host],
            check=True,
            env=self._env,
            capture_output=True,
        )
        argv = [
            str(ROOT / ".venv/bin/kubenova-agent"),
            "--driver=test",
            f"--host={host}",
            f"--vcpus={vcpus}",
            f"--memory-mib={memory_mib}",
            f"--disk-gib={disk_gib}",
            f"--amqp-url-file={STATE}/agents/{host}.amqp-url",
        ]
        argv += [f"--label={key}={value}" for key, value in (labels or {}).items()]
        if fail_builds:
            argv.append(f"--fail-builds={fail_builds}")
        self._started[host] = _start(host, argv, self._env)
        wait_for(
            f"{host} to be up",
            lambda: ((get("hypervisors", host) or {}).get("status") or {}).get("state") == "up",
            timeout=60,
        )
        return host

    def process(self, host: str) -> subprocess.Popen[bytes]:
        return self._started[host]

    def stop_all(self) -> None:
        """Stop the agents, then forget their hosts, as an administrator retires a host
        (delete its Hypervisor once it is down and empty), so no test leaves hosts behind
        that every later explanation counts as down. A host whose agent was killed rather
        than stopped is not down before the service down time; it is left registered."""
        for host, process in self._started.items():
            _stop(process)
            subprocess.run(
                [str(ROOT / "hack/rabbitmq-agent-user.sh"), "--delete", host],
                env=self._env,
                capture_output=True,
                check=False,
            )
        for host in self._started:
            if _state_settled(host, timeout=15) == "down":
                kubectl("delete", "hypervisor", host, "--timeout=30s", check=False)


def _state_settled(host: str, timeout: float) -> str | None:
    """What became of the host's Hypervisor: "down" once it says so (a stopped agent's last
    message takes it down at once), "gone" if a test deleted it already, None if it is still
    up after ``timeout``."""

    def settled() -> str | None:
        obj = get("hypervisors", host)
        if obj is None:
            return "gone"
        return "down" if (obj.get("status") or {}).get("state") == "down" else None

    try:
        found: str = wait_for(f"{host} to be down", settled, timeout=timeout, interval=0.5)
    except AssertionError:
        return None
    return found


@pytest.fixture
def sim_hosts(stack: dict[str, str], namespace: str) -> Iterator[SimHosts]:
    """Simulated hosts for one test (see SimHosts); stopped afterwards."""
    hosts = SimHosts(dict(stack, KUBENOVA_STATE=str(STATE)))
    yield hosts
    # Delete the test's instances while their hosts still answer, so nothing waits for a
    # host to be declared down.
    kubectl("delete", "instances", "--all", "-n", namespace, "--timeout=60s", check=False)
    hosts.stop_all()


def status_of(namespace: str, name: str) -> dict[str, Any]:
    """The Instance's status ({} while it has none)."""
    status: dict[str, Any] = (get("instances", name, namespace) or {}).get("status") or {}
    return status


def condition_of(namespace: str, name: str, type_: str) -> dict[str, Any]:
    for condition in status_of(namespace, name).get("conditions") or []:
        if condition["type"] == type_:
            return dict(condition)
    return {}


@pytest.fixture
def second(stack: dict[str, str], namespace: str) -> Iterator[second_host.SecondAgent]:
    """The second host's agent, for one test; its Hypervisor is retired afterwards."""
    agent = second_host.SecondAgent(dict(stack, KUBENOVA_STATE=str(STATE)))
    agent.start()
    try:
        wait_for(
            f"Hypervisor {agent.host} to be up",
            lambda: (
                ((get("hypervisors", agent.host) or {}).get("status") or {}).get("state") == "up"
            ),
            timeout=90,
        )
        yield agent
    finally:
        # Its guests go while it still answers; then the host is retired, as SimHosts does.
        kubectl("delete", "instances", "--all", "-n", namespace, "--timeout=90s", check=False)
        agent.stop()
        subprocess.run(
            [str(second_host.ROOT / "hack/rabbitmq-agent-user.sh"), "--delete", agent.host],
            env=agent.env,
            capture_output=True,
            check=False,
        )
        wait_for(
            f"{agent.host} to be down",
            lambda: (
                ((get("hypervisors", agent.host) or {}).get("status") or {}).get("state") != "up"
            ),
            timeout=30,
        )
        kubectl("delete", "hypervisor", agent.host, "--timeout=30s", check=False)
