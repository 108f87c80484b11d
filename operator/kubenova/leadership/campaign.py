"""The election in time: wait for the Lease, keep it, hand it back.

A standby tries every retry period until it holds the Lease. The leader then renews it every
retry period from a thread of its own, and gives up as soon as it sees another holder. A
watchdog thread beside it gives up the moment the Lease has gone unrenewed for the renew
deadline, whatever a hung request is doing: the Lease may be taken ``leaseDurationSeconds``
after its last renewal, and by then nothing of this leader may still be running. Giving up is
ending the process (:func:`exit_at_once`, as controller-runtime does): its handlers, consumer
and writers stop with it, and the kubelet restarts it as a standby.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable

from kubenova.leadership.election import Clock, LeaderElector
from kubenova.leadership.health import Health
from kubenova.leadership.settings import LeaderElectionSettings

LOG = logging.getLogger(__name__)

LOST_EXIT_CODE = 1

OnLost = Callable[[str], None]


def exit_at_once(reason: str) -> None:
    """Log why, then end the process without running anything else (no cleanup handler, no
    atexit): another replica may be leading already."""
    LOG.critical("leadership lost: %s; exiting", reason)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(LOST_EXIT_CODE)


class Campaign:
    """Runs one :class:`LeaderElector` with the timing of ``settings``, reporting to
    ``health``."""

    def __init__(
        self,
        elector: LeaderElector,
        settings: LeaderElectionSettings,
        health: Health,
        clock: Clock,
        *,
        where: str = "",
    ) -> None:
        self._elector = elector
        self._settings = settings
        self._health = health
        self._clock = clock
        self._where = where or settings.lease_name
        self._renewed_at = 0.0
        self._last_error = ""
        self._lost_lock = threading.Lock()
        self._lost = False
        self._keeping = threading.Event()
        self._keepers: list[threading.Thread] = []

    def acquire(self, stop: threading.Event) -> bool:
        """Try every retry period until this process holds the Lease (True) or ``stop`` is
        set (False)."""
        LOG.info(
            "waiting to lead: lease %s as %s",
            self._where,
            self._elector.identity,
            extra={"lease": self._where, "identity": self._elector.identity},
        )
        while not stop.is_set():
            acquired = self._round(timeout=self._settings.renew_deadline_s)
            self._health.campaigned(self._elector.holder)
            if acquired:
                LOG.info(
                    "leading: lease %s acquired",
                    self._where,
                    extra={"lease": self._where, "identity": self._elector.identity},
                )
                return True
            if self._clock.wait(stop, self._settings.retry_period_s):
                break
        return False

    def renew(self, stop: threading.Event, on_lost: OnLost = exit_at_once) -> None:
        """Renew every retry period until ``stop`` is set; ``on_lost`` once renewing fails for
        the renew deadline, or the Lease is seen with another holder. Returns after either."""
        while not self._clock.wait(stop, self._settings.retry_period_s):
            while True:
                left = self._deadline() - self._clock.monotonic()
                if left <= 0:
                    self._lose(on_lost, self._overdue_reason())
                    return
                if self._round(timeout=left):
                    break
                holder = self._elector.holder
                if holder and holder != self._elector.identity:
                    self._lose(on_lost, f"lease {self._where} is held by {holder}")
                    return
                left = self._deadline() - self._clock.monotonic()
                if left > 0 and self._clock.wait(stop, min(self._settings.retry_period_s, left)):
                    return

    def watch(self, stop: threading.Event, on_lost: OnLost = exit_at_once) -> None:
        """Call ``on_lost`` as soon as the renew deadline passes, even while :meth:`renew`
        is stuck in a request; return once ``stop`` is set."""
        while True:
            left = self._deadline() - self._clock.monotonic()
            if left <= 0:
                self._lose(on_lost, self._overdue_reason())
                return
            if self._clock.wait(stop, left):
                return

    def start_keeping(self, on_lost: OnLost = exit_at_once) -> None:
        """:meth:`renew` and :meth:`watch`, each in a daemon thread, until
        :meth:`stop_keeping`."""
        self._keeping.clear()
        self._keepers = [
            threading.Thread(
                target=self._guarded, args=(target, self._keeping, on_lost), name=name, daemon=True
            )
            for name, target in (("lease-renew", self.renew), ("lease-watchdog", self.watch))
        ]
        for keeper in self._keepers:
            keeper.start()

    def stop_keeping(self) -> bool:
        """Stop renewing and wait for a renewal under way; False if one is still running
        after the renew deadline (the Lease must then not be released)."""
        self._keeping.set()
        for keeper in self._keepers:
            keeper.join(timeout=self._settings.renew_deadline_s)
        return not any(keeper.is_alive() for keeper in self._keepers)

    def release(self) -> bool:
        """Give the Lease back, once the work it guards has stopped and
        :meth:`stop_keeping` has returned True (the elector is not shared between threads)."""
        try:
            released = self._elector.release(timeout=self._settings.renew_deadline_s)
        except Exception as exc:
            LOG.warning("could not release lease %s: %s", self._where, exc)
            return False
        if released:
            LOG.info("lease %s released", self._where, extra={"lease": self._where})
        return released

    def _guarded(
        self,
        target: Callable[[threading.Event, OnLost], None],
        stop: threading.Event,
        on_lost: OnLost,
    ) -> None:
        try:
            target(stop, on_lost)
        except BaseException as exc:
            # A keeper that died can no longer promise the Lease is held.
            self._lose(on_lost, f"{threading.current_thread().name} failed: {exc!r}")

    def _round(self, *, timeout: float) -> bool:
        started = self._clock.monotonic()
        try:
            held = self._elector.try_acquire_or_renew(timeout=timeout)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            # The same failure every retry period is one line, not one a round.
            level = logging.DEBUG if error == self._last_error else logging.WARNING
            LOG.log(level, "lease %s: %s", self._where, error, extra={"lease": self._where})
            self._last_error = error
            return False
        self._last_error = ""
        if held:
            self._renewed_at = started
            self._health.renewed(started)
        return held

    def _deadline(self) -> float:
        return self._renewed_at + self._settings.renew_deadline_s

    def _overdue_reason(self) -> str:
        reason = f"lease {self._where} not renewed for {self._settings.renew_deadline_s:g} s"
        return f"{reason} ({self._last_error})" if self._last_error else reason

    def _lose(self, on_lost: OnLost, reason: str) -> None:
        with self._lost_lock:
            if self._lost:
                return
            self._lost = True
        on_lost(reason)
