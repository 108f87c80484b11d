"""get_console_output on the host: the tail of the console log, in lines and never more than
the byte cap, decoded as UTF-8 with replacement; an unknown instance is not found."""

from __future__ import annotations

import pathlib

import pytest

from kubenova_agent import console_output, exceptions

UUID = "5b0c1d7e-0000-4000-8000-000000000001"


def write(tmp_path: pathlib.Path, data: bytes) -> str:
    path = tmp_path / "console.log"
    path.write_bytes(data)
    return str(path)


def test_the_last_lines_are_returned_with_their_newlines(tmp_path):
    path = write(tmp_path, b"one\r\ntwo\r\nthree\r\nfour\r\n")

    assert console_output.read_tail(path, 2) == "three\r\nfour\r\n"


def test_without_a_count_the_whole_log_is_returned(tmp_path):
    path = write(tmp_path, b"one\ntwo\n")

    assert console_output.read_tail(path, None) == "one\ntwo\n"


def test_a_last_line_without_its_newline_counts_as_a_line(tmp_path):
    path = write(tmp_path, b"one\ntwo\nlogin: ")

    assert console_output.read_tail(path, 1) == "login: "
    assert console_output.read_tail(path, 2) == "two\nlogin: "


def test_more_lines_than_the_log_has_give_the_whole_log(tmp_path):
    path = write(tmp_path, b"one\ntwo\n")

    assert console_output.read_tail(path, 10) == "one\ntwo\n"


def test_zero_lines_give_nothing(tmp_path):
    path = write(tmp_path, b"one\ntwo\n")

    assert console_output.read_tail(path, 0) == ""


def test_the_byte_cap_keeps_the_end_and_drops_the_line_it_cuts(tmp_path):
    path = write(tmp_path, b"a" * 50 + b"\n" + b"kept-1\nkept-2\n")

    # The last 20 bytes start inside the line of a's: that line is left out, not shown half.
    assert console_output.read_tail(path, None, max_bytes=20) == "kept-1\nkept-2\n"
    assert console_output.read_tail(path, 5, max_bytes=20) == "kept-1\nkept-2\n"


def test_the_cap_applies_before_the_line_count(tmp_path):
    path = write(tmp_path, b"".join(b"line-%03d\n" % n for n in range(100)))

    text = console_output.read_tail(path, 50, max_bytes=94)

    assert text == "".join(f"line-{n:03d}\n" for n in range(90, 100))


def test_a_cap_that_falls_at_the_start_of_a_line_keeps_that_line(tmp_path):
    path = write(tmp_path, b"".join(b"line-%03d\n" % n for n in range(100)))

    text = console_output.read_tail(path, None, max_bytes=90)

    assert text == "".join(f"line-{n:03d}\n" for n in range(90, 100))


def test_the_default_cap_is_one_mib(tmp_path):
    path = write(tmp_path, b"x" * (2 * console_output.MAX_BYTES) + b"\nlast\n")

    assert console_output.read_tail(path, None) == "last\n"


def test_bytes_that_are_not_utf8_are_replaced(tmp_path):
    path = write(tmp_path, "héllo\n".encode() + b"\xff\xfe bad\n")

    assert console_output.read_tail(path, None) == "héllo\n\ufffd\ufffd bad\n"


def test_a_missing_file_reads_as_empty(tmp_path):
    assert console_output.read_tail(str(tmp_path / "absent.log"), 5) == ""


class LogDriver:
    """Only what get_console_output asks of a driver."""

    def __init__(self, logs: dict[str, str | None]) -> None:
        self.logs = logs

    def console_log_path(self, instance_uuid: str) -> str | None:
        if instance_uuid not in self.logs:
            raise exceptions.InstanceNotFound(instance_uuid)
        return self.logs[instance_uuid]


def test_the_handler_answers_the_tail_of_the_instances_log(tmp_path):
    driver = LogDriver({UUID: write(tmp_path, b"boot\nkubenova-guest: ready\n")})

    answer = console_output.handle(driver, {"instance_uuid": UUID, "tail_lines": 1})  # type: ignore[arg-type]

    assert answer == {"output": "kubenova-guest: ready\n"}


def test_the_handler_answers_empty_when_the_driver_keeps_no_log():
    answer = console_output.handle(LogDriver({UUID: None}), {"instance_uuid": UUID})  # type: ignore[arg-type]

    assert answer == {"output": ""}


def test_an_unknown_instance_is_not_found():
    with pytest.raises(exceptions.InstanceNotFound, match=f"instance {UUID} is not on this host"):
        console_output.handle(LogDriver({}), {"instance_uuid": UUID, "tail_lines": 5})  # type: ignore[arg-type]
