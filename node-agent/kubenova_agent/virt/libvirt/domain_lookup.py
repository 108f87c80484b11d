"""Which libvirt domains a driver manages, and finding them.

A driver manages the domains whose XML carries Kubenova's metadata element (namespace
:data:`~kubenova_agent.virt.libvirt.domain_xml.NAMESPACE`, written by spawn) naming this
driver's host. Other domains on the same libvirt (made by hand, by another tool, or by a driver
for another host name: simulated hosts, a test run next to a real agent) are never listed,
stopped or undefined. The host is recorded in the domain rather than remembered by the driver
object, so a restarted agent finds its instances again. Reading that element is the costliest
part of a listing, so the answer is kept per domain uuid (see ``ownership``) for the calls that
only read; destroy and the cleanup of a failed spawn read it again before they act.

:class:`DomainLookup` is a part of
:class:`~kubenova_agent.virt.libvirt.base.BaseLibvirtDriver`, which sets the attributes it
declares.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from kubenova_agent import exceptions
from kubenova_agent.virt import values
from kubenova_agent.virt.libvirt import connection, domain_xml, ownership


class DomainLookup:
    """Finds this driver's domains on its libvirt connection; see the module docstring."""

    #: The host name a domain's metadata must name for the domain to be this driver's.
    hostname: str
    _connection: connection.Connection
    _ownership: ownership.OwnershipCache

    def _owns(self, metadata: domain_xml.InstanceMetadata) -> bool:
        """Whether a domain with Kubenova's metadata belongs to this driver."""
        return metadata.host == self.hostname

    def _is_ours(self, domain: connection.Domain, domain_uuid: str) -> bool:
        """Read the domain's metadata to tell whether it is ours, and remember the answer."""
        runtime_id = domain.runtime_id
        element = domain.metadata_element(domain_xml.NAMESPACE)
        metadata = domain_xml.parse_metadata(element) if element is not None else None
        owned = metadata is not None and self._owns(metadata)
        self._ownership.remember(domain_uuid, runtime_id, owned)
        return owned

    def _is_ours_cached(self, domain: connection.Domain, domain_uuid: str) -> bool:
        owned = self._ownership.get(domain_uuid, domain.runtime_id)
        return self._is_ours(domain, domain_uuid) if owned is None else owned

    def _owned_domains(self) -> list[tuple[str, connection.Domain]]:
        """This driver's domains as (uuid, domain), sorted by uuid."""
        seen: list[str] = []
        owned: list[tuple[str, connection.Domain]] = []
        for domain in self._connection.list_domains():
            with self._gone_is_fine():
                domain_uuid = domain.uuid
                seen.append(domain_uuid)
                if self._is_ours_cached(domain, domain_uuid):
                    owned.append((domain_uuid, domain))
        self._ownership.retain(seen)
        owned.sort(key=lambda pair: pair[0])
        return owned

    def _lookup(self, instance_uuid: str, *, cached: bool) -> connection.Domain | None:
        """The instance's domain if it exists and is this driver's.

        ``cached`` trusts a remembered answer about ownership (fine for reading); without it
        the metadata is read again, as before anything is destroyed.
        """
        domain = self._connection.lookup_by_uuid(instance_uuid)
        if domain is None:
            self._ownership.forget(instance_uuid)
            return None
        try:
            if cached:
                ours = self._is_ours_cached(domain, instance_uuid)
            else:
                ours = self._is_ours(domain, instance_uuid)
        except exceptions.HypervisorError as exc:
            if exc.code == connection.ERR_NO_DOMAIN:
                self._ownership.forget(instance_uuid)
                return None
            raise
        return domain if ours else None

    def _require(self, instance_uuid: str) -> connection.Domain:
        values.validate_uuid(instance_uuid)
        domain = self._lookup(instance_uuid, cached=True)
        if domain is None:
            raise exceptions.InstanceNotFound(instance_uuid)
        return domain

    @staticmethod
    @contextlib.contextmanager
    def _gone_is_fine() -> Iterator[None]:
        # A domain can vanish between our lookup and our next call (another thread or tool
        # deleted it); for destroy and for listing that is the wanted outcome.
        try:
            yield
        except exceptions.HypervisorError as exc:
            if exc.code != connection.ERR_NO_DOMAIN:
                raise

    @staticmethod
    @contextlib.contextmanager
    def _not_found_as(instance_uuid: str) -> Iterator[None]:
        try:
            yield
        except exceptions.HypervisorError as exc:
            if exc.code == connection.ERR_NO_DOMAIN:
                raise exceptions.InstanceNotFound(instance_uuid) from exc
            raise
