"""Certificates and keys for the local kube-apiserver, and the admin kubeconfig.

Creates, under ``<state>/pki/`` and only where missing or no longer right:

- ``ca.crt``/``ca.key``: the cluster CA. It signs the serving certificate and client
  certificates, and kube-apiserver trusts it for client authentication (``--client-ca-file``).
- ``apiserver.crt``/``apiserver.key``: the serving certificate, valid for the loopback
  addresses, the in-cluster names of the ``kubernetes`` Service and its cluster IP.
- ``admin.crt``/``admin.key``: a client certificate in group ``system:masters``, which RBAC
  lets do everything; it is what the kubeconfig uses.
- ``sa.key``/``sa.pub``: the key pair that signs and verifies service-account tokens.
- ``front-proxy-ca.crt``/``.key``: the request-header CA, a CA of its own as kubeadm makes it,
  so that no client certificate of the cluster CA can pose as the front proxy; and
  ``front-proxy-client.crt``/``.key``, signed by it, which kube-apiserver presents when it
  proxies a request to an aggregated API server (the caller's name in ``X-Remote-User``).
- With ``--node-name``, the node's certificates: a client certificate for each component that
  talks to the apiserver (kube-controller-manager, kube-scheduler, kube-proxy, and the kubelet
  as ``system:node:<name>`` in ``system:nodes``, which the Node authorizer expects), the
  apiserver's client certificate towards kubelets (logs, exec), and the kubelet's serving
  certificate. Each component's kubeconfig goes to ``<state>/kube/<component>.kubeconfig``.

Then writes the admin kubeconfig with every certificate and key embedded, so it works from any
directory. Running it again changes nothing that is still valid: a certificate is reissued only
when it is missing, no longer matches the CA or its key, lacks a name it must carry, or expires
within ``RENEW_BEFORE``. Reissuing the CA reissues everything it signed.

Only the ``cryptography`` package is needed, so it runs before anything else is installed.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import ipaddress
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = datetime.timedelta(days=3650)
LEAF_VALIDITY = datetime.timedelta(days=365)
# Reissue a certificate this long before it expires, so a running stack never meets an expiry.
RENEW_BEFORE = datetime.timedelta(days=30)
RSA_KEY_BITS = 2048

CLUSTER_NAME = "kubenova"
ADMIN_USER = "kubenova-admin"
# RBAC's bootstrap policy binds this group to cluster-admin.
ADMIN_GROUP = "system:masters"
# The first address of kube-apiserver's --service-cluster-ip-range (10.0.0.0/24, see up.sh),
# which the apiserver gives to the `kubernetes` Service.
SERVICE_CLUSTER_IP = "10.0.0.1"

APISERVER_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
APISERVER_IPS = ("127.0.0.1", "::1", SERVICE_CLUSTER_IP)
# The node's components and the users RBAC's bootstrap policy (or the Node authorizer) knows.
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
SCHEDULER_USER = "system:kube-scheduler"
PROXY_USER = "system:kube-proxy"
# The common name of kube-apiserver's front-proxy client certificate, which aggregated API
# servers accept (--requestheader-allowed-names).
FRONT_PROXY_CA = "front-proxy-ca"
FRONT_PROXY_CLIENT_USER = "front-proxy-client"
NODES_GROUP = "system:nodes"


@dataclass(frozen=True)
class LeafSpec:
    """What a certificate signed by the CA must say."""

    name: str
    common_name: str
    organization: str | None
    usage: x509.ObjectIdentifier
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()

    def subject(self) -> x509.Name:
        """The subject name: CN, and O when the certificate carries a group."""
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, self.common_name)]
        if self.organization is not None:
            attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization))
        return x509.Name(attrs)

    def san(self) -> x509.SubjectAlternativeName | None:
        """The subjectAltName extension, or None for a certificate without names."""
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in self.dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in self.ip_addresses]
        return x509.SubjectAlternativeName(names) if names else None


APISERVER = LeafSpec(
    name="apiserver",
    common_name="kube-apiserver",
    organization=None,
    usage=ExtendedKeyUsageOID.SERVER_AUTH,
    dns_names=APISERVER_DNS_NAMES,
    ip_addresses=APISERVER_IPS,
)
ADMIN = LeafSpec(
    name="admin",
    common_name=ADMIN_USER,
    organization=ADMIN_GROUP,
    usage=ExtendedKeyUsageOID.CLIENT_AUTH,
)
# What kube-apiserver presents to aggregated API servers, signed by the front-proxy CA.
FRONT_PROXY_CLIENT = LeafSpec(
    name="front-proxy-client",
    common_name=FRONT_PROXY_CLIENT_USER,
    organization=None,
    usage=ExtendedKeyUsageOID.CLIENT_AUTH,
)
# What kube-apiserver presents to kubelets (`kubectl logs`, `exec`): the kubelet authorizes it
# through the apiserver, where system:masters may do everything.
APISERVER_KUBELET_CLIENT = LeafSpec(
    name="apiserver-kubelet-client",
    common_name="kube-apiserver-kubelet-client",
    organization=ADMIN_GROUP,
    usage=ExtendedKeyUsageOID.CLIENT_AUTH,
)


def apiserver_spec(node_ip: str | None) -> LeafSpec:
    """The serving certificate: also valid for the node's address when the apiserver is
    advertised there (pods reach it through the `kubernetes` Service's endpoint)."""
    if node_ip is None:
        return APISERVER
    return LeafSpec(
        name=APISERVER.name,
        common_name=APISERVER.common_name,
        organization=None,
        usage=APISERVER.usage,
        dns_names=APISERVER.dns_names,
        ip_addresses=(*APISERVER.ip_addresses, node_ip),
    )


def node_client_specs(node_name: str) -> dict[str, LeafSpec]:
    """Each node component's client certificate, by the name of its kubeconfig."""

    def client(name: str, user: str, group: str | None = None) -> LeafSpec:
        return LeafSpec(name, user, group, ExtendedKeyUsageOID.CLIENT_AUTH)

    return {
        "kube-controller-manager": client("kube-controller-manager", CONTROLLER_MANAGER_USER),
        "kube-scheduler": client("kube-scheduler", SCHEDULER_USER),
        "kube-proxy": client("kube-proxy", PROXY_USER),
        "kubelet": client("kubelet", f"system:node:{node_name}", NODES_GROUP),
    }


def kubelet_serving_spec(node_name: str, node_ip: str) -> LeafSpec:
    """The kubelet's serving certificate, which the apiserver checks when it dials the node."""
    return LeafSpec(
        name="kubelet-serving",
        common_name=node_name,
        organization=None,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        dns_names=(node_name, "localhost"),
        ip_addresses=(node_ip, "127.0.0.1"),
    )


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as loaded from or written to disk."""

    cert: x509.Certificate
    key: rsa.RSAPrivateKey


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write a file atomically with the given mode, so readers never see half a key."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_pair(pki: Path, name: str) -> KeyPair | None:
    """Load ``<name>.crt``/``<name>.key``, or None when either is missing or unreadable."""
    try:
        cert = x509.load_pem_x509_certificate((pki / f"{name}.crt").read_bytes())
        key = serialization.load_pem_private_key((pki / f"{name}.key").read_bytes(), None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, rsa.RSAPrivateKey):
        return None
    if cert.public_key() != key.public_key():
        return None
    return KeyPair(cert, key)


def _save_pair(pki: Path, name: str, pair: KeyPair) -> None:
    _write(pki / f"{name}.key", _key_pem(pair.key), 0o600)
    _write(pki / f"{name}.crt", pair.cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _fresh(cert: x509.Certificate) -> bool:
    now = _now()
    return cert.not_valid_before_utc <= now and now + RENEW_BEFORE < cert.not_valid_after_utc


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)


def _issue_ca(common_name: str = f"{CLUSTER_NAME}-ca") -> KeyPair:
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert, key)


def _issue_leaf(ca: KeyPair, spec: LeafSpec) -> KeyPair:
    key = _new_key()
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(spec.subject())
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        # A leaf must not outlive the CA that vouches for it.
        .not_valid_after(min(now + LEAF_VALIDITY, ca.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([spec.usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    san = spec.san()
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return KeyPair(builder.sign(ca.key, hashes.SHA256()), key)


def _leaf_matches(pair: KeyPair, ca: KeyPair, spec: LeafSpec) -> bool:
    """Whether an existing leaf still says what ``spec`` asks and is signed by ``ca``."""
    cert = pair.cert
    try:
        cert.verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    if not _fresh(cert) or cert.subject != spec.subject():
        return False
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    if spec.usage not in eku:
        return False
    want = spec.san()
    try:
        have: x509.SubjectAlternativeName | None = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except x509.ExtensionNotFound:
        have = None
    if want is None:
        return True
    return have is not None and set(want) <= set(have)


def ensure_ca(
    pki: Path, name: str = "ca", common_name: str = f"{CLUSTER_NAME}-ca"
) -> tuple[KeyPair, bool]:
    """Return the CA ``<name>.crt``/``.key``, issuing a new one when missing or near expiry;
    True when it is new."""
    pair = _load_pair(pki, name)
    if pair is not None and _fresh(pair.cert):
        return pair, False
    pair = _issue_ca(common_name)
    _save_pair(pki, name, pair)
    return pair, True


def ensure_leaf(pki: Path, ca: KeyPair, spec: LeafSpec, force: bool = False) -> bool:
    """Make sure ``<spec.name>.crt``/``.key`` are valid for ``spec``; True when (re)issued."""
    pair = _load_pair(pki, spec.name)
    if not force and pair is not None and _leaf_matches(pair, ca, spec):
        return False
    _save_pair(pki, spec.name, _issue_leaf(ca, spec))
    return True


def ensure_service_account_keys(pki: Path) -> bool:
    """Make sure the service-account signing key and its public half exist; True when new.

    There is no expiry to track, and replacing the key would invalidate every token already
    issued, so an existing, readable key is always kept.
    """
    key_path, pub_path = pki / "sa.key", pki / "sa.pub"
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        created = False
    except (OSError, ValueError):
        key = _new_key()
        _write(key_path, _key_pem(key), 0o600)
        created = True
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SystemExit(f"{key_path}: expected an RSA key")
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if created or not pub_path.exists() or pub_path.read_bytes() != pub:
        _write(pub_path, pub, 0o644)
    return created


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# First line of every kubeconfig this script writes: it only ever replaces a file that has it, so a
# KUBECONFIG inherited from the caller's shell (say ~/.kube/config) is never overwritten.
KUBECONFIG_MARKER = "# Admin kubeconfig of the Kubenova local stack, written by hack/kube/pki.py.\n"


# The same for the kubeconfigs of the node's components, which only this script writes.
COMPONENT_KUBECONFIG_MARKER = (
    "# Kubeconfig of a Kubenova local-stack component, by hack/kube/pki.py.\n"
)


def render_kubeconfig(
    server: str,
    ca: bytes,
    cert: bytes,
    key: bytes,
    user: str = ADMIN_USER,
    marker: str = KUBECONFIG_MARKER,
) -> str:
    """A kubeconfig as YAML, with the certificates and key embedded."""
    return (
        marker + "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        f"- name: {CLUSTER_NAME}\n"
        "  cluster:\n"
        f"    server: {server}\n"
        f"    certificate-authority-data: {_b64(ca)}\n"
        "users:\n"
        f"- name: {user}\n"
        "  user:\n"
        f"    client-certificate-data: {_b64(cert)}\n"
        f"    client-key-data: {_b64(key)}\n"
        "contexts:\n"
        f"- name: {CLUSTER_NAME}\n"
        "  context:\n"
        f"    cluster: {CLUSTER_NAME}\n"
        f"    user: {user}\n"
        "    namespace: default\n"
        f"current-context: {CLUSTER_NAME}\n"
        "preferences: {}\n"
    )


def write_kubeconfig(path: Path, pki: Path, server: str) -> bool:
    """Write the admin kubeconfig unless it already says exactly this; True when written."""
    text = render_kubeconfig(
        server,
        (pki / "ca.crt").read_bytes(),
        (pki / "admin.crt").read_bytes(),
        (pki / "admin.key").read_bytes(),
    )
    try:
        current: str | None = path.read_text()
    except FileNotFoundError:
        current = None
    if current == text:
        return False
    if current is not None and not current.startswith(KUBECONFIG_MARKER):
        raise SystemExit(
            f"pki: {path} exists and was not written by this script; refusing to overwrite it"
            " (unset KUBECONFIG or pass --kubeconfig)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, text.encode(), 0o600)
    return True


def write_component_kubeconfig(path: Path, pki: Path, server: str, spec: LeafSpec) -> bool:
    """Write one node component's kubeconfig unless it already says this; True when written."""
    text = render_kubeconfig(
        server,
        (pki / "ca.crt").read_bytes(),
        (pki / f"{spec.name}.crt").read_bytes(),
        (pki / f"{spec.name}.key").read_bytes(),
        user=spec.common_name,
        marker=COMPONENT_KUBECONFIG_MARKER,
    )
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, text.encode(), 0o600)
    return True


def ensure_all(
    state: Path,
    kubeconfig: Path,
    server: str,
    node_name: str | None = None,
    node_ip: str | None = None,
) -> list[str]:
    """Create or refresh everything; returns the names of the files that changed."""
    pki = state / "pki"
    pki.mkdir(parents=True, exist_ok=True)
    os.chmod(pki, 0o700)
    changed: list[str] = []
    ca, new_ca = ensure_ca(pki)
    if new_ca:
        changed.append("ca")
    leaves = [apiserver_spec(node_ip), ADMIN]
    components: dict[str, LeafSpec] = {}
    if node_name is not None:
        if node_ip is None:
            raise SystemExit("pki: --node-name needs --node-ip")
        components = node_client_specs(node_name)
        leaves += [APISERVER_KUBELET_CLIENT, kubelet_serving_spec(node_name, node_ip)]
        leaves += components.values()
    for spec in leaves:
        if ensure_leaf(pki, ca, spec, force=new_ca):
            changed.append(spec.name)
    front_proxy_ca, new_front_proxy_ca = ensure_ca(
        pki, FRONT_PROXY_CA, f"{CLUSTER_NAME}-{FRONT_PROXY_CA}"
    )
    if new_front_proxy_ca:
        changed.append(FRONT_PROXY_CA)
    if ensure_leaf(pki, front_proxy_ca, FRONT_PROXY_CLIENT, force=new_front_proxy_ca):
        changed.append(FRONT_PROXY_CLIENT.name)
    if ensure_service_account_keys(pki):
        changed.append("sa")
    if write_kubeconfig(kubeconfig, pki, server):
        changed.append(str(kubeconfig))
    for name, spec in components.items():
        path = state / "kube" / f"{name}.kubeconfig"
        if write_component_kubeconfig(path, pki, server, spec):
            changed.append(str(path))
    return changed


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    state_default = os.environ.get("KUBENOVA_STATE")
    port = os.environ.get("KUBENOVA_APISERVER_PORT", "6443")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "--state",
        type=Path,
        default=Path(state_default) if state_default else None,
        required=state_default is None,
        help="state directory (default: $KUBENOVA_STATE); files go to <state>/pki",
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="where to write the admin kubeconfig (default: $KUBECONFIG, else <state>/kubeconfig)",
    )
    parser.add_argument(
        "--server",
        default=f"https://127.0.0.1:{port}",
        help="API server URL for the kubeconfig (default: https://127.0.0.1:$KUBENOVA_APISERVER_PORT)",
    )
    parser.add_argument(
        "--node-name",
        default=None,
        help="also make the certificates and kubeconfigs of this node's components",
    )
    parser.add_argument(
        "--node-ip",
        default=None,
        help="the node's address: the apiserver is advertised there and the kubelet serves there",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python hack/kube/pki.py [--state DIR] [--kubeconfig FILE] [--server URL]``."""
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    state: Path = args.state
    kubeconfig: Path | None = args.kubeconfig
    if kubeconfig is None:
        # KUBECONFIG may be a list of files; kubectl writes to the first, and so do we.
        first = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        kubeconfig = Path(first) if first else state / "kubeconfig"
    changed = ensure_all(state, kubeconfig, args.server, args.node_name, args.node_ip)
    print(f"pki: {'updated ' + ', '.join(changed) if changed else 'up to date'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
