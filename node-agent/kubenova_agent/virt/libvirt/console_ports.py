"""Remembers the console ports of each running domain, so that its XML is not read every time.

The ports a guest's VNC and SPICE listen on are in its live XML only, and libvirt hands them
out when QEMU starts: they cannot change while that QEMU runs. The periodic power-state sync
asks for every instance's state every few seconds, so the ports are kept per domain uuid with
the domain's runtime id (libvirt's ``virDomainGetID``, read from the handle without asking
libvirtd; a new one at every start) and the XML is read again only when that id differs:
after a build, a power on, a reboot that restarts QEMU, a rebuild, a resize or a migration's
arrival. A domain that is not running has no ports and costs nothing.
"""

from __future__ import annotations

import threading

from kubenova_agent.virt import values
from kubenova_agent.virt.libvirt import connection, domain_xml


class ConsolePortCache:
    """Thread-safe map of domain uuid to (runtime id, console ports)."""

    def __init__(self) -> None:
        self._ports: dict[str, tuple[int, values.ConsolePorts | None]] = {}
        self._lock = threading.Lock()

    def ports(self, instance_uuid: str, domain: connection.Domain) -> values.ConsolePorts | None:
        """The console ports of ``domain`` as it runs now; None when it is not running.

        Raises what the domain's calls raise (a domain that vanished meanwhile).
        """
        runtime_id = domain.runtime_id
        if runtime_id < 0:
            with self._lock:
                self._ports.pop(instance_uuid, None)
            return None
        with self._lock:
            known = self._ports.get(instance_uuid)
        if known is not None and known[0] == runtime_id:
            return known[1]
        ports = domain_xml.console_ports(domain.xml_desc())
        with self._lock:
            self._ports[instance_uuid] = (runtime_id, ports)
        return ports

    def forget(self, instance_uuid: str) -> None:
        with self._lock:
            self._ports.pop(instance_uuid, None)
