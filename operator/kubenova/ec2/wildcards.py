r"""EC2's wildcards in filter values: ``*`` stands for any run of characters (none too), ``?``
for exactly one, and a backslash before either of them, or before another backslash, makes it
literal (``\*``, ``\?``, ``\\``). A backslash before any other character is a backslash.
Matching is case-sensitive, as EC2's is.

EC2 has no character classes, so ``[`` is an ordinary character: :mod:`fnmatch` would read one
and knows no escapes. Nor is a value turned into a regular expression: against a long tag value,
``*a*a*a…`` makes a backtracking engine try every way of splitting it, seconds of CPU for a few
dozen characters of a request. :meth:`Pattern.matches` goes back only to the last ``*`` it
passed, so its work is bounded by the product of the two lengths.
"""

from __future__ import annotations

import enum

_ESCAPABLE = frozenset("*?\\")


class _Wild(enum.Enum):
    ONE = "?"
    RUN = "*"


_Token = str | _Wild


class Pattern:
    """One filter value, read once and matched against many texts."""

    def __init__(self, value: str) -> None:
        self.value = value
        self._tokens = _tokens(value)
        # A value without wildcards is compared whole: the common case, and the cheapest.
        self._literal: str | None = None
        if not any(isinstance(token, _Wild) for token in self._tokens):
            self._literal = "".join(str(token) for token in self._tokens)

    def matches(self, text: str) -> bool:
        if self._literal is not None:
            return text == self._literal
        return _glob(self._tokens, text)

    def __repr__(self) -> str:
        return f"Pattern({self.value!r})"


def _tokens(value: str) -> tuple[_Token, ...]:
    tokens: list[_Token] = []
    index = 0
    while index < len(value):
        char = value[index]
        if char == "\\" and index + 1 < len(value) and value[index + 1] in _ESCAPABLE:
            tokens.append(value[index + 1])
            index += 2
            continue
        if char == "*":
            if not tokens or tokens[-1] is not _Wild.RUN:  # ``**`` is ``*``
                tokens.append(_Wild.RUN)
        elif char == "?":
            tokens.append(_Wild.ONE)
        else:
            tokens.append(char)
        index += 1
    return tuple(tokens)


def _glob(tokens: tuple[_Token, ...], text: str) -> bool:
    """Whether ``tokens`` match the whole of ``text``. On a mismatch after a ``*``, that ``*``
    takes one more character and matching resumes after it; an earlier ``*`` never needs to
    take more, since the later one can take whatever it would have."""
    position = 0  # in text
    at = 0  # in tokens
    last_run = -1  # the token index of the last ``*`` passed
    resume = 0  # where in text the part after that ``*`` starts
    while position < len(text):
        token = tokens[at] if at < len(tokens) else None
        if token is _Wild.ONE or (isinstance(token, str) and token == text[position]):
            at += 1
            position += 1
        elif token is _Wild.RUN:
            last_run, resume = at, position
            at += 1
        elif last_run >= 0:
            resume += 1
            at, position = last_run + 1, resume
        else:
            return False
    return all(token is _Wild.RUN for token in tokens[at:])
