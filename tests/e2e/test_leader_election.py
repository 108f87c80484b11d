"""Two ``kubenova-operator --leader-elect`` replicas on the real kube-apiserver: one leads,
the other waits without running anything, and takes over when the leader dies or stops.

"Runs nothing" is judged from outside each process: whether it holds a connection to the
broker (read from /proc, because the broker's own consumer counts also move with whatever
else runs on this machine), whether its metrics port answers (the runtime serves it, and
starts it together with the consumer, the periodic tasks and the status writer), and whether
its log says it consumes the ``conductor`` queue. Takeover times are measured from the signal
to the moment the survivor says it leads (``/healthz``) and to the moment kopf's startup
handlers have finished there (``/readyz``); run with ``-s`` to see them. A leader cut off from
the apiserver (through a relay the test cuts) must exit on its own before its Lease could be
taken.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s_client

from kubenova.leadership.lease import KubeLeases, LeaseConflict, LeaseRecord
from tests import localstack
from tests.e2e.conftest import (
    KUBECONFIG,
    LOGS,
    ROOT,
    _start,
    _stop,
    api_configuration,
    kubectl,
    wait_for,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "default"
LEASE_DURATION_S = 15
RETRY_PERIOD_S = 2
# What a standby may need beyond the lease duration: up to a retry period to see the last
# renewal, another to try again once it expired, and some slack for two busy cores.
TAKEOVER_MARGIN_S = 8
# kopf's startup handlers (database, bus, consumer) on top of the acquisition.
STARTUP_S = 20
# A clean stop: kopf's cleanup, the release, the standby's next try.
HANDOVER_S = 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclasses.dataclass
class Replica:
    name: str
    process: subprocess.Popen[bytes]
    health_port: int
    metrics_port: int
    log: pathlib.Path

    def probe(self, path: str) -> tuple[int, str] | None:
        """The probe's status and body, or None while nothing listens."""
        url = f"http://127.0.0.1:{self.health_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read().decode()
        except OSError:
            return None

    def says(self, path: str, role: str) -> bool:
        """The probe answers 200 for ``role``."""
        answer = self.probe(path)
        return answer is not None and answer[0] == 200 and answer[1].startswith(f"ok: {role}:")

    def serves_metrics(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/", timeout=2):
                return True
        except OSError:
            return False

    def consumed_conductor(self) -> bool:
        return "consuming conductor" in self.log.read_text(errors="replace")


class Replicas:
    """Operator replicas of one test, all campaigning for the test's own Lease."""

    def __init__(self, env: dict[str, str], lease: str) -> None:
        self.env = env
        self.lease = lease
        self._run = uuid.uuid4().hex[:6]
        self.started: list[Replica] = []

    def start(self, name: str) -> Replica:
        pod = f"{self.lease}-{name}"
        health_port, metrics_port = _free_port(), _free_port()
        env = dict(
            self.env,
            POD_NAME=pod,
            KUBENOVA_LEADER_ELECT_LEASE=self.lease,
            KUBENOVA_LEADER_ELECT_NAMESPACE=NAMESPACE,
            KUBENOVA_HEALTH_PORT=str(health_port),
            KUBENOVA_HEALTH_ADDR="127.0.0.1",
            KUBENOVA_METRICS_PORT=str(metrics_port),
        )
        log_name = f"leader-election-{self._run}-{name}"
        process = _start(
            log_name, [str(ROOT / ".venv/bin/kubenova-operator"), "--leader-elect"], env
        )
        replica = Replica(pod, process, health_port, metrics_port, LOGS / f"e2e-{log_name}.log")
        self.started.append(replica)
        return replica

    def stop_all(self) -> None:
        for replica in self.started:
            _stop(replica.process)


@pytest.fixture
def replicas() -> Iterator[Replicas]:
    if not KUBECONFIG.exists() or kubectl("get", "--raw", "/readyz", check=False).returncode:
        pytest.fail("the local stack is not up: run the tests with `make test`")
    env = dict(os.environ, KUBECONFIG=str(KUBECONFIG), KUBENOVA_LOG_LEVEL="INFO")
    env["KUBENOVA_DB_URL"] = localstack.db_url()
    subprocess.run([str(ROOT / ".venv/bin/kubenova-manage"), "db", "sync"], check=True, env=env)
    started = Replicas(env, f"e2e-leader-{uuid.uuid4().hex[:8]}")
    try:
        yield started
    finally:
        started.stop_all()
        kubectl("delete", "lease", started.lease, "-n", NAMESPACE, check=False)


def broker_connections(pid: int) -> int:
    """The process's established TCP connections to the broker's port, from /proc (the
    broker is shared with whatever else runs on this machine, so its own counts are not)."""
    port = urllib.parse.urlsplit(localstack.amqp_url()).port
    sockets = set()
    for fd in pathlib.Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                sockets.add(target.removeprefix("socket:[").removesuffix("]"))
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in pathlib.Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            established = fields[3] == "01"
            count += established and remote_port == (port or 5672) and fields[9] in sockets
    return count


def lease_spec(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(
        kubectl("get", "lease", name, "-n", NAMESPACE, "-o", "json").stdout
    )["spec"]
    return spec


def one_leader(first: Replica, second: Replica) -> tuple[Replica, Replica]:
    """(leader, standby) once one is ready as the leader and the other as a standby."""

    def settled() -> tuple[Replica, Replica] | None:
        for leader, standby in ((first, second), (second, first)):
            if leader.says("/readyz", "leader") and standby.says("/readyz", "standby"):
                return leader, standby
        return None

    found: tuple[Replica, Replica] = wait_for(
        "one leader and one standby", settled, timeout=90, interval=0.5
    )
    return found


def seconds_until(what: str, predicate: Callable[[], bool], since: float, timeout: float) -> float:
    wait_for(what, predicate, timeout=timeout, interval=0.1)
    return time.monotonic() - since


def assert_only_the_leader_runs(leader: Replica, standby: Replica) -> None:
    wait_for(
        "the leader to connect to the broker",
        lambda: broker_connections(leader.process.pid) > 0,
        timeout=30,
    )
    assert leader.consumed_conductor()
    assert leader.serves_metrics()
    assert broker_connections(standby.process.pid) == 0
    assert not standby.consumed_conductor()
    assert not standby.serves_metrics()
    assert standby.says("/healthz", "standby")


def test_one_replica_leads_and_a_killed_leader_is_replaced_within_the_lease_duration(
    replicas: Replicas,
) -> None:
    leader, standby = one_leader(replicas.start("a"), replicas.start("b"))
    assert_only_the_leader_runs(leader, standby)
    before = lease_spec(replicas.lease)
    assert before["holderIdentity"] == leader.name
    assert before["leaseDurationSeconds"] == LEASE_DURATION_S

    killed_at = time.monotonic()
    os.killpg(leader.process.pid, signal.SIGKILL)
    leading_s = seconds_until(
        "the standby to take the lease",
        lambda: standby.says("/healthz", "leader"),
        killed_at,
        timeout=LEASE_DURATION_S + TAKEOVER_MARGIN_S,
    )
    ready_s = seconds_until(
        "the new leader to be ready",
        lambda: standby.says("/readyz", "leader"),
        killed_at,
        timeout=LEASE_DURATION_S + TAKEOVER_MARGIN_S + STARTUP_S,
    )
    print(
        f"\nSIGKILL of the leader: the standby leads after {leading_s:.1f} s, ready {ready_s:.1f} s"
    )
    # Not before the dead leader's Lease could have expired: its last renewal was at most a
    # retry period before the kill (and the probes are polled).
    assert leading_s > LEASE_DURATION_S - 2 * RETRY_PERIOD_S
    after = lease_spec(replicas.lease)
    assert after["holderIdentity"] == standby.name
    assert after["leaseTransitions"] == before["leaseTransitions"] + 1
    assert after["acquireTime"] > before["acquireTime"]
    wait_for(
        "the new leader to connect to the broker",
        lambda: broker_connections(standby.process.pid) > 0,
        timeout=30,
    )
    assert standby.consumed_conductor()
    assert standby.serves_metrics()


def test_a_leader_stopped_with_sigterm_hands_over_within_seconds(replicas: Replicas) -> None:
    leader, standby = one_leader(replicas.start("a"), replicas.start("b"))
    assert_only_the_leader_runs(leader, standby)

    stopped_at = time.monotonic()
    os.killpg(leader.process.pid, signal.SIGTERM)
    leading_s = seconds_until(
        "the standby to take the released lease",
        lambda: standby.says("/healthz", "leader"),
        stopped_at,
        timeout=HANDOVER_S,
    )
    ready_s = seconds_until(
        "the new leader to be ready",
        lambda: standby.says("/readyz", "leader"),
        stopped_at,
        timeout=HANDOVER_S + STARTUP_S,
    )
    print(
        f"\nSIGTERM of the leader: the standby leads after {leading_s:.1f} s, ready {ready_s:.1f} s"
    )
    assert leader.process.wait(timeout=30) == 0
    log = leader.log.read_text(errors="replace")
    # The Lease was given back only once kopf had stopped and its cleanup had run.
    assert log.index("Operator is stopping") < log.index(
        f"lease {NAMESPACE}/{replicas.lease} released"
    )
    assert lease_spec(replicas.lease)["holderIdentity"] == standby.name
    wait_for(
        "the new leader to connect to the broker",
        lambda: broker_connections(standby.process.pid) > 0,
        timeout=30,
    )
    assert standby.consumed_conductor()


def test_a_standby_stopped_with_sigterm_exits_at_once_and_leaves_the_lease(
    replicas: Replicas,
) -> None:
    leader, standby = one_leader(replicas.start("a"), replicas.start("b"))
    before = lease_spec(replicas.lease)
    os.killpg(standby.process.pid, signal.SIGTERM)
    assert standby.process.wait(timeout=5) == 0
    assert lease_spec(replicas.lease)["holderIdentity"] == before["holderIdentity"] == leader.name


class CuttableProxy:
    """A TCP relay to the apiserver that :meth:`cut` turns into a dead end: what a leader
    sees when its node loses the control plane."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._cut = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                # A connection accepted just as the proxy was cut is closed, not relayed:
                # nothing else would ever close it.
                if self._cut:
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            sockets, self._sockets = self._sockets, []
        self._listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def test_a_leader_that_loses_the_apiserver_exits_before_its_lease_could_be_taken(
    replicas: Replicas, tmp_path: pathlib.Path
) -> None:
    kubeconfig = yaml.safe_load(KUBECONFIG.read_text())
    server = kubeconfig["clusters"][0]["cluster"]["server"]
    host, port = server.removeprefix("https://").rsplit(":", 1)
    proxy = CuttableProxy((host, int(port)))
    kubeconfig["clusters"][0]["cluster"]["server"] = f"https://{host}:{proxy.port}"
    cut_off = tmp_path / "kubeconfig"
    cut_off.write_text(yaml.safe_dump(kubeconfig))
    replicas.env["KUBECONFIG"] = str(cut_off)
    leader = replicas.start("a")
    wait_for("the replica to lead", lambda: leader.says("/readyz", "leader"), timeout=60)

    cut_at = time.monotonic()
    proxy.cut()
    code = leader.process.wait(timeout=LEASE_DURATION_S + 5)
    exited_s = time.monotonic() - cut_at
    print(f"\napiserver cut off: the leader exited after {exited_s:.1f} s")
    assert code == 1
    # Its last renewal was at most a retry period before the cut; the Lease lasts 15 s.
    assert exited_s < LEASE_DURATION_S - RETRY_PERIOD_S
    lines = [json.loads(line) for line in leader.log.read_text().splitlines() if line]
    lost = [line for line in lines if line["message"].startswith("leadership lost")]
    assert len(lost) == 1
    assert lost[0]["level"] == "CRITICAL"
    assert "not renewed for 10 s" in lost[0]["message"]


@pytest.fixture
def leases() -> Iterator[KubeLeases]:
    configuration = api_configuration()
    api_client = k8s_client.ApiClient(configuration)
    api = k8s_client.CoordinationV1Api(api_client)
    name = f"e2e-lease-{uuid.uuid4().hex[:8]}"
    try:
        yield KubeLeases(name, NAMESPACE, api)
    finally:
        kubectl("delete", "lease", name, "-n", NAMESPACE, check=False)
        # Closed here, not by the garbage collector in some later test (a ResourceWarning).
        api_client.close()


def test_the_apiserver_refuses_a_second_create_and_a_write_over_a_stale_version(
    leases: KubeLeases,
) -> None:
    # A whole second, which the client would write without the six digits MicroTime wants.
    now = datetime.datetime(2030, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
    assert leases.get(timeout=5) is None
    created = leases.create(LeaseRecord("a", 15, now, now, 0), timeout=5)
    with pytest.raises(LeaseConflict):
        leases.create(LeaseRecord("b", 15, now, now, 0), timeout=5)
    renewed = leases.replace(
        LeaseRecord("a", 15, now, now + datetime.timedelta(seconds=2), 0),
        created.resource_version,
        timeout=5,
    )
    assert renewed.record.renew_time is not None
    assert renewed.record.renew_time > now
    with pytest.raises(LeaseConflict):
        leases.replace(LeaseRecord("b", 15, now, now, 1), created.resource_version, timeout=5)
    got = leases.get(timeout=5)
    assert got is not None
    assert got == renewed
    # A leader whose Lease was deleted writes it again; the election counts on it.
    kubectl("delete", "lease", leases.name, "-n", NAMESPACE)
    again = leases.replace(LeaseRecord("a", 15, now, now, 0), renewed.resource_version, timeout=5)
    assert again.record.holder == "a"
