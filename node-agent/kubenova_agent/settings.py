"""Settings of one node-agent, read from the environment.

The agent's own module, apart from the operator's (:mod:`kubenova.config`), so that what an
agent reads says at a glance what a hypervisor host holds: where the message bus is, how often
to report, where instance files live. Nothing about the database: the agent never reaches it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket

from kubenova.config import MessagingSettings, env_choice, env_float, env_positive
from kubenova.console import spice_ticket

#: The agent's ``KUBENOVA_VIRT_TYPE`` (Nova's ``[libvirt] virt_type``): "auto" decides at start
#: whether guests can use KVM, "kvm" and "qemu" (software emulation, TCG) force the choice.
VIRT_TYPES = ("auto", "kvm", "qemu")


@dataclasses.dataclass(frozen=True)
class AgentSettings:
    """Settings of one node-agent."""

    host: str
    messaging: MessagingSettings
    heartbeat_interval_s: float = 10.0
    # How often the agent compares libvirt's view with what it last reported.
    sync_interval_s: float = 2.0
    instances_path: str = "/var/lib/kubenova/instances"
    image_cache_path: str = "/var/lib/kubenova/_base"
    libvirt_uri: str = "qemu:///system"
    # One of VIRT_TYPES; the libvirt driver resolves "auto" when it starts.
    virt_type: str = "auto"
    # Whether a guest's CPU weight is lowered once it has started, so that guests being started
    # are not held back by running ones (KUBENOVA_STARTING_GUESTS_FIRST, "true" or "false";
    # kubenova_agent.virt.libvirt.start_priority).
    starting_guests_first: bool = True
    # How many messages the agent handles at once: the consumer's lanes. One instance's
    # messages always share a lane (they are handled in order), so a clean stop waiting up to
    # its shutdown timeout holds up only the instances whose uuids hash to the same lane.
    workers: int = 8
    # The URI other hosts' agents reach this host's libvirtd by, for migrations (reported in
    # the host's facts); None: this host cannot be a migration's destination.
    migration_uri: str | None = None
    # The address guests' VNC and SPICE listen on (KUBENOVA_CONSOLE_LISTEN): loopback on a
    # machine of its own, the node's IP in a cluster, where the console proxy reaches it.
    console_listen: str = "127.0.0.1"
    # SPICE's address when it must differ from the others' (KUBENOVA_SPICE_LISTEN): SPICE
    # asks no client certificate, so it stays on loopback where the node's address is open.
    spice_listen: str | None = None
    # The key every guest's SPICE password is derived from (KUBENOVA_SPICE_TICKET_KEY_FILE,
    # a file the console proxy holds too; kubenova_agent.virt.libvirt.spice_ticket). With it
    # SPICE may listen where others reach it; None: SPICE has no password.
    spice_ticket_key: bytes | None = dataclasses.field(default=None, repr=False)
    # Whether this host's QEMU serves consoles over TLS (KUBENOVA_CONSOLE_TLS, "true" or
    # "false"): it must say what the host libvirtd's qemu.conf says (vnc_tls, spice_tls).
    console_tls: bool = True
    # Where the console proxy reaches them (KUBENOVA_CONSOLE_ADDRESS, an address or a name;
    # default: console_listen, unless that is every address).
    console_address: str | None = None
    # The host's serial console server (kubenova_agent.serial_console): its address
    # (KUBENOVA_SERIAL_CONSOLE_LISTEN, default: the consoles' address), its port, the same on
    # every host (KUBENOVA_SERIAL_CONSOLE_PORT, 0: off) and the directory of its TLS files
    # (KUBENOVA_SERIAL_CONSOLE_X509_DIR: the host's QEMU console certificate and the CA).
    serial_console_listen: str = "127.0.0.1"
    serial_console_port: int = 6083
    serial_console_x509_dir: str = "/etc/pki/libvirt-vnc"

    @classmethod
    def from_env(cls, host: str | None = None, amqp_url: str | None = None) -> AgentSettings:
        return cls(
            host=host or os.environ.get("KUBENOVA_HOST") or socket.gethostname().split(".")[0],
            messaging=MessagingSettings.from_env(amqp_url),
            heartbeat_interval_s=env_float("KUBENOVA_HEARTBEAT_INTERVAL", 10.0),
            sync_interval_s=env_float("KUBENOVA_SYNC_INTERVAL", 2.0),
            instances_path=os.environ.get("KUBENOVA_INSTANCES_PATH", "/var/lib/kubenova/instances"),
            image_cache_path=os.environ.get("KUBENOVA_IMAGE_CACHE_PATH", "/var/lib/kubenova/_base"),
            libvirt_uri=os.environ.get("KUBENOVA_LIBVIRT_URI", "qemu:///system"),
            virt_type=env_choice("KUBENOVA_VIRT_TYPE", "auto", VIRT_TYPES),
            starting_guests_first=env_choice(
                "KUBENOVA_STARTING_GUESTS_FIRST", "true", ("true", "false")
            )
            == "true",
            workers=env_positive("KUBENOVA_AGENT_WORKERS", 8, int),
            migration_uri=os.environ.get("KUBENOVA_MIGRATION_URI") or None,
            console_listen=_address("KUBENOVA_CONSOLE_LISTEN", "127.0.0.1"),
            console_address=os.environ.get("KUBENOVA_CONSOLE_ADDRESS") or None,
            spice_listen=(
                _address("KUBENOVA_SPICE_LISTEN", "")
                if os.environ.get("KUBENOVA_SPICE_LISTEN")
                else None
            ),
            spice_ticket_key=(
                spice_ticket.read_key(key_file, "KUBENOVA_SPICE_TICKET_KEY_FILE")
                if (key_file := os.environ.get("KUBENOVA_SPICE_TICKET_KEY_FILE"))
                else None
            ),
            console_tls=env_choice("KUBENOVA_CONSOLE_TLS", "true", ("true", "false")) == "true",
            serial_console_listen=_address(
                "KUBENOVA_SERIAL_CONSOLE_LISTEN", _address("KUBENOVA_CONSOLE_LISTEN", "127.0.0.1")
            ),
            serial_console_port=_port("KUBENOVA_SERIAL_CONSOLE_PORT", 6083),
            serial_console_x509_dir=os.environ.get("KUBENOVA_SERIAL_CONSOLE_X509_DIR")
            or "/etc/pki/libvirt-vnc",
        )


def _address(name: str, default: str) -> str:
    """An IP address from the environment variable ``name``; ValueError naming it otherwise."""
    value = os.environ.get(name) or default
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{name} must be an IP address, not {value!r}") from None


def _port(name: str, default: int) -> int:
    """A TCP port (0 included) from the environment variable ``name``; ValueError naming it."""
    value = os.environ.get(name) or str(default)
    if not value.isdigit() or int(value) > 65535:
        raise ValueError(f"{name} must be a port number from 0 to 65535, not {value!r}")
    return int(value)
