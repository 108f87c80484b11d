"""The power verbs (start, stop, pause, unpause, suspend, resume) and reboot.

Power verbs set ``spec.powerState``; reboot stamps ``spec.reboot``. The decision of what to
patch is :func:`plan_power` / :func:`plan_reboot`, pure functions of the Instance as read.

Choices the plugin makes before the operator sees anything:

- An instance whose spec and status both show the wanted state, with no task under way, is
  left alone ("already running", exit 0).
- ``start`` of an instance whose spec already says Running but which is Stopped (its guest
  powered itself off under runStrategy Manual) asks for a hard reboot, which starts a stopped
  instance as in Nova: patching powerState to the value it has would change nothing.
- start, unpause and resume all ask for Running, so the operator cannot tell them apart; the
  plugin refuses the one that does not fit the state the instance is in, or was asked to go to
  by a request not yet decided (unpause of a stopped instance, say), as Nova refuses it,
  rather than doing another operation than the one named.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
from typing import Any

from kubenova.cli import kube, operation, wait

RUNNING = "Running"


@dataclasses.dataclass(frozen=True)
class PowerVerb:
    name: str
    #: The spec.powerState it asks for.
    wanted: str
    #: How the success line says it: "instance.compute.kubenova.io/web-1 stopped".
    done: str
    summary: str
    #: For the verbs that ask for Running: the state they leave (start leaves Stopped).
    leaves: str | None = None


VERBS: dict[str, PowerVerb] = {
    verb.name: verb
    for verb in (
        PowerVerb("start", RUNNING, "started", "start a stopped instance", leaves="Stopped"),
        PowerVerb("stop", "Stopped", "stopped", "stop (power off) an instance"),
        PowerVerb("pause", "Paused", "paused", "pause an instance, keeping it in memory"),
        PowerVerb("unpause", RUNNING, "unpaused", "unpause a paused instance", leaves="Paused"),
        PowerVerb("suspend", "Suspended", "suspended", "suspend an instance to disk"),
        PowerVerb("resume", RUNNING, "resumed", "resume a suspended instance", leaves="Suspended"),
    )
}
#: The verb that leaves each non-running state, for the hint of a refusal.
_VERB_LEAVING = {verb.leaves: verb.name for verb in VERBS.values() if verb.leaves}


@dataclasses.dataclass(frozen=True)
class Patch:
    """Send ``patch``; ``note`` (if any) tells the user first what the plugin chose."""

    patch: dict[str, Any]
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Already:
    """Nothing to do: exit 0 with ``message``."""

    message: str


@dataclasses.dataclass(frozen=True)
class Refused:
    """The verb does not fit the instance's state: exit 1 with ``message``."""

    message: str


Plan = Patch | Already | Refused


def stamp(now: datetime.datetime, previous: str | None = None) -> str:
    """A reboot request stamp: RFC 3339 UTC with microseconds, never equal to ``previous``
    (an equal stamp would not be a new request)."""
    now = now.astimezone(datetime.UTC)
    text = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    while text == previous:
        now += datetime.timedelta(microseconds=1)
        text = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return text


def reboot_patch(obj: dict[str, Any], hard: bool, now: datetime.datetime) -> dict[str, Any]:
    previous = ((obj.get("spec") or {}).get("reboot") or {}).get("requestedAt")
    return {
        "spec": {
            "reboot": {"requestedAt": stamp(now, previous), "type": "Hard" if hard else "Soft"}
        }
    }


def plan_power(verb: PowerVerb, obj: dict[str, Any], now: datetime.datetime) -> Plan:
    """What ``verb`` does to the Instance ``obj`` as read."""
    name = obj["metadata"]["name"]
    spec_state = (obj.get("spec") or {}).get("powerState") or RUNNING
    status = obj.get("status") or {}
    phase = status.get("phase")
    task = status.get("taskState")
    if spec_state == verb.wanted and phase == verb.wanted and not task:
        return Already(f"instance {name} is already {verb.wanted.lower()}")
    if verb.leaves is not None:
        # Where the instance is, or where it was asked to go while the operator has not yet
        # decided: "pause" then "unpause" before the operator acted undoes the pause, but a
        # pause it refused leaves the instance where it was.
        generation = obj["metadata"].get("generation") or 0
        pending = spec_state != RUNNING and not wait.assess(obj, generation).done
        current = spec_state if pending else phase
        if current in _VERB_LEAVING and current != verb.leaves:
            return Refused(
                f"error: cannot {verb.name} instance {name}: it is {current} "
                f'({verb.name} needs {verb.leaves}); use "kubectl nova {_VERB_LEAVING[current]}"'
            )
        if verb.name == "start" and spec_state == RUNNING and phase == "Stopped" and not task:
            return Patch(
                reboot_patch(obj, hard=True, now=now),
                note=(
                    f"instance {name} is stopped although its spec says Running (its guest "
                    "powered itself off): starting it with a hard reboot"
                ),
            )
    return Patch({"spec": {"powerState": verb.wanted}})


def plan_reboot(obj: dict[str, Any], hard: bool, now: datetime.datetime) -> Plan:
    return Patch(reboot_patch(obj, hard, now))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def run_power(cluster: kube.Cluster, options: argparse.Namespace) -> int:
    verb = VERBS[options.verb]
    plan = plan_power(verb, kube.get_instance(cluster, options.name), _now())
    return _carry_out(cluster, options, plan, verb.name, verb.done)


def run_reboot(cluster: kube.Cluster, options: argparse.Namespace) -> int:
    plan = plan_reboot(kube.get_instance(cluster, options.name), options.hard, _now())
    return _carry_out(cluster, options, plan, "reboot", "rebooted")


def _carry_out(
    cluster: kube.Cluster, options: argparse.Namespace, plan: Plan, verb: str, done: str
) -> int:
    if isinstance(plan, Already):
        print(plan.message)
        return 0
    if isinstance(plan, Refused):
        raise kube.CommandError(plan.message)
    if plan.note:
        print(plan.note)
    return operation.submit(
        cluster, options.name, plan.patch, verb=verb, done=done, options=options
    )


def register(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
    common: list[argparse.ArgumentParser],
) -> None:
    for verb in VERBS.values():
        parser = verbs.add_parser(
            verb.name,
            parents=common,
            help=verb.summary,
            description=(
                f"{verb.summary[0].upper()}{verb.summary[1:]}: set spec.powerState to "
                f"{verb.wanted} and wait until the operator has applied it."
            ),
        )
        parser.add_argument("name", metavar="NAME", help="the Instance's name")
        operation.add_wait_options(parser)
        parser.set_defaults(run=run_power)
    parser = verbs.add_parser(
        "reboot",
        parents=common,
        help="reboot an instance (soft, or hard with --hard)",
        description=(
            "Reboot an instance: stamp spec.reboot with the time of the request and wait until "
            "the operator has rebooted it. A soft reboot asks the guest and becomes hard if it "
            "does not shut down in time; a hard reboot powers it off and on, and also starts a "
            "stopped, paused or suspended instance."
        ),
    )
    parser.add_argument("name", metavar="NAME", help="the Instance's name")
    parser.add_argument("--hard", action="store_true", help="power the instance off and on")
    operation.add_wait_options(parser)
    parser.set_defaults(run=run_reboot)
