"""``python -m quasar.bench`` end to end: a fresh ``quasar kernel init`` repository passes the bench on
CPU, with the JSON report alone on stdout; a broken kernel exits 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from quasar.bench.schema import BenchReport
from quasar.kernels.template import init_kernel_repo

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    # One thread: another process shares the CPU, and the bench must be cheap enough for CI anyway.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "quasar.bench", *args], cwd=PROJECT_ROOT, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_template_repository_passes_the_bench(tmp_path: Path) -> None:
    repo = tmp_path / "submission"
    init_kernel_repo(repo)
    result = _bench("--repo", str(repo), "--json", "--quick", "--device", "cpu", "--seed", "5")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = BenchReport.from_dict(json.loads(result.stdout))
    assert report.verdict == "pass" and report.entry == "fla.ops.quasar:chunk_quasar" and report.seed == 5
    assert len(report.cases) >= 5 and all(case.passed for case in report.cases)
    assert report.timing is not None and report.timing.baseline_ms and report.timing.speedup
    assert report.layer is not None and report.layer.shape["hidden_size"] == 512
    assert "[bench]" in result.stderr


def test_broken_kernel_exits_one(tmp_path: Path) -> None:
    (tmp_path / "zeros.py").write_text(
        "import torch\n\n\n"
        "def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):\n"
        "    return torch.zeros_like(v), None\n"
    )
    result = _bench(
        "--entry", "zeros:chunk_quasar", "--repo", str(tmp_path), "--json", "--quick", "--no-layer"
    )
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["verdict"] == "fail" and report["reason"] == "incorrect_output"


def test_table_for_people(tmp_path: Path) -> None:
    result = _bench("--entry", "quasar.kernels:chunk_quasar_torch", "--quick", "--no-layer", "--no-baseline")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "correctness" in result.stdout and "timing" in result.stdout and "pass" in result.stdout
