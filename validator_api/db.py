"""Database engine and sessions for the Validator API (SQLite for development, PostgreSQL in production).

SQLite gets WAL (readers never block the writer), a busy timeout (writers queue instead of failing),
foreign keys (off by default in SQLite) and `BEGIN IMMEDIATE` transactions, so a read-then-write
transaction takes the write lock up front and two writers can never deadlock on a lock upgrade.
PostgreSQL goes through psycopg 3 with pre-ping, so a restarted database is reconnected to silently,
whichever spelling the URL uses (postgres://, postgresql+psycopg2://: `normalise_database_url`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import BindParameter, Engine, Table, create_engine, event, literal
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import ReturningInsert

from quasar.database_url import normalise_database_url

SQLITE_BUSY_TIMEOUT_MS = 30_000


def is_sqlite(url: str) -> bool:
    return make_url(normalise_database_url(url)).get_backend_name() == "sqlite"


def make_engine(database_url: str, *, connect_timeout: int = 5, pool_size: int = 10) -> Engine:
    """An engine for `database_url` (any spelling `normalise_database_url` takes); touches nothing
    until the first connection. An unusable URL raises ValueError with a one-line reason."""
    url = make_url(normalise_database_url(database_url))
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        _configure_sqlite(engine)
        return engine
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        # A dead server must fail fast (health checks, /ready) rather than hang for minutes.
        connect_args["connect_timeout"] = connect_timeout
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=pool_size * 2,
        pool_timeout=10,
        connect_args=connect_args,
    )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's implicit BEGIN is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on any exception."""
    with factory() as session, session.begin():
        yield session


@functools.cache
def insert_unless_exists(table: Table, dialect: str, returning: str) -> ReturningInsert[Any]:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING one column, on either backend; no row on a conflict.

    Built once per table and dialect, with its values given to `execute` as parameters: a hot
    statement built afresh on every request costs more Python than sending it to the database.
    """
    if dialect == "postgresql":
        statement = postgresql.insert(table)
    elif dialect == "sqlite":
        statement = sqlite.insert(table)
    else:
        raise NotImplementedError(
            f"no ON CONFLICT support for the {dialect} backend; use PostgreSQL or SQLite"
        )
    return statement.on_conflict_do_nothing().returning(table.c[returning])


def constant(value: Any) -> BindParameter[Any]:
    """`value` written into the SQL text instead of sent as a parameter.

    psycopg prepares a statement run often; PostgreSQL then keeps one generic plan for it only if it
    can see the constants that decide the plan (a status, a LIMIT). Without them it plans the
    claim query again on every call, which cost more than running it (about 1 ms against 0.2 ms).
    """
    return literal(value, literal_execute=True)
