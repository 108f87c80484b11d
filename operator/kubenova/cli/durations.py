"""Durations in kubectl's syntax (Go's ``time.ParseDuration``): ``30s``, ``5m``, ``1h30m``,
``1.5h``, ``250ms``.

As in Go, a number needs a unit, except a bare ``0``. Negative durations parse too:
``--timeout`` reads them as "no limit", as ``kubectl wait`` does.
"""

from __future__ import annotations

import argparse
import re

_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # Go accepts both the micro sign and the Greek mu
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
# Longest units first, so "ms" is not read as "m" followed by garbage.
_PART = re.compile(
    r"(\d+(?:\.\d*)?|\.\d+)("
    + "|".join(sorted(map(re.escape, _UNITS), key=len, reverse=True))
    + ")"
)


def parse(text: str) -> float:
    """Seconds in ``text``; ValueError with Go's wording when it is not a duration."""
    original = text
    sign = 1.0
    if text[:1] in ("-", "+"):
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise ValueError(f'time: invalid duration "{original}"')
    seconds = 0.0
    position = 0
    while position < len(text):
        match = _PART.match(text, position)
        if match is None:
            if re.match(r"(\d+(?:\.\d*)?|\.\d+)$", text[position:]):
                raise ValueError(f'time: missing unit in duration "{original}"')
            raise ValueError(f'time: invalid duration "{original}"')
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    return sign * seconds


def argument(text: str) -> float:
    """:func:`parse` for argparse: a bad value is a usage error (exit code 2)."""
    try:
        return parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def format_seconds(seconds: float) -> str:
    """Go's rendering of a duration, as kubectl prints one: ``5m0s``, ``1h30m0s``, ``2.5s``."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 1:
        return f"{sign}{seconds * 1000:g}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{sign}{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{sign}{int(minutes)}m{text}"
    return f"{sign}{text}"
