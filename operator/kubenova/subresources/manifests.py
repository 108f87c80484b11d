"""The Kubernetes objects that put this server behind the kube-apiserver, and the role that
lets users open consoles.

- :func:`apiservice`: the APIService ``v1.subresources.compute.kubenova.io``, whose
  ``caBundle`` must hold the CA that signed the serving certificate; the kube-apiserver
  checks that certificate for the name ``SERVICE.NAMESPACE.svc``.
- :func:`host_endpoint`: for a server run outside the cluster's pods (the local stack runs it
  as a host process): a Service without a selector and an EndpointSlice of its own with the
  host's address. The kube-apiserver must dial endpoints, not the Service's cluster IP
  (``--enable-aggregator-routing=true``), unless kube-proxy programs the cluster IP where the
  kube-apiserver runs. The address may not be a loopback one (the API refuses it).
- :func:`console_user_role`: a ClusterRole with the verbs each subresource needs, aggregated
  into the built-in ``admin`` and ``edit`` roles as KubeVirt aggregates its own, so whoever may
  edit a namespace may open its consoles; bind it alone for a console-only user.
"""

from __future__ import annotations

import base64
from typing import Any

from kubenova.subresources import discovery

SERVICE = "kubenova-subresources"
SERVICE_PORT = 443
PORT_NAME = "https"
CONSOLE_USER_ROLE = "kubenova-console-user"
MANAGED_BY = "kubenova-subresources"


def apiservice(
    namespace: str, ca_pem: bytes, *, service: str = SERVICE, port: int = SERVICE_PORT
) -> dict[str, Any]:
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": f"{discovery.VERSION}.{discovery.GROUP}"},
        "spec": {
            "group": discovery.GROUP,
            "version": discovery.VERSION,
            "service": {"namespace": namespace, "name": service, "port": port},
            "caBundle": base64.b64encode(ca_pem).decode("ascii"),
            # Where the group sorts in discovery; KubeVirt's subresources use the same.
            "groupPriorityMinimum": 1000,
            "versionPriority": 15,
        },
    }


def host_endpoint(
    namespace: str, address: str, port: int, *, service: str = SERVICE
) -> list[dict[str, Any]]:
    """A Service with no selector and the EndpointSlice that points it at ``address:port``."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": service, "namespace": namespace},
            "spec": {
                "ports": [{"name": PORT_NAME, "port": SERVICE_PORT, "targetPort": port}],
            },
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{service}-host",
                "namespace": namespace,
                "labels": {
                    "kubernetes.io/service-name": service,
                    # Not the EndpointSlice controller's: it leaves this slice alone.
                    "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
                },
            },
            "addressType": "IPv6" if ":" in address else "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
            "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}],
        },
    ]


def console_user_role(name: str = CONSOLE_USER_ROLE) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": {
                "rbac.authorization.k8s.io/aggregate-to-admin": "true",
                "rbac.authorization.k8s.io/aggregate-to-edit": "true",
            },
        },
        "rules": [
            {
                "apiGroups": [discovery.GROUP],
                "resources": [f"{discovery.INSTANCES}/{sub.name}"],
                "verbs": list(sub.verbs),
            }
            for sub in discovery.SUBRESOURCES.values()
        ],
    }
