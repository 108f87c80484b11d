"""The operator's certificate pass: the CA, each configured certificate and the APIServices'
caBundle, written when they differ and left alone otherwise; its settings from the
environment as the chart renders them."""

from __future__ import annotations

import datetime
import json

import pytest

from kubenova.certs import issuer, renewal, store
from tests.unit.agent_credentials.fakes import FakeObjects

NOW = datetime.datetime(2031, 5, 1, tzinfo=datetime.UTC)
APISERVICE = "v1.subresources.compute.kubenova.io"
CERTIFICATES = [
    {
        "secret": "kubenova-subresources-tls",
        "purpose": "serving",
        "dnsNames": ["kubenova-subresources.kubenova-system.svc"],
        "validityHours": 720,
    },
    {"secret": "kubenova-console-x509", "purpose": "console-client", "validityHours": 720},
]


class FakeAPIServices:
    def __init__(self, *names: str) -> None:
        self.bundles: dict[str, bytes] = dict.fromkeys(names, b"")
        self.writes: list[str] = []

    def ca_bundle(self, name: str) -> bytes | None:
        return self.bundles.get(name)

    def set_ca_bundle(self, name: str, pem: bytes) -> None:
        self.writes.append(name)
        self.bundles[name] = pem


def _renewer(objs: FakeObjects, apiservices: FakeAPIServices) -> renewal.Renewer:
    settings = renewal.RenewalSettings.from_env(
        {
            "POD_NAMESPACE": "kubenova",
            "KUBENOVA_CERTIFICATES": json.dumps(CERTIFICATES),
            "KUBENOVA_CERTIFICATES_APISERVICES": APISERVICE,
        }
    )
    return renewal.Renewer(settings, objs, apiservices, clock=lambda: NOW)


def test_the_first_pass_makes_the_ca_the_certificates_and_the_apiservices_ca_bundle() -> None:
    objs, apiservices = FakeObjects(), FakeAPIServices(APISERVICE)
    outcomes = _renewer(objs, apiservices).run_once()
    assert [(o.secret, o.action) for o in outcomes] == [
        ("kubenova-subresources-tls", "issued"),
        ("kubenova-console-x509", "issued"),
    ]
    ca_pem = objs.items[("ConfigMap", store.CA_NAME)].data["ca.crt"]
    assert apiservices.bundles[APISERVICE] == ca_pem
    assert objs.items[("Secret", "kubenova-subresources-tls")].data["ca.crt"] == ca_pem


def test_a_second_pass_writes_nothing() -> None:
    objs, apiservices = FakeObjects(), FakeAPIServices(APISERVICE)
    renewer = _renewer(objs, apiservices)
    renewer.run_once()
    objs.calls.clear()
    apiservices.writes.clear()
    outcomes = renewer.run_once()
    assert {o.action for o in outcomes} == {"kept"}
    assert [call for call in objs.calls if not call.startswith("get ")] == []
    assert apiservices.writes == []


def test_a_ca_bundle_changed_by_hand_is_put_back() -> None:
    objs, apiservices = FakeObjects(), FakeAPIServices(APISERVICE)
    renewer = _renewer(objs, apiservices)
    renewer.run_once()
    apiservices.bundles[APISERVICE] = b"someone else's CA"
    renewer.run_once()
    assert (
        apiservices.bundles[APISERVICE] == objs.items[("ConfigMap", store.CA_NAME)].data["ca.crt"]
    )


def test_an_apiservice_not_there_yet_is_left_for_a_later_pass() -> None:
    objs, apiservices = FakeObjects(), FakeAPIServices()
    _renewer(objs, apiservices).run_once()
    assert apiservices.writes == []


def test_without_certificates_or_apiservices_the_pass_is_off() -> None:
    assert not renewal.RenewalSettings.from_env({}).enabled
    settings = renewal.RenewalSettings.from_env({"KUBENOVA_CERTIFICATES": json.dumps(CERTIFICATES)})
    assert settings.enabled
    assert settings.check_interval_s == renewal.DEFAULT_CHECK_INTERVAL_S
    assert settings.certificates[1].purpose is issuer.Purpose.CONSOLE_CLIENT
    assert settings.certificates[0].validity == datetime.timedelta(days=30)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KUBENOVA_CERTIFICATES": "{not json"}, "not JSON"),
        ({"KUBENOVA_CERTIFICATES": '{"secret": "s"}'}, "list of objects"),
        ({"KUBENOVA_CERTIFICATES_CHECK_INTERVAL": "0"}, "positive"),
        ({"KUBENOVA_CERTIFICATES_CHECK_INTERVAL": "soon"}, "whole number"),
    ],
)
def test_bad_settings_are_refused_saying_why(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        renewal.RenewalSettings.from_env(env)
