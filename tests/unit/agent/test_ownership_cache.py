"""The ownership cache: an answer holds while the domain is the same, and no longer."""

from __future__ import annotations

from kubenova_agent.virt.libvirt import ownership
from tests.support import FakeClock

UUID = "6f1c1d9e-0000-4000-8000-0000000000aa"
OTHER = "6f1c1d9e-0000-4000-8000-0000000000bb"


def test_an_answer_holds_while_the_runtime_id_is_unchanged():
    cache = ownership.OwnershipCache()
    cache.remember(UUID, 7, True)
    cache.remember(OTHER, -1, False)
    assert cache.get(UUID, 7) is True
    assert cache.get(OTHER, -1) is False


def test_nothing_is_known_about_a_domain_never_seen():
    assert ownership.OwnershipCache().get(UUID, 1) is None


def test_a_new_runtime_id_means_the_domain_must_be_read_again():
    # Started, stopped, or redefined and started by someone else: libvirt gave it a new id.
    cache = ownership.OwnershipCache()
    cache.remember(UUID, 7, True)
    assert cache.get(UUID, 8) is None
    assert cache.get(UUID, 7) is None  # the stale answer is gone, not kept for later


def test_an_answer_expires_after_max_age():
    clock = FakeClock()
    cache = ownership.OwnershipCache(max_age_s=60.0, clock=clock)
    cache.remember(UUID, -1, True)
    clock.advance(59.9)
    assert cache.get(UUID, -1) is True
    clock.advance(0.1)
    assert cache.get(UUID, -1) is None


def test_forget_drops_the_answer_about_an_undefined_domain():
    cache = ownership.OwnershipCache()
    cache.remember(UUID, 3, True)
    cache.forget(UUID)
    cache.forget(UUID)  # forgetting twice is fine
    assert cache.get(UUID, 3) is None


def test_retain_forgets_domains_missing_from_a_listing():
    cache = ownership.OwnershipCache()
    cache.remember(UUID, 3, True)
    cache.remember(OTHER, 4, False)
    cache.retain([OTHER])
    assert len(cache) == 1
    assert cache.get(UUID, 3) is None
    assert cache.get(OTHER, 4) is False
