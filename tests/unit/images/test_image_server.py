"""The image server over a real socket: byte ranges on GET, and a PUT stored only with the
token, the stated sha256 and length, and never over an existing file."""

from __future__ import annotations

import hashlib
import http.client
import json
import pathlib
import threading
from collections.abc import Iterator

import pytest

from kubenova.images import server

TOKEN = "s3cret-token"
CONTENT = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture
def served(tmp_path: pathlib.Path) -> Iterator[tuple[server.ImageServer, pathlib.Path]]:
    (tmp_path / "tiny.qcow2").write_bytes(CONTENT)
    (tmp_path / ".hidden").write_bytes(b"private")
    httpd = server.ImageServer(("127.0.0.1", 0), tmp_path, token=TOKEN, max_upload_bytes=4096)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield httpd, tmp_path
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _request(
    httpd: server.ImageServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", httpd.server_address[1], timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _put(httpd, path, body, *, token=TOKEN, digest=None):
    headers = {server.SHA256_HEADER: digest or hashlib.sha256(body).hexdigest()}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return _request(httpd, "PUT", path, body, headers)


def test_get_serves_the_whole_file_and_says_it_takes_ranges(served):
    httpd, _ = served
    status, headers, body = _request(httpd, "GET", "/tiny.qcow2")
    assert (status, body) == (200, CONTENT)
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Length"] == str(len(CONTENT))


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=10000-", 10000, 10239),
        ("bytes=-40", 10200, 10239),
        ("bytes=10200-99999", 10200, 10239),
    ],
)
def test_get_with_a_range_serves_that_part(served, header, first, last):
    httpd, _ = served
    status, headers, body = _request(httpd, "GET", "/tiny.qcow2", headers={"Range": header})
    assert status == 206
    assert body == CONTENT[first : last + 1]
    assert headers["Content-Range"] == f"bytes {first}-{last}/{len(CONTENT)}"


def test_a_range_past_the_end_is_not_satisfiable(served):
    httpd, _ = served
    status, headers, _ = _request(httpd, "GET", "/tiny.qcow2", headers={"Range": "bytes=99999-"})
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{len(CONTENT)}"


def test_several_ranges_get_the_whole_file(served):
    httpd, _ = served
    status, _, body = _request(httpd, "GET", "/tiny.qcow2", headers={"Range": "bytes=0-1,5-6"})
    assert (status, body) == (200, CONTENT)


def test_head_sends_the_headers_alone(served):
    httpd, _ = served
    status, headers, body = _request(httpd, "HEAD", "/tiny.qcow2")
    assert (status, body) == (200, b"")
    assert headers["Content-Length"] == str(len(CONTENT))


@pytest.mark.parametrize("path", ["/.hidden", "/../etc/passwd", "/", "/a/b/c/d", "/nope"])
def test_dot_files_escapes_directories_and_missing_files_are_not_found(served, path):
    httpd, _ = served
    status, _, _ = _request(httpd, "GET", path)
    assert status == 404


def test_put_with_the_token_and_the_right_digest_stores_the_file(served):
    httpd, root = served
    body = b"a snapshot" * 100
    status, _, answer = _put(httpd, "/snapshots/snap-1.qcow2", body)
    assert status == 201, answer
    assert json.loads(answer)["sha256"] == hashlib.sha256(body).hexdigest()
    assert (root / "snapshots" / "snap-1.qcow2").read_bytes() == body
    assert _request(httpd, "GET", "/snapshots/snap-1.qcow2")[2] == body
    # Nothing of the upload is left under another name.
    assert [p.name for p in (root / "snapshots").iterdir()] == ["snap-1.qcow2"]


def test_put_never_replaces_a_file(served):
    httpd, root = served
    status, _, answer = _put(httpd, "/tiny.qcow2", b"other")
    assert status == 409, answer
    assert (root / "tiny.qcow2").read_bytes() == CONTENT


@pytest.mark.parametrize(("token", "status"), [(None, 401), ("wrong", 401), (TOKEN + "x", 401)])
def test_put_without_the_token_is_refused(served, token, status):
    httpd, root = served
    assert _put(httpd, "/new.qcow2", b"x", token=token)[0] == status
    assert not (root / "new.qcow2").exists()


def test_put_whose_content_differs_from_the_stated_digest_is_refused(served):
    httpd, root = served
    status, _, answer = _put(httpd, "/new.qcow2", b"what was sent", digest="0" * 64)
    assert status == 400
    assert b"sha256 mismatch" in answer
    assert not (root / "new.qcow2").exists()
    assert list(root.glob(".upload-*")) == []


def test_put_larger_than_allowed_is_refused_before_it_is_read(served):
    httpd, root = served
    assert _put(httpd, "/big.qcow2", b"x" * 5000)[0] == 413
    assert not (root / "big.qcow2").exists()


@pytest.mark.parametrize("path", ["/.sneaky", "/a/../b", "/snap shot", "/a/b/c/d"])
def test_put_to_a_name_the_server_would_not_serve_is_refused(served, path):
    httpd, _ = served
    assert _put(httpd, path.replace(" ", "%20"), b"x")[0] == 400


def test_without_a_token_uploads_are_off(tmp_path):
    httpd = server.ImageServer(("127.0.0.1", 0), tmp_path, token=None)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        assert _put(httpd, "/new.qcow2", b"x", token="anything")[0] == 403
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_byte_range_parsing():
    assert server.byte_range(None, 100) is None
    assert server.byte_range("bytes=5-", 100) == (5, 99)
    assert server.byte_range("bytes=-5", 100) == (95, 99)
    assert server.byte_range("bytes=7-3", 100) is None
    assert server.byte_range("items=0-1", 100) is None
    with pytest.raises(server.RangeNotSatisfiable):
        server.byte_range("bytes=100-", 100)
    with pytest.raises(server.RangeNotSatisfiable):
        server.byte_range("bytes=-0", 100)


def test_put_where_nothing_can_be_written_says_so(served):
    httpd, root = served
    # Under a file: no directory can be made there (as on a read-only filesystem).
    status, _, answer = _put(httpd, "/tiny.qcow2/new.qcow2", b"x")
    assert status == 507
    assert b"cannot store" in answer
    assert (root / "tiny.qcow2").read_bytes() == CONTENT


def test_what_uploads_cut_short_left_is_removed_at_start(tmp_path):
    (tmp_path / "snapshots" / "ns").mkdir(parents=True)
    left = [tmp_path / ".upload-a", tmp_path / "snapshots" / "ns" / ".upload-b"]
    for path in left:
        path.write_bytes(b"half")
    kept = tmp_path / "snapshots" / "ns" / "done.qcow2"
    kept.write_bytes(b"whole")

    assert sorted(server.remove_partial_uploads(tmp_path)) == sorted(left)
    assert not any(path.exists() for path in left)
    assert kept.read_bytes() == b"whole"
