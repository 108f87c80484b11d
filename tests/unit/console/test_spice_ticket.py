"""The SPICE ticket: one fixed function of the shared key and the instance's uuid, and the key
file read the way the console proxy's settings read it (trailing
newline dropped, a short key or a missing file named with its variable)."""

from __future__ import annotations

import pathlib
import re

import pytest

from kubenova.console import spice_ticket
from kubenova.console.proxy import settings

KEY = b"kubenova-spice-ticket-test-key-0123456789"
UUID = "0b7e3f6a-5c1d-4e2f-8a9b-1c2d3e4f5a6b"
ENV = "KUBENOVA_CONSOLE_SPICE_TICKET_KEY_FILE"


def test_the_ticket_is_the_designed_hmac() -> None:
    # urlsafe_b64encode(HMAC-SHA256(KEY, b"kubenova-spice-ticket\0" + UUID))[:32], computed
    # apart: a change to the function would lock every running guest's SPICE out.
    assert spice_ticket.ticket(KEY, UUID) == "5Fbzx_H4o-BdmaTOy4LZr_GztlwhCSR-"


def test_tickets_differ_by_instance_and_by_key_and_fit_spice() -> None:
    tickets = {
        spice_ticket.ticket(key, uuid)
        for key in (KEY, KEY + b"!")
        for uuid in (UUID, UUID.replace("0b", "0c"))
    }
    assert len(tickets) == 4
    # SPICE takes passwords of at most 60 bytes, sent through RSA-OAEP with a NUL after them.
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{32}", ticket) for ticket in tickets)


def test_the_key_file_loses_its_trailing_newline(tmp_path: pathlib.Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n\n")

    assert spice_ticket.read_key(key_file, ENV) == KEY


def test_a_short_key_is_refused_naming_the_setting(tmp_path: pathlib.Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(b"x" * 31 + b"   \n")

    with pytest.raises(spice_ticket.TicketKeyError) as refused:
        spice_ticket.read_key(key_file, ENV)

    assert str(refused.value) == (
        f"{ENV}: the key in {key_file} has 31 bytes; at least 32 are needed"
    )


def test_a_missing_key_file_is_refused_naming_the_setting(tmp_path: pathlib.Path) -> None:
    with pytest.raises(
        spice_ticket.TicketKeyError, match=rf"^{ENV}: cannot read .*missing: No such file"
    ):
        spice_ticket.read_key(tmp_path / "missing", ENV)


# -- the console proxy's setting --------------------------------------------------------------


def test_the_proxy_reads_the_key_at_start_and_keeps_it_out_of_repr(
    tmp_path: pathlib.Path,
) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n")

    read = settings.ProxySettings.from_env({ENV: str(key_file)})

    assert read.spice_ticket_key == KEY
    assert KEY.decode() not in repr(read)


def test_without_the_setting_the_proxy_has_no_key() -> None:
    assert settings.ProxySettings.from_env({}).spice_ticket_key is None


def test_a_bad_key_file_is_a_setting_error(tmp_path: pathlib.Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(b"short\n")

    with pytest.raises(settings.SettingError) as refused:
        settings.ProxySettings.from_env({ENV: str(key_file)})

    assert refused.value.name == ENV
    assert str(refused.value) == f"{ENV}: the key in {key_file} has 5 bytes; at least 32 are needed"


def test_a_short_key_given_directly_is_refused() -> None:
    with pytest.raises(ValueError, match="spice_ticket_key: the key in the settings has 5 bytes"):
        settings.ProxySettings(spice_ticket_key=b"short")
