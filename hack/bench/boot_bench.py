"""Boot benchmark: a real guest through Kubenova against the same guest started directly.

    .venv/bin/python hack/bench/boot_bench.py [--repeat 3] [--host vm] [--flavor m1.nano]

It needs the local stack of `make dev-up`, with the agent of host ``--host`` (the libvirt driver,
real QEMU) running. Each round, one after the other (TCG guests are slow: one at a time):

kubenova   apply an Instance (image kubenova-tiny) and time, from the create call, until a
           watch sees it Running and until its console log
           (``$KUBENOVA_INSTANCES_PATH/<uid>/console.log``) has the line
           ``kubenova-guest: ready``; then delete it and wait until it is gone.
direct     the same domain without Kubenova: the agent's own helpers make the qcow2 overlay on
           the cached image (``disk``), the config drive (``configdrive``) and the XML
           (``domain_xml``), and libvirt-python defines and starts it on qemu:///system; timed
           from the first file written until the same ready line; then destroyed, undefined and
           its files removed. Its metadata names a host no agent has, so no agent adopts it.

The two alternate (kubenova, direct, kubenova, ...) ``--repeat`` times. The summary shows
every round; the last line is one JSON object of medians: kubenova_running_s,
kubenova_guest_ready_s, direct_libvirt_guest_ready_s and overhead_ratio
(kubenova_guest_ready_s / direct_libvirt_guest_ready_s).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import shutil
import sys
import time
import uuid
from typing import Any

import benchlib
from benchlib import BenchError, log

READY_LINE = b"kubenova-guest: ready"
INSTANCES_PATH = pathlib.Path(
    os.environ.get("KUBENOVA_INSTANCES_PATH", "/var/lib/kubenova/instances")
)
IMAGE_CACHE_PATH = os.environ.get("KUBENOVA_IMAGE_CACHE_PATH", "/var/lib/kubenova/_base")
# Beside the agent's instances directory, never inside it: the agent owns that one.
DIRECT_PATH = INSTANCES_PATH.parent / "bench-direct"
# The host recorded in the direct domains' metadata: no agent is called that, so none of them
# treats these domains as its own.
DIRECT_HOST = "boot-bench-direct"


def wait_ready(console_log: pathlib.Path, deadline: float) -> float:
    """Poll ``console_log`` until it has the ready line; the monotonic time it was seen."""
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if READY_LINE in console_log.read_bytes():
                return time.monotonic()
        time.sleep(0.05)
    raise BenchError(f"no {READY_LINE.decode()!r} in {console_log} in time")


def kubenova_round(
    custom: Any, namespace: str, name: str, flavor: str, host: str, timeout: float
) -> tuple[float, float]:
    """(apply -> Running, apply -> guest ready) of one Instance; deletes it afterwards."""
    from kubernetes import watch

    body = {
        "apiVersion": benchlib.API_VERSION,
        "kind": "Instance",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"flavor": flavor, "image": benchlib.TINY_IMAGE},
    }
    applied = time.monotonic()
    created = custom.create_namespaced_custom_object(
        benchlib.GROUP, benchlib.VERSION, namespace, "instances", body
    )
    uid = created["metadata"]["uid"]
    deadline = applied + timeout
    try:
        running_at = None
        stream = watch.Watch()  # type: ignore[no-untyped-call]
        for event in stream.stream(  # type: ignore[no-untyped-call]
            custom.list_namespaced_custom_object,
            benchlib.GROUP,
            benchlib.VERSION,
            namespace,
            "instances",
            field_selector=f"metadata.name={name}",
            resource_version=created["metadata"]["resourceVersion"],
            timeout_seconds=max(1, int(timeout)),
        ):
            status = event["object"].get("status") or {}
            if status.get("phase") == "Running":
                running_at = time.monotonic()
                stream.stop()  # type: ignore[no-untyped-call]
                if status.get("host") != host:
                    raise BenchError(f"{name} runs on {status.get('host')!r}, not on {host!r}")
            elif status.get("phase") == "Error":
                raise BenchError(f"instance {name} went to Error: {status.get('fault')}")
        if running_at is None:
            raise BenchError(f"instance {name} was not Running after {timeout:.0f}s")
        ready_at = wait_ready(INSTANCES_PATH / uid / "console.log", deadline)
    finally:
        delete_instance(custom, namespace, name, timeout)
    return running_at - applied, ready_at - applied


def delete_instance(custom: Any, namespace: str, name: str, timeout: float) -> None:
    from kubernetes.client import exceptions

    try:
        custom.delete_namespaced_custom_object(
            benchlib.GROUP, benchlib.VERSION, namespace, "instances", name
        )
    except exceptions.ApiException as exc:
        if exc.status == 404:
            return
        raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            custom.get_namespaced_custom_object(
                benchlib.GROUP, benchlib.VERSION, namespace, "instances", name
            )
        except exceptions.ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(0.5)
    raise BenchError(f"instance {namespace}/{name} was not deleted in {timeout:.0f}s")


def direct_round(
    flavor: dict[str, int], image: dict[str, Any], virt_type: str, timeout: float
) -> float:
    """Time to the ready line of the same guest started with libvirt-python directly."""
    import libvirt

    from kubenova_agent import configdrive, imagecache
    from kubenova_agent.virt import driver
    from kubenova_agent.virt.libvirt import disk, domain_xml

    instance_uuid = str(uuid.uuid4())
    spec = driver.InstanceSpec(
        uuid=instance_uuid,
        name=f"boot-bench-direct-{instance_uuid[:8]}",
        hostname="boot-bench-direct",
        vcpus=flavor["vcpus"],
        memory_mib=flavor["memoryMiB"],
        disk_gib=flavor["diskGiB"],
        image=driver.ImageRef(
            name=benchlib.TINY_IMAGE,
            url=image["source"]["url"],
            sha256=image["sha256"],
            disk_format=image["diskFormat"],
        ),
    )
    base_image = imagecache.ImageCache(IMAGE_CACHE_PATH).fetch(spec.image.url, spec.image.sha256)
    connection = libvirt.open("qemu:///system")
    directory = DIRECT_PATH / instance_uuid
    domain = None
    started = time.monotonic()
    try:
        DIRECT_PATH.mkdir(mode=0o711, exist_ok=True)
        directory.mkdir(mode=0o711)
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
            spec, domain_type=virt_type, files=files, network="default", host=DIRECT_HOST
        )
        domain = connection.defineXML(xml)
        domain.create()
        ready_at = wait_ready(pathlib.Path(files.console_log), started + timeout)
        return ready_at - started
    finally:
        if domain is not None:
            with contextlib.suppress(libvirt.libvirtError):
                domain.destroy()
            domain.undefineFlags(
                libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
            )
        connection.close()
        shutil.rmtree(directory, ignore_errors=True)
        with contextlib.suppress(OSError):
            DIRECT_PATH.rmdir()  # only when no other run's files are left in it


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each (alternating)")
    parser.add_argument("--host", default="vm", help="the real host the agent runs for")
    parser.add_argument("--flavor", default="m1.nano")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per boot")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    custom, _ = benchlib.kube_api()
    hypervisor = benchlib.get_cluster_object(custom, "hypervisors", args.host)
    status = (hypervisor or {}).get("status") or {}
    if status.get("state") != "up":
        raise BenchError(
            f"Hypervisor {args.host} is not up: is the agent of `make dev-up` running?"
        )
    virt_type = status.get("virtType")
    if virt_type not in ("kvm", "qemu"):
        raise BenchError(f"Hypervisor {args.host} is not a libvirt/QEMU host ({virt_type!r})")
    flavor = benchlib.get_cluster_object(custom, "flavors", args.flavor)
    image = benchlib.get_cluster_object(custom, "images", benchlib.TINY_IMAGE)
    if flavor is None or image is None:
        raise BenchError(f"Flavor {args.flavor} or Image {benchlib.TINY_IMAGE} is missing")
    run_id = uuid.uuid4().hex[:6]
    running: list[float] = []
    ready: list[float] = []
    direct: list[float] = []
    for index in range(1, args.repeat + 1):
        name = f"boot-bench-{run_id}-{index}"
        log(f"round {index}/{args.repeat}: Instance {args.namespace}/{name}")
        to_running, to_ready = kubenova_round(
            custom, args.namespace, name, args.flavor, args.host, args.timeout
        )
        running.append(to_running)
        ready.append(to_ready)
        log(f"round {index}/{args.repeat}: the same guest through libvirt directly ({virt_type})")
        direct.append(direct_round(flavor["spec"], image["spec"], virt_type, args.timeout))
        print(
            f"round {index}: kubenova Running {to_running:.2f}s, guest ready {to_ready:.2f}s; "
            f"direct libvirt guest ready {direct[-1]:.2f}s"
        )
    result = {
        "kubenova_running_s": benchlib.rounded(benchlib.median(running), 2),
        "kubenova_guest_ready_s": benchlib.rounded(benchlib.median(ready), 2),
        "direct_libvirt_guest_ready_s": benchlib.rounded(benchlib.median(direct), 2),
        "overhead_ratio": benchlib.rounded(benchlib.median(ready) / benchlib.median(direct), 3),
    }
    print(
        f"boot benchmark ({virt_type}, flavor {args.flavor}, medians of {args.repeat}): "
        f"kubenova Running {result['kubenova_running_s']}s, guest ready "
        f"{result['kubenova_guest_ready_s']}s; direct libvirt "
        f"{result['direct_libvirt_guest_ready_s']}s; overhead x{result['overhead_ratio']}"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"boot_bench: {exc}", file=sys.stderr)
        sys.exit(2)
