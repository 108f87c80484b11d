"""``kubenova-operator``: run the control plane (api, scheduler, conductor) under kopf.

Without ``--leader-elect`` the process runs kopf at once (the local stack and the tests run
one such process). With it, the process first campaigns for a Lease and runs no control plane
while it waits: no kopf handler, no consumer of the ``conductor`` queue, no periodic task, no
status writer (all of them start from kopf's startup handler). Once it leads, it runs kopf
while a thread renews the Lease; if renewing fails for the renew deadline the process exits
at once with status 1. On SIGTERM kopf stops (its cleanup handler stops the runtime), then
the Lease is released so a standby takes over within a retry period. Without a database URL
(``KUBENOVA_DB_URL``) the process exits at once with status 2.

The agent credentials exchange (``kubenova.agent_credentials``, when configured) is the one
thing every replica serves, leader or standby, from before the campaign until the process
ends: any replica can answer a request, so the Service may send agents to any ready one, and
``/readyz`` waits for it to listen. Its janitor, which watches Nodes, runs only with kopf
(started from kopf's startup handler, which finds the exchange in kopf's memo).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any

import kopf

from kubenova import log
from kubenova.agent_credentials import service as agent_credentials
from kubenova.db import engine as db_engine
from kubenova.k8s import client as k8s
from kubenova.leadership import campaign as campaign_mod
from kubenova.leadership import election, health, lease, settings

LOG = logging.getLogger(__name__)

#: The exit status of a process started without a setting it needs (argparse's for bad usage).
EXIT_CONFIG_ERROR = 2

# How often kopf's event loop tells the liveness probe it is turning.
_TURN_S = 1.0

RunKopf = Callable[[health.Health, threading.Event, kopf.Memo], Coroutine[Any, Any, None]]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubenova-operator", description="Run the Kubenova operator."
    )
    parser.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run only while holding a coordination.k8s.io Lease, so that of several replicas "
        "one is active (default: $KUBENOVA_LEADER_ELECT, else off)",
    )
    parser.add_argument(
        "--leader-elect-lease",
        default=None,
        help="the Lease's name (default: $KUBENOVA_LEADER_ELECT_LEASE, else "
        f"{settings.DEFAULT_LEASE_NAME}); its namespace is $KUBENOVA_LEADER_ELECT_NAMESPACE, "
        "else the pod's, else default",
    )
    parser.add_argument("--log-level", default=os.environ.get("KUBENOVA_LOG_LEVEL", "INFO"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log.setup("kubenova-operator", args.log_level)
    try:
        db_engine.url_from_env()
    except RuntimeError as exc:
        # Checked before anything starts: otherwise a standby replica would look ready and
        # find out only when it took the lead, inside kopf's startup handler.
        LOG.error("%s", exc)
        return EXIT_CONFIG_ERROR
    leader_elect = (
        args.leader_elect
        if args.leader_elect is not None
        else settings.env_flag("KUBENOVA_LEADER_ELECT")
    )
    # Importing the modules registers their handlers with kopf's default registry.
    from kubenova.api import handlers, migration_handlers, snapshot_handlers  # noqa: F401

    clock = election.SystemClock()
    # The probes are for a pod; an operator run on a workstation opens no port unless asked.
    probes = settings.HealthSettings.from_env(
        default_port=settings.DEFAULT_HEALTH_PORT if leader_elect else 0
    )
    if not leader_elect:
        state = health.Health(clock, role=health.SINGLE)
        _serve(state, probes)
        # kopf's startup handler loads it too (Runtime.from_env); the exchange starts first.
        k8s.load_config()
        credentials = _agent_credentials_from_env(state)
        try:
            asyncio.run(_run_kopf(state, threading.Event(), _memo(credentials)))
        finally:
            if credentials is not None:
                credentials.stop()
        return 0
    return _run_elected(args.leader_elect_lease, probes, clock)


def _run_elected(
    lease_name: str | None, probes: settings.HealthSettings, clock: election.Clock
) -> int:
    elect = settings.LeaderElectionSettings.from_env(lease_name)
    state = health.Health(clock, role=health.STANDBY, renew_deadline_s=elect.renew_deadline_s)
    _serve(state, probes)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # While waiting, a SIGTERM ends the wait; once kopf runs, kopf's own handlers take over.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    k8s.load_config()
    credentials = _agent_credentials_from_env(state)
    leases = lease.KubeLeases(elect.lease_name, elect.namespace)
    elector = election.LeaderElector(leases, elect.identity, elect.lease_duration_s, clock)
    campaign = campaign_mod.Campaign(elector, elect, state, clock, where=str(leases))
    return lead(campaign, state, stop, credentials)


def _agent_credentials_from_env(state: health.Health) -> agent_credentials.AgentCredentials | None:
    credentials = agent_credentials.AgentCredentials.from_env()
    if credentials is not None:
        serve_agent_credentials(credentials, state)
    return credentials


def serve_agent_credentials(
    credentials: agent_credentials.AgentCredentials, state: health.Health
) -> None:
    """Serve the exchange in this replica whatever its role, and be ready only once it
    listens: the Service sends agents to every ready replica."""
    state.require(credentials.problem)
    credentials.serve_in_background()


def lead(
    campaign: campaign_mod.Campaign,
    state: health.Health,
    stop: threading.Event,
    credentials: agent_credentials.AgentCredentials | None,
    *,
    run_kopf: RunKopf | None = None,
    on_lost: campaign_mod.OnLost = campaign_mod.exit_at_once,
) -> int:
    """Wait for the Lease, then run kopf while keeping it, then give it back; the exchange,
    served all along, stops last."""
    run_kopf = run_kopf or _run_kopf
    try:
        if not campaign.acquire(stop):
            LOG.info("stopped while waiting to lead")
            return 0
        state.became_leader()
        campaign.start_keeping(on_lost)
        if not stop.is_set():
            # Should kopf fail, the process exits holding the Lease: a standby waits for it to
            # expire rather than start beside whatever of this process is still winding down.
            asyncio.run(run_kopf(state, stop, _memo(credentials)))
        if campaign.stop_keeping():
            campaign.release()
        return 0
    finally:
        # After the release, which a standby is waiting for; agents asking meanwhile are
        # still answered.
        if credentials is not None:
            credentials.stop()


def _memo(credentials: agent_credentials.AgentCredentials | None) -> kopf.Memo:
    memo = kopf.Memo()
    if credentials is not None:
        memo[agent_credentials.MEMO_KEY] = credentials
    return memo


async def _run_kopf(state: health.Health, stop: threading.Event, memo: kopf.Memo) -> None:
    """kopf, cluster-wide and standalone, with ``memo`` as its handlers' memo, beside a task
    that reports the loop's turns to the probes.

    ``stop`` is set by a SIGTERM caught before kopf had installed its own handlers: the task
    sends the signal again, once, when kopf has them. (kopf's ``stop_flag`` would do it too,
    but kopf leaves that flag's waiter pending on a signal and then waits 5 s for it.)
    """

    async def turn() -> None:
        forwarded = False
        while True:
            state.turned()
            # kopf has its signal handlers by the end of the first sleep: it installs them
            # while it starts, right after this task first runs.
            await asyncio.sleep(_TURN_S)
            if stop.is_set() and not forwarded:
                forwarded = True
                signal.raise_signal(signal.SIGTERM)

    # Created before kopf starts, so kopf leaves it alone when it stops its own tasks.
    turner = asyncio.create_task(turn(), name="liveness turns")
    try:
        await kopf.operator(clusterwide=True, standalone=True, ready_flag=state.started, memo=memo)
    finally:
        turner.cancel()


def _serve(state: health.Health, probes: settings.HealthSettings) -> None:
    if probes.port:
        health.serve(state, probes.addr, probes.port)


if __name__ == "__main__":
    sys.exit(main())
