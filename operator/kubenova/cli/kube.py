"""The plugin's way to the cluster: configuration found as kubectl finds it, the few API calls
the verbs make, and kubectl's wording of what goes wrong.

Configuration: ``--kubeconfig``, else ``$KUBECONFIG`` (a list of files, merged), else
``~/.kube/config``; when none of them exists, the pod's service account (in-cluster). The
namespace: ``-n``, else the context's, else the service account's (in-cluster), else
``default``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Iterator
from typing import Any, cast
from urllib.parse import urlsplit

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client import exceptions as k8s_exceptions

from kubenova.k8s.resources import (
    GROUP,
    INSTANCE_ACTIONS,
    INSTANCE_LABEL,
    INSTANCES,
    SUBRESOURCES_GROUP,
    SUBRESOURCES_VERSION,
    VERSION,
)

#: How kubectl names the resource in errors and in "<resource>/<name> <what>" lines.
INSTANCES_RESOURCE = f"{INSTANCES}.{GROUP}"
INSTANCE_RESOURCE = f"instance.{GROUP}"

_SERVICE_ACCOUNT_NAMESPACE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_MERGE_PATCH = "application/merge-patch+json"
# Reads and patches answer in milliseconds; a server that does not answer in this long is not
# going to, and the user gets an error instead of a hang (connect, read seconds).
_REQUEST_TIMEOUT = (10.0, 60.0)


class CommandError(Exception):
    """A failure worded for the user: printed to stderr as it is, exit code 1."""


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A connection to one cluster and the namespace the command works in."""

    api: k8s_client.ApiClient
    namespace: str

    @property
    def custom(self) -> k8s_client.CustomObjectsApi:
        return k8s_client.CustomObjectsApi(self.api)

    @property
    def server(self) -> str:
        return str(self.api.configuration.host)


def kubeconfig_files(explicit: str | None) -> str | None:
    """The kubeconfig file(s) to read, joined as $KUBECONFIG joins them; None when there is none
    (the caller then tries the in-cluster configuration)."""
    if explicit:
        path = os.path.expanduser(explicit)
        if not os.path.exists(path):
            raise CommandError(f"error: stat {explicit}: no such file or directory")
        return path
    from_env = os.environ.get("KUBECONFIG")
    if from_env:
        # kubectl skips the files of the list that do not exist.
        found = [
            os.path.expanduser(p)
            for p in from_env.split(os.pathsep)
            if p and os.path.exists(os.path.expanduser(p))
        ]
        return os.pathsep.join(found) if found else None
    default = os.path.expanduser("~/.kube/config")
    return default if os.path.exists(default) else None


def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> Cluster:
    """The cluster and namespace the flags (and kubectl's defaults) point at."""
    files = kubeconfig_files(kubeconfig)
    if files is None:
        return _connect_in_cluster(context, namespace)
    try:
        contexts, current = k8s_config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=files
        )
    except (k8s_config.ConfigException, OSError) as exc:
        raise CommandError(f"error: {exc}") from None
    chosen: dict[str, Any] | None = current
    if context:
        chosen = next((c for c in contexts or [] if c.get("name") == context), None)
        if chosen is None:
            raise CommandError(f"error: context was not found for specified context: {context}")
    try:
        api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=files, context=context, persist_config=False
        )
    except (k8s_config.ConfigException, OSError) as exc:
        raise CommandError(f"error: {exc}") from None
    from_context = ((chosen or {}).get("context") or {}).get("namespace")
    return Cluster(cast(k8s_client.ApiClient, api), namespace or from_context or "default")


def _connect_in_cluster(context: str | None, namespace: str | None) -> Cluster:
    if context:
        raise CommandError(f"error: context was not found for specified context: {context}")
    configuration = k8s_client.Configuration()
    try:
        k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    except k8s_config.ConfigException:
        raise CommandError(
            "error: no configuration: no kubeconfig file (--kubeconfig, $KUBECONFIG or "
            "~/.kube/config) and not running in a pod"
        ) from None
    if namespace is None:
        try:
            namespace = _SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or None
        except OSError:
            namespace = None
    return Cluster(k8s_client.ApiClient(configuration), namespace or "default")


def describe_error(exc: BaseException, server: str) -> str:
    """``exc`` in kubectl's words: ``Error from server (NotFound): ...``, or the connection
    failure as kubectl reports it."""
    if isinstance(exc, k8s_exceptions.ApiException):
        return _describe_api_error(exc)
    if isinstance(exc, urllib3.exceptions.HTTPError):
        cause = getattr(exc, "reason", None) or exc
        address = urlsplit(server).netloc or server
        if isinstance(cause, urllib3.exceptions.NewConnectionError) and "refused" in str(cause):
            return (
                f"The connection to the server {address} was refused - "
                "did you specify the right host or port?"
            )
        return f"Unable to connect to the server: {cause}"
    return f"error: {exc}"


def _describe_api_error(exc: k8s_exceptions.ApiException) -> str:
    status: dict[str, Any] = {}
    if exc.body:
        try:
            decoded = json.loads(exc.body)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict):
            status = decoded
    reason = status.get("reason") or _REASONS.get(int(exc.status or 0), "")
    message = status.get("message")
    if not message:
        # A watch's ERROR event arrives as "Reason: message" with no body.
        message = (exc.body or "").strip() or str(exc.reason or "unknown error")
        if exc.status == 404 and not exc.body:
            message = "the server could not find the requested resource"
    return f"Error from server ({reason}): {message}" if reason else f"Error from server: {message}"


# The reason kubectl shows when the server sends no Status (a proxy's answer, say).
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def not_found(exc: BaseException) -> bool:
    return isinstance(exc, k8s_exceptions.ApiException) and exc.status == 404


def get_instance(cluster: Cluster, name: str) -> dict[str, Any]:
    return cast(
        dict[str, Any],
        cluster.custom.get_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, INSTANCES, name, _request_timeout=_REQUEST_TIMEOUT
        ),
    )


def patch_instance(cluster: Cluster, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    """Merge ``patch`` into the Instance; the object as stored afterwards (its new
    ``metadata.generation`` is what the wait waits for)."""
    return cast(
        dict[str, Any],
        cluster.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            cluster.namespace,
            INSTANCES,
            name,
            patch,
            _content_type=_MERGE_PATCH,
            _request_timeout=_REQUEST_TIMEOUT,
        ),
    )


def watch_instance(
    cluster: Cluster, name: str, resource_version: str, timeout_seconds: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event type, object) for each change of the Instance after ``resource_version``, until
    the server ends the watch after ``timeout_seconds``."""
    watcher = k8s_watch.Watch()  # type: ignore[no-untyped-call]
    stream = watcher.stream(  # type: ignore[no-untyped-call]
        cluster.custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        cluster.namespace,
        INSTANCES,
        field_selector=f"metadata.name={name}",
        resource_version=resource_version,
        timeout_seconds=max(1, timeout_seconds),
        # A connection that dies quietly must not outlive the deadline by much.
        _request_timeout=(_REQUEST_TIMEOUT[0], timeout_seconds + 10.0),
    )
    try:
        for event in stream:
            obj = event.get("raw_object")
            if isinstance(obj, dict):
                yield str(event.get("type")), obj
    finally:
        watcher.stop()  # type: ignore[no-untyped-call]


def list_instance_actions(cluster: Cluster, instance: str) -> list[dict[str, Any]]:
    """The InstanceActions labelled with the Instance's name, in the server's order."""
    found = cluster.custom.list_namespaced_custom_object(
        GROUP,
        VERSION,
        cluster.namespace,
        INSTANCE_ACTIONS,
        label_selector=f"{INSTANCE_LABEL}={instance}",
        _request_timeout=_REQUEST_TIMEOUT,
    )
    return [item for item in cast(dict[str, Any], found).get("items") or [] if item]


def create_console_url(cluster: Cluster, name: str, console_type: str) -> dict[str, Any]:
    """POST the Instance's ``consoleurl`` subresource (kubenova-subresources, behind the
    kube-apiserver, which authorizes ``create`` on ``instances/consoleurl`` with RBAC): the
    ConsoleURL document with ``url`` and ``expires``."""
    path = (
        f"/apis/{SUBRESOURCES_GROUP}/{SUBRESOURCES_VERSION}/namespaces/{cluster.namespace}"
        f"/{INSTANCES}/{name}/consoleurl"
    )
    request = cluster.api.param_serialize(
        method="POST",
        resource_path=path,
        query_params=[("type", console_type)],
        header_params={"Accept": "application/json", "Content-Type": "application/json"},
        body={},
        auth_settings=["BearerToken"],
    )
    response = cluster.api.call_api(*request, _request_timeout=_REQUEST_TIMEOUT)
    raw = response.read() or b""  # type: ignore[no-untyped-call]
    reply = raw.decode(errors="replace")
    if not 200 <= response.status <= 299:
        raise k8s_exceptions.ApiException.from_response(http_resp=response, body=reply, data=None)
    try:
        answer = json.loads(reply)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise CommandError("error: the server's answer is not a ConsoleURL document")
    return answer
