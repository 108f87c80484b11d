"""Who issues Kubenova's certificates: the operator, as its own CA (the default), or
cert-manager.

Settings (environment; the chart sets them when ``certificates.certManager.enabled``):

- ``KUBENOVA_CERTIFICATES_ISSUER``: ``operator`` (default) or ``cert-manager``.
- ``KUBENOVA_CERTIFICATES_ISSUER_REF``: with ``cert-manager``, the issuer that signs the hosts'
  certificates and the exchange's, as JSON ``{"name": ..., "kind": "Issuer" | "ClusterIssuer",
  "group": "cert-manager.io"}`` (kind and group may be left out).
- ``KUBENOVA_CERTIFICATES_TRUST_SECRETS``: with ``cert-manager``, comma-separated names of the
  Secrets (in the operator's namespace) cert-manager writes the servers' certificates into;
  the union of their ``ca.crt`` is the trust bundle (:mod:`kubenova.certs.trust_sources`).

Errors name the variable and what is wrong with it.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from collections.abc import Mapping

from kubenova.certs import cert_manager

ISSUER_ENV = "KUBENOVA_CERTIFICATES_ISSUER"
ISSUER_REF_ENV = "KUBENOVA_CERTIFICATES_ISSUER_REF"
TRUST_SECRETS_ENV = "KUBENOVA_CERTIFICATES_TRUST_SECRETS"


class Issuer(enum.StrEnum):
    OPERATOR = "operator"
    CERT_MANAGER = "cert-manager"


@dataclasses.dataclass(frozen=True)
class IssuerSettings:
    issuer: Issuer = Issuer.OPERATOR
    issuer_ref: cert_manager.IssuerRef | None = None
    trust_secrets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.issuer is Issuer.CERT_MANAGER and self.issuer_ref is None:
            raise ValueError(f"{ISSUER_REF_ENV} must name the issuer when cert-manager issues")

    @property
    def cert_manager(self) -> bool:
        return self.issuer is Issuer.CERT_MANAGER

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> IssuerSettings:
        env = os.environ if environ is None else environ
        raw_issuer = env.get(ISSUER_ENV, "").strip() or Issuer.OPERATOR.value
        try:
            issuer = Issuer(raw_issuer)
        except ValueError:
            choices = ", ".join(choice.value for choice in Issuer)
            raise ValueError(f"{ISSUER_ENV} must be one of {choices}, not {raw_issuer!r}") from None
        if issuer is Issuer.OPERATOR:
            return cls()
        raw_ref = env.get(ISSUER_REF_ENV, "").strip()
        if not raw_ref:
            raise ValueError(f"{ISSUER_REF_ENV} must name the issuer when {ISSUER_ENV}={issuer}")
        try:
            parsed = json.loads(raw_ref)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{ISSUER_REF_ENV} is not JSON: {exc}") from exc
        return cls(
            issuer=issuer,
            issuer_ref=cert_manager.IssuerRef.from_dict(parsed, ISSUER_REF_ENV),
            trust_secrets=tuple(
                name.strip() for name in env.get(TRUST_SECRETS_ENV, "").split(",") if name.strip()
            ),
        )


# The default: the operator is its own CA.
OPERATOR_ISSUES = IssuerSettings()
