r"""EC2's wildcards in filter values: ``*``, ``?``, the backslash escapes, ``[`` as an ordinary
character, and a bound on the work of a pathological value."""

from __future__ import annotations

import random
import re
import time

import pytest

from kubenova.ec2 import wildcards


@pytest.mark.parametrize(
    ("value", "text", "expected"),
    [
        ("web", "web", True),
        ("web", "web-1", False),
        ("web", "Web", False),  # case-sensitive, as EC2 is
        ("web*", "web", True),
        ("web*", "web-1", True),
        ("*-1", "web-1", True),
        ("*-1", "web-12", False),
        ("w*b*1", "web-1", True),
        ("w*b*1", "web-2", False),
        ("*", "", True),
        ("**", "anything at all", True),
        ("", "", True),
        ("", "x", False),
        ("web-?", "web-1", True),
        ("web-?", "web-", False),
        ("web-?", "web-12", False),
        ("??", "東京", True),  # one character, not one byte
        ("a*", "a\nline break", True),  # a run may hold a line break
        ("?", "\n", True),
        # A backslash makes the next *, ? or backslash literal.
        (r"a\*b", "a*b", True),
        (r"a\*b", "axb", False),
        (r"a\?b", "a?b", True),
        (r"a\?b", "axb", False),
        (r"a\\b", "a\\b", True),
        (r"a\\*", "a\\anything", True),
        (r"\*amazon\?\\", "*amazon?\\", True),
        (r"\*amazon\?\\", "xamazony\\", False),
        # Before any other character, or at the end, a backslash is itself.
        (r"C:\dir", "C:\\dir", True),
        ("end\\", "end\\", True),
        # EC2 has no character classes: [ and ] are ordinary characters.
        ("[abc]", "[abc]", True),
        ("[abc]", "a", False),
        ("[a-z]*", "[a-z]-rest", True),
        ("[!x]", "y", False),
    ],
)
def test_a_value_matches_as_ec2_says(value, text, expected):
    assert wildcards.Pattern(value).matches(text) is expected


def _reference(value: str) -> re.Pattern[str]:
    """The same rules by way of a regular expression: slow on some values, but another way of
    getting the answer."""
    parts = []
    index = 0
    while index < len(value):
        char = value[index]
        if char == "\\" and index + 1 < len(value) and value[index + 1] in "*?\\":
            parts.append(re.escape(value[index + 1]))
            index += 2
            continue
        parts.append({"*": ".*", "?": "."}.get(char, re.escape(char)))
        index += 1
    return re.compile("".join(parts), re.DOTALL)


def test_the_matcher_agrees_with_a_regular_expression_on_random_values():
    chosen = random.Random(20260101)
    alphabet = "ab*?\\["
    for _ in range(5000):
        value = "".join(chosen.choice(alphabet) for _ in range(chosen.randint(0, 7)))
        text = "".join(chosen.choice(alphabet) for _ in range(chosen.randint(0, 9)))
        expected = _reference(value).fullmatch(text) is not None
        assert wildcards.Pattern(value).matches(text) is expected, (value, text)


def test_a_pathological_value_is_matched_without_backtracking_for_ever():
    # A backtracking regular expression takes combinatorially long on this pair; the matcher
    # is bounded by the product of the lengths.
    value = "*a" * 40 + "*b"
    text = "a" * 256
    started = time.monotonic()
    assert not wildcards.Pattern(value).matches(text)
    assert time.monotonic() - started < 1.0
