"""ConfigMaps outside the operator's namespace whose ``ca.crt`` follows Kubenova's CA.

The chart renders such a ConfigMap with what it knows: ``kube-public/kubenova-ec2-api`` holds
the EC2 API's ``endpoint`` and ``region``, which ``kubectl nova ec2-credentials create`` reads.
The CA that signs the endpoint is another matter: it lives in a Secret the operator makes and
rotates, so Helm cannot render it. The operator's certificate pass (:mod:`kubenova.certs.renewal`)
writes the trust bundle into each such ConfigMap as ``ca.crt`` whenever it differs, as it writes
the APIServices' ``caBundle`` (:mod:`kubenova.k8s.apiservices`); a user who asks for credentials
after a CA rotation gets the new bundle.

Only ``ca.crt`` is written, with a JSON merge patch, so the chart's keys stay as Helm wrote them
and Helm keeps owning them: Helm 4 applies server-side, and a field it never set is not its to
drop; Helm 3's three-way merge leaves alone a key that neither manifest names. A ConfigMap that
does not exist (yet, or any more) is left alone: the operator never makes one, so uninstalling
the chart removes it for good. RBAC: ``get`` and ``patch`` on those ConfigMaps, by name.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Protocol

from kubernetes import client as k8s_client
from kubernetes.client import exceptions as k8s_exceptions

CA_KEY = "ca.crt"
# A namespace is a DNS label; a ConfigMap's name a DNS subdomain.
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@dataclasses.dataclass(frozen=True)
class ConfigMapRef:
    """One ConfigMap, by namespace and name."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> ConfigMapRef:
        """``NAMESPACE/NAME``; ValueError saying what is wrong with ``text``."""
        namespace, slash, name = text.strip().partition("/")
        if not slash or not _NAMESPACE.match(namespace) or not _NAME.match(name):
            raise ValueError(
                f"a ConfigMap is named NAMESPACE/NAME (lower-case DNS names), e.g."
                f" kube-public/kubenova-ec2-api, not {text!r}"
            )
        return cls(namespace, name)


class TrustConfigMaps(Protocol):
    """What the certificate pass needs of those ConfigMaps; :class:`KubeTrustConfigMaps` is
    the real one."""

    def ca_bundle(self, ref: ConfigMapRef) -> bytes | None:
        """The ConfigMap's ``ca.crt`` (empty when it has none), None when there is no such
        ConfigMap."""
        ...

    def set_ca_bundle(self, ref: ConfigMapRef, pem: bytes) -> None: ...


class KubeTrustConfigMaps:
    def __init__(self, api_client: k8s_client.ApiClient | None = None) -> None:
        self._core = k8s_client.CoreV1Api(api_client or k8s_client.ApiClient())

    def ca_bundle(self, ref: ConfigMapRef) -> bytes | None:
        try:
            found: Any = self._core.read_namespaced_config_map(ref.name, ref.namespace)
        except k8s_exceptions.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return str((found.data or {}).get(CA_KEY, "")).encode()

    def set_ca_bundle(self, ref: ConfigMapRef, pem: bytes) -> None:
        # A merge patch sets this one key, with or without a data map there already; the
        # client would otherwise send a dict as a JSON patch, which the apiserver refuses.
        body: Any = {"data": {CA_KEY: pem.decode()}}
        self._core.patch_namespaced_config_map(
            ref.name, ref.namespace, body, _content_type="application/merge-patch+json"
        )
