"""The conductor's memory of the status it last wrote, and which fields a write would change."""

from __future__ import annotations

from typing import Any

import pytest

from kubenova.conductor.last_written import LastWritten, changed_fields


def test_unknown_key_is_none_and_a_remembered_one_comes_back() -> None:
    memory = LastWritten()
    assert memory.get("a") is None
    memory.remember("a", {"phase": "Running"})
    assert memory.get("a") == {"phase": "Running"}
    assert len(memory) == 1


@pytest.mark.parametrize("capacity", [0, -1])
def test_capacity_below_one_is_refused(capacity: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LastWritten(capacity)


def test_capacity_of_one_keeps_only_the_last_key() -> None:
    memory = LastWritten(1)
    memory.remember("a", {"phase": "Running"})
    memory.remember("b", {"phase": "Building"})
    assert memory.get("a") is None
    assert memory.get("b") == {"phase": "Building"}
    assert len(memory) == 1


def test_the_least_recently_written_key_is_evicted_first() -> None:
    memory = LastWritten(3)
    for key in ("a", "b", "c"):
        memory.remember(key, {"key": key})
    memory.remember("d", {"key": "d"})
    assert memory.get("a") is None
    assert [memory.get(key) is not None for key in ("b", "c", "d")] == [True, True, True]
    assert len(memory) == 3


def test_reading_a_key_makes_it_recently_used() -> None:
    memory = LastWritten(3)
    for key in ("a", "b", "c"):
        memory.remember(key, {"key": key})
    assert memory.get("a") == {"key": "a"}  # now "b" is the oldest
    memory.remember("d", {"key": "d"})
    assert memory.get("b") is None
    assert memory.get("a") == {"key": "a"}


def test_writing_a_key_again_makes_it_recently_used() -> None:
    memory = LastWritten(3)
    for key in ("a", "b", "c"):
        memory.remember(key, {"key": key})
    memory.remember("a", {"phase": "Running"})  # now "b" is the oldest
    memory.remember("d", {"key": "d"})
    assert memory.get("b") is None
    assert memory.get("a") == {"key": "a", "phase": "Running"}
    assert len(memory) == 3


def test_a_missed_read_does_not_change_the_eviction_order() -> None:
    memory = LastWritten(2)
    memory.remember("a", {"key": "a"})
    memory.remember("b", {"key": "b"})
    assert memory.get("z") is None
    memory.remember("c", {"key": "c"})
    assert memory.get("a") is None
    assert memory.get("b") == {"key": "b"}


def test_remember_merges_top_level_fields_like_a_merge_patch() -> None:
    memory = LastWritten()
    memory.remember("h1", {"state": "up", "vcpus": {"used": 1, "capacity": 8}, "audit": "x"})
    memory.remember("h1", {"state": "down", "vcpus": {"used": 2}})
    # Fields not given stay; a given field replaces the remembered value as a whole.
    assert memory.get("h1") == {"state": "down", "vcpus": {"used": 2}, "audit": "x"}


def test_forget_drops_the_key_and_forgetting_an_unknown_key_is_harmless() -> None:
    memory = LastWritten()
    memory.remember("a", {"phase": "Running"})
    memory.remember("b", {"phase": "Running"})
    memory.forget("a")
    memory.forget("never-written")
    assert memory.get("a") is None
    assert memory.get("b") == {"phase": "Running"}
    assert len(memory) == 1
    # Once forgotten, a new write starts from nothing (no old fields merged back in).
    memory.remember("a", {"host": "h2"})
    assert memory.get("a") == {"host": "h2"}


def test_get_returns_a_copy_the_caller_may_change() -> None:
    memory = LastWritten()
    memory.remember("a", {"conditions": [{"type": "Ready", "status": "True"}], "phase": "Running"})
    got = memory.get("a")
    assert got is not None
    got["phase"] = "Error"
    got["conditions"][0]["status"] = "False"
    got["conditions"].append({"type": "Scheduled"})
    assert memory.get("a") == {
        "conditions": [{"type": "Ready", "status": "True"}],
        "phase": "Running",
    }


def test_remember_keeps_a_copy_of_what_it_was_given() -> None:
    memory = LastWritten()
    status: dict[str, Any] = {"addresses": ["10.0.0.1"], "usage": {"used": 1}}
    memory.remember("a", status)
    status["addresses"].append("10.0.0.2")
    status["usage"]["used"] = 5
    status["phase"] = "Error"
    assert memory.get("a") == {"addresses": ["10.0.0.1"], "usage": {"used": 1}}


def test_with_nothing_written_every_field_is_a_change() -> None:
    status = {"phase": "Running", "taskState": None}
    changes = changed_fields(None, status)
    assert changes == status
    changes["phase"] = "Error"
    assert status["phase"] == "Running"  # a new dict, not the caller's


def test_only_fields_that_differ_are_changes() -> None:
    previous = {"phase": "Building", "host": "h1", "addresses": [], "extra": "kept"}
    status = {"phase": "Running", "host": "h1", "addresses": ["10.0.0.1"]}
    assert changed_fields(previous, status) == {"phase": "Running", "addresses": ["10.0.0.1"]}


def test_identical_status_changes_nothing() -> None:
    status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    assert changed_fields({**status, "other": 1}, status) == {}


def test_a_field_missing_before_is_a_change_unless_it_is_null() -> None:
    # A merge patch that sets a field to null removes it: onto an object without the field,
    # that changes nothing.
    assert changed_fields({"phase": "Running"}, {"phase": "Running", "fault": {"r": "x"}}) == {
        "fault": {"r": "x"}
    }
    assert changed_fields({"phase": "Running"}, {"phase": "Running", "taskState": None}) == {}


def test_a_field_that_becomes_null_is_a_change() -> None:
    assert changed_fields({"taskState": "spawning"}, {"taskState": None}) == {"taskState": None}


def test_a_nested_difference_makes_the_whole_field_a_change() -> None:
    previous = {"vcpus": {"used": 1, "capacity": 8}}
    status = {"vcpus": {"used": 2, "capacity": 8}}
    assert changed_fields(previous, status) == status
