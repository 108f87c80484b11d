"""One fault in the middle of one burst: create the burst's Instances from a thread pool,
inject the fault once about half the create calls have been answered, hold it, recover it,
send again the creates the fault refused, wait for convergence, count, then delete the burst
and check that its claims and domains go.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import bench_creates
import bench_deletes
import benchlib
import converge
import faults
import host_usage
import observe
import result
from benchlib import log


@dataclasses.dataclass(frozen=True)
class Context:
    """What every burst of a run shares."""

    custom: Any
    core: Any
    engine: Any
    workers: int
    timeout: float
    settle: float
    free_timeout: float


@dataclasses.dataclass(frozen=True)
class Burst:
    """One fault's burst.

    ``free_hosts``: the hosts only the suite uses, whose usage and reported domains must come
    back to what they were before the burst once it is deleted (the real host is shared, so
    only the burst's own claims and domains are checked there).
    """

    fault: str
    guests: str
    namespace: str
    names: list[str]
    make_creator: Callable[[str], bench_creates.Creator]
    scope: observe.Scope
    free_hosts: list[str]
    hold_s: float


def run(ctx: Context, fault: faults.Fault, burst: Burst) -> dict[str, Any]:
    """The fault's JSON line (result.py)."""
    reason = fault.unavailable()
    if reason is not None:
        log(f"{burst.fault}: skipped: {reason}")
        return result.skipped(burst.fault, reason)
    ctx.core.create_namespace({"metadata": {"name": burst.namespace}})
    usage_before = host_usage.node_usage(ctx.engine, burst.free_hosts) if burst.free_hosts else []
    domains_before = observe.running_domains(ctx.custom, burst.free_hosts)
    creator = burst.make_creator(burst.namespace)
    outcome: converge.Outcome | None = None
    recovered_after: float | None = None
    error: str | None = None
    try:
        try:
            injected_at, recovered_at = _break_mid_burst(ctx, fault, burst, creator)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log(f"{burst.fault}: {error}")
        else:
            recovered_after = recovered_at - injected_at
            _create_refused(ctx, creator, burst, deadline=recovered_at + ctx.timeout)
            log(f"{burst.fault}: waiting for convergence (up to {ctx.timeout:g}s, holding "
                f"{ctx.settle:g}s)")  # fmt: skip
            outcome = converge.wait(
                lambda: observe.look(ctx.custom, ctx.engine, burst.scope),
                recovered_at,
                ctx.timeout,
                ctx.settle,
            )
    finally:
        cleanup = _delete(ctx, burst, outcome, usage_before, domains_before)
    return result.line(
        burst.fault, burst.guests, len(burst.names), outcome, recovered_after, cleanup, error
    )


def _break_mid_burst(
    ctx: Context, fault: faults.Fault, burst: Burst, creator: bench_creates.Creator
) -> tuple[float, float]:
    """Create the burst, the fault injected halfway; (injected at, recovered at)."""
    creates = threading.Thread(
        target=bench_creates.run_creates,
        args=(creator, burst.names, "burst", ctx.workers, 0.0),
        name="chaos-burst",
        daemon=True,
    )
    log(f"{burst.fault}: creating {len(burst.names)} instances in {burst.namespace}")
    creates.start()
    half = len(burst.names) // 2
    while creates.is_alive() and len(creator.created()) + len(creator.failed) < half:
        time.sleep(0.005)
    log(f"{burst.fault}: {len(creator.created())} creates answered; injecting")
    injected_at = time.monotonic()
    try:
        fault.inject()
        time.sleep(burst.hold_s)
    finally:
        # Even after a failed injection: whatever it broke must come back for what follows.
        fault.recover()
    recovered_at = time.monotonic()
    log(f"{burst.fault}: recovered {recovered_at - injected_at:.1f}s after the injection")
    # A create call has no timeout of its own: one the fault left hanging must not hold the
    # suite (what it did not create is sent again).
    creates.join(timeout=ctx.timeout)
    if creates.is_alive():
        log(f"{burst.fault}: create calls still hang {ctx.timeout:g}s after the recovery")
    return injected_at, recovered_at


def _create_refused(
    ctx: Context, creator: bench_creates.Creator, burst: Burst, deadline: float
) -> None:
    """Send again each create the fault refused (a client retries), until ``deadline``. An
    answer of 409 means the first call did create it before its answer was lost."""
    from kubernetes.client import exceptions

    created = creator.created()
    refused = [name for name in burst.names if name not in created]
    if refused:
        log(f"{burst.fault}: {len(refused)} creates were refused; sending them again")
    for name in refused:
        while True:
            try:
                ctx.custom.create_namespaced_custom_object(
                    benchlib.GROUP, benchlib.VERSION, burst.namespace, "instances",
                    creator.body(name), _request_timeout=observe.API_TIMEOUT_S,
                )  # fmt: skip
                break
            except exceptions.ApiException as exc:
                if exc.status == 409:
                    break
                if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                    log(f"{burst.fault}: create {name} refused for good: {exc.status} {exc.reason}")
                    break
            except Exception as exc:  # the apiserver is not back yet
                log(f"{burst.fault}: create {name} failed again: {exc!r}"[:300])
            if time.monotonic() > deadline:
                log(f"{burst.fault}: giving up on create {name}")
                break
            time.sleep(1)


def _delete(
    ctx: Context,
    burst: Burst,
    outcome: converge.Outcome | None,
    usage_before: list[host_usage.NodeUsage],
    domains_before: dict[str, int | None],
) -> result.Cleanup:
    """Delete the burst; what it left behind ``free_timeout`` seconds after."""
    seen = outcome.observation if outcome is not None else None
    try:
        if seen is None:
            seen = observe.look(ctx.custom, ctx.engine, burst.scope)
    except Exception as exc:
        log(f"{burst.fault}: could not tell the burst's instances before deleting it: {exc!r}")
    uuids: set[str] = set()
    if seen is not None:
        uuids = {o.uid for o in seen.objects} | {r.uuid for r in seen.records}
    cleanup = result.Cleanup()
    try:
        cleanup.deleted = bench_deletes.cleanup(
            ctx.custom, ctx.core, burst.namespace, max(300.0, float(len(burst.names)))
        )
    except Exception as exc:
        log(f"{burst.fault}: deleting the burst failed: {exc!r}")
        cleanup.deleted = False
    deadline = time.monotonic() + ctx.free_timeout
    if burst.free_hosts:
        try:
            held = host_usage.wait_hosts_free(
                ctx.engine, burst.free_hosts, usage_before, ctx.free_timeout
            )
        except Exception as exc:
            log(f"{burst.fault}: could not read the hosts' usage: {exc!r}")
            held = list(burst.free_hosts)
        cleanup.hosts_not_freed = len(held)
        if held:
            log(f"{burst.fault}: hosts still holding usage: {held[:5]}")
    cleanup.claims_left = len(_poll(lambda: observe.claims_of(ctx.engine, uuids), deadline))
    cleanup.domains_left = _domains_left(ctx, burst, uuids, domains_before, deadline)
    return cleanup


def _domains_left(
    ctx: Context,
    burst: Burst,
    uuids: set[str],
    before: dict[str, int | None],
    deadline: float,
) -> int:
    """Domains the burst's hosts still run: on the simulated hosts, what their agents report
    beyond what they did before the burst; on a real host, the burst's uuids libvirt still
    defines."""

    def left() -> set[str]:
        found = set()
        now = observe.running_domains(ctx.custom, burst.free_hosts)
        for host, running in now.items():
            extra = (running or 0) - (before.get(host) or 0)
            found |= {f"{host}#{n}" for n in range(max(0, extra))}
        for host in burst.scope.libvirt_hosts:
            found |= {f"{host}#{uuid}" for uuid in observe.libvirt_domains() & uuids}
        return found

    remaining = _poll(left, deadline)
    if remaining:
        log(f"{burst.fault}: domains left after the delete: {sorted(remaining)[:5]}")
    return len(remaining)


def _poll(what: Callable[[], set[str]], deadline: float, interval: float = 2.0) -> set[str]:
    """Ask ``what`` until it is empty or ``deadline`` passes; its last answer."""
    while True:
        try:
            found = what()
        except Exception as exc:
            log(f"a look after the delete failed: {exc!r}")
            found = {"unknown"}
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(interval)
