"""The live migration benchmark's own arithmetic (hack/bench/live_migration_bench.py): the
medians, the worst downtime and the ratio against the direct moves. The moves themselves need
two real libvirt hosts: the benchmark is run by hand or by `make bench-migration`."""

from __future__ import annotations

import importlib
import sys

from tests.support.bench import BENCH_DIR

if str(BENCH_DIR) not in sys.path:
    sys.path.append(str(BENCH_DIR))
bench = importlib.import_module("live_migration_bench")


def test_the_summary_gives_medians_the_worst_downtime_and_the_ratio_to_libvirt() -> None:
    moves = [
        {"wall_s": 1.5, "libvirt_s": 1.0, "downtime_ms": 40},
        {"wall_s": 1.2, "libvirt_s": 0.9, "downtime_ms": 90},
        {"wall_s": 1.8, "libvirt_s": 1.1, "downtime_ms": 30},
    ]
    direct = {
        "direct_wall_s": 1.0,
        "direct_libvirt_s": 0.8,
        "direct_downtime_ms": 35,
        "direct_added_s": 0.2,
    }

    assert bench.summary(moves, direct) == {
        "kubenova_move_s": 1.5,
        "kubenova_libvirt_s": 1.0,
        "kubenova_downtime_ms": 40,
        "kubenova_downtime_max_ms": 90,
        "direct_wall_s": 1.0,
        "direct_libvirt_s": 0.8,
        "direct_downtime_ms": 35,
        "move_ratio": 1.5,
        # wall minus job per move: 0.5, 0.3, 0.7
        "kubenova_added_s": 0.5,
        "direct_added_s": 0.2,
        "move_ratio_same_job": 1.3,
        "moves": 3,
    }


def test_moves_without_libvirts_downtime_report_none_rather_than_a_guess() -> None:
    moves = [{"wall_s": 2.0, "libvirt_s": 1.0, "downtime_ms": None}]
    direct = {"direct_wall_s": 1.6, "direct_libvirt_s": 1.0, "direct_downtime_ms": 30}

    figures = bench.summary(moves, direct)

    assert (figures["kubenova_downtime_ms"], figures["kubenova_downtime_max_ms"]) == (None, None)
    assert figures["move_ratio"] == 1.25


def test_without_the_direct_added_time_the_same_job_ratio_is_not_guessed() -> None:
    moves = [{"wall_s": 2.0, "libvirt_s": 1.5, "downtime_ms": 20}]
    direct = {"direct_wall_s": 1.6, "direct_libvirt_s": 1.0, "direct_downtime_ms": 30}

    figures = bench.summary(moves, direct)

    assert figures["kubenova_added_s"] == 0.5
    assert figures["move_ratio_same_job"] is None
