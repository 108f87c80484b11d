"""``/healthz`` and ``/readyz`` for the kubelet's probes.

What each answer proves (200 with ``ok: ...``, else 503 with the reason):

* ``/healthz`` (liveness): the loop that does this process's work is turning. For a standby
  that is the campaign for the Lease (it tried within ``stall_s``, whatever the apiserver
  answered); for the leader, and for an operator run without leader election, it is the event
  loop that runs kopf (it turned within ``stall_s``). The leader must also have renewed its
  Lease within the renew deadline. A failure means restarting the container would help.
* ``/readyz`` (readiness): live, able to serve what every replica serves, and ready for its
  role. What every replica serves, whatever its role, is registered with :meth:`Health.require`
  (the agent credentials exchange, when it is on): until it can serve, the Service must not
  send it requests. A standby is otherwise ready as a standby: it is healthy and waiting, so a
  rollout may proceed past it. The leader, and an operator without leader election, is ready
  once kopf's startup handlers have finished (the database, the bus and the conductor's
  consumer are wired).

The server is the standard library's, in a daemon thread: two GETs every few seconds.
"""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubenova.leadership.election import Clock

LOG = logging.getLogger(__name__)

STANDBY = "standby"
LEADER = "leader"
SINGLE = "single"

# A loop that has not turned for this long is stuck, not busy: its watches and timers stall.
DEFAULT_STALL_S = 30.0


class Health:
    """The process's role and the last signs of life the probes judge.

    Written by the campaign, the renew thread and kopf's event loop; read by the server's
    threads. Each field is one assignment, which is all the consistency a probe needs.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        role: str,
        renew_deadline_s: float | None = None,
        stall_s: float = DEFAULT_STALL_S,
    ) -> None:
        self._clock = clock
        self.role = role
        self._renew_deadline_s = renew_deadline_s
        self._stall_s = stall_s
        now = clock.monotonic()
        self._turned_at = now
        self._renewed_at: float | None = None
        self.holder = ""
        # Set once kopf's startup handlers have finished (kopf's ``ready_flag``).
        self.started = threading.Event()
        self._requirements: list[Callable[[], str | None]] = []

    def require(self, problem: Callable[[], str | None]) -> None:
        """Be ready, in every role, only while ``problem()`` answers None (it answers why
        not otherwise): for what this replica serves whether it leads or not."""
        self._requirements.append(problem)

    def campaigned(self, holder: str) -> None:
        """A standby's campaign made an attempt; ``holder`` is who holds the Lease."""
        self.holder = holder
        self._turned_at = self._clock.monotonic()

    def became_leader(self) -> None:
        self.role = LEADER
        self._turned_at = self._clock.monotonic()

    def renewed(self, at: float) -> None:
        """The Lease was renewed by a round that began at ``at`` (monotonic clock)."""
        self._renewed_at = at

    def turned(self) -> None:
        """kopf's event loop ran a turn."""
        self._turned_at = self._clock.monotonic()

    def liveness(self) -> tuple[bool, str]:
        now = self._clock.monotonic()
        idle = now - self._turned_at
        what = "campaign" if self.role == STANDBY else "event loop"
        if idle > self._stall_s:
            return False, f"{self.role}: {what} has not turned for {idle:.1f} s"
        if self.role == LEADER and self._renew_deadline_s is not None:
            since = None if self._renewed_at is None else now - self._renewed_at
            if since is None or since > self._renew_deadline_s:
                return False, f"leader: lease not renewed within {self._renew_deadline_s:g} s"
            return True, f"leader: lease renewed {since:.1f} s ago, {what} turned {idle:.1f} s ago"
        if self.role == STANDBY:
            held = f"held by {self.holder}" if self.holder else "free"
            return True, f"standby: lease {held}, last tried {idle:.1f} s ago"
        return True, f"{self.role}: {what} turned {idle:.1f} s ago"

    def readiness(self) -> tuple[bool, str]:
        live, why = self.liveness()
        if not live:
            return live, why
        for problem in self._requirements:
            reason = problem()
            if reason is not None:
                return False, f"{self.role}: {reason}"
        if self.role == STANDBY:
            return True, why
        if not self.started.is_set():
            return False, f"{self.role}: kopf's startup handlers have not finished"
        return True, why


class _Handler(http.server.BaseHTTPRequestHandler):
    health: Health

    def do_GET(self) -> None:
        probes = {"/healthz": self.health.liveness, "/readyz": self.health.readiness}
        probe = probes.get(self.path.split("?", 1)[0])
        if probe is None:
            self._answer(404, "not found: /healthz or /readyz")
            return
        ok, why = probe()
        self._answer(200 if ok else 503, f"ok: {why}" if ok else why)

    def _answer(self, code: int, text: str) -> None:
        body = (text + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # One line per probe every few seconds would drown the log; failures say why above.
        pass


def serve(health: Health, addr: str, port: int) -> http.server.ThreadingHTTPServer:
    """Serve ``health`` on ``addr:port`` from a daemon thread; returns the server (its
    ``server_address`` has the port when ``port`` is 0)."""
    handler = type("HealthHandler", (_Handler,), {"health": health})
    server = http.server.ThreadingHTTPServer((addr, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    LOG.info(
        "serving /healthz and /readyz on %s:%d",
        addr,
        server.server_address[1],
        extra={"health_addr": addr, "health_port": server.server_address[1]},
    )
    return server
