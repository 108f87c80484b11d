"""The domain lifecycle both libvirt-based drivers share.

:class:`BaseLibvirtDriver` implements the :class:`~kubenova_agent.virt.driver.ComputeDriver`
contract on a libvirt connection: idempotent spawn with cleanup on failure, idempotent destroy,
the power operations (their steps are in ``power``), rebuild, power state, addresses, listing,
and lifecycle events from libvirt's event loop. Subclasses supply what differs between a real host
and a simulated one: how an instance's files are made and removed, the domain type, the host's
facts.
``LibvirtDriver`` (virt/libvirt/driver.py) and ``TestDriver`` (virt/testdriver.py) both derive
from it and do not import each other.

Which domains a driver manages, and how it finds them, is the job of
:mod:`~kubenova_agent.virt.libvirt.domain_lookup`: a domain is this driver's when its Kubenova
metadata names this driver's host.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import threading
from collections.abc import Iterator

from kubenova_agent import exceptions
from kubenova_agent.virt import driver, power_state
from kubenova_agent.virt.libvirt import (
    connection,
    console_ports,
    domain_lookup,
    domain_xml,
    errors,
    ownership,
    power,
    start_priority,
)
from kubenova_agent.virt.power_state import LibvirtDomainState

LOG = logging.getLogger(__name__)


class BaseLibvirtDriver(domain_lookup.DomainLookup, driver.ComputeDriver):
    """Domain lifecycle on a libvirt connection; see the module docstring."""

    #: What undefine removes with the domain (libvirt's test driver supports fewer flags).
    undefine_flags: int = (
        connection.UNDEFINE_MANAGED_SAVE
        | connection.UNDEFINE_SNAPSHOTS_METADATA
        | connection.UNDEFINE_NVRAM
        | connection.UNDEFINE_CHECKPOINTS_METADATA
    )

    def __init__(
        self,
        *,
        uri: str,
        hostname: str,
        network: str,
        graphics: domain_xml.Graphics | None = domain_xml.DEFAULT_GRAPHICS,
        starting_guests_first: bool = True,
    ) -> None:
        self.uri = uri
        self.hostname = hostname
        self.network = network
        self.graphics = graphics
        self._start_priority = start_priority.StartPriority(starting_guests_first)
        self._console_ports = console_ports.ConsolePortCache()
        self._connection = connection.Connection(uri)
        self._ownership = ownership.OwnershipCache()
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._lifecycle_listener: driver.LifecycleListener | None = None

    # -- what subclasses supply ----------------------------------------------------------

    @abc.abstractmethod
    def _domain_type(self) -> str:
        """The ``<domain type=...>`` to define: "kvm", "qemu" or "test"."""

    @abc.abstractmethod
    def _prepare_files(self, instance: driver.InstanceSpec) -> domain_xml.DomainFiles:
        """Make the instance's root disk, config drive and console log; return their paths.

        Raises what :func:`errors.build_error` classifies.
        """

    @abc.abstractmethod
    def _remove_files(self, instance_uuid: str) -> None:
        """Remove everything :meth:`_prepare_files` and :meth:`_stage_rebuild` made; nothing
        there is fine."""

    @abc.abstractmethod
    def _stage_rebuild(self, instance: driver.InstanceSpec) -> None:
        """Make a new root disk and config drive beside the instance's files, which its guest
        may be running on; raises as :meth:`_prepare_files` does."""

    @abc.abstractmethod
    def _commit_rebuild(self, instance_uuid: str) -> domain_xml.DomainFiles:
        """Put the staged disk and config drive in place of the current ones (the domain is
        shut off); return the instance's files, the console log kept as it is."""

    @abc.abstractmethod
    def _discard_rebuild(self, instance_uuid: str) -> None:
        """Remove what :meth:`_stage_rebuild` left uncommitted; never raises."""

    @abc.abstractmethod
    def _console_log(self, instance_uuid: str) -> str | None:
        """The console log's path if there is one."""

    def _start(self, domain: connection.Domain) -> None:
        """Start a defined domain (a seam for the test driver's simulated failures)."""
        domain.start()
        self._start_priority.started(domain)

    def _addresses(self, domain: connection.Domain, instance_uuid: str) -> list[str]:
        del instance_uuid
        return domain.lease_ipv4_addresses()

    def _ports(self, domain: connection.Domain, instance_uuid: str) -> driver.ConsolePorts | None:
        """The running domain's console ports (a seam: libvirt's test driver hands out none)."""
        return self._console_ports.ports(instance_uuid, domain)

    def _request_shutdown(self, domain: connection.Domain) -> None:
        """Press the guest's ACPI power button (a seam for the test driver's simulated guests
        that ignore it)."""
        domain.shutdown()

    # -- the contract ----------------------------------------------------------------------

    def init_host(self) -> None:
        # Before the connection opens: only connections opened afterwards deliver events.
        connection.start_event_loop()
        self._connection.open()

    def spawn(self, instance: driver.InstanceSpec) -> None:
        with self._instance_lock(instance.uuid):
            try:
                existing = self._connection.lookup_by_uuid(instance.uuid)
                if existing is not None and not self._is_ours(existing, instance.uuid):
                    raise exceptions.RescheduledBuildError(
                        instance.uuid,
                        f"libvirt already has a domain {existing.name!r} with this uuid "
                        "that this driver does not manage",
                    )
            except exceptions.HypervisorError as exc:
                raise exceptions.RescheduledBuildError(instance.uuid, str(exc)) from exc
            try:
                if existing is not None:
                    self._ensure_running(existing, instance.uuid)
                    return
                domain = self._define(instance, self._prepare_files(instance), mac=None)
                self._start(domain)
                # Recorded once started: starting gives the domain the runtime id it will be
                # listed with.
                self._ownership.remember(instance.uuid, domain.runtime_id, True)
                LOG.info("instance %s: domain started", instance.uuid)
            except BaseException as exc:
                error = errors.build_error(instance.uuid, exc)
                self._clean_up_failed_spawn(instance.uuid, exc)
                if error is None or error is exc:
                    raise
                raise error from exc

    def destroy(self, instance_uuid: str) -> None:
        driver.validate_uuid(instance_uuid)
        with self._instance_lock(instance_uuid):
            domain = self._lookup(instance_uuid, cached=False)
            if domain is not None:
                with self._gone_is_fine():
                    domain.destroy()
                    domain.undefine(self.undefine_flags)
                self._ownership.forget(instance_uuid)
                self._console_ports.forget(instance_uuid)
                LOG.info("instance %s: domain destroyed and undefined", instance_uuid)
            self._remove_files(instance_uuid)

    def power_off(self, instance_uuid: str, timeout_s: float) -> bool:
        with self._changing(instance_uuid) as domain:
            clean = power.power_off(domain, timeout_s, self._request_shutdown)
        LOG.info("instance %s: powered off (%s)", instance_uuid, "clean" if clean else "forced")
        return clean

    def power_on(self, instance_uuid: str) -> None:
        with self._changing(instance_uuid) as domain:
            power.power_on(domain, self._start)
        LOG.info("instance %s: powered on", instance_uuid)

    def pause(self, instance_uuid: str) -> None:
        with self._changing(instance_uuid) as domain:
            power.pause(domain, instance_uuid)
        LOG.info("instance %s: paused", instance_uuid)

    def unpause(self, instance_uuid: str) -> None:
        with self._changing(instance_uuid) as domain:
            power.unpause(domain, instance_uuid)
        LOG.info("instance %s: unpaused", instance_uuid)

    def suspend(self, instance_uuid: str) -> None:
        with self._changing(instance_uuid) as domain:
            power.suspend(domain, instance_uuid)
        LOG.info("instance %s: suspended", instance_uuid)

    def resume(self, instance_uuid: str) -> None:
        with self._changing(instance_uuid) as domain:
            power.resume(domain, instance_uuid, self._start)
        LOG.info("instance %s: resumed", instance_uuid)

    def reboot(self, instance_uuid: str, hard: bool, timeout_s: float) -> driver.RebootType:
        with self._changing(instance_uuid) as domain:
            done = power.reboot(domain, hard, timeout_s, self._request_shutdown, self._start)
        LOG.info("instance %s: rebooted (%s)", instance_uuid, done.value.lower())
        return done

    def rebuild(self, instance: driver.InstanceSpec, power_on: bool) -> None:
        uuid = instance.uuid
        with self._instance_lock(uuid):
            # Metadata read afresh, as before anything destructive.
            domain = self._lookup(uuid, cached=False)
            if domain is None:
                raise exceptions.InstanceNotFound(uuid)
            with self._not_found_as(uuid):
                # Kept, so that libvirt's DHCP gives the guest its address again.
                mac = domain_xml.interface_mac(domain.xml_desc())
            # Everything that can fail because of the image happens while the old guest still
            # runs on its old disk: a bad image leaves the instance as it was.
            try:
                self._stage_rebuild(instance)
            except BaseException as exc:
                self._discard_rebuild(uuid)
                if not isinstance(exc, Exception):
                    raise
                raise errors.rebuild_failed(uuid, exc, intact=True) from exc
            try:
                with self._not_found_as(uuid):
                    power.stop_afresh(domain)
                domain = self._define(instance, self._commit_rebuild(uuid), mac=mac)
                if power_on:
                    self._start(domain)
                self._ownership.remember(uuid, domain.runtime_id, True)
            except exceptions.InstanceNotFound:
                self._discard_rebuild(uuid)  # the domain vanished from under us
                raise
            except Exception as exc:
                self._discard_rebuild(uuid)
                with contextlib.suppress(Exception):
                    domain.destroy()  # the documented end state: shut off
                raise errors.rebuild_failed(uuid, exc, intact=False) from exc
        LOG.info(
            "instance %s: rebuilt from image %s%s",
            uuid,
            instance.image.name,
            "" if power_on else ", left shut off",
        )

    def set_lifecycle_listener(self, listener: driver.LifecycleListener | None) -> bool:
        self._lifecycle_listener = listener
        return self._connection.watch_lifecycle(
            self._on_lifecycle_event if listener is not None else None
        )

    def get_power_state(self, instance_uuid: str) -> power_state.PowerState:
        domain = self._require(instance_uuid)
        with self._not_found_as(instance_uuid):
            return power_state.from_libvirt(domain.state())

    def get_addresses(self, instance_uuid: str) -> list[str]:
        domain = self._require(instance_uuid)
        with self._not_found_as(instance_uuid):
            return sorted(self._addresses(domain, instance_uuid))

    def get_instance_state(self, instance_uuid: str) -> driver.InstanceState:
        domain = self._require(instance_uuid)
        with self._not_found_as(instance_uuid):
            state = domain.state()
            saved = state == LibvirtDomainState.SHUTOFF and domain.has_managed_save_image()
            return self._state(domain, instance_uuid, state, saved)

    def list_instance_uuids(self) -> list[str]:
        return [instance_uuid for instance_uuid, _ in self._owned_domains()]

    def list_instance_states(self) -> dict[str, driver.InstanceState]:
        # One listing for every instance, asking each domain handle directly, instead of a
        # lookup by uuid (and an ownership check) per instance and per question. Which of
        # them are suspended is one more listing, made only when some domain is shut off.
        states: dict[str, driver.InstanceState] = {}
        saved: set[str] | None = None
        for instance_uuid, domain in self._owned_domains():
            with self._gone_is_fine():
                state = domain.state()
                if state == LibvirtDomainState.SHUTOFF and saved is None:
                    saved = self._connection.managed_save_uuids()
                states[instance_uuid] = self._state(
                    domain, instance_uuid, state, instance_uuid in (saved or ())
                )
        return states

    def console_log_path(self, instance_uuid: str) -> str | None:
        self._require(instance_uuid)
        return self._console_log(instance_uuid)

    # -- helpers ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _instance_lock(self, instance_uuid: str) -> Iterator[None]:
        # Calls about one instance are serialised (a redelivered build racing its first
        # delivery, a delete racing a build); different instances proceed in parallel.
        with self._locks_guard:
            lock = self._locks.setdefault(instance_uuid, threading.Lock())
        with lock:
            yield

    def _define(
        self, instance: driver.InstanceSpec, files: domain_xml.DomainFiles, *, mac: str | None
    ) -> connection.Domain:
        """Define (or define again) the instance's domain; ``mac`` None derives it."""
        xml = domain_xml.build(
            instance,
            domain_type=self._domain_type(),
            files=files,
            network=self.network,
            host=self.hostname,
            mac=mac,
            graphics=self.graphics,
        )
        domain = self._connection.define_domain(xml)
        LOG.info("instance %s: domain %s defined", instance.uuid, domain.name)
        return domain

    def _state(
        self, domain: connection.Domain, instance_uuid: str, state: int, saved: bool
    ) -> driver.InstanceState:
        return driver.InstanceState(
            power_state=power_state.from_libvirt(state),
            addresses=tuple(sorted(self._addresses(domain, instance_uuid))),
            saved=saved,
            console_ports=self._ports(domain, instance_uuid),
        )

    @contextlib.contextmanager
    def _changing(self, instance_uuid: str) -> Iterator[connection.Domain]:
        """The instance's domain, under the instance's lock, with a domain that vanishes
        meanwhile reported as InstanceNotFound."""
        driver.validate_uuid(instance_uuid)
        with self._instance_lock(instance_uuid):
            domain = self._require(instance_uuid)
            with self._not_found_as(instance_uuid):
                yield domain

    def _on_lifecycle_event(self, domain_uuid: str, event: int, detail: int) -> None:
        # On libvirt's event thread: hand over, nothing more.
        LOG.debug(
            "domain %s: lifecycle event %s (detail %d)",
            domain_uuid,
            connection.LIFECYCLE_EVENT_NAMES.get(event, str(event)),
            detail,
        )
        listener = self._lifecycle_listener
        if listener is not None:
            listener(domain_uuid)

    def _ensure_running(self, domain: connection.Domain, instance_uuid: str) -> None:
        if domain.is_active():
            LOG.info("instance %s: domain already running; spawn is a no-op", instance_uuid)
            return
        LOG.info("instance %s: domain defined but not running; starting it", instance_uuid)
        self._start(domain)

    def _clean_up_failed_spawn(self, instance_uuid: str, cause: BaseException) -> None:
        LOG.warning("instance %s: spawn failed (%s); cleaning up", instance_uuid, cause)
        try:
            domain = self._lookup(instance_uuid, cached=False)
            if domain is not None:
                with self._gone_is_fine():
                    domain.destroy()
                    domain.undefine(self.undefine_flags)
                self._ownership.forget(instance_uuid)
            self._remove_files(instance_uuid)
        except Exception:
            # The build error is what the caller must see; a later destroy (or the audit)
            # removes what is left.
            LOG.exception("instance %s: cleanup after the failed spawn failed", instance_uuid)
