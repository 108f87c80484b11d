"""ImagePropertiesFilter: the host can run the image's architecture and hypervisor type.

The image's ``hw_architecture`` is compared with the host's ``cpu_arch`` and its
``img_hv_type`` with the host's ``hypervisor_type`` and ``virt_type``, after both sides are
made canonical as Nova does (``nova.objects.fields.Architecture`` and ``HVType``): case is
ignored, "amd64" is "x86_64", "i386".."i586" are "i686". libvirt's "kvm" and "qemu" domain
types both run under the hypervisor libvirt calls "QEMU", so "kvm" counts as "qemu": an image
that asks for either runs on any QEMU host, accelerated or not. Debian's "arm64" is
"aarch64".

An image that asks for nothing passes everywhere; one that asks for a property the host
does not report is rejected, as in Nova ("nothing advertised").
"""

from __future__ import annotations

import logging
from typing import Final

from kubenova.scheduler.filters.base import PASS, BaseHostFilter, FilterContext, FilterResult
from kubenova.scheduler.host_state import HostState, RequestSpec

LOG = logging.getLogger(__name__)

MISMATCH: Final = FilterResult.reject("image properties")

_ARCH_ALIASES: Final = {
    "i386": "i686",
    "i486": "i686",
    "i586": "i686",
    "x86_32": "i686",
    "amd64": "x86_64",
    "arm64": "aarch64",
}
_HV_TYPE_ALIASES: Final = {"kvm": "qemu", "xapi": "xen"}


def canonical_architecture(name: str | None) -> str | None:
    """``name`` as Nova spells architectures, or None."""
    if not name:
        return None
    lowered = name.lower()
    return _ARCH_ALIASES.get(lowered, lowered)


def canonical_hypervisor_type(name: str | None) -> str | None:
    """``name`` as Nova spells hypervisor types, with "kvm" folded into "qemu", or None."""
    if not name:
        return None
    lowered = name.lower()
    return _HV_TYPE_ALIASES.get(lowered, lowered)


class ImagePropertiesFilter(BaseHostFilter):
    """Reject a host whose architecture or hypervisor type the image cannot run on
    ("image properties")."""

    name = "ImagePropertiesFilter"

    def host_passes(
        self, host_state: HostState, spec: RequestSpec, context: FilterContext
    ) -> FilterResult:
        del context
        arch = canonical_architecture(spec.image_architecture)
        if arch is not None and arch != canonical_architecture(host_state.cpu_arch):
            LOG.debug(
                "%s is %s, the image wants %s",
                host_state.host,
                host_state.cpu_arch,
                spec.image_architecture,
            )
            return MISMATCH
        hv_type = canonical_hypervisor_type(spec.image_hypervisor_type)
        if hv_type is not None and hv_type not in (
            canonical_hypervisor_type(host_state.hypervisor_type),
            canonical_hypervisor_type(host_state.virt_type),
        ):
            LOG.debug(
                "%s runs %s/%s, the image wants %s",
                host_state.host,
                host_state.hypervisor_type,
                host_state.virt_type,
                spec.image_hypervisor_type,
            )
            return MISMATCH
        return PASS
