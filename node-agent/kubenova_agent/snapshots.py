"""Snapshots on this host (contract 1.4, ``snapshot_instance``): the driver writes a
standalone qcow2 of the instance's root disk, this module measures it (sha256, size), uploads
it to the image server with HTTP PUT, and reports the result with one ``snapshot_finished``.

The image server accepts a PUT only with the bearer token the hosts share with it
(``KUBENOVA_IMAGE_UPLOAD_TOKEN``, or the file ``KUBENOVA_IMAGE_UPLOAD_TOKEN_FILE`` names),
checks the file against the sha256 stated in ``X-Image-Sha256`` and never replaces a file it
has; see ``kubenova.images.server``. The copy is made in ``KUBENOVA_SNAPSHOT_PATH``
(``/var/lib/kubenova/snapshots``) and removed once uploaded, whatever happened.

Whatever fails (no such instance, a crashed guest, qemu-img, the upload) is reported as the
snapshot's ``Error`` rather than raised, as ``ComputeManager.run_operation`` does: the request
has had its answer. A message delivered again makes and uploads another copy; the image server
refuses it (the file exists), so the Image stays the first copy's.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import os
import pathlib
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Literal

from kubenova.rpc import conductor_rpcapi, payloads
from kubenova_agent import exceptions
from kubenova_agent.operations import vm_state
from kubenova_agent.virt import driver as virt_driver
from kubenova_agent.virt.power_state import PowerState

LOG = logging.getLogger(__name__)

#: The compute method this module handles.
METHOD = "snapshot_instance"
#: The header in which an uploader states the file's sha256 (hex).
SHA256_HEADER = "X-Image-Sha256"
DEFAULT_WORK_PATH = "/var/lib/kubenova/snapshots"
#: Seconds an upload may stall (between two blocks) before it is given up.
UPLOAD_TIMEOUT_S = 300.0
_MESSAGE_MAX = 4096
_BLOCK = 1 << 20


@dataclasses.dataclass(frozen=True)
class SnapshotSettings:
    """Where copies are made, and the token uploads carry: ``upload_token`` itself, or the file
    ``upload_token_file`` names, read at each upload (so a token written or changed after the
    agent started is used)."""

    work_path: str = DEFAULT_WORK_PATH
    upload_token: str | None = None
    upload_token_file: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SnapshotSettings:
        env = os.environ if environ is None else environ
        return cls(
            work_path=env.get("KUBENOVA_SNAPSHOT_PATH") or DEFAULT_WORK_PATH,
            upload_token=env.get("KUBENOVA_IMAGE_UPLOAD_TOKEN") or None,
            upload_token_file=env.get("KUBENOVA_IMAGE_UPLOAD_TOKEN_FILE") or None,
        )

    def token(self) -> str:
        """The upload token; raises :class:`~kubenova_agent.exceptions.SnapshotFailed` saying
        why there is none."""
        if self.upload_token:
            return self.upload_token
        if not self.upload_token_file:
            raise exceptions.SnapshotFailed(
                "this host has no image upload token (KUBENOVA_IMAGE_UPLOAD_TOKEN or "
                "KUBENOVA_IMAGE_UPLOAD_TOKEN_FILE)"
            )
        try:
            token = pathlib.Path(self.upload_token_file).read_text().strip()
        except OSError as exc:
            raise exceptions.SnapshotFailed(
                f"cannot read the image upload token from {self.upload_token_file}: {exc}"
            ) from exc
        if not token:
            raise exceptions.SnapshotFailed(
                f"the image upload token file {self.upload_token_file} is empty"
            )
        return token


def file_digest(path: pathlib.Path) -> tuple[str, int]:
    """(hex sha256, size in bytes) of a file."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as source:
        while block := source.read(_BLOCK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def upload(path: pathlib.Path, url: str, sha256: str, size: int, token: str) -> None:
    """PUT the file at ``path`` to ``url``; raises
    :class:`~kubenova_agent.exceptions.SnapshotFailed` with the server's answer when it is not
    stored."""
    with path.open("rb") as body:
        request = urllib.request.Request(
            url,
            data=body,
            method="PUT",
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Length": str(size),
                "Content-Type": "application/octet-stream",
                SHA256_HEADER: sha256,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=UPLOAD_TIMEOUT_S) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            answer = exc.read().decode(errors="replace").strip()[:512]
            raise exceptions.SnapshotFailed(
                f"the image server refused the upload to {url}: HTTP {exc.code} {answer}"
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise exceptions.SnapshotFailed(f"cannot upload to {url}: {exc}") from exc


@dataclasses.dataclass(frozen=True)
class Uploaded:
    url: str
    sha256: str
    size_bytes: int


class Snapshotter:
    """Makes, uploads and reports one snapshot at a time per call."""

    def __init__(
        self,
        host: str,
        driver: virt_driver.ComputeDriver,
        conductor: conductor_rpcapi.ConductorAPI,
        settings: SnapshotSettings,
    ) -> None:
        self.host = host
        self.driver = driver
        self.conductor = conductor
        self.settings = settings

    def run(self, args: payloads.SnapshotInstance, request_id: str) -> None:
        """Make the snapshot ``args`` asks for and report it (never raises for its failure)."""
        uuid = args.instance_uuid
        extra = {"instance_uuid": uuid}
        started_at = datetime.datetime.now(datetime.UTC)
        result: Literal["Success", "Error"] = "Success"
        note: str | None = None
        uploaded: Uploaded | None = None
        try:
            uploaded = self._make_and_upload(args)
        except (exceptions.AgentError, ValueError) as exc:
            result, note = "Error", str(exc)
            LOG.warning("instance %s: snapshot failed: %s", uuid, exc, extra=extra)
        except Exception as exc:
            result, note = "Error", f"{type(exc).__name__}: {exc}"
            LOG.exception("instance %s: snapshot failed", uuid, extra=extra)
        finished_at = datetime.datetime.now(datetime.UTC)
        try:
            state: virt_driver.InstanceState | None = self.driver.get_instance_state(uuid)
        except Exception:
            state = None
        self.conductor.snapshot_finished(
            payloads.SnapshotFinished(
                instance_uuid=uuid,
                host=self.host,
                snapshot_name=args.snapshot_name,
                snapshot_uid=args.snapshot_uid,
                image_name=args.image_name,
                result=result,
                message=note[:_MESSAGE_MAX] if note else None,
                url=uploaded.url if uploaded else None,
                sha256=uploaded.sha256 if uploaded else None,
                size_bytes=uploaded.size_bytes if uploaded else None,
                started_at=started_at,
                finished_at=finished_at,
                vm_state=vm_state(state) if state else "error",
                power_state=(state.power_state if state else PowerState.NOSTATE).value,
                addresses=state.addresses if state else (),
            ),
            request_id,
        )
        LOG.info(
            "instance %s: snapshot %s: %s%s",
            uuid,
            args.snapshot_name,
            result,
            f" ({note})" if note else f" ({uploaded.size_bytes} bytes)" if uploaded else "",
            extra=extra,
        )

    def _make_and_upload(self, args: payloads.SnapshotInstance) -> Uploaded:
        work = pathlib.Path(self.settings.work_path)
        try:
            work.mkdir(mode=0o700, parents=True, exist_ok=True)
            directory = pathlib.Path(tempfile.mkdtemp(prefix="snapshot-", dir=work))
        except OSError as exc:
            raise exceptions.SnapshotFailed(f"cannot make room for the copy: {exc}") from exc
        try:
            token = self.settings.token()  # before the copy: without it there is no upload
            target = directory / "disk.qcow2"
            self.driver.snapshot(args.instance_uuid, str(target))
            sha256, size = file_digest(target)
            upload(target, args.upload_url, sha256, size, token)
            return Uploaded(url=args.upload_url, sha256=sha256, size_bytes=size)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
