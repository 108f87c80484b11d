"""The EC2 API's calls to the kube-apiserver: the Instances, InstanceSnapshots, key pair
Secrets, tag ConfigMap and ResourceQuotas of one namespace, and the cluster's Flavors, Images
and Hypervisors.

The server acts with its own service account; which namespace a request may touch is decided
before any call here (the access key's), and every Instance call names that namespace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from kubernetes import client as k8s_client
from kubernetes.client import exceptions as k8s_exceptions

from kubenova.k8s import resources
from kubenova.k8s.snapshots import INSTANCE_SNAPSHOTS

_MERGE_PATCH = "application/merge-patch+json"
# A request of an EC2 client must not hang on a slow apiserver (connect, read seconds).
_TIMEOUT = (5.0, 30.0)


def _unless_gone(call: Callable[[], Any]) -> Any | None:
    """What ``call`` answers, or None when the object it names is gone (404)."""
    try:
        return call()
    except k8s_exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _only_if(uid: str) -> k8s_client.V1DeleteOptions:
    """A delete of the object of ``uid`` only, not of another made since under its name."""
    return k8s_client.V1DeleteOptions(preconditions=k8s_client.V1Preconditions(uid=uid))


def _gone_or_other_uid(call: Callable[[], Any]) -> bool:
    """Run a delete made with :func:`_only_if`: False when the object is gone (404) or is
    another object of that name now (409), True when it was deleted."""
    try:
        call()
    except k8s_exceptions.ApiException as exc:
        if exc.status in (404, 409):
            return False
        raise
    return True


class Cluster:
    """Typed reads and writes of the objects the EC2 actions work on."""

    def __init__(self, api_client: k8s_client.ApiClient | None = None) -> None:
        self._custom = k8s_client.CustomObjectsApi(api_client)
        self._core = k8s_client.CoreV1Api(api_client)

    def _list_cluster(self, plural: str) -> list[dict[str, Any]]:
        found = self._custom.list_cluster_custom_object(
            resources.GROUP, resources.VERSION, plural, _request_timeout=_TIMEOUT
        )
        return list(cast(dict[str, Any], found).get("items") or [])

    def flavors(self) -> list[dict[str, Any]]:
        return self._list_cluster(resources.FLAVORS)

    def images(self) -> list[dict[str, Any]]:
        return self._list_cluster(resources.IMAGES)

    def hypervisors(self) -> list[dict[str, Any]]:
        return self._list_cluster(resources.HYPERVISORS)

    def flavor(self, name: str) -> dict[str, Any] | None:
        return self._get_cluster(resources.FLAVORS, name)

    def _get_cluster(self, plural: str, name: str) -> dict[str, Any] | None:
        found = _unless_gone(
            lambda: self._custom.get_cluster_custom_object(
                resources.GROUP, resources.VERSION, plural, name, _request_timeout=_TIMEOUT
            )
        )
        return cast(dict[str, Any] | None, found)

    def instances(self, namespace: str, label_selector: str = "") -> list[dict[str, Any]]:
        found = self._custom.list_namespaced_custom_object(
            resources.GROUP,
            resources.VERSION,
            namespace,
            resources.INSTANCES,
            label_selector=label_selector,
            _request_timeout=_TIMEOUT,
        )
        return list(cast(dict[str, Any], found).get("items") or [])

    def instance(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Instance as it is now (its resourceVersion current); None when it is gone."""
        found = _unless_gone(
            lambda: self._custom.get_namespaced_custom_object(
                resources.GROUP,
                resources.VERSION,
                namespace,
                resources.INSTANCES,
                name,
                _request_timeout=_TIMEOUT,
            )
        )
        return cast(dict[str, Any] | None, found)

    def create_instance(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        created = self._custom.create_namespaced_custom_object(
            resources.GROUP,
            resources.VERSION,
            namespace,
            resources.INSTANCES,
            body,
            _request_timeout=_TIMEOUT,
        )
        return cast(dict[str, Any], created)

    def patch_instance(
        self, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Merge ``patch`` into the Instance; None when it is gone."""
        patched = _unless_gone(
            lambda: self._custom.patch_namespaced_custom_object(
                resources.GROUP,
                resources.VERSION,
                namespace,
                resources.INSTANCES,
                name,
                patch,
                _content_type=_MERGE_PATCH,
                _request_timeout=_TIMEOUT,
            )
        )
        return cast(dict[str, Any] | None, patched)

    def delete_instance(self, namespace: str, name: str, uid: str) -> bool:
        """Delete the Instance if it is still the one of ``uid``; False when it is gone."""
        return _gone_or_other_uid(
            lambda: self._custom.delete_namespaced_custom_object(
                resources.GROUP,
                resources.VERSION,
                namespace,
                resources.INSTANCES,
                name,
                body=_only_if(uid),
                _request_timeout=_TIMEOUT,
            )
        )

    def instance_snapshots(self, namespace: str) -> list[dict[str, Any]]:
        found = self._custom.list_namespaced_custom_object(
            resources.GROUP,
            resources.VERSION,
            namespace,
            INSTANCE_SNAPSHOTS,
            _request_timeout=_TIMEOUT,
        )
        return list(cast(dict[str, Any], found).get("items") or [])

    def instance_snapshots_named(self, name: str) -> list[dict[str, Any]]:
        """The InstanceSnapshots called ``name`` in every namespace: each asks for an Image of
        that name, and Images are the cluster's."""
        found = self._custom.list_cluster_custom_object(
            resources.GROUP,
            resources.VERSION,
            INSTANCE_SNAPSHOTS,
            field_selector=f"metadata.name={name}",
            _request_timeout=_TIMEOUT,
        )
        return list(cast(dict[str, Any], found).get("items") or [])

    def create_instance_snapshot(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create the InstanceSnapshot; the ApiException of a 409 when its name is taken."""
        created = self._custom.create_namespaced_custom_object(
            resources.GROUP,
            resources.VERSION,
            namespace,
            INSTANCE_SNAPSHOTS,
            body,
            _request_timeout=_TIMEOUT,
        )
        return cast(dict[str, Any], created)

    def console_log(self, namespace: str, name: str) -> str | None:
        """The guest's serial console output, from the Instance's ``consolelog`` subresource
        (kubenova-subresources, behind the kube-apiserver); None when there is none to read
        (no such Instance, no host yet, or the host does not answer)."""
        path = (
            f"/apis/{resources.SUBRESOURCES_GROUP}/{resources.SUBRESOURCES_VERSION}"
            f"/namespaces/{namespace}/{resources.INSTANCES}/{name}/consolelog"
        )
        api = self._custom.api_client
        request = api.param_serialize(
            method="GET",
            resource_path=path,
            header_params={"Accept": "text/plain, application/json"},
            auth_settings=["BearerToken"],
        )
        response = api.call_api(*request, _request_timeout=_TIMEOUT)
        text = (response.read() or b"").decode(errors="replace")
        if response.status in (404, 409, 503):
            return None
        if not 200 <= response.status <= 299:
            raise k8s_exceptions.ApiException.from_response(
                http_resp=response, body=text, data=None
            )
        return str(text)

    # Core objects: the key pairs' Secrets and the namespace's ConfigMap of image tags, as
    # plain dictionaries like the custom objects (``data`` values base64, as the API has them).

    def _plain(self, obj: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self._core.api_client.sanitize_for_serialization(obj))

    def resource_quotas(self, namespace: str) -> list[dict[str, Any]]:
        """The namespace's ResourceQuotas: RunInstances reads the room they leave for
        Instances before it makes any."""
        found = self._core.list_namespaced_resource_quota(namespace, _request_timeout=_TIMEOUT)
        return [self._plain(item) for item in found.items]

    def secrets(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        found = self._core.list_namespaced_secret(
            namespace, label_selector=label_selector, _request_timeout=_TIMEOUT
        )
        return [self._plain(item) for item in found.items]

    def create_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create the Secret; the ApiException of a 409 when its name is taken."""
        # The generated client takes plain dicts as bodies, whatever its annotations say.
        plain: Any = body
        created = self._core.create_namespaced_secret(namespace, plain, _request_timeout=_TIMEOUT)
        return self._plain(created)

    def patch_secret(
        self, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Merge ``patch`` into the Secret (a ``metadata.resourceVersion`` in it makes the write
        conditional: 409 when the Secret changed since); None when it is gone."""
        patched = _unless_gone(
            lambda: self._core.patch_namespaced_secret(
                name,
                namespace,
                patch,
                _content_type=_MERGE_PATCH,
                _request_timeout=_TIMEOUT,
            )
        )
        return None if patched is None else self._plain(patched)

    def delete_secret(self, namespace: str, name: str, uid: str) -> bool:
        """Delete the Secret if it is still the one of ``uid``; False when it is gone."""
        return _gone_or_other_uid(
            lambda: self._core.delete_namespaced_secret(
                name, namespace, body=_only_if(uid), _request_timeout=_TIMEOUT
            )
        )

    def config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = _unless_gone(
            lambda: self._core.read_namespaced_config_map(
                name, namespace, _request_timeout=_TIMEOUT
            )
        )
        return None if found is None else self._plain(found)

    def create_config_map(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create the ConfigMap; the ApiException of a 409 when another request made it first."""
        plain: Any = body
        created = self._core.create_namespaced_config_map(
            namespace, plain, _request_timeout=_TIMEOUT
        )
        return self._plain(created)

    def patch_config_map(
        self, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Merge ``patch`` into the ConfigMap (a ``metadata.resourceVersion`` in it makes the
        write conditional: 409 when the ConfigMap changed since); None when it is gone."""
        patched = _unless_gone(
            lambda: self._core.patch_namespaced_config_map(
                name,
                namespace,
                patch,
                _content_type=_MERGE_PATCH,
                _request_timeout=_TIMEOUT,
            )
        )
        return None if patched is None else self._plain(patched)
