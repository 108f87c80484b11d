"""The ``caBundle`` of APIServices: the CAs the kube-apiserver trusts for an aggregated server.

The chart creates the APIService of ``kubenova-subresources`` without a ``caBundle``; the
operator writes it, and writes it again whenever Kubenova's trust bundle changes (a CA
rotation), so the kube-apiserver keeps trusting the serving certificate the operator issues.
RBAC: ``get`` and ``patch`` on ``apiregistration.k8s.io`` ``apiservices``, for those names only.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Protocol

from kubernetes import client as k8s_client
from kubernetes.client import exceptions as k8s_exceptions


class CABundles(Protocol):
    """What the certificate renewal needs of APIServices; :class:`KubeAPIServices` is real."""

    def ca_bundle(self, name: str) -> bytes | None:
        """The APIService's caBundle (PEM; empty when unset), None when there is no such
        APIService."""
        ...

    def set_ca_bundle(self, name: str, pem: bytes) -> None: ...


class KubeAPIServices:
    def __init__(self, api_client: k8s_client.ApiClient | None = None) -> None:
        self._api = k8s_client.ApiregistrationV1Api(api_client or k8s_client.ApiClient())

    def ca_bundle(self, name: str) -> bytes | None:
        try:
            # Raw JSON: the generated model's idea of a base64 field varies between releases.
            response: Any = self._api.read_api_service(name, _preload_content=False)
        except k8s_exceptions.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        spec = json.loads(response.data).get("spec") or {}
        return base64.b64decode(spec.get("caBundle") or "")

    def set_ca_bundle(self, name: str, pem: bytes) -> None:
        # A JSON patch: "add" sets the field whether or not it is there, and touches nothing
        # else the chart owns.
        body = [{"op": "add", "path": "/spec/caBundle", "value": base64.b64encode(pem).decode()}]
        self._api.patch_api_service(name, body)
