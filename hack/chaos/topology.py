"""The chaos suite's hosts: simulated hypervisors on the test driver, all labelled
kubenova.io/sim-prefix=chaos so that the bursts land on them and nowhere else.

- ``chaos-001`` ... by hack/sim-hosts.sh, spread over several agent processes, so that killing
  one process takes down only its share of the hosts.
- ``chaos-net-001`` in an agent process of the suite's own, whose AMQP URL points at the
  suite's TCP proxy (:mod:`tcpproxy`) in front of RabbitMQ: cutting the proxy is that host's
  network going away. Its RabbitMQ user is made by hack/rabbitmq-agent-user.sh; its URL file
  for the proxy is ``$KUBENOVA_STATE/agents/chaos-net-001.proxied.amqp-url``, its hosts file
  ``chaos-net.hosts`` beside it, its pid file ``$KUBENOVA_STATE/run/chaos-net.pid`` and its log
  ``$KUBENOVA_STATE/logs/chaos-net.log``.
"""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import urllib.parse

import bench_creates
import benchlib
import host_usage
import plan
import processes
import tcpproxy
from benchlib import BenchError, log

AGENTS_DIR = benchlib.STATE / "agents"
RUN_DIR = benchlib.STATE / "run"
NET_PIDFILE = RUN_DIR / "chaos-net.pid"
NET_LOG = benchlib.STATE / "logs" / "chaos-net.log"
#: libvirtd's test hypervisor (hack/services.sh runs libvirtd).
SHARED_HYPERVISOR = "test+unix:///default"


def proxied_url(url: str, port: int, host: str = "127.0.0.1") -> str:
    """``url`` with its host and port replaced by the proxy's; user, password and vhost
    kept."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"AMQP URL without a host: {parts.scheme}://...")
    credentials, at, _ = parts.netloc.rpartition("@")
    netloc = f"{credentials}{at}{host}:{port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def url_endpoint(url: str) -> tuple[str, int]:
    """(host, port) an AMQP URL points at (5672 when it names none)."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"AMQP URL without a host: {parts.scheme}://...")
    return parts.hostname, parts.port or 5672


def process_indexes(names: list[str], prefix: str) -> list[int]:
    """The process indexes of hack/sim-hosts.sh's pid files ``sim-PREFIX-J.pid`` among
    ``names`` (prefix ``chaos`` must not take ``chaos-big``'s), in order."""
    pattern = re.compile(rf"^sim-{re.escape(prefix)}-([0-9]+)\.pid$")
    return sorted(int(m.group(1)) for name in names if (m := pattern.match(name)))


def choose_process(live: dict[int, int]) -> int:
    """The process to kill: the lowest index of those that run."""
    if not live:
        raise BenchError(f"no agent process of the {plan.PREFIX} hosts runs")
    return min(live)


class ChaosHosts:
    """Starts, breaks and stops the suite's simulated hosts."""

    def __init__(self, sim_count: int, process_count: int, prefix: str = plan.PREFIX) -> None:
        self.prefix = prefix
        self.process_count = process_count
        self.sim = host_usage.host_names(prefix, sim_count)
        self.net_host = plan.NET_HOST
        self.proxy: tcpproxy.TcpProxy | None = None
        self._net_agent: subprocess.Popen[bytes] | None = None

    @property
    def names(self) -> list[str]:
        return [*self.sim, self.net_host]

    def start(self) -> None:
        log(f"starting {len(self.sim)} simulated hosts in {self.process_count} processes")
        self._sim_start(self.process_count)
        self._start_net_host()

    def _sim_start(self, process_count: int) -> None:
        # On libvirtd's test hypervisor, not one inside each agent process: the hosts' guests
        # then outlive a killed agent process, as a real host's guests outlive its agent.
        benchlib.sim_hosts(
            "start", str(len(self.sim)), "--prefix", self.prefix,
            "--processes", str(process_count), "--log-level", "WARNING",
            "--hypervisor", SHARED_HYPERVISOR,
        )  # fmt: skip

    def live_processes(self) -> dict[int, int]:
        """Index -> pid of the prefix's agent processes that run."""
        live = {}
        for index in process_indexes(os.listdir(RUN_DIR), self.prefix):
            pid = processes.pidfile_pid(RUN_DIR / f"sim-{self.prefix}-{index}.pid")
            if pid is not None:
                live[index] = pid
        return live

    def kill_one_process(self) -> int:
        """SIGKILL one agent process (hack/sim-hosts.sh kill); its index."""
        index = choose_process(self.live_processes())
        benchlib.sim_hosts("kill", "--prefix", self.prefix, "--process", str(index))
        return index

    def restart_unserved(self) -> None:
        """Hosts no live process serves, in one new process (hack/sim-hosts.sh start leaves
        the served ones alone)."""
        self._sim_start(1)

    def _start_net_host(self) -> None:
        self._stop_leftover_net_agent()
        result = subprocess.run(
            [str(benchlib.ROOT / "hack" / "rabbitmq-agent-user.sh"), self.net_host],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BenchError(
                f"hack/rabbitmq-agent-user.sh {self.net_host} failed: {result.stderr.strip()}"
            )
        url = (AGENTS_DIR / f"{self.net_host}.amqp-url").read_text().strip()
        self.proxy = tcpproxy.TcpProxy(url_endpoint(url)).start()
        url_file = AGENTS_DIR / f"{self.net_host}.proxied.amqp-url"
        _write_private(url_file, proxied_url(url, self.proxy.port) + "\n")
        hosts_file = AGENTS_DIR / "chaos-net.hosts"
        hosts_file.write_text(f"{self.net_host} {url_file}\n")
        NET_LOG.parent.mkdir(parents=True, exist_ok=True)
        # Through hack/lib/env.sh, as hack/sim-hosts.sh starts its agents, and without the
        # database settings, as in a cluster.
        script = (
            '. "$1/hack/lib/env.sh"; exec env -u KUBENOVA_DB_URL -u KUBENOVA_DB_PASSWORD '
            '"$1/.venv/bin/kubenova-agent" --driver test --log-level WARNING '
            '--label "$2" --hosts-file "$3"'
        )
        with open(NET_LOG, "ab") as output:
            self._net_agent = subprocess.Popen(
                ["bash", "-c", script, "chaos-net", str(benchlib.ROOT),
                 f"{bench_creates.PREFIX_LABEL}={self.prefix}", str(hosts_file)],
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        NET_PIDFILE.write_text(f"{self._net_agent.pid}\n")
        log(f"{self.net_host} runs (pid {self._net_agent.pid}) behind the proxy on port "
            f"{self.proxy.port}; log {NET_LOG}")  # fmt: skip

    def _stop_leftover_net_agent(self) -> None:
        """The proxied host's agent of an earlier run that did not stop it (its proxy went
        with that run)."""
        pid = processes.pidfile_pid(NET_PIDFILE)
        if pid is None:
            return
        try:
            cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return
        if b"kubenova-agent" in cmdline:
            log(f"stopping the {self.net_host} agent an earlier run left (pid {pid})")
            os.kill(pid, signal.SIGTERM)
            if not processes.wait_gone(pid, 60):
                os.kill(pid, signal.SIGKILL)
                processes.wait_gone(pid, 10)

    def stop(self) -> None:
        """Stop every host the suite started, then retire them (hack/sim-hosts.sh retire
        deletes the Hypervisors of the prefix, the proxied host's too: it carries the label),
        so that they do not stay listed as down."""
        try:
            if self._net_agent is not None and self._net_agent.poll() is None:
                self._net_agent.terminate()
                try:
                    self._net_agent.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    self._net_agent.kill()
                    self._net_agent.wait()
            NET_PIDFILE.unlink(missing_ok=True)
            if self.proxy is not None:
                self.proxy.close()
        finally:
            benchlib.sim_hosts("retire", "--prefix", self.prefix)


def _write_private(path: pathlib.Path, text: str) -> None:
    """Write ``text`` to ``path``, mode 0600, replacing it atomically (it holds a password)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)
