"""Only an administrator may force a host: the ValidatingAdmissionPolicy of
crds/admission-forced-host.yaml refuses spec.forcedHost from anyone outside the groups
system:masters and kubenova:admins, on create and on update.

The tenant here is a user the admin kubeconfig impersonates, with a Role in the test's
namespace that lets it create and edit Instances, so a refusal is the policy's and not RBAC's.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import apply, get, instance_manifest, kubectl

pytestmark = pytest.mark.e2e

TENANT = "e2e-tenant"
TENANT_GROUP = "e2e-tenants"
ADMINS = "kubenova:admins"
POLICY = "kubenova-forced-host-admin-only"
# No Hypervisor has this name: nothing is ever built, the instances stay Pending.
NOWHERE = "e2e-no-such-host"
OTHER_NOWHERE = "e2e-no-such-host-either"


@pytest.fixture
def tenant(namespace: str) -> str:
    """The namespace, in which TENANT may read, create and edit Instances (and nothing more)."""
    apply(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "instance-editor", "namespace": namespace},
                "rules": [
                    {
                        "apiGroups": ["compute.kubenova.io"],
                        "resources": ["instances"],
                        "verbs": ["get", "list", "watch", "create", "update", "patch"],
                    }
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "instance-editor", "namespace": namespace},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "instance-editor",
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": TENANT}
                ],
            },
        ]
    )
    return namespace


def _apply_as(
    manifest: dict[str, Any], *groups: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``kubectl apply`` as TENANT in ``groups`` (the apiserver adds system:authenticated)."""
    identity = [f"--as={TENANT}", *(f"--as-group={group}" for group in groups)]
    return kubectl(*identity, "apply", "-f", "-", stdin=yaml.safe_dump(manifest), check=check)


def _refused_by_the_policy(manifest: dict[str, Any], *groups: str) -> None:
    """Applying ``manifest`` as TENANT in ``groups`` fails, and the policy (not RBAC, whose
    refusal reads "cannot create resource") says so, naming spec.forcedHost."""
    result = _apply_as(manifest, *groups, check=False)
    assert result.returncode != 0, f"accepted: {manifest}"
    assert f"ValidatingAdmissionPolicy '{POLICY}'" in result.stderr, result.stderr
    assert "spec.forcedHost" in result.stderr


def _forced_host(namespace: str, name: str) -> str | None:
    obj = get("instances", name, namespace)
    assert obj is not None, f"instance {name} is gone"
    forced: str | None = obj["spec"].get("forcedHost")
    return forced


def test_a_tenant_cannot_create_an_instance_with_a_forced_host(tenant: str) -> None:
    _refused_by_the_policy(
        instance_manifest("forced", tenant, "m1.nano", forcedHost=NOWHERE), TENANT_GROUP
    )
    assert get("instances", "forced", tenant) is None

    # The same tenant creates the same instance without it: RBAC was never the obstacle.
    _apply_as(instance_manifest("forced", tenant, "m1.nano"), TENANT_GROUP)
    assert _forced_host(tenant, "forced") is None


def test_a_member_of_kubenova_admins_may_force_a_host(tenant: str) -> None:
    _apply_as(instance_manifest("forced", tenant, "m1.nano", forcedHost=NOWHERE), ADMINS)
    assert _forced_host(tenant, "forced") == NOWHERE


def test_a_tenant_cannot_add_a_forced_host_to_an_existing_instance(tenant: str) -> None:
    _apply_as(instance_manifest("later", tenant, "m1.nano"), TENANT_GROUP)
    _refused_by_the_policy(
        instance_manifest("later", tenant, "m1.nano", forcedHost=NOWHERE), TENANT_GROUP
    )
    assert _forced_host(tenant, "later") is None


def test_a_tenant_cannot_change_the_forced_host_an_administrator_set(tenant: str) -> None:
    apply(instance_manifest("pinned", tenant, "m1.nano", forcedHost=NOWHERE))
    _refused_by_the_policy(
        instance_manifest("pinned", tenant, "m1.nano", forcedHost=OTHER_NOWHERE), TENANT_GROUP
    )
    assert _forced_host(tenant, "pinned") == NOWHERE


def test_a_tenant_may_edit_an_instance_whose_forced_host_is_left_as_it_was(tenant: str) -> None:
    # What lets anyone outside the admin groups (the operator's service account in a cluster,
    # removing its finalizer) update an Instance an administrator pinned to a host.
    apply(instance_manifest("pinned", tenant, "m1.nano", forcedHost=NOWHERE))
    relabelled = instance_manifest("pinned", tenant, "m1.nano", forcedHost=NOWHERE)
    relabelled["metadata"]["labels"] = {"team": "blue"}
    _apply_as(relabelled, TENANT_GROUP)
    obj = get("instances", "pinned", tenant)
    assert obj is not None
    assert obj["metadata"]["labels"] == {"team": "blue"}
    assert obj["spec"]["forcedHost"] == NOWHERE
