"""`python -m neurons.miner` / `quasar miner` surface and START_MINER.sh."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_neurons_miner_takes_the_original_flags() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "neurons.miner", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in (
        "--wallet.name",
        "--wallet.hotkey",
        "--subtensor.network",
        "--netuid",
        "--axon.port",
        "--once",
    ):
        assert flag in out


def test_start_miner_help_and_missing_github_settings(tmp_path: Path) -> None:
    script = ROOT / "START_MINER.sh"
    assert (
        "usage" in subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True).stdout
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GIT_REMOTE"))}
    env.update(SUBTENSOR_NETWORK="finney", QUASAR=str(ROOT / ".venv/bin/quasar"))
    copy = tmp_path / "START_MINER.sh"  # no .env next to it
    copy.write_text(script.read_text())
    copy.chmod(0o755)
    done = subprocess.run([str(copy)], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "GITHUB_TOKEN" in done.stderr and "GITHUB_USERNAME" in done.stderr
