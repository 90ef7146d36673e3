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


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def test_an_unknown_network_is_refused_before_anything_starts(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "neurons.validator", "--subtensor.network", "finey"],
        capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=120,
    )  # fmt: skip
    assert out.returncode == 2
    (line,) = _error_lines(out.stderr)
    assert "SUBTENSOR_NETWORK" in line and "'finey' is not a network" in line and "finney, test" in line
    assert "Traceback" not in out.stderr


def test_a_registered_hotkey_without_a_permit_does_not_start(tmp_path: Path) -> None:
    # The drift the one rule removes: MIN_VALIDATOR_STAKE=0 and no permit used to start silently
    # while the API refused every call.
    from quasar.chain.devchain import DevChain
    from quasar.wallets import load_or_create_dev_wallet

    home = tmp_path / ".quasar"
    wallet = load_or_create_dev_wallet("quasar_validator", "default", home / "wallets")
    hotkey = wallet.hotkey.ss58_address
    DevChain(home / "devchain.sqlite").register(hotkey, "miner", stake=50_000.0)
    out = subprocess.run(
        [sys.executable, "-m", "neurons.validator", "--once"],
        capture_output=True, text=True, cwd=tmp_path,
        env=_env(SUBTENSOR_NETWORK="embedded", MIN_VALIDATOR_STAKE="0", ENABLE_LOGIT_VERIFICATION="false"),
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    (line,) = _error_lines(out.stderr)
    assert f"hotkey {hotkey} (uid 0) has no validator permit on subnet 24" in line
    assert "API would refuse" in line and f"quasar chain register --hotkey {hotkey} --role validator" in line
    assert "Traceback" not in out.stderr and "validator running" not in out.stderr


def test_each_worker_verifies_on_its_own_device(tmp_path: Path) -> None:
    # Verification runs between a worker's evaluations on that worker's device, never on a GPU
    # another worker is timing on (DEVICE=cuda:3 needs no GPU to build: nothing is loaded yet).
    import threading

    from quasar.config import Settings
    from quasar.validator.cli import build_validator
    from quasar.validator.worker import Device

    settings = Settings(
        _env_file=None, quasar_home=tmp_path, subtensor_network="embedded", enable_logit_verification=True,
        device="cuda:3",
    )  # fmt: skip
    neuron = build_validator(settings, threading.Event())
    (runner,) = neuron.runners
    assert runner.device == Device("cuda", 3) and runner.verify.device == runner.device  # type: ignore[union-attr]
