"""DATABASE_URL, read one way everywhere: the settings, the API's engine and the migrations call
`normalise_database_url`."""

from __future__ import annotations

#: What a right DATABASE_URL looks like, for error messages.
DATABASE_URL_EXAMPLE = "postgresql://user:password@host:5432/quasar (or sqlite:///path/to/validator_api.db)"
#: The spellings of a PostgreSQL URL people bring: Render and Heroku hand out postgres://, the
#: original subnet used psycopg2. All go through psycopg 3, the driver this project installs.
_POSTGRES_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg2", "postgresql+psycopg")
_SQLITE_SCHEMES = ("sqlite", "sqlite+pysqlite")


def normalise_database_url(url: str) -> str:
    """`url` with any PostgreSQL spelling rewritten to the installed driver (postgresql+psycopg://).

    The one place a DATABASE_URL is interpreted: the settings, the engine and the migrations all
    call it. Anything but PostgreSQL or SQLite raises ValueError with a one-line reason that never
    repeats the URL (it may hold a password).
    """
    from sqlalchemy.engine import make_url  # here: only the API and its CLI need SQLAlchemy
    from sqlalchemy.exc import ArgumentError

    example = f"e.g. DATABASE_URL={DATABASE_URL_EXAMPLE}"
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or not scheme:
        raise ValueError(f"DATABASE_URL is not a URL; {example}")
    if scheme in _POSTGRES_SCHEMES:
        if not rest:
            raise ValueError(f"DATABASE_URL names no server after {scheme}://; {example}")
        url = "postgresql+psycopg://" + rest
    elif scheme not in _SQLITE_SCHEMES:
        raise ValueError(
            f"DATABASE_URL is a {scheme}:// URL, which the API cannot use (it runs on PostgreSQL through "
            f"psycopg 3, or SQLite); {example}"
        )
    try:
        make_url(url)
    except (ArgumentError, ValueError):  # e.g. a port that is not a number
        raise ValueError(
            f"DATABASE_URL is not a valid {scheme}:// URL (a port that is not a number? special characters "
            f"in the password must be percent-encoded); {example}"
        ) from None
    return url
