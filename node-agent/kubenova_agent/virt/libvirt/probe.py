"""Decides whether guests on this host can use KVM or must run under software emulation (TCG).

``/dev/kvm`` being there proves little, and neither does libvirtd saying it can run KVM guests:
on some hosts (nested virtualisation without proper support) a KVM guest starts but crawls, so
slowly that a Linux kernel never finishes decompressing itself, while a trivial guest still
looks fine. So the probe runs a guest that does real work (see ``payload``) under KVM, with a
timeout: it finishing in time means "kvm", anything else "qemu".

Where it runs:

- With a QEMU binary in this process's filesystem, QEMU is run directly
  (:func:`run_payload`), and its exit status says whether the guest got to its end.
- The node-agent's container image has no QEMU: it lives where libvirtd runs (its own pod, or
  the host). Then the payload runs as a transient libvirt domain
  (:func:`run_payload_in_libvirtd`), the same QEMU that will run the guests. libvirt does not
  say how QEMU exited, so the domain must end by itself in time *and* have written the
  payload's marker to its serial port, a file. That file and the boot disk must be where
  libvirtd's QEMU can reach them: a fresh directory under the driver's instances path, which
  libvirtd shares with the agent.

The result is cached for the life of the process: the answer does not change while we run, and
the probe costs up to ``timeout`` seconds.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET

from kubenova_agent import exceptions
from kubenova_agent.virt.libvirt import connection, domain_xml, payload

LOG = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0

#: How the debug-exit device is given to QEMU: the payload ends by writing to port 0xf4.
DEBUG_EXIT_DEVICE = "isa-debug-exit,iobase=0xf4,iosize=0x04"

#: libvirt's namespace for QEMU arguments it has no XML for (the debug-exit device).
QEMU_NAMESPACE = "http://libvirt.org/schemas/domain/qemu/1.0"
# libvirt keeps the prefix it is given; "qemu" is the one its documentation uses.
ET.register_namespace("qemu", QEMU_NAMESPACE)

#: Probe domains are named this plus a random suffix; no instance is named so.
DOMAIN_NAME_PREFIX = "kubenova-probe-"

# How often a running probe domain is looked at: the payload takes about 0.3 s under TCG.
POLL_INTERVAL = 0.05
# How long to wait, once the domain has ended, for the marker to reach its file: with
# qemu.conf's stdio_handler "logd" QEMU writes into a pipe and virtlogd copies to the file.
MARKER_GRACE = 1.0


@functools.cache
def probe_virt_type(
    qemu_binary: str = "qemu-system-x86_64",
    timeout: float = DEFAULT_TIMEOUT,
    libvirtd: connection.Connection | None = None,
    shared_dir: str | None = None,
) -> str:
    """Return ``"kvm"`` when guests here can use KVM, else ``"qemu"``.

    With ``qemu_binary`` found (on PATH, or at its path) it is run directly
    (:func:`run_local_probe`); without it the payload runs through ``libvirtd``
    (:func:`run_libvirtd_probe`), with its files in a directory made under ``shared_dir``. Cached
    per process and per arguments (``probe_virt_type.cache_clear()`` forgets).

    Raises :class:`~kubenova_agent.exceptions.HypervisorError` when libvirtd cannot be reached,
    and OSError when the probe's files cannot be written; neither is cached.
    """
    local_binary = shutil.which(qemu_binary)
    if local_binary is None and libvirtd is not None:
        if shared_dir is None:
            raise ValueError("probing through libvirtd needs a directory it shares with us")
        return run_libvirtd_probe(libvirtd, shared_dir, timeout, qemu_binary)
    return run_local_probe(local_binary or qemu_binary, timeout)


# -- a local QEMU ------------------------------------------------------------------------------


def qemu_command(qemu_binary: str, disk: str, accel: str) -> list[str]:
    """The QEMU command line that boots the probe payload from ``disk``."""
    return [
        qemu_binary,
        "-machine", f"accel={accel}",
        # A named model: "-cpu host" aborts on some of these hosts.
        "-cpu", "qemu64",
        "-m", "16",
        "-display", "none",
        "-nodefaults",
        "-no-reboot",
        "-device", DEBUG_EXIT_DEVICE,
        "-drive", f"file={disk},format=raw,if=ide",
    ]  # fmt: skip


def run_local_probe(qemu_binary: str, timeout: float) -> str:
    """The payload probe with this process's ``qemu_binary`` and ``/dev/kvm``."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        LOG.info("virt probe: /dev/kvm is not usable; guests will run under TCG")
        return "qemu"
    if run_payload(qemu_binary, "kvm", timeout):
        LOG.info("virt probe: %s ran the payload under KVM; guests will use KVM", qemu_binary)
        return "kvm"
    LOG.warning("virt probe: /dev/kvm is present but a KVM guest does not run; using TCG")
    return "qemu"


def run_payload(qemu_binary: str, accel: str, timeout: float) -> bool:
    """Boot the payload under ``accel``; True when it ran to its end within ``timeout`` s."""
    with tempfile.TemporaryDirectory(prefix="kubenova-probe-") as workdir:
        disk = os.path.join(workdir, "boot.img")
        payload.write_disk(disk)
        started = time.monotonic()
        try:
            process = subprocess.Popen(
                qemu_command(qemu_binary, disk, accel),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            LOG.info("virt probe: cannot run %s: %s", qemu_binary, exc)
            return False
        try:
            _, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            try:
                process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                # A process stuck in the kernel may ignore even SIGKILL for a while; the probe
                # has its answer and does not wait for it.
                LOG.warning("virt probe: qemu (pid %d) did not die after SIGKILL", process.pid)
            LOG.info("virt probe: %s guest did not finish within %.1f s", accel, timeout)
            return False
        elapsed = time.monotonic() - started
        if process.returncode != payload.EXPECTED_EXIT_STATUS:
            LOG.info(
                "virt probe: %s guest exited with %s, not %d: %s",
                accel,
                process.returncode,
                payload.EXPECTED_EXIT_STATUS,
                stderr.decode(errors="replace").strip()[-500:],
            )
            return False
        LOG.info("virt probe: %s guest finished in %.2f s", accel, elapsed)
        return True


# -- through libvirtd --------------------------------------------------------------------------


def run_libvirtd_probe(
    libvirtd: connection.Connection, shared_dir: str, timeout: float, qemu_binary: str
) -> str:
    """The payload probe as a KVM domain of ``libvirtd``, for a process without QEMU."""
    # Reaching libvirtd is checked apart: a daemon we cannot talk to must raise (and leave
    # nothing cached), while any refusal to start the domain means "qemu".
    libvirtd.open()
    how = (
        f"no local {qemu_binary}, so the payload ran as a kvm domain of libvirtd at {libvirtd.uri}"
    )
    if run_payload_in_libvirtd(libvirtd, shared_dir, "kvm", timeout):
        LOG.info("virt probe: %s: it finished; guests will use KVM", how)
        return "kvm"
    LOG.warning("virt probe: %s: it did not finish (see above); guests will run under TCG", how)
    return "qemu"


def probe_domain_xml(name: str, domain_type: str, disk: str, console_log: str) -> str:
    """The XML of a transient domain that boots the payload from ``disk``.

    As bare as libvirt allows (no network, no graphics, no USB, no balloon), with every end
    (power-off, reboot, crash) ending the domain: a payload that resets instead of finishing
    must not start again, and a domain that ended without the marker is a failure.
    """
    domain = ET.Element("domain", type=domain_type)
    ET.SubElement(domain, "name").text = name
    ET.SubElement(domain, "memory", unit="MiB").text = "16"
    ET.SubElement(domain, "vcpu").text = "1"
    os_element = ET.SubElement(domain, "os")
    ET.SubElement(os_element, "type", arch=domain_xml.GUEST_ARCH).text = "hvm"
    ET.SubElement(os_element, "boot", dev="hd")
    # The guests' CPU (see domain_xml.build): the probe must test what they will run with.
    cpu = ET.SubElement(domain, "cpu", mode="custom", match="exact", check="none")
    ET.SubElement(cpu, "model", fallback="forbid").text = "qemu64"
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        ET.SubElement(domain, event).text = "destroy"

    devices = ET.SubElement(domain, "devices")
    # virtio like the guests' disks: IDE is missing from q35 machines, virtio works on both.
    disk_element = ET.SubElement(devices, "disk", type="file", device="disk")
    ET.SubElement(disk_element, "driver", name="qemu", type="raw")
    ET.SubElement(disk_element, "source", file=disk)
    ET.SubElement(disk_element, "target", dev="vda", bus="virtio")
    # COM1 into a file: the marker there is how the probe learns that the payload finished.
    serial = ET.SubElement(devices, "serial", type="file")
    ET.SubElement(serial, "source", path=console_log)
    ET.SubElement(serial, "target", port="0")
    ET.SubElement(devices, "controller", type="usb", model="none")
    ET.SubElement(devices, "memballoon", model="none")

    commandline = ET.SubElement(domain, f"{{{QEMU_NAMESPACE}}}commandline")
    for arg in ("-device", DEBUG_EXIT_DEVICE):
        ET.SubElement(commandline, f"{{{QEMU_NAMESPACE}}}arg", value=arg)
    ET.indent(domain)
    return ET.tostring(domain, encoding="unicode")


def run_payload_in_libvirtd(
    libvirtd: connection.Connection, shared_dir: str, domain_type: str, timeout: float
) -> bool:
    """Boot the payload as a transient ``domain_type`` domain of ``libvirtd``; True when it ran
    to its end within ``timeout`` s of starting.

    The disk and serial file go in a new directory under ``shared_dir``, which libvirtd's QEMU
    must reach at the same path. The domain is destroyed and the directory removed whatever
    happens. Raises what libvirtd raises while the domain runs (it went away) and OSError when
    the files cannot be written; a domain libvirtd will not start is a plain False.
    """
    workdir = tempfile.mkdtemp(prefix=".probe-", dir=shared_dir)
    name = DOMAIN_NAME_PREFIX + uuid.uuid4().hex[:12]
    running: connection.Domain | None = None
    try:
        # QEMU may run as an unprivileged user: it must reach the directory and read the disk.
        # libvirt's DAC driver hands it the disk and serial file while the domain runs.
        os.chmod(workdir, 0o755)
        disk = os.path.join(workdir, "boot.img")
        payload.write_disk(disk, 0o644)
        # Made beforehand so that a QEMU opening it itself finds a file libvirt has relabelled,
        # rather than a directory it cannot create files in.
        console_log = os.path.join(workdir, "console.log")
        os.close(os.open(console_log, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        try:
            running = libvirtd.create_transient_domain(
                probe_domain_xml(name, domain_type, disk, console_log)
            )
        except exceptions.HypervisorError as exc:
            LOG.info("virt probe: libvirtd did not start %s domain %s: %s", domain_type, name, exc)
            return False
        started = time.monotonic()
        if not _wait_until_ended(running, started + timeout):
            LOG.info("virt probe: %s domain did not finish within %.1f s", domain_type, timeout)
            return False
        elapsed = time.monotonic() - started
        running = None
        output = _wait_for_marker(console_log)
        if payload.MARKER not in output:
            LOG.info(
                "virt probe: %s domain ended after %.2f s without finishing (its serial port: %r)",
                domain_type,
                elapsed,
                output[-200:],
            )
            return False
        LOG.info("virt probe: %s domain finished in %.2f s", domain_type, elapsed)
        return True
    finally:
        if running is not None:
            _destroy(running, name)
        try:
            shutil.rmtree(workdir)
        except OSError as exc:
            LOG.warning("virt probe: could not remove %s: %s", workdir, exc)


def _has_ended(domain: connection.Domain) -> bool:
    try:
        return not domain.is_active()
    except exceptions.HypervisorError as exc:
        # A transient domain that stopped no longer exists.
        if exc.code == connection.ERR_NO_DOMAIN:
            return True
        raise


def _wait_until_ended(domain: connection.Domain, deadline: float) -> bool:
    """True once ``domain`` has ended by itself; False if it still runs at ``deadline``."""
    while not _has_ended(domain):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(POLL_INTERVAL, remaining))
    return True


def _wait_for_marker(console_log: str) -> bytes:
    """What the domain wrote to its serial port, once it holds the marker or after
    :data:`MARKER_GRACE` s."""
    deadline = time.monotonic() + MARKER_GRACE
    while True:
        try:
            with open(console_log, "rb") as handle:
                output = handle.read()
        except OSError:
            output = b""
        if payload.MARKER in output or time.monotonic() >= deadline:
            return output
        time.sleep(POLL_INTERVAL)


def _destroy(domain: connection.Domain, name: str) -> None:
    # Best effort, during cleanup: a failure must not hide the probe's answer or its error, and
    # libvirtd destroys the domain anyway when our connection closes (it was started with
    # AUTODESTROY).
    try:
        domain.destroy()
    except exceptions.HypervisorError as exc:
        if exc.code != connection.ERR_NO_DOMAIN:  # it ended by itself meanwhile
            LOG.warning("virt probe: could not destroy probe domain %s: %s", name, exc)
