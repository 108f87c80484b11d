"""The benchmarks' modules (hack/bench/), for tests of their pure parts. hack/bench is a
directory of scripts, not a package: its modules import each other (``import benchlib``) as the
script's directory allows, so it goes on ``sys.path``."""

from __future__ import annotations

import importlib
import pathlib
import sys
from types import ModuleType

BENCH_DIR = pathlib.Path(__file__).resolve().parents[2] / "hack" / "bench"


def bench_module(name: str) -> ModuleType:
    """The module ``name`` of hack/bench (``scheduler_bench``, ``bench_creates``, ...)."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.append(str(BENCH_DIR))
    return importlib.import_module(name)
