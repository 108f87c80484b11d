"""The columns of ``instances`` a host's report of console ports sets.

A host reports the ports of a guest's consoles whenever it reports the guest (contract 1.6):
they go into the UPDATE that writes the rest of the report, never a statement of their own.
A report from an older agent says nothing about them and leaves the columns as they are.
"""

from __future__ import annotations

from typing import Any

from kubenova.rpc import payloads

#: The columns, in the order of the payload's fields.
COLUMNS = ("vnc_port", "spice_port", "spice_tls_port")


def values(report: payloads.InstanceUpdate | payloads.InstanceOperationFinished) -> dict[str, Any]:
    """The console columns ``report`` sets: every one (NULL for a console that does not run),
    or none when the report does not carry ports."""
    if not payloads.console_ports_reported(report):
        return {}
    ports = report.console_ports or payloads.ConsolePorts()
    return {column: getattr(ports, column) for column in COLUMNS}
