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


def test_push_over_ssh_while_revealing_the_https_url(tmp_path: Path) -> None:
    ssh, https = (
        "git@github.com:alice/flash-linear-attention.git",
        "https://github.com/alice/flash-linear-attention",
    )
    remote = resolve_remote(
        settings(tmp_path, subtensor_network="finney", git_remote_url=https, git_push_url=ssh), tmp_path
    )
    assert remote.push_url == ssh and remote.repo_url == https and remote.credentials is None
    # Without GIT_PUSH_URL the one URL is both, as before.
    same = resolve_remote(settings(tmp_path, subtensor_network="finney", git_remote_url=https), tmp_path)
    assert same.push_url == same.repo_url == https


@pytest.mark.parametrize(
    "url",
    ["git@github.com:alice/fla.git", "ssh://git@github.com/alice/fla.git", "git+ssh://github.com/alice/fla"],
)
def test_an_ssh_remote_url_is_refused_with_the_way_to_push_over_ssh(tmp_path: Path, url: str) -> None:
    with pytest.raises(ForgeError) as refused:
        resolve_remote(settings(tmp_path, subtensor_network="finney", git_remote_url=url), tmp_path)
    message = str(refused.value)
    assert "validators would refuse" in message and "set GIT_PUSH_URL to this URL" in message
    assert "GIT_REMOTE_URL to the repository's https URL" in message and "\n" not in message


def test_a_push_url_alone_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ForgeError, match="GIT_PUSH_URL is set without GIT_REMOTE_URL"):
        resolve_remote(
            settings(tmp_path, subtensor_network="finney", git_push_url="git@github.com:a/b.git"), tmp_path
        )
