"""The libvirt/QEMU driver: real guests on this host (Nova's ``LibvirtDriver``).

Files, per instance, in ``<instances_path>/<uuid>/`` (the directory mode 0711, the files 0600,
owned by root)::

    disk          qcow2 overlay sized to the flavor, backed by the cached image (backing format
                  recorded, so nothing is ever probed)
    disk.config   the config drive (ISO 9660, label config-2)
    console.log   the serial console's log (virtlogd appends to it)
    console.sock  the serial console's unix socket, bound by libvirt while the guest runs

Resize and migration files are described in ``resize`` and ``migration``; ``<uuid>_resize/``
(what a resize sets aside) goes with the instance.

A rebuild makes ``disk.rebuild`` and ``disk.config.rebuild`` beside them while the old guest
runs, then renames them over ``disk`` and ``disk.config`` once it is powered off: the old disk
is there until the new one is complete, and a rename is all that replaces it. The console log
is kept, so the guest's earlier boots stay readable above the new one.

Images are cached once per host in ``image_cache_path`` (see ``kubenova_agent.imagecache``).

Who opens these files: libvirt's DAC security driver (``dynamic_ownership``, on by default)
hands the disks to the user QEMU runs as (``libvirt-qemu`` on Debian, or root, as qemu.conf
says) while the domain runs and gives them back afterwards, so the files can stay private to
root. QEMU still opens them by path, hence the 0711 directories: others may traverse them but
not list or read them. The console log is opened by virtlogd (root) when qemu.conf has
``stdio_handler = "logd"``, the default; it is created beforehand so that a QEMU writing it
directly gets a file libvirt has relabelled rather than a directory it cannot write into.
No ``<seclabel type='none'/>`` is set: DAC relabelling is what lets an unprivileged QEMU use
root's files, and where AppArmor is on, libvirt's virt-aa-helper adds every path the domain XML
names (disks, backing chain, console file) to the guest's profile.
"""

from __future__ import annotations

import logging
import os
import pathlib
import secrets
import shutil
import socket
import stat

from kubenova_agent import configdrive, exceptions, imagecache, settings
from kubenova_agent.virt import driver
from kubenova_agent.virt.libvirt import disk, domain_xml, migration, probe, resize
from kubenova_agent.virt.libvirt import snapshot as disk_snapshot
from kubenova_agent.virt.power_state import LibvirtDomainState

LOG = logging.getLogger(__name__)

DEFAULT_INSTANCES_PATH = "/var/lib/kubenova/instances"
DEFAULT_IMAGE_CACHE_PATH = "/var/lib/kubenova/_base"
VIRT_TYPES = frozenset(settings.VIRT_TYPES)
#: Reload the x509 files of a running QEMU's VNC server.
_VNC_RELOAD = '{"execute": "display-reload", "arguments": {"type": "vnc", "tls-certs": true}}'
#: The suffix of the disk and config drive a rebuild makes before they replace the old ones.
_STAGED = ".rebuild"


class LibvirtDriver(resize.LibvirtResize, migration.LibvirtLiveMigration):
    """Runs instances as libvirt domains on ``uri`` (``qemu:///system``)."""

    def __init__(
        self,
        uri: str = "qemu:///system",
        instances_path: str | None = None,
        image_cache_path: str | None = None,
        network: str = "default",
        virt_type: str = "auto",
        *,
        hostname: str | None = None,
        qemu_binary: str = "qemu-system-x86_64",
        qemu_img: str = disk.QEMU_IMG,
        probe_timeout: float = probe.DEFAULT_TIMEOUT,
        migration_uri: str | None = None,
        graphics: domain_xml.Graphics | None = domain_xml.DEFAULT_GRAPHICS,
        console_address: str | None = None,
        starting_guests_first: bool = True,
    ) -> None:
        """Paths default to $KUBENOVA_INSTANCES_PATH and $KUBENOVA_IMAGE_CACHE_PATH, then to
        /var/lib/kubenova/{instances,_base}. ``virt_type`` "auto" probes at :meth:`init_host`
        whether KVM really runs guests here (see ``probe``: with ``qemu_binary`` when this
        process has it, else as a libvirt domain); "kvm" or "qemu" force a choice.
        ``migration_uri`` (default $KUBENOVA_MIGRATION_URI) is how other hosts' agents reach
        ``uri``; without one this host cannot be a migration's destination. ``graphics`` is
        where guests' consoles listen and whether they speak TLS (None: no consoles).
        ``starting_guests_first`` lowers each guest's CPU weight once it has started (see
        ``start_priority``).
        """
        if virt_type not in VIRT_TYPES:
            raise ValueError(f"virt_type {virt_type!r} is not one of {sorted(VIRT_TYPES)}")
        super().__init__(
            uri=uri,
            hostname=hostname or socket.gethostname(),
            network=network,
            graphics=graphics,
            starting_guests_first=starting_guests_first,
        )
        self.instances_path = pathlib.Path(
            instances_path or os.environ.get("KUBENOVA_INSTANCES_PATH", DEFAULT_INSTANCES_PATH)
        )
        self.image_cache = imagecache.ImageCache(
            image_cache_path
            or os.environ.get("KUBENOVA_IMAGE_CACHE_PATH", DEFAULT_IMAGE_CACHE_PATH)
        )
        self.requested_virt_type = virt_type
        self._virt_type: str | None = None if virt_type == "auto" else virt_type
        self._qemu_binary = qemu_binary
        self._qemu_img = qemu_img
        self._probe_timeout = probe_timeout
        self.migration_uri = migration_uri or os.environ.get("KUBENOVA_MIGRATION_URI") or None
        # Where the console proxy connects: as given, else where the consoles listen unless
        # that is every address (then the host's name, None, is all that is known).
        listen = graphics.listen if graphics is not None else None
        self.console_address = console_address or (
            listen if listen not in (None, "0.0.0.0", "::") else None
        )

    # -- the contract ----------------------------------------------------------------------

    def init_host(self) -> None:
        super().init_host()
        self.instances_path.mkdir(parents=True, exist_ok=True)
        self.instances_path.chmod(0o711)
        self.image_cache.ensure_directory()
        for path in (self.instances_path, self.image_cache.path):
            _warn_unless_traversable(path)
        self._publish_instances_path()
        how = "probed" if self.requested_virt_type == "auto" else "as configured"
        LOG.info("guests will run with virt type %s (%s)", self.virt_type, how)
        if not self._connection.network_is_active(self.network):
            LOG.warning(
                "libvirt network %r is not active: guests cannot start until it is",
                self.network,
            )

    @property
    def virt_type(self) -> str:
        """The domain type guests get, "kvm" or "qemu"; probed on first use for "auto"."""
        if self._virt_type is None:
            # Without a local QEMU the probe runs its guest through our libvirtd, with its
            # files under the instances path: libvirtd's QEMU reaches that path as we do.
            self._virt_type = probe.probe_virt_type(
                self._qemu_binary,
                self._probe_timeout,
                self._connection,
                str(self.instances_path),
            )
        return self._virt_type

    def get_host_info(self) -> driver.HostInfo:
        node = self._connection.node_info()
        return driver.HostInfo(
            hostname=self.hostname,
            vcpus=node.cpus,
            memory_mib=node.memory_mib,
            disk_gib=shutil.disk_usage(self.instances_path).total // disk.GIB,
            cpu_arch=node.cpu_arch,
            hypervisor_type=self._connection.hypervisor_type(),
            virt_type=self.virt_type,
            libvirt_version=self._connection.library_version(),
            qemu_version=self._connection.hypervisor_version(),
            migration_uri=self.migration_uri,
            console_address=self.console_address,
        )

    def reload_console_certificates(self) -> int:
        # QMP display-reload (QEMU 6.0 on) reloads a VNC server's x509 credentials; libvirt
        # has no API for it. SPICE has no such reload: a SPICE console serves the certificate
        # its guest started with until the guest is restarted or migrated.
        if self.graphics is None or not self.graphics.tls:
            return 0
        reloaded = 0
        for instance_uuid, domain in self._owned_domains():
            try:
                if not domain.is_active():
                    continue
                domain.qemu_monitor_command(_VNC_RELOAD)
            except exceptions.HypervisorError as exc:
                LOG.warning("guest %s keeps its console certificate: %s", instance_uuid, exc)
                continue
            reloaded += 1
        LOG.info("%d running guest(s) serve the renewed console certificate", reloaded)
        return reloaded

    def snapshot(self, instance_uuid: str, target: str) -> None:
        # The steps, and why they are consistent, are in virt/libvirt/snapshot.py.
        destination = pathlib.Path(target)
        if destination.exists():
            raise exceptions.SnapshotFailed(f"{target} exists already")
        copy = self._instance_dir(instance_uuid) / f"disk.snapshot-{secrets.token_hex(4)}"
        try:
            with self._changing(instance_uuid) as domain:
                if domain.state() == LibvirtDomainState.CRASHED:
                    raise exceptions.InstanceInvalidState(instance_uuid, "snapshot", "crashed")
                disk_snapshot.copy_overlay(
                    domain,
                    pathlib.Path(self._files(instance_uuid).disk),
                    copy,
                    pause_marker=self._instance_dir(instance_uuid) / "snapshot.paused",
                )
            disk_snapshot.flatten(copy, destination, qemu_img=self._qemu_img)
        except OSError as exc:
            destination.unlink(missing_ok=True)
            raise exceptions.SnapshotFailed(f"cannot copy the root disk: {exc}") from exc
        except BaseException:
            destination.unlink(missing_ok=True)
            raise
        finally:
            copy.unlink(missing_ok=True)
        LOG.info("instance %s: root disk written to %s", instance_uuid, target)

    # -- hooks -----------------------------------------------------------------------------

    def _domain_type(self) -> str:
        return self.virt_type

    def _instance_dir(self, instance_uuid: str) -> pathlib.Path:
        return self.instances_path / driver.validate_uuid(instance_uuid)

    def _files(self, instance_uuid: str, suffix: str = "") -> domain_xml.DomainFiles:
        """The instance's files; with ``suffix``, the disk and config drive a rebuild stages."""
        directory = self._instance_dir(instance_uuid)
        return domain_xml.DomainFiles(
            disk=str(directory / f"disk{suffix}"),
            config_drive=str(directory / f"disk.config{suffix}"),
            console_log=str(directory / "console.log"),
        )

    def _prepare_files(self, instance: driver.InstanceSpec) -> domain_xml.DomainFiles:
        directory = self._instance_dir(instance.uuid)
        # No domain exists for this uuid (spawn checked), so anything here was left by a spawn
        # that died before it could clean up: start afresh.
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(mode=0o711, parents=True)
        directory.chmod(0o711)  # mkdir's mode is filtered by the umask
        files = self._files(instance.uuid)
        self._write_disk_and_drive(instance, files)
        fd = os.open(files.console_log, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        return files

    def _stage_rebuild(self, instance: driver.InstanceSpec) -> None:
        directory = self._instance_dir(instance.uuid)
        directory.mkdir(mode=0o711, parents=True, exist_ok=True)
        directory.chmod(0o711)
        # Left by a rebuild that died half-way, if anything: made again from scratch.
        self._discard_rebuild(instance.uuid)
        self._write_disk_and_drive(instance, self._files(instance.uuid, _STAGED))

    def _commit_rebuild(self, instance_uuid: str) -> domain_xml.DomainFiles:
        staged, files = self._files(instance_uuid, _STAGED), self._files(instance_uuid)
        os.replace(staged.disk, files.disk)
        os.replace(staged.config_drive, files.config_drive)
        # Appended to by the new boot; made again only if someone removed it.
        fd = os.open(files.console_log, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
        LOG.info("instance %s: new disk and config drive in place", instance_uuid)
        return files

    def _discard_rebuild(self, instance_uuid: str) -> None:
        staged = self._files(instance_uuid, _STAGED)
        for path in (staged.disk, staged.config_drive):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError:
                # destroy removes the whole directory; until then it only takes room.
                LOG.warning("instance %s: cannot remove %s", instance_uuid, path, exc_info=True)

    def _write_disk_and_drive(
        self, instance: driver.InstanceSpec, files: domain_xml.DomainFiles
    ) -> None:
        """The root disk from the image (fetched and verified) and the config drive."""
        image = instance.image
        base_image = self.image_cache.fetch(image.url, image.sha256)
        info = disk.image_info(str(base_image), image.disk_format, qemu_img=self._qemu_img)
        if info.backing_file:
            raise exceptions.InvalidImage(
                f"image {image.name!r} has a backing file of its own ({info.backing_file!r})"
            )
        if info.virtual_size > instance.disk_gib * disk.GIB:
            raise exceptions.ImageTooLarge(
                image.name,
                virtual_size=info.virtual_size,
                disk_bytes=instance.disk_gib * disk.GIB,
            )
        disk.create_overlay(
            files.disk,
            backing_file=str(base_image),
            backing_format=image.disk_format,
            size_gib=instance.disk_gib,
            qemu_img=self._qemu_img,
        )
        os.chmod(files.disk, 0o600)
        configdrive.build(files.config_drive, instance)
        os.chmod(files.config_drive, 0o600)

    def _remove_files(self, instance_uuid: str) -> None:
        for directory in (self._instance_dir(instance_uuid), self._resize_dir(instance_uuid)):
            try:
                shutil.rmtree(directory)
            except FileNotFoundError:
                continue
            LOG.info("instance %s: removed %s", instance_uuid, directory)

    def _console_log(self, instance_uuid: str) -> str | None:
        path = self._instance_dir(instance_uuid) / "console.log"
        return str(path) if path.exists() else None


def _warn_unless_traversable(path: pathlib.Path) -> None:
    # QEMU may run as an unprivileged user that must walk down to the instance files; a
    # private parent directory (pytest's, a home directory) makes every start fail with
    # "Permission denied", which is easier to understand here.
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            LOG.warning(
                "%s is not searchable by other users (mode %o): a QEMU not running as root "
                "cannot reach %s",
                directory,
                stat.S_IMODE(mode),
                path,
            )
            return
