"""`kubenova-manage db sync` brings a database to head, idempotently, and agrees with the models."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from kubenova.db import console_models, migration, models
from tests.integration.db.helpers import IMAGE

pytestmark = pytest.mark.integration

TABLES = {
    "services",
    "compute_nodes",
    "instances",
    "allocations",
    "instance_actions",
    "instance_actions_events",
    "instance_faults",
    "migrations",
    "server_groups",
    "server_group_members",
    "console_auth_tokens",
}


def _manage(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    script = pathlib.Path(sys.executable).with_name("kubenova-manage")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "kubenova.cmd.manage"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _schema(url: str) -> dict[str, list[str]]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        inspector = sa.inspect(engine)
        return {
            table: sorted(c["name"] for c in inspector.get_columns(table))
            for table in inspector.get_table_names()
        }
    finally:
        engine.dispose()


def test_sync_brings_an_empty_database_to_head(empty_db_url):
    assert migration.db_version(empty_db_url) is None

    result = _manage("db", "sync", "--db-url", empty_db_url)

    assert result.returncode == 0, result.stderr
    assert migration.db_version(empty_db_url) == migration.head_revision()
    assert set(_schema(empty_db_url)) == TABLES | {"alembic_version"}


def test_sync_brings_a_database_at_0001_with_data_to_head(empty_db_url):
    assert migration.db_sync(empty_db_url, "0001") == "0001"
    assert "server_groups" not in _schema(empty_db_url)
    engine = sa.create_engine(empty_db_url, poolclass=sa.pool.NullPool)
    try:
        # Rows as code at 0001 wrote them, with 0001's columns only.
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO compute_nodes (uuid, host, created_at, deleted) "
                    "VALUES ('cn-1', 'h1', UTC_TIMESTAMP(6), 0)"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO instances (uuid, name, namespace, project_id, host, flavor, "
                    "image, vm_state, power_state, created_at, deleted) VALUES ('i-1', 'vm', "
                    "'default', 'default', 'h1', '{}', :image, 'active', 'running', "
                    "UTC_TIMESTAMP(6), 0)"
                ),
                {"image": json.dumps(IMAGE)},
            )

        result = _manage("db", "sync", "--db-url", empty_db_url)

        assert result.returncode == 0, result.stderr
        assert "Running upgrade 0001 -> 0002" in result.stderr
        assert "Running upgrade 0002 -> 0003" in result.stderr
        assert "Running upgrade 0003 -> 0004" in result.stderr
        assert "Running upgrade 0004 -> 0005" in result.stderr
        assert "Running upgrade 0005 -> 0006" in result.stderr
        assert "Running upgrade 0006 -> 0007" in result.stderr
        assert migration.db_version(empty_db_url) == migration.head_revision() == "0007"
        assert set(_schema(empty_db_url)) == TABLES | {"alembic_version"}
        with engine.connect() as conn:
            node = conn.execute(sa.text("SELECT host, failed_builds FROM compute_nodes")).one()
            instance = conn.execute(
                sa.text(
                    "SELECT uuid, host, availability_zone, attempts, alternates, tried_hosts "
                    "FROM instances"
                )
            ).one()
    finally:
        engine.dispose()
    assert tuple(node) == ("h1", 0)
    assert tuple(instance) == ("i-1", "h1", None, 0, None, None)


def test_sync_twice_is_a_no_op(empty_db_url):
    migration.db_sync(empty_db_url)
    before = _schema(empty_db_url)

    result = _manage("db", "sync", "--db-url", empty_db_url)

    assert result.returncode == 0, result.stderr
    assert "Running upgrade" not in result.stderr
    assert _schema(empty_db_url) == before
    assert migration.db_version(empty_db_url) == migration.head_revision()


def test_version_prints_head_after_sync_and_base_before(empty_db_url):
    before = _manage("db", "version", "--db-url", empty_db_url)
    migration.db_sync(empty_db_url)
    after = _manage("db", "version", "--db-url", empty_db_url)

    assert (before.returncode, before.stdout.strip()) == (0, "base")
    assert (after.returncode, after.stdout.strip()) == (0, migration.head_revision())


def test_url_comes_from_the_environment(empty_db_url, monkeypatch):
    monkeypatch.setenv("KUBENOVA_DB_URL", empty_db_url)

    result = _manage("db", "sync")

    assert result.returncode == 0, result.stderr
    assert migration.db_version(empty_db_url) == migration.head_revision()


def test_concurrent_syncs_are_serialized_and_both_succeed(empty_db_url):
    # Without the named lock the second would fail on "table already exists".
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "kubenova.cmd.manage", "db", "sync", "--db-url", empty_db_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    for proc in procs:
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    assert [code for code, _ in results] == [0, 0], results
    assert migration.db_version(empty_db_url) == migration.head_revision()


def test_unknown_revision_fails_with_a_message(empty_db_url):
    result = _manage("db", "sync", "--db-url", empty_db_url, "--revision", "no-such-revision")

    assert result.returncode == 1
    assert "no-such-revision" in result.stderr


def test_models_match_the_migrated_schema(db_url):
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            # The console tokens' model lives in its own module on the same Base.
            assert "console_auth_tokens" in console_models.ConsoleAuthToken.metadata.tables
            differences = compare_metadata(context, models.Base.metadata)
    finally:
        engine.dispose()

    assert differences == []
