"""``kubenova-manage``: administration commands, after ``nova-manage``.

    kubenova-manage db sync [--revision R] [--db-url URL]   bring the schema to R (default head)
    kubenova-manage db version [--db-url URL]               print the schema's revision
    kubenova-manage console-certs --host NAME --dir DIR --ca-dir CA_DIR [--address IP]...
                                  [--group GROUP]           a host's x509 directory for
                                                            QEMU's console TLS
                                                            (kubenova.certs.host_dir)
    kubenova-manage ca status|rotate [--signs-in S]|promote [--namespace NS]
                                                            Kubenova's CA (kubenova.cmd.manage_ca)

The database URL comes from ``--db-url`` or ``KUBENOVA_DB_URL``. Exit status: 0 on success,
1 when the command failed (the reason is printed on stderr), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from kubenova.certs import host_dir
from kubenova.cmd import manage_ca
from kubenova.db import engine as db_engine
from kubenova.db import migration

LOG = logging.getLogger("kubenova.manage")

EXIT_OK = 0
EXIT_FAILURE = 1


class CommandError(Exception):
    """A failure to report to the user in one line, without a traceback."""


def _safe_url(url: str) -> str:
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return "<unparseable URL>"


def _resolve_url(args: argparse.Namespace) -> str:
    url: str | None = args.db_url
    if url:
        return url
    try:
        return db_engine.url_from_env()
    except RuntimeError as exc:
        raise CommandError(f"no database URL: pass --db-url or set {db_engine.DB_URL_ENV}") from exc


def _db_sync(args: argparse.Namespace) -> int:
    url = _resolve_url(args)
    revision = migration.db_sync(url, args.revision)
    print(f"database {_safe_url(url)} is at revision {revision or 'base'}")
    return EXIT_OK


def _db_version(args: argparse.Namespace) -> int:
    url = _resolve_url(args)
    print(migration.db_version(url) or "base")
    return EXIT_OK


def _console_certs(args: argparse.Namespace) -> int:
    try:
        written = host_dir.write_host_dir(
            pathlib.Path(args.ca_dir),
            args.host,
            pathlib.Path(args.dir),
            args.address,
            group=args.group,
        )
    except KeyError as exc:
        raise CommandError(f"no group {args.group!r}") from exc
    except (OSError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    print(f"host {args.host}: {', '.join(str(path) for path in written.values())}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and for generated documentation)."""
    url_help = "database URL (default: $KUBENOVA_DB_URL)"
    parser = argparse.ArgumentParser(
        prog="kubenova-manage", description="Kubenova administration commands."
    )
    parser.add_argument("--db-url", default=None, help=url_help)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on failure")
    categories = parser.add_subparsers(dest="category", required=True, metavar="CATEGORY")

    db = categories.add_parser("db", help="database schema commands")
    db_commands = db.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Leaf options default to SUPPRESS so that a --db-url given before the category is kept.
    leaf_url = argparse.ArgumentParser(add_help=False)
    leaf_url.add_argument("--db-url", default=argparse.SUPPRESS, help=url_help)

    sync = db_commands.add_parser(
        "sync", parents=[leaf_url], help="upgrade the schema to a revision (default: head)"
    )
    sync.add_argument("--revision", default="head", help="target revision (default: head)")
    sync.set_defaults(func=_db_sync)

    version = db_commands.add_parser(
        "version", parents=[leaf_url], help="print the revision the schema is at"
    )
    version.set_defaults(func=_db_version)

    certs = categories.add_parser(
        "console-certs", help="write a host's x509 directory for QEMU's VNC/SPICE TLS"
    )
    certs.add_argument("--host", required=True, help="the host's name (the certificate's CN)")
    certs.add_argument("--dir", required=True, help="the directory to write (qemu.conf's)")
    certs.add_argument(
        "--ca-dir", required=True, help="the CA's directory (ca.crt, ca.key; made if missing)"
    )
    certs.add_argument(
        "--address", action="append", default=[], help="an IP address SAN (repeatable)"
    )
    certs.add_argument("--group", default=None, help="a group that may read the files (QEMU's)")
    certs.set_defaults(func=_console_certs)
    manage_ca.add_parser(categories)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Alembic's per-step "Context impl" chatter adds nothing for an operator.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    func: Callable[[argparse.Namespace], int] = getattr(args, "func", manage_ca.run)
    try:
        return func(args)
    except (CommandError, manage_ca.CommandFailed, migration.MigrationError) as exc:
        print(f"kubenova-manage: error: {exc}", file=sys.stderr)
    except sa_exc.SQLAlchemyError as exc:
        if args.debug:
            LOG.exception("database error")
        # The driver's own message names the cause (access denied, unknown database...).
        cause = getattr(exc, "orig", None) or exc
        print(f"kubenova-manage: error: database error: {cause}", file=sys.stderr)
    return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
