import argparse

import pytest

from kubenova.cli import durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        ("1m30.5s", 90.5),
        ("0", 0.0),
        ("0s", 0.0),
        ("-1s", -1.0),
        ("+2m", 120.0),
        (".5s", 0.5),
        ("1500us", 0.0015),
        ("2µs", 2e-6),
    ],
)
def test_kubectl_durations_parse_to_seconds(text, seconds):
    assert durations.parse(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5", 'time: missing unit in duration "5"'),
        ("5x", 'time: invalid duration "5x"'),
        ("", 'time: invalid duration ""'),
        ("m", 'time: invalid duration "m"'),
        ("1h m", 'time: invalid duration "1h m"'),
        ("-", 'time: invalid duration "-"'),
    ],
)
def test_what_is_not_a_duration_is_refused_in_gos_words(text, message):
    with pytest.raises(ValueError, match="^" + message + "$"):
        durations.parse(text)


def test_a_bad_duration_is_a_usage_error_for_argparse():
    with pytest.raises(argparse.ArgumentTypeError, match="missing unit"):
        durations.argument("10")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(300, "5m0s"), (30, "30s"), (5400, "1h30m0s"), (2.5, "2.5s"), (0.25, "250ms"), (0, "0s")],
)
def test_durations_print_as_go_prints_them(seconds, text):
    assert durations.format_seconds(seconds) == text
