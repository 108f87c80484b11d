"""``instances/consoleurl``: a token for the instance's console and the proxy's page, or a
Status that says what is missing."""

from __future__ import annotations

from typing import Any

import pytest

from kubenova.console import auth
from kubenova.subresources import consoleurl, requestheader, status
from tests.unit.subresources import support

ALICE = requestheader.User("alice")
UUID = "5b0c1d7e-0000-4000-8000-000000000001"


def create(found: consoleurl.ConsolePlace | None, type_: str | None = None, **kw: Any) -> Any:
    mint = support.RecordingMint()
    urls = support.console_urls(support.FakeKube(support.instance_object(**kw)), found, mint)
    return urls.create("demo", "web-1", type_, ALICE), mint


def test_novnc_mints_a_token_for_the_vnc_port_on_the_host_and_links_the_proxy_page() -> None:
    body, mint = create(support.place())

    assert mint.calls == [(UUID, auth.ConsoleType.NOVNC, "compute-1", 5900, None, None, 600)]
    assert body["url"] == f"https://console.example:6080/vnc.html?token=tok-en_1&instance={UUID}"
    assert body["type"] == "novnc"
    assert body["expires"] == "2026-12-06T22:10:00Z"
    assert body["kind"] == "ConsoleURL"


def test_spice_mints_a_token_for_the_tls_port_and_links_spice_html5() -> None:
    body, mint = create(support.place(spice_port=None, spice_tls_port=5901), "spice-html5")

    assert mint.calls == [(UUID, auth.ConsoleType.SPICE_HTML5, "compute-1", 5901, 5901, None, 600)]
    assert body["url"] == (
        "https://console.example:6080/spice/spice_auto.html?path=websockify%3Ftoken%3Dtok-en_1"
    )


def test_a_missing_instance_is_not_found_by_name() -> None:
    urls = support.console_urls(support.FakeKube(), support.place(), support.RecordingMint())

    with pytest.raises(status.ApiError) as refused:
        urls.create("demo", "nope", None, ALICE)

    body = refused.value.body()
    assert body["code"] == 404
    assert body["reason"] == "NotFound"
    assert body["message"] == 'instances.compute.kubenova.io "nope" not found in namespace "demo"'
    assert body["details"] == {"group": "compute.kubenova.io", "name": "nope", "kind": "instances"}


@pytest.mark.parametrize(
    ("found", "says"),
    [
        (None, "no record yet"),
        (support.place(vm_state="stopped", power_state="shutdown"), "is not running"),
        (support.place(power_state="paused"), "is not running"),
        (support.place(vnc_port=None), "has no VNC console yet"),
    ],
)
def test_an_instance_without_a_running_vnc_console_is_a_conflict(
    found: consoleurl.ConsolePlace | None, says: str
) -> None:
    with pytest.raises(status.ApiError) as refused:
        create(found)

    assert refused.value.code == 409
    assert refused.value.reason == "Conflict"
    assert says in refused.value.message
    assert '"web-1"' in refused.value.message


def test_spice_without_its_tls_port_is_a_conflict_even_with_a_plain_port() -> None:
    with pytest.raises(status.ApiError) as refused:
        create(support.place(spice_port=5902, spice_tls_port=None), "spice-html5")

    assert refused.value.code == 409
    assert "SPICE (TLS)" in refused.value.message


def test_an_instance_being_deleted_is_a_conflict() -> None:
    with pytest.raises(status.ApiError) as refused:
        create(support.place(), deletionTimestamp="2026-12-06T21:00:00Z")

    assert refused.value.code == 409
    assert "being deleted" in refused.value.message


@pytest.mark.parametrize("bad", ["serial", "xvpvnc", "NOVNC"])
def test_a_type_that_is_not_a_browser_console_is_a_bad_request_naming_the_good_ones(
    bad: str,
) -> None:
    with pytest.raises(status.ApiError) as refused:
        create(support.place(), bad)

    assert refused.value.code == 400
    assert refused.value.message == f"unknown console type {bad!r}: use novnc or spice-html5"
