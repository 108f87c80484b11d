"""What the density benchmark (density_bench.py) reads of this machine: its used memory, the
resident memory of processes, the guests' QEMU processes and console logs, and the pid of this
host's agent."""

from __future__ import annotations

import itertools
import pathlib
import threading
import time
from collections.abc import Callable, Collection, Sequence

import benchlib
from benchlib import BenchError

SAMPLE_INTERVAL_S = 0.5
READY_POLL_S = 0.25


def used_memory_mib(meminfo: str) -> float:
    """The machine's used memory, MemTotal - MemAvailable, in MiB, from /proc/meminfo's text."""
    values: dict[str, int] = {}
    for line in meminfo.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            values[key.strip()] = int(fields[0])
    for key in ("MemTotal", "MemAvailable"):
        if key not in values:
            raise BenchError(f"/proc/meminfo has no {key} line")
    return (values["MemTotal"] - values["MemAvailable"]) / 1024


def qemu_pids(uids: Collection[str], proc: pathlib.Path = pathlib.Path("/proc")) -> dict[str, int]:
    """The processes started with ``-uuid <uid>`` (libvirt's QEMU of that domain) for each of
    ``uids`` that has one: uid -> pid."""
    wanted = {uid.encode() for uid in uids}
    found: dict[str, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # it ended meanwhile
        for flag, value in itertools.pairwise(argv):
            if flag == b"-uuid" and value in wanted:
                found[value.decode()] = int(entry.name)
    return found


def read_meminfo() -> str:
    return pathlib.Path("/proc/meminfo").read_text()


def processes_rss_mib(pids: Sequence[int]) -> float:
    """The summed RSS of ``pids``; one that ended counts nothing."""
    total = 0.0
    for pid in pids:
        try:
            total += benchlib.process_rss_mib(pid)
        except OSError:
            continue
    return total


class MemorySampler(threading.Thread):
    """Every ``interval`` seconds, the machine's used memory and the control plane's RSS; keeps
    the high-water mark of each."""

    def __init__(
        self,
        control_plane_rss: Callable[[], float],
        meminfo: Callable[[], str] = read_meminfo,
        interval: float = SAMPLE_INTERVAL_S,
    ) -> None:
        super().__init__(name="memory-sampler", daemon=True)
        self._control_plane_rss = control_plane_rss
        self._meminfo = meminfo
        self._interval = interval
        # Not ``_stop``: Thread has a method of that name, which join() calls.
        self._stopping = threading.Event()
        self.memory_high_water_mib = 0.0
        self.control_plane_high_water_mib = 0.0

    def sample(self) -> tuple[float, float]:
        """One sample, taken into the high-water marks: (used memory, control plane RSS)."""
        used, rss = used_memory_mib(self._meminfo()), self._control_plane_rss()
        self.memory_high_water_mib = max(self.memory_high_water_mib, used)
        self.control_plane_high_water_mib = max(self.control_plane_high_water_mib, rss)
        return used, rss

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        while not self._stopping.wait(self._interval):
            self.sample()


#: The tiny guest's last boot line when its DHCP gave no lease in about 30 s (hack/guest/init),
#: in place of the ready line: booted, without an address.
DHCP_FAILED_LINE = b"kubenova-guest: dhcp failed"


def boot_end(console_log: pathlib.Path) -> bytes | None:
    """The line that ended the guest's first boot in ``console_log``: the ready line, or the
    DHCP failure line; None while neither is there (or the file cannot be read)."""
    try:
        data = console_log.read_bytes()
    except OSError:
        return None
    for line in data.splitlines():
        stripped = line.rstrip()
        for end in (benchlib.READY_LINE, DHCP_FAILED_LINE):
            if stripped.endswith(end):
                return end
    return None


class ReadyPoller(threading.Thread):
    """Polls the console log of every guest ``guests()`` names (name -> uid) until its boot
    ended (:func:`boot_end`); records when that was first seen, and whether DHCP gave up. A
    log is read again only when its size changed."""

    def __init__(self, guests: Callable[[], dict[str, str]]) -> None:
        super().__init__(name="ready-poller", daemon=True)
        self._guests = guests
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ready_at: dict[str, float] = {}
        self._dhcp_failed: dict[str, bool] = {}

    def snapshot(self) -> dict[str, float]:
        """When each guest's boot ended (its ready line, or the line saying DHCP gave up)."""
        with self._lock:
            return dict(self._ready_at)

    def dhcp_failed(self) -> set[str]:
        """The guests whose boot ended without an address: their DHCP gave up."""
        with self._lock:
            return {name for name, failed in self._dhcp_failed.items() if failed}

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        sizes: dict[str, int] = {}
        while not self._stopping.wait(READY_POLL_S):
            for name, uid in self._guests().items():
                if name in self._ready_at:
                    continue
                console_log = benchlib.INSTANCES_PATH / uid / "console.log"
                try:
                    size = console_log.stat().st_size
                except OSError:
                    continue
                if size != sizes.get(name):
                    sizes[name] = size
                    end = boot_end(console_log)
                    if end is not None:
                        with self._lock:
                            self._ready_at[name] = time.monotonic()
                            self._dhcp_failed[name] = end == DHCP_FAILED_LINE


def agent_pid(host: str) -> int:
    """The pid of this host's agent, from the pid file `make dev-up` wrote; checked alive."""
    pidfile = benchlib.STATE / "run" / f"agent-{host}.pid"
    try:
        pid = int(pidfile.read_text().split()[0])
        cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError) as exc:
        raise BenchError(f"no running agent of host {host} in {pidfile}: `make dev-up`") from exc
    if b"kubenova-agent" not in cmdline:
        raise BenchError(f"pid {pid} in {pidfile} is not a kubenova-agent")
    return pid


def wait_qemu_gone(uids: Collection[str], timeout: float) -> list[str]:
    """Until none of the guests' QEMU runs; the uids whose QEMU still runs after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (left := qemu_pids(uids)) and time.monotonic() < deadline:
        time.sleep(1)
    return sorted(left)
