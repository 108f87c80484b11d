"""A certificate is due for renewal from two thirds of its life on, and its dates read as
Kubernetes writes times."""

from __future__ import annotations

import datetime

import pytest

from kubenova.certs import authority, console, lifetime

NOW = datetime.datetime(2031, 5, 1, tzinfo=datetime.UTC)
MICRO = datetime.timedelta(microseconds=1)


@pytest.fixture(scope="module")
def ca() -> authority.KeyPair:
    return authority.issue_ca(now=NOW)


def test_a_thirty_day_leaf_is_due_after_twenty_days_of_its_backdated_life(
    ca: authority.KeyPair,
) -> None:
    leaf = console.issue_host_cert(ca, "hv-1.lab", [], now=NOW)
    # 30 days and 5 minutes of life, from 23:55 the day before: two thirds is 20 days 3 m 20 s.
    due = datetime.datetime(2031, 5, 20, 23, 58, 20, tzinfo=datetime.UTC)
    assert lifetime.renew_after(leaf.cert) == due
    assert not lifetime.renewal_due(leaf.cert, due - MICRO)
    assert lifetime.renewal_due(leaf.cert, due)
    assert lifetime.renewal_due(leaf.cert, due + MICRO)


def test_the_ca_is_due_by_the_same_rule(ca: authority.KeyPair) -> None:
    # 3650 days and 5 minutes from 2031-04-30 23:55: two thirds is 2433 days 8 h 3 m 20 s.
    due = datetime.datetime(2037, 12, 28, 7, 58, 20, tzinfo=datetime.UTC)
    assert lifetime.renew_after(ca.cert) == due
    assert not lifetime.renewal_due(ca.cert, due - MICRO)
    assert lifetime.renewal_due(ca.cert, due)


def test_times_are_rfc3339_in_utc_to_the_second() -> None:
    east = datetime.timezone(datetime.timedelta(hours=2))
    moment = datetime.datetime(2031, 5, 1, 2, 3, 4, 999_999, tzinfo=east)
    assert lifetime.rfc3339(moment) == "2031-05-01T00:03:04Z"


def test_the_expiry_annotations_name_the_expiry_and_the_renewal(ca: authority.KeyPair) -> None:
    leaf = console.issue_proxy_client_cert(ca, now=NOW)
    assert lifetime.expiry_annotations(leaf.cert) == {
        "kubenova.io/not-after": "2031-05-31T00:00:00Z",
        "kubenova.io/renew-after": "2031-05-20T23:58:20Z",
    }
