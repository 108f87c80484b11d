"""Where snapshots go: the image server's URL and the upload URL made from it."""

import pathlib

import pytest

from kubenova.conductor import snapshot_requests
from kubenova.images import server


def _request(**overrides):
    values = {
        "namespace": "prod",
        "name": "web-img",
        "uid": "5a5a5a5a-0000-4000-8000-000000000001",
        "generation": 1,
        "instance": "web-1",
        "image_name": "web-img",
    }
    values.update(overrides)
    return snapshot_requests.SnapshotRequest(**values)


def test_the_settings_default_to_the_local_image_server():
    settings = snapshot_requests.SnapshotSettings.from_env({})
    assert settings.image_server_url == "http://127.0.0.1:8089/"
    assert settings.timeout_s == 1800.0


def test_the_settings_are_read_from_the_environment():
    settings = snapshot_requests.SnapshotSettings.from_env(
        {
            "KUBENOVA_IMAGE_SERVER_URL": "http://images.kubenova.svc:8080",
            "KUBENOVA_SNAPSHOT_TIMEOUT": "600",
        }
    )
    assert (settings.image_server_url, settings.timeout_s) == (
        "http://images.kubenova.svc:8080",
        600.0,
    )


@pytest.mark.parametrize(
    "environ",
    [{"KUBENOVA_IMAGE_SERVER_URL": "ftp://x/"}, {"KUBENOVA_SNAPSHOT_TIMEOUT": "0"}],
)
def test_bad_settings_are_refused(environ):
    with pytest.raises(ValueError, match="KUBENOVA_"):
        snapshot_requests.SnapshotSettings.from_env(environ)


@pytest.mark.parametrize("base", ["http://images:8080", "http://images:8080/"])
def test_each_snapshot_uploads_to_a_name_of_its_own_under_snapshots(base):
    assert snapshot_requests.upload_url(base, _request()) == (
        "http://images:8080/snapshots/prod/web-img-5a5a5a5a-0000-4000-8000-000000000001.qcow2"
    )
    other = snapshot_requests.upload_url(base, _request(uid="5a5a5a5a-0000-4000-8000-000000000002"))
    assert other != snapshot_requests.upload_url(base, _request())


def test_the_longest_names_still_make_a_name_the_image_server_takes():
    url = snapshot_requests.upload_url(
        "http://images/", _request(namespace="n" * 63, name="a" * 253)
    )
    assert server.safe_path(pathlib.Path("/srv"), url.removeprefix("http://images")) is not None
