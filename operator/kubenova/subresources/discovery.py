"""The discovery documents of ``subresources.compute.kubenova.io/v1``.

The kube-aggregator marks the APIService Available once ``GET /apis/<group>/<version>``
answers 2xx, and builds the cluster's discovery from ``/apis`` (it falls back to the
per-version document when the answer is not the aggregated discovery format). Each resource
here is a subresource of an Instance: RBAC rules name it ``instances/<subresource>`` in this
group, and its verb follows the HTTP method (POST: ``create``, GET: ``get``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from kubenova.k8s import resources

GROUP: Final = resources.SUBRESOURCES_GROUP
VERSION: Final = resources.SUBRESOURCES_VERSION
GROUP_VERSION: Final = f"{GROUP}/{VERSION}"
# The group of the Instance objects these subresources belong to (the CRD's).
INSTANCE_GROUP: Final = resources.GROUP
INSTANCES: Final = resources.INSTANCES


@dataclasses.dataclass(frozen=True)
class Subresource:
    name: str
    verbs: tuple[str, ...]
    kind: str


CONSOLEURL: Final = Subresource("consoleurl", ("create",), "ConsoleURL")
VNC: Final = Subresource("vnc", ("get",), "Instance")
CONSOLE: Final = Subresource("console", ("get",), "Instance")
CONSOLELOG: Final = Subresource("consolelog", ("get",), "Instance")
SUBRESOURCES: Final = {s.name: s for s in (CONSOLEURL, VNC, CONSOLE, CONSOLELOG)}


def resource_list() -> dict[str, Any]:
    """``GET /apis/subresources.compute.kubenova.io/v1``: an APIResourceList."""
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {
                "name": f"{INSTANCES}/{sub.name}",
                "singularName": "",
                "namespaced": True,
                "kind": sub.kind,
                "verbs": list(sub.verbs),
            }
            for sub in SUBRESOURCES.values()
        ],
    }


def group() -> dict[str, Any]:
    """``GET /apis/subresources.compute.kubenova.io``: an APIGroup."""
    version = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [version],
        "preferredVersion": version,
    }


def group_list() -> dict[str, Any]:
    """``GET /apis``: an APIGroupList holding this group alone."""
    body = group()
    del body["kind"], body["apiVersion"]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [body]}


def openapi_v2() -> dict[str, Any]:
    """``GET /openapi/v2``: the kube-aggregator merges every APIService's spec into the
    cluster's and logs an error for each one it cannot fetch. The subresources take no typed
    body, so there are no paths to describe."""
    return {
        "swagger": "2.0",
        "info": {"title": "kubenova-subresources", "version": VERSION},
        "paths": {},
    }


def openapi_v3() -> dict[str, Any]:
    """``GET /openapi/v3``: the index of OpenAPI v3 documents by group version; none here."""
    return {"paths": {}}
