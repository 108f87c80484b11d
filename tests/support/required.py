"""What a test needs from the machine (libvirtd, qemu-img, the registry, the guest image):
missing, it is skipped with the reason when a developer runs a subset by hand, but under
``make test`` (``KUBENOVA_REQUIRE_SERVICES=1``, set by hack/test.sh, which brings all of it up)
it fails, so that a broken set-up cannot pass CI by skipping the tests that would catch it."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_ENV = "KUBENOVA_REQUIRE_SERVICES"


def required() -> bool:
    return os.environ.get(REQUIRE_ENV) == "1"


def missing(reason: str) -> NoReturn:
    """Skip the test for ``reason``, or fail it when the run requires everything."""
    if required():
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: this run needs it)", pytrace=False)
    pytest.skip(reason)
