"""The manifest fuzz's run (hack/fuzz/manifest_fuzz.py, fuzz_run.py, fuzz_report.py) against a
fake apiserver: how it classifies each answer, that it deletes what was accepted and retires
its hosts, counts only the log lines written during the run, finds Instances on other hosts,
and exits 1 on a finding; and the dry run, which contacts nothing."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import io
import json
import pathlib
import re
import types
import uuid
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.support.fuzz import fuzz_module

fuzz_report = fuzz_module("fuzz_report")
fuzz_run = fuzz_module("fuzz_run")
log_scan = fuzz_module("log_scan")
manifest_fuzz = fuzz_module("manifest_fuzz")
manifests = fuzz_module("manifests")
mutations = fuzz_module("mutations")

SEED = manifest_fuzz.DEFAULT_SEED
KIND_OF = {kind.plural: kind.name for kind in manifests.KINDS}
DNS_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


def status(code: int, message: str) -> str:
    return json.dumps({"kind": "Status", "status": "Failure", "message": message, "code": code})


def exception_line(message: str) -> str:
    record = {"level": "ERROR", "message": message, "exception": "Traceback ...\nKeyError"}
    return json.dumps(record) + "\n"


class FakeCluster:
    """The apiserver as far as the fuzz uses it. A create is refused naming the field when the
    kind is wrong, the name is not a DNS name or the spec not an object; refused naming
    nothing when the manifest holds an unknown field; accepted otherwise. An Instance is
    listed Running on ``host``; the first one also writes an exception to the operator's log.
    The fuzz's hosts are up."""

    def __init__(self, operator_log: pathlib.Path, host: str = "fuzz-001") -> None:
        self.operator_log = operator_log
        self.host = host
        self.objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.namespaces: list[str] = []

    def _create(self, plural: str, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        name = (body.get("metadata") or {}).get("name")
        if body.get("kind") != KIND_OF[plural]:
            raise ApiException(status=422, body=status(422, f"kind: Invalid value: {plural}"))
        if not isinstance(name, str) or not DNS_NAME.fullmatch(name) or len(name) > 253:
            raise ApiException(status=422, body=status(422, "metadata.name: Invalid value"))
        if not isinstance(body.get("spec"), dict):
            raise ApiException(status=422, body=status(422, "spec: Invalid value"))
        if "fuzzUnknown" in json.dumps(body):
            raise ApiException(status=400, body=status(400, "strict decoding error"))
        stored = copy.deepcopy(body)
        stored["metadata"].update(uid=str(uuid.uuid4()), namespace=namespace)
        if plural == "instances":
            stored["status"] = {"phase": "Running", "host": self.host}
            if not any(key[0] == "instances" for key in self.objects):
                with self.operator_log.open("a") as log_file:
                    log_file.write(exception_line("handling an instance failed"))
        self.objects[(plural, namespace, name)] = stored
        return copy.deepcopy(stored)

    def create_namespaced_custom_object(self, group, version, namespace, plural, body, **_):
        return self._create(plural, namespace, body)

    def create_cluster_custom_object(self, group, version, plural, body, **_):
        return self._create(plural, None, body)

    def list_cluster_custom_object(self, group, version, plural):
        assert plural == "hypervisors"
        beat = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "items": [
                {
                    "metadata": {"name": f"fuzz-{i:03d}"},
                    "status": {"state": "up", "lastHeartbeat": beat},
                }
                for i in range(1, 6)
            ]
        }

    def list_namespaced_custom_object(self, group, version, namespace, plural):
        return {
            "items": [
                copy.deepcopy(obj)
                for (kind, ns, _), obj in self.objects.items()
                if (kind, ns) == (plural, namespace)
            ]
        }

    def _delete(self, plural: str, namespace: str | None, name: str) -> None:
        if self.objects.pop((plural, namespace, name), None) is None:
            raise ApiException(status=404, body=status(404, "not found"))

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name):
        self._delete(plural, namespace, name)

    def delete_cluster_custom_object(self, group, version, plural, name):
        self._delete(plural, None, name)

    def create_namespace(self, body):
        self.namespaces.append(body["metadata"]["name"])

    def delete_namespace(self, name):
        self.namespaces.remove(name)


@pytest.fixture
def stack(tmp_path):
    """A fake cluster and the benchmark library around it, with an operator log and a
    simulated agent's log that already hold an exception each from before the run."""
    logs = tmp_path / "logs"
    logs.mkdir()
    operator_log = logs / "operator.log"
    operator_log.write_text(exception_line("from an earlier run"))
    (logs / "sim-fuzz-1.log").write_text(exception_line("from an earlier run"))
    cluster = FakeCluster(operator_log)
    calls: list[tuple[str, ...]] = []

    def sim_hosts(*args: str) -> None:
        calls.append(args)

    bench = types.SimpleNamespace(
        kube_api=lambda: (cluster, cluster),
        operator_pid=lambda pid: 4242,
        STATE=tmp_path,
        sim_hosts=sim_hosts,
        BenchError=RuntimeError,
    )
    return types.SimpleNamespace(cluster=cluster, bench=bench, calls=calls, log=operator_log)


def run(stack, capsys, count: int = 104) -> tuple[int, dict[str, Any], str]:
    args = manifest_fuzz.parse_args(
        ["--count", str(count), "--operator-log", str(stack.log), "--settle-timeout", "5"]
    )
    cases = mutations.generate(args.seed, args.count, "t1")
    code = manifest_fuzz.Fuzz(args, stack.bench, cases, "t1").run((0, []))
    out = capsys.readouterr().out
    return code, json.loads(out.splitlines()[-1]), out


def test_a_run_sends_every_manifest_and_deletes_what_was_accepted(stack, capsys):
    code, summary, _ = run(stack, capsys)
    assert summary["manifests"] == 104
    assert sum(summary[kind.name]["sent"] for kind in manifests.KINDS) == 104
    accepted = sum(summary[kind.name]["accepted"] for kind in manifests.KINDS)
    assert 0 < accepted < 104
    assert stack.cluster.objects == {}
    assert stack.cluster.namespaces == []
    assert stack.calls[0] == ("start", "5", "--prefix", "fuzz")
    assert stack.calls[-1] == ("retire", "--prefix", "fuzz")
    assert (summary["unsettled"], summary["misplaced"], summary["cleanup_left"]) == (0, 0, 0)
    assert summary["content_checked"] > 0
    assert summary["content_changed"] == 0
    # The unknown fields were refused naming nothing, and an exception was logged: a finding.
    assert summary["Flavor"]["refused_without_field"] > 0
    assert code == 1


def test_only_the_lines_written_during_the_run_are_scanned(stack, capsys):
    _, summary, out = run(stack, capsys)
    assert summary["operator_exceptions"] == 1
    assert summary["agent_exceptions"] == 0
    assert "handling an instance failed" in out


def test_an_instance_on_another_host_is_reported(stack, capsys):
    stack.cluster.host = "vm"
    code, summary, out = run(stack, capsys)
    assert summary["misplaced"] == summary["Instance"]["accepted"] > 0
    assert ": on vm" in out
    assert code == 1


def test_the_hosts_are_retired_when_the_run_fails(stack, capsys):
    def failing_create(*args, **kwargs):
        raise RuntimeError("the apiserver went away")

    stack.cluster.create_cluster_custom_object = failing_create
    args = manifest_fuzz.parse_args(["--count", "8", "--operator-log", str(stack.log)])
    cases = mutations.generate(args.seed, args.count, "t1")
    with pytest.raises(RuntimeError):
        manifest_fuzz.Fuzz(args, stack.bench, cases, "t1").run((0, []))
    assert stack.calls[-1] == ("retire", "--prefix", "fuzz")
    assert stack.cluster.namespaces == []


# -- one answer ------------------------------------------------------------------------------

INVALID = status(
    422,
    'Flavor.compute.kubenova.io "f" is invalid: spec.vcpus: Invalid value: 0: '
    "spec.vcpus in body should be greater than or equal to 1",
)


class FakeObjects:
    """The CustomObjectsApi's create calls, answering with ``answer``."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: list[tuple[Any, ...]] = []

    def _create(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((*args, kwargs))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    create_namespaced_custom_object = _create
    create_cluster_custom_object = _create


def case_of(field: str = "spec.vcpus", kind: Any = None) -> Any:
    kind = kind or manifests.FLAVOR
    body = manifests.base_manifest(kind, manifests.RunNames("t1"), 0)
    return mutations.Case(kind, 0, "out_of_range", field, (), f"{field} = 0", body)


@pytest.mark.parametrize(
    ("answer", "field", "result", "named"),
    [
        (ApiException(status=422, body=INVALID), "spec.vcpus", "refused", True),
        (ApiException(status=422, body=INVALID), "spec.diskGiB", "refused", False),
        (ApiException(status=500, body="etcdserver: timed out"), "spec.vcpus", "error", False),
        (ConnectionResetError("reset"), "spec.vcpus", "error", False),
        ({"metadata": {"name": "f"}}, "spec.vcpus", "accepted", False),
    ],
    ids=["named", "not-named", "server-error", "no-answer", "accepted"],
)
def test_the_sender_classifies_each_answer(answer, field, result, named):
    outcome = fuzz_run.Sender(FakeObjects(answer), "ns", "Strict").send(case_of(field))
    assert (outcome.result, outcome.names_field) == (result, named)


def test_the_sender_creates_namespaced_kinds_in_its_namespace_strictly():
    objects = FakeObjects({"metadata": {"name": "v"}})
    fuzz_run.Sender(objects, "fuzz-ns", "Strict").send(case_of(kind=manifests.INSTANCE))
    (call,) = objects.calls
    assert call[2:4] == ("fuzz-ns", "instances")
    assert call[-1] == {"field_validation": "Strict"}


def test_a_refusal_without_the_field_fails_the_run():
    refused = fuzz_run.Outcome(case_of(), "refused", 422, "no field here", names_field=False)
    findings = fuzz_report.Findings(
        log_scan.LogScan(), log_scan.LogScan(), 0, [], 0, 0, [], {}, [], [], []
    )
    summary = fuzz_report.result(SEED, [refused], findings, "ns")
    assert summary["Flavor"]["refused_without_field"] == 1
    assert fuzz_report.failed(summary)
    named = dataclasses.replace(refused, names_field=True)
    assert not fuzz_report.failed(fuzz_report.result(SEED, [named], findings, "ns"))


@pytest.mark.parametrize(
    ("phase", "reason", "settled"),
    [
        ("Running", None, "Running"),
        ("Error", None, "Error"),
        ("Pending", "FlavorNotFound", "Pending:FlavorNotFound"),
        ("Pending", None, None),
        ("Building", None, None),
        (None, None, None),
    ],
)
def test_an_instance_settles_in_a_final_phase_or_pending_with_a_reason(phase, reason, settled):
    conditions = [{"type": "Scheduled", "status": "False", "reason": reason}] if reason else []
    instance = {"status": {"phase": phase, "conditions": conditions}} if phase else {}
    assert fuzz_run.settled_phase(instance) == settled


# -- the dry run -----------------------------------------------------------------------------


def test_the_dry_run_counts_without_contacting_anything(capsys, monkeypatch):
    monkeypatch.setattr(manifest_fuzz, "bench_library", pytest.fail)
    assert manifest_fuzz.main(["--dry-run", "--count", "60", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.splitlines()[-1])
    assert summary["manifests"] == 60
    assert sum(summary["kinds"]["Instance"].values()) == 15
    assert summary["builder_probes"]["checked"] > 40
    assert "xml_injection" in out


def test_print_dry_run_lists_every_family_of_every_kind():
    cases = mutations.generate(1, 200, "t1")
    out = io.StringIO()
    fuzz_report.print_dry_run(out, 1, cases, (0, []))
    counts = json.loads(out.getvalue().splitlines()[-1])["kinds"]
    assert counts == fuzz_report.counts_by_family(cases)
    assert all(n > 0 for kind in counts.values() for n in kind.values())
