"""The scheduler benchmark, run small against the e2e stack: it completes, reports every
figure, never overcommits a host and leaves nothing behind. Timings are not asserted."""

from __future__ import annotations

import csv
import json
import pathlib
import subprocess
import uuid

import pytest

from tests.e2e.conftest import ROOT, kubectl

pytestmark = pytest.mark.e2e

FIELDS = {
    "instances",
    "hosts",
    "mode",
    "interval_s",
    "throughput_per_s",
    "p50_s",
    "p95_s",
    "p99_s",
    "overcommitted_hosts",
    "db_queries_per_instance",
    "messages_per_instance",
    "operator_cpu_s",
    "stack_cpu_s",
    "submitted_in_s",
}
# CPU seconds per kind of process of the stack (see benchlib.stack_cpu_s).
STACK_PROCESSES = {"operator", "agents", "apiserver", "mariadb", "rabbitmq", "client", "other"}


@pytest.mark.parametrize(
    ("mode_args", "interval"),
    [([], None), (["--mode", "paced", "--interval", "0.05"], 0.05)],
    ids=["burst", "paced"],
)
def test_scheduler_bench_places_every_instance_without_overcommit_and_cleans_up(
    stack: dict[str, str], mode_args: list[str], interval: float | None, tmp_path: pathlib.Path
) -> None:
    namespace = f"e2e-bench-{uuid.uuid4().hex[:8]}"
    timeline = tmp_path / "timeline.csv"
    metrics_port = stack.get("KUBENOVA_METRICS_PORT", "9090")
    argv = [
        str(ROOT / ".venv/bin/python"),
        str(ROOT / "hack/bench/scheduler_bench.py"),
        "--instances", "10",
        "--hosts", "3",
        "--prefix", "e2e-bench",
        "--namespace", namespace,
        "--operator-pid", stack["KUBENOVA_E2E_OPERATOR_PID"],
        "--metrics-url", f"http://127.0.0.1:{metrics_port}/metrics",
        "--timeout", "180",
        "--timeline", str(timeline),
        *mode_args,
    ]  # fmt: skip
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=stack,
        timeout=540,
        check=False,
    )
    detail = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
    print(result.stdout)  # the figures, for `pytest -s`
    assert result.returncode == 0, detail
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(report) == FIELDS, detail
    assert report["instances"] == 10
    assert report["hosts"] == 3
    assert report["mode"] == ("paced" if interval else "burst")
    assert report["interval_s"] == interval
    assert report["overcommitted_hosts"] == 0, detail
    if interval:
        # Paced: the last of 10 creates is sent 9 intervals after the first.
        assert report["submitted_in_s"] >= 9 * interval, detail
    # Figures are measured, so present; their size is the benchmark's business, not the test's.
    for field in FIELDS - {"mode", "interval_s", "stack_cpu_s"}:
        assert isinstance(report[field], int | float), f"{field}: {report[field]!r}\n{detail}"
    stack_cpu = report["stack_cpu_s"]
    assert set(stack_cpu) == STACK_PROCESSES, detail
    assert all(isinstance(v, int | float) and v >= 0 for v in stack_cpu.values()), detail
    # The operator and the benchmark client did work during the run, so they used CPU.
    assert stack_cpu["operator"] > 0, detail
    assert stack_cpu["client"] > 0, detail
    # One row per instance, in seconds from the first create call sent: its call returned
    # after it was sent, and it was seen Running after it was sent (possibly, under load,
    # before the client thread noted the return).
    with timeline.open(encoding="utf-8") as lines:
        rows = list(csv.DictReader(lines))
    assert len(rows) == 10, detail
    for row in rows:
        sent, created, running = (float(row[k]) for k in ("sent_s", "created_s", "running_s"))
        assert 0 <= sent <= created, row
        assert sent < running, row
    left = kubectl("get", "instances", "-n", namespace, "-o", "name", check=False)
    assert left.stdout.strip() == "", f"left behind: {left.stdout}"
