"""This host's certificate for its consoles' TLS, from the operator, kept fresh.

In a cluster the host's QEMU serves VNC and SPICE over TLS, and the agent's serial console
server too, with one certificate that names the node (``kubenova.certs.console``). The agent
makes the key here, on the node, and sends the operator only a signing request, with the same
proof of identity as for its RabbitMQ credentials (:mod:`kubenova_agent.credentials`); the
operator signs it for this node's name and addresses and answers the trust bundle beside it.
The request names the node (common name and DNS name) and the address consoles are reached
at (an IP SAN): the operator as CA writes the names itself and ignores these, but cert-manager
signs what the request asks for, once the operator has checked that the node may have it.

The files go where libvirt's qemu.conf points (``vnc_tls_x509_cert_dir`` and
``spice_tls_x509_cert_dir``) with the names libvirt expects: ``ca-cert.pem``,
``server-cert.pem`` and ``server-key.pem``, with ``dh-params.pem`` (RFC 7919's ffdhe2048,
:mod:`kubenova.certs.dh_params`), without which each QEMU makes parameters of its own at
start. A certificate and its key must change together
(QEMU reads both when a guest starts), so each issue is written into a directory of its own
and ``KUBENOVA_HOST_CERTIFICATE_DIR`` is a symbolic link that is swapped to it in one rename,
as the kubelet does for the files of a Secret volume. The previous issue's directory stays
until the next swap, for a reader that resolved the link just before. Every directory and file
written gets the group of the link's parent directory, and the key is readable by that group:
in the chart the libvirt pod gives the parent QEMU's group.

The certificate is renewed two thirds into its life, within 15 s when the trust bundle the
kubelet projects into this pod (the ConfigMap ``kubenova-ca``) differs from the one written
(after a CA rotation, QEMU must trust the new CA that signs the console proxy's next client
certificate), and when the agent gets SIGHUP (an administrator who wants a new key now).
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import logging
import os
import pathlib
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubenova.certs import dh_params
from kubenova_agent import credentials

LOG = logging.getLogger(__name__)

DIR_ENV = "KUBENOVA_HOST_CERTIFICATE_DIR"
URL_ENV = "KUBENOVA_HOST_CERTIFICATE_URL"
PATH = "/host-certificate"
CA_FILE = "ca-cert.pem"
CERT_FILE = "server-cert.pem"
KEY_FILE = "server-key.pem"
# How often the renewal thread looks at the dates and the projected trust bundle: a read of one
# small file, so often enough that a CA rotation reaches QEMU soon after the kubelet projects
# the new bundle (itself up to a minute or so after the ConfigMap changed).
CHECK_INTERVAL_S = 15.0
# A renewal that fails is tried again at the next check, well before the certificate expires.
_RENEWAL_DEADLINE_S = 60.0


@dataclasses.dataclass(frozen=True)
class Issued:
    node: str
    not_after: datetime.datetime
    renew_after: datetime.datetime
    trust_bundle: bytes


def url_from_env() -> str:
    """The operator's ``/host-certificate``: as set, or beside the credentials URL."""
    explicit = os.environ.get(URL_ENV)
    if explicit:
        return explicit
    base = os.environ.get(credentials.URL_ENV, "")
    return base.rsplit("/", 1)[0] + PATH if base else ""


def signing_request(node: str, addresses: Sequence[str] = ()) -> tuple[bytes, bytes]:
    """A new EC P-256 key (PEM, PKCS#8) and a signing request for it, asking for ``node`` as
    the common name and DNS name and for each of ``addresses`` (IP addresses; anything else is
    left out) as an IP SAN."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node or "host")])
    )
    alt_names: list[x509.GeneralName] = [x509.DNSName(node)] if node else []
    alt_names += [x509.IPAddress(ip) for ip in _ip_addresses(addresses)]
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    request = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, request.public_bytes(serialization.Encoding.PEM)


def _ip_addresses(
    addresses: Sequence[str],
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    found = []
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            continue  # a name: the node's name is asked for already
        if ip not in found:
            found.append(ip)
    return found


class HostCertificate:
    """Obtains, writes and renews one host's console certificate."""

    def __init__(
        self,
        directory: pathlib.Path,
        url: str,
        *,
        node: str,
        addresses: Sequence[str] = (),
        ca_file: str = credentials.DEFAULT_CA_FILE,
        token_file: str = credentials.DEFAULT_TOKEN_FILE,
        now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self.directory = directory
        self._url = url
        self._node = node
        self._addresses = tuple(addresses)
        self._ca_file = ca_file
        self._token_file = token_file
        self._now = now
        self.issued: Issued | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._forced = False
        self._thread: threading.Thread | None = None

    def obtain(self, deadline_s: float = credentials.DEFAULT_DEADLINE_S) -> Issued:
        """A new key and certificate, written; :class:`credentials.CredentialsError` when the
        operator refuses or does not answer before ``deadline_s``."""
        key_pem, request_pem = signing_request(self._node, self._addresses)
        body = credentials.with_retries(
            "host certificate",
            self._url,
            lambda request_id: credentials.post(
                self._url,
                self._ca_file,
                self._token_file,
                request_id,
                request_pem,
                "application/pkcs10",
            ),
            deadline_s=deadline_s,
        )
        try:
            cert_pem = str(body["certificate"]).encode()
            trust = str(body["caBundle"]).encode()
            certificate = x509.load_pem_x509_certificate(cert_pem)
            renew_after = _parse_time(str(body["renewAfter"]))
        except (KeyError, ValueError) as exc:
            raise credentials.CredentialsError(f"{self._url}: a malformed answer: {exc}") from exc
        key = serialization.load_pem_private_key(key_pem, password=None)
        if certificate.public_key() != key.public_key():
            raise credentials.CredentialsError(f"{self._url}: the certificate is not our key's")
        write_generation(
            self.directory,
            {
                CA_FILE: trust,
                CERT_FILE: cert_pem,
                KEY_FILE: key_pem,
                # Without it every QEMU that starts generates parameters of its own.
                dh_params.DH_PARAMS_FILE: dh_params.FFDHE2048_PEM,
            },
        )
        self.issued = Issued(
            str(body.get("node", self._node)), certificate.not_valid_after_utc, renew_after, trust
        )
        LOG.info(
            "host certificate of %s written to %s: valid until %s, renewed from %s",
            self.issued.node,
            self.directory,
            self.issued.not_after.isoformat(),
            renew_after.isoformat(),
        )
        return self.issued

    def due(self) -> str | None:
        """Why the certificate should be issued again now, or None."""
        if self.issued is None:
            return "none was issued yet"
        if self._now() >= self.issued.renew_after:
            return f"two thirds of its life passed at {self.issued.renew_after.isoformat()}"
        try:
            projected = pathlib.Path(self._ca_file).read_bytes()
        except OSError:
            return None  # the kubelet is swapping it; look again at the next check
        if projected.strip() and projected.strip() != self.issued.trust_bundle.strip():
            return "the trust bundle changed (a CA rotation)"
        return None

    def renew_if_due(
        self, on_renewed: Callable[[], object] = lambda: None, *, force: bool = False
    ) -> bool:
        """Issue again if :meth:`due` (or ``force``); failures are logged and tried at the
        next check."""
        why = "asked to (SIGHUP)" if force else self.due()
        if why is None:
            return False
        LOG.info("renewing the host certificate: %s", why)
        try:
            self.obtain(deadline_s=_RENEWAL_DEADLINE_S)
        except (credentials.CredentialsError, OSError) as exc:
            # OSError: the files could not be written (a full disk); the old ones stay.
            LOG.error("could not renew the host certificate (trying again later): %s", exc)
            return False
        on_renewed()
        return True

    def start_renewing(
        self, on_renewed: Callable[[], object], interval_s: float = CHECK_INTERVAL_S
    ) -> None:
        """Check every ``interval_s`` on a thread of its own; :meth:`renew_soon` wakes it."""

        def loop() -> None:
            while True:
                self._wake.wait(interval_s)
                if self._stop.is_set():
                    return
                forced, self._forced = self._forced, False
                self._wake.clear()
                self.renew_if_due(on_renewed, force=forced)

        self._thread = threading.Thread(target=loop, name="host-certificate", daemon=True)
        self._thread.start()

    def renew_soon(self) -> None:
        """Renew now, whatever the dates say (an administrator's SIGHUP); safe from a signal
        handler, as it only wakes the renewal thread."""
        self._forced = True
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5.0)


def write_generation(link: pathlib.Path, files: dict[str, bytes]) -> pathlib.Path:
    """Write ``files`` into a new directory beside ``link`` and point ``link`` at it in one
    rename; the key (``*-key.pem``) is readable by the owner and the group only. Returns the
    new directory."""
    parent = link.parent
    parent.mkdir(parents=True, exist_ok=True)
    # Everything gets the parent's group (QEMU's, in the chart), readable by it and by nobody
    # else: set explicitly, as the set-group-ID bit a directory would pass on is cleared by a
    # chmod from a process without CAP_FSETID, such as the agent's container.
    group = parent.stat().st_gid
    generation = pathlib.Path(tempfile.mkdtemp(prefix=f".{link.name}-", dir=parent))
    os.chown(generation, -1, group)
    generation.chmod(0o750)
    for name, content in files.items():
        mode = 0o640 if name.endswith("-key.pem") else 0o644
        fd = os.open(generation / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            os.fchown(handle.fileno(), -1, group)
            os.fchmod(handle.fileno(), mode)
            handle.write(content)
    previous = os.readlink(link) if link.is_symlink() else None
    if link.exists() and not link.is_symlink():
        # A directory written by hand or by an older layout: the link takes its place.
        shutil.rmtree(link)
    staged = parent / f".{link.name}.link"
    staged.unlink(missing_ok=True)
    staged.symlink_to(generation.name)
    os.replace(staged, link)
    for old in parent.glob(f".{link.name}-*"):
        if old.name not in (generation.name, previous):
            shutil.rmtree(old, ignore_errors=True)
    return generation


def _parse_time(text: str) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} names no time zone")
    return moment
