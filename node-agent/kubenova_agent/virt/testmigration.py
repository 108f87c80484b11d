"""Simulated resize, cold migration and live migration for the TestDriver.

The same contract as the libvirt driver's (``virt.migration``), with nothing copied: the
simulated files are records in each driver (``SimulatedFiles``), and a host's agent may run in
another process, whose ``test:///default`` is another in-memory hypervisor. So a move never
reaches into the destination's hypervisor from the source; each side does its own half:

- Cold migration: the source powers off and sets its files' record aside; the destination's
  ``finish_migration`` defines the domain from the instance spec. In one process the two
  hosts share one domain per uuid: the destination then takes over the source's shut-off
  domain (defines it again with its own host), and a revert gives it back.
- Live migration: ``live_migration`` simulates the job (progress reports, an abort, a stall)
  and, once it completes, the domain leaves the source; the destination's
  ``post_live_migration_at_destination`` defines and starts it there. libvirt says nothing of
  the downtime of a migration that never ran, so ``downtime_ms`` is None.

Failures to simulate: :meth:`SimulatedMigration.simulate_migration_stall` makes an instance's
live migration stop making progress (so it is aborted after the progress timeout), and a
target that is this very host fails as on real hosts.
"""

from __future__ import annotations

import abc
import dataclasses
import threading
import time
from typing import Any

from kubenova_agent import exceptions
from kubenova_agent.virt import driver, migration
from kubenova_agent.virt.libvirt import base, domain_xml, power

#: How long a simulated live migration takes, and how often it reports progress.
SIMULATED_MIGRATION_S = 0.3
_SIMULATED_STEPS = 3
#: The simulated amount of data a live migration copies.
_SIMULATED_BYTES = 3 * 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class _SetAside:
    files: object  # the driver's SimulatedFiles record, or None
    mac: str | None


class SimulatedMigration(base.BaseLibvirtDriver):
    """The simulated migration methods; see the module docstring."""

    _files: dict[str, Any]

    def __init__(self, *, uri: str, hostname: str, network: str) -> None:
        super().__init__(uri=uri, hostname=hostname, network=network)
        self._set_aside: dict[str, _SetAside] = {}
        self._incoming: dict[str, object] = {}
        self._stalled: set[str] = set()

    @abc.abstractmethod
    def _simulate(self, instance: driver.InstanceSpec) -> object:
        """The record of the files a real host would make for ``instance``."""

    @abc.abstractmethod
    def _paths(self, instance_uuid: str) -> domain_xml.DomainFiles:
        """Where the instance's files would be."""

    def simulate_migration_stall(self, instance_uuid: str, stalls: bool = True) -> None:
        """Make the instance's live migrations (from this host) stop making progress."""
        driver.validate_uuid(instance_uuid)
        if stalls:
            self._stalled.add(instance_uuid)
        else:
            self._stalled.discard(instance_uuid)

    def forget_migration(self, instance_uuid: str) -> None:
        """Drop what a migration of the instance set aside or prepared here (its destroy)."""
        self._set_aside.pop(instance_uuid, None)
        self._incoming.pop(instance_uuid, None)
        self._stalled.discard(instance_uuid)

    # -- resize and cold migration ---------------------------------------------------------

    def migrate_disk_and_power_off(
        self, instance_uuid: str, target: migration.MigrationTarget | None, timeout_s: float
    ) -> None:
        with self._instance_lock(instance_uuid):
            if target is not None and target.host == self.hostname:
                raise exceptions.MigrationFailed(instance_uuid, f"{target.host} is this host")
            domain = self._lookup(instance_uuid, cached=False)
            if domain is None:
                raise exceptions.InstanceNotFound(instance_uuid)
            with self._not_found_as(instance_uuid):
                power.power_off(domain, timeout_s, self._request_shutdown)
                mac = domain_xml.interface_mac(domain.xml_desc())
            if instance_uuid not in self._set_aside:
                self._set_aside[instance_uuid] = _SetAside(self._files.get(instance_uuid), mac)

    def finish_migration(
        self, instance: driver.InstanceSpec, *, same_host: bool, power_on: bool
    ) -> None:
        uuid = instance.uuid
        with self._instance_lock(uuid):
            existing = self._connection.lookup_by_uuid(uuid)
            mac = None
            if existing is not None:
                ours = self._is_ours(existing, uuid)
                if existing.is_active():
                    if ours:
                        return
                    raise exceptions.MigrationFailed(uuid, "its guest still runs on its source")
                mac = domain_xml.interface_mac(existing.xml_desc())
            aside = self._set_aside.get(uuid)
            old = aside.files if same_host and aside is not None else None
            self._files[uuid] = self._grown(instance, old)
            domain = self._define(instance, self._paths(uuid), mac=mac)
            if power_on:
                self._start(domain)
            self._ownership.remember(uuid, domain.runtime_id, True)

    def _grown(self, instance: driver.InstanceSpec, old: object) -> object:
        new = self._simulate(instance)
        old_gib = getattr(old, "disk_gib", 0)
        if old_gib > instance.disk_gib:
            return dataclasses.replace(new, disk_gib=old_gib)  # type: ignore[type-var]
        return new

    def confirm_migration(self, instance_uuid: str, *, same_host: bool) -> None:
        with self._instance_lock(instance_uuid):
            if not same_host:
                self._undefine_stopped(instance_uuid)
                self._files.pop(instance_uuid, None)
            self._set_aside.pop(instance_uuid, None)

    def revert_migration_at_destination(self, instance_uuid: str, *, same_host: bool) -> None:
        with self._instance_lock(instance_uuid):
            domain = self._lookup(instance_uuid, cached=False)
            if domain is not None:
                with self._gone_is_fine():
                    domain.destroy()
                    if not same_host:
                        domain.undefine(self.undefine_flags)
            self._files.pop(instance_uuid, None)

    def finish_revert_migration(self, instance: driver.InstanceSpec, *, power_on: bool) -> None:
        uuid = instance.uuid
        with self._instance_lock(uuid):
            aside = self._set_aside.pop(uuid, None)
            existing = self._connection.lookup_by_uuid(uuid)
            if aside is None:
                if existing is not None and self._is_ours(existing, uuid):
                    if power_on and not existing.is_active():
                        self._start(existing)
                    return
                raise exceptions.MigrationFailed(uuid, "nothing was set aside to revert to")
            if existing is not None and existing.is_active():
                existing.destroy()
            self._files[uuid] = aside.files if aside.files is not None else self._simulate(instance)
            domain = self._define(instance, self._paths(uuid), mac=aside.mac)
            if power_on:
                self._start(domain)
            self._ownership.remember(uuid, domain.runtime_id, True)

    # -- live migration --------------------------------------------------------------------

    def pre_live_migration(self, instance: driver.InstanceSpec) -> None:
        with self._instance_lock(instance.uuid):
            self._incoming[instance.uuid] = self._simulate(instance)

    def live_migration(
        self,
        instance_uuid: str,
        target: migration.MigrationTarget,
        *,
        on_progress: migration.ProgressCallback,
        progress_timeout_s: float,
        abort: threading.Event,
    ) -> migration.MigrationResult:
        with self._instance_lock(instance_uuid):
            if target.host == self.hostname:
                raise exceptions.MigrationFailed(instance_uuid, f"{target.host} is this host")
            domain = self._require(instance_uuid)
            with self._not_found_as(instance_uuid):
                if not domain.is_active():
                    raise exceptions.InstanceInvalidState(instance_uuid, "live-migrate", "stopped")
            started = time.monotonic()
            self._simulate_job(instance_uuid, on_progress, progress_timeout_s, abort, started)
            with self._gone_is_fine():
                domain.destroy()
                domain.undefine(self.undefine_flags)
            self._ownership.forget(instance_uuid)
            self._files.pop(instance_uuid, None)
            return migration.MigrationResult(total_s=time.monotonic() - started, downtime_ms=None)

    def _simulate_job(
        self,
        instance_uuid: str,
        on_progress: migration.ProgressCallback,
        progress_timeout_s: float,
        abort: threading.Event,
        started: float,
    ) -> None:
        step = 0
        last_gain = started
        while step < _SIMULATED_STEPS:
            if abort.wait(SIMULATED_MIGRATION_S / _SIMULATED_STEPS):
                raise exceptions.MigrationAborted(
                    instance_uuid, "aborted on request", timed_out=False
                )
            now = time.monotonic()
            if instance_uuid in self._stalled:
                if now - last_gain > progress_timeout_s:
                    raise exceptions.MigrationAborted(
                        instance_uuid,
                        "aborted: no progress within the progress timeout",
                        timed_out=True,
                    )
            else:
                step, last_gain = step + 1, now
            processed = _SIMULATED_BYTES * step // _SIMULATED_STEPS
            on_progress(
                migration.MigrationProgress(
                    elapsed_s=now - started,
                    data_total=_SIMULATED_BYTES,
                    data_processed=processed,
                    data_remaining=_SIMULATED_BYTES - processed,
                )
            )

    def post_live_migration_at_destination(self, instance: driver.InstanceSpec) -> None:
        uuid = instance.uuid
        with self._instance_lock(uuid):
            existing = self._connection.lookup_by_uuid(uuid)
            if existing is not None and self._is_ours(existing, uuid):
                return
            if existing is not None and existing.is_active():
                raise exceptions.MigrationFailed(uuid, "its guest still runs on its source")
            self._files[uuid] = self._incoming.pop(uuid, None) or self._simulate(instance)
            domain = self._define(instance, self._paths(uuid), mac=None)
            self._start(domain)
            self._ownership.remember(uuid, domain.runtime_id, True)

    def post_live_migration_at_source(self, instance_uuid: str) -> None:
        with self._instance_lock(instance_uuid):
            self._undefine_stopped(instance_uuid)
            self._files.pop(instance_uuid, None)

    def rollback_live_migration_at_destination(self, instance_uuid: str) -> None:
        with self._instance_lock(instance_uuid):
            self._undefine_stopped(instance_uuid)
            self._incoming.pop(instance_uuid, None)
            self._files.pop(instance_uuid, None)

    def _undefine_stopped(self, instance_uuid: str) -> None:
        domain = self._lookup(instance_uuid, cached=False)
        if domain is None:
            return
        with self._gone_is_fine():
            if domain.is_active():
                raise exceptions.MigrationFailed(
                    instance_uuid, f"the guest runs on {self.hostname}: not removing it"
                )
            domain.undefine(self.undefine_flags)
        self._ownership.forget(instance_uuid)
