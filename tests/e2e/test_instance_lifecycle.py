"""An Instance applied with kubectl boots a real QEMU guest, and deleting it leaves nothing."""

from __future__ import annotations

import os
import pathlib
import uuid

import pytest
import sqlalchemy as sa

from tests.e2e.conftest import (
    HOST,
    apply,
    domain_exists,
    flavor_manifest,
    get,
    instance_manifest,
    kubectl,
    wait_for,
)

pytestmark = pytest.mark.e2e

INSTANCES_PATH = pathlib.Path(
    os.environ.get("KUBENOVA_INSTANCES_PATH", "/var/lib/kubenova/instances")
)


def _status(namespace: str, name: str) -> dict:
    return (get("instances", name, namespace) or {}).get("status") or {}


def test_applied_instance_runs_with_an_address_and_deleting_it_leaves_nothing(namespace, stack):
    marker = f"user-data-{uuid.uuid4().hex}"
    apply(flavor_manifest("e2e-nano", 1, 128, 1))
    apply(instance_manifest("vm1", namespace, "e2e-nano", userData=f"#!/bin/sh\necho {marker}\n"))

    status = wait_for(
        "the instance to be Running with an address",
        lambda: (
            (s := _status(namespace, "vm1")).get("phase") == "Running" and s.get("addresses") and s
        ),
        timeout=180,
    )
    assert status["host"] == HOST
    assert status["powerState"] == "running"
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    # Synced: the spec of its generation is applied (nothing asked of it since the create).
    assert conditions == {"Scheduled": "True", "Ready": "True", "Synced": "True"}
    instance_uuid = get("instances", "vm1", namespace)["metadata"]["uid"]
    assert domain_exists(instance_uuid)

    console = INSTANCES_PATH / instance_uuid / "console.log"
    wait_for(
        "the guest to print its uuid and user data",
        lambda: (
            console.exists()
            and f"instance-uuid={instance_uuid}" in (text := console.read_text(errors="replace"))
            and marker in text
        ),
        timeout=120,
    )

    table = kubectl("get", "instances", "-n", namespace).stdout
    assert table.split("\n")[0].split() == ["NAME", "PHASE", "HOST", "FLAVOR", "IP", "AGE"]
    assert status["addresses"][0] in table

    engine = sa.create_engine(stack["KUBENOVA_DB_URL"])
    with engine.connect() as connection:
        held = connection.execute(
            sa.text("SELECT COUNT(*) FROM allocations WHERE instance_uuid = :u"),
            {"u": instance_uuid},
        ).scalar_one()
    assert held == 3

    kubectl("delete", "instance", "vm1", "-n", namespace, "--timeout=60s")
    wait_for("the domain to be gone", lambda: not domain_exists(instance_uuid), timeout=30)
    assert not (INSTANCES_PATH / instance_uuid).exists()
    with engine.connect() as connection:
        held = connection.execute(
            sa.text("SELECT COUNT(*) FROM allocations WHERE instance_uuid = :u"),
            {"u": instance_uuid},
        ).scalar_one()
        row = connection.execute(
            sa.text("SELECT deleted, deleted_at, vm_state FROM instances WHERE uuid = :u"),
            {"u": instance_uuid},
        ).one()
    engine.dispose()
    assert held == 0
    assert row.deleted != 0
    assert row.deleted_at is not None
    assert row.vm_state == "deleted"
