"""A Describe action's answer a page at a time, as EC2 pages it: MaxResults within EC2's bounds,
and a NextToken that names the last item of the page before by its place in the action's order.
The next page is the items after that place, so an item deleted between two pages shifts
nothing: nothing is repeated, nothing lost.

A token is the order key of that last item, JSON in URL-safe base64: opaque to clients, and
decodable by any replica of the server with nothing stored.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from kubenova.ec2 import errors

#: EC2's bounds of MaxResults for the actions that page.
MIN_RESULTS = 5
MAX_RESULTS = 1000

Key = tuple[str, ...]


def page_size(raw: Any) -> int | None:
    """The MaxResults asked for; None for everything at once. InvalidParameterValue naming
    MaxResults outside EC2's bounds."""
    if raw is None:
        return None
    if not MIN_RESULTS <= int(raw) <= MAX_RESULTS:
        raise errors.invalid(
            "MaxResults", f"{raw} is out of range: it must be from {MIN_RESULTS} to {MAX_RESULTS}"
        )
    return int(raw)


def token_of(key: Key) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def key_of(token: str, parts: int) -> Key | None:
    """The order key a NextToken names, of ``parts`` strings; None when it is not one of ours
    (each action refuses that in its own words)."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error):
        return None
    if (
        not isinstance(decoded, list)
        or len(decoded) != parts
        or not all(isinstance(part, str) for part in decoded)
    ):
        return None
    return tuple(decoded)
