"""The scheduler benchmark's create side: the Flavor that makes its instances fill the hosts,
the Instance it creates, the create calls (burst or paced, each timed from the call sent) and
the wait until the instances run."""

from __future__ import annotations

import concurrent.futures
import math
import threading
import time
from collections.abc import Sequence
from typing import Any

import benchlib
from benchlib import BenchError, log
from host_usage import MEMORY, RESOURCES, NodeUsage, fill, fill_ratio
from instance_watch import InstanceWatch

#: The benchmark's Flavor but its memory, which sizes the flavor to fill the hosts.
FLAVOR_VCPUS = 1
FLAVOR_DISK_GIB = 1
#: The smallest memory a Flavor may have (its CRD's minimum; the image may want more).
MIN_FLAVOR_MEMORY_MIB = 64
#: Under this fill of the fullest resource, the run hardly tests the overcommit check.
FULL = 0.95
#: The label a simulated host carries its prefix in; a run's instances select its hosts by it.
PREFIX_LABEL = "kubenova.io/sim-prefix"


def flavor_memory_mib(
    nodes: Sequence[NodeUsage], instances: int, minimum: int = MIN_FLAVOR_MEMORY_MIB
) -> int:
    """The memory that makes ``instances`` fill the hosts: ceil(instances / hosts) on each,
    the least free memory of any host divided by that, rounded down to a MiB.

    BenchError when the hosts cannot hold as many instances: the memory would be under
    ``minimum`` (a Flavor's, or the image's), or their vCPUs or disk would run out first.
    """
    if not nodes:
        raise BenchError("none of the benchmark's hosts has a compute node in MariaDB")
    per_host = math.ceil(instances / len(nodes))
    free = [node.free() for node in nodes]
    memory = int(min(f[MEMORY] for f in free) // per_host)
    if memory < minimum:
        raise BenchError(
            f"{per_host} instances a host would get {memory} MiB each, under the {minimum} "
            "the Flavor and image need: give the hosts more memory (--host-memory-mib)"
        )
    for index, need, option in (
        (RESOURCES.index("VCPU"), FLAVOR_VCPUS, "--host-vcpus"),
        (RESOURCES.index("DISK_GB"), FLAVOR_DISK_GIB, "--host-disk-gib"),
    ):
        short = [n.host for n, f in zip(nodes, free, strict=True) if f[index] < need * per_host]
        if short:
            raise BenchError(
                f"{len(short)} hosts ({short[0]}, ...) have no room for {per_host} instances "
                f"of {need} {RESOURCES[index]}: give them more ({option}) or run fewer instances"
            )
    return memory


def image_min_memory_mib(custom: Any) -> int:
    """The least memory the benchmark's Flavor may have: a Flavor's, or the image's when it
    wants more (the flavor sized to fill the hosts must still be one the image boots with)."""
    image = benchlib.get_cluster_object(custom, "images", benchlib.TINY_IMAGE)
    if image is None:
        raise BenchError(f"the Image {benchlib.TINY_IMAGE} is missing: hack/register-image.sh")
    return max(MIN_FLAVOR_MEMORY_MIB, int(image["spec"].get("minMemoryMiB") or 0))


def create_flavor(
    custom: Any, name: str, memory: int, before: Sequence[NodeUsage], instances: int
) -> None:
    """Create the benchmark's Flavor of ``memory`` MiB, having logged how full ``instances`` of
    it will make the hosts whose usage is ``before`` (under :data:`FULL`, a weak check)."""
    added = (FLAVOR_VCPUS, memory, FLAVOR_DISK_GIB)
    planned = fill_ratio(fill(before, tuple(instances * n for n in added)))
    log(f"flavor {name}: {FLAVOR_VCPUS} vCPU, {memory} MiB, {FLAVOR_DISK_GIB} GiB; "
        f"{instances} instances will fill the hosts to {100 * planned:.1f} %")  # fmt: skip
    if not planned >= FULL:
        log(
            f"under {100 * FULL:.0f} %: overcommitted_hosts is a weak check in this run "
            "(give --instances a multiple of --hosts, leave --flavor-memory-mib out)"
        )
    custom.create_cluster_custom_object(
        benchlib.GROUP,
        benchlib.VERSION,
        "flavors",
        {"apiVersion": benchlib.API_VERSION, "kind": "Flavor", "metadata": {"name": name},
         "spec": {"vcpus": FLAVOR_VCPUS, "memoryMiB": memory, "diskGiB": FLAVOR_DISK_GIB,
                  "description": "benchmark"}},
    )  # fmt: skip


def instance_body(name: str, namespace: str, flavor: str, prefix: str) -> dict[str, Any]:
    return {
        "apiVersion": benchlib.API_VERSION,
        "kind": "Instance",
        "metadata": {"name": name, "namespace": namespace},
        # The selector keeps the instances on this run's simulated hosts, never a real one.
        "spec": {
            "flavor": flavor,
            "image": benchlib.TINY_IMAGE,
            "nodeSelector": {PREFIX_LABEL: prefix},
        },
    }


class Creator:
    """Creates instances and records, per name, when the create call was sent and returned,
    and the uid it made."""

    def __init__(self, custom: Any, namespace: str, flavor: str, prefix: str) -> None:
        self._custom = custom
        self._namespace = namespace
        self._flavor = flavor
        self._prefix = prefix
        self._lock = threading.Lock()
        self.sent_at: dict[str, float] = {}
        self.created_at: dict[str, float] = {}
        self.failed: dict[str, str] = {}
        self.uids: dict[str, str] = {}

    def body(self, name: str) -> dict[str, Any]:
        """The Instance to create as ``name``."""
        return instance_body(name, self._namespace, self._flavor, self._prefix)

    def create(self, name: str) -> None:
        body = self.body(name)
        sent = time.monotonic()
        try:
            created = self._custom.create_namespaced_custom_object(
                benchlib.GROUP, benchlib.VERSION, self._namespace, "instances", body
            )
        except Exception as exc:
            with self._lock:
                self.failed[name] = repr(exc)
            return
        done = time.monotonic()
        with self._lock:
            self.sent_at[name] = sent
            self.created_at[name] = done
            self.uids[name] = created["metadata"]["uid"]

    def created(self) -> dict[str, str]:
        """name -> uid of every Instance created so far."""
        with self._lock:
            return dict(self.uids)


def run_creates(
    creator: Creator, names: list[str], mode: str, workers: int, interval: float
) -> None:
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="create") as pool:
        if mode == "burst":
            list(pool.map(creator.create, names))
            return
        start = time.monotonic()
        futures = []
        for index, name in enumerate(names):
            # Fixed ticks: a slow create call does not push the later ones back.
            delay = start + index * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(creator.create, name))
        for future in futures:
            future.result()


def wait_running(
    watch: InstanceWatch, names: list[str], hosts: set[str], timeout: float, operator_pid: int
) -> dict[str, str]:
    """Until every instance is Running or in Error; returns misplaced instances (name: host)."""
    deadline = time.monotonic() + timeout
    last_report = 0.0
    while time.monotonic() < deadline:
        if not benchlib.process_alive(operator_pid):
            # Its CPU time and counters start again from zero: the figures would mean nothing.
            raise BenchError(f"the operator (pid {operator_pid}) exited during the run")
        running, placed, errors, _ = watch.snapshot()
        misplaced = {n: h for n, h in placed.items() if h not in hosts}
        if misplaced:
            log(f"instances landed on hosts that are not the benchmark's: {misplaced}")
            return misplaced
        if len(running) + len(errors) >= len(names):
            return {}
        if time.monotonic() - last_report > 10:
            log(f"{len(running)}/{len(names)} Running, {len(errors)} in Error")
            last_report = time.monotonic()
        time.sleep(0.2)
    log(f"timed out after {timeout:.0f}s waiting for instances to run")
    return {}
