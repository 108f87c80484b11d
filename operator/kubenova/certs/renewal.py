"""The operator's certificate pass: the CA, the servers' certificates and the APIServices'
``caBundle``, made and renewed from one periodic task (Nova's nova-cert, run where kopf runs).

One pass (:meth:`Renewer.run_once`):

1. the CA in the Secret ``kubenova-ca``, made when missing and rotated with an overlap once two
   thirds of its life have passed (:func:`kubenova.certs.store.rotate_if_due`);
2. each certificate of :class:`RenewalSettings.certificates`, issued when missing or due
   (:mod:`kubenova.certs.issuer`), beside the current trust bundle;
3. each APIService of :class:`RenewalSettings.apiservices` given that trust bundle as its
   ``caBundle`` when it holds another.

Every pass reads everything again and writes only what differs, so a pass that fails halfway
is finished by the next, and a Secret deleted by hand is back within one interval.

Settings (environment; the chart sets them):

- ``KUBENOVA_CERTIFICATES``: a JSON list of certificates,
  ``[{"secret": "kubenova-console-tls", "purpose": "serving", "dnsNames": [...],
  "validityHours": 720}, {"secret": "kubenova-console-x509", "purpose": "console-client"}]``.
  Unset or empty: the pass is off.
- ``KUBENOVA_CERTIFICATES_APISERVICES``: comma-separated APIService names whose caBundle
  follows the CA.
- ``KUBENOVA_CERTIFICATES_CHECK_INTERVAL`` (300): seconds between passes.
- ``POD_NAMESPACE``: where the CA and the Secrets live (default ``default``).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
from collections.abc import Callable, Mapping

from kubenova.certs import authority, issuer, store
from kubenova.k8s import apiservices, objects

LOG = logging.getLogger(__name__)

DEFAULT_CHECK_INTERVAL_S = 300


@dataclasses.dataclass(frozen=True)
class RenewalSettings:
    namespace: str = "default"
    certificates: tuple[issuer.CertificateSpec, ...] = ()
    apiservices: tuple[str, ...] = ()
    check_interval_s: int = DEFAULT_CHECK_INTERVAL_S

    @property
    def enabled(self) -> bool:
        return bool(self.certificates or self.apiservices)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RenewalSettings:
        env = os.environ if environ is None else environ
        raw = env.get("KUBENOVA_CERTIFICATES", "").strip()
        try:
            listed = json.loads(raw) if raw else []
        except json.JSONDecodeError as exc:
            raise ValueError(f"KUBENOVA_CERTIFICATES is not JSON: {exc}") from exc
        if not isinstance(listed, list) or not all(isinstance(item, dict) for item in listed):
            raise ValueError("KUBENOVA_CERTIFICATES must be a JSON list of objects")
        interval = env.get("KUBENOVA_CERTIFICATES_CHECK_INTERVAL", "")
        return cls(
            namespace=env.get("POD_NAMESPACE") or "default",
            certificates=tuple(issuer.CertificateSpec.from_dict(item) for item in listed),
            apiservices=tuple(
                name.strip()
                for name in env.get("KUBENOVA_CERTIFICATES_APISERVICES", "").split(",")
                if name.strip()
            ),
            check_interval_s=(
                _positive(interval, "KUBENOVA_CERTIFICATES_CHECK_INTERVAL")
                if interval
                else DEFAULT_CHECK_INTERVAL_S
            ),
        )


def _positive(raw: str, name: str) -> int:
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a whole number of seconds, got {raw!r}") from exc
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Renewer:
    """One pass over the CA, the certificates and the APIServices (see the module's doc)."""

    def __init__(
        self,
        settings: RenewalSettings,
        store_: objects.Store,
        bundles: apiservices.CABundles,
        *,
        clock: Callable[[], datetime.datetime] = _now,
    ) -> None:
        self.settings = settings
        self._store = store_
        self._bundles = bundles
        self._clock = clock

    @classmethod
    def from_env(cls) -> Renewer | None:
        """The renewer the environment describes (no network yet), None when it is off.
        The Kubernetes client must be configured first."""
        settings = RenewalSettings.from_env()
        if not settings.enabled:
            return None
        LOG.info(
            "certificates: %s in namespace %s, caBundle of %s, checked every %d s",
            ", ".join(spec.secret for spec in settings.certificates) or "none",
            settings.namespace,
            ", ".join(settings.apiservices) or "no APIService",
            settings.check_interval_s,
        )
        return cls(
            settings,
            objects.NamespacedObjects(settings.namespace),
            apiservices.KubeAPIServices(),
        )

    def run_once(self) -> list[issuer.Outcome]:
        now = self._clock()
        longest = max(
            (spec.validity for spec in self.settings.certificates),
            default=authority.MAX_LEAF_VALIDITY,
        )
        trust = store.rotate_if_due(self._store, now=now, leaf_lifetime=longest)
        outcomes = issuer.ensure_all(self._store, self.settings.certificates, trust, now)
        pem = trust.bundle_pem()
        for name in self.settings.apiservices:
            current = self._bundles.ca_bundle(name)
            if current is None:
                LOG.debug("no APIService %s yet: its caBundle waits for the next pass", name)
            elif current != pem:
                self._bundles.set_ca_bundle(name, pem)
                LOG.info("gave APIService %s Kubenova's CA certificates as its caBundle", name)
        return outcomes
