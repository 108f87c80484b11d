"""The agent's snapshot: the driver's copy is measured, uploaded to a real image server with
the token and reported with one ``snapshot_finished``; whatever fails is the report's Error."""

from __future__ import annotations

import hashlib
import pathlib
import threading
from collections.abc import Iterator

import pytest

from kubenova.images import server as image_server
from kubenova.rpc import conductor_rpcapi, envelope, payloads
from kubenova_agent import exceptions, manager, snapshots
from kubenova_agent.virt.power_state import PowerState
from tests.support import RecordingCaster
from tests.unit.agent.scripted_driver import ScriptedDriver

UUID = "6f1c1d9e-0000-4000-8000-000000000001"
SNAPSHOT_UID = "0a0b0c0d-0000-4000-8000-000000000009"
TOKEN = "agent-token"


@pytest.fixture
def images(tmp_path: pathlib.Path) -> Iterator[tuple[str, pathlib.Path]]:
    root = tmp_path / "images"
    root.mkdir()
    httpd = image_server.ImageServer(("127.0.0.1", 0), root, token=TOKEN)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", root
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _parts(tmp_path: pathlib.Path, token: str | None = TOKEN):
    caster, driver = RecordingCaster(), ScriptedDriver()
    compute = manager.ComputeManager("h1", driver, conductor_rpcapi.ConductorAPI(caster))
    work = tmp_path / "work"
    compute.snapshots.settings = snapshots.SnapshotSettings(work_path=str(work), upload_token=token)
    return compute, driver, caster, work


def _message(upload_url: str, uuid: str = UUID) -> envelope.Envelope:
    args = payloads.SnapshotInstance(
        instance_uuid=uuid,
        snapshot_name="snap-1",
        snapshot_uid=SNAPSHOT_UID,
        image_name="web-1-img",
        upload_url=upload_url,
    )
    return envelope.Envelope(
        request_id="req-s", method="snapshot_instance", args=args.model_dump(), sender="op"
    )


def _finished(caster: RecordingCaster) -> payloads.SnapshotFinished:
    reports = [c for c in caster.casts if c.method == "snapshot_finished"]
    assert len(reports) == 1, caster.methods()
    assert reports[0].request_id == "req-s"
    return payloads.SnapshotFinished.model_validate(reports[0].args)


def test_the_copy_is_uploaded_and_reported_with_its_digest(tmp_path, images):
    base, root = images
    compute, driver, caster, work = _parts(tmp_path)
    driver.domains[UUID] = PowerState.RUNNING
    url = f"{base}snapshots/snap-1.qcow2"

    compute.handle(_message(url), None)

    stored = (root / "snapshots" / "snap-1.qcow2").read_bytes()
    assert stored == f"disk of {UUID} (running)".encode()
    report = _finished(caster)
    assert report.result == "Success"
    assert report.message is None
    assert report.url == url
    assert report.sha256 == hashlib.sha256(stored).hexdigest()
    assert report.size_bytes == len(stored)
    assert (report.host, report.snapshot_uid, report.image_name) == (
        "h1",
        SNAPSHOT_UID,
        "web-1-img",
    )
    assert (report.vm_state, report.power_state) == ("active", "running")
    assert report.started_at <= report.finished_at
    assert list(work.iterdir()) == []  # the copy is gone


def test_a_host_without_the_token_reports_an_error_and_stores_nothing(tmp_path, images):
    base, root = images
    compute, driver, caster, work = _parts(tmp_path, token=None)
    driver.domains[UUID] = PowerState.SHUTDOWN

    compute.handle(_message(f"{base}snapshots/snap-1.qcow2"), None)

    report = _finished(caster)
    assert report.result == "Error"
    assert "no image upload token" in (report.message or "")
    assert (report.url, report.sha256, report.size_bytes) == (None, None, None)
    assert (report.vm_state, report.power_state) == ("stopped", "shutdown")
    assert not (root / "snapshots").exists()
    assert list(work.iterdir()) == []


def test_an_upload_the_server_refuses_is_the_reported_error(tmp_path, images):
    base, root = images
    (root / "taken.qcow2").write_bytes(b"someone else's")
    compute, driver, caster, _ = _parts(tmp_path)
    driver.domains[UUID] = PowerState.PAUSED

    compute.handle(_message(f"{base}taken.qcow2"), None)

    report = _finished(caster)
    assert report.result == "Error"
    assert "HTTP 409" in (report.message or "")
    assert (root / "taken.qcow2").read_bytes() == b"someone else's"
    assert report.vm_state == "paused"


def test_an_instance_this_host_does_not_have_is_an_error_with_no_state(tmp_path, images):
    base, _ = images
    compute, _, caster, _ = _parts(tmp_path)

    compute.handle(_message(f"{base}snapshots/x.qcow2"), None)

    report = _finished(caster)
    assert report.result == "Error"
    assert "not on this host" in (report.message or "")
    assert (report.vm_state, report.power_state) == ("error", "nostate")


def test_the_token_is_read_from_its_file_at_each_upload(tmp_path):
    token_file = tmp_path / "token"
    settings = snapshots.SnapshotSettings.from_env(
        {"KUBENOVA_IMAGE_UPLOAD_TOKEN_FILE": str(token_file), "KUBENOVA_SNAPSHOT_PATH": "/w"}
    )
    assert settings.work_path == "/w"
    with pytest.raises(exceptions.SnapshotFailed, match="cannot read the image upload token"):
        settings.token()
    token_file.write_text("from-file\n")  # written after the agent started
    assert settings.token() == "from-file"
    direct = snapshots.SnapshotSettings.from_env(
        {"KUBENOVA_IMAGE_UPLOAD_TOKEN": "direct", "KUBENOVA_IMAGE_UPLOAD_TOKEN_FILE": "/none"}
    )
    assert direct.token() == "direct"
    with pytest.raises(exceptions.SnapshotFailed, match="no image upload token"):
        snapshots.SnapshotSettings.from_env({}).token()
