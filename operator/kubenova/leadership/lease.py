"""The Lease the operator replicas compete for, and its reads and writes.

:class:`LeaseAPI` is the whole boundary: get, create, and a replace guarded by the
``resourceVersion`` last read, which the apiserver refuses with 409 when anyone wrote the
Lease since (optimistic concurrency: two candidates never both win the same round).
:class:`KubeLeases` is that boundary on ``coordination.k8s.io/v1``.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, Protocol

from kubernetes import client as k8s_client
from kubernetes.client import exceptions as k8s_exceptions

# The generated client refuses a timeout of zero; a deadline that has just run out still
# gets one short try.
_MIN_TIMEOUT_S = 0.1


@dataclasses.dataclass(frozen=True)
class LeaseRecord:
    """What a Lease says: who holds it, for how long, since when. ``holder`` "" is free."""

    holder: str
    duration_s: int
    acquire_time: datetime.datetime | None
    renew_time: datetime.datetime | None
    transitions: int


@dataclasses.dataclass(frozen=True)
class Lease:
    record: LeaseRecord
    resource_version: str


class LeaseConflict(Exception):
    """Someone else created or wrote the Lease first (HTTP 409): this round is lost."""


class LeaseAPI(Protocol):
    """One named Lease. Every call takes a timeout, so no call outlives a renew deadline."""

    def get(self, *, timeout: float) -> Lease | None:
        """The Lease, or None when there is none yet."""

    def create(self, record: LeaseRecord, *, timeout: float) -> Lease:
        """Create the Lease; :class:`LeaseConflict` if it exists already."""

    def replace(self, record: LeaseRecord, resource_version: str, *, timeout: float) -> Lease:
        """Write ``record`` if the Lease is still at ``resource_version``, else
        :class:`LeaseConflict`. A Lease deleted meanwhile is created again (the apiserver
        creates Leases on update); one created anew by someone else is a conflict."""


class KubeLeases:
    """:class:`LeaseAPI` on the apiserver (verbs get, create, update on ``leases``)."""

    def __init__(
        self, name: str, namespace: str, api: k8s_client.CoordinationV1Api | None = None
    ) -> None:
        self.name = name
        self.namespace = namespace
        self._api = api or k8s_client.CoordinationV1Api()

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    def get(self, *, timeout: float) -> Lease | None:
        try:
            lease = self._api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=max(timeout, _MIN_TIMEOUT_S)
            )
        except k8s_exceptions.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return _from_api(lease)

    def create(self, record: LeaseRecord, *, timeout: float) -> Lease:
        body = self._body(record, resource_version=None)
        try:
            lease = self._api.create_namespaced_lease(
                self.namespace, body, _request_timeout=max(timeout, _MIN_TIMEOUT_S)
            )
        except k8s_exceptions.ApiException as exc:
            if exc.status == 409:
                raise LeaseConflict(f"lease {self} was created by another candidate") from exc
            raise
        return _from_api(lease)

    def replace(self, record: LeaseRecord, resource_version: str, *, timeout: float) -> Lease:
        body = self._body(record, resource_version=resource_version)
        try:
            lease = self._api.replace_namespaced_lease(
                self.name, self.namespace, body, _request_timeout=max(timeout, _MIN_TIMEOUT_S)
            )
        except k8s_exceptions.ApiException as exc:
            if exc.status == 409:
                raise LeaseConflict(f"lease {self} changed since it was read") from exc
            raise
        return _from_api(lease)

    def _body(self, record: LeaseRecord, resource_version: str | None) -> Any:
        return k8s_client.V1Lease(
            metadata=k8s_client.V1ObjectMeta(
                name=self.name, namespace=self.namespace, resource_version=resource_version
            ),
            spec=k8s_client.V1LeaseSpec(
                holder_identity=record.holder,
                lease_duration_seconds=record.duration_s,
                acquire_time=_micro_time(record.acquire_time),
                renew_time=_micro_time(record.renew_time),
                lease_transitions=record.transitions,
            ),
        )


def _micro_time(value: datetime.datetime | None) -> datetime.datetime | None:
    """The client writes times with ``isoformat()``, which drops a fraction of zero, and the
    apiserver's MicroTime wants exactly six digits: a whole second is nudged by 1 µs."""
    if value is None or value.microsecond:
        return value
    return value.replace(microsecond=1)


def _from_api(lease: Any) -> Lease:
    spec = lease.spec
    return Lease(
        record=LeaseRecord(
            holder=(spec.holder_identity or "") if spec else "",
            duration_s=int(spec.lease_duration_seconds or 0) if spec else 0,
            acquire_time=spec.acquire_time if spec else None,
            renew_time=spec.renew_time if spec else None,
            transitions=int(spec.lease_transitions or 0) if spec else 0,
        ),
        resource_version=str(lease.metadata.resource_version),
    )
