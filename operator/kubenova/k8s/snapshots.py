"""The apiserver calls of snapshots: InstanceSnapshots' status, and the Images they make.

Apart from :class:`~kubenova.k8s.client.KubeClient` so that the conductor's snapshot road can
be given a fake of exactly what it uses (see ``kubenova.conductor.snapshots.SnapshotObjects``).
"""

from __future__ import annotations

import logging
from typing import Any, cast

from kubernetes import client as k8s_client
from kubernetes.client import exceptions as k8s_exceptions

from kubenova.k8s import client, resources

LOG = logging.getLogger(__name__)

INSTANCE_SNAPSHOTS = "instancesnapshots"


class SnapshotObjectsClient:
    """Reads Instances and Images, creates Images, writes InstanceSnapshots' status."""

    def __init__(self, api_client: k8s_client.ApiClient | None = None) -> None:
        self._custom = k8s_client.CustomObjectsApi(api_client or k8s_client.ApiClient())

    def get_instance(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._missing_is_none(
            lambda: self._custom.get_namespaced_custom_object(
                resources.GROUP, resources.VERSION, namespace, resources.INSTANCES, name
            )
        )

    def get_image(self, name: str) -> dict[str, Any] | None:
        return self._missing_is_none(
            lambda: self._custom.get_cluster_custom_object(
                resources.GROUP, resources.VERSION, resources.IMAGES, name
            )
        )

    def get_snapshot(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._missing_is_none(
            lambda: self._custom.get_namespaced_custom_object(
                resources.GROUP, resources.VERSION, namespace, INSTANCE_SNAPSHOTS, name
            )
        )

    def list_snapshots(self, namespace: str) -> list[dict[str, Any]]:
        found = self._custom.list_namespaced_custom_object(
            resources.GROUP, resources.VERSION, namespace, INSTANCE_SNAPSHOTS
        )
        return [item for item in cast(dict[str, Any], found).get("items") or [] if item]

    def create_image(self, body: dict[str, Any]) -> bool:
        """Create the Image ``body``; False when one of that name exists already."""
        try:
            self._custom.create_cluster_custom_object(
                resources.GROUP, resources.VERSION, resources.IMAGES, body
            )
        except k8s_exceptions.ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def patch_snapshot_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool:
        """Merge ``status`` into the InstanceSnapshot's status; False when it is gone."""
        try:
            self._custom.patch_namespaced_custom_object_status(
                resources.GROUP,
                resources.VERSION,
                namespace,
                INSTANCE_SNAPSHOTS,
                name,
                {"status": status},
            )
        except k8s_exceptions.ApiException as exc:
            if exc.status == 404:
                LOG.info("instancesnapshot %s/%s is gone; status not written", namespace, name)
                return False
            raise
        return True

    def post_event(
        self, obj: dict[str, Any], *, reason: str, message: str, type_: str = "Warning"
    ) -> None:
        """Record a core/v1 Event about ``obj``; never fails the work."""
        client.create_event(
            k8s_client.CoreV1Api(self._custom.api_client),
            obj,
            reason=reason,
            message=message,
            type_=type_,
        )

    @staticmethod
    def _missing_is_none(call: Any) -> dict[str, Any] | None:
        try:
            return cast(dict[str, Any], call())
        except k8s_exceptions.ApiException as exc:
            if exc.status == 404:
                return None
            raise
