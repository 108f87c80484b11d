"""The scheduler benchmark, run small against the e2e stack: it fills its hosts, completes,
reports every figure (per run, median and worst), never overcommits a host and leaves nothing
behind. Timings are not asserted.

Its hosts are filled (12 instances over 3 hosts: 4 a host, with a flavor of a quarter of a
host's memory), so that one instance too many on any host would overcommit it: the
``overcommitted_hosts == 0`` below is a check of a full fleet, not of empty hosts. That the
check itself finds an overcommitted host is tested on a database holding one
(tests/integration/test_bench_overcommit.py, tests/unit/test_scheduler_bench.py)."""

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
    "fill_ratio",
    "db_queries_per_instance",
    "messages_per_instance",
    "operator_cpu_s",
    "stack_cpu_s",
    "submitted_in_s",
    "delete_throughput_per_s",
    "agent_rss_mib",
}
#: A run's figures, in ``runs`` and in ``worst``.
FIGURES = FIELDS - {"instances", "hosts", "mode", "interval_s"}
INSTANCES, HOSTS = 12, 3
# CPU seconds per kind of process of the stack (see benchlib.stack_cpu_s).
STACK_PROCESSES = {"operator", "agents", "apiserver", "mariadb", "rabbitmq", "client", "other"}


@pytest.mark.parametrize(
    ("mode_args", "interval", "runs"),
    [([], None, 2), (["--mode", "paced", "--interval", "0.05"], 0.05, 1)],
    ids=["burst", "paced"],
)
def test_scheduler_bench_fills_its_hosts_without_overcommit_and_cleans_up(
    stack: dict[str, str],
    mode_args: list[str],
    interval: float | None,
    runs: int,
    tmp_path: pathlib.Path,
) -> None:
    namespace = f"e2e-bench-{uuid.uuid4().hex[:8]}"
    timeline = tmp_path / "timeline.csv"
    metrics_port = stack.get("KUBENOVA_METRICS_PORT", "9090")
    # The operator the stack fixture started; against `make dev-up`'s
    # (KUBENOVA_E2E_USE_RUNNING_STACK=1), the one its pid file names.
    pid = stack.get("KUBENOVA_E2E_OPERATOR_PID")
    argv = [
        str(ROOT / ".venv/bin/python"),
        str(ROOT / "hack/bench/scheduler_bench.py"),
        "--instances", str(INSTANCES),
        "--hosts", str(HOSTS),
        "--runs", str(runs),
        "--pause", "1",
        "--prefix", "e2e-bench",
        "--namespace", namespace,
        *(["--operator-pid", pid] if pid else []),
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
    assert set(report) == FIELDS | {"worst", "runs"}, detail
    assert report["instances"] == INSTANCES
    assert report["hosts"] == HOSTS
    assert report["mode"] == ("paced" if interval else "burst")
    assert report["interval_s"] == interval
    assert len(report["runs"]) == runs, detail
    assert set(report["worst"]) == FIGURES, detail
    for figures in (report, report["worst"], *report["runs"]):
        # Every run filled the hosts, and none of them was overcommitted.
        assert figures["fill_ratio"] >= 0.95, detail
        assert figures["overcommitted_hosts"] == 0, detail
        # Figures are measured, so present; their size is the benchmark's business.
        for field in FIGURES - {"stack_cpu_s"}:
            value = figures[field]
            assert isinstance(value, int | float), f"{field}: {value!r}\n{detail}"
        stack_cpu = figures["stack_cpu_s"]
        assert set(stack_cpu) == STACK_PROCESSES, detail
        assert all(isinstance(v, int | float) and v >= 0 for v in stack_cpu.values()), detail
        # The operator and the benchmark client did work during the run, so they used CPU.
        assert stack_cpu["operator"] > 0, detail
        assert stack_cpu["client"] > 0, detail
        # Every run deleted what it made, and its hosts' agents were measured.
        assert figures["delete_throughput_per_s"] > 0, detail
        assert figures["agent_rss_mib"] > 0, detail
        if interval:
            # Paced: the last of the creates is sent INSTANCES - 1 intervals after the first.
            assert figures["submitted_in_s"] >= (INSTANCES - 1) * interval, detail
    # The worst run's figure is no better than the median's.
    assert report["worst"]["throughput_per_s"] <= report["throughput_per_s"], detail
    assert report["worst"]["p95_s"] >= report["p95_s"], detail
    # One row per instance and run, in seconds from its run's first create call sent: its
    # call returned after it was sent, and it was seen Running after it was sent (possibly,
    # under load, before the client thread noted the return).
    with timeline.open(encoding="utf-8") as lines:
        rows = list(csv.DictReader(lines))
    assert len(rows) == INSTANCES * runs, detail
    assert sorted({row["run"] for row in rows}) == [str(k) for k in range(1, runs + 1)]
    for row in rows:
        sent, created, running = (float(row[k]) for k in ("sent_s", "created_s", "running_s"))
        assert 0 <= sent <= created, row
        assert sent < running, row
    for run in range(1, runs + 1):
        run_namespace = namespace if run == 1 else f"{namespace}-{run}"
        left = kubectl("get", "instances", "-n", run_namespace, "-o", "name", check=False)
        assert left.stdout.strip() == "", f"left behind in {run_namespace}: {left.stdout}"
