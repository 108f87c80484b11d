"""The second real hypervisor host of the local stack, for tests of migrations.

``hack/services.sh libvirt2-up`` runs a second libvirtd in a mount namespace of its own
(``hack/lib/libvirt2.sh``); this module tells tests where it is, and runs a node agent for it:
a second host, with its own host name, libvirt URI, instances directory and image cache, as a
second machine would have. Both hosts' agents report a migration URI, so that each can be the
other's destination.

Usage in an end-to-end test (the first agent needs ``KUBENOVA_MIGRATION_URI`` =
:data:`FIRST_HOST_MIGRATION_URI` in its environment too)::

    second = SecondAgent(env)             # env: the stack's environment, as for the first agent
    second.start()                        # returns once the process runs; its Hypervisor
    ...                                   # comes up with its first heartbeat
    second.stop()
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess

from tests.support.required import missing

ROOT = pathlib.Path(__file__).resolve().parents[2]
STATE = pathlib.Path(os.environ.get("KUBENOVA_STATE", str(ROOT / ".kubenova")))

#: The first host's libvirtd, as its own agent and the second host's agent reach it.
FIRST_HOST_MIGRATION_URI = os.environ.get("KUBENOVA_LIBVIRT_URI", "qemu:///system")


def socket_path() -> pathlib.Path:
    """The second libvirtd's socket, outside its namespace (as hack/lib/env.sh sets it)."""
    directory = os.environ.get("KUBENOVA_LIBVIRT2_DIR", str(STATE / "libvirt2"))
    return pathlib.Path(os.environ.get("KUBENOVA_LIBVIRT2_SOCKET", f"{directory}/run/libvirt-sock"))


def uri() -> str:
    """The second libvirtd's URI: what its agent drives, and its migration URI."""
    return os.environ.get("KUBENOVA_LIBVIRT2_URI", f"qemu:///system?socket={socket_path()}")


def reachable() -> str | None:
    """None when the second libvirtd answers; else why not, saying how to start it."""
    path = socket_path()
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2.0)
        probe.connect(str(path))
    except OSError as exc:
        return (
            f"the second libvirtd is not running ({path}: {exc}); start it with "
            "hack/services.sh libvirt2-up"
        )
    finally:
        probe.close()
    return None


def require() -> str:
    """The second libvirtd's URI; the test is skipped (failed under ``make test``) without
    it."""
    reason = reachable()
    if reason is not None:
        missing(reason)
    return uri()


def default_host_name() -> str:
    return f"{socket.gethostname().split('.')[0]}-2"


class SecondAgent:
    """A ``kubenova-agent`` process for the second host."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        host: str | None = None,
        instances_path: str = "/var/lib/kubenova/instances-2",
        image_cache_path: str = "/var/lib/kubenova/_base-2",
    ) -> None:
        self.host = host or default_host_name()
        self.instances_path = instances_path
        self.image_cache_path = image_cache_path
        # As in a cluster: an agent never gets the database's settings.
        self.env = {k: v for k, v in env.items() if not k.startswith("KUBENOVA_DB_")}
        self.env.update(
            KUBENOVA_HOST=self.host,
            KUBENOVA_LIBVIRT_URI=uri(),
            KUBENOVA_MIGRATION_URI=uri(),
            # One serial console port serves every host (kubenova-subresources dials it on the
            # host's name); on this machine the first host's agent has it.
            KUBENOVA_SERIAL_CONSOLE_PORT="0",
            KUBENOVA_INSTANCES_PATH=instances_path,
            KUBENOVA_IMAGE_CACHE_PATH=image_cache_path,
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> pathlib.Path:
        return STATE / "logs" / f"agent-{self.host}.log"

    def start(self) -> None:
        """Start the agent (its RabbitMQ user is made first, as for any host)."""
        require()
        subprocess.run(
            [str(ROOT / "hack/rabbitmq-agent-user.sh"), self.host],
            check=True,
            env=self.env,
            capture_output=True,
        )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    str(ROOT / ".venv/bin/kubenova-agent"),
                    "--host",
                    self.host,
                    "--amqp-url-file",
                    str(STATE / "agents" / f"{self.host}.amqp-url"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL the agent, as a crash."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
