"""Schema migrations of the Validator API (Alembic), as functions the CLI and the app call.

`upgrade(url)` brings a database to the newest schema (`quasar db upgrade`); `check_current(engine)`
is what the app runs at start-up: it refuses an unmigrated or out-of-date database with a message
that names the command to run.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from quasar.database_url import normalise_database_url
from validator_api.db import make_engine

PACKAGE_DIR = Path(__file__).resolve().parent
UPGRADE_COMMAND = "quasar db upgrade"


class DatabaseNotMigrated(RuntimeError):
    """The database schema is missing or older/newer than this code; the message says what to run."""


def alembic_config(database_url: str | None = None) -> Config:
    """The packaged Alembic config, pointed at `database_url` (default: the settings' DATABASE_URL)."""
    config = Config(str(PACKAGE_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(PACKAGE_DIR / "migrations"))
    if database_url is not None:
        # The URL the engine uses, so `alembic` and the API agree on what postgres:// means.
        config.attributes["database_url"] = normalise_database_url(database_url)
    return config


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads; merge them (alembic merge)")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(database_url: str, revision: str = "head") -> str:
    """Migrate the database at `database_url` to `revision` (default: newest); returns the revision."""
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            config = alembic_config(database_url)
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
        current = current_revision(engine)
    finally:
        engine.dispose()
    return current or ""


def check_current(engine: Engine) -> str:
    """Raise DatabaseNotMigrated unless the database is at the newest revision; returns it."""
    current = current_revision(engine)
    head = head_revision()
    where = engine.url.render_as_string(hide_password=True)
    if current is None:
        raise DatabaseNotMigrated(
            f"the database at {where} has no schema yet. Run `{UPGRADE_COMMAND}` "
            "(with the same DATABASE_URL) and start the API again."
        )
    if current != head:
        raise DatabaseNotMigrated(
            f"the database at {where} is at schema revision {current} but this version of the API "
            f"needs {head}. Run `{UPGRADE_COMMAND}` (with the same DATABASE_URL) and start the API again."
        )
    return current
