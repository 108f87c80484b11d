"""AWS Signature Version 4, checked on the server's side.

The signature is recomputed with botocore's own SigV4 pieces (canonical request, string to
sign, signing key), over exactly the headers the client says it signed, and compared with
:func:`hmac.compare_digest`. Both ways of signing are taken:

- the ``Authorization`` header (what boto3 and the AWS CLI send), dated by ``X-Amz-Date``, which
  may be at most 15 minutes from the server's clock either way (EC2's limit);
- a presigned URL (``X-Amz-Algorithm``, ``X-Amz-Credential``, ``X-Amz-Date``, ``X-Amz-Expires``,
  ``X-Amz-SignedHeaders``, ``X-Amz-Signature`` in the query), refused once its expiry has
  passed, so a captured URL cannot be replayed afterwards.

The credential scope must name this server's region and the service ``ec2``. Which namespace
the key acts in is the :class:`keys.AccessKey`'s: the request cannot choose it.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib import parse

from botocore import auth as botocore_auth
from botocore import awsrequest, credentials

from kubenova.ec2 import errors, keys

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "ec2"
#: How far a request's date may be from the server's clock.
MAX_SKEW = datetime.timedelta(minutes=15)
#: The longest validity a presigned URL may ask for (SigV4's own limit: seven days).
MAX_PRESIGN_EXPIRES_S = 7 * 24 * 3600
_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_HEADER_FIELDS = re.compile(r"(\w+)=([^,\s]+)")


@dataclasses.dataclass(frozen=True)
class Request:
    """What the signature covers, as it arrived."""

    method: str
    #: The path and the raw (still percent-encoded) query, as on the request line.
    target: str
    headers: Sequence[tuple[str, str]]
    body: bytes


@dataclasses.dataclass(frozen=True)
class _Signed:
    access_key_id: str
    date: str
    scope_date: str
    region: str
    service: str
    signed_headers: list[str]
    signature: str
    expires_s: int | None


KeyLookup = Callable[[str], keys.AccessKey | None]


def authenticate(
    request: Request,
    lookup: KeyLookup,
    region: str,
    now: datetime.datetime | None = None,
) -> keys.AccessKey:
    """The access key that signed ``request``; an :class:`errors.Ec2Error` (AuthFailure,
    SignatureDoesNotMatch or RequestExpired) when it is not a valid signature of a known key
    that is still in date."""
    now = now or datetime.datetime.now(datetime.UTC)
    path, _, raw_query = request.target.partition("?")
    query = parse.parse_qsl(raw_query, keep_blank_values=True)
    signed = _signed_fields(request.headers, query)
    if signed.service != SERVICE or signed.region != region:
        raise errors.Ec2Error(
            errors.AUTH_FAILURE,
            f"Credential should be scoped to a valid region ({region}) and the service"
            f" {SERVICE}, not {signed.region}/{signed.service}.",
        )
    _check_date(signed, now)
    if signed.scope_date != signed.date[:8]:
        raise errors.Ec2Error(
            errors.SIGNATURE_DOES_NOT_MATCH,
            "The date of the credential scope is not the date of X-Amz-Date.",
        )
    key = lookup(signed.access_key_id)
    if key is None:
        raise errors.Ec2Error(
            errors.AUTH_FAILURE, "AWS was not able to validate the provided access credentials"
        )
    _check_payload_hash(request)
    expected = _signature(request, path, raw_query, signed, key)
    if not hmac.compare_digest(expected.encode(), signed.signature.encode()):
        raise errors.Ec2Error(
            errors.SIGNATURE_DOES_NOT_MATCH,
            "The request signature we calculated does not match the signature you provided."
            " Check your AWS Secret Access Key and signing method.",
        )
    return key


def _check_payload_hash(request: Request) -> None:
    """A client may send the body's hash as ``X-Amz-Content-SHA256``, and the canonical
    request then takes the hash from that header instead of the body; it must be the body's,
    or a signed header would vouch for a body it never saw. ``UNSIGNED-PAYLOAD`` is refused
    too: an EC2 request's body is its action and parameters."""
    claimed = _header(request.headers, "x-amz-content-sha256")
    if claimed is None:
        return
    actual = hashlib.sha256(request.body).hexdigest()
    if not hmac.compare_digest(claimed.strip().lower().encode(), actual.encode()):
        raise errors.Ec2Error(
            errors.SIGNATURE_DOES_NOT_MATCH,
            "The X-Amz-Content-SHA256 header is not the SHA-256 of the request's body.",
        )


def _header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _signed_fields(headers: Sequence[tuple[str, str]], query: list[tuple[str, str]]) -> _Signed:
    """The signature's fields, from the Authorization header or the presigned query."""
    authorization = _header(headers, "authorization")
    query_map = dict(query)
    if authorization is not None:
        algorithm, _, rest = authorization.strip().partition(" ")
        if algorithm != ALGORITHM:
            raise errors.Ec2Error(
                errors.AUTH_FAILURE, f"The Authorization header must use {ALGORITHM}."
            )
        fields = dict(_HEADER_FIELDS.findall(rest))
        credential = fields.get("Credential", "")
        signed_headers = fields.get("SignedHeaders", "")
        signature = fields.get("Signature", "")
        date = _header(headers, "x-amz-date") or ""
        expires: int | None = None
    elif "X-Amz-Signature" in query_map:
        if query_map.get("X-Amz-Algorithm") != ALGORITHM:
            raise errors.Ec2Error(errors.AUTH_FAILURE, f"X-Amz-Algorithm must be {ALGORITHM}.")
        credential = query_map.get("X-Amz-Credential", "")
        signed_headers = query_map.get("X-Amz-SignedHeaders", "")
        signature = query_map["X-Amz-Signature"]
        date = query_map.get("X-Amz-Date", "")
        expires = _expires(query_map.get("X-Amz-Expires", ""))
    else:
        raise errors.Ec2Error(
            errors.AUTH_FAILURE,
            "The request is not signed: an AWS Signature Version 4 Authorization header or"
            " presigned query is required.",
        )
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not parts[0]:
        raise errors.Ec2Error(
            errors.AUTH_FAILURE,
            "The Credential must be ACCESS_KEY_ID/DATE/REGION/SERVICE/aws4_request.",
        )
    if not signed_headers or not signature or not date:
        raise errors.Ec2Error(
            errors.AUTH_FAILURE,
            "The signature must give SignedHeaders, Signature and X-Amz-Date.",
        )
    names = signed_headers.split(";")
    if "host" not in names:
        raise errors.Ec2Error(errors.AUTH_FAILURE, "The signed headers must include host.")
    return _Signed(parts[0], date, parts[1], parts[2], parts[3], names, signature, expires)


def _expires(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PRESIGN_EXPIRES_S:
        raise errors.Ec2Error(
            errors.AUTH_FAILURE,
            f"X-Amz-Expires must be a number of seconds from 1 to {MAX_PRESIGN_EXPIRES_S}.",
        )
    return int(raw)


def _check_date(signed: _Signed, now: datetime.datetime) -> None:
    try:
        moment = datetime.datetime.strptime(signed.date, _DATE_FORMAT).replace(tzinfo=datetime.UTC)
    except ValueError:
        raise errors.Ec2Error(
            errors.AUTH_FAILURE,
            f"X-Amz-Date must be in the form YYYYMMDDTHHMMSSZ, not {signed.date!r}.",
        ) from None
    if signed.expires_s is not None:
        if now > moment + datetime.timedelta(seconds=signed.expires_s):
            raise errors.Ec2Error(errors.REQUEST_EXPIRED, "Request has expired.")
        if moment - now > MAX_SKEW:
            raise errors.Ec2Error(errors.REQUEST_EXPIRED, "Request is dated in the future.")
    elif abs(now - moment) > MAX_SKEW:
        raise errors.Ec2Error(
            errors.REQUEST_EXPIRED,
            f"Request has expired: signed at {signed.date}, more than 15 minutes from the"
            " server's time.",
        )


class _Verifier(botocore_auth.SigV4Auth):  # type: ignore[misc]
    """botocore's SigV4 signer, made to sign exactly the headers the client signed (botocore
    would pick its own set, leaving out ``user-agent`` and others that a client may sign)."""

    def __init__(self, key: keys.AccessKey, region: str, signed_headers: list[str]) -> None:
        super().__init__(
            credentials.Credentials(key.access_key_id, key.secret_access_key), SERVICE, region
        )
        self._signed_header_names = signed_headers

    def headers_to_sign(self, request: Any) -> Any:
        chosen = awsrequest.HTTPHeaders()
        for name in self._signed_header_names:
            values = [value for key, value in request.headers.items() if key.lower() == name]
            for value in values:
                chosen[name] = value
            if not values:
                chosen[name] = ""
        return chosen

    def payload(self, request: Any) -> str:
        # The client hashed the body it sent: no "unsigned payload" choice by URL scheme.
        return hashlib.sha256(request.body or b"").hexdigest()


def _signature(
    request: Request, path: str, raw_query: str, signed: _Signed, key: keys.AccessKey
) -> str:
    # The canonical query is built from the decoded pairs, encoded again as SigV4 says (so a
    # client's own encoding, "+" or "%20", does not matter); a presigned URL's leaves out
    # X-Amz-Signature.
    pairs = [
        (name, value)
        for name, value in parse.parse_qsl(raw_query, keep_blank_values=True)
        if name != "X-Amz-Signature"
    ]
    headers = awsrequest.HTTPHeaders()
    for name, value in request.headers:
        headers[name] = value
    aws_request = awsrequest.AWSRequest(
        method=request.method, url=f"http://signed{path}", headers=headers, data=request.body
    )
    aws_request.params = pairs
    aws_request.context["timestamp"] = signed.date
    verifier = _Verifier(key, signed.region, signed.signed_headers)
    canonical = verifier.canonical_request(aws_request)
    return str(verifier.signature(verifier.string_to_sign(aws_request, canonical), aws_request))
