"""Fixtures for the virt driver contract suite: one harness per driver.

``driver_harness`` is parametrized over the TestDriver (always available) and the LibvirtDriver
on qemu:///system (marked ``integration``; skipped with the reason when libvirtd cannot be
reached, failed instead under ``make test``: ``tests.support.required``). The LibvirtDriver
boots a real guest: the tiny guest image from ``$KUBENOVA_IMAGES_DIR/kubenova-tiny.qcow2`` when
hack/guest/build.sh has made it, otherwise a blank qcow2 (the domain then runs with no
operating system, which is enough for everything but the boot test). Images are served by an
http.server on 127.0.0.1 started here, so the suite does not depend on hack/guest/serve.sh.

Isolation: each harness gives its driver a host name of its own, so the driver neither sees
nor touches the domains of a real agent on the same libvirtd (or of another test), and its
teardown destroys every instance the test made. ``shared_harness`` is the same, made once per
test module, for tests that share guests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import http.server
import os
import pathlib
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kubenova_agent import exceptions
from kubenova_agent.virt import driver as virt_driver
from kubenova_agent.virt.libvirt import connection
from kubenova_agent.virt.libvirt import driver as libvirt_driver
from kubenova_agent.virt.testdriver import TestDriver
from tests.support.required import missing

REPO = pathlib.Path(__file__).resolve().parents[3]
LIBVIRT_URI = os.environ.get("KUBENOVA_LIBVIRT_URI", "qemu:///system")
TINY_IMAGE_NAME = "kubenova-tiny.qcow2"


def images_dir() -> pathlib.Path:
    """$KUBENOVA_IMAGES_DIR, defaulting as hack/lib/env.sh does."""
    state = os.environ.get("KUBENOVA_STATE", str(REPO / ".kubenova"))
    return pathlib.Path(os.environ.get("KUBENOVA_IMAGES_DIR", f"{state}/images"))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclasses.dataclass
class ServedImage:
    image: virt_driver.ImageRef
    #: True when the image is the tiny guest, which boots and talks on its console.
    boots: bool


class ImageServer:
    """Serves files from a directory on 127.0.0.1."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def sha256_of(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def qcow2(path: pathlib.Path, size: str) -> pathlib.Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return path


@dataclasses.dataclass
class Harness:
    """One driver under test, with what the contract tests need around it."""

    kind: str
    driver: virt_driver.ComputeDriver
    served: ServedImage
    server: ImageServer
    uri: str
    #: Where the driver keeps instance files and images (None: it keeps none).
    instances_path: pathlib.Path | None
    image_cache_path: pathlib.Path | None
    #: Makes the host fail its next builds the way a broken host does.
    break_host: Callable[[], None]
    #: Undoes ``break_host``.
    repair_host: Callable[[], None] = lambda: None
    created: set[str] = dataclasses.field(default_factory=set)

    def instance(self, **overrides: Any) -> virt_driver.InstanceSpec:
        """A new instance spec (recorded for teardown) booting the served image."""
        fields: dict[str, Any] = {
            "uuid": str(uuid.uuid4()),
            "name": 'contract <test> & "co"',
            "hostname": "contract-guest",
            "vcpus": 1,
            "memory_mib": 256,
            "disk_gib": 1,
            "image": self.served.image,
            "user_data": b"kubenova contract test\n",
            "ssh_authorized_keys": ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIContract test@kubenova",),
        }
        fields.update(overrides)
        spec = virt_driver.InstanceSpec(**fields)
        self.created.add(spec.uuid)
        return spec

    def raw_domain(self, instance_uuid: str) -> connection.Domain | None:
        """The domain with this uuid as libvirt has it, whoever made it."""
        conn = connection.Connection(self.uri)
        try:
            return conn.lookup_by_uuid(instance_uuid)
        finally:
            conn.close()

    def leftovers(self, instance_uuid: str, digest: str | None = None) -> list[str]:
        """Everything a failed or destroyed instance might have left behind."""
        found = []
        if self.raw_domain(instance_uuid) is not None:
            found.append(f"domain {instance_uuid}")
        if self.instances_path is not None and (self.instances_path / instance_uuid).exists():
            found.append(f"directory {self.instances_path / instance_uuid}")
        if digest is not None and self.image_cache_path is not None:
            found.extend(
                f"cache file {path.name}" for path in self.image_cache_path.glob(f"*{digest}*")
            )
        return found


def _libvirt_reachable() -> str | None:
    conn = connection.Connection(LIBVIRT_URI)
    try:
        conn.open()
    except exceptions.HypervisorError as exc:
        return (
            f"libvirtd is not reachable at {LIBVIRT_URI} ({exc}); start it with hack/services.sh up"
        )
    finally:
        conn.close()
    return None


def _traversable_tmpdir() -> pathlib.Path:
    # pytest's tmp_path sits under a 0700 directory that QEMU, running as libvirt-qemu, cannot
    # enter; /var/tmp is world-traversable.
    path = pathlib.Path(tempfile.mkdtemp(prefix="kubenova-virt-contract-", dir="/var/tmp"))
    path.chmod(0o711)
    return path


@pytest.fixture(scope="session")
def image_files() -> Iterator[tuple[ImageServer, ServedImage]]:
    """The image the drivers boot, served over HTTP for the whole session."""
    served_dir = _traversable_tmpdir()
    tiny = images_dir() / TINY_IMAGE_NAME
    checksum = tiny.with_name(TINY_IMAGE_NAME + ".sha256")
    if tiny.exists() and checksum.exists():
        shutil.copyfile(tiny, served_dir / TINY_IMAGE_NAME)
        digest = checksum.read_text().split()[0]
        image = virt_driver.ImageRef(
            name="kubenova-tiny", url="", sha256=digest, disk_format="qcow2"
        )
        boots = True
    else:
        blank = qcow2(served_dir / "blank.qcow2", "64M") if shutil.which("qemu-img") else None
        if blank is None:
            # Only the TestDriver can run, and it downloads nothing.
            (served_dir / "blank.qcow2").write_bytes(b"not an image")
            blank = served_dir / "blank.qcow2"
        image = virt_driver.ImageRef(
            name="blank", url="", sha256=sha256_of(blank), disk_format="qcow2"
        )
        boots = False
    server = ImageServer(served_dir)
    filename = TINY_IMAGE_NAME if boots else "blank.qcow2"
    image = dataclasses.replace(image, url=server.url(filename))
    yield server, ServedImage(image=image, boots=boots)
    server.close()
    shutil.rmtree(served_dir, ignore_errors=True)


def _make_test_harness(server: ImageServer, served: ServedImage) -> Harness:
    test_driver = TestDriver(
        hostname=f"sim-{uuid.uuid4().hex[:12]}",
        vcpus=8,
        memory_mib=16384,
        disk_gib=200,
        known_images={served.image.url: served.image.sha256},
    )
    return Harness(
        kind="test",
        driver=test_driver,
        served=served,
        server=server,
        uri="test:///default",
        instances_path=None,
        image_cache_path=None,
        break_host=lambda: test_driver.simulate_host_failure("qemu exited unexpectedly"),
        repair_host=lambda: test_driver.simulate_host_failure(None),
    )


def _make_libvirt_harness(
    server: ImageServer, served: ServedImage, workdir: pathlib.Path
) -> Harness:
    instances = workdir / "instances"
    cache = workdir / "_base"
    hostname = f"contract-{uuid.uuid4().hex[:12]}"

    def make(network: str) -> libvirt_driver.LibvirtDriver:
        return libvirt_driver.LibvirtDriver(
            uri=LIBVIRT_URI,
            instances_path=str(instances),
            image_cache_path=str(cache),
            network=network,
            hostname=hostname,
        )

    harness = Harness(
        kind="libvirt",
        driver=make("default"),
        served=served,
        server=server,
        uri=LIBVIRT_URI,
        instances_path=instances,
        image_cache_path=cache,
        break_host=lambda: None,
    )

    def break_host() -> None:
        # The same host with a network that does not exist: the domain is defined, then its
        # start fails, as on a host whose network is down.
        harness.driver = make("kubenova-contract-no-such-network")
        harness.driver.init_host()

    def repair_host() -> None:
        harness.driver = make("default")
        harness.driver.init_host()

    harness.break_host = break_host
    harness.repair_host = repair_host
    return harness


@pytest.fixture
def make_qcow2() -> Callable[[pathlib.Path, str], pathlib.Path]:
    """Creates a blank qcow2 image of a virtual size (``"2G"``) at a path."""
    return qcow2


_DRIVER_PARAMS = [
    pytest.param("test", id="TestDriver"),
    pytest.param("libvirt", id="LibvirtDriver", marks=pytest.mark.integration),
]


@contextlib.contextmanager
def _harness(kind: str, image_files: tuple[ImageServer, ServedImage]) -> Iterator[Harness]:
    server, served = image_files
    workdir: pathlib.Path | None = None
    if kind == "test":
        harness = _make_test_harness(server, served)
    else:
        reason = _libvirt_reachable()
        if reason is not None:
            missing(reason)
        if shutil.which("qemu-img") is None:
            missing("qemu-img is not installed (Debian package qemu-utils)")
        workdir = _traversable_tmpdir()
        harness = _make_libvirt_harness(server, served, workdir)
    try:
        harness.driver.init_host()
        yield harness
    finally:
        for instance_uuid in sorted(harness.created):
            harness.driver.destroy(instance_uuid)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(params=_DRIVER_PARAMS)
def driver_harness(request, image_files) -> Iterator[Harness]:
    with _harness(request.param, image_files) as harness:
        yield harness


@pytest.fixture(scope="module", params=_DRIVER_PARAMS)
def shared_harness(request, image_files) -> Iterator[Harness]:
    """A harness for a whole test module, so that its guests (slow to boot under TCG) can be
    shared by its tests; each test leaves them fit for the next."""
    with _harness(request.param, image_files) as harness:
        yield harness
