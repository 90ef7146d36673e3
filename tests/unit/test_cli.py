"""The `quasar` command's own surface: help, dev wallets, migrations, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import bittensor as bt


def quasar(
    *args: str, cwd: Path, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUASAR_", "DATABASE_URL", "SUBTENSOR"))}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "quasar.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
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


# --- one-line errors of bad settings: the variable, what is wrong, where it came from, a right value --
def _one_error_line(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 2, (out.returncode, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    return lines[0]


def test_a_bad_database_url_in_the_environment_is_one_line(tmp_path: Path) -> None:
    line = _one_error_line(
        quasar("db", "upgrade", cwd=tmp_path, env_extra={"DATABASE_URL": "mysql://u:pw@db/q"})
    )
    assert line.startswith("error: invalid settings: DATABASE_URL (from the environment)")
    assert "e.g. DATABASE_URL=postgresql://" in line and "pw" not in line


def test_an_unreachable_database_is_one_line_naming_database_url(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://quasar:s3cret@127.0.0.1:{port}/quasar"
    line = _one_error_line(quasar("db", "upgrade", cwd=tmp_path, env_extra={"DATABASE_URL": url}))
    assert "DATABASE_URL=postgresql+psycopg://quasar:***@127.0.0.1" in line and "s3cret" not in line
    assert "refused" in line.lower() and "e.g. DATABASE_URL=" in line


def test_a_malformed_list_in_dotenv_names_the_file_and_the_form(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("NETUID=24\nWEIGHT_SPLIT=0.6,0.25\n")
    line = _one_error_line(quasar("round", "list", cwd=tmp_path))
    assert f"WEIGHT_SPLIT (in {tmp_path.resolve() / '.env'})" in line
    assert "not JSON" in line and "e.g. WEIGHT_SPLIT=[0.6, 0.25, 0.1, 0.05]" in line
    assert "DotEnvSettingsSource" not in line


def test_a_wrong_value_in_dotenv_names_the_variable_the_file_and_an_example(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PORT=eighty\n")
    line = _one_error_line(quasar("db", "upgrade", cwd=tmp_path))
    assert f"PORT (in {tmp_path.resolve() / '.env'}): Input should be a valid integer" in line
    assert line.endswith("e.g. PORT=8000")
    # the environment wins over .env, and the message says which one it read
    line = _one_error_line(quasar("db", "upgrade", cwd=tmp_path, env_extra={"PORT": "ninety"}))
    assert "PORT (from the environment)" in line


def test_every_entry_reports_a_bad_dotenv_in_one_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("WEIGHT_SPLIT=[0.5, 0.2]\n")
    for args in (["local", "up", "--once"], ["miner", "status"], ["chain", "status"]):
        line = _one_error_line(quasar(*args, cwd=tmp_path))
        assert "WEIGHT_SPLIT (in " in line and "add up to 1" in line, args
    app = subprocess.run(
        [sys.executable, "-c", "import validator_api.app"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )  # `uvicorn validator_api.app:app` imports it so
    assert app.returncode == 1 and "Traceback" not in app.stderr
    (app_line,) = app.stderr.strip().splitlines()
    assert app_line.startswith("error: invalid settings: WEIGHT_SPLIT (in ")
