"""When a certificate is due for renewal, and how its dates are shown to an administrator.

Every certificate Kubenova issues, the CA included, is renewed once two thirds of its life have
passed: late enough that renewals are rare, early enough that a third of the life is left to
notice one that fails and fix it before anything expires. The rule is a pure function of the
certificate and the time the caller passes, so that tests and callers choose the clock.

The same dates go onto the Secrets that hold certificates, as annotations ``kubectl`` shows
without decoding anything: ``kubenova.io/not-after`` (when it expires) and
``kubenova.io/renew-after`` (from when it is due for renewal), both RFC 3339 in UTC, e.g.
``2036-04-29T00:00:00Z``.
"""

from __future__ import annotations

import datetime

from cryptography import x509

NOT_AFTER_ANNOTATION = "kubenova.io/not-after"
RENEW_AFTER_ANNOTATION = "kubenova.io/renew-after"


def renew_after(cert: x509.Certificate) -> datetime.datetime:
    """The moment two thirds of ``cert``'s validity have passed."""
    not_before = cert.not_valid_before_utc
    return not_before + (cert.not_valid_after_utc - not_before) * 2 / 3


def renewal_due(cert: x509.Certificate, now: datetime.datetime) -> bool:
    """Whether ``cert`` should be replaced at ``now`` (from :func:`renew_after` on)."""
    return now >= renew_after(cert)


def rfc3339(moment: datetime.datetime) -> str:
    """``moment`` in UTC to the second, as Kubernetes writes its own times:
    ``2031-05-01T00:00:00Z``. Seconds are truncated, so the time shown is never later than the
    real one."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expiry_annotations(cert: x509.Certificate) -> dict[str, str]:
    """The annotations that show ``cert``'s expiry and renewal time on the Secret holding it."""
    return {
        NOT_AFTER_ANNOTATION: rfc3339(cert.not_valid_after_utc),
        RENEW_AFTER_ANNOTATION: rfc3339(renew_after(cert)),
    }
