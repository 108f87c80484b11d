"""The image server: serves a directory of images over HTTP to the hosts' image caches, and
takes new images (snapshots) from the hosts.

- ``GET`` and ``HEAD`` of a file, with single byte ranges (``Range: bytes=0-1023``,
  ``bytes=1024-``, ``bytes=-512``: ``206 Partial Content``; a range past the end is ``416``).
  Several ranges in one request are answered with the whole file, as RFC 9110 allows.
  Directories are not listed; names beginning with a dot are never served.
- ``PUT`` of a new file, for whoever holds the upload token (``Authorization: Bearer``; no
  token configured, no uploads). The uploader states the file's sha256 in ``X-Image-Sha256``
  and its length in ``Content-Length``; the file is written beside its final name under a
  hidden one, checked against both, flushed to disk, and only then linked to its name, which
  fails if that name exists: a file, once there, is never replaced or seen half-written.
  ``201`` when stored; ``409`` when the name is taken; ``400`` when the digest or length do not
  match; ``401`` without the token; ``507`` where nothing can be written.

Names are one to three path segments of letters, digits, ``.``, ``_`` and ``-`` (not starting
with a dot), e.g. ``snapshots/default-web-1-snap-<uid>.qcow2``.

Run it with ``kubenova-image-server --directory DIR [--bind ADDR] [--port N]
[--token-file PATH]`` (the token may also come from ``KUBENOVA_IMAGE_UPLOAD_TOKEN``).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.server
import json
import logging
import os
import pathlib
import re
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

LOG = logging.getLogger(__name__)

SHA256_HEADER = "X-Image-Sha256"
#: The largest upload accepted by default (a disk of a large flavor, flattened).
DEFAULT_MAX_UPLOAD_BYTES = 256 << 30
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_MAX_SEGMENTS = 3
_SHA256 = re.compile(r"[0-9a-f]{64}")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_BLOCK = 1 << 20


def safe_path(root: pathlib.Path, url_path: str) -> pathlib.Path | None:
    """The file ``url_path`` names under ``root``; None for a name this server never serves
    or stores (a dot file, ``..``, too deep, odd characters)."""
    path = url_path.split("?", 1)[0].split("#", 1)[0]
    segments = path.strip("/").split("/")
    if not segments or len(segments) > _MAX_SEGMENTS:
        return None
    if not all(_SEGMENT.fullmatch(segment) for segment in segments):
        return None
    return root.joinpath(*segments)


class RangeNotSatisfiable(ValueError):
    """The range starts past the end of the file, or asks for its last 0 bytes."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte a ``Range`` header asks for; None for the whole file
    (no header, one this server does not honour, several ranges). Raises
    :class:`RangeNotSatisfiable`."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - suffix), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # not a valid range: ignored, as RFC 9110 says
    if start >= size:
        raise RangeNotSatisfiable(header)
    return start, min(end, size - 1)


class ImageServer(http.server.ThreadingHTTPServer):
    """The HTTP server, with what its handlers need."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        directory: pathlib.Path,
        *,
        token: str | None,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    ) -> None:
        super().__init__(address, ImageRequestHandler)
        self.directory = directory.resolve()
        self.token = token
        self.max_upload_bytes = max_upload_bytes


class ImageRequestHandler(http.server.BaseHTTPRequestHandler):
    """GET, HEAD and PUT of image files."""

    server: ImageServer
    protocol_version = "HTTP/1.1"
    server_version = "kubenova-image-server"

    def log_message(self, format: str, *args: Any) -> None:
        LOG.info("%s %s", self.address_string(), format % args)

    # -- reading ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _serve(self, *, body: bool) -> None:
        path = safe_path(self.server.directory, self.path)
        if path is None or not path.is_file():
            self._answer(404, "no such image")
            return
        with path.open("rb") as source:
            size = os.fstat(source.fileno()).st_size
            try:
                wanted = byte_range(self.headers.get("Range"), size)
            except RangeNotSatisfiable:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if wanted is None:
                first, last, status = 0, size - 1, 200
            else:
                first, last = wanted
                status = 206
            length = last - first + 1 if size else 0
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(length))
            if status == 206:
                self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
            self.end_headers()
            if not body:
                return
            source.seek(first)
            remaining = length
            while remaining > 0:
                block = source.read(min(_BLOCK, remaining))
                if not block:
                    break
                self.wfile.write(block)
                remaining -= len(block)

    # -- storing ---------------------------------------------------------------------------

    def do_PUT(self) -> None:
        refusal = self._refuse_put()
        if refusal is not None:
            self.close_connection = True
            self._answer(*refusal)
            return
        path = safe_path(self.server.directory, self.path)
        assert path is not None
        status, message, fields = self._store(
            path,
            int(self.headers["Content-Length"]),
            self.headers[SHA256_HEADER].strip().lower(),
        )
        if status >= 400:
            self.close_connection = True
        else:
            LOG.info("stored %s (%s bytes, sha256 %s)", path, fields["size"], fields["sha256"])
        # Answered once nothing of the upload is left but the file itself.
        self._answer(status, message, **fields)

    def _store(
        self, path: pathlib.Path, length: int, stated: str
    ) -> tuple[int, str, dict[str, Any]]:
        """Read the body into a hidden file beside ``path``, check it, link it to ``path``;
        the answer's status, message and fields."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, staging = tempfile.mkstemp(prefix=".upload-", dir=path.parent)
        except OSError as exc:
            # A read-only place (the chart serves its baked images read-only; uploads go to
            # the volume under snapshots/), or no room.
            return 507, f"cannot store {self.path}: {exc.strerror}", {}
        try:
            digest = hashlib.sha256()
            received = 0
            with os.fdopen(fd, "wb") as out:
                while received < length:
                    block = self.rfile.read(min(_BLOCK, length - received))
                    if not block:
                        break
                    digest.update(block)
                    out.write(block)
                    received += len(block)
                out.flush()
                os.fsync(out.fileno())
            if received != length:
                return 400, f"received {received} of {length} bytes", {}
            actual = digest.hexdigest()
            if not hmac.compare_digest(actual, stated):
                return 400, f"sha256 mismatch: stated {stated}, received {actual}", {}
            os.chmod(staging, 0o644)
            try:
                os.link(staging, path)
            except FileExistsError:
                return 409, f"{self.path} exists", {}
            _fsync_directory(path.parent)
        except OSError as exc:
            return 507, f"cannot store {self.path}: {exc.strerror}", {}
        finally:
            pathlib.Path(staging).unlink(missing_ok=True)
        return 201, "stored", {"sha256": actual, "size": length}

    def _refuse_put(self) -> tuple[int, str] | None:
        """Why a PUT is refused before its body is read; None to accept it."""
        token = self.server.token
        if token is None:
            return 403, "uploads are off: this server has no upload token"
        given = self.headers.get("Authorization") or ""
        if not given.startswith("Bearer ") or not hmac.compare_digest(
            given.removeprefix("Bearer ").strip().encode(), token.encode()
        ):
            return 401, "a valid bearer token is needed to upload"
        path = safe_path(self.server.directory, self.path)
        if path is None:
            return 400, f"{self.path} is not a name this server stores"
        if path.exists():
            return 409, f"{self.path} exists"
        if not _SHA256.fullmatch((self.headers.get(SHA256_HEADER) or "").strip().lower()):
            return 400, f"{SHA256_HEADER} must state the file's sha256 (64 hex digits)"
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            return 411, "Content-Length is needed"
        if int(length) > self.server.max_upload_bytes:
            return 413, f"larger than {self.server.max_upload_bytes} bytes"
        return None

    def _answer(self, status: int, message: str, **fields: Any) -> None:
        body = json.dumps({"message": message, **fields}).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _fsync_directory(directory: pathlib.Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_partial_uploads(directory: pathlib.Path) -> list[pathlib.Path]:
    """Remove what uploads cut short by a stop of the server left (hidden ``.upload-*`` files,
    never served); return them. What cannot be removed (a read-only place) is left."""
    removed = []
    for depth in range(_MAX_SEGMENTS):
        for path in directory.glob("/".join(["*"] * depth + [".upload-*"])):
            try:
                path.unlink()
            except OSError:
                continue
            removed.append(path)
    return removed


def read_token(token_file: str | None) -> str | None:
    """The upload token: the file's content, else ``KUBENOVA_IMAGE_UPLOAD_TOKEN``; None when
    there is neither (uploads are off)."""
    if token_file:
        token = pathlib.Path(token_file).read_text().strip()
        if not token:
            raise ValueError(f"{token_file} is empty")
        return token
    return os.environ.get("KUBENOVA_IMAGE_UPLOAD_TOKEN") or None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kubenova-image-server",
        description="Serve images (GET with byte ranges) and take new ones (PUT with a token).",
    )
    parser.add_argument("--directory", required=True, help="the directory of images")
    parser.add_argument("--bind", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--port", type=int, default=8089, help="the port (default 8089)")
    parser.add_argument(
        "--token-file",
        default=os.environ.get("KUBENOVA_IMAGE_UPLOAD_TOKEN_FILE"),
        help="the file holding the upload token (default $KUBENOVA_IMAGE_UPLOAD_TOKEN_FILE, "
        "else $KUBENOVA_IMAGE_UPLOAD_TOKEN; without either, uploads are off)",
    )
    parser.add_argument(
        "--max-upload-bytes", type=int, default=DEFAULT_MAX_UPLOAD_BYTES, metavar="N"
    )
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    directory = pathlib.Path(options.directory)
    if not directory.is_dir():
        print(f"kubenova-image-server: {directory} is not a directory", file=sys.stderr)
        return 2
    try:
        token = read_token(options.token_file)
    except (OSError, ValueError) as exc:
        print(f"kubenova-image-server: cannot read the upload token: {exc}", file=sys.stderr)
        return 2
    for path in remove_partial_uploads(directory):
        LOG.info("removed %s, left by an upload cut short", path)
    server = ImageServer(
        (options.bind, options.port),
        directory,
        token=token,
        max_upload_bytes=options.max_upload_bytes,
    )
    LOG.info(
        "serving %s on %s:%d (uploads %s)",
        directory,
        options.bind,
        server.server_address[1],
        "on" if token else "off",
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
