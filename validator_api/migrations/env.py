"""Alembic environment: migrates the database named by DATABASE_URL (or the URL `migrate.upgrade` passes)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from quasar.config import get_settings, normalise_database_url
from validator_api.db import make_engine
from validator_api.models import Base

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    """The normalised URL (postgres:// and postgresql+psycopg2:// become psycopg 3), as the API's engine."""
    url = config.attributes.get("database_url")
    if url:
        return normalise_database_url(str(url))
    settings_url = get_settings().database_url
    assert settings_url is not None  # Settings always fills in the default (and normalises it)
    return settings_url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_database_url())
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
