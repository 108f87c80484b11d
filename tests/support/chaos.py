"""The chaos suite's modules (hack/chaos/), for tests of their pure parts. Like hack/bench,
hack/chaos is a directory of scripts that import each other and the benchmarks' modules by
name, so both directories go on ``sys.path``."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from tests.support.bench import BENCH_DIR

CHAOS_DIR = BENCH_DIR.parent / "chaos"


def chaos_module(name: str) -> ModuleType:
    for directory in (BENCH_DIR, CHAOS_DIR):
        if str(directory) not in sys.path:
            sys.path.append(str(directory))
    return importlib.import_module(name)
