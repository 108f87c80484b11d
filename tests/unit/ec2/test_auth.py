"""SigV4 on the server's side: requests signed by botocore's own signers are taken, and every
way a signature can be wrong is refused with EC2's code."""

from __future__ import annotations

import datetime
import hashlib
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kubenova.ec2 import auth, errors, keys

REGION = "kubenova"
KEY = keys.AccessKey("AKIAAAAAAAAAAAAAAAAA", "the-secret", "team-a")
OTHER = keys.AccessKey("AKIABBBBBBBBBBBBBBBB", "other-secret", "team-b")
KEYS = {KEY.access_key_id: KEY, OTHER.access_key_id: OTHER}
BODY = b"Action=DescribeInstances&Version=2016-11-15&InstanceId.1=i-0123456789abcdef0"


def _signed_post(
    secret: str = KEY.secret_access_key, region: str = REGION, access_key: str = KEY.access_key_id
) -> auth.Request:
    request = AWSRequest(
        method="POST",
        url="https://ec2.example.test:8788/",
        data=BODY,
        headers={
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "User-Agent": "Boto3/1.0",
        },
    )
    SigV4Auth(Credentials(access_key, secret), "ec2", region).add_auth(request)
    prepared = request.prepare()
    headers = [*prepared.headers.items(), ("Host", "ec2.example.test:8788")]
    return auth.Request("POST", "/", headers, prepared.body)


def _presigned_get(expires: int = 60) -> auth.Request:
    request = AWSRequest(
        method="GET", url="https://ec2.example.test/?Action=DescribeRegions&Version=2016-11-15"
    )
    credentials = Credentials(KEY.access_key_id, KEY.secret_access_key)
    SigV4QueryAuth(credentials, "ec2", REGION, expires=expires).add_auth(request)
    url = urlsplit(request.prepare().url)
    return auth.Request("GET", f"{url.path}?{url.query}", [("Host", "ec2.example.test")], b"")


def _check(request: auth.Request, now: datetime.datetime | None = None) -> keys.AccessKey:
    return auth.authenticate(request, KEYS.get, REGION, now=now)


def _refusal(request: auth.Request, now: datetime.datetime | None = None) -> errors.Ec2Error:
    with pytest.raises(errors.Ec2Error) as refused:
        _check(request, now)
    return refused.value


def _in(minutes: float) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=minutes)


def test_a_signed_request_is_the_keys_and_acts_in_its_namespace():
    assert _check(_signed_post()) == KEY
    assert _check(_signed_post(OTHER.secret_access_key, access_key=OTHER.access_key_id)) == OTHER


def test_a_wrong_secret_does_not_match():
    assert _refusal(_signed_post("not-the-secret")).code == errors.SIGNATURE_DOES_NOT_MATCH


def test_a_changed_body_does_not_match():
    signed = _signed_post()
    tampered = auth.Request(
        signed.method, signed.target, signed.headers, signed.body.replace(b"abcdef0", b"abcdef1")
    )
    assert _refusal(tampered).code == errors.SIGNATURE_DOES_NOT_MATCH


def test_another_keys_id_with_this_secret_does_not_match():
    forged = _signed_post(KEY.secret_access_key, access_key=OTHER.access_key_id)
    assert _refusal(forged).code == errors.SIGNATURE_DOES_NOT_MATCH


def test_an_unknown_key_is_an_auth_failure():
    assert _refusal(_signed_post(access_key="AKIACCCCCCCCCCCCCCCC")).code == errors.AUTH_FAILURE


def test_an_unsigned_request_is_an_auth_failure():
    unsigned = auth.Request("POST", "/", [("Host", "ec2.example.test")], BODY)
    assert _refusal(unsigned).code == errors.AUTH_FAILURE


def test_another_region_is_an_auth_failure():
    assert _refusal(_signed_post(region="us-east-1")).code == errors.AUTH_FAILURE


@pytest.mark.parametrize("minutes", [16, -16])
def test_a_clock_more_than_15_minutes_off_is_refused(minutes):
    assert _refusal(_signed_post(), now=_in(minutes)).code == errors.REQUEST_EXPIRED


@pytest.mark.parametrize("minutes", [14, -14])
def test_a_clock_less_than_15_minutes_off_is_taken(minutes):
    assert _check(_signed_post(), now=_in(minutes)) == KEY


def test_a_presigned_url_is_taken_until_it_expires():
    presigned = _presigned_get(expires=60)
    assert _check(presigned) == KEY
    assert _check(presigned, now=_in(0.9)) == KEY
    assert _refusal(presigned, now=_in(1.1)).code == errors.REQUEST_EXPIRED


def test_a_presigned_url_with_a_changed_action_does_not_match():
    presigned = _presigned_get()
    changed = auth.Request(
        "GET",
        presigned.target.replace("DescribeRegions", "DescribeImages"),
        presigned.headers,
        b"",
    )
    assert _refusal(changed).code == errors.SIGNATURE_DOES_NOT_MATCH


@pytest.mark.parametrize(
    "authorization",
    [
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 Credential=x, SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKIAAAAAAAAAAAAAAAAA/20260101/kubenova/ec2/aws4_request,"
        " SignedHeaders=x-amz-date, Signature=00",
        "AWS AKIAAAAAAAAAAAAAAAAA:c2lnbmF0dXJl",
        "\x00garbage",
    ],
)
def test_malformed_authorization_headers_are_auth_failures(authorization):
    request = auth.Request(
        "POST",
        "/",
        [("Host", "h"), ("X-Amz-Date", "20260101T000000Z"), ("Authorization", authorization)],
        BODY,
    )
    assert _refusal(request).code == errors.AUTH_FAILURE


def test_a_signed_body_hash_must_be_the_bodys():
    request = AWSRequest(
        method="POST",
        url="https://ec2.example.test/",
        data=BODY,
        headers={"X-Amz-Content-SHA256": hashlib.sha256(BODY).hexdigest()},
    )
    SigV4Auth(Credentials(KEY.access_key_id, KEY.secret_access_key), "ec2", REGION).add_auth(
        request
    )
    prepared = request.prepare()
    headers = [*prepared.headers.items(), ("Host", "ec2.example.test")]
    assert _check(auth.Request("POST", "/", headers, BODY)) == KEY
    # The same signed headers over another body: the hash header vouches for the old one.
    other = BODY.replace(b"DescribeInstances", b"TerminateInstances")
    refused = _refusal(auth.Request("POST", "/", headers, other))
    assert refused.code == errors.SIGNATURE_DOES_NOT_MATCH
