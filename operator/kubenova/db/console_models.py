"""The model of Nova's ``console_auth_tokens``: one row per console token handed out.

Kept apart from :mod:`kubenova.db.models` (which is already at its size limit) on the same
declarative ``Base``, so the metadata knows this table only once this module is imported:
:mod:`kubenova.db.console_auth` imports it, and so do the Alembic environment and the test that
compares the models with the migrated schema.

What differs from Nova, and why:

* The token is single use: ``used_at`` is set by the one UPDATE that accepts it, so a URL that
  leaked after the user opened it is worth nothing (Nova accepts a token until it expires).
* ``console_session`` records the one proxy session that consumed the token, so the connection
  a token opened can be found (and closed) later.
* ``expires`` is a UTC datetime like every other time here (Nova keeps epoch seconds).
* No soft delete: a token row has no history worth keeping, and keeping hashes of dead secrets
  around serves nobody. Expired rows are deleted outright by the purge, as Nova does.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from kubenova.db import models


class ConsoleAuthToken(models.TimestampMixin, models.Base):
    """A console token's hash and where the console it opens is (Nova's ``console_auth_tokens``).

    Only ``token_hash`` (the hex sha256 of the token) is stored; the token itself is returned
    once to whoever asked for the console and never written anywhere.
    """

    __tablename__ = "console_auth_tokens"
    __table_args__ = (
        sa.UniqueConstraint("token_hash", name="uniq_console_auth_tokens0token_hash"),
        sa.Index("ix_console_auth_tokens_instance_uuid", "instance_uuid"),
        # The purge deletes by expiry.
        sa.Index("ix_console_auth_tokens_expires", "expires"),
        {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64))
    console_type: Mapped[str] = mapped_column(sa.String(32))
    # The compute host that serves the console and its port there; a token is refused once
    # the instance's host is another one (it moved), so no statement of a move touches tokens.
    host: Mapped[str] = mapped_column(sa.String(255))
    port: Mapped[int] = mapped_column(sa.Integer)
    tls_port: Mapped[int | None] = mapped_column(sa.Integer)
    internal_access_path: Mapped[str | None] = mapped_column(sa.String(255))
    instance_uuid: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("instances.uuid"))
    expires: Mapped[dt.datetime] = mapped_column(models.UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(models.UTCDateTime)
    console_session: Mapped[str | None] = mapped_column(sa.String(255))
