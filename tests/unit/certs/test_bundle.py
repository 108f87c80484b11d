"""The trust bundle as pure values: a rotation puts the new CA first and keeps the old one
until its retirement, which drops it; the Secret's JSON of retiring CAs reads back the same."""

from __future__ import annotations

import datetime

import pytest

from kubenova.certs import authority, bundle

NOW = datetime.datetime(2031, 5, 1, tzinfo=datetime.UTC)
MICRO = datetime.timedelta(microseconds=1)


@pytest.fixture(scope="module")
def cas() -> tuple[authority.KeyPair, authority.KeyPair, authority.KeyPair]:
    return (
        authority.issue_ca(now=NOW, common_name="ca-1"),
        authority.issue_ca(now=NOW, common_name="ca-2"),
        authority.issue_ca(now=NOW, common_name="ca-3"),
    )


def test_a_rotation_puts_the_new_ca_first_and_retires_the_old_after_its_last_leaf(
    cas: tuple[authority.KeyPair, ...],
) -> None:
    one, two, _ = cas
    state = bundle.rotate(bundle.TrustState(one), two, NOW, leaf_lifetime=datetime.timedelta(7))
    assert state.current is two
    retire = datetime.datetime(2031, 5, 9, tzinfo=datetime.UTC)  # 7 days, and 1 of grace
    assert state.retiring == (bundle.RetiringCA(one.cert, retire),)
    assert state.bundle_pem() == two.cert_pem() + one.cert_pem()


def test_a_rotation_drops_cas_already_retired(cas: tuple[authority.KeyPair, ...]) -> None:
    one, two, three = cas
    retire_one = NOW + datetime.timedelta(days=3)
    earlier = bundle.TrustState(two, (bundle.RetiringCA(one.cert, retire_one),))
    at_retirement = bundle.rotate(earlier, three, retire_one)
    assert [old.cert for old in at_retirement.retiring] == [two.cert]
    just_before = bundle.rotate(earlier, three, retire_one - MICRO)
    assert [old.cert for old in just_before.retiring] == [two.cert, one.cert]
    assert just_before.bundle_pem() == three.cert_pem() + two.cert_pem() + one.cert_pem()


def test_drop_retired_keeps_a_ca_until_the_moment_its_overlap_ends(
    cas: tuple[authority.KeyPair, ...],
) -> None:
    one, two, _ = cas
    retiring = (
        bundle.RetiringCA(two.cert, NOW + datetime.timedelta(days=2)),
        bundle.RetiringCA(one.cert, NOW + datetime.timedelta(days=1)),
    )
    assert bundle.drop_retired(retiring, NOW + datetime.timedelta(days=1) - MICRO) == retiring
    assert bundle.drop_retired(retiring, NOW + datetime.timedelta(days=1)) == retiring[:1]
    assert bundle.drop_retired(retiring, NOW + datetime.timedelta(days=2)) == ()


def test_a_replaced_ca_is_never_trusted_past_its_own_expiry() -> None:
    short = authority.issue_ca(now=NOW, validity=datetime.timedelta(days=30))
    assert bundle.retire_at(short.cert, NOW + datetime.timedelta(days=20)) == short.not_after
    assert bundle.retire_at(short.cert, NOW) == short.not_after


def test_the_secrets_json_of_retiring_cas_reads_back_the_same(
    cas: tuple[authority.KeyPair, ...],
) -> None:
    one, two, _ = cas
    retiring = (
        bundle.RetiringCA(two.cert, datetime.datetime(2031, 8, 1, 12, tzinfo=datetime.UTC)),
        bundle.RetiringCA(one.cert, datetime.datetime(2031, 7, 1, tzinfo=datetime.UTC)),
    )
    data = bundle.retiring_to_json(retiring)
    assert b'"retireAt": "2031-08-01T12:00:00Z"' in data
    assert bundle.retiring_from_json(data) == retiring


@pytest.mark.parametrize(
    "data",
    [b"{}", b"[{}]", b'[{"certificate": "x", "retireAt": "2031-07-01T00:00:00Z"}]', b"nope"],
    ids=["not-a-list", "no-fields", "not-a-certificate", "not-json"],
)
def test_anything_else_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the kinds of refusal vary
        bundle.retiring_from_json(data)
