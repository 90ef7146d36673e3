"""The START scripts load `.env` with the settings' parser: the shipped `.env.example` works as `.env`.

Each script is copied with `.env.example` as its `.env` into a temporary directory and run with the
real `quasar env` (the loading step). Only the long-running role at the end is replaced, by a
program that records its argv and its environment and reads the settings there, as the real one
would at start.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = {
    "START_SERVER.sh": [["db", "upgrade"], ["api", "--host", "0.0.0.0", "--port", "8000"]],
    "START_MINER_INFERENCE.sh": [["inference", "--host", "0.0.0.0", "--port", "8001"]],
    # No --netuid: .env.example leaves NETUID unset, so the settings pick the network's default.
    "START_MINER.sh": [["miner", "--wallet.name", "quasar_miner", "--wallet.hotkey", "default",
                        "--subtensor.network", "embedded", "--axon.port", "8001"]],
    "START_VALIDATOR.sh": [["validator", "--wallet.name", "quasar_validator", "--wallet.hotkey", "default",
                            "--subtensor.network", "embedded"]],
}  # fmt: skip

# `quasar env` is the real command; any other subcommand records what it was started with.
RECORDER = """\
import json, os, sys
if sys.argv[1:2] == ["env"]:
    from quasar.cli import main
    sys.argv[0] = "quasar"
    main()
else:
    from quasar.config import get_settings
    settings = get_settings()
    with open(os.environ["RECORD"], "a") as out:
        out.write(json.dumps({"argv": sys.argv[1:], "env": dict(os.environ),
                              "weight_split": settings.weight_split,
                              "allowed_repo_hosts": settings.allowed_repo_hosts}) + "\\n")
"""


def _setup(tmp_path: Path, script: str, env_text: str) -> tuple[Path, dict[str, str]]:
    shutil.copy2(ROOT / script, tmp_path / script)
    (tmp_path / ".env").write_text(env_text)
    recorder = tmp_path / "recorder.py"
    recorder.write_text(RECORDER)
    quasar = tmp_path / "quasar"
    quasar.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{recorder}" "$@"\n')
    quasar.chmod(0o755)
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    return tmp_path / script, {**base, "QUASAR": str(quasar), "RECORD": str(tmp_path / "record.jsonl")}


def _records(tmp_path: Path) -> list[dict]:
    record = tmp_path / "record.jsonl"
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_start_script_runs_with_the_shipped_env_example_as_env(script: str, tmp_path: Path) -> None:
    example = (ROOT / ".env.example").read_text()
    path, env = _setup(tmp_path, script, example)
    done = subprocess.run([str(path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "command not found" not in done.stderr
    records = _records(tmp_path)
    assert [r["argv"] for r in records] == SCRIPTS[script]
    expected = {k: v for k, v in dotenv_values(ROOT / ".env.example").items() if v is not None}
    for record in records:
        seen = {k: record["env"].get(k) for k in expected}
        assert seen == expected  # every variable exported exactly as the settings' parser reads it
        assert record["weight_split"] == [0.60, 0.25, 0.10, 0.05]
        assert record["allowed_repo_hosts"] == ["github.com", "gitlab.com", "huggingface.co"]


def test_env_values_are_data_never_shell_code_and_the_environment_wins(tmp_path: Path) -> None:
    text = (
        "NETUID=7\n"
        "WALLET_HOTKEY=from-dotenv\n"
        "GITHUB_TOKEN=$(touch pwned); `touch pwned` && echo hi\n"
        "MINER_LLM_API_KEY='semi; rm -rf / \"quoted\" it\\'s'\n"
        'TARGET_REPO_URL="https://example.com/a b?x=1&y=$2"\n'
        "DOCKER_USERNAME=  spaced value  # a comment\n"
    )
    path, env = _setup(tmp_path, "START_VALIDATOR.sh", text)
    env["NETUID"] = "9"  # the environment wins over .env, as in the settings
    done = subprocess.run([str(path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "pwned").exists()
    (record,) = _records(tmp_path)
    assert record["argv"][record["argv"].index("--netuid") + 1] == "9"
    assert record["argv"][record["argv"].index("--wallet.hotkey") + 1] == "from-dotenv"
    parsed = dotenv_values(tmp_path / ".env")
    for key in ("GITHUB_TOKEN", "MINER_LLM_API_KEY", "TARGET_REPO_URL", "DOCKER_USERNAME"):
        assert record["env"][key] == parsed[key], key


def test_quasar_env_prints_shell_safe_exports_of_env(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("A=[1, 2]\nB='x y'\nBARE\nbad-name=1\nC=\nD='unterminated\n")
    env = {k: v for k, v in os.environ.items() if k not in ("A", "B", "C")}
    out = subprocess.run(
        [sys.executable, "-m", "quasar.cli", "env"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["export A='[1, 2]'", "export B='x y'", "export C=''"]
    assert "bad-name" in out.stderr and ".env line 6 is not KEY=value" in out.stderr
    shown = subprocess.run(
        ["bash", "-c", 'eval "$1"; printf "%s|%s|%s" "$A" "$B" "$C"', "-", out.stdout],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert shown.stdout == "[1, 2]|x y|"
