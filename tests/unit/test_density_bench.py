"""The density benchmark's own logic (hack/bench/density_bench.py and density_machine.py): the
allocation ratios it gives the host and how it puts the old ones back, the percentiles it
reports, how it reads used memory, finds the guests' QEMU and sees their ready lines, and its
arguments. The guests themselves need the stack: the benchmark is run by `make bench-density`."""

from __future__ import annotations

import importlib
import itertools
import math
import os
import sys
import time
from typing import Any

import pytest

from tests.support.bench import BENCH_DIR

if str(BENCH_DIR) not in sys.path:
    sys.path.append(str(BENCH_DIR))
bench = importlib.import_module("density_bench")
machine = importlib.import_module("density_machine")
benchlib = importlib.import_module("benchlib")

FLAVOR = {"vcpus": 1, "memoryMiB": 64, "diskGiB": 1}


def hypervisor_status(
    vcpus: tuple[int, int] = (8, 0),
    memory: tuple[int, int] = (23488, 0),
    disk: tuple[int, int] = (50, 0),
    ratios: dict[str, float] | None = None,
) -> dict[str, Any]:
    """A Hypervisor status with (allocatable, used) per resource; the development VM's by
    default: 2 vCPUs at 4.0, 24000 MiB less 512 reserved, 50 GiB."""

    def usage(figures: tuple[int, int]) -> dict[str, int]:
        return {"allocatable": figures[0], "used": figures[1]}

    return {
        "allocationRatios": ratios or {"cpu": 4.0, "memory": 1.0, "disk": 1.0},
        "vcpus": usage(vcpus),
        "memoryMiB": usage(memory),
        "diskGiB": usage(disk),
    }


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the apiserver applies a merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- allocation ratios -----------------------------------------------------------------------


def test_a_hundred_guests_on_two_cores_get_a_cpu_ratio_of_fifty_and_memory_stays_at_one():
    ratios = bench.required_ratios(hypervisor_status(), 100, FLAVOR)
    assert ratios == {"cpu": 50.0, "memory": 1.0, "disk": 2.0}


def test_what_the_host_already_holds_counts():
    status = hypervisor_status(vcpus=(8, 3), memory=(23488, 2048), disk=(50, 10))
    assert bench.required_ratios(status, 100, FLAVOR) == {"cpu": 51.5, "memory": 1.0, "disk": 2.2}


def test_memory_goes_over_one_only_when_the_guests_need_more_than_the_host_has():
    status = hypervisor_status(memory=(4096, 1024))
    # (1024 + 100 x 64) / 4096 = 1.8125, rounded up to the next hundredth.
    assert bench.required_ratios(status, 100, FLAVOR)["memory"] == 1.82


def test_capacity_is_read_through_the_ratio_in_force():
    # 4096 MiB at 1.5 show 6144 allocatable; 2 vCPUs at 10 show 20.
    status = hypervisor_status(
        vcpus=(20, 0), memory=(6144, 0), ratios={"cpu": 10.0, "memory": 1.5, "disk": 1.0}
    )
    ratios = bench.required_ratios(status, 100, FLAVOR)
    assert ratios["cpu"] == 50.0
    assert ratios["memory"] == math.ceil(6400 / 4096 * 100) / 100


def test_few_guests_keep_novas_defaults():
    assert bench.required_ratios(hypervisor_status(), 4, FLAVOR) == {
        "cpu": 4.0,
        "memory": 1.0,
        "disk": 1.0,
    }


@pytest.mark.parametrize(
    ("guests", "memory", "allocatable", "used", "in_force"),
    [
        (guests, memory, allocatable, used, in_force)
        for guests, memory in itertools.product((1, 7, 100, 333), (64, 100, 129))
        for allocatable, used, in_force in ((3001, 17, 1.0), (7000, 0, 1.3), (999, 998, 1.1))
    ],
)
def test_the_ratio_always_leaves_room_for_every_guest(guests, memory, allocatable, used, in_force):
    status = hypervisor_status(memory=(allocatable, used), ratios={"memory": in_force})
    ratio = bench.required_ratios(status, guests, {**FLAVOR, "memoryMiB": memory})["memory"]
    # What the claims will see: (capacity - reserved) x the new ratio, rounded down.
    base = allocatable / in_force
    assert int(base * ratio) >= used + guests * memory
    assert ratio == 1.0 or int(base * (ratio - 0.02)) < used + guests * memory


def test_a_status_without_figures_is_refused_naming_the_field():
    status = hypervisor_status()
    del status["memoryMiB"]
    with pytest.raises(benchlib.BenchError, match=r"status\.memoryMiB"):
        bench.required_ratios(status, 100, FLAVOR)


def test_a_ratio_over_what_a_hypervisor_accepts_is_refused():
    with pytest.raises(benchlib.BenchError, match=r"cpu allocation ratio of 1000\.5"):
        bench.required_ratios(hypervisor_status(), 2001, FLAVOR)


@pytest.mark.parametrize(
    "previous",
    [None, {}, {"cpu": 2.0}, {"cpu": 2.0, "memory": 1.5, "disk": 3.0}, {"memory": 1.2}],
    ids=["none", "empty", "cpu-only", "all", "memory-only"],
)
def test_the_restore_patch_brings_back_the_previous_spec_exactly(previous):
    applied = {"cpu": 50.0, "memory": 1.0, "disk": 2.0}
    spec: dict[str, Any] = {"disabled": False}
    if previous is not None:
        spec["allocationRatios"] = previous
    during = merge_patch(spec, {"allocationRatios": applied})
    assert during["allocationRatios"] == applied
    after = merge_patch(during, {"allocationRatios": bench.restore_value(previous, applied)})
    assert after == spec


def test_the_status_shows_the_ratios_only_when_every_one_is_in_force():
    wanted = {"cpu": 50.0, "memory": 1.0}
    assert bench.ratios_shown({"allocationRatios": {"cpu": 50, "memory": 1.0, "disk": 1}}, wanted)
    assert not bench.ratios_shown({"allocationRatios": {"cpu": 4.0, "memory": 1.0}}, wanted)
    assert not bench.ratios_shown({"allocationRatios": {"cpu": 50.0}}, wanted)
    assert not bench.ratios_shown({"allocationRatios": {"cpu": "50", "memory": 1.0}}, wanted)
    assert not bench.ratios_shown({}, wanted)


# -- latencies -------------------------------------------------------------------------------


def test_latencies_are_timed_from_each_create_call_sent():
    sent = {f"g{index}": 100.0 + index for index in range(20)}
    running = {name: at + 1 + index * 0.1 for index, (name, at) in enumerate(sent.items())}
    ready = {name: at + 30 + index for index, (name, at) in enumerate(sent.items()) if index < 10}
    figures = bench.latency_figures(sent, running, ready)
    assert figures == {
        "guests_running": 20,
        "guests_ready": 10,
        "guests_dhcp_failed": 0,
        # Nearest rank: the 10th and the 19th of 20 to Running, the 5th and 10th of 10 ready.
        "p50_running_s": 1.9,
        "p95_running_s": 2.8,
        "p50_guest_ready_s": 34.0,
        "p95_guest_ready_s": 39.0,
        "p95_guest_booted_s": 39.0,
    }


def test_a_guest_whose_dhcp_gave_up_is_booted_but_not_ready():
    sent = {"a": 0.0, "b": 0.0, "c": 0.0}
    running = {"a": 1.0, "b": 1.0, "c": 1.0}
    booted = {"a": 20.0, "b": 30.0, "c": 60.0}
    figures = bench.latency_figures(sent, running, booted, {"c"})
    assert (figures["guests_ready"], figures["guests_dhcp_failed"]) == (2, 1)
    assert figures["p95_guest_ready_s"] == 30.0
    assert figures["p95_guest_booted_s"] == 60.0


@pytest.mark.parametrize(
    ("lines", "end"),
    [
        (b"boot\r\nkubenova-guest: ready\r\n", b"kubenova-guest: ready"),
        (b"kubenova-guest: dhcp failed\r\n$ ", b"kubenova-guest: dhcp failed"),
        (b"kubenova-guest: user-data begin\r\n", None),
    ],
)
def test_the_line_that_ends_a_boot(tmp_path, lines, end):
    console = tmp_path / "console.log"
    console.write_bytes(lines)
    assert machine.boot_end(console) == end
    assert machine.boot_end(tmp_path / "missing.log") is None


def test_no_guest_ready_gives_null_percentiles():
    figures = bench.latency_figures({"g": 1.0}, {}, {})
    assert figures["guests_running"] == 0
    assert figures["p95_running_s"] is None
    assert figures["p50_guest_ready_s"] is None


def test_memory_per_guest():
    assert bench.per_vm(1000.0, 100) == 10.0
    assert bench.per_vm(-25.0, 100) == -0.2
    assert bench.per_vm(1000.0, 0) is None


# -- the machine -----------------------------------------------------------------------------

MEMINFO = """MemTotal:       24576000 kB
MemFree:         1000000 kB
MemAvailable:   20480000 kB
Buffers:          100000 kB
HugePages_Total:       0
"""


def test_used_memory_is_total_less_available():
    assert machine.used_memory_mib(MEMINFO) == (24576000 - 20480000) / 1024


def test_meminfo_without_available_memory_is_refused():
    text = MEMINFO.replace("MemAvailable", "MemSomething")
    with pytest.raises(benchlib.BenchError, match="MemAvailable"):
        machine.used_memory_mib(text)


def test_the_sampler_keeps_the_high_water_marks():
    readings = iter([(4000, 300.0), (9000, 350.0), (6000, 320.0)])
    current: list[tuple[int, float]] = []

    def meminfo() -> str:
        current[:] = [next(readings)]
        return f"MemTotal: 20000000 kB\nMemAvailable: {20000000 - current[0][0] * 1024} kB\n"

    sampler = machine.MemorySampler(lambda: current[0][1], meminfo=meminfo)
    assert sampler.sample() == (4000.0, 300.0)
    assert sampler.sample() == (9000.0, 350.0)
    assert sampler.sample() == (6000.0, 320.0)
    assert sampler.memory_high_water_mib == 9000.0
    assert sampler.control_plane_high_water_mib == 350.0


def test_a_guests_qemu_is_found_by_its_uuid_argument(tmp_path):
    wanted, other = "0b7e6c52-1111-4c3e-9a55-2f0f1f1f0001", "0b7e6c52-2222-4c3e-9a55-2f0f1f1f0002"
    processes = {
        "4242": ["/usr/bin/qemu-system-x86_64", "-name", "guest=x", "-uuid", wanted, "-smp", "1"],
        "4343": ["/usr/bin/qemu-system-x86_64", "-uuid", other],
        "4444": ["/usr/bin/python3", "bench.py", f"-uuid={wanted}", wanted],
        "4545": ["/usr/bin/tool", "-uuid"],
        "self": ["/usr/bin/qemu-system-x86_64", "-uuid", wanted],
    }
    for pid, argv in processes.items():
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (tmp_path / "4646").mkdir()  # ended: no cmdline left
    assert machine.qemu_pids([wanted, "not-running"], proc=tmp_path) == {wanted: 4242}


def test_the_poller_sees_a_ready_line_once_the_console_shows_it(tmp_path, monkeypatch):
    monkeypatch.setattr(benchlib, "INSTANCES_PATH", tmp_path)
    guests = {"ready-one": "uid-1", "booting": "uid-2", "no-log-yet": "uid-3"}
    for uid in ("uid-1", "uid-2"):
        (tmp_path / uid).mkdir()
        (tmp_path / uid / "console.log").write_bytes(b"SeaBIOS\r\nbooting\r\n")
    poller = machine.ReadyPoller(lambda: dict(guests))
    poller.start()
    try:
        time.sleep(3 * machine.READY_POLL_S)
        assert poller.snapshot() == {}
        written = time.monotonic()
        with (tmp_path / "uid-1" / "console.log").open("ab") as log:
            log.write(b"kubenova-guest: ready\r\n")
        deadline = time.monotonic() + 5
        while "ready-one" not in poller.snapshot() and time.monotonic() < deadline:
            time.sleep(0.05)
        seen = poller.snapshot()
    finally:
        poller.stop()
        poller.join(5)
    assert set(seen) == {"ready-one"}
    assert seen["ready-one"] >= written


def test_the_agent_pid_must_be_a_running_agent(tmp_path, monkeypatch):
    monkeypatch.setattr(benchlib, "STATE", tmp_path)
    with pytest.raises(benchlib.BenchError, match="no running agent of host vm"):
        machine.agent_pid("vm")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "agent-vm.pid").write_text(f"{os.getpid()}\n")
    # This test's own process runs, but is no kubenova-agent.
    with pytest.raises(benchlib.BenchError, match="is not a kubenova-agent"):
        machine.agent_pid("vm")


# -- arguments -------------------------------------------------------------------------------


def test_the_defaults_are_kubevirts_density_shape():
    args = bench.parse_args([])
    assert (args.guests, args.interval, args.host, args.ready_timeout) == (100, 0.1, "vm", 900)


@pytest.mark.parametrize(
    "argv",
    [["--guests", "0"], ["--interval", "0"], ["--interval", "nan"], ["--ready-timeout", "-1"]],
)
def test_arguments_out_of_range_are_refused(argv, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert "must be" in capsys.readouterr().err
