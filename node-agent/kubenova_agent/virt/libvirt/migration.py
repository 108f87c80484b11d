"""Live migration on real libvirt hosts (the libvirt driver's half of ``virt.migration``).

How a guest moves, without shared storage (../shared/FACTS.md, "Live migration between two
libvirt daemons"):

- The destination's agent makes the instance's directory in its own instances path, with an
  empty standalone qcow2 of the flavor's size, the config drive (read-only disks are not
  copied) and the console log (``pre_live_migration``).
- The source's agent opens the destination's libvirt (``MigrationTarget.uri``) and calls
  ``virDomainMigrate3`` with ``VIR_MIGRATE_LIVE | PERSIST_DEST | UNDEFINE_SOURCE |
  NON_SHARED_DISK``: QEMU copies the root disk (``vda`` only) over NBD while the memory is
  copied, pauses the guest for the switch-over and resumes it on the destination. The XML the
  destination defines names its own paths and its own host (``migration_xml``).
- Managed, not peer-to-peer: the source's agent drives libvirt's protocol over its two
  connections, so the URI is the one the agents use and no daemon needs to reach (or hold
  credentials for) another daemon. libvirt cancels a migration whose client went away before
  it finished (its connection close callbacks), so an agent that dies early in a migration
  leaves the guest on the source; the agent's restart has to find out where it is.
- Progress comes from the job statistics every second; ``virDomainAbortJob`` aborts on request
  or when the data remaining has not gone down for the progress timeout. libvirt's own figures
  (total time, downtime) are read from the completed job on the destination.

Where the destination keeps instances: each host that can be a destination (it has a
migration URI) keeps a storage pool ``kubenova-instances-<host>`` on its instances path. A
source reads the path from the destination's libvirt, so no other channel has to carry it; the
cold migration (``resize``) uploads disks into it.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import pathlib
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

from kubenova_agent import configdrive, exceptions, imagecache
from kubenova_agent.virt import driver, migration
from kubenova_agent.virt.libvirt import base, connection, domain_xml, migration_xml, storage
from kubenova_agent.virt.power_state import LibvirtDomainState

LOG = logging.getLogger(__name__)

#: How often a live migration's progress is read and reported.
PROGRESS_INTERVAL_S = 1.0
#: How often the watch of a live migration looks for an abort (and tries again an abort
#: libvirt refused because its job had not started yet).
ABORT_RETRY_S = 0.1
#: The disk a live migration copies: the root disk (the config drive is made anew).
_COPIED_DISKS = ["vda"]


def instances_pool(host: str) -> str:
    """The storage pool by which a host publishes its instances directory to other hosts."""
    return f"kubenova-instances-{host}"


class LibvirtMigrationBase(base.BaseLibvirtDriver):
    """What the live and cold migrations of the libvirt driver share: where files are, and
    the destination's connection."""

    instances_path: pathlib.Path
    image_cache: imagecache.ImageCache
    migration_uri: str | None
    _qemu_img: str

    @abc.abstractmethod
    def _instance_dir(self, instance_uuid: str) -> pathlib.Path:
        """The instance's directory on this host."""

    @abc.abstractmethod
    def _files(self, instance_uuid: str, suffix: str = "") -> domain_xml.DomainFiles:
        """The instance's files on this host."""

    def _publish_instances_path(self) -> None:
        """Let other hosts find this host's instances directory (see the module docstring)."""
        if self.migration_uri is None:
            return
        try:
            storage.ensure_directory_pool(
                self._connection, instances_pool(self.hostname), str(self.instances_path)
            )
        except exceptions.HypervisorError as exc:
            # The host still runs guests; it only cannot receive any.
            LOG.warning(
                "cannot publish %s as storage pool %s: this host cannot be a migration's "
                "destination: %s",
                self.instances_path,
                instances_pool(self.hostname),
                exc,
            )

    @contextlib.contextmanager
    def _target(
        self, instance_uuid: str, target: migration.MigrationTarget
    ) -> Iterator[tuple[connection.Connection, str]]:
        """The destination's connection and its directory for the instance."""
        if target.host == self.hostname:
            raise exceptions.MigrationFailed(instance_uuid, f"{target.host} is this host")
        remote = connection.Connection(target.uri)
        try:
            try:
                root = storage.pool_path(remote, instances_pool(target.host))
            except exceptions.HypervisorError as exc:
                raise exceptions.MigrationFailed(
                    instance_uuid, f"cannot reach host {target.host} at {target.uri}: {exc}"
                ) from exc
            if root is None:
                raise exceptions.MigrationFailed(
                    instance_uuid,
                    f"host {target.host} publishes no instances directory at {target.uri} "
                    f"(storage pool {instances_pool(target.host)!r}): is its agent running "
                    "with a migration URI?",
                )
            yield remote, f"{root.rstrip('/')}/{driver.validate_uuid(instance_uuid)}"
        finally:
            remote.close()

    def _new_instance_dir(self, instance_uuid: str) -> pathlib.Path:
        directory = self._instance_dir(instance_uuid)
        directory.mkdir(mode=0o711, parents=True, exist_ok=True)
        directory.chmod(0o711)  # mkdir's mode is filtered by the umask
        return directory

    def _write_config_drive(
        self, instance: driver.InstanceSpec, files: domain_xml.DomainFiles
    ) -> None:
        configdrive.build(files.config_drive, instance)
        os.chmod(files.config_drive, 0o600)
        # The serial console's log, which virtlogd appends to; its unix socket
        # (files.console_socket) is not made here: libvirt binds it when the incoming QEMU
        # starts, in this directory, as the rewritten XML says (migration_xml).
        fd = os.open(files.console_log, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)

    def _undefine_stopped(self, instance_uuid: str, what: str) -> None:
        """Undefine the instance's domain here unless its guest runs (then raise)."""
        domain = self._lookup(instance_uuid, cached=False)
        if domain is None:
            return
        with self._gone_is_fine():
            if domain.is_active():
                raise exceptions.MigrationFailed(
                    instance_uuid, f"the guest runs on {self.hostname}: not removing it ({what})"
                )
            domain.undefine(self.undefine_flags)
        self._ownership.forget(instance_uuid)

    @staticmethod
    def _remove_tree(path: pathlib.Path) -> None:
        shutil.rmtree(path, ignore_errors=True)


class LibvirtLiveMigration(LibvirtMigrationBase):
    """Live migration; see the module docstring."""

    def pre_live_migration(self, instance: driver.InstanceSpec) -> None:
        with self._instance_lock(instance.uuid):
            domain = self._lookup(instance.uuid, cached=False)
            if domain is not None and domain.is_active():
                LOG.info("instance %s: already running here; nothing to prepare", instance.uuid)
                return
            directory = self._new_instance_dir(instance.uuid)
            files = self._files(instance.uuid)
            command = [self._qemu_img, "create", "-q", "-f", "qcow2", files.disk,
                       f"{instance.disk_gib}G"]  # fmt: skip
            try:
                subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
                os.chmod(files.disk, 0o600)
                self._write_config_drive(instance, files)
            except (OSError, subprocess.SubprocessError) as exc:
                self._remove_tree(directory)
                raise exceptions.MigrationFailed(instance.uuid, f"cannot prepare: {exc}") from exc
        LOG.info("instance %s: ready to receive a live migration", instance.uuid)

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
            domain = self._require(instance_uuid)
            with self._not_found_as(instance_uuid):
                state = domain.state()
                if not domain.is_active():
                    raise exceptions.InstanceInvalidState(instance_uuid, "live-migrate", "stopped")
                xml = domain.xml_desc(migratable=True)
            with self._target(instance_uuid, target) as (remote, directory):
                params = {
                    connection.MIGRATE_PARAM_DEST_XML: migration_xml.destination_xml(
                        xml,
                        source_dir=str(self._instance_dir(instance_uuid)),
                        destination_dir=directory,
                        host=target.host,
                    ),
                    connection.MIGRATE_PARAM_MIGRATE_DISKS: _COPIED_DISKS,
                }
                LOG.info("instance %s: live migration to %s begins", instance_uuid, target.host)
                job = _MigrationJob(domain, remote, params)
                outcome = job.watch(on_progress, progress_timeout_s, abort)
                if job.error is not None:
                    self._keep_running_here(domain, state)
                    raise _failure(instance_uuid, job.error, outcome)
                self._ownership.forget(instance_uuid)
                result = _completed_figures(remote, instance_uuid, job.wall_s)
        LOG.info(
            "instance %s: live-migrated to %s in %.2f s (downtime %s ms)",
            instance_uuid,
            target.host,
            result.total_s,
            result.downtime_ms,
        )
        return result

    def post_live_migration_at_destination(self, instance: driver.InstanceSpec) -> None:
        with self._instance_lock(instance.uuid):
            if self._lookup(instance.uuid, cached=False) is None:
                raise exceptions.InstanceNotFound(instance.uuid)
        LOG.info("instance %s: live-migrated here", instance.uuid)

    def post_live_migration_at_source(self, instance_uuid: str) -> None:
        driver.validate_uuid(instance_uuid)
        with self._instance_lock(instance_uuid):
            self._undefine_stopped(instance_uuid, "post live migration")
            self._remove_tree(self._instance_dir(instance_uuid))
        LOG.info("instance %s: left this host; its files are removed", instance_uuid)

    def rollback_live_migration_at_destination(self, instance_uuid: str) -> None:
        driver.validate_uuid(instance_uuid)
        with self._instance_lock(instance_uuid):
            self._undefine_stopped(instance_uuid, "live migration rollback")
            self._remove_tree(self._instance_dir(instance_uuid))
        LOG.info("instance %s: live migration here rolled back", instance_uuid)

    def _keep_running_here(self, domain: connection.Domain, before: int) -> None:
        # libvirt resumes the source's guest when a migration fails; this makes sure of it
        # for a guest that ran before (a paused one stays paused).
        with contextlib.suppress(exceptions.HypervisorError):
            if before == LibvirtDomainState.RUNNING and domain.state() == LibvirtDomainState.PAUSED:
                domain.unpause()


class _MigrationJob:
    """One ``virDomainMigrate3`` call on a thread of its own, watched from the caller's."""

    def __init__(
        self, domain: connection.Domain, remote: connection.Connection, params: dict[str, Any]
    ) -> None:
        self.domain = domain
        self.error: BaseException | None = None
        self.wall_s = 0.0
        self._done = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(
            target=self._run, args=(remote, params), name="live-migration", daemon=True
        )
        self._thread.start()

    def _run(self, remote: connection.Connection, params: dict[str, Any]) -> None:
        try:
            self.domain.migrate(remote, params, connection.MIGRATE_LIVE_NON_SHARED)
        except BaseException as exc:  # handed to the watching thread
            self.error = exc
        finally:
            self.wall_s = time.monotonic() - self._started
            self._done.set()

    def watch(
        self,
        on_progress: migration.ProgressCallback,
        progress_timeout_s: float,
        abort: threading.Event,
    ) -> str | None:
        """Report progress until the migration ends; abort it when asked or when it stalls.
        Returns why it was aborted ("asked", "stalled") or None."""
        aborting: str | None = None
        aborted = False
        least_remaining: int | None = None
        last_gain = time.monotonic()
        next_figures = last_gain + PROGRESS_INTERVAL_S
        # Woken by the job's end at once (its figures are the move's), else every
        # ABORT_RETRY_S to see an abort asked for.
        while not self._done.wait(ABORT_RETRY_S):
            if aborting is None and abort.is_set():
                aborting = "asked"
            if aborting is not None:
                # An abort asked before libvirt has a job to abort is tried again.
                aborted = aborted or self._abort()
                continue
            if time.monotonic() < next_figures:
                continue
            next_figures = time.monotonic() + PROGRESS_INTERVAL_S
            progress = self._progress()
            if progress is None:
                continue
            if least_remaining is None or progress.data_remaining < least_remaining:
                least_remaining, last_gain = progress.data_remaining, time.monotonic()
            elif time.monotonic() - last_gain > progress_timeout_s:
                aborting = "stalled"
                aborted = self._abort()
            try:
                on_progress(progress)
            except Exception:
                LOG.exception("live migration progress callback failed")
        self._thread.join()
        return aborting

    def _progress(self) -> migration.MigrationProgress | None:
        try:
            stats = self.domain.job_stats()
        except exceptions.HypervisorError:
            return None  # the job ended between the check and the call
        if not stats.get("type"):
            return None
        return migration.MigrationProgress(
            elapsed_s=float(stats.get("time_elapsed", 0)) / 1000.0,
            data_total=int(stats.get("data_total", 0)),
            data_processed=int(stats.get("data_processed", 0)),
            data_remaining=int(stats.get("data_remaining", 0)),
        )

    def _abort(self) -> bool:
        try:
            self.domain.abort_job()
        except exceptions.HypervisorError as exc:
            LOG.info("live migration of %s not aborted (yet): %s", self.domain.uuid, exc)
            return False
        return True


def _failure(
    instance_uuid: str, error: BaseException, aborted: str | None
) -> exceptions.MigrationError:
    if aborted == "asked":
        return exceptions.MigrationAborted(instance_uuid, "aborted on request", timed_out=False)
    if aborted == "stalled":
        return exceptions.MigrationAborted(
            instance_uuid, "aborted: no progress within the progress timeout", timed_out=True
        )
    return exceptions.MigrationFailed(instance_uuid, str(error) or type(error).__name__)


def _completed_figures(
    remote: connection.Connection, instance_uuid: str, wall_s: float
) -> migration.MigrationResult:
    """libvirt's completed-job figures on the destination (the wall time when it has none)."""
    try:
        arrived = remote.lookup_by_uuid(instance_uuid)
        stats = arrived.job_stats(completed=True) if arrived is not None else {}
    except exceptions.HypervisorError as exc:
        LOG.warning("instance %s: no completed job statistics: %s", instance_uuid, exc)
        stats = {}
    elapsed_ms = stats.get("time_elapsed")
    downtime = stats.get("downtime")
    return migration.MigrationResult(
        total_s=float(elapsed_ms) / 1000.0 if elapsed_ms is not None else wall_s,
        downtime_ms=int(downtime) if downtime is not None else None,
    )
