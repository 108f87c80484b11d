"""Resize and cold migration on real libvirt hosts (the libvirt driver's half of
``virt.migration``), after Nova's libvirt driver.

Files, per instance, beside ``<instances_path>/<uuid>/``::

    <uuid>_resize/          the instance's directory set aside by migrate_disk_and_power_off,
                            for a revert: disk, config drive, console log, and
      migration.json        the NIC's MAC address, kept for the domain defined again

On the same host, the disk is copied from ``<uuid>_resize/`` into a new ``<uuid>/``, which the
resized guest boots from. To another host, it is uploaded into the destination's
``<uuid>/`` through the destination's libvirt (a storage volume upload into the directory the
destination publishes, see ``migration``), with ``migration.json``: the hosts need share
nothing but their libvirt connections. The disk is a qcow2 overlay; the destination fetches
the image it is backed by into its own image cache (verified by its sha256) and points the
overlay at it there.

The source's domain stays defined, shut off, until the resize is confirmed or reverted (on the
same host it is the one domain, defined again with the new flavor). ``destroy`` removes
``<uuid>_resize/`` with the rest, so an instance deleted while its resize waits for
confirmation leaves nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import shutil
import subprocess

from kubenova_agent import exceptions
from kubenova_agent.virt import driver, migration
from kubenova_agent.virt.libvirt import disk, domain_xml, power, storage
from kubenova_agent.virt.libvirt import migration as libvirt_migration

LOG = logging.getLogger(__name__)

_RESIZE_SUFFIX = "_resize"
_MIGRATION_RECORD = "migration.json"


class LibvirtResize(libvirt_migration.LibvirtMigrationBase):
    """Resize and cold migration; see the module docstring."""

    def _resize_dir(self, instance_uuid: str) -> pathlib.Path:
        return self.instances_path / f"{driver.validate_uuid(instance_uuid)}{_RESIZE_SUFFIX}"

    def migrate_disk_and_power_off(
        self, instance_uuid: str, target: migration.MigrationTarget | None, timeout_s: float
    ) -> None:
        with self._instance_lock(instance_uuid):
            domain = self._lookup(instance_uuid, cached=False)
            if domain is None:
                raise exceptions.InstanceNotFound(instance_uuid)
            with contextlib.ExitStack() as stack:
                # The destination is checked before the guest is touched.
                remote = (
                    None
                    if target is None
                    else stack.enter_context(self._target(instance_uuid, target))
                )
                with self._not_found_as(instance_uuid):
                    clean = power.power_off(domain, timeout_s, self._request_shutdown)
                    mac = domain_xml.interface_mac(domain.xml_desc())
                aside = self._set_aside(instance_uuid, mac)
                try:
                    if remote is None:
                        self._copy_here(instance_uuid, aside)
                    else:
                        destination, directory = remote
                        for name in (_MIGRATION_RECORD, "disk"):
                            storage.upload(
                                destination,
                                str(aside / name),
                                directory,
                                name,
                                pool=f"kubenova-migrate-{instance_uuid}",
                            )
                except (OSError, exceptions.HypervisorError) as exc:
                    raise exceptions.MigrationFailed(
                        instance_uuid, f"cannot copy the disk: {exc}"
                    ) from exc
        LOG.info(
            "instance %s: powered off (%s), disk set aside and copied to %s",
            instance_uuid,
            "clean" if clean else "forced",
            "this host" if target is None else target.host,
        )

    def _set_aside(self, instance_uuid: str, mac: str | None) -> pathlib.Path:
        current, aside = self._instance_dir(instance_uuid), self._resize_dir(instance_uuid)
        if not aside.exists():
            if not current.exists():
                raise exceptions.MigrationFailed(instance_uuid, f"{current} is missing")
            _write_record(current, mac)
            os.rename(current, aside)
        return aside

    def _copy_here(self, instance_uuid: str, aside: pathlib.Path) -> None:
        directory = self._new_instance_dir(instance_uuid)
        files = self._files(instance_uuid)
        for name, destination in (("disk", files.disk), ("console.log", files.console_log)):
            source = aside / name
            if source.exists():
                shutil.copyfile(source, destination)
                os.chmod(destination, 0o600)
        shutil.copyfile(aside / _MIGRATION_RECORD, directory / _MIGRATION_RECORD)

    def finish_migration(
        self, instance: driver.InstanceSpec, *, same_host: bool, power_on: bool
    ) -> None:
        uuid = instance.uuid
        with self._instance_lock(uuid):
            existing = self._connection.lookup_by_uuid(uuid)
            if existing is not None:
                if not self._is_ours(existing, uuid):
                    raise exceptions.MigrationFailed(
                        uuid, "libvirt here has a domain with this uuid for another host"
                    )
                if existing.is_active():
                    LOG.info("instance %s: resized guest already runs", uuid)
                    return
            files = self._files(uuid)
            directory = self._instance_dir(uuid)
            if not os.path.exists(files.disk):
                raise exceptions.MigrationFailed(uuid, f"no migrated disk at {files.disk}")
            try:
                self._adopt_disk(instance, files.disk)
                self._write_config_drive(instance, files)
            except (OSError, subprocess.SubprocessError, exceptions.AgentError) as exc:
                raise exceptions.MigrationFailed(uuid, f"cannot finish: {exc}") from exc
            mac = _read_mac(directory)
            if mac is None and existing is not None:
                mac = domain_xml.interface_mac(existing.xml_desc())
            try:
                domain = self._define(instance, files, mac=mac)
                if power_on:
                    self._start(domain)
            except exceptions.HypervisorError as exc:
                raise exceptions.MigrationFailed(uuid, f"cannot start the guest: {exc}") from exc
            self._ownership.remember(uuid, domain.runtime_id, True)
        LOG.info(
            "instance %s: resized to %d vCPUs, %d MiB, %d GiB%s",
            uuid,
            instance.vcpus,
            instance.memory_mib,
            instance.disk_gib,
            "" if same_host else " on this host",
        )

    def _adopt_disk(self, instance: driver.InstanceSpec, path: str) -> None:
        """Point the migrated overlay at this host's cached image and grow it to the flavor."""
        os.chmod(path, 0o600)
        info = disk.image_info(path, "qcow2", qemu_img=self._qemu_img)
        if info.backing_file:
            image = instance.image
            cached = str(self.image_cache.fetch(image.url, image.sha256))
            if info.backing_file != cached:
                # -u: the content is the same image (its sha256 verified), only its path moved.
                _qemu_img(self._qemu_img, "rebase", "-u", "-f", "qcow2", "-b", cached,
                          "-F", image.disk_format, path)  # fmt: skip
        wanted = instance.disk_gib * disk.GIB
        if info.virtual_size < wanted:
            _qemu_img(self._qemu_img, "resize", "-f", "qcow2", path, str(wanted))

    def confirm_migration(self, instance_uuid: str, *, same_host: bool) -> None:
        with self._instance_lock(instance_uuid):
            if not same_host:
                self._undefine_stopped(instance_uuid, "resize confirmation")
                self._remove_tree(self._instance_dir(instance_uuid))
            self._remove_tree(self._resize_dir(instance_uuid))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._instance_dir(instance_uuid) / _MIGRATION_RECORD)
        LOG.info("instance %s: resize confirmed; what was set aside is removed", instance_uuid)

    def revert_migration_at_destination(self, instance_uuid: str, *, same_host: bool) -> None:
        with self._instance_lock(instance_uuid):
            domain = self._lookup(instance_uuid, cached=False)
            if domain is not None:
                with self._gone_is_fine():
                    domain.destroy()
                    if not same_host:
                        domain.undefine(self.undefine_flags)
                if not same_host:
                    self._ownership.forget(instance_uuid)
            if not same_host or self._resize_dir(instance_uuid).exists():
                # On the same host without a set-aside copy, this directory is all there is.
                self._remove_tree(self._instance_dir(instance_uuid))
        LOG.info("instance %s: resized guest removed for a revert", instance_uuid)

    def finish_revert_migration(self, instance: driver.InstanceSpec, *, power_on: bool) -> None:
        uuid = instance.uuid
        with self._instance_lock(uuid):
            current, aside = self._instance_dir(uuid), self._resize_dir(uuid)
            domain = self._lookup(uuid, cached=False)
            if aside.exists():
                if domain is not None:
                    domain.destroy()  # the resized guest, should it still run, goes
                self._remove_tree(current)
                os.rename(aside, current)
            elif not current.exists():
                raise exceptions.MigrationFailed(uuid, "nothing was set aside to revert to")
            elif domain is not None and domain.is_active():
                return  # reverted already
            mac = _read_mac(current)
            if mac is None and domain is not None:
                mac = domain_xml.interface_mac(domain.xml_desc())
            try:
                domain = self._define(instance, self._files(uuid), mac=mac)
                if power_on and not domain.is_active():
                    self._start(domain)
            except exceptions.HypervisorError as exc:
                raise exceptions.MigrationFailed(uuid, f"cannot start the guest: {exc}") from exc
            self._ownership.remember(uuid, domain.runtime_id, True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(current / _MIGRATION_RECORD)
        LOG.info("instance %s: resize reverted", uuid)


def _write_record(directory: pathlib.Path, mac: str | None) -> None:
    path = directory / _MIGRATION_RECORD
    path.write_text(json.dumps({"mac": mac}))
    path.chmod(0o600)


def _read_mac(directory: pathlib.Path) -> str | None:
    try:
        record = json.loads((directory / _MIGRATION_RECORD).read_text())
    except (OSError, ValueError):
        return None
    mac = record.get("mac") if isinstance(record, dict) else None
    return mac if isinstance(mac, str) else None


def _qemu_img(binary: str, *args: str) -> None:
    subprocess.run([binary, *args], check=True, capture_output=True, text=True, timeout=300)
