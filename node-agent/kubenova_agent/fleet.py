"""Many simulated hosts in one agent process: ``kubenova-agent --driver test --hosts-file F``.

Each host is the agent a host of its own would run: its own :class:`~kubenova_agent.service.
AgentService` (consumer, publisher, manager, periodic tasks, lifecycle worker), its own
RabbitMQ user and queue (``compute.<host>``), its own heartbeat and its own records, on a
:class:`~kubenova_agent.virt.testdriver.TestDriver` of its own. What the hosts share is the
interpreter, and so the memory a process costs once (Python, libvirt, pika, pydantic's
models): one process per simulated host spends about 55 MiB each on that.

Each host's driver opens a private test hypervisor (``testdriver.private_hypervisor_uri``)
rather than the process-wide ``test:///default``: on a shared one every host's listing, done
every few seconds, would go through every host's domains, and every lifecycle event would be
handed to every host's connection.

The hosts file has one host per line, ``HOST URL-FILE [KEY=VALUE]...``: the host's name, the
file holding its AMQP URL, and labels of its own (added to those of ``--label``). Blank lines
and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import pathlib
import threading
from collections.abc import Callable, Sequence

from kubenova_agent import service

LOG = logging.getLogger(__name__)

#: Python's own switch interval, and the longest this process sets.
DEFAULT_SWITCH_INTERVAL_S = 0.005
MAX_SWITCH_INTERVAL_S = 0.05


def switch_interval_s(hosts: int) -> float:
    """The interpreter's switch interval for a process of ``hosts``: Python's 5 ms up to 100
    hosts, then longer in proportion, up to 50 ms from 1000 hosts.

    A thread waiting for the GIL wakes every interval to ask for it. With a thousand hosts
    under a burst of builds, hundreds of threads waited at once, and the process spent its CPU
    on those wake-ups rather than on the hosts' work (docs/benchmarks.md); keeping the
    wake-ups per second about constant as hosts are added keeps that cost down. A process of a
    hundred hosts has few threads waiting at once, so it keeps Python's interval, under which
    each thread that wants the GIL gets it sooner.
    """
    scaled = DEFAULT_SWITCH_INTERVAL_S * hosts / 100
    return min(MAX_SWITCH_INTERVAL_S, max(DEFAULT_SWITCH_INTERVAL_S, scaled))


#: Hosts start this far apart, so that a thousand of them neither open their connections to
#: RabbitMQ at one instant nor heartbeat in step afterwards.
DEFAULT_START_INTERVAL_S = 0.01


class HostsFileError(ValueError):
    """A hosts file that cannot be used; the message names the file, the line and why."""


@dataclasses.dataclass(frozen=True)
class SimulatedHost:
    """One line of a hosts file."""

    name: str
    amqp_url_file: str
    labels: dict[str, str] = dataclasses.field(default_factory=dict)


def parse_hosts(text: str, source: str = "hosts file") -> list[SimulatedHost]:
    """The hosts ``text`` lists; HostsFileError naming ``source``'s line on a bad one."""
    hosts: list[SimulatedHost] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}, line {number}"
        fields = line.split()
        if len(fields) < 2:
            raise HostsFileError(f"{where}: wants HOST URL-FILE [KEY=VALUE]..., got {line!r}")
        name, url_file, *label_fields = fields
        if name in seen:
            raise HostsFileError(f"{where}: host {name!r} is listed twice")
        labels: dict[str, str] = {}
        for field in label_fields:
            key, sep, value = field.partition("=")
            if not sep or not key:
                raise HostsFileError(f"{where}: a label wants KEY=VALUE, got {field!r}")
            labels[key] = value
        seen.add(name)
        hosts.append(SimulatedHost(name, url_file, labels))
    if not hosts:
        raise HostsFileError(f"{source}: lists no host")
    return hosts


def read_hosts_file(path: str) -> list[SimulatedHost]:
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise HostsFileError(f"cannot read the hosts file {path}: {exc.strerror}") from exc
    return parse_hosts(text, path)


class Fleet:
    """Runs one :class:`AgentService` per simulated host until :meth:`stop`.

    Each service consumes on a thread of its own, named after its host; a service whose start
    fails (its broker refused it, say) is logged and tried again by its thread, as a lone
    agent's supervisor would restart it, without holding up the other hosts.
    """

    def __init__(
        self,
        services: Sequence[service.AgentService],
        *,
        start_interval_s: float = DEFAULT_START_INTERVAL_S,
        retry_interval_s: float = 5.0,
    ) -> None:
        self.services = list(services)
        self._start_interval_s = start_interval_s
        self._retry_interval_s = retry_interval_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started: set[int] = set()
        self._started_lock = threading.Lock()

    def run(self) -> None:
        """Start every host, then block until :meth:`stop`; stops every host before returning."""
        try:
            for index, agent in enumerate(self.services):
                if self._stop.wait(self._start_interval_s if index else 0):
                    break
                thread = threading.Thread(
                    target=self._serve,
                    args=(index, agent),
                    name=f"host-{agent.settings.host}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)
            LOG.info("%d simulated hosts started", len(self._threads))
            self._stop.wait()
        finally:
            self._stop_all()

    def stop(self) -> None:
        """Ask every host to stop; returns at once (``run`` returns once they have)."""
        self._stop.set()
        for agent in self.services:
            agent.consumer.stop()

    def started(self) -> int:
        """How many hosts have initialised and consume (or did, until stopped)."""
        with self._started_lock:
            return len(self._started)

    def _serve(self, index: int, agent: service.AgentService) -> None:
        while not self._stop.is_set():
            try:
                agent.start()
            except Exception:
                LOG.exception("simulated host %s could not start", agent.settings.host)
                self._stop.wait(self._retry_interval_s)
                continue
            with self._started_lock:
                self._started.add(index)
            agent.consumer.run()
            return

    def _stop_all(self) -> None:
        self.stop()
        for thread in self._threads:
            thread.join(timeout=30)
        # Each host says it is stopping (its graceful stop), from several threads at once: one
        # after another, a thousand confirmed publishes take seconds.
        with self._started_lock:
            started = [self.services[index] for index in sorted(self._started)]
        _run_in_parallel([agent.stop for agent in started], workers=16)


def _run_in_parallel(calls: Sequence[Callable[[], None]], workers: int) -> None:
    def call_logged(call: Callable[[], None]) -> None:
        try:
            call()
        except Exception:
            LOG.exception("stopping a simulated host failed")

    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="stopping") as pool:
        list(pool.map(call_logged, calls))
