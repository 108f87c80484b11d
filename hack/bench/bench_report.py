"""The scheduler benchmark's report over its runs: the median and the worst run of every
figure, the lines that print them, the JSON line, and the --timeline CSV of each instance's
times."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import benchlib
from bench_creates import Creator

#: The figures of a run, and for each how its worst run is chosen: the lowest (``min``) or
#: the highest (``max``). ``stack_cpu_s`` is a mapping, aggregated per process kind (highest).
WORST: dict[str, Callable[[Sequence[float]], float]] = {
    "throughput_per_s": min,
    "p50_s": max,
    "p95_s": max,
    "p99_s": max,
    "overcommitted_hosts": max,
    "fill_ratio": min,
    "db_queries_per_instance": max,
    "messages_per_instance": max,
    "operator_cpu_s": max,
    "stack_cpu_s": max,
    "submitted_in_s": max,
    "delete_throughput_per_s": min,
    "agent_rss_mib": max,
}
#: Figures reported as their worst run, not their median, outside ``worst`` too: counts of
#: errors, which one bad run must show.
WORST_ONLY = frozenset({"overcommitted_hosts"})
#: Decimals a median keeps, as a run's figure has them (``benchlib.rounded``'s 3 otherwise).
DIGITS = {
    "fill_ratio": 4,
    "db_queries_per_instance": 1,
    "messages_per_instance": 2,
    "operator_cpu_s": 2,
    "stack_cpu_s": 2,
    "submitted_in_s": 2,
    "agent_rss_mib": 0,
}


def _median_and_worst(
    values: Sequence[float | None], worst: Callable[[Sequence[float]], float], digits: int
) -> tuple[float | None, float | None]:
    known = [v for v in values if v is not None]
    if not known:
        return None, None
    middle = benchlib.median(known)
    if all(isinstance(v, int) for v in known) and middle == int(middle):
        middle = int(middle)
    else:
        middle = round(middle, digits)
    return middle, worst(known)


def aggregate(runs: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the median of each figure over ``runs``, the worst of each), figure by figure: a
    figure missing in a run (null) is left out; null when no run has it. ``stack_cpu_s`` is
    aggregated per process kind. See :data:`WORST` and :data:`WORST_ONLY`."""
    middle: dict[str, Any] = {}
    worst: dict[str, Any] = {}
    for field, pick in WORST.items():
        digits = DIGITS.get(field, 3)
        if field == "stack_cpu_s":
            kinds = list(dict.fromkeys(k for run in runs for k in run.get(field) or {}))
            middle[field], worst[field] = {}, {}
            for kind in kinds:
                middle[field][kind], worst[field][kind] = _median_and_worst(
                    [(run.get(field) or {}).get(kind) for run in runs], pick, digits
                )
            continue
        middle[field], worst[field] = _median_and_worst(
            [run.get(field) for run in runs], pick, digits
        )
        if field in WORST_ONLY:
            middle[field] = worst[field]
    return middle, worst


def print_aggregate(args: argparse.Namespace, runs: Sequence[dict[str, Any]]) -> None:
    """Each figure's median, worst and every run's value, one line per figure."""
    middle, worst = aggregate(runs)
    print(f"scheduler benchmark: {args.instances} instances over {args.hosts} hosts, "
          f"{args.mode}, {len(runs)} of {args.runs} runs")  # fmt: skip
    print(f"  {'':<28}{'median':>10}{'worst':>10}   each run")
    for field in WORST:
        if field == "stack_cpu_s":
            continue
        label = f"{field} (most)" if field in WORST_ONLY else field
        each = " ".join(str(run.get(field)) for run in runs)
        print(f"  {label:<28}{middle[field]!s:>10}{worst[field]!s:>10}   {each}")
    for kind in middle["stack_cpu_s"]:
        each = " ".join(str((run.get("stack_cpu_s") or {}).get(kind)) for run in runs)
        label = f"stack_cpu_s {kind}"
        print(f"  {label:<28}{middle['stack_cpu_s'][kind]!s:>10}"
              f"{worst['stack_cpu_s'][kind]!s:>10}   {each}")  # fmt: skip


def report(args: argparse.Namespace, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The JSON line: what ran, the medians under the figures' own names (the worst run's
    for :data:`WORST_ONLY`), ``worst`` and ``runs``."""
    middle, worst = aggregate(runs)
    return {
        "instances": args.instances,
        "hosts": args.hosts,
        "mode": args.mode,
        "interval_s": args.interval if args.mode == "paced" else None,
        **middle,
        "worst": worst,
        "runs": list(runs),
    }


def write_timeline(
    rows: Any, run: int, creator: Creator, running: dict[str, float], origin: float
) -> None:
    """run,name,sent,created,running per instance, in the order the create calls returned."""
    for name in sorted(creator.created_at, key=creator.created_at.__getitem__):
        seen = running.get(name)
        rows.writerow([
            run,
            name,
            f"{creator.sent_at[name] - origin:.3f}",
            f"{creator.created_at[name] - origin:.3f}",
            "" if seen is None else f"{seen - origin:.3f}",
        ])  # fmt: skip
