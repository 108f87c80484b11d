"""Instance objects as the API returns them, for the plugin's decisions."""

from typing import Any

from kubernetes import client as k8s_client

from kubenova.cli import kube


def instance(
    name: str = "web-1",
    *,
    power_state: str | None = "Running",
    phase: str | None = "Running",
    task: str | None = None,
    generation: int = 1,
    observed: int | None = 1,
    synced: tuple[str, str, int] | None = ("True", "Synced", 1),
    message: str = "",
    reboot: dict[str, Any] | None = None,
    resource_version: str = "100",
) -> dict[str, Any]:
    """``synced`` is (status, reason, observedGeneration) of the Synced condition."""
    spec: dict[str, Any] = {"flavor": "m1.tiny", "image": "tiny"}
    if power_state is not None:
        spec["powerState"] = power_state
    if reboot is not None:
        spec["reboot"] = reboot
    status: dict[str, Any] = {}
    if phase is not None:
        status["phase"] = phase
    if task is not None:
        status["taskState"] = task
    if observed is not None:
        status["observedGeneration"] = observed
    if synced is not None:
        cond_status, reason, cond_generation = synced
        status["conditions"] = [
            {"type": "Ready", "status": "True", "observedGeneration": cond_generation},
            {
                "type": "Synced",
                "status": cond_status,
                "reason": reason,
                "message": message,
                "observedGeneration": cond_generation,
            },
        ]
    return {
        "apiVersion": "compute.kubenova.io/v1alpha1",
        "kind": "Instance",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": "uid-1",
            "generation": generation,
            "resourceVersion": resource_version,
        },
        "spec": spec,
        "status": status,
    }


def cluster(namespace: str = "default") -> Any:
    """A Cluster whose API client is never used to send anything."""
    api = k8s_client.ApiClient(k8s_client.Configuration(host="https://127.0.0.1:6443"))
    return kube.Cluster(api=api, namespace=namespace)
