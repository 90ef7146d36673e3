"""Helpers of the miner integration tests: real git repositories, a miner subprocess, log polling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def bare_repo(path: Path) -> Path:
    git("init", "--quiet", "--bare", str(path))
    return path


def remote_refs(path: Path) -> dict[str, str]:
    out = subprocess.run(
        ["git", "--git-dir", str(path), "for-each-ref", "--format=%(objectname) %(refname)"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return {ref: sha for sha, ref in (line.split() for line in out.splitlines())}


def has_object(path: Path, sha: str) -> bool:
    return (
        subprocess.run(["git", "--git-dir", str(path), "cat-file", "-e", sha], capture_output=True).returncode
        == 0
    )


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, proc: subprocess.Popen | None = None,
             log: Path | None = None) -> Any:  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-4000:] if log else ""
            raise AssertionError(f"the miner exited ({proc.returncode}) before {what}:\n{tail}")
        time.sleep(0.2)
    tail = log.read_text()[-4000:] if log else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n{tail}")


def read_state(state_dir: Path) -> dict[str, Any]:
    path = state_dir / "state.json"
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text()))


def start_miner(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    """``python -m neurons.miner ARGS`` as a real process (its own session), stderr+stdout into ``log``."""
    handle = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "neurons.miner", *args],
        cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def base_env(**values: Any) -> dict[str, str]:
    """The test process's environment without settings that could leak in, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "MINER_", "GIT_", "QUASAR_"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    env.update({k: str(v) for k, v in values.items()})
    return env
