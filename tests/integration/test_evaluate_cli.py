"""``quasar evaluate``: JSON alone on stdout, exit status by verdict, settings from the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from quasar.evaluation.sandbox import SandboxUnavailable, detect
from quasar.kernels.template import init_kernel_repo

REQUIRED = (
    "verdict", "reason", "detail", "cases", "median_ms", "baseline_ms", "speedup", "max_rel_error",
    "peak_mem_mb", "kernel_tree_hash", "log_tail",
)  # fmt: skip


def _quasar(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from quasar.cli import main; main()", *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUASAR_", "SUBTENSOR_"))}
    env.update(extra)
    return env


def test_evaluate_json_pass(tmp_path: Path) -> None:
    try:
        detect()
    except SandboxUnavailable as exc:
        pytest.skip(f"no sandbox here: {exc}")
    repo = tmp_path / "kernel"
    sha = init_kernel_repo(repo)
    env = _env(QUASAR_DEV_MODE="true", EVALUATION_TIMEOUT_SECONDS="240", SANDBOX_MEMORY_MB="4096")
    done = _quasar(
        ["evaluate", "--repo-url", str(repo), "--commit", sha, "--json", "--device", "cpu", "--quick"],
        env,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    for key in REQUIRED:
        assert key in report, key
    assert report["verdict"] == "pass" and report["speedup"] > 0 and len(report["kernel_tree_hash"]) == 40


def test_evaluate_refuses_local_repo_outside_dev_mode(tmp_path: Path) -> None:
    repo = tmp_path / "kernel"
    sha = init_kernel_repo(repo)
    env = _env(QUASAR_DEV_MODE="false", SUBTENSOR_NETWORK="finney")
    done = _quasar(
        ["evaluate", "--repo-url", str(repo), "--commit", sha, "--json", "--device", "cpu"], env, tmp_path
    )
    assert done.returncode == 1, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["verdict"] == "fail" and report["reason"] == "url_not_allowed"
    assert "development mode" in report["detail"]
