"""Remotes: which one the settings pick, the URL policy, and the token's handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from quasar.config import Settings
from quasar.miner.forge import ForgeError, GitCredentials, resolve_remote


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, quasar_home=tmp_path, **values)  # type: ignore[arg-type]


def test_development_default_is_a_local_bare_repository(tmp_path: Path) -> None:
    remote = resolve_remote(settings(tmp_path), tmp_path / "state")
    assert remote.kind == "local" and (Path(remote.push_url) / "HEAD").is_file()
    assert remote.credentials is None and remote.repo_url == remote.push_url


def test_production_needs_a_fork_or_a_remote(tmp_path: Path) -> None:
    with pytest.raises(ForgeError, match="GITHUB_TOKEN"):
        resolve_remote(settings(tmp_path, subtensor_network="finney"), tmp_path)
    with pytest.raises(ForgeError, match="both GITHUB_TOKEN and GITHUB_USERNAME"):
        resolve_remote(settings(tmp_path, subtensor_network="finney", github_token="x"), tmp_path)


def test_production_refuses_a_remote_validators_would_refuse(tmp_path: Path) -> None:
    with pytest.raises(ForgeError, match="validators would refuse"):
        resolve_remote(
            settings(tmp_path, subtensor_network="finney", git_remote_url="http://example.com/x.git"),
            tmp_path,
        )
    ok = resolve_remote(
        settings(tmp_path, subtensor_network="finney", git_remote_url="https://github.com/a/b.git"), tmp_path
    )
    assert ok.push_url == "https://github.com/a/b.git" and ok.credentials is None


def test_credentials_travel_only_in_the_environment() -> None:
    creds = GitCredentials("alice", "ghp_secret")
    env = creds.env()
    assert env["GIT_CONFIG_VALUE_0"] == ""  # configured helpers (a plain-text store ...) are reset first
    assert "ghp_secret" not in env["GIT_CONFIG_VALUE_1"] and "$QUASAR_GIT_TOKEN" in env["GIT_CONFIG_VALUE_1"]
    assert env["QUASAR_GIT_TOKEN"] == "ghp_secret"
    assert "ghp_secret" not in repr(creds) and creds.redact("fatal: ghp_secret") == "fatal: ***"
