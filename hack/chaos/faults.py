"""The chaos suite's faults, each injected and recovered the way the local stack's own scripts
start and stop what it hits (hack/stack.sh, hack/services.sh, hack/kube/, hack/sim-hosts.sh).

A fault says first whether it can run here (:meth:`Fault.unavailable`, a reason to skip it);
:meth:`Fault.inject` breaks the thing, :meth:`Fault.recover` brings it back and returns once it
is back (see plan.FAULTS for what "back" means for each): ``converged_s`` counts from there.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Mapping
from typing import Any, Protocol

import benchlib
import plan
import processes
import topology
from benchlib import BenchError, log

RUN_DIR = benchlib.STATE / "run"
KUBE_PIDFILE = RUN_DIR / "kube.pid"
KUBE_LAUNCHER = benchlib.STATE / "bin" / "kubenova-kube"
#: How long a process may take to exit after SIGTERM before it gets SIGKILL (hack/kube/down.sh).
STOP_TIMEOUT_S = 60.0
#: The chart's release namespace and its operators' Lease (hack/helm/install.sh, leadership).
CHART_NAMESPACE = "kubenova-system"
CHART_LEASE = "kubenova-operator"


class Fault(Protocol):
    name: str

    def unavailable(self) -> str | None: ...

    def inject(self) -> None: ...

    def recover(self) -> None: ...


def run_script(argv: list[str], env: Mapping[str, str] | None = None, timeout: float = 900) -> None:
    """Run one of the stack's scripts; its output goes to the log; BenchError if it fails."""
    result = subprocess.run(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(env) if env is not None else None,
        timeout=timeout,
        check=False,
    )
    name = pathlib.Path(argv[0]).name if argv[0] != "bash" else argv[-1]
    for line in result.stdout.splitlines():
        log(f"{name}: {line}")
    if result.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed ({result.returncode})")


class OperatorKill:
    """SIGKILL the operator of `make dev-up`; start it again as hack/stack.sh does, in the
    killed process's environment (so it comes back with the settings it had)."""

    name = "operator-kill"

    def __init__(self, name: str = "operator-kill") -> None:
        self.name = name
        self._environ: dict[str, str] | None = None

    def unavailable(self) -> str | None:
        try:
            benchlib.operator_pid(None)
        except BenchError as exc:
            return str(exc)
        return None

    def inject(self) -> None:
        pid = benchlib.operator_pid(None)
        self._environ = processes.environ_of(pid)
        log(f"SIGKILL the operator (pid {pid})")
        os.kill(pid, signal.SIGKILL)
        if not processes.wait_gone(pid, 10):
            raise BenchError(f"the operator (pid {pid}) still runs 10 s after SIGKILL")

    def recover(self) -> None:
        run_script([str(benchlib.ROOT / "hack" / "stack.sh"), "start"], env=self._environ)
        deadline = time.monotonic() + 10
        while True:
            try:
                pid = benchlib.operator_pid(None)
            except BenchError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
                continue
            log(f"the operator runs again (pid {pid})")
            return


class AgentKill:
    """SIGKILL one agent process of the simulated hosts; the others keep serving theirs."""

    name = "agent-kill"

    def __init__(self, hosts: topology.ChaosHosts) -> None:
        self._hosts = hosts

    def unavailable(self) -> str | None:
        return None if self._hosts.live_processes() else "no agent process of the chaos hosts"

    def inject(self) -> None:
        index = self._hosts.kill_one_process()
        log(f"killed agent process {index} of the {plan.PREFIX} hosts")

    def recover(self) -> None:
        self._hosts.restart_unserved()


class ServiceRestart:
    """Stop and start one of hack/services.sh's daemons with its own functions, under its
    lock (sourcing the script defines them without running it)."""

    def __init__(self, name: str, service: str, command: str, label: str) -> None:
        self.name = name
        self._service = service
        self._command = command
        self._label = label

    def unavailable(self) -> str | None:
        marker = RUN_DIR / f"{self._service}.pid"
        pid = processes.pidfile_pid(marker)
        if pid is None or processes.comm(pid) != self._command:
            return (
                f"{self._label} was not started by hack/services.sh (no live {self._command} in "
                f"{marker}); the suite restarts only what the stack started"
            )
        return None

    def inject(self) -> None:
        log(f"stopping {self._label}")
        services_function(f"{self._service}_down")

    def recover(self) -> None:
        log(f"starting {self._label}")
        services_function(f"{self._service}_up")


def services_function(function: str) -> None:
    """Run one function of hack/services.sh (e.g. rabbitmq_down) as its commands do."""
    script = (
        'set -euo pipefail; . "$1/hack/services.sh"; '
        'exec 9>"$KN_RUN_DIR/services.lock"; flock -w 900 9; "$2"'
    )
    run_script(["bash", "-c", script, "chaos", str(benchlib.ROOT), function])


class ApiserverRestart:
    """SIGTERM the kube-apiserver launcher (etcd runs inside it); hack/kube/up.sh again."""

    name = "apiserver-restart"

    def unavailable(self) -> str | None:
        if processes.launcher_pid(KUBE_PIDFILE, KUBE_LAUNCHER) is None:
            return f"no kube-apiserver of hack/kube/up.sh runs ({KUBE_PIDFILE})"
        return None

    def inject(self) -> None:
        pid = processes.launcher_pid(KUBE_PIDFILE, KUBE_LAUNCHER)
        if pid is None:
            raise BenchError(f"no kube-apiserver of hack/kube/up.sh runs ({KUBE_PIDFILE})")
        log(f"SIGTERM the kube-apiserver (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        if not processes.wait_gone(pid, STOP_TIMEOUT_S):
            log(f"the kube-apiserver (pid {pid}) ignored SIGTERM for {STOP_TIMEOUT_S:.0f}s")
            os.kill(pid, signal.SIGKILL)
            processes.wait_gone(pid, 10)

    def recover(self) -> None:
        run_script([str(benchlib.ROOT / "hack" / "kube" / "up.sh")])


class NetworkDrop:
    """Cut the proxied host's line to RabbitMQ; restore it."""

    name = "network-drop"

    def __init__(self, hosts: topology.ChaosHosts) -> None:
        self._hosts = hosts

    def unavailable(self) -> str | None:
        return None if self._hosts.proxy is not None else f"{plan.NET_HOST} is not running"

    def inject(self) -> None:
        assert self._hosts.proxy is not None
        log(f"cutting {plan.NET_HOST}'s line ({self._hosts.proxy.live_connections()} connections)")
        self._hosts.proxy.cut()

    def recover(self) -> None:
        assert self._hosts.proxy is not None
        self._hosts.proxy.restore()
        log(f"{plan.NET_HOST}'s line is back")


class OperatorPodDelete:
    """Delete the chart's active operator pod: the Lease's holder. Only where the chart's
    operators run (`make up`); `make dev-up` runs none, and the fault is skipped there."""

    name = "operator-pod-delete"

    def __init__(self, core: Any, *, takeover_timeout: float = 120.0) -> None:
        from kubernetes import client

        self._core = core
        self._leases = client.CoordinationV1Api(core.api_client)
        self._takeover_timeout = takeover_timeout
        self._deleted: str | None = None

    def _holder_pod(self) -> tuple[str | None, str | None]:
        """(the Lease holder's pod name, or None and why not)."""
        from kubernetes.client import exceptions

        try:
            lease = self._leases.read_namespaced_lease(CHART_LEASE, CHART_NAMESPACE)
        except exceptions.ApiException as exc:
            if exc.status == 404:
                return None, (
                    f"the chart's operator is not running (no Lease {CHART_NAMESPACE}/"
                    f"{CHART_LEASE}); `make dev-up` runs the operator as a host process"
                )
            raise
        holder = lease.spec.holder_identity if lease.spec else None
        if not holder:
            return None, f"nobody holds the Lease {CHART_NAMESPACE}/{CHART_LEASE}"
        try:
            pod = self._core.read_namespaced_pod(holder, CHART_NAMESPACE)
        except exceptions.ApiException as exc:
            if exc.status == 404:
                return None, f"the Lease's holder {holder!r} is no pod of the chart (a stale Lease)"
            raise
        if (pod.status.phase if pod.status else None) != "Running":
            return None, f"the Lease's holder {holder} is not Running"
        return holder, None

    def unavailable(self) -> str | None:
        return self._holder_pod()[1]

    def inject(self) -> None:
        holder, why_not = self._holder_pod()
        if holder is None:
            raise BenchError(f"no active operator pod to delete: {why_not}")
        log(f"deleting the active operator pod {CHART_NAMESPACE}/{holder}")
        self._core.delete_namespaced_pod(holder, CHART_NAMESPACE)
        self._deleted = holder

    def recover(self) -> None:
        deadline = time.monotonic() + self._takeover_timeout
        while time.monotonic() < deadline:
            try:
                holder, _ = self._holder_pod()
            except Exception as exc:  # the apiserver may be busy; ask again
                log(f"reading the Lease failed: {exc!r}")
                holder = None
            if holder is not None and holder != self._deleted:
                log(f"operator pod {holder} leads now")
                return
            time.sleep(1)
        raise BenchError(
            f"no other operator pod took the Lease {self._takeover_timeout:.0f}s after "
            f"{self._deleted} was deleted"
        )


def build(name: str, hosts: topology.ChaosHosts, core: Any) -> Fault:
    """The fault named ``name`` (one of plan.FAULT_NAMES)."""
    if name in ("operator-kill", "operator-kill-real"):
        return OperatorKill(name)
    if name == "operator-pod-delete":
        return OperatorPodDelete(core)
    if name == "agent-kill":
        return AgentKill(hosts)
    if name == "rabbitmq-restart":
        return ServiceRestart(name, "rabbitmq", "beam.smp", "RabbitMQ")
    if name == "mariadb-restart":
        return ServiceRestart(name, "mariadb", "mariadbd", "MariaDB")
    if name == "apiserver-restart":
        return ApiserverRestart()
    if name == "network-drop":
        return NetworkDrop(hosts)
    raise ValueError(f"unknown fault {name!r}")
