"""The operator's certificate pass: the CA, the servers' certificates, the APIServices'
``caBundle`` and the trust ConfigMaps' ``ca.crt``, made and renewed from one periodic task
(Nova's nova-cert, run where kopf runs).

One pass (:meth:`Renewer.run_once`):

1. the CA in the Secret ``kubenova-ca``, made when missing and rotated with an overlap once two
   thirds of its life have passed (:func:`kubenova.certs.store.rotate_if_due`);
2. each certificate of :class:`RenewalSettings.certificates`, issued when missing or due
   (:mod:`kubenova.certs.issuer`), beside the current trust bundle;
3. each APIService of :class:`RenewalSettings.apiservices` given that trust bundle as its
   ``caBundle`` when it holds another;
4. each ConfigMap of :class:`RenewalSettings.configmaps` given it as its ``ca.crt`` when it
   holds another (:mod:`kubenova.certs.trust_configmaps`).

Every pass reads everything again and writes only what differs, so a pass that fails halfway
is finished by the next, and a Secret deleted by hand is back within one interval.

When cert-manager issues (:mod:`kubenova.certs.issuer_settings`), steps 1 and 2 are
cert-manager's: the pass makes no CA and issues nothing. The trust bundle is then the union of
the ``ca.crt`` of the Secrets cert-manager writes (:mod:`kubenova.certs.trust_sources`),
published in the same places: the ConfigMap ``kubenova-ca``, the APIServices' ``caBundle``
and the trust ConfigMaps' ``ca.crt``. A pass that finds no CA in any of those Secrets yet
publishes nothing and waits for the next.

Settings (environment; the chart sets them):

- ``KUBENOVA_CERTIFICATES``: a JSON list of certificates,
  ``[{"secret": "kubenova-console-tls", "purpose": "serving", "dnsNames": [...],
  "validityHours": 720}, {"secret": "kubenova-console-x509", "purpose": "console-client"}]``.
  Unset or empty: the pass is off.
- ``KUBENOVA_CERTIFICATES_APISERVICES``: comma-separated APIService names whose caBundle
  follows the CA.
- ``KUBENOVA_CERTIFICATES_CONFIGMAPS``: comma-separated ``NAMESPACE/NAME`` of ConfigMaps whose
  ``ca.crt`` follows the CA (``kube-public/kubenova-ec2-api``, which the chart renders).
- ``KUBENOVA_CERTIFICATES_CHECK_INTERVAL`` (300): seconds between passes.
- ``POD_NAMESPACE``: where the CA and the Secrets live (default ``default``).
- ``KUBENOVA_CERTIFICATES_ISSUER`` and the variables beside it: who issues
  (:mod:`kubenova.certs.issuer_settings`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
from collections.abc import Callable, Mapping

from kubenova.certs import (
    authority,
    issuer,
    issuer_settings,
    store,
    trust_configmaps,
    trust_sources,
)
from kubenova.k8s import apiservices, objects

LOG = logging.getLogger(__name__)

DEFAULT_CHECK_INTERVAL_S = 300


@dataclasses.dataclass(frozen=True)
class RenewalSettings:
    namespace: str = "default"
    certificates: tuple[issuer.CertificateSpec, ...] = ()
    apiservices: tuple[str, ...] = ()
    configmaps: tuple[trust_configmaps.ConfigMapRef, ...] = ()
    check_interval_s: int = DEFAULT_CHECK_INTERVAL_S
    issuing: issuer_settings.IssuerSettings = issuer_settings.OPERATOR_ISSUES

    @property
    def enabled(self) -> bool:
        return bool(
            self.certificates or self.apiservices or self.configmaps or self.issuing.trust_secrets
        )

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
        issuing = issuer_settings.IssuerSettings.from_env(env)
        if issuing.cert_manager and listed:
            # cert-manager writes those Secrets: issuing them too would fight over them.
            LOG.warning(
                "KUBENOVA_CERTIFICATES is ignored: cert-manager issues the certificates (%s)",
                issuer_settings.ISSUER_ENV,
            )
            listed = []
        return cls(
            namespace=env.get("POD_NAMESPACE") or "default",
            certificates=tuple(issuer.CertificateSpec.from_dict(item) for item in listed),
            apiservices=tuple(
                name.strip()
                for name in env.get("KUBENOVA_CERTIFICATES_APISERVICES", "").split(",")
                if name.strip()
            ),
            configmaps=_configmaps(env.get("KUBENOVA_CERTIFICATES_CONFIGMAPS", "")),
            check_interval_s=(
                _positive(interval, "KUBENOVA_CERTIFICATES_CHECK_INTERVAL")
                if interval
                else DEFAULT_CHECK_INTERVAL_S
            ),
            issuing=issuing,
        )


def _configmaps(raw: str) -> tuple[trust_configmaps.ConfigMapRef, ...]:
    try:
        return tuple(
            trust_configmaps.ConfigMapRef.parse(item) for item in raw.split(",") if item.strip()
        )
    except ValueError as exc:
        raise ValueError(f"KUBENOVA_CERTIFICATES_CONFIGMAPS: {exc}") from exc


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
        configmaps: trust_configmaps.TrustConfigMaps | None = None,
        clock: Callable[[], datetime.datetime] = _now,
    ) -> None:
        if settings.configmaps and configmaps is None:
            raise ValueError("the settings name trust ConfigMaps but no way to write them")
        self.settings = settings
        self._store = store_
        self._bundles = bundles
        self._configmaps = configmaps
        self._clock = clock

    @classmethod
    def from_env(cls) -> Renewer | None:
        """The renewer the environment describes (no network yet), None when it is off.
        The Kubernetes client must be configured first."""
        settings = RenewalSettings.from_env()
        if not settings.enabled:
            return None
        LOG.info(
            "certificates issued by %s: %s in namespace %s, caBundle of %s, ca.crt of %s,"
            " checked every %d s",
            settings.issuing.issuer,
            ", ".join(spec.secret for spec in settings.certificates)
            or ", ".join(settings.issuing.trust_secrets)
            or "none",
            settings.namespace,
            ", ".join(settings.apiservices) or "no APIService",
            ", ".join(str(ref) for ref in settings.configmaps) or "no ConfigMap",
            settings.check_interval_s,
        )
        return cls(
            settings,
            objects.NamespacedObjects(settings.namespace),
            apiservices.KubeAPIServices(),
            configmaps=trust_configmaps.KubeTrustConfigMaps(),
        )

    def run_once(self) -> list[issuer.Outcome]:
        if self.settings.issuing.cert_manager:
            self._publish_cert_managers_trust()
            return []
        now = self._clock()
        longest = max(
            (spec.validity for spec in self.settings.certificates),
            default=authority.MAX_LEAF_VALIDITY,
        )
        trust = store.rotate_if_due(self._store, now=now, leaf_lifetime=longest)
        outcomes = issuer.ensure_all(self._store, self.settings.certificates, trust, now)
        self._give_apiservices(trust.bundle_pem())
        self._publish(trust.bundle_pem())
        return outcomes

    def _publish_cert_managers_trust(self) -> None:
        """The union of the CAs in cert-manager's Secrets, wherever the bundle goes."""
        union = trust_sources.union_of_secrets(self._store, self.settings.issuing.trust_secrets)
        for name, why in union.missing:
            LOG.info("no CA from Secret %s/%s: %s", self._store.namespace, name, why)
        if not union.pem:
            LOG.warning(
                "no CA in the Secrets of cert-manager's certificates (%s) yet: the trust bundle"
                " waits for the next pass",
                ", ".join(self.settings.issuing.trust_secrets) or "none named",
            )
            return
        store.publish_bundle(self._store, union.pem)
        self._give_apiservices(union.pem)
        self._publish(union.pem)

    def _give_apiservices(self, pem: bytes) -> None:
        for name in self.settings.apiservices:
            current = self._bundles.ca_bundle(name)
            if current is None:
                LOG.debug("no APIService %s yet: its caBundle waits for the next pass", name)
            elif current != pem:
                self._bundles.set_ca_bundle(name, pem)
                LOG.info("gave APIService %s Kubenova's CA certificates as its caBundle", name)

    def _publish(self, pem: bytes) -> None:
        """Each trust ConfigMap given ``pem`` as its ``ca.crt`` when it holds another."""
        if self._configmaps is None:
            return
        for ref in self.settings.configmaps:
            current = self._configmaps.ca_bundle(ref)
            if current is None:
                LOG.debug("no ConfigMap %s yet: its ca.crt waits for the next pass", ref)
            elif current != pem:
                self._configmaps.set_ca_bundle(ref, pem)
                LOG.info("published Kubenova's CA certificates in ConfigMap %s as ca.crt", ref)
