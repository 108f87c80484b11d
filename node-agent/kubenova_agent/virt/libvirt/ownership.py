"""Remembers which domains carry this driver's Kubenova metadata, so it is not read every time.

Whether a domain is ours is read from its ``<kubenova:instance>`` metadata element: a libvirt
call (an RPC to libvirtd on a real host) and an XML parse. The periodic power-state sync and the
heartbeat ask it about every domain on the host every few seconds, although the answer cannot
change while a definition lives: spawn writes the metadata when it defines the domain, and the
only rewrite, a rebuild's, names the same host. So the answer is kept per domain uuid, together
with the domain's runtime id (libvirt's ``virDomainGetID``, read from the handle without asking
the hypervisor), and read again only when it may have changed:

- the driver itself defines or undefines the domain (spawn, rebuild, destroy, cleanup after a
  failed spawn): it records or forgets the answer there;
- the uuid drops out of a listing of the host's domains: that definition is gone;
- the runtime id differs: the domain was started or stopped since (libvirt gives every start a
  new id), which is also what a domain redefined behind the driver's back with the same uuid
  looks like once it runs;
- the answer is older than ``max_age_s``: what the runtime id cannot show (a shut-off domain
  undefined and defined again by hand between two listings, or an edited metadata element) is
  noticed within that time.

Destructive calls (destroy, rebuild, cleanup) never rely on this cache: they read the metadata again
before they touch a domain, so a stale answer can at worst make a sync report about, or leave
out, one domain for up to ``max_age_s``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection

#: How long an answer is trusted before the metadata is read again.
DEFAULT_MAX_AGE_S = 60.0


class OwnershipCache:
    """Thread-safe map of domain uuid to "is this driver's", with an age limit."""

    def __init__(
        self,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_age_s = max_age_s
        self._clock = clock
        # uuid -> (owned, runtime id when read, when read)
        self._entries: dict[str, tuple[bool, int, float]] = {}
        self._lock = threading.Lock()

    def get(self, domain_uuid: str, runtime_id: int) -> bool | None:
        """The remembered answer, or None when there is none or it may be out of date."""
        with self._lock:
            entry = self._entries.get(domain_uuid)
            if entry is None:
                return None
            owned, recorded_id, recorded_at = entry
            if recorded_id != runtime_id or self._clock() - recorded_at >= self.max_age_s:
                del self._entries[domain_uuid]
                return None
            return owned

    def remember(self, domain_uuid: str, runtime_id: int, owned: bool) -> None:
        with self._lock:
            self._entries[domain_uuid] = (owned, runtime_id, self._clock())

    def forget(self, domain_uuid: str) -> None:
        """Drop the answer about a domain that was just undefined or found gone."""
        with self._lock:
            self._entries.pop(domain_uuid, None)

    def retain(self, domain_uuids: Collection[str]) -> None:
        """Forget every domain not in ``domain_uuids``, the full list of domains libvirt has."""
        keep = set(domain_uuids)
        with self._lock:
            for gone in self._entries.keys() - keep:
                del self._entries[gone]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
