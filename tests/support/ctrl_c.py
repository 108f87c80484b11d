"""Ctrl-C for tests that stand in for the user with ``_thread.interrupt_main``.

``interrupt_main`` does nothing when Python does not handle SIGINT, which is the case in a
process started in the background by a non-interactive shell (it inherits SIGINT ignored, and
Python then installs no handler): a test waiting for the plugin to stop on Ctrl-C would wait
for ever. The fixture makes Python handle SIGINT for the test, and puts back what was there.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest


@pytest.fixture
def ctrl_c() -> Iterator[None]:
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
