"""The virt driver's side of resize, cold migration and live migration.

:class:`MigrationDriver` is a part of the :class:`~kubenova_agent.virt.driver.ComputeDriver`
contract, kept in a module of its own. Its methods are Nova's, split by the host that runs
them, so that the conductor can call each on the right agent:

Resize and cold migration (a resize to another host is a cold migration with a new flavor)::

    source        migrate_disk_and_power_off  (guest off, disk set aside, copied to the target)
    destination   finish_migration            (the guest defined with the new flavor, started)
      then either
    source        confirm_migration           (what was set aside is dropped)
      or
    destination   revert_migration_at_destination
    source        finish_revert_migration     (the guest back as it was)

``target`` None and ``same_host`` True are a resize on the instance's own host: source and
destination are then the same driver, and one libvirt domain (the same uuid) is defined again.

Live migration (the guest keeps running; storage is not shared, so its disk is copied)::

    destination   pre_live_migration                  (empty disk, config drive)
    source        live_migration                      (the move; progress; abort)
      then either
    destination   post_live_migration_at_destination  (the guest is this host's)
    source        post_live_migration_at_source       (leftovers removed)
      or, when it failed or was aborted
    destination   rollback_live_migration_at_destination

Every method is idempotent: a message delivered again does no harm. They raise
:class:`~kubenova_agent.exceptions.InstanceNotFound` for an instance the driver should have and
does not, ``ValueError`` for a uuid not in canonical form, and
:class:`~kubenova_agent.exceptions.MigrationFailed` (or, from :meth:`live_migration`,
:class:`~kubenova_agent.exceptions.MigrationAborted`) for the rest.

The methods here raise ``NotImplementedError``, as the methods of Nova's base driver do, so
that a driver written for other purposes (a scripted test double) need not implement them; both
of Kubenova's drivers implement all of them, which a contract test checks.
"""

from __future__ import annotations

import abc
import dataclasses
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubenova_agent.virt.values import InstanceSpec


@dataclasses.dataclass(frozen=True)
class MigrationTarget:
    """The host an instance moves to."""

    #: The destination's host name (its agent's ``KUBENOVA_HOST``): the domain's new owner.
    host: str
    #: The destination hypervisor's libvirt URI as the source's agent reaches it: the
    #: destination's ``HostInfo.migration_uri``.
    uri: str


@dataclasses.dataclass(frozen=True)
class MigrationProgress:
    """How far a live migration is, as libvirt's job statistics say (bytes: memory and
    disks together)."""

    elapsed_s: float
    data_total: int
    data_processed: int
    data_remaining: int


@dataclasses.dataclass(frozen=True)
class MigrationResult:
    """libvirt's own figures for a completed live migration (its completed job statistics)."""

    #: From the start of the migration job to the guest running on the destination.
    total_s: float
    #: How long the guest was paused for the switch-over; None when libvirt does not say.
    downtime_ms: int | None


#: Called about once a second with a live migration's progress (on the migrating thread).
ProgressCallback = Callable[[MigrationProgress], None]


class MigrationDriver(abc.ABC):  # noqa: B024 - the methods are optional, as in Nova
    """Resize, cold and live migration; see the module docstring."""

    # -- resize and cold migration ---------------------------------------------------------

    def migrate_disk_and_power_off(
        self, instance_uuid: str, target: MigrationTarget | None, timeout_s: float
    ) -> None:
        """Source: power the guest off, set its disk aside, copy it to ``target``.

        The guest is asked to shut down (ACPI) and powered off after ``timeout_s`` (at once
        for 0), as :meth:`power_off` does. Its files are set aside so that
        :meth:`finish_revert_migration` can restore them, and its domain stays defined, shut
        off, until :meth:`confirm_migration`. When ``target`` is another host, the root disk
        is copied into the destination's instances directory over the destination's own
        libvirt connection (``target.uri``): nothing assumes the two hosts share a
        filesystem. ``target`` None is a resize on this host: the disk is copied beside the
        one set aside.

        Idempotent: a second call after the first completed copies again and changes nothing
        else.
        """
        raise NotImplementedError

    def finish_migration(self, instance: InstanceSpec, *, same_host: bool, power_on: bool) -> None:
        """Destination: define the guest with ``instance``'s (new) flavor on the migrated disk
        and start it when ``power_on``.

        The root disk is grown to ``instance.disk_gib`` (never shrunk: a smaller flavor keeps
        the disk as it is), a new config drive is written from ``instance``, and the NIC keeps
        its MAC address, as in a rebuild. On another host than the source, the image the disk
        is an overlay on is fetched into this host's image cache first.

        Idempotent: a guest already defined and running here with that flavor is left as it
        is.
        """
        raise NotImplementedError

    def confirm_migration(self, instance_uuid: str, *, same_host: bool) -> None:
        """Source: drop what was set aside for a revert: on another host, the old domain and
        all of its files; on the same host, the disk set aside. Idempotent."""
        raise NotImplementedError

    def revert_migration_at_destination(self, instance_uuid: str, *, same_host: bool) -> None:
        """Destination: power off and remove the resized guest and its files. On the same
        host only the new domain and disk go: what was set aside stays for
        :meth:`finish_revert_migration`. Idempotent."""
        raise NotImplementedError

    def finish_revert_migration(self, instance: InstanceSpec, *, power_on: bool) -> None:
        """Source: the guest back as it was, with ``instance``'s (old) flavor on the disk set
        aside, and the same MAC address; started when ``power_on``. Idempotent."""
        raise NotImplementedError

    # -- live migration --------------------------------------------------------------------

    def pre_live_migration(self, instance: InstanceSpec) -> None:
        """Destination: create what the incoming guest needs: its directory, an empty root
        disk of ``instance.disk_gib`` for the source to copy into, the config drive (a
        read-only disk is not copied) and the console log. Idempotent."""
        raise NotImplementedError

    def live_migration(
        self,
        instance_uuid: str,
        target: MigrationTarget,
        *,
        on_progress: ProgressCallback,
        progress_timeout_s: float,
        abort: threading.Event,
    ) -> MigrationResult:
        """Source: move the running (or paused) guest to ``target`` without stopping it.

        Its disk is copied with the memory (storage is not shared); the domain is defined on
        the destination, owned by ``target.host``, with the destination's paths, and undefined
        here. ``on_progress`` is called about once a second. The migration is aborted when
        ``abort`` is set, or when the data remaining has not gone down for
        ``progress_timeout_s`` seconds: :class:`~kubenova_agent.exceptions.MigrationAborted`
        is raised, and the guest runs on here as before, as it does after
        :class:`~kubenova_agent.exceptions.MigrationFailed`. Returns libvirt's measured total
        time and downtime.

        Not idempotent: a migration already completed raises InstanceNotFound here (the
        domain has left); the caller learns where the guest is from the destination.
        """
        raise NotImplementedError

    def post_live_migration_at_destination(self, instance: InstanceSpec) -> None:
        """Destination, after success: make the guest this host's for good (defined
        persistently, owned by this host, known to the driver). Idempotent."""
        raise NotImplementedError

    def post_live_migration_at_source(self, instance_uuid: str) -> None:
        """Source, after success: remove what is left here: a domain definition that was not
        undefined, and the instance's files. A guest that runs here is left alone and
        MigrationFailed is raised: the migration did not end as the caller believes.
        Idempotent."""
        raise NotImplementedError

    def rollback_live_migration_at_destination(self, instance_uuid: str) -> None:
        """Destination, after a failure or an abort: remove what :meth:`pre_live_migration`
        made and any half-defined domain. A guest that runs here is left alone and
        MigrationFailed is raised: it moved after all. Idempotent."""
        raise NotImplementedError
