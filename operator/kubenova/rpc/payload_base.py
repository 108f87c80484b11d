"""The payload types every part of the contract shares: the base of all payloads, and the
instance and image a host is given to build or move (see :mod:`kubenova.rpc.payloads`)."""

from __future__ import annotations

from typing import Literal

import pydantic

PowerStateName = Literal["running", "shutdown", "paused", "crashed", "nostate"]
MAX_USER_DATA_BYTES = 64 * 1024


class Payload(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class ImagePayload(Payload):
    name: str
    url: str = pydantic.Field(pattern=r"^https?://")
    sha256: str = pydantic.Field(pattern=r"^[0-9a-f]{64}$")
    disk_format: Literal["qcow2", "raw"]


class InstancePayload(Payload):
    """What a host needs to build one instance."""

    uuid: str = pydantic.Field(min_length=36, max_length=36)
    name: str
    namespace: str
    hostname: str = pydantic.Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    vcpus: int = pydantic.Field(ge=1)
    memory_mib: int = pydantic.Field(ge=1)
    disk_gib: int = pydantic.Field(ge=1)
    image: ImagePayload
    user_data: str | None = pydantic.Field(default=None, max_length=MAX_USER_DATA_BYTES)
    ssh_authorized_keys: tuple[str, ...] = ()
