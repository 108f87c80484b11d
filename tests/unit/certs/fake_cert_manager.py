"""A fake cert-manager for the CertificateRequest client: it keeps the requests created, and
answers the first read of each as the controller would, by ``behaviour``:

* ``sign``: signs the request's CSR with a real CA (``kubenova.certs.authority``), for the
  subject and names the CSR asks, and sets ``Ready`` with ``status.certificate`` and
  ``status.ca`` (base64 PEM, as cert-manager writes them);
* ``deny``: an approver's ``Denied`` condition;
* ``fail``: ``Ready`` False with reason ``Failed`` (the issuer could not sign);
* ``silent``: nothing ever happens (no controller runs).
"""

from __future__ import annotations

import base64
import copy
import datetime
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubenova.certs import authority


class FakeCertificateRequests:
    def __init__(self, ca: authority.KeyPair | None = None, behaviour: str = "sign") -> None:
        self.ca = ca or authority.issue_ca()
        self.behaviour = behaviour
        self.items: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.reads = 0

    def create(self, body: Mapping[str, Any]) -> None:
        name = body["metadata"]["name"]
        if name in self.items:
            raise RuntimeError(f"409: CertificateRequest {name} exists")
        self.items[name] = copy.deepcopy(dict(body))
        self.created.append(copy.deepcopy(dict(body)))

    def get(self, name: str) -> Mapping[str, Any] | None:
        self.reads += 1
        found = self.items.get(name)
        if found is None:
            return None
        if "status" not in found and self.behaviour != "silent":
            found["status"] = self._answer(found["spec"])
        return copy.deepcopy(found)

    def delete(self, name: str) -> None:
        self.deleted.append(name)
        self.items.pop(name, None)

    def _answer(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        if self.behaviour == "deny":
            return {
                "conditions": [
                    {"type": "Approved", "status": "False"},
                    {
                        "type": "Denied",
                        "status": "True",
                        "reason": "PolicyDenied",
                        "message": "hosts may not ask for this",
                    },
                    {"type": "Ready", "status": "False", "reason": "Denied"},
                ]
            }
        if self.behaviour == "fail":
            return {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "Failed",
                        "message": "the CA Secret has no key",
                    }
                ]
            }
        return {
            "conditions": [{"type": "Ready", "status": "True", "reason": "Issued"}],
            "certificate": base64.b64encode(self._sign(spec)).decode(),
            "ca": base64.b64encode(self.ca.cert_pem()).decode(),
        }

    def _sign(self, spec: Mapping[str, Any]) -> bytes:
        csr = x509.load_pem_x509_csr(base64.b64decode(spec["request"]))
        common_name = str(csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
        try:
            alt_names = list(
                csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            )
        except x509.ExtensionNotFound:
            alt_names = []
        purpose = (
            ExtendedKeyUsageOID.SERVER_AUTH
            if "server auth" in spec["usages"]
            else ExtendedKeyUsageOID.CLIENT_AUTH
        )
        hours = int(str(spec["duration"]).removesuffix("h"))
        certificate = authority.sign_leaf(
            self.ca,
            csr.public_key(),  # type: ignore[arg-type]
            common_name,
            alt_names,
            purpose=purpose,
            validity=datetime.timedelta(hours=hours),
            key_encipherment="key encipherment" in spec["usages"],
        )
        return certificate.public_bytes(serialization.Encoding.PEM)


class Clock:
    """A monotonic clock that the requester's sleep moves forward."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
