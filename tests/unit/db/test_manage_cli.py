"""kubenova-manage parses its commands and fails with a clear message and status 1."""

from __future__ import annotations

import pathlib

import pytest

from kubenova.cmd import manage
from kubenova.db import migration


def test_db_url_is_accepted_before_or_after_the_command():
    parser = manage.build_parser()

    before = parser.parse_args(["--db-url", "mysql+pymysql://a/b", "db", "sync"])
    after = parser.parse_args(
        ["db", "sync", "--db-url", "mysql+pymysql://c/d", "--revision", "0001"]
    )

    assert (before.db_url, before.revision) == ("mysql+pymysql://a/b", "head")
    assert (after.db_url, after.revision) == ("mysql+pymysql://c/d", "0001")


def test_missing_url_is_a_failure_that_says_how_to_give_one(monkeypatch, capsys):
    monkeypatch.delenv("KUBENOVA_DB_URL", raising=False)

    status = manage.main(["db", "version"])

    assert status == 1
    assert "pass --db-url or set KUBENOVA_DB_URL" in capsys.readouterr().err


def test_unreachable_database_is_a_failure_without_a_traceback(capsys):
    # Port 9 (discard) on loopback refuses connections at once.
    status = manage.main(["db", "version", "--db-url", "mysql+pymysql://u:secret@127.0.0.1:9/nova"])

    err = capsys.readouterr().err
    assert status == 1
    assert "kubenova-manage: error: database error" in err
    assert "Traceback" not in err
    assert "secret" not in err


def test_unknown_command_is_a_usage_error():
    with pytest.raises(SystemExit) as raised:
        manage.main(["db", "frobnicate"])
    assert raised.value.code == 2


def test_migrations_are_found_from_any_working_directory(tmp_path: pathlib.Path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    head = migration.head_revision()

    scripts = [p.name for p in (migration.MIGRATIONS_DIR / "versions").glob("*.py")]
    assert any(name.startswith(f"{head}_") for name in scripts)
    assert migration.ALEMBIC_INI.is_file()
