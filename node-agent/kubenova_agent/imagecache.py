"""The node-agent's image cache: images downloaded once per host and used only once verified.

Layout of the cache directory (``/var/lib/kubenova/_base`` by default)::

    <sha256>            the image, named by its content; read-only, world-readable so that QEMU
                        (running as an unprivileged user) can open it as a backing file
    <sha256>.info       sidecar: JSON with the image's size, mtime and sha256 as verified
    <sha256>.lock       lock file serialising downloads of that image (fcntl.flock), present
                        only while a fetch of that image runs
    .<sha256>.*.part    a download in progress (or left by a crash; removed by the next one)

A download streams into a temporary file in the cache directory while hashing it; only when the
digest matches the expected one is the file renamed into place (atomically, so a reader never
sees half an image), and a mismatch leaves nothing behind.

Re-verifying a cached image: hashing gigabytes on every spawn would be slow, so a hit is checked
against the sidecar instead: the file must still have the size and modification time recorded
when it was hashed. A file that was truncated, replaced or rewritten fails this check and is
hashed again (then kept if it still matches, deleted and downloaded again otherwise). This
guards against accidents and partial writes, not against someone who can write to the cache as
root: such a user owns the host anyway.

Concurrent fetches of one image, from threads or processes, download it once: the first takes
the image's lock and downloads, the others wait for the lock and then find it cached.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import pathlib
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import IO, Any

from kubenova_agent import exceptions

LOG = logging.getLogger(__name__)

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_SCHEMES = frozenset({"http", "https"})


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects only to http(s): an image server must not send us to ftp:// or file://."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).scheme not in _SCHEMES:
            raise urllib.error.HTTPError(
                req.full_url, code, f"redirect to a non-HTTP URL {newurl!r}", headers, fp
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener() -> urllib.request.OpenerDirector:
    # Built by hand rather than with build_opener(), which would also add file:// and ftp://.
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        _HttpOnlyRedirects(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


class ImageCache:
    """A directory of images named by their sha256."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        chunk_size: int = 1 << 20,
        timeout: float = 60.0,
    ) -> None:
        """``timeout`` bounds each network operation (connect, each read), not the download."""
        self.path = pathlib.Path(path)
        self._chunk_size = chunk_size
        self._timeout = timeout
        self._opener = _opener()

    def ensure_directory(self) -> None:
        """Create the cache directory; others may traverse it (QEMU opens images by path)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.path.chmod(0o711)

    def path_for(self, sha256: str) -> pathlib.Path:
        """Where the image with this digest is (or will be) cached."""
        return self.path / _checked_digest(sha256)

    def fetch(self, url: str, sha256: str) -> pathlib.Path:
        """Return the path of the cached image ``sha256``, downloading it from ``url`` first if
        needed.

        Raises :class:`~kubenova_agent.exceptions.ImageChecksumMismatch` (nothing is cached) when
        the bytes at ``url`` have another digest,
        :class:`~kubenova_agent.exceptions.ImageDownloadError` when the download fails, and
        ``OSError`` when the cache cannot be written (a full disk). ``ValueError`` for a URL
        that is not http(s) or a digest that is not 64 hex digits.
        """
        digest = _checked_digest(sha256)
        if urllib.parse.urlsplit(url).scheme not in _SCHEMES:
            raise ValueError(f"image URL must be http:// or https://, got {url!r}")
        self.ensure_directory()
        target = self.path / digest
        with self._locked(digest):
            if self._verified(target, digest):
                LOG.debug("image %s: cache hit", digest)
                return target
            self._remove_partial_downloads(digest)
            self._download(url, digest, target)
            return target

    # -- internals ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, digest: str) -> Iterator[None]:
        # flock locks belong to the open file description, so two threads of one process that
        # each open the lock file exclude each other just as two processes do. The holder
        # removes the lock file when done, so a waiter may wake up holding a lock on a file
        # that is no longer there; it then tries again with the current one.
        lock_path = self.path / f"{digest}.lock"
        while True:
            # Closing the file (leaving the with block) releases the lock.
            with open(lock_path, "a+b") as lock_file:
                fcntl.flock(lock_file, fcntl.LOCK_EX)
                try:
                    current = os.stat(lock_path)
                except FileNotFoundError:
                    continue
                if not os.path.samestat(current, os.fstat(lock_file.fileno())):
                    continue
                try:
                    yield
                finally:
                    lock_path.unlink(missing_ok=True)
                return

    def _sidecar(self, digest: str) -> pathlib.Path:
        return self.path / f"{digest}.info"

    def _verified(self, target: pathlib.Path, digest: str) -> bool:
        try:
            stat = target.stat()
        except FileNotFoundError:
            return False
        try:
            recorded = json.loads(self._sidecar(digest).read_text())
            if (
                recorded.get("sha256") == digest
                and recorded.get("size") == stat.st_size
                and recorded.get("mtime_ns") == stat.st_mtime_ns
            ):
                return True
        except (OSError, ValueError, AttributeError):
            pass  # no sidecar, or an unreadable one: hash the file to decide
        LOG.info("image %s: cached file changed since it was verified; hashing it", digest)
        actual = _hash_file(target, self._chunk_size)
        if actual == digest:
            self._write_sidecar(target, digest)
            return True
        LOG.warning("image %s: cached file has sha256 %s; discarding it", digest, actual)
        target.unlink(missing_ok=True)
        self._sidecar(digest).unlink(missing_ok=True)
        return False

    def _write_sidecar(self, target: pathlib.Path, digest: str) -> None:
        stat = target.stat()
        record = {"sha256": digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        fd, tmp_name = tempfile.mkstemp(dir=self.path, prefix=f".{digest}.", suffix=".info.part")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(record, handle)
            os.replace(tmp_name, self._sidecar(digest))
        except BaseException:
            pathlib.Path(tmp_name).unlink(missing_ok=True)
            raise

    def _remove_partial_downloads(self, digest: str) -> None:
        # We hold the image's lock, so any .part file for it was left by a crashed download.
        for leftover in self.path.glob(f".{digest}.*.part"):
            LOG.info("image %s: removing partial download %s", digest, leftover.name)
            leftover.unlink(missing_ok=True)

    def _download(self, url: str, digest: str, target: pathlib.Path) -> None:
        LOG.info("image %s: downloading %s", digest, url)
        fd, tmp_name = tempfile.mkstemp(dir=self.path, prefix=f".{digest}.", suffix=".part")
        tmp_path = pathlib.Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                actual, size = self._stream(url, out)
                out.flush()
                os.fsync(out.fileno())
            if actual != digest:
                raise exceptions.ImageChecksumMismatch(url, expected=digest, actual=actual)
            tmp_path.chmod(0o644)
            os.replace(tmp_path, target)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise
        _fsync_directory(self.path)
        self._write_sidecar(target, digest)
        LOG.info("image %s: cached, %d bytes", digest, size)

    def _stream(self, url: str, out: IO[bytes]) -> tuple[str, int]:
        hasher = hashlib.sha256()
        size = 0
        request = urllib.request.Request(url, headers={"User-Agent": "kubenova-agent"})
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                expected_length = response.headers.get("Content-Length")
                while chunk := response.read(self._chunk_size):
                    hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the response, and with it the connection
            raise exceptions.ImageDownloadError(
                url, f"HTTP {exc.code} {exc.reason}", permanent=400 <= exc.code < 500
            ) from exc
        except urllib.error.URLError as exc:
            raise exceptions.ImageDownloadError(url, str(exc.reason)) from exc
        except (TimeoutError, ConnectionError) as exc:
            raise exceptions.ImageDownloadError(url, str(exc) or type(exc).__name__) from exc
        # http.client ends a body cut short by the server quietly; without this check a
        # truncated download would pass for a checksum mismatch, a fault of the request.
        if (
            expected_length is not None
            and expected_length.isdigit()
            and size != int(expected_length)
        ):
            raise exceptions.ImageDownloadError(
                url, f"connection closed after {size} of {expected_length} bytes"
            )
        return hasher.hexdigest(), size


def _checked_digest(sha256: str) -> str:
    digest = sha256.lower()
    if not _SHA256_HEX.fullmatch(digest):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return digest


def _hash_file(path: pathlib.Path, chunk_size: int) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            hasher.update(chunk)
    return hasher.hexdigest()


def _fsync_directory(path: pathlib.Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
