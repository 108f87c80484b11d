"""What a round of the lifecycle benchmark (lifecycle_bench.py) measured, and the figures it
reports: the rounds' medians, the kubenova-over-direct ratios, and the summary lines."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import benchlib


@dataclasses.dataclass
class Round:
    """One round's timings in seconds; None for what was not run (``--direct-only``)."""

    kubenova_stop_s: float | None = None
    kubenova_start_running_s: float | None = None
    kubenova_start_ready_s: float | None = None
    kubenova_reboot_synced_s: float | None = None
    kubenova_reboot_ready_s: float | None = None
    direct_stop_s: float | None = None
    direct_start_ready_s: float | None = None
    direct_reboot_ready_s: float | None = None


#: Each ratio: (its field, the kubenova figure, the direct figure it is compared with).
RATIOS = (
    ("stop_ratio", "kubenova_stop_s", "direct_stop_s"),
    ("start_ratio", "kubenova_start_ready_s", "direct_start_ready_s"),
    ("reboot_ratio", "kubenova_reboot_ready_s", "direct_reboot_ready_s"),
)
#: The order of the JSON line's fields.
FIELDS = (
    "kubenova_stop_s",
    "direct_stop_s",
    "stop_ratio",
    "kubenova_start_running_s",
    "kubenova_start_ready_s",
    "direct_start_ready_s",
    "start_ratio",
    "kubenova_reboot_synced_s",
    "kubenova_reboot_ready_s",
    "direct_reboot_ready_s",
    "reboot_ratio",
)


def medians(rounds: Sequence[Round]) -> dict[str, float | None]:
    """The JSON line: each timing's median over the rounds that have it (seconds, to the
    millisecond), and each ratio of the kubenova median to the direct one. A timing no round
    has is null, and so is any ratio made with it."""
    middle: dict[str, float] = {}
    for field in dataclasses.fields(Round):
        values = [v for r in rounds if (v := getattr(r, field.name)) is not None]
        middle[field.name] = benchlib.median(values)
    result: dict[str, float | None] = {
        name: benchlib.rounded(value) for name, value in middle.items()
    }
    for ratio, kubenova, direct in RATIOS:
        # From the unrounded medians, so that rounding does not move the ratio.
        denominator = middle[direct]
        result[ratio] = benchlib.rounded(
            middle[kubenova] / denominator if denominator > 0 else float("nan")
        )
    return {name: result[name] for name in FIELDS}


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def round_line(index: int, measured: Round) -> str:
    """One round of the summary."""
    r = measured
    return (
        f"round {index}: stop kubenova {_seconds(r.kubenova_stop_s)} "
        f"direct {_seconds(r.direct_stop_s)}; "
        f"start kubenova Running {_seconds(r.kubenova_start_running_s)} "
        f"ready {_seconds(r.kubenova_start_ready_s)} direct ready "
        f"{_seconds(r.direct_start_ready_s)}; "
        f"reboot kubenova ready {_seconds(r.kubenova_reboot_ready_s)} "
        f"(Synced {_seconds(r.kubenova_reboot_synced_s)}) direct ready "
        f"{_seconds(r.direct_reboot_ready_s)}"
    )


def summary_line(result: dict[str, float | None], repeat: int, flavor: str, virt: str) -> str:
    """The summary's last line, before the JSON."""

    def figure(name: str) -> str:
        value = result[name]
        return "-" if value is None else f"{value}s"

    def ratio(name: str) -> str:
        value = result[name]
        return "-" if value is None else f"x{value}"

    return (
        f"lifecycle benchmark ({virt}, flavor {flavor}, medians of {repeat}): "
        f"stop kubenova {figure('kubenova_stop_s')} direct {figure('direct_stop_s')} "
        f"{ratio('stop_ratio')}; start ready kubenova {figure('kubenova_start_ready_s')} "
        f"(Running {figure('kubenova_start_running_s')}) direct "
        f"{figure('direct_start_ready_s')} {ratio('start_ratio')}; reboot ready kubenova "
        f"{figure('kubenova_reboot_ready_s')} (Synced {figure('kubenova_reboot_synced_s')}) "
        f"direct {figure('direct_reboot_ready_s')} {ratio('reboot_ratio')}"
    )
