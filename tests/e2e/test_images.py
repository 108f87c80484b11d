"""The container images `make images` pushes: the registry serves each one under the tag of
the last build, with the user and entrypoint the chart relies on, and each image's entrypoint
really starts its program under Debian's runc (no Docker engine).

Needs the registry (hack/registry.sh start) and a finished `make images`; skips, saying so,
when there is none. Bundles are unpacked once per image digest and kept in
$KUBENOVA_CACHE/images/bundles, so a second run only starts containers.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.required import missing

pytestmark = pytest.mark.e2e

ROOT = pathlib.Path(__file__).resolve().parents[2]
STATE = pathlib.Path(os.environ.get("KUBENOVA_STATE", ROOT / ".kubenova"))
CACHE = pathlib.Path(os.environ.get("KUBENOVA_CACHE", "/var/cache/kubenova"))
REGISTRY = os.environ.get("KUBENOVA_REGISTRY", "127.0.0.1:5000")
TAG_FILE = STATE / "images" / "tag"
BUNDLES = CACHE / "images" / "bundles"
GUEST_CHECKSUM = pathlib.Path(
    os.environ.get("KUBENOVA_IMAGES_DIR", STATE / "images"), "kubenova-tiny.qcow2.sha256"
)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

#: Each image and the user its config must name: the chart's securityContext follows these.
USERS = {
    "pause": "65535:65535",
    "coredns": "65532:65532",
    "toolbox": "65532:65532",
    "operator": "65532:65532",
    "node-agent": "0:0",
    "libvirt": "0:0",
    "mariadb": "999:999",
    "rabbitmq": "999:999",
    "image-server": "65532:65532",
}


def registry_get(path: str, accept: str = OCI_MANIFEST) -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(f"http://{REGISTRY}/v2/{path}", headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read(), dict(response.headers)


@pytest.fixture(scope="module")
def tag() -> str:
    try:
        registry_get("")
    except OSError as exc:
        missing(f"no registry at {REGISTRY} ({exc}): run hack/registry.sh start")
    if not TAG_FILE.exists():
        missing(f"no {TAG_FILE}: run `make images`")
    return TAG_FILE.read_text().strip()


def manifest(name: str, reference: str) -> tuple[dict[str, Any], str]:
    """The image's OCI manifest and its digest, as the registry serves them."""
    body, headers = registry_get(f"kubenova/{name}/manifests/{reference}")
    assert headers["Content-Type"] == OCI_MANIFEST
    return json.loads(body), headers["Docker-Content-Digest"]


def image_config(name: str, reference: str) -> dict[str, Any]:
    document, _ = manifest(name, reference)
    body, _ = registry_get(f"kubenova/{name}/blobs/{document['config']['digest']}", accept="*/*")
    config: dict[str, Any] = json.loads(body)
    return config


@pytest.mark.parametrize("name", sorted(USERS))
def test_the_registry_serves_each_image_under_the_last_tag(tag: str, name: str) -> None:
    document, _ = manifest(name, tag)
    assert document["schemaVersion"] == 2
    for layer in document["layers"]:
        request = urllib.request.Request(
            f"http://{REGISTRY}/v2/kubenova/{name}/blobs/{layer['digest']}", method="HEAD"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert int(response.headers["Content-Length"]) == layer["size"]
    config = image_config(name, tag)
    assert config["config"]["User"] == USERS[name]
    assert config["config"].get("Entrypoint") or config["config"].get("Cmd")
    labels = config["config"]["Labels"]
    assert tag.startswith(labels["org.opencontainers.image.version"] + "-")
    assert labels["org.opencontainers.image.revision"]
    assert labels["org.opencontainers.image.source"]


def test_the_pause_image_is_also_tagged_for_the_kubelet(tag: str) -> None:
    assert manifest("pause", "3.10")[1] == manifest("pause", tag)[1]


def test_the_operator_and_the_agent_share_their_layers(tag: str) -> None:
    operator, _ = manifest("operator", tag)
    agent, _ = manifest("node-agent", tag)
    assert [layer["digest"] for layer in operator["layers"]] == [
        layer["digest"] for layer in agent["layers"]
    ]
    # A code change rebuilds the top layer only, so it must stay small.
    assert operator["layers"][-1]["size"] < 5 * 1024 * 1024


# --- running them with runc ----------------------------------------------------------------


def bundle(tag: str, name: str) -> tuple[pathlib.Path, dict[str, Any]]:
    """The image's root filesystem, pulled from the registry and unpacked once per digest,
    and the runtime config umoci derived from the image config."""
    if shutil.which("runc") is None or os.geteuid() != 0:
        missing("running images needs root and runc")
    _, digest = manifest(name, tag)
    path = BUNDLES / f"{name}-{digest.removeprefix('sha256:')[:16]}"
    if not (path / "config.json").exists():
        for old in BUNDLES.glob(f"{name}-*"):
            shutil.rmtree(old)
        work = pathlib.Path(f"{path}.tmp")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        ref = f"{REGISTRY}/kubenova/{name}@{digest}"
        subprocess.run(
            ["skopeo", "copy", "--quiet", "--src-tls-verify=false",
             f"docker://{ref}", f"oci:{work}/layout:{name}"],
            check=True, timeout=600,
        )  # fmt: skip
        subprocess.run(
            ["umoci", "unpack", "--image", f"{work}/layout:{name}", str(work / "bundle")],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        (work / "bundle").rename(path)
        shutil.rmtree(work)
    return path / "rootfs", json.loads((path / "config.json").read_text())


#: What a privileged pod gets, less what root lacks on these machines (CAP_SYS_RESOURCE).
PRIVILEGED_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_ADMIN", "CAP_SYS_NICE", "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP",
]  # fmt: skip


class Container:
    """One runc container on a cached bundle. The cached root filesystem is never written:
    it is mounted read-only (what a program writes goes to the tmpfs mounts it is given), or,
    with ``writable``, under an overlay whose upper layer is thrown away afterwards."""

    def __init__(
        self,
        tag: str,
        name: str,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        tmpfs: dict[str, str] | None = None,
        writable: bool = False,
        privileged: bool = False,
    ) -> None:
        rootfs, config = bundle(tag, name)
        self.id = f"kubenova-test-{name}-{uuid.uuid4().hex[:8]}"
        self.dir = STATE / "run" / self.id
        self.dir.mkdir(parents=True)
        self.log = self.dir / "output.log"
        self.overlay: pathlib.Path | None = None
        process = config["process"]
        process["terminal"] = False
        if args is not None:
            process["args"] = args
        process["env"] += [f"{key}={value}" for key, value in (env or {}).items()]
        if privileged:
            process["capabilities"] = dict.fromkeys(
                ("bounding", "effective", "permitted"), PRIVILEGED_CAPABILITIES
            )
        config["root"] = {"path": str(rootfs), "readonly": True}
        if writable:
            self.overlay = self.dir / "rootfs"
            for part in ("upper", "work", "rootfs"):
                (self.dir / part).mkdir()
            subprocess.run(
                ["mount", "-t", "overlay", "overlay", "-o",
                 f"lowerdir={rootfs},upperdir={self.dir}/upper,workdir={self.dir}/work",
                 str(self.overlay)],
                check=True, timeout=30,
            )  # fmt: skip
            config["root"] = {"path": str(self.overlay), "readonly": False}
        config["hostname"] = name
        for target, owner in {"/tmp": "0", **(tmpfs or {})}.items():
            config["mounts"].append(
                {"destination": target, "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "nodev", "mode=0755", f"uid={owner}", f"gid={owner}"]}
            )  # fmt: skip
        (self.dir / "config.json").write_text(json.dumps(config))

    def run(self, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run to the end, in the foreground."""
        try:
            return subprocess.run(
                ["runc", "run", "--bundle", str(self.dir), self.id],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            )  # fmt: skip
        finally:
            self.remove()

    def start(self) -> None:
        """Start in the background; the output goes to self.log."""
        with self.log.open("w") as log:
            subprocess.run(
                ["runc", "run", "--detach", "--bundle", str(self.dir), self.id],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=True, timeout=60,
            )  # fmt: skip

    def exec(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runc", "exec", self.id, *args], capture_output=True, text=True, timeout=timeout
        )

    def wait_for(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `args` in the container until it succeeds."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.exec(*args)
            if result.returncode == 0:
                return result
            if not self.running() or time.monotonic() > deadline:
                raise AssertionError(
                    f"{args} failed (for up to {timeout}s): {result.stderr}\n"
                    f"container output:\n{self.log.read_text()[-3000:]}"
                )
            time.sleep(1)

    def running(self) -> bool:
        state = subprocess.run(
            ["runc", "state", self.id], capture_output=True, text=True, timeout=30
        )
        return state.returncode == 0 and json.loads(state.stdout)["status"] == "running"

    def remove(self) -> None:
        subprocess.run(["runc", "delete", "--force", self.id], capture_output=True, timeout=60)
        if self.overlay is not None:
            subprocess.run(["umount", str(self.overlay)], check=True, timeout=60)
            self.overlay = None
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def container(tag: str) -> Iterator[Any]:
    made: list[Container] = []

    def make(name: str, **kwargs: Any) -> Container:
        made.append(Container(tag, name, **kwargs))
        return made[-1]

    yield make
    for each in made:
        each.remove()


def entrypoint(tag: str, name: str) -> list[str]:
    entry: list[str] = image_config(name, tag)["config"].get("Entrypoint") or []
    return entry


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("operator", ["--help"], "kubenova-operator"),
        ("node-agent", ["--help"], "kubenova-agent"),
        ("libvirt", ["--version"], "libvirtd (libvirt) "),
        ("mariadb", ["--version"], "mariadbd  Ver "),
    ],
)
def test_the_entrypoint_runs(
    tag: str, container: Any, name: str, args: list[str], expected: str
) -> None:
    result = container(name, args=entrypoint(tag, name) + args).run()
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout


def test_the_operator_image_has_kubenova_manage_for_the_db_sync_job(
    tag: str, container: Any
) -> None:
    result = container("operator", args=["kubenova-manage", "--help"]).run()
    assert result.returncode == 0, result.stderr
    assert "db" in result.stdout


def test_the_node_agent_image_has_qemu_img(tag: str, container: Any) -> None:
    result = container("node-agent", args=["qemu-img", "--version"]).run()
    assert result.returncode == 0, result.stderr
    assert "qemu-img version" in result.stdout


def test_the_image_server_serves_the_guest_image_as_non_root(tag: str, container: Any) -> None:
    server = container("image-server")
    server.start()
    # The image is kubenova-image-server on Python, with no shell tools: Python asks.
    fetch = (
        "import urllib.request as r; print(r.urlopen("
        "'http://127.0.0.1:8080/kubenova-tiny.qcow2.sha256').read().decode(), end='')"
    )
    served = server.wait_for("python3", "-c", fetch)
    if GUEST_CHECKSUM.exists():
        assert served.stdout == GUEST_CHECKSUM.read_text()
    assert len(served.stdout.strip()) == 64
    uid = server.exec("python3", "-c", "import os; print(os.getuid())")
    assert uid.stdout.strip() == "65532"


def test_mariadb_initialises_its_data_and_lets_the_application_in(tag: str, container: Any) -> None:
    server = container(
        "mariadb",
        env={"MARIADB_DATABASE": "nova", "MARIADB_USER": "nova", "MARIADB_PASSWORD": "it's-a-test"},
        tmpfs={"/var/lib/mysql": "999", "/run/mysqld": "999"},
    )
    server.start()
    # The application's path: TCP, its own user and password, its own database.
    result = server.wait_for(
        "mariadb", "-h127.0.0.1", "-unova", "-pit's-a-test", "nova", "-Nse",
        "SELECT DATABASE(), CURRENT_USER()",
    )  # fmt: skip
    assert result.stdout.split() == ["nova", "nova@%"]
    # The administrator is the mysql account, over the socket only.
    assert (
        server.exec("mariadb", "-Nse", "SELECT CURRENT_USER()").stdout.strip() == "mysql@localhost"
    )


def test_rabbitmq_starts_with_the_management_api_and_the_administrator(
    tag: str, container: Any
) -> None:
    server = container(
        "rabbitmq",
        env={"RABBITMQ_DEFAULT_USER": "kubenova", "RABBITMQ_DEFAULT_PASS": "test"},
        tmpfs={"/var/lib/rabbitmq": "999", "/var/log/rabbitmq": "999"},
    )
    server.start()
    server.wait_for("rabbitmqctl", "await_startup", timeout=180)
    listeners = server.exec("rabbitmq-diagnostics", "-q", "listeners").stdout
    assert "15672" in listeners  # the management plugin's HTTP API
    users = server.exec("rabbitmqctl", "-q", "list_users").stdout
    assert "kubenova\t[administrator]" in users
    version = server.exec("rabbitmqctl", "-q", "version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip()[0].isdigit()


def test_libvirt_starts_libvirtd_without_virtlogd_when_privileged(tag: str, container: Any) -> None:
    daemon = container(
        "libvirt",
        writable=True,  # libvirtd writes /etc/libvirt (secrets, persistent domains)
        privileged=True,  # it chowns files to libvirt-qemu and sets up guests' cgroups
        tmpfs=dict.fromkeys(("/run", "/var/lib/libvirt", "/var/log/libvirt"), "0"),
    )
    daemon.start()
    # `uri` connects to the QEMU driver without waiting for QEMU's capabilities, which
    # libvirtd probes in the background (a minute or more under software emulation).
    connected = daemon.wait_for("virsh", "-c", "qemu:///system", "uri")
    assert connected.stdout.strip() == "qemu:///system"
    processes = daemon.exec("sh", "-c", "cat /proc/[0-9]*/comm").stdout.split()
    assert "libvirtd" in processes
    # QEMU logs to files itself: no virtlogd, which could not outlive the container.
    assert "virtlogd" not in processes
    # Outside a pod there are no pod cgroups to leave (the chart's tests check that libvirtd
    # leaves them in one).
    assert "not in a pod's cgroups" in daemon.log.read_text()
