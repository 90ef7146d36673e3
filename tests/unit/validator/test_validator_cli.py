"""`quasar validator`, `python -m neurons.validator` and START_VALIDATOR.sh: flags and clear refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _env(**values: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("QUASAR_", "WALLET_", "SUBTENSOR", "VALIDATOR_"))
    }
    env["PYTHONPATH"] = str(ROOT)
    env.update(values)
    return env


def test_both_entry_points_take_the_original_flags() -> None:
    for argv in (["-m", "quasar.cli", "validator", "--help"], ["-m", "neurons.validator", "--help"]):
        out = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=_env(), cwd=ROOT)
        assert out.returncode == 0, out.stderr
        for flag in ("--wallet.name", "--wallet.hotkey", "--subtensor.network", "--netuid", "--axon.port", "--once",
                     "--max-jobs"):  # fmt: skip
            assert flag in out.stdout, flag


def test_a_missing_wallet_on_a_real_chain_says_how_to_make_one(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "neurons.validator", "--subtensor.network", "finney", "--wallet.name", "nobody"],
        capture_output=True, text=True, cwd=tmp_path, env=_env(WALLET_PATH=str(tmp_path / "wallets")), timeout=120,
    )  # fmt: skip
    assert out.returncode == 2
    assert "no hotkey 'default' in wallet 'nobody'" in out.stderr and "btcli" in out.stderr
    assert "Traceback" not in out.stderr


def test_start_script_help() -> None:
    out = subprocess.run(["bash", str(ROOT / "START_VALIDATOR.sh"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "quasar validator" in out.stdout
