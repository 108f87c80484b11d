"""The operator's narrow view of the Kubernetes API.

Everything the api and conductor layers read from or write to Kubernetes goes
through :class:`KubeClient`, so tests can stand a fake beside it and the layers
above never build API paths themselves.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any, cast

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client import exceptions as k8s_exceptions

from kubenova.k8s import resources

LOG = logging.getLogger(__name__)

_MERGE_PATCH_HEADERS = {
    "Accept": "application/json",
    "Content-Type": "application/merge-patch+json",
}


def load_config() -> None:
    """In a pod, use its service account; elsewhere, $KUBECONFIG."""
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
    configuration = k8s_client.Configuration.get_default_copy()
    # kopf's handler threads and the conductor share one pool; the default of 10 makes
    # a busy operator open and drop connections.
    configuration.connection_pool_maxsize = 64
    k8s_client.Configuration.set_default(configuration)


def can_be_named(name: str) -> bool:
    """Whether an object could be called ``name``: the apiserver answers a GET of any other
    name with 400, not 404 (a name is a path segment: not empty, "." or "..", no "/" or "%"),
    and a reference to one (a spec naming a Flavor "%s%n", say) is then simply to nothing."""
    return bool(name) and name not in (".", "..") and "/" not in name and "%" not in name


class KubeClient:
    """Reads flavors and images; writes instance and hypervisor status."""

    def __init__(self, api_client: k8s_client.ApiClient | None = None) -> None:
        self._api = api_client or k8s_client.ApiClient()
        self._custom = k8s_client.CustomObjectsApi(self._api)
        self._core = k8s_client.CoreV1Api(self._api)

    def _get_cluster(self, plural: str, name: str) -> dict[str, Any] | None:
        if not can_be_named(name):
            return None
        try:
            obj = cast(
                dict[str, Any],
                self._custom.get_cluster_custom_object(
                    resources.GROUP, resources.VERSION, plural, name
                ),
            )
        except k8s_exceptions.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def _get_namespaced(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        if not can_be_named(name) or not can_be_named(namespace):
            return None
        try:
            obj = cast(
                dict[str, Any],
                self._custom.get_namespaced_custom_object(
                    resources.GROUP, resources.VERSION, namespace, plural, name
                ),
            )
        except k8s_exceptions.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def get_flavor(self, name: str) -> dict[str, Any] | None:
        return self._get_cluster(resources.FLAVORS, name)

    def get_image(self, name: str) -> dict[str, Any] | None:
        return self._get_cluster(resources.IMAGES, name)

    def get_server_group(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_namespaced(resources.SERVER_GROUPS, namespace, name)

    def get_instance(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_namespaced(resources.INSTANCES, namespace, name)

    def _patch_status(
        self, plural: str, namespace: str | None, name: str, status: dict[str, Any]
    ) -> bool:
        """Merge ``status`` into an object's status subresource; False if it is gone.

        The request is built and sent by the generated client's own ``param_serialize`` and
        ``call_api`` (its authentication, TLS and connection pool), but the reply is not
        decoded: nothing here reads it, and decoding the whole object, with the argument
        validation of the generated method, was most of what a status write cost this
        process.
        """
        scope = f"/namespaces/{namespace}" if namespace is not None else ""
        path = f"/apis/{resources.GROUP}/{resources.VERSION}{scope}/{plural}/{name}/status"
        request = self._api.param_serialize(
            method="PATCH",
            resource_path=path,
            header_params=dict(_MERGE_PATCH_HEADERS),
            body={"status": status},
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(*request)
        body = response.read() or b""  # type: ignore[no-untyped-call]
        if response.status == 404:
            where = f"{namespace}/{name}" if namespace else name
            LOG.info("%s %s is gone; status not written", plural, where)
            return False
        if not 200 <= response.status <= 299:
            raise k8s_exceptions.ApiException.from_response(
                http_resp=response, body=body.decode(errors="replace"), data=None
            )
        return True

    def patch_instance_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool:
        """Merge ``status`` into the Instance's status; False if the object is gone."""
        return self._patch_status(resources.INSTANCES, namespace, name, status)

    def patch_server_group_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool:
        """Merge ``status`` into the ServerGroup's status; False if the object is gone."""
        return self._patch_status(resources.SERVER_GROUPS, namespace, name, status)

    def post_event(
        self, obj: dict[str, Any], *, reason: str, message: str, type_: str = "Warning"
    ) -> None:
        """Record a core/v1 Event about ``obj`` (shown by ``kubectl describe``)."""
        create_event(self._core, obj, reason=reason, message=message, type_=type_)

    def apply_instance_action(self, namespace: str, body: dict[str, Any]) -> bool:
        """Create the InstanceAction ``body``, or merge it into the one of that name; False
        when its namespace is gone or being deleted (nothing to record it in: an object
        written there would go with it). As status writes are, sent without decoding the
        reply, which nothing here reads."""
        collection = (
            f"/apis/{resources.GROUP}/{resources.VERSION}/namespaces/{namespace}/"
            f"{resources.INSTANCE_ACTIONS}"
        )
        status = self._send("POST", collection, body, {"Content-Type": "application/json"})
        if status == 409:
            patch = {key: value for key, value in body.items() if key not in ("apiVersion", "kind")}
            patch["metadata"] = {"labels": body["metadata"].get("labels", {})}
            name = body["metadata"]["name"]
            status = self._send("PATCH", f"{collection}/{name}", patch, _MERGE_PATCH_HEADERS)
        return status not in (403, 404)

    def _send(self, method: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> int:
        """Send a request with the generated client's plumbing; its HTTP status, which is
        2xx, 404, 409, or 403 for a create the apiserver refused because the namespace is
        being deleted (anything else raises)."""
        request = self._api.param_serialize(
            method=method,
            resource_path=path,
            header_params={"Accept": "application/json", **headers},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(*request)
        reply = response.read() or b""  # type: ignore[no-untyped-call]
        if 200 <= response.status <= 299 or response.status in (404, 409):
            return int(response.status)
        if namespace_terminating(response.status, reply):
            return 403
        raise k8s_exceptions.ApiException.from_response(
            http_resp=response, body=reply.decode(errors="replace"), data=None
        )

    def get_hypervisor(self, host: str) -> dict[str, Any] | None:
        return self._get_cluster(resources.HYPERVISORS, host)

    def ensure_hypervisor(self, host: str, labels: dict[str, str]) -> dict[str, Any]:
        """Return the Hypervisor named ``host``, creating it on first registration."""
        existing = self.get_hypervisor(host)
        if existing is not None:
            return existing
        body = {
            "apiVersion": resources.API_VERSION,
            "kind": "Hypervisor",
            "metadata": {"name": host, "labels": labels},
            "spec": {"disabled": False},
        }
        try:
            created = cast(
                dict[str, Any],
                self._custom.create_cluster_custom_object(
                    resources.GROUP, resources.VERSION, resources.HYPERVISORS, body
                ),
            )
        except k8s_exceptions.ApiException as exc:
            if exc.status != 409:  # another replica created it first
                raise
            again = self.get_hypervisor(host)
            assert again is not None
            return again
        return created

    def patch_hypervisor_status(self, host: str, status: dict[str, Any]) -> bool:
        """Merge ``status`` into the Hypervisor's status; False if there is no such object."""
        return self._patch_status(resources.HYPERVISORS, None, host, status)

    def list_instance_uids(self) -> set[str]:
        """The uid of every Instance object, in every namespace (one LIST)."""
        result = cast(
            dict[str, Any],
            self._custom.list_cluster_custom_object(
                resources.GROUP, resources.VERSION, resources.INSTANCES
            ),
        )
        return {item["metadata"]["uid"] for item in result.get("items", [])}

    def list_hypervisors(self) -> list[dict[str, Any]]:
        result = cast(
            dict[str, Any],
            self._custom.list_cluster_custom_object(
                resources.GROUP, resources.VERSION, resources.HYPERVISORS
            ),
        )
        items: list[dict[str, Any]] = result.get("items", [])
        return items


def namespace_terminating(status: int, reply: bytes | str) -> bool:
    """Whether an answer is the apiserver's refusal to create an object in a namespace that is
    being deleted: ``403 Forbidden``, its Status naming the cause ``NamespaceTerminating``
    (the message ends "... because it is being terminated"). Any other 403 (RBAC) is not."""
    if status != 403:
        return False
    try:
        answer = json.loads(reply)
    except ValueError:
        return False
    if not isinstance(answer, dict) or answer.get("reason") != "Forbidden":
        return False
    details = answer.get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    return any(
        isinstance(cause, dict) and cause.get("reason") == "NamespaceTerminating"
        for cause in causes or []
    ) or "because it is being terminated" in str(answer.get("message") or "")


def create_event(
    core: k8s_client.CoreV1Api,
    obj: dict[str, Any],
    *,
    reason: str,
    message: str,
    type_: str = "Warning",
) -> None:
    """Record a core/v1 Event about ``obj`` with ``core``; never fails the work."""
    meta = obj["metadata"]
    now = datetime.datetime.now(datetime.UTC)
    event = k8s_client.CoreV1Event(
        metadata=k8s_client.V1ObjectMeta(generate_name=f"{meta['name']}."),
        involved_object=k8s_client.V1ObjectReference(
            api_version=obj.get("apiVersion"),
            kind=obj.get("kind"),
            name=meta["name"],
            namespace=meta.get("namespace"),
            uid=meta.get("uid"),
        ),
        reason=reason,
        message=message[:1024],
        type=type_,
        first_timestamp=now,
        last_timestamp=now,
        count=1,
        source=k8s_client.V1EventSource(component="kubenova-operator"),
        reporting_component="kubenova-operator",
        reporting_instance="kubenova-operator",
    )
    try:
        core.create_namespaced_event(meta.get("namespace") or "default", event)
    except k8s_exceptions.ApiException as exc:
        # An Event is a courtesy: never fail the work because it could not be posted.
        LOG.warning("could not post event %s on %s: %s", reason, meta["name"], exc.reason)
