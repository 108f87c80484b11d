"""A real guest snapshotted with ``kubectl nova snapshot``: the Image it makes boots a new
instance, which finds on its disk what the first guest wrote there; a snapshot of an instance
in a state that cannot be snapshotted is refused, and says why."""

from __future__ import annotations

import os
import pathlib
import urllib.error
import urllib.request
import uuid as uuidlib
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import (
    STATE,
    apply,
    flavor_manifest,
    get,
    instance_manifest,
    kubectl,
    status_of,
    wait_for,
)
from tests.e2e.test_power_operations import FLAVOR, _actions, _boot, _boots, _console, _ok, nova

pytestmark = pytest.mark.e2e

IMAGE_SERVER = os.environ.get(
    "KUBENOVA_IMAGE_SERVER_URL",
    f"http://127.0.0.1:{os.environ.get('KUBENOVA_IMAGE_PORT', '8089')}/",
)
TOKEN_FILE = pathlib.Path(
    os.environ.get("KUBENOVA_IMAGE_UPLOAD_TOKEN_FILE", STATE / "run" / "image-upload.token")
)


@pytest.fixture
def image_name(stack: dict[str, str]) -> Iterator[str]:
    """The name of the Image the test makes, deleted afterwards (nothing else deletes it)."""
    if not TOKEN_FILE.exists():
        pytest.fail(
            f"no image upload token at {TOKEN_FILE}: run hack/guest/serve.sh stop and start, "
            "so that the image server takes uploads"
        )
    probe = urllib.request.Request(f"{IMAGE_SERVER}snapshots/e2e-probe", data=b"", method="PUT")
    try:
        urllib.request.urlopen(probe, timeout=10)
    except urllib.error.HTTPError as exc:
        if exc.code == 501:
            pytest.fail(
                f"the image server at {IMAGE_SERVER} takes no uploads (an old http.server?): "
                "run hack/guest/serve.sh stop and start"
            )
    name = f"e2e-snap-{uuidlib.uuid4().hex[:8]}"
    yield name
    kubectl("delete", "image", name, "--wait=false", check=False)


def test_an_image_made_by_a_snapshot_boots_with_what_the_guest_wrote_to_its_disk(
    namespace: str, stack: dict[str, str], image_name: str
) -> None:
    marker = f"e2e-{uuidlib.uuid4().hex[:10]}"
    uuid = _boot(namespace, "source", userData=f"#kubenova-guest: write-marker={marker}\n")
    console = _console(uuid)
    if f"kubenova-guest: switch write-marker={marker}" not in console:
        pytest.fail("the tiny guest image predates write-marker: rebuild it (hack/guest/build.sh)")
    assert f"kubenova-guest: marker written {marker}" in console

    out = _ok(nova(stack, "snapshot", "source", image_name, "-n", namespace, timeout=600))
    assert f"succeeded: image {image_name}" in out

    snapshot = get("instancesnapshots", image_name, namespace)
    assert snapshot is not None
    status = snapshot["status"]
    assert status["phase"] == "Succeeded"
    image = get("images", image_name)
    assert image is not None
    # The Image belongs to nobody: it outlives the instance and the InstanceSnapshot.
    assert not image["metadata"].get("ownerReferences")
    assert image["spec"]["sha256"] == status["sha256"]
    assert image["spec"]["diskFormat"] == "qcow2"
    assert image["spec"]["minDiskGiB"] == 1
    assert image["spec"]["source"]["url"] == status["url"]
    assert status["sizeBytes"] > 0

    # The source was paused for the copy only: running, never rebooted, no task left.
    source = status_of(namespace, "source")
    assert (source["phase"], source.get("taskState")) == ("Running", None)
    assert _boots(uuid) == 1
    action = wait_for(
        "the createImage action",
        lambda: [a for a in _actions(namespace, "source") if a["action"] == "createImage"],
        timeout=60,
    )[0]
    assert action["result"] == "Success"
    assert [e["event"] for e in action["events"]] == ["compute_snapshot_instance"]

    # A new instance boots from the snapshot and finds the marker on its disk.
    apply(instance_manifest("restored", namespace, FLAVOR, image=image_name))
    wait_for(
        "restored to be Running",
        lambda: status_of(namespace, "restored").get("phase") == "Running",
        timeout=240,
    )
    restored = get("instances", "restored", namespace)["metadata"]["uid"]
    wait_for("restored's guest to be ready", lambda: _boots(restored) >= 1, timeout=180)
    lines = _console(restored).replace("\r", "").splitlines()
    assert f"kubenova-guest: marker {marker}" in lines

    # Deleting the InstanceSnapshot leaves the Image.
    kubectl("delete", "instancesnapshot", image_name, "-n", namespace)
    assert get("images", image_name) is not None


def test_a_snapshot_of_an_instance_that_is_not_built_is_refused(
    namespace: str, stack: dict[str, str], image_name: str
) -> None:
    # No host has room for it: it stays Pending, never built.
    apply(flavor_manifest("e2e-snapshot-huge", 1, 4194304, 1))
    apply(instance_manifest("nowhere", namespace, "e2e-snapshot-huge"))
    wait_for(
        "nowhere to be Pending",
        lambda: status_of(namespace, "nowhere").get("phase") == "Pending",
        timeout=60,
    )

    refused = nova(stack, "snapshot", "nowhere", image_name, "-n", namespace, timeout=120)

    assert refused.returncode == 1, refused
    # Building, with no record yet, or with a record whose task is scheduling: either way the
    # message names the operation and the state.
    assert (
        "error: snapshot of instance nowhere refused (InvalidState): cannot snapshot: the "
        "instance is "
    ) in refused.stderr
    assert "building" in refused.stderr or "busy (scheduling)" in refused.stderr
    snapshot = get("instancesnapshots", image_name, namespace)
    assert snapshot is not None
    assert snapshot["status"]["phase"] == "Failed"
    assert get("images", image_name) is None
    events = kubectl(
        "get", "events", "-n", namespace, "--field-selector",
        f"involvedObject.name={image_name},reason=InvalidState", "-o", "name",
    ).stdout  # fmt: skip
    assert events.strip(), "no InvalidState Event on the InstanceSnapshot"
