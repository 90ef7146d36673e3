"""The `quasar` command's own surface: help, dev wallets, migrations, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import bittensor as bt


def quasar(*args: str, cwd: Path, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUASAR_", "DATABASE_URL", "SUBTENSOR"))}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "quasar.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_help_lists_every_role(tmp_path: Path) -> None:
    out = quasar("--help", cwd=tmp_path)
    assert out.returncode == 0
    for command in ("api", "db", "wallet", "round", "chain", "kernel", "bench", "local"):
        assert command in out.stdout


def test_wallet_create_makes_a_real_sr25519_hotkey_and_keeps_it(tmp_path: Path) -> None:
    first = quasar("wallet", "create", "--name", "alice", "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    made = json.loads(first.stdout)
    wallet = bt.Wallet(name="alice", hotkey="default", path=str(tmp_path / ".quasar" / "wallets"))
    assert wallet.hotkey.ss58_address == made["ss58_address"]
    assert wallet.hotkey.crypto_type == bt.CRYPTO_SR25519
    again = json.loads(quasar("wallet", "create", "--name", "alice", "--json", cwd=tmp_path).stdout)
    assert again["ss58_address"] == made["ss58_address"]


def test_db_upgrade_creates_the_embedded_database(tmp_path: Path) -> None:
    out = quasar("db", "upgrade", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / ".quasar" / "validator_api.db").is_file()


def test_round_create_without_owner_wallet_says_how_to_make_one(tmp_path: Path) -> None:
    out = quasar("round", "create", cwd=tmp_path)
    assert out.returncode == 2
    assert "quasar wallet create" in out.stderr


def test_bad_setting_is_reported_not_a_traceback(tmp_path: Path) -> None:
    out = quasar("round", "list", cwd=tmp_path, env_extra={"PORT": "not-a-port"})
    assert out.returncode == 2
    assert "invalid settings" in out.stderr and "Traceback" not in out.stderr
