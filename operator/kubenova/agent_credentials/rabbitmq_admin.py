"""RabbitMQ's management HTTP API (the management plugin), through ``urllib``.

The standard library is enough for the four calls the operator makes (create or update a
user, set its permissions and topic permissions, delete it), so no HTTP client is added to
the operator's dependencies. The URL carries the credentials of a user tagged
``administrator``, e.g. ``http://kubenova-operator:PASSWORD@rabbitmq:15672/``; https is
verified against the system's CAs or against ``ca_file``.

:func:`agent_permissions` is the one definition of what an agent's user may do, the same as
``hack/rabbitmq-agent-user.sh`` gives on the local stack.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from kubenova.config import MessagingSettings

_TIMEOUT_S = 10.0
# The characters kn_regex_quote (hack/lib/rabbitmq.sh) escapes: a name becomes a literal in
# a permission regex the same way here and there.
_REGEX_SPECIAL = re.compile(r"([][\\.*^$+?(){}|/])")


class ManagementError(Exception):
    """The management API refused a call or could not be reached."""


@dataclasses.dataclass(frozen=True)
class Permissions:
    """What one RabbitMQ user may do on one vhost (regexes over resource names)."""

    configure: str
    write: str
    read: str
    # On the topic exchange ``topic_exchange``: routing keys it may publish with (write) and
    # bind its queue with (read).
    topic_exchange: str
    topic_write: str
    topic_read: str


def regex_quote(text: str) -> str:
    """``text`` as a literal inside a RabbitMQ (PCRE) permission regex."""
    return _REGEX_SPECIAL.sub(r"\\\1", text)


def agent_permissions(host: str, messaging: MessagingSettings) -> Permissions:
    """Its own queue ``compute.<host>`` and nothing else:

    * configure ``^compute\\.HOST$``: declare its queue;
    * write ``^(kubenova|kubenova-dlx|compute\\.HOST)$``: publish to the exchange, bind its
      queue, dead-letter to the DLX;
    * read ``^(kubenova|compute\\.HOST)$``: bind from the exchange, consume its queue;
    * on the exchange ``kubenova``, publish only with routing key ``conductor`` (reports) or
      one under ``reply.compute.HOST.`` (answers to calls made to this host), and bind only
      ``compute.HOST``.

    It cannot publish to the default exchange, declare exchanges, or touch another host's
    queue.
    """
    queue = regex_quote(messaging.compute_topic(host))
    exchange = regex_quote(messaging.exchange)
    dlx = regex_quote(messaging.dead_letter_exchange)
    return Permissions(
        configure=f"^{queue}$",
        write=f"^({exchange}|{dlx}|{queue})$",
        read=f"^({exchange}|{queue})$",
        topic_exchange=messaging.exchange,
        topic_write=(
            f"^({regex_quote(messaging.conductor_topic)}"
            f"|{regex_quote(messaging.reply_prefix(host))}.+)$"
        ),
        topic_read=f"^{queue}$",
    )


class ManagementClient:
    def __init__(self, url: str, *, ca_file: str | None = None, timeout_s: float = _TIMEOUT_S):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError("the RabbitMQ management URL must be http(s)://user:password@host")
        if parsed.username is None:
            raise ValueError("the RabbitMQ management URL carries no user")
        credentials = f"{urllib.parse.unquote(parsed.username)}:"
        credentials += urllib.parse.unquote(parsed.password or "")
        self._authorization = "Basic " + base64.b64encode(credentials.encode()).decode()
        netloc = parsed.netloc.rpartition("@")[2]
        # Where the API is, without the credentials: safe to show in messages.
        self.base = urllib.parse.urlunsplit(
            (parsed.scheme, netloc, parsed.path.rstrip("/") + "/api", "", "")
        )
        self._timeout_s = timeout_s
        self._context = (
            ssl.create_default_context(cafile=ca_file) if parsed.scheme == "https" else None
        )

    def put_user(self, name: str, password: str) -> None:
        """Create the user, or set its password; no tags (no management access)."""
        self._call("PUT", f"users/{_q(name)}", {"password": password, "tags": ""})

    def delete_user(self, name: str) -> bool:
        """Delete the user, which also drops its permissions; False when there was none."""
        return self._call("DELETE", f"users/{_q(name)}", missing_ok=True)

    def set_permissions(self, vhost: str, user: str, permissions: Permissions) -> None:
        self._call(
            "PUT",
            f"permissions/{_q(vhost)}/{_q(user)}",
            {
                "configure": permissions.configure,
                "write": permissions.write,
                "read": permissions.read,
            },
        )
        self._call(
            "PUT",
            f"topic-permissions/{_q(vhost)}/{_q(user)}",
            {
                "exchange": permissions.topic_exchange,
                "write": permissions.topic_write,
                "read": permissions.topic_read,
            },
        )

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, missing_ok: bool = False
    ) -> bool:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base}/{path}", data=data, method=method)
        request.add_header("Authorization", self._authorization)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(
                request, timeout=self._timeout_s, context=self._context
            ) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                detail = exc.read(500).decode(errors="replace")
            if exc.code == 404 and missing_ok:
                return False
            raise ManagementError(
                f"{method} {self.base}/{path}: HTTP {exc.code} {detail}".strip()
            ) from exc
        except OSError as exc:  # URLError, timeouts, refused connections
            raise ManagementError(f"{method} {self.base}/{path}: {exc}") from exc
        return True


def _q(segment: str) -> str:
    """One path segment: a vhost ``/`` is ``%2F``, as the API expects."""
    return urllib.parse.quote(segment, safe="")
