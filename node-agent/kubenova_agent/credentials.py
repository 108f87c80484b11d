"""Get this node's own AMQP URL from the operator, in a cluster.

The agent proves which node it runs on with its projected ServiceAccount token (audience
``kubenova-operator``, kept fresh by the kubelet in ``/var/run/secrets/kubenova/token``): it
POSTs the token as a Bearer token to the operator's ``/agent-credentials`` over HTTPS,
verifying the operator against Kubenova's CA (the ConfigMap ``kubenova-ca``), and gets back
the AMQP URL of its node's own RabbitMQ user. The URL stays in memory; nothing is written.

The operator may be failing over (a standby does not serve) or RabbitMQ may be restarting, so
network errors and 5xx answers are tried again with a growing pause until a deadline; a 4xx
answer is a refusal that waiting will not change (the wrong identity, a token without a node,
a node that is not a hypervisor) and is raised at once with the operator's reason.

Only the standard library: this runs on every hypervisor node.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from typing import TypeVar

LOG = logging.getLogger(__name__)

URL_ENV = "KUBENOVA_AGENT_CREDENTIALS_URL"
CA_ENV = "KUBENOVA_AGENT_CREDENTIALS_CA"
TOKEN_ENV = "KUBENOVA_AGENT_TOKEN_FILE"
DEADLINE_ENV = "KUBENOVA_AGENT_CREDENTIALS_TIMEOUT"
DEFAULT_TOKEN_FILE = "/var/run/secrets/kubenova/token"
DEFAULT_CA_FILE = "/var/run/secrets/kubenova/ca.crt"
DEFAULT_DEADLINE_S = 300.0
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
_REQUEST_TIMEOUT_S = 10.0


class CredentialsError(Exception):
    """No credentials: refused by the operator, or not obtained before the deadline."""


class CredentialsRefused(CredentialsError):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"the operator refused (HTTP {status}): {reason}")
        self.status = status
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class AgentCredentials:
    node: str
    user: str
    amqp_url: str = dataclasses.field(repr=False)


class Transient(Exception):
    """Worth another try."""


_Answer = TypeVar("_Answer")


def configured() -> bool:
    """Whether this agent gets its credentials from the operator."""
    return bool(os.environ.get(URL_ENV))


def fetch_from_env() -> AgentCredentials:
    deadline_s = float(os.environ.get(DEADLINE_ENV) or DEFAULT_DEADLINE_S)
    return fetch(
        os.environ[URL_ENV],
        ca_file=os.environ.get(CA_ENV) or DEFAULT_CA_FILE,
        token_file=os.environ.get(TOKEN_ENV) or DEFAULT_TOKEN_FILE,
        deadline_s=deadline_s,
    )


def fetch(
    url: str,
    *,
    ca_file: str,
    token_file: str,
    deadline_s: float = DEFAULT_DEADLINE_S,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> AgentCredentials:
    """This node's credentials from the operator at ``url`` (https only)."""
    credentials = with_retries(
        "agent credentials",
        url,
        lambda request_id: _attempt(url, ca_file, token_file, request_id),
        deadline_s=deadline_s,
        sleep=sleep,
        monotonic=monotonic,
    )
    LOG.info("agent credentials: RabbitMQ user %s for node %s", credentials.user, credentials.node)
    return credentials


def with_retries(
    what: str,
    url: str,
    attempt: Callable[[str], _Answer],
    *,
    deadline_s: float,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> _Answer:
    """``attempt(request_id)`` until it answers, again after each :class:`Transient` failure
    with a growing pause; :class:`CredentialsError` once ``deadline_s`` would pass, and a
    refusal at once."""
    if urllib.parse.urlsplit(url).scheme != "https":
        raise CredentialsError(f"{what}: {url} must be an https URL (it carries a token)")
    deadline = monotonic() + deadline_s
    attempt_number = 0
    while True:
        request_id = f"req-{uuid.uuid4()}"
        try:
            return attempt(request_id)
        except Transient as exc:
            pause = BACKOFF_S[min(attempt_number, len(BACKOFF_S) - 1)]
            if monotonic() + pause > deadline:
                raise CredentialsError(
                    f"no {what} from {url} within {deadline_s:.0f} s: {exc}"
                ) from exc
            LOG.warning(
                "%s: %s; trying again in %.0f s",
                what,
                exc,
                pause,
                extra={"request_id": request_id},
            )
            sleep(pause)
            attempt_number += 1


def _attempt(url: str, ca_file: str, token_file: str, request_id: str) -> AgentCredentials:
    body = post(url, ca_file, token_file, request_id)
    try:
        credentials = AgentCredentials(
            node=str(body["node"]), user=str(body["user"]), amqp_url=str(body["amqpUrl"])
        )
    except KeyError as exc:
        raise Transient(f"{url}: the answer lacks {exc.args[0]}") from exc
    if urllib.parse.urlsplit(credentials.amqp_url).scheme not in ("amqp", "amqps"):
        raise Transient(f"{url}: the answer's amqpUrl is not an AMQP URL")
    return credentials


def post(
    url: str,
    ca_file: str,
    token_file: str,
    request_id: str,
    data: bytes = b"",
    content_type: str | None = None,
) -> dict[str, object]:
    """One POST to the operator with this pod's token; the JSON answer of a 200.
    :class:`Transient` for what another try may change, :class:`CredentialsRefused` for a
    4xx answer."""
    # Both are read again each time: the kubelet rotates the token, and the CA may be
    # published (or replaced) after this pod started.
    try:
        with open(token_file, encoding="utf-8") as handle:
            token = handle.read().strip()
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise Transient(f"cannot read the token or the CA: {exc}") from exc
    if not token:
        raise Transient(f"the token file {token_file} is empty")
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("X-Request-Id", request_id)
    request.add_header("Accept", "application/json")
    if content_type is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=_REQUEST_TIMEOUT_S, context=context) as r:
            status, payload = r.status, r.read()
    except urllib.error.HTTPError as exc:
        with exc:
            status, payload = exc.code, exc.read()
    except OSError as exc:  # refused, reset, timed out, TLS failures (URLError is one)
        raise Transient(f"{url}: {exc}") from exc
    body = _json(payload)
    reason = str(body.get("reason") or payload[:200].decode(errors="replace"))
    if status >= 500:
        raise Transient(f"{url}: HTTP {status}: {reason}")
    if status != 200:
        raise CredentialsRefused(status, reason)
    return body


def _json(payload: bytes) -> dict[str, object]:
    try:
        value = json.loads(payload)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
