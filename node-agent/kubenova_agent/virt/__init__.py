"""The node-agent's virt layer: the driver interface and its implementations.

``kubenova_agent.virt.driver`` holds the contract and the value types that cross it; the
implementations live in ``kubenova_agent.virt.libvirt.driver`` (libvirt/QEMU) and
``kubenova_agent.virt.testdriver`` (libvirt's ``test:///default``, for simulated hosts). They
are imported by whoever chooses one, so importing this package does not load libvirt.
"""

from kubenova_agent.virt.driver import (
    ComputeDriver,
    HostInfo,
    ImageRef,
    InstanceSpec,
    InstanceState,
    RebootType,
)
from kubenova_agent.virt.migration import (
    MigrationDriver,
    MigrationProgress,
    MigrationResult,
    MigrationTarget,
)
from kubenova_agent.virt.power_state import PowerState

__all__ = [
    "ComputeDriver",
    "HostInfo",
    "ImageRef",
    "InstanceSpec",
    "InstanceState",
    "MigrationDriver",
    "MigrationProgress",
    "MigrationResult",
    "MigrationTarget",
    "PowerState",
    "RebootType",
]
