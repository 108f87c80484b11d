"""The manifest fuzz's modules (hack/fuzz), for tests of their pure parts. hack/fuzz is a
directory of scripts, not a package: its modules import each other (``import manifests``) as
the script's directory allows, so it goes on ``sys.path``."""

from __future__ import annotations

import importlib
import pathlib
import sys
from types import ModuleType

FUZZ_DIR = pathlib.Path(__file__).resolve().parents[2] / "hack" / "fuzz"


def fuzz_module(name: str) -> ModuleType:
    if str(FUZZ_DIR) not in sys.path:
        sys.path.append(str(FUZZ_DIR))
    return importlib.import_module(name)
