"""Acting on several resources of one request: every one is checked before any is changed.

EC2 answers a request naming several resources (stop these instances, tag these resources) with
one refusal or one success. Checking them all first means a refusal (one instance in the wrong
state, one resource over its tag limit) leaves every one of them as it was, rather than half
the request done; the actions share this rather than each writing the two loops again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def check_all_then_apply(
    items: Sequence[Item], check: Callable[[Item], None], apply: Callable[[Item], Result]
) -> list[Result]:
    """``check`` every item (it raises to refuse the request), then ``apply`` each in order."""
    for item in items:
        check(item)
    return [apply(item) for item in items]
