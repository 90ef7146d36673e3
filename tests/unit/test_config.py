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


@pytest.mark.parametrize(("network", "netuid"), [("embedded", 24), ("finney", 24), ("test", 383), ("local", 24)])
def test_netuid_defaults_per_network_as_the_original_documents(
    network: str, netuid: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NETUID", raising=False)
    monkeypatch.setenv("SUBTENSOR_NETWORK", network)
    assert Settings(_env_file=None).netuid == netuid
    monkeypatch.setenv("NETUID", "24")  # an explicit NETUID always wins, 24 on testnet included
    assert Settings(_env_file=None).netuid == 24
    assert Settings(_env_file=None, subtensor_network=network, netuid=7).netuid == 7


def test_env_example_leaves_netuid_to_the_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NETUID", "SUBTENSOR_NETWORK"):
        monkeypatch.delenv(name, raising=False)
    env = tmp_path / ".env"
    env.write_text((ROOT / ".env.example").read_text() + "\nSUBTENSOR_NETWORK=test\n")
    assert Settings(_env_file=env).netuid == 383


@pytest.mark.parametrize(
    "network", ["embedded", "finney", "test", "archive", "devnet", "local", "ws://127.0.0.1:9944", "wss://n.example:443"]
)
def test_every_network_the_sdk_resolves_is_accepted(network: str) -> None:
    from bittensor.settings import resolve_endpoint

    assert Settings(_env_file=None, subtensor_network=network).subtensor_network == network
    if network != "embedded":
        resolve_endpoint(network)  # and the SDK takes it


def test_the_named_networks_are_the_sdks() -> None:
    from bittensor.settings import NETWORKS

    from quasar.config import NAMED_NETWORKS

    assert sorted(NAMED_NETWORKS) == sorted(NETWORKS)


@pytest.mark.parametrize("network", ["finey", "mainnet", "http://127.0.0.1:9944", ""])
def test_an_unknown_network_is_refused_in_one_line(
    network: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from quasar.config import InvalidSettings, get_settings, reset_settings_cache

    monkeypatch.setenv("SUBTENSOR_NETWORK", network)
    monkeypatch.chdir(tmp_path)  # no .env here
    reset_settings_cache()
    try:
        with pytest.raises(InvalidSettings) as refused:
            get_settings()
    finally:
        reset_settings_cache()
    message = str(refused.value)
    assert "\n" not in message and message.startswith("SUBTENSOR_NETWORK (from the environment): ")
    assert f"{network!r} is not a network" in message
    assert "embedded, finney, test, archive, devnet, local or a ws:// / wss:// URL" in message


def test_flags_override_their_variables_as_values_and_leave_the_environment_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from quasar.config import InvalidSettings
    from quasar.neuron import settings_from_flags

    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("SUBTENSOR_NETWORK", "embedded")
    monkeypatch.setenv("NETUID", "7")
    before = dict(os.environ)
    flag_env = {"network": "SUBTENSOR_NETWORK", "netuid": "NETUID", "api_url": "VALIDATOR_API_URL"}
    settings = settings_from_flags(flag_env, {"network": "test", "netuid": None, "api_url": "http://api:9"})
    assert (settings.subtensor_network, settings.netuid, settings.validator_api_url) == ("test", 7, "http://api:9")
    assert dict(os.environ) == before
    monkeypatch.delenv("NETUID")
    assert settings_from_flags(flag_env, {"network": "test"}).netuid == 383  # the network's default
    with pytest.raises(InvalidSettings, match="SUBTENSOR_NETWORK"):
        settings_from_flags(flag_env, {"network": "mainnet"})
    assert dict(os.environ) == {k: v for k, v in before.items() if k != "NETUID"}
