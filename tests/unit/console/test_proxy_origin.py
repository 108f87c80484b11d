"""The proxy's Origin check: a console websocket opens from the proxy's own pages or an
allowed origin, matched whole (scheme, host and port), and from nowhere else."""

from __future__ import annotations

import pytest

from kubenova.console.proxy import origin, refusals
from kubenova.console.proxy import settings as proxy_settings


def check(
    value: str | None,
    *,
    host: str = "console.example:6080",
    scheme: str = "https",
    allowed: tuple[str, ...] = (),
) -> None:
    origin.check(value, host_header=host, scheme=scheme, allowed_origins=allowed)


def test_a_page_of_the_proxy_itself_may_open_a_console():
    check("https://console.example:6080")
    check("HTTPS://Console.Example:6080")


def test_a_request_without_origin_is_not_from_a_page_and_passes():
    check(None)


def test_the_default_port_is_the_same_origin_spelled_either_way():
    check("https://console.example", host="console.example:443")
    check("https://console.example:443", host="console.example")


@pytest.mark.parametrize(
    "foreign",
    [
        "https://evil.example:6080",
        "http://console.example:6080",  # the scheme counts
        "https://console.example:6081",  # and the port
        "https://console.example.evil.example:6080",
        "null",
        "not a url",
    ],
)
def test_a_foreign_origin_is_refused_with_its_reason(foreign):
    with pytest.raises(refusals.ConsoleRefusedError) as refused:
        check(foreign)
    assert refused.value.reason is refusals.Reason.FOREIGN_ORIGIN
    assert str(refused.value) == (
        "console refused (foreign_origin): "
        "the page that opened this console is not one this proxy serves"
    )


def test_an_allowed_origin_passes_with_its_scheme_only():
    allowed = proxy_settings.parse_origins("https://portal.example, https://ops.example:8443")
    check("https://portal.example", allowed=allowed)
    check("https://ops.example:8443", allowed=allowed)
    with pytest.raises(refusals.ConsoleRefusedError):
        check("http://portal.example", allowed=allowed)


def test_an_allowed_origin_without_a_scheme_is_a_configuration_error():
    with pytest.raises(ValueError, match="needs a scheme"):
        proxy_settings.parse_origins("portal.example")
