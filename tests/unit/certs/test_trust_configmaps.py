"""The trust ConfigMaps (kube-public/kubenova-ec2-api): the certificate pass writes the trust
bundle as their ``ca.crt`` beside the keys the chart rendered, leaves a missing one alone, and
follows the CA when it changes; their names come from the environment as the chart renders
them."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes.client import exceptions as k8s_exceptions

from kubenova.certs import renewal, store, trust_configmaps
from tests.unit.agent_credentials.fakes import FakeObjects

NOW = datetime.datetime(2031, 5, 1, tzinfo=datetime.UTC)
EC2 = trust_configmaps.ConfigMapRef("kube-public", "kubenova-ec2-api")
CHART_KEYS = {"endpoint": "https://ec2.example.com:8788", "region": "kubenova"}
CERTIFICATES = [
    {
        "secret": "kubenova-ec2-api-tls",
        "purpose": "serving",
        "dnsNames": ["kubenova-ec2-api.kubenova-system.svc"],
    }
]


class FakeTrustConfigMaps:
    """ConfigMaps by reference, each a dict of its data, as the real adapter sees them."""

    def __init__(self) -> None:
        self.data: dict[trust_configmaps.ConfigMapRef, dict[str, str]] = {}
        self.writes: list[trust_configmaps.ConfigMapRef] = []

    def ca_bundle(self, ref: trust_configmaps.ConfigMapRef) -> bytes | None:
        found = self.data.get(ref)
        return None if found is None else found.get("ca.crt", "").encode()

    def set_ca_bundle(self, ref: trust_configmaps.ConfigMapRef, pem: bytes) -> None:
        self.writes.append(ref)
        self.data[ref]["ca.crt"] = pem.decode()


class NoAPIServices:
    def ca_bundle(self, name: str) -> bytes | None:
        return None

    def set_ca_bundle(self, name: str, pem: bytes) -> None:
        raise AssertionError("no APIService is configured")


def _renewer(objs: FakeObjects, configmaps: FakeTrustConfigMaps) -> renewal.Renewer:
    settings = renewal.RenewalSettings.from_env(
        {
            "POD_NAMESPACE": "kubenova",
            "KUBENOVA_CERTIFICATES": json.dumps(CERTIFICATES),
            "KUBENOVA_CERTIFICATES_CONFIGMAPS": str(EC2),
        }
    )
    return renewal.Renewer(
        settings, objs, NoAPIServices(), configmaps=configmaps, clock=lambda: NOW
    )


def _published_ca(objs: FakeObjects) -> str:
    return objs.items[("ConfigMap", store.CA_NAME)].data["ca.crt"].decode()


def test_the_pass_adds_the_trust_bundle_beside_the_charts_keys() -> None:
    objs, configmaps = FakeObjects(), FakeTrustConfigMaps()
    configmaps.data[EC2] = dict(CHART_KEYS)
    _renewer(objs, configmaps).run_once()
    assert configmaps.data[EC2] == {**CHART_KEYS, "ca.crt": _published_ca(objs)}
    # The bundle is the CA that signs the endpoint's certificate.
    served = objs.items[("Secret", "kubenova-ec2-api-tls")].data["ca.crt"].decode()
    assert configmaps.data[EC2]["ca.crt"] == served


def test_a_second_pass_writes_nothing_and_a_bundle_changed_by_hand_is_put_back() -> None:
    objs, configmaps = FakeObjects(), FakeTrustConfigMaps()
    configmaps.data[EC2] = dict(CHART_KEYS)
    renewer = _renewer(objs, configmaps)
    renewer.run_once()
    renewer.run_once()
    assert configmaps.writes == [EC2]
    configmaps.data[EC2]["ca.crt"] = "someone else's CA"
    renewer.run_once()
    assert configmaps.data[EC2]["ca.crt"] == _published_ca(objs)


def test_a_new_ca_is_published_at_the_next_pass() -> None:
    objs, configmaps = FakeObjects(), FakeTrustConfigMaps()
    configmaps.data[EC2] = dict(CHART_KEYS)
    renewer = _renewer(objs, configmaps)
    renewer.run_once()
    first = configmaps.data[EC2]["ca.crt"]
    del objs.items[("Secret", store.CA_NAME)]  # lost: a new CA is made
    renewer.run_once()
    assert configmaps.data[EC2]["ca.crt"] == _published_ca(objs) != first


def test_a_configmap_not_there_is_left_alone_and_never_made() -> None:
    objs, configmaps = FakeObjects(), FakeTrustConfigMaps()
    _renewer(objs, configmaps).run_once()
    assert configmaps.writes == []
    assert configmaps.data == {}


def test_the_configmaps_come_from_the_environment_and_turn_the_pass_on() -> None:
    settings = renewal.RenewalSettings.from_env(
        {"KUBENOVA_CERTIFICATES_CONFIGMAPS": " kube-public/kubenova-ec2-api , tools/trust"}
    )
    assert settings.enabled
    assert settings.configmaps == (EC2, trust_configmaps.ConfigMapRef("tools", "trust"))
    assert renewal.RenewalSettings.from_env({}).configmaps == ()


@pytest.mark.parametrize(
    "listed", ["kubenova-ec2-api", "kube-public/", "/kubenova-ec2-api", "Kube-Public/x"]
)
def test_a_badly_named_configmap_is_refused_naming_the_setting(listed: str) -> None:
    with pytest.raises(ValueError, match=r"KUBENOVA_CERTIFICATES_CONFIGMAPS.*NAMESPACE/NAME"):
        renewal.RenewalSettings.from_env({"KUBENOVA_CERTIFICATES_CONFIGMAPS": listed})


def test_a_renewer_with_configmaps_to_keep_needs_the_means_to_write_them() -> None:
    settings = renewal.RenewalSettings(configmaps=(EC2,))
    with pytest.raises(ValueError, match="ConfigMaps"):
        renewal.Renewer(settings, FakeObjects(), NoAPIServices())


class FakeCoreV1Api:
    """read_namespaced_config_map and a merge-patching patch_namespaced_config_map."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, str]] = {}
        self.patches: list[tuple[str, str, Any, str | None]] = []

    def read_namespaced_config_map(self, name: str, namespace: str) -> Any:
        if (namespace, name) not in self.items:
            raise k8s_exceptions.ApiException(status=404, reason="Not Found")
        return k8s_client.V1ConfigMap(data=self.items[(namespace, name)])

    def patch_namespaced_config_map(
        self, name: str, namespace: str, body: Any, _content_type: str | None = None
    ) -> Any:
        self.patches.append((namespace, name, body, _content_type))
        merged = {**self.items[(namespace, name)], **body["data"]}
        self.items[(namespace, name)] = merged
        return k8s_client.V1ConfigMap(data=merged)


@pytest.fixture
def core(monkeypatch: pytest.MonkeyPatch) -> FakeCoreV1Api:
    api = FakeCoreV1Api()
    monkeypatch.setattr(k8s_client, "CoreV1Api", lambda _api_client: api)
    return api


def test_the_kubernetes_adapter_reads_ca_crt_and_merge_patches_that_key_only(
    core: FakeCoreV1Api,
) -> None:
    adapter = trust_configmaps.KubeTrustConfigMaps(k8s_client.ApiClient())
    assert adapter.ca_bundle(EC2) is None
    core.items[("kube-public", "kubenova-ec2-api")] = dict(CHART_KEYS)
    assert adapter.ca_bundle(EC2) == b""
    adapter.set_ca_bundle(EC2, b"-----BEGIN CERTIFICATE-----\n")
    assert core.patches == [
        (
            "kube-public",
            "kubenova-ec2-api",
            {"data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n"}},
            "application/merge-patch+json",
        )
    ]
    assert adapter.ca_bundle(EC2) == b"-----BEGIN CERTIFICATE-----\n"
    assert core.items[("kube-public", "kubenova-ec2-api")]["endpoint"] == CHART_KEYS["endpoint"]


def test_the_kubernetes_adapter_passes_other_errors_on(core: FakeCoreV1Api) -> None:
    def forbidden(name: str, namespace: str) -> Any:
        raise k8s_exceptions.ApiException(status=403, reason="Forbidden")

    core.read_namespaced_config_map = forbidden  # type: ignore[method-assign]
    with pytest.raises(k8s_exceptions.ApiException):
        trust_configmaps.KubeTrustConfigMaps(k8s_client.ApiClient()).ca_bundle(EC2)
