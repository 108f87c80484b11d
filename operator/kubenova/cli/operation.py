"""The road every spec-changing verb takes: patch the Instance, then (unless ``--no-wait``)
wait for the operator's verdict on the new generation and report it.

Verbs that later change ``spec.flavor`` (resize) or ``spec.image`` (rebuild) take the same
road: they only decide the patch.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from kubenova.cli import durations, kube, wait

DEFAULT_TIMEOUT = "5m"


def add_wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="return once the request is recorded, without waiting for the operator",
    )
    parser.add_argument(
        "--timeout",
        type=durations.argument,
        default=durations.parse(DEFAULT_TIMEOUT),
        metavar="DURATION",
        help=(
            f"how long to wait for the operation, e.g. 30s, 5m, 1h (default {DEFAULT_TIMEOUT}; "
            "0 checks once, a negative duration waits without limit)"
        ),
    )


def submit(
    cluster: kube.Cluster,
    name: str,
    patch: dict[str, Any],
    *,
    verb: str,
    done: str,
    options: argparse.Namespace,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Apply ``patch`` to the Instance ``name`` for ``verb`` ("stop"); exit code 0 when the
    operator applied it (``done`` says how: "stopped"), 1 when it refused or failed it."""
    out = out or sys.stdout
    err = err or sys.stderr
    patched = kube.patch_instance(cluster, name, patch)
    resource = f"{kube.INSTANCE_RESOURCE}/{name}"
    if options.no_wait:
        print(f"{resource} {verb} requested", file=out)
        return 0
    verdict = wait.wait_for(cluster, patched, verb=verb, timeout=options.timeout, out=out)
    if verdict.applied:
        print(f"{resource} {done}", file=out)
        return 0
    print(failure_message(name, verb, verdict), file=err)
    return 1


def failure_message(name: str, verb: str, verdict: wait.Verdict) -> str:
    """The error line for a change the operator did not apply."""
    how = {"InvalidState": "refused", "OperationFailed": "failed"}.get(verdict.reason, "not done")
    reason = f" ({verdict.reason})" if verdict.reason else ""
    message = verdict.message or "the operator gave no reason"
    return f"error: {verb} of instance {name} {how}{reason}: {message}"
