"""The image cache against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import http.server
import os
import socket
import threading
import time

import pytest

from kubenova_agent import exceptions, imagecache

IMAGE = os.urandom(300_000) + b"kubenova"
DIGEST = hashlib.sha256(IMAGE).hexdigest()


@dataclasses.dataclass
class Route:
    body: bytes = b""
    status: int = 200
    delay: float = 0.0
    # Announce more bytes than are sent, then close: a download cut short.
    truncate: bool = False


class ImageServer:
    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.hits: collections.Counter[str] = collections.Counter()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits[self.path] += 1
                route = server.routes.get(self.path, Route(status=404))
                time.sleep(route.delay)
                self.send_response(route.status)
                length = len(route.body) + (1000 if route.truncate else 0)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(route.body)
                if route.truncate:
                    self.close_connection = True

            def log_message(self, format, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server():
    image_server = ImageServer()
    image_server.thread.start()
    yield image_server
    image_server.httpd.shutdown()
    image_server.httpd.server_close()
    image_server.thread.join()


@pytest.fixture
def cache(tmp_path):
    return imagecache.ImageCache(tmp_path / "_base", chunk_size=64 * 1024, timeout=10)


def cache_entries(cache):
    return sorted(path.name for path in cache.path.iterdir())


def test_miss_downloads_and_names_the_file_by_its_digest(server, cache):
    server.routes["/tiny.qcow2"] = Route(IMAGE)
    path = cache.fetch(server.url("/tiny.qcow2"), DIGEST)
    assert path == cache.path / DIGEST
    assert path.read_bytes() == IMAGE
    assert server.hits["/tiny.qcow2"] == 1
    assert cache_entries(cache) == [DIGEST, f"{DIGEST}.info"]


def test_cached_image_is_world_readable_and_the_directory_only_traversable(server, cache):
    server.routes["/tiny.qcow2"] = Route(IMAGE)
    path = cache.fetch(server.url("/tiny.qcow2"), DIGEST)
    assert path.stat().st_mode & 0o777 == 0o644
    assert cache.path.stat().st_mode & 0o777 == 0o711


def test_hit_does_not_download_again(server, cache):
    server.routes["/tiny.qcow2"] = Route(IMAGE)
    first = cache.fetch(server.url("/tiny.qcow2"), DIGEST)
    second = cache.fetch(server.url("/tiny.qcow2"), DIGEST)
    assert first == second
    assert server.hits["/tiny.qcow2"] == 1


def test_hit_is_found_whatever_url_serves_the_same_digest(server, cache):
    server.routes["/a"] = Route(IMAGE)
    cache.fetch(server.url("/a"), DIGEST)
    cache.fetch(server.url("/b-not-served"), DIGEST.upper())
    assert server.hits["/b-not-served"] == 0


def test_checksum_mismatch_raises_with_both_digests_and_caches_nothing(server, cache):
    server.routes["/tiny.qcow2"] = Route(IMAGE)
    wrong = "0" * 64
    with pytest.raises(exceptions.ImageChecksumMismatch) as raised:
        cache.fetch(server.url("/tiny.qcow2"), wrong)
    assert raised.value.expected == wrong
    assert raised.value.actual == DIGEST
    assert wrong in str(raised.value)
    assert DIGEST in str(raised.value)
    assert cache_entries(cache) == []


def test_cached_file_that_was_corrupted_is_downloaded_again(server, cache):
    server.routes["/tiny.qcow2"] = Route(IMAGE)
    path = cache.fetch(server.url("/tiny.qcow2"), DIGEST)
    with open(path, "r+b") as handle:
        handle.write(b"garbage")
    again = cache.fetch(server.url("/tiny.qcow2"), DIGEST)
    assert again.read_bytes() == IMAGE
    assert server.hits["/tiny.qcow2"] == 2


def test_cached_file_touched_but_intact_is_rehashed_and_kept(server, cache):
    server.routes["/tiny.qcow2"] = Route(IMAGE)
    path = cache.fetch(server.url("/tiny.qcow2"), DIGEST)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    cache.fetch(server.url("/tiny.qcow2"), DIGEST)
    assert server.hits["/tiny.qcow2"] == 1
    # The sidecar now records the new mtime: the next hit is cheap again.
    assert str(1_000_000_000) in (cache.path / f"{DIGEST}.info").read_text()


def test_partial_download_left_by_a_crash_is_removed(server, cache):
    server.routes["/tiny.qcow2"] = Route(IMAGE)
    cache.ensure_directory()
    leftover = cache.path / f".{DIGEST}.abc123.part"
    leftover.write_bytes(b"half an image")
    cache.fetch(server.url("/tiny.qcow2"), DIGEST)
    assert not leftover.exists()


def test_concurrent_fetches_of_one_image_download_it_once(server, cache):
    server.routes["/tiny.qcow2"] = Route(IMAGE, delay=0.5)
    results, errors = [], []

    def fetch():
        try:
            results.append(cache.fetch(server.url("/tiny.qcow2"), DIGEST))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert results == [cache.path / DIGEST] * 5
    assert server.hits["/tiny.qcow2"] == 1
    assert cache_entries(cache) == [DIGEST, f"{DIGEST}.info"]


def test_concurrent_fetches_of_different_images_do_not_wait_for_each_other(server, cache):
    other = b"another image"
    other_digest = hashlib.sha256(other).hexdigest()
    server.routes["/slow"] = Route(IMAGE, delay=1.0)
    server.routes["/fast"] = Route(other)
    slow = threading.Thread(target=cache.fetch, args=(server.url("/slow"), DIGEST))
    slow.start()
    time.sleep(0.2)
    started = time.monotonic()
    cache.fetch(server.url("/fast"), other_digest)
    assert time.monotonic() - started < 0.7
    slow.join(timeout=30)


@pytest.mark.parametrize(("status", "permanent"), [(404, True), (403, True), (503, False)])
def test_http_errors_say_whether_retrying_can_help(server, cache, status, permanent):
    server.routes["/tiny.qcow2"] = Route(b"nope", status=status)
    with pytest.raises(exceptions.ImageDownloadError) as raised:
        cache.fetch(server.url("/tiny.qcow2"), DIGEST)
    assert raised.value.permanent is permanent
    assert str(status) in str(raised.value)
    assert cache_entries(cache) == []


def test_truncated_download_is_a_transient_error_not_a_mismatch(server, cache):
    server.routes["/tiny.qcow2"] = Route(IMAGE, truncate=True)
    with pytest.raises(exceptions.ImageDownloadError) as raised:
        cache.fetch(server.url("/tiny.qcow2"), DIGEST)
    assert raised.value.permanent is False
    assert cache_entries(cache) == []


def test_unreachable_server_is_a_transient_error(cache):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port now.
    with pytest.raises(exceptions.ImageDownloadError) as raised:
        cache.fetch(f"http://127.0.0.1:{port}/tiny.qcow2", DIGEST)
    assert raised.value.permanent is False


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "/etc/passwd"])
def test_only_http_urls_are_fetched(cache, url):
    with pytest.raises(ValueError, match="http"):
        cache.fetch(url, DIGEST)


def test_digest_must_be_sha256_hex(cache):
    with pytest.raises(ValueError, match="sha256"):
        cache.fetch("http://127.0.0.1/x", "../../etc/passwd")
