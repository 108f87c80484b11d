"""The X-Remote-* headers count only from the kube-apiserver's verified front-proxy
certificate."""

from __future__ import annotations

import json

import pytest

from kubenova.subresources import requestheader, status
from tests.unit.subresources import support

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
CONFIG = requestheader.RequestHeaderConfig(client_ca_pem=CA, allowed_names=("front-proxy-client",))
ALICE = (("X-Remote-User", "alice"), ("X-Remote-Group", "dev"), ("X-Remote-Group", "ops"))


def test_a_verified_front_proxy_certificate_makes_the_headers_the_user() -> None:
    user = requestheader.authenticate(
        CONFIG,
        support.peer_cert("front-proxy-client"),
        support.headers(*ALICE, ("X-Remote-Extra-Scopes%2Fa", "x")),
    )

    assert user.name == "alice"
    assert user.groups == ("dev", "ops")
    assert user.extra == {"scopes/a": ("x",)}


@pytest.mark.parametrize("peer_cert", [None, {}], ids=["no certificate", "not verified"])
def test_headers_without_a_verified_certificate_are_refused(
    peer_cert: dict[str, str] | None,
) -> None:
    with pytest.raises(status.ApiError) as refused:
        requestheader.authenticate(CONFIG, peer_cert, support.headers(*ALICE))

    assert refused.value.code == 401
    assert "kube-apiserver" in refused.value.message


def test_a_verified_certificate_with_a_name_not_allowed_is_refused() -> None:
    with pytest.raises(status.ApiError) as refused:
        requestheader.authenticate(CONFIG, support.peer_cert("kubelet"), support.headers(*ALICE))

    assert refused.value.code == 401
    assert "'kubelet'" in refused.value.message


def test_any_name_is_allowed_when_the_apiserver_allows_any() -> None:
    anyone = requestheader.RequestHeaderConfig(client_ca_pem=CA)

    user = requestheader.authenticate(anyone, support.peer_cert("other"), support.headers(*ALICE))

    assert user.name == "alice"


def test_a_proxied_request_without_a_user_is_refused() -> None:
    with pytest.raises(status.ApiError) as refused:
        requestheader.authenticate(
            CONFIG,
            support.peer_cert("front-proxy-client"),
            support.headers(("X-Remote-Group", "dev")),
        )
    assert refused.value.code == 401


def test_the_settings_are_read_from_the_apiservers_configmap() -> None:
    config = requestheader.RequestHeaderConfig.from_configmap(
        {
            "requestheader-client-ca-file": CA,
            "requestheader-allowed-names": json.dumps(["front-proxy-client"]),
            "requestheader-username-headers": json.dumps(["X-Remote-User"]),
            "requestheader-group-headers": json.dumps(["X-Remote-Group"]),
            "requestheader-extra-headers-prefix": json.dumps(["X-Remote-Extra-"]),
        }
    )

    assert config == CONFIG


def test_an_apiserver_without_a_front_proxy_is_named_as_the_reason() -> None:
    with pytest.raises(ValueError, match="--requestheader-client-ca-file"):
        requestheader.RequestHeaderConfig.from_configmap({"client-ca-file": CA})
