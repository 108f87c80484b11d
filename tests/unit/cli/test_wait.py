import io

import pytest
import urllib3
from kubernetes.client import exceptions as k8s_exceptions

from kubenova.cli import kube, wait
from tests.unit.cli import helpers
from tests.unit.cli.helpers import instance

G = 5


def snapshot(**kwargs):
    """The Instance at generation G; by default the operator has applied it."""
    kwargs.setdefault("generation", G)
    kwargs.setdefault("observed", G)
    kwargs.setdefault("synced", ("True", "Synced", G))
    return instance(**kwargs)


@pytest.mark.parametrize(
    "obj",
    [
        # The operator has not seen the new generation yet.
        snapshot(observed=4, synced=("True", "Synced", 4)),
        snapshot(observed=None, synced=None, phase=None),
        # It has, but the task still runs.
        snapshot(task="powering-off", synced=("False", "InProgress", G)),
        snapshot(task="powering-off", synced=("True", "Synced", G)),
        # No task, but the condition speaks of an older generation, or of none.
        snapshot(synced=("True", "Synced", 4)),
        snapshot(synced=None),
        # The condition says it is still under way, or cannot tell.
        snapshot(synced=("False", "InProgress", G)),
        snapshot(synced=("Unknown", "Syncing", G)),
    ],
)
def test_no_verdict_until_the_generation_is_observed_the_task_done_and_synced_decided(obj):
    assert wait.assess(obj, G) == wait.WAITING


def test_synced_true_at_the_generation_is_applied():
    verdict = wait.assess(snapshot(observed=6, synced=("True", "Synced", 6)), G)

    assert verdict.done
    assert verdict.applied


@pytest.mark.parametrize("reason", ["InvalidState", "OperationFailed"])
def test_synced_false_is_a_verdict_with_the_operators_reason_and_message(reason):
    obj = snapshot(synced=("False", reason, G), message="cannot pause: the instance is stopped")

    assert wait.assess(obj, G) == wait.Verdict(
        done=True,
        applied=False,
        reason=reason,
        message="cannot pause: the instance is stopped",
    )


def test_progress_shows_the_phase_and_the_task_under_way():
    assert wait.progress(snapshot(task="powering-off")) == "web-1: Running → powering-off"
    assert wait.progress(snapshot(phase="Stopped")) == "web-1: Stopped"
    assert wait.progress(snapshot(phase=None)) == "web-1: (no status yet)"


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def api(monkeypatch):
    """The plugin's API calls, fed with snapshots: ``watch`` events, then ``gets``."""

    class Api:
        watch: list = []
        watch_error: BaseException | None = None
        gets: list = []
        watch_calls: list = []

    def watch_instance(cluster, name, resource_version, timeout_seconds):
        Api.watch_calls.append((name, resource_version, timeout_seconds))
        yield from Api.watch
        if Api.watch_error is not None:
            raise Api.watch_error

    def get_instance(cluster, name):
        item = Api.gets.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    monkeypatch.setattr(kube, "watch_instance", watch_instance)
    monkeypatch.setattr(kube, "get_instance", get_instance)
    return Api


CLUSTER = helpers.cluster()


def run_wait(patched, timeout=300.0, clock=None):
    out = io.StringIO()
    clock = clock or FakeClock()
    verdict = wait.wait_for(
        CLUSTER, patched, verb="stop", timeout=timeout, out=out, clock=clock, sleep=clock.sleep
    )
    return verdict, out.getvalue().splitlines()


def test_the_watch_starts_at_the_patchs_resource_version_and_prints_each_change(api):
    patched = snapshot(observed=4, synced=("True", "Synced", 4), resource_version="41")
    api.watch = [
        ("MODIFIED", snapshot(task="powering-off", synced=("False", "InProgress", G))),
        # A change that does not change the line prints nothing.
        ("MODIFIED", snapshot(task="powering-off", synced=("False", "InProgress", G))),
        ("MODIFIED", snapshot(phase="Stopped", synced=("True", "Synced", G))),
        ("MODIFIED", snapshot(phase="Running")),  # never read: the verdict came first
    ]

    verdict, lines = run_wait(patched)

    assert verdict.applied
    assert lines == ["web-1: Running", "web-1: Running → powering-off", "web-1: Stopped"]
    assert api.watch_calls == [("web-1", "41", 300)]


def test_a_verdict_already_in_the_patchs_answer_needs_no_watch(api):
    verdict, lines = run_wait(snapshot(synced=("False", "InvalidState", G), message="no"))

    assert verdict == wait.Verdict(done=True, applied=False, reason="InvalidState", message="no")
    assert api.watch_calls == []
    assert lines == ["web-1: Running"]


def test_when_the_watch_ends_without_a_verdict_the_instance_is_polled(api):
    api.watch = [("MODIFIED", snapshot(task="pausing", synced=("False", "InProgress", G)))]
    api.watch_error = k8s_exceptions.ApiException(status=410, reason="Expired: too old")
    api.gets = [
        snapshot(task="pausing", synced=("False", "InProgress", G)),
        urllib3.exceptions.MaxRetryError(None, "/", "refused"),  # a hiccup is retried
        snapshot(phase="Paused"),
    ]
    clock = FakeClock()

    verdict, lines = run_wait(snapshot(observed=4), clock=clock)

    assert verdict.applied
    assert lines[-1] == "web-1: Paused"
    assert clock.slept == [wait.POLL_INTERVAL, wait.POLL_INTERVAL]


def test_the_deadline_ends_the_wait_with_what_was_last_seen(api):
    stuck = snapshot(task="powering-off", synced=("False", "InProgress", G))
    api.gets = [stuck] * 10
    clock = FakeClock()

    with pytest.raises(wait.WaitTimeout) as raised:
        run_wait(snapshot(observed=4), timeout=5.0, clock=clock)

    assert str(raised.value) == (
        "error: timed out after 5s waiting for instance web-1 to stop "
        "(last seen: Running → powering-off)"
    )
    assert sum(clock.slept) == pytest.approx(5.0)


def test_timeout_zero_checks_once_more_and_does_not_watch(api):
    api.gets = [snapshot(observed=4)]

    with pytest.raises(wait.WaitTimeout, match="timed out after 0s"):
        run_wait(snapshot(observed=4), timeout=0.0)

    assert api.watch_calls == []


def test_a_negative_timeout_waits_without_limit(api):
    api.watch = [("MODIFIED", snapshot(phase="Stopped"))]

    verdict, _ = run_wait(snapshot(observed=4), timeout=-1.0)

    assert verdict.applied
    assert api.watch_calls[0][2] == 3600


def test_an_instance_deleted_while_waiting_is_an_error(api):
    api.watch = [("DELETED", snapshot(task="deleting"))]

    with pytest.raises(kube.CommandError, match="instance web-1 was deleted while waiting"):
        run_wait(snapshot(observed=4))


def test_an_instance_gone_when_polled_is_an_error(api):
    api.gets = [k8s_exceptions.ApiException(status=404, reason="Not Found")]

    with pytest.raises(kube.CommandError, match="was deleted while waiting"):
        run_wait(snapshot(observed=4), timeout=0.0)


def test_a_permanent_error_while_polling_is_raised(api):
    api.gets = [k8s_exceptions.ApiException(status=403, reason="Forbidden")]

    with pytest.raises(k8s_exceptions.ApiException):
        run_wait(snapshot(observed=4), timeout=0.0)
