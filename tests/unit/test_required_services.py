"""Under make test a missing service fails the test that needs it; run by hand, it skips."""

from __future__ import annotations

import pytest

from tests.support.required import REQUIRE_ENV, missing


def test_a_missing_service_skips_a_test_run_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="libvirtd is away"):
        missing("libvirtd is away")


def test_a_missing_service_fails_a_run_that_requires_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="libvirtd is away"):
        missing("libvirtd is away")
