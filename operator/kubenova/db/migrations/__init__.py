"""Alembic migrations of the ``nova`` database (``env.py``, ``versions/``).

A package only so that the migration scripts ship in the wheel; nothing here is imported by
kubenova itself — Alembic loads ``env.py`` and ``versions/*.py`` by path.
"""
