"""Have cert-manager sign a certificate signing request: a ``cert-manager.io/v1``
CertificateRequest created, waited for and deleted.

:class:`CertificateRequester` creates the request (``spec.request`` is the PEM signing request,
base64, as the API wants it), polls it until its ``Ready`` condition is True and
``status.certificate`` is there, for at most ``timeout_s``, and deletes it whatever came of
it: the certificate is handed to the caller, and a request kept would only pile up (cert-manager
keeps no history that anyone reads). ``Denied`` (an approver said no), ``Failed`` (the issuer
could not sign) and ``InvalidRequest`` end the wait at once with :class:`RequestFailed`, whose
message carries cert-manager's reason and message; so does a request still pending at the
deadline.

The apiserver is reached through :class:`CertificateRequests`, a Protocol that unit tests fake;
:class:`KubeCertificateRequests` is the real one (kubernetes' CustomObjectsApi).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from kubernetes import client as k8s_client
from kubernetes.client import exceptions as k8s_exceptions

LOG = logging.getLogger(__name__)

GROUP = "cert-manager.io"
VERSION = "v1"
PLURAL = "certificaterequests"
ISSUER_KINDS = ("Issuer", "ClusterIssuer")
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_POLL_S = 0.5
# A CertificateRequest's name is a DNS subdomain (253 characters); a node's name may be as
# long, so the prefix is cut to leave room for the suffix.
_MAX_PREFIX = 240
MANAGED_BY = {"app.kubernetes.io/managed-by": "kubenova-operator"}


@dataclasses.dataclass(frozen=True)
class IssuerRef:
    """The cert-manager issuer that signs: an Issuer in the operator's namespace or a
    ClusterIssuer (or an external issuer's kind, in its own ``group``)."""

    name: str
    kind: str = "Issuer"
    group: str = GROUP

    @classmethod
    def from_dict(cls, raw: object, where: str) -> IssuerRef:
        """``{"name": ..., "kind": ..., "group": ...}``; ValueError naming ``where`` and what
        is wrong."""
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where} must be a JSON object with name, kind and group")
        unknown = sorted(set(raw) - {"name", "kind", "group"})
        if unknown:
            raise ValueError(f"{where} has unknown fields: {', '.join(unknown)}")
        fields = {key: raw.get(key, default) for key, default in _DEFAULTS.items()}
        for key, value in fields.items():
            if not isinstance(value, str) or not value:
                raise ValueError(f"{where}.{key} must be a non-empty string, not {value!r}")
        if fields["group"] == GROUP and fields["kind"] not in ISSUER_KINDS:
            raise ValueError(
                f"{where}.kind must be one of {', '.join(ISSUER_KINDS)} in group {GROUP},"
                f" not {fields['kind']!r}"
            )
        return cls(name=fields["name"], kind=fields["kind"], group=fields["group"])

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind, "group": self.group}


_DEFAULTS = {"name": "", "kind": "Issuer", "group": GROUP}


class CertificateRequests(Protocol):
    """The CertificateRequests of one namespace, as the requester needs them."""

    def create(self, body: Mapping[str, Any]) -> None: ...

    def get(self, name: str) -> Mapping[str, Any] | None:
        """The object, None when there is none."""
        ...

    def delete(self, name: str) -> None:
        """Delete it; no error when it is gone already."""
        ...


class KubeCertificateRequests:
    def __init__(self, namespace: str, api_client: k8s_client.ApiClient | None = None) -> None:
        self.namespace = namespace
        self._api = k8s_client.CustomObjectsApi(api_client or k8s_client.ApiClient())

    def create(self, body: Mapping[str, Any]) -> None:
        self._api.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, dict(body)
        )

    def get(self, name: str) -> Mapping[str, Any] | None:
        try:
            found: Any = self._api.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name
            )
        except k8s_exceptions.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(found)

    def delete(self, name: str) -> None:
        try:
            self._api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except k8s_exceptions.ApiException as exc:
            if exc.status != 404:
                raise


class RequestFailed(RuntimeError):
    """cert-manager did not sign: the message says which request and why."""


@dataclasses.dataclass(frozen=True)
class Issued:
    """What cert-manager answered: the certificate (PEM, maybe with its chain) and the CA
    (PEM; empty when the issuer does not say)."""

    certificate_pem: bytes
    ca_pem: bytes


def go_duration(duration: datetime.timedelta) -> str:
    """``duration`` as Go's time.ParseDuration reads it: ``720h``, or seconds when it is not
    a whole number of hours."""
    seconds = int(duration.total_seconds())
    return f"{seconds // 3600}h" if seconds % 3600 == 0 else f"{seconds}s"


def request_body(
    name: str,
    csr_pem: bytes,
    issuer_ref: IssuerRef,
    usages: Sequence[str],
    duration: datetime.timedelta,
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CertificateRequest",
        "metadata": {"name": name, "labels": dict(MANAGED_BY)},
        "spec": {
            "request": base64.b64encode(csr_pem).decode(),
            "issuerRef": issuer_ref.as_dict(),
            "usages": list(usages),
            "duration": go_duration(duration),
            "isCA": False,
        },
    }


def outcome(found: Mapping[str, Any]) -> Issued | str | None:
    """The request's state: :class:`Issued` once signed, a sentence saying why it never will
    be, or None while it is pending."""
    status = found.get("status") or {}
    conditions = {
        str(cond.get("type")): cond
        for cond in status.get("conditions") or []
        if isinstance(cond, Mapping)
    }
    for kind in ("Denied", "InvalidRequest"):
        cond = conditions.get(kind)
        if cond is not None and cond.get("status") == "True":
            return f"{kind}: {_reason(cond)}"
    ready = conditions.get("Ready")
    if ready is not None and ready.get("status") == "False" and ready.get("reason") == "Failed":
        return f"Failed: {_reason(ready)}"
    certificate = status.get("certificate")
    if ready is not None and ready.get("status") == "True" and certificate:
        ca = status.get("ca") or ""
        return Issued(base64.b64decode(certificate), base64.b64decode(ca) if ca else b"")
    return None


def _reason(condition: Mapping[str, Any]) -> str:
    reason = str(condition.get("reason") or "no reason given")
    message = str(condition.get("message") or "")
    return f"{reason} ({message})" if message else reason


class CertificateRequester:
    """Signs signing requests through ``issuer_ref``, one CertificateRequest each."""

    def __init__(
        self,
        requests: CertificateRequests,
        issuer_ref: IssuerRef,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        poll_s: float = DEFAULT_POLL_S,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        suffix: Callable[[], str] = lambda: secrets.token_hex(3),
    ) -> None:
        self.issuer_ref = issuer_ref
        self._requests = requests
        self._timeout_s = timeout_s
        self._poll_s = poll_s
        self._sleep = sleep
        self._monotonic = monotonic
        self._suffix = suffix

    def sign(
        self,
        name_prefix: str,
        csr_pem: bytes,
        *,
        usages: Sequence[str],
        duration: datetime.timedelta,
    ) -> Issued:
        """The certificate cert-manager signs for ``csr_pem``; :class:`RequestFailed` when it
        refuses or does not answer within the timeout, the client's error when the apiserver
        cannot be asked."""
        name = f"{name_prefix[:_MAX_PREFIX].rstrip('-.')}-{self._suffix()}"
        self._requests.create(request_body(name, csr_pem, self.issuer_ref, usages, duration))
        try:
            return self._wait(name)
        finally:
            try:
                self._requests.delete(name)
            except Exception:
                LOG.warning("could not delete CertificateRequest %s", name, exc_info=True)

    def _wait(self, name: str) -> Issued:
        deadline = self._monotonic() + self._timeout_s
        issuer = f"{self.issuer_ref.kind} {self.issuer_ref.name}"
        while True:
            found = self._requests.get(name)
            if found is None:
                raise RequestFailed(f"CertificateRequest {name} disappeared before {issuer} signed")
            state = outcome(found)
            if isinstance(state, Issued):
                return state
            if isinstance(state, str):
                raise RequestFailed(f"cert-manager did not sign CertificateRequest {name}: {state}")
            if self._monotonic() >= deadline:
                raise RequestFailed(
                    f"CertificateRequest {name} was not signed by {issuer} within"
                    f" {self._timeout_s:.0f} s: is cert-manager running, and is the request"
                    " approved?"
                )
            self._sleep(self._poll_s)
