"""Why the proxy turns a request away, in words a user can act on.

Every refusal is logged and answered (HTTP 403; 400 for a request without a token, 503 when
the database cannot be asked) with
``console refused (<reason>): <message>``. The message never holds the token.
"""

from __future__ import annotations

import enum
import http
from typing import Final

from kubenova.console import auth


class Reason(enum.StrEnum):
    """The proxy's reasons; the token's own ones keep the values of :class:`auth.RefusalReason`."""

    NO_TOKEN = "no_token"
    UNKNOWN_TOKEN = auth.RefusalReason.UNKNOWN_TOKEN.value
    EXPIRED = auth.RefusalReason.EXPIRED.value
    ALREADY_USED = auth.RefusalReason.ALREADY_USED.value
    OTHER_SESSION = auth.RefusalReason.OTHER_SESSION.value
    WRONG_INSTANCE = auth.RefusalReason.WRONG_INSTANCE.value
    INSTANCE_DELETED = auth.RefusalReason.INSTANCE_DELETED.value
    INSTANCE_MOVED = auth.RefusalReason.INSTANCE_MOVED.value
    CONSOLE_GONE = auth.RefusalReason.CONSOLE_GONE.value
    FOREIGN_ORIGIN = "foreign_origin"
    NO_CONSOLE = "no_console"
    UNAVAILABLE = "unavailable"


_MESSAGES: Final = {
    Reason.NO_TOKEN: "the URL carries no console token; ask for a new console URL",
    Reason.UNKNOWN_TOKEN: "the console token is not known; ask for a new console URL",
    Reason.EXPIRED: "the console token has expired; ask for a new console URL",
    Reason.ALREADY_USED: "the console token was already used; ask for a new console URL",
    Reason.OTHER_SESSION: (
        "the console token belongs to another browser session; ask for a new console URL"
    ),
    Reason.WRONG_INSTANCE: "the console token is for another instance",
    Reason.INSTANCE_DELETED: "the instance was deleted",
    Reason.INSTANCE_MOVED: "the instance moved to another host; ask for a new console URL",
    Reason.CONSOLE_GONE: (
        "the instance's guest restarted and its console moved; ask for a new console URL"
    ),
    Reason.FOREIGN_ORIGIN: "the page that opened this console is not one this proxy serves",
    Reason.NO_CONSOLE: "this console type is not served here",
    Reason.UNAVAILABLE: "the console service cannot check tokens right now; try again shortly",
}


class ConsoleRefusedError(Exception):
    """The proxy refuses this request; ``str()`` is the answer the client gets, e.g.
    ``console refused (expired): the console token has expired; ask for a new console URL``.
    ``detail`` adds what only the log should see (which origin, which instance)."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"console refused ({reason.value}): {_MESSAGES[reason]}")
        self.reason = reason
        self.detail = detail

    @property
    def status(self) -> http.HTTPStatus:
        if self.reason is Reason.NO_TOKEN:
            return http.HTTPStatus.BAD_REQUEST
        if self.reason is Reason.UNAVAILABLE:
            return http.HTTPStatus.SERVICE_UNAVAILABLE
        return http.HTTPStatus.FORBIDDEN

    @classmethod
    def from_token_refusal(cls, refused: auth.ConsoleTokenRefusedError) -> ConsoleRefusedError:
        return cls(Reason(refused.reason.value), refused.detail)
