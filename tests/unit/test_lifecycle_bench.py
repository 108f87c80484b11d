"""The lifecycle benchmark's own logic (hack/bench/lifecycle_bench.py, lifecycle_figures.py
and lifecycle_guests.py): the medians and ratios it reports, its summary, when it calls an
Instance's operation done, how it counts boots on a console, the order of the direct calls,
and its arguments. The timings themselves need real guests: the benchmark is run by hand or by
`make bench`."""

from __future__ import annotations

import importlib
import math
import pathlib
import sys
import threading
import time
from typing import Any

import libvirt
import pytest

from tests.support.bench import BENCH_DIR

if str(BENCH_DIR) not in sys.path:
    sys.path.append(str(BENCH_DIR))
bench = importlib.import_module("lifecycle_bench")
bench_figures = importlib.import_module("lifecycle_figures")
bench_guests = importlib.import_module("lifecycle_guests")
benchlib = importlib.import_module("benchlib")

READY = b"kubenova-guest: ready\r\n"


# -- medians and ratios ---------------------------------------------------------------------


def measured(scale: float = 1.0, **overrides: float | None) -> Any:
    figures: dict[str, float | None] = {
        "kubenova_stop_s": 1.2 * scale,
        "kubenova_start_running_s": 0.5 * scale,
        "kubenova_start_ready_s": 8.0 * scale,
        "kubenova_reboot_synced_s": 9.0 * scale,
        "kubenova_reboot_ready_s": 10.0 * scale,
        "direct_stop_s": 1.0 * scale,
        "direct_start_ready_s": 7.5 * scale,
        "direct_reboot_ready_s": 9.5 * scale,
    }
    figures.update(overrides)
    return bench_figures.Round(**figures)


def test_each_figure_is_the_median_of_the_rounds_and_each_ratio_kubenova_over_direct():
    result = bench_figures.medians([measured(1.0), measured(3.0), measured(2.0)])
    assert list(result) == list(bench_figures.FIELDS)
    assert result["kubenova_stop_s"] == 2.4
    assert result["direct_stop_s"] == 2.0
    assert result["stop_ratio"] == 1.2
    assert result["kubenova_start_running_s"] == 1.0
    assert result["start_ratio"] == pytest.approx(16.0 / 15.0, abs=1e-3)
    assert result["kubenova_reboot_synced_s"] == 18.0
    assert result["reboot_ratio"] == pytest.approx(20.0 / 19.0, abs=1e-3)


def test_the_ratio_compares_medians_not_rounds():
    # Kubenova's slow round and direct's slow round are different rounds: the ratio of the
    # medians (1.0) is not the median of the per-round ratios.
    rounds = [
        measured(kubenova_stop_s=1.0, direct_stop_s=2.0),
        measured(kubenova_stop_s=2.0, direct_stop_s=1.0),
        measured(kubenova_stop_s=1.5, direct_stop_s=1.5),
    ]
    assert bench_figures.medians(rounds)["stop_ratio"] == 1.0


def test_the_median_of_an_even_number_of_rounds_is_the_mean_of_the_middle_two():
    result = bench_figures.medians([measured(1.0), measured(2.0)])
    assert result["direct_start_ready_s"] == 11.25
    assert result["kubenova_stop_s"] == 1.8


def test_figures_are_kept_to_the_millisecond_and_ratios_come_from_unrounded_medians():
    result = bench_figures.medians(
        [measured(kubenova_stop_s=1.00049, direct_stop_s=0.0004)]  # rounds to 0.0
    )
    assert result["kubenova_stop_s"] == 1.0
    assert result["direct_stop_s"] == 0.0
    assert result["stop_ratio"] == pytest.approx(2501.225)


def test_direct_only_leaves_the_kubenova_figures_and_the_ratios_null():
    direct_only = bench_figures.Round(
        direct_stop_s=1.0, direct_start_ready_s=7.0, direct_reboot_ready_s=9
    )
    result = bench_figures.medians([direct_only, direct_only])
    assert result["direct_stop_s"] == 1.0
    assert result["direct_reboot_ready_s"] == 9.0
    for name in (
        "kubenova_stop_s",
        "kubenova_start_running_s",
        "kubenova_start_ready_s",
        "kubenova_reboot_synced_s",
        "kubenova_reboot_ready_s",
        "stop_ratio",
        "start_ratio",
        "reboot_ratio",
    ):
        assert result[name] is None, name


def test_a_direct_time_of_zero_gives_no_ratio():
    assert bench_figures.medians([measured(direct_stop_s=0.0)])["stop_ratio"] is None


def test_the_summary_shows_every_figure_and_a_dash_for_what_did_not_run():
    line = bench_figures.round_line(2, measured())
    assert line.startswith("round 2: stop kubenova 1.20s direct 1.00s;")
    assert "start kubenova Running 0.50s ready 8.00s direct ready 7.50s" in line
    assert "reboot kubenova ready 10.00s (Synced 9.00s) direct ready 9.50s" in line
    direct_only = bench_figures.round_line(1, bench_figures.Round(direct_stop_s=1.0))
    assert "stop kubenova - direct 1.00s" in direct_only
    result = bench_figures.medians([measured()])
    summary = bench_figures.summary_line(result, 1, "m1.nano", "qemu")
    assert summary.startswith("lifecycle benchmark (qemu, flavor m1.nano, medians of 1):")
    assert "stop kubenova 1.2s direct 1.0s x1.2" in summary
    none = bench_figures.summary_line(
        bench_figures.medians([bench_figures.Round()]), 1, "m1.nano", "kvm"
    )
    assert "stop kubenova - direct - -" in none


# -- when an Instance's operation is done ---------------------------------------------------


def instance(
    phase: str = "Stopped",
    observed: int = 4,
    task: str | None = None,
    synced: str | None = "True",
    synced_generation: int = 4,
    reason: str = "Synced",
) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True", "observedGeneration": 1}]
    if synced is not None:
        conditions.append(
            {
                "type": "Synced",
                "status": synced,
                "reason": reason,
                "message": "why",
                "observedGeneration": synced_generation,
            }
        )
    return {
        "metadata": {"name": "lifecycle-bench-x", "generation": 4},
        "status": {
            "phase": phase,
            "taskState": task,
            "observedGeneration": observed,
            "conditions": conditions,
        },
    }


def test_an_operation_is_done_when_synced_at_its_generation_with_no_task_in_the_phase_wanted():
    assert bench_guests.settled(instance(), 4, "Stopped")
    assert bench_guests.settled(instance(observed=5, synced_generation=5), 4, "Stopped")


@pytest.mark.parametrize(
    "obj",
    [
        instance(observed=3),  # the operator has not seen the patch yet
        instance(task="powering-off"),
        instance(synced=None),
        instance(synced_generation=3),  # the condition speaks of the spec before the patch
        instance(synced="False", reason="InProgress"),
        instance(synced="Unknown", reason="Whatever"),
        instance(phase="Running"),  # applied, but not (yet) in the phase wanted
        {"metadata": {"name": "x"}},  # no status yet
    ],
    ids=[
        "not-observed",
        "task-running",
        "no-synced",
        "synced-older",
        "in-progress",
        "unknown",
        "other-phase",
        "no-status",
    ],
)
def test_an_operation_under_way_is_not_done(obj):
    assert not bench_guests.settled(obj, 4, "Stopped")


def test_a_refused_or_failed_operation_ends_the_benchmark():
    with pytest.raises(bench.BenchError, match="generation 4 was not applied: Refused: why"):
        bench_guests.settled(instance(synced="False", reason="Refused"), 4, "Stopped")
    # A verdict on an older generation is not this operation's.
    assert not bench_guests.settled(
        instance(synced="False", reason="Refused", synced_generation=3), 4, "Stopped"
    )


def test_an_instance_in_error_ends_the_benchmark():
    with pytest.raises(bench.BenchError, match="went to Error"):
        bench_guests.settled(instance(phase="Error", observed=3), 4, "Running")


class FakeWatch:
    """kubernetes.watch.Watch playing a script: each stream() call takes the next list of
    events (or an exception to raise), and records the resourceVersion it was asked from."""

    def __init__(self, script: list[Any], versions: list[str]) -> None:
        self.script, self.versions = script, versions

    def stream(self, func, *args, resource_version, **kwargs):
        self.versions.append(resource_version)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        yield from step

    def stop(self) -> None:
        pass


def watched(obj: dict[str, Any], version: str) -> dict[str, Any]:
    obj["metadata"]["resourceVersion"] = version
    return {"type": "MODIFIED", "object": obj}


def patched() -> dict[str, Any]:
    """The patch's answer: generation 4, no status for it yet."""
    answer = instance(phase="Running", observed=3, synced_generation=3)
    answer["metadata"]["resourceVersion"] = "100"
    return answer


class Custom:
    """CustomObjectsApi for the watch: what it lists is the scripted watch's; a read answers
    an Instance at version 150, still powering off."""

    def list_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("listed outside the watch")

    def get_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        obj: dict[str, Any] = watched(instance(task="powering-off"), "150")["object"]
        return obj


def script_watch(monkeypatch: pytest.MonkeyPatch, script: list[Any]) -> list[str]:
    from kubernetes import watch

    versions: list[str] = []
    monkeypatch.setattr(watch, "Watch", lambda: FakeWatch(script, versions))
    return versions


def test_the_watch_starts_at_the_patch_s_version_and_ends_at_the_settled_status(monkeypatch):
    versions = script_watch(
        monkeypatch,
        [
            [
                watched(instance(task="powering-off", synced="False", reason="InProgress"), "101"),
                watched(instance(), "102"),
            ]
        ],
    )
    started = time.monotonic()
    done = bench_guests.wait_settled(Custom(), "default", patched(), "Stopped", started + 5)
    assert started <= done <= time.monotonic()
    assert versions == ["100"]


def test_a_watch_that_ends_early_goes_on_from_the_last_version_seen(monkeypatch):
    from kubernetes.client import exceptions

    versions = script_watch(
        monkeypatch,
        [
            [watched(instance(task="powering-off"), "101")],  # the server ended the watch
            exceptions.ApiException(status=410),  # and then 101 was compacted away
            [watched(instance(), "151")],
        ],
    )
    bench_guests.wait_settled(Custom(), "default", patched(), "Stopped", time.monotonic() + 5)
    assert versions == ["100", "101", "150"]


def test_a_deleted_instance_ends_the_wait(monkeypatch):
    script_watch(monkeypatch, [[{"type": "DELETED", "object": instance(task="powering-off")}]])
    with pytest.raises(bench.BenchError, match="deleted"):
        bench_guests.wait_settled(Custom(), "default", patched(), "Stopped", time.monotonic() + 5)


# -- boots counted on the console -----------------------------------------------------------


def test_each_boot_s_ready_line_is_counted_once(tmp_path: pathlib.Path):
    console = tmp_path / "console.log"
    assert benchlib.ready_count(console) == 0  # not written yet
    console.write_bytes(b"SeaBIOS\r\nkubenova-guest: instance-uuid=x\r\n" + READY)
    assert benchlib.ready_count(console) == 1
    # The next boot appends; a line still being written counts once it is whole.
    with console.open("ab") as out:
        out.write(b"\x1b[2J\x1b[01;01Hkubenova-guest: ready")
    assert benchlib.ready_count(console) == 2
    # The same words inside another line are not a boot.
    with console.open("ab") as out:
        out.write(b"\r\necho kubenova-guest: ready > /dev/null # user-data\r\n")
    assert benchlib.ready_count(console) == 2


def test_the_wait_ends_when_the_count_goes_past_the_one_before(tmp_path: pathlib.Path):
    console = tmp_path / "console.log"
    console.write_bytes(READY)

    def boot_again() -> None:
        time.sleep(0.1)
        with console.open("ab") as out:
            out.write(READY)

    writer = threading.Thread(target=boot_again)
    writer.start()
    started = time.monotonic()
    seen = benchlib.wait_ready_count(console, 1, started + 5)
    writer.join()
    assert 0.1 <= seen - started < 2


def test_the_wait_gives_up_at_its_deadline_or_when_stopped(tmp_path: pathlib.Path):
    console = tmp_path / "console.log"
    console.write_bytes(READY)
    with pytest.raises(benchlib.BenchError, match="in time"):
        benchlib.wait_ready_count(console, 1, time.monotonic() + 0.05)
    stop = threading.Event()
    stop.set()
    with pytest.raises(benchlib.BenchError, match="cancelled"):
        benchlib.wait_ready_count(console, 1, time.monotonic() + 5, stop=stop)


def test_a_ready_watch_reports_the_boot_it_saw_while_the_caller_did_something_else(
    tmp_path: pathlib.Path,
):
    console = tmp_path / "console.log"
    watch = bench_guests.ReadyWatch(console, 0, time.monotonic() + 5)
    console.write_bytes(READY)
    written = time.monotonic()
    time.sleep(0.2)  # the API watch, meanwhile
    assert watch.result() <= written + 0.1
    watch.cancel()


# -- the direct calls -----------------------------------------------------------------------


class ShutOffDomain:
    """A libvirt domain that records the calls made to it: its guest shuts off on the third
    state poll after the power button, and prints the ready line when started."""

    def __init__(self, console: pathlib.Path) -> None:
        self.console = console
        self.calls: list[str] = []
        self.running = True
        self.polls = 0

    def name(self) -> str:
        return "instance-fake"

    def shutdown(self) -> None:
        self.calls.append("shutdown")
        self.polls = 3

    def create(self) -> None:
        assert not self.running, "started while running"
        self.calls.append("create")
        self.running = True
        with self.console.open("ab") as out:
            out.write(READY)

    def state(self) -> list[int]:
        self.calls.append("state")
        if self.running and self.polls:
            self.polls -= 1
            if self.polls == 0:
                self.running = False
        return [libvirt.VIR_DOMAIN_RUNNING if self.running else libvirt.VIR_DOMAIN_SHUTOFF, 1]


def direct_ops(tmp_path: pathlib.Path) -> tuple[Any, ShutOffDomain]:
    console = tmp_path / "console.log"
    console.write_bytes(READY)
    domain = ShutOffDomain(console)
    guest = benchlib.DirectGuest(domain, tmp_path, console)
    return bench_guests.DirectOps(guest, timeout=5), domain


def test_a_direct_stop_presses_the_button_and_polls_until_shut_off(tmp_path: pathlib.Path):
    ops, domain = direct_ops(tmp_path)
    elapsed = ops.stop()
    assert domain.calls == ["shutdown", "state", "state", "state"]
    # Two polls found it running, each followed by a pause of STATE_POLL_S.
    assert 2 * bench_guests.STATE_POLL_S <= elapsed < 1


def test_a_direct_soft_reboot_is_shutdown_shut_off_then_create_until_the_next_boot(
    tmp_path: pathlib.Path,
):
    ops, domain = direct_ops(tmp_path)
    ops.reboot()
    assert [c for c in domain.calls if c != "state"] == ["shutdown", "create"]
    assert benchlib.ready_count(domain.console) == 2


def test_a_direct_start_waits_for_one_more_boot(tmp_path: pathlib.Path):
    ops, domain = direct_ops(tmp_path)
    domain.running = False
    assert ops.start() < 1
    assert benchlib.ready_count(domain.console) == 2


def test_a_direct_start_whose_guest_never_boots_times_out(tmp_path: pathlib.Path):
    ops, domain = direct_ops(tmp_path)
    domain.running = False
    domain.create = lambda: None  # type: ignore[method-assign]
    ops.timeout = 0.1
    with pytest.raises(benchlib.BenchError, match="in time"):
        ops.start()


# -- arguments and the domain type ----------------------------------------------------------


def test_the_defaults_are_boot_bench_s():
    args = bench.parse_args([])
    assert (args.repeat, args.host, args.flavor, args.namespace) == (3, "vm", "m1.nano", "default")
    assert args.timeout == 300
    assert not args.direct_only
    assert args.virt_type is None


def test_direct_only_and_the_domain_type_are_flags():
    args = bench.parse_args(["--direct-only", "--virt-type", "kvm", "--repeat", "5"])
    assert (args.direct_only, args.virt_type, args.repeat) == (True, "kvm", 5)


@pytest.mark.parametrize(
    "argv",
    [["--repeat", "0"], ["--timeout", "0"], ["--virt-type", "xen"]],
    ids=["repeat", "timeout", "virt-type"],
)
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(argv)
    assert exit_info.value.code == 2


class Cluster:
    """CustomObjectsApi answering for one Hypervisor, or none."""

    def __init__(self, hypervisor: dict[str, Any] | None) -> None:
        self.hypervisor = hypervisor

    def get_cluster_custom_object(self, group, version, plural, name):
        from kubernetes.client import exceptions

        if plural == "hypervisors" and self.hypervisor is not None:
            return self.hypervisor
        raise exceptions.ApiException(status=404)


def hypervisor(state: str = "up", virt: str = "qemu") -> dict[str, Any]:
    return {"metadata": {"name": "vm"}, "status": {"state": state, "virtType": virt}}


def test_both_guests_run_with_the_host_s_domain_type():
    assert bench.virt_type_of(Cluster(hypervisor()), bench.parse_args([])) == "qemu"


def test_a_full_run_needs_the_host_s_agent_up():
    with pytest.raises(bench.BenchError, match="not up"):
        bench.virt_type_of(Cluster(hypervisor("down")), bench.parse_args([]))
    with pytest.raises(bench.BenchError, match="not up"):
        bench.virt_type_of(Cluster(None), bench.parse_args([]))


def test_a_full_run_refuses_a_domain_type_other_than_the_host_s():
    args = bench.parse_args(["--virt-type", "kvm"])
    with pytest.raises(bench.BenchError, match="not run the same guest"):
        bench.virt_type_of(Cluster(hypervisor()), args)


def test_direct_only_needs_no_agent_but_a_domain_type():
    down = Cluster(hypervisor("down", "kvm"))
    assert bench.virt_type_of(down, bench.parse_args(["--direct-only"])) == "kvm"
    args = bench.parse_args(["--direct-only", "--virt-type", "qemu"])
    assert bench.virt_type_of(Cluster(None), args) == "qemu"
    with pytest.raises(bench.BenchError, match="--virt-type"):
        bench.virt_type_of(Cluster(None), bench.parse_args(["--direct-only"]))
    test_host = Cluster(hypervisor("up", "test"))
    with pytest.raises(bench.BenchError, match="not a libvirt/QEMU host"):
        bench.virt_type_of(test_host, bench.parse_args(["--direct-only"]))


def test_medians_of_no_rounds_are_null():
    result = bench_figures.medians([])
    assert all(value is None for value in result.values())
    assert math.isnan(benchlib.median([]))
