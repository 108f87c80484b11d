"""The apiserver calls of InstanceMigrations: their status, and the Instances they move.

Apart from :class:`~kubenova.k8s.client.KubeClient` so that the conductor's migration road can
be given a fake of exactly what it uses (see ``kubenova.conductor.instance_migrations``).
"""

from __future__ import annotations

from typing import Any, cast

from kubernetes import client as k8s_client
from kubernetes.client import exceptions as k8s_exceptions

from kubenova.k8s import resources

INSTANCE_MIGRATIONS = "instancemigrations"


class MigrationObjectsClient:
    """Reads Instances, writes InstanceMigrations' status."""

    def __init__(self, api_client: k8s_client.ApiClient | None = None) -> None:
        self._custom = k8s_client.CustomObjectsApi(api_client or k8s_client.ApiClient())

    def get_instance(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found = self._custom.get_namespaced_custom_object(
                resources.GROUP, resources.VERSION, namespace, resources.INSTANCES, name
            )
        except k8s_exceptions.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return cast(dict[str, Any], found)

    def patch_migration_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool:
        """Merge ``status`` into the InstanceMigration's status; False when it is gone."""
        try:
            self._custom.patch_namespaced_custom_object_status(
                resources.GROUP,
                resources.VERSION,
                namespace,
                INSTANCE_MIGRATIONS,
                name,
                {"status": status},
            )
        except k8s_exceptions.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True
