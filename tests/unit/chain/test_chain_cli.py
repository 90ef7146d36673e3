"""`quasar chain …` on the embedded dev chain, through Typer's runner and as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from bittensor.sp_core import Keypair
from typer.testing import CliRunner

from quasar.chain.cli import app
from quasar.chain.devchain import DevChain
from quasar.config import reset_settings_cache

ROOT = Path(__file__).resolve().parents[3]
VALIDATOR = Keypair.create_from_uri("//Bob").ss58_address
MINER = Keypair.create_from_uri("//Eve").ss58_address


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # An empty working directory: no .env is read, and the default QUASAR_HOME lands here.
    monkeypatch.chdir(tmp_path)
    for name in ("SUBTENSOR_NETWORK", "QUASAR_HOME", "DEV_CHAIN_PATH", "NETUID", "BLOCK_TIME_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    reset_settings_cache()
    yield tmp_path / ".quasar"
    reset_settings_cache()


def run(*args: str) -> tuple[int, str, str]:
    reset_settings_cache()
    result = CliRunner().invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_register_advance_serve_and_status(home: Path) -> None:
    code, stdout, _ = run("init", "--json")
    assert code == 0 and json.loads(stdout)["path"] == ".quasar/devchain.sqlite"
    assert (home / "devchain.sqlite").exists()

    code, stdout, _ = run("register", "--hotkey", VALIDATOR, "--role", "validator", "--stake", "1000", "--json")
    assert code == 0 and json.loads(stdout) == {"uid": 0, "hotkey": VALIDATOR, "role": "validator", "stake": 1000.0}
    code, _, stderr = run("register", "--hotkey", MINER, "--role", "miner")
    assert code == 0 and "uid 1" in stderr

    before = json.loads(run("status", "--json")[1])["block"]
    code, stdout, _ = run("advance", "50", "--json")
    assert code == 0 and json.loads(stdout)["block"] >= before + 50

    code, _, stderr = run("serve", "--hotkey", MINER, "--ip", "127.0.0.1", "--port", "8001")
    assert code == 0, stderr
    DevChain(home / "devchain.sqlite").set_weights(VALIDATOR, [1], [1.0])

    code, stdout, _ = run("status", "--json")
    status = json.loads(stdout)
    assert code == 0 and status["netuid"] == 24
    assert [(n["uid"], n["role"], n["validator_permit"]) for n in status["neurons"]] == [
        (0, "validator", True),
        (1, "miner", False),
    ]
    assert status["neurons"][1]["axon"] == "http://127.0.0.1:8001"
    assert status["weights"][0]["hotkey"] == VALIDATOR and status["weights"][0]["uids"] == [1]

    code, stdout, _ = run("status")
    assert code == 0 and VALIDATOR in stdout and "recent weights" in stdout


def test_bad_input_is_refused_with_exit_2(home: Path) -> None:
    code, _, stderr = run("register", "--hotkey", VALIDATOR, "--role", "king")
    assert code == 2 and "--role must be one of miner, validator, owner" in stderr
    code, _, stderr = run("register", "--hotkey", "not-an-address", "--role", "miner")
    assert code == 2 and "not an SS58 address" in stderr
    code, _, stderr = run("serve", "--hotkey", MINER, "--ip", "localhost", "--port", "8001")
    assert code == 2 and "not an IP address" in stderr
    code, _, stderr = run("serve", "--hotkey", MINER, "--ip", "127.0.0.1", "--port", "8001")
    assert code == 1 and "not registered" in stderr and "quasar chain register" in stderr


def test_a_real_chain_is_refused(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBTENSOR_NETWORK", "finney")
    for args in (("status",), ("advance", "1"), ("register", "--hotkey", MINER, "--role", "miner")):
        code, _, stderr = run(*args)
        assert code == 2
        assert "manages the local dev chain only" in stderr and "use btcli" in stderr
    assert not home.exists()


def test_module_entry_point_prints_json_alone(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SUBTENSOR_NETWORK", "QUASAR_HOME")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "quasar.chain.cli", "status", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=home.parent,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["neurons"] == []
