"""Settings: profiles, URL normalisation, and that .env.example documents every setting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from quasar.config import Settings, normalise_database_url

ROOT = Path(__file__).resolve().parents[2]


def test_embedded_profile_has_short_timings_and_local_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUBTENSOR_NETWORK", raising=False)
    s = Settings(_env_file=None)
    assert s.is_embedded and s.dev_mode
    assert (s.block_time_seconds, s.blocks_until_reveal, s.reveal_window_blocks, s.round_blocks) == (1, 5, 100, 120)
    assert s.evaluations_per_submission == 1 and s.auto_rounds
    assert s.database_url == "sqlite:///.quasar/validator_api.db"
    assert s.dev_chain_path == Path(".quasar/devchain.sqlite")


def test_real_chain_profile_and_explicit_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBTENSOR_NETWORK", "finney")
    monkeypatch.setenv("BLOCKS_UNTIL_REVEAL", "7")
    s = Settings(_env_file=None)
    assert not s.is_embedded and not s.dev_mode
    assert s.block_time_seconds == 12 and s.evaluations_per_submission == 3
    assert s.blocks_until_reveal == 7


@pytest.mark.parametrize("url", ["postgres://u:p@db:5432/q", "postgresql://u:p@db:5432/q"])
def test_render_style_postgres_urls_are_accepted(url: str) -> None:
    assert Settings(_env_file=None, database_url=url).database_url == "postgresql+psycopg://u:p@db:5432/q"


def test_weight_split_must_add_up_to_one() -> None:
    with pytest.raises(ValidationError, match="WEIGHT_SPLIT"):
        Settings(_env_file=None, weight_split=[0.5, 0.2])


def test_env_example_documents_every_setting() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.M))
    missing = {name.upper() for name in Settings.model_fields} - documented
    assert not missing, f".env.example lacks {sorted(missing)}"


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:p@db:5432/q",
        "postgresql://u:p@db:5432/q",
        "postgresql+psycopg2://u:p@db:5432/q",
        "postgresql+psycopg://u:p@db:5432/q",
        "PostgreSQL+Psycopg2://u:p@db:5432/q",
    ],
)
def test_every_postgresql_spelling_uses_psycopg_3(url: str) -> None:
    assert normalise_database_url(url) == "postgresql+psycopg://u:p@db:5432/q"
    assert Settings(_env_file=None, database_url=url).database_url == "postgresql+psycopg://u:p@db:5432/q"


def test_sqlite_urls_are_kept() -> None:
    for url in ("sqlite:///var/lib/quasar/api.db", "sqlite://", "sqlite+pysqlite:///x.db"):
        assert normalise_database_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u:hunter2@db/q",
        "postgresql+asyncpg://u:hunter2@db/q",
        "postgresql+pg8000://u:hunter2@db/q",
        "db.example.com:5432/q",
        "postgres://",
        "postgres://u:hunter2@db:port/q",
        "",
    ],
)
def test_unusable_database_urls_are_refused_in_one_line(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        normalise_database_url(url)
    message = str(caught.value)
    assert "\n" not in message and "hunter2" not in message
    assert message.startswith("DATABASE_URL ") and "e.g. DATABASE_URL=postgresql://" in message
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, database_url=url)
    assert "hunter2" not in str(refused.value)  # the settings hide what was given
