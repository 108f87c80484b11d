"""What the benchmarks under hack/bench share: the local stack's settings, Kubernetes access,
the operator's CPU time and message counters, MariaDB's query counter, percentiles, and real
guests of the tiny image (their console's ready lines, the same guest defined on libvirt
without Kubenova).

Settings come from the environment, as for every process of the stack (hack/lib/env.sh); the
defaults are the local stack's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Sequence
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]
STATE = pathlib.Path(os.environ.get("KUBENOVA_STATE", ROOT / ".kubenova"))
KUBECONFIG = pathlib.Path(os.environ.get("KUBECONFIG", STATE / "kubeconfig"))
DB_URL = os.environ.get(
    "KUBENOVA_DB_URL",
    "mysql+pymysql://kubenova:kubenova-dev@127.0.0.1:3306/nova?charset=utf8mb4",
)
METRICS_URL = f"http://127.0.0.1:{os.environ.get('KUBENOVA_METRICS_PORT', '9090')}/metrics"
OPERATOR_PIDFILE = STATE / "run" / "operator.pid"

GROUP = "compute.kubenova.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
TINY_IMAGE = "kubenova-tiny"


class BenchError(Exception):
    """The benchmark cannot run or cannot go on; the message says why."""


def log(message: str) -> None:
    """A progress line, on stderr so that stdout stays the summary and the JSON line."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def kube_api(pool_size: int = 16) -> tuple[Any, Any]:
    """(CustomObjectsApi, CoreV1Api) on the local stack's kubeconfig."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(KUBECONFIG), client_configuration=configuration
    )
    # One connection per worker thread, so that a burst does not queue on the pool.
    configuration.connection_pool_maxsize = pool_size
    api_client = client.ApiClient(configuration)
    return client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)


def get_cluster_object(custom: Any, plural: str, name: str) -> dict[str, Any] | None:
    """A cluster-scoped Kubenova object, or None when it does not exist."""
    from kubernetes.client import exceptions

    try:
        obj: dict[str, Any] = custom.get_cluster_custom_object(GROUP, VERSION, plural, name)
    except exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj


def operator_pid(explicit: int | None) -> int:
    """The operator's pid: ``explicit``, else the one `make dev-up` recorded; checked alive."""
    if explicit is None:
        try:
            explicit = int(OPERATOR_PIDFILE.read_text().split()[0])
        except (OSError, ValueError, IndexError) as exc:
            raise BenchError(
                f"no operator pid in {OPERATOR_PIDFILE}: start the stack with `make dev-up` "
                "(or pass --operator-pid)"
            ) from exc
    try:
        cmdline = pathlib.Path(f"/proc/{explicit}/cmdline").read_bytes()
    except OSError as exc:
        raise BenchError(f"the operator (pid {explicit}) is not running") from exc
    if b"kubenova-operator" not in cmdline:
        raise BenchError(f"pid {explicit} is not a kubenova-operator")
    return explicit


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count: nothing may reap it here)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def process_cpu_s(pid: int) -> float:
    """User plus system CPU seconds ``pid`` has used (``utime + stime`` in /proc/PID/stat)."""
    stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    # The fields after the command name, which is in parentheses and may contain spaces.
    fields = stat.rpartition(")")[2].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


# What each process of the local stack is called in a CPU breakdown: a marker found in its
# command line, first match wins. The benchmark client is this process.
STACK_PROCESSES = (
    ("operator", "kubenova-operator"),
    ("agents", "kubenova-agent"),
    ("apiserver", "kubenova-kube"),
    ("mariadb", "mariadbd"),
    ("rabbitmq", "beam.smp"),
)


#: CPU seconds each process has used so far, by (pid, start time): its kind and the seconds.
CpuSnapshot = dict[tuple[int, int], tuple[str, float]]


def stack_cpu_s() -> CpuSnapshot:
    """CPU seconds used so far by each process that runs, named by its kind of process of the
    local stack (100 simulated agents are one kind), ``client`` (this process) or ``other``
    (everything else that runs, guests' QEMU included). Keyed by pid and start time, so that a
    pid used again is another process."""
    snapshot: CpuSnapshot = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            cmdline = (entry / "cmdline").read_bytes()
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except (OSError, ValueError, IndexError):
            continue  # it ended meanwhile
        utime, stime, started = int(fields[11]), int(fields[12]), int(fields[19])
        if pid == os.getpid():
            name = "client"
        else:
            name = next((n for n, marker in STACK_PROCESSES if marker.encode() in cmdline), "other")
        snapshot[(pid, started)] = (name, (utime + stime) / os.sysconf("SC_CLK_TCK"))
    return snapshot


def cpu_delta(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """CPU seconds used between two snapshots per kind of process, rounded to 0.01 s: what each
    process that runs at ``after`` used since ``before`` (all of it when it started meanwhile).
    A process that ended meanwhile is lost, never counted against its kind: a guest's QEMU or
    a kubectl that ends during a run would otherwise make ``other`` negative."""
    totals = {name: 0.0 for name, _ in STACK_PROCESSES} | {"client": 0.0, "other": 0.0}
    for key, (name, cpu) in after.items():
        earlier = before.get(key)
        totals[name] += cpu - (earlier[1] if earlier is not None else 0.0)
    return {name: round(seconds, 2) for name, seconds in totals.items()}


def process_rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` in MiB."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rpc_messages(url: str) -> float | None:
    """Published plus consumed messages on the operator's metrics endpoint; None if it is
    unreachable (the figure is then left out rather than guessed)."""
    from prometheus_client import parser

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    total = 0.0
    for family in parser.text_string_to_metric_families(text):
        if family.name in (
            "kubenova_rpc_messages_published",
            "kubenova_rpc_messages_consumed",
        ):
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


def db_engine() -> Any:
    """A SQLAlchemy engine on $KUBENOVA_DB_URL."""
    import sqlalchemy

    return sqlalchemy.create_engine(DB_URL, pool_pre_ping=True)


def db_questions(engine: Any) -> int:
    """MariaDB's global count of statements clients sent (every client, not only ours)."""
    import sqlalchemy

    with engine.connect() as connection:
        row = connection.execute(sqlalchemy.text("SHOW GLOBAL STATUS LIKE 'Questions'")).one()
    return int(row[1])


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by the nearest-rank method; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    """The median (the mean of the middle two for an even count); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def rounded(value: float | None, digits: int = 3) -> float | None:
    """``value`` rounded for the JSON line; NaN and None become null."""
    if value is None or math.isnan(value):
        return None
    return round(value, digits)


def sim_hosts(*args: str) -> None:
    """Run hack/sim-hosts.sh with ``args``; its messages go to stderr."""
    result = subprocess.run(
        [str(ROOT / "hack" / "sim-hosts.sh"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    for line in result.stdout.splitlines():
        log(f"sim-hosts: {line}")
    if result.returncode != 0:
        raise BenchError(f"hack/sim-hosts.sh {' '.join(args)} failed ({result.returncode})")


def sim_hosts_stats(prefix: str) -> dict[str, float]:
    """``hack/sim-hosts.sh stats --prefix P`` as numbers: processes, hosts, rss_mib, cpu_s."""
    result = subprocess.run(
        [str(ROOT / "hack" / "sim-hosts.sh"), "stats", "--prefix", prefix],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"hack/sim-hosts.sh stats failed ({result.returncode}): {result.stderr}")
    return parse_sim_stats(result.stdout)


def parse_sim_stats(line: str) -> dict[str, float]:
    """``key=value`` pairs of a ``hack/sim-hosts.sh stats`` line, the values as numbers."""
    stats: dict[str, float] = {}
    for field in line.split():
        key, sep, value = field.partition("=")
        if not sep:
            raise BenchError(f"not a stats line of hack/sim-hosts.sh: {line!r}")
        stats[key] = float(value)
    return stats


# -- Real guests: the tiny image on libvirt, started through Kubenova or directly -------------

#: What the tiny guest prints on its serial console once per boot, when it is up.
READY_LINE = b"kubenova-guest: ready"
INSTANCES_PATH = pathlib.Path(
    os.environ.get("KUBENOVA_INSTANCES_PATH", "/var/lib/kubenova/instances")
)
IMAGE_CACHE_PATH = os.environ.get("KUBENOVA_IMAGE_CACHE_PATH", "/var/lib/kubenova/_base")
# Beside the agent's instances directory, never inside it: the agent owns that one.
DIRECT_PATH = INSTANCES_PATH.parent / "bench-direct"


def ready_count(console_log: pathlib.Path) -> int:
    """How many boots ``console_log`` shows: its lines ending in the ready line (0 while the
    file is missing or unreadable). The console is appended to across restarts, so the count
    goes up by one with each boot."""
    try:
        data = console_log.read_bytes()
    except (FileNotFoundError, PermissionError):
        return 0
    # A line ending, not a substring: the lines end in "\r\n", and firmware output may share
    # a line's start after an unclean stop.
    return sum(1 for line in data.splitlines() if line.rstrip().endswith(READY_LINE))


def wait_ready_count(
    console_log: pathlib.Path,
    above: int,
    deadline: float,
    *,
    interval: float = 0.02,
    stop: threading.Event | None = None,
) -> float:
    """Poll ``console_log`` until more than ``above`` ready lines are in it; the monotonic
    time that was seen. ``stop`` ends the wait early (with BenchError)."""
    stop = stop or threading.Event()
    while time.monotonic() < deadline and not stop.is_set():
        if ready_count(console_log) > above:
            return time.monotonic()
        stop.wait(interval)
    if stop.is_set():
        raise BenchError(f"the wait for a ready line in {console_log} was cancelled")
    raise BenchError(f"no new {READY_LINE.decode()!r} in {console_log} in time")


@dataclasses.dataclass(frozen=True)
class DirectGuest:
    """A domain of the tiny image defined on libvirt without Kubenova, and its files."""

    domain: Any
    directory: pathlib.Path
    console_log: pathlib.Path


def define_direct_guest(
    connection: Any,
    flavor: dict[str, int],
    image: dict[str, Any],
    virt_type: str,
    host: str,
    hostname: str,
) -> DirectGuest:
    """Define (not start) the guest an agent would make of this Flavor's and Image's spec,
    with the agent's own helpers: the qcow2 overlay on the cached image (``disk``), the config
    drive (``configdrive``) and the XML (``domain_xml``), in ``DIRECT_PATH/<uuid>/``.

    ``host`` goes into the domain's metadata: a name no agent has, so that no agent treats the
    domain as its own. Undo with :func:`remove_direct_guest`.
    """
    from kubenova_agent import configdrive, imagecache
    from kubenova_agent.virt import driver
    from kubenova_agent.virt.libvirt import disk, domain_xml

    instance_uuid = str(uuid.uuid4())
    spec = driver.InstanceSpec(
        uuid=instance_uuid,
        name=f"{hostname}-{instance_uuid[:8]}",
        hostname=hostname,
        vcpus=flavor["vcpus"],
        memory_mib=flavor["memoryMiB"],
        disk_gib=flavor["diskGiB"],
        image=driver.ImageRef(
            name=TINY_IMAGE,
            url=image["source"]["url"],
            sha256=image["sha256"],
            disk_format=image["diskFormat"],
        ),
    )
    base_image = imagecache.ImageCache(IMAGE_CACHE_PATH).fetch(spec.image.url, spec.image.sha256)
    directory = DIRECT_PATH / instance_uuid
    DIRECT_PATH.mkdir(mode=0o711, exist_ok=True)
    directory.mkdir(mode=0o711)
    try:
        # QEMU may run as an unprivileged user that must traverse to the files.
        for path in (DIRECT_PATH, directory):
            path.chmod(0o711)
        files = domain_xml.DomainFiles(
            disk=str(directory / "disk"),
            config_drive=str(directory / "disk.config"),
            console_log=str(directory / "console.log"),
        )
        disk.create_overlay(
            files.disk,
            backing_file=str(base_image),
            backing_format=spec.image.disk_format,
            size_gib=spec.disk_gib,
        )
        configdrive.build(files.config_drive, spec)
        os.close(os.open(files.console_log, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        xml = domain_xml.build(
            spec, domain_type=virt_type, files=files, network="default", host=host
        )
        domain = connection.defineXML(xml)
    except BaseException:
        _remove_direct_files(directory)
        raise
    return DirectGuest(domain, directory, pathlib.Path(files.console_log))


def remove_direct_guest(guest: DirectGuest) -> None:
    """Destroy (if it runs) and undefine the domain of :func:`define_direct_guest`, and remove
    its files."""
    import libvirt

    try:
        # Asked first because libvirt prints the error of destroying a stopped domain even
        # when it is caught; suppressed for one that stops meanwhile.
        with contextlib.suppress(libvirt.libvirtError):
            if guest.domain.isActive():
                guest.domain.destroy()
        guest.domain.undefineFlags(
            libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
        )
    finally:
        _remove_direct_files(guest.directory)


def _remove_direct_files(directory: pathlib.Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    with contextlib.suppress(OSError):
        DIRECT_PATH.rmdir()  # only when no other run's files are left in it


def delete_instance(custom: Any, namespace: str, name: str, timeout: float) -> None:
    """Delete an Instance and wait until it is gone (its finalizer removed); a missing one is
    already gone."""
    from kubernetes.client import exceptions

    try:
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "instances", name)
    except exceptions.ApiException as exc:
        if exc.status == 404:
            return
        raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "instances", name)
        except exceptions.ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(0.5)
    raise BenchError(f"instance {namespace}/{name} was not deleted in {timeout:.0f}s")
