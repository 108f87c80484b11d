"""The CPU breakdown of the benchmarks (hack/bench/benchlib.py): what a run used, per kind of
process, from two snapshots of /proc."""

from __future__ import annotations

import os
from types import ModuleType

from tests.support.bench import bench_module


def benchlib() -> ModuleType:
    return bench_module("benchlib")


def test_a_process_that_ended_during_the_run_costs_its_kind_nothing() -> None:
    before = {(10, 1): ("other", 5.0), (11, 1): ("other", 1.0), (20, 1): ("operator", 2.0)}
    after = {(11, 1): ("other", 1.5), (20, 1): ("operator", 3.25)}

    delta = benchlib().cpu_delta(before, after)

    assert delta["other"] == 0.5
    assert delta["operator"] == 1.25


def test_a_process_that_started_during_the_run_counts_whole_and_a_reused_pid_is_another() -> None:
    before = {(30, 1): ("agents", 4.0)}
    after = {(30, 9): ("agents", 0.75), (31, 9): ("agents", 0.25)}

    assert benchlib().cpu_delta(before, after)["agents"] == 1.0


def test_every_kind_is_reported_even_when_none_of_it_runs() -> None:
    delta = benchlib().cpu_delta({}, {})

    assert set(delta) == {
        "operator",
        "agents",
        "apiserver",
        "mariadb",
        "rabbitmq",
        "client",
        "other",
    }
    assert all(value == 0.0 for value in delta.values())


def test_a_snapshot_names_this_process_the_client() -> None:
    snapshot = benchlib().stack_cpu_s()

    mine = [name for (pid, _), (name, _) in snapshot.items() if pid == os.getpid()]
    assert mine == ["client"]
