"""Strategy pieces that need no bench: patch extraction, the keep-or-discard rule (the tuner: test_tune.py)."""

from __future__ import annotations

import threading
from pathlib import Path

from quasar.miner.bench import BenchRunner, scrubbed_env
from quasar.miner.state import BenchResult, MinerState
from quasar.miner.strategies import Context
from quasar.miner.strategies.agent import extract_patch


def result(speedup: float | None, verdict: str = "pass", median: float | None = 10.0) -> BenchResult:
    return BenchResult(
        tree_hash="t",
        verdict=verdict,
        speedup=speedup,
        median_ms=median,
        reason=None if verdict == "pass" else "wrong_output",
    )


def test_keep_only_correct_and_faster_by_the_margin(tmp_path: Path) -> None:
    ctx = Context(None, MinerState(), lambda: None, BenchRunner(), threading.Event(), min_improvement=0.05)  # type: ignore[arg-type]
    assert ctx.compare(result(1.2), result(1.0))[0]
    keep, why = ctx.compare(result(1.03), result(1.0))
    assert not keep and "needs" in why
    keep, why = ctx.compare(result(None, "fail"), result(1.0))
    assert not keep and "wrong_output" in why
    assert ctx.compare(result(0.5), result(None, "fail"))[0]  # anything correct beats a broken HEAD
    assert ctx.compare(result(None, median=5.0), result(None, median=10.0))[0]


def test_extract_patch_from_fenced_or_raw_answers() -> None:
    diff = "--- a/fla/ops/quasar/x.py\n+++ b/fla/ops/quasar/x.py\n@@ -1 +1 @@\n-a\n+b\n"
    assert extract_patch(f"Here:\n```diff\n{diff}```\nDone.") == diff
    assert extract_patch(f"```\n{diff}```") == diff
    assert extract_patch(f"Sure.\n{diff}") == diff
    assert extract_patch("I cannot help with that.") is None


def test_bench_child_never_sees_secrets(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_x")
    monkeypatch.setenv("MINER_LLM_API_KEY", "sk-x")
    monkeypatch.setenv("QUASAR_GIT_TOKEN", "t")
    env = scrubbed_env()
    assert not {"GITHUB_TOKEN", "MINER_LLM_API_KEY", "QUASAR_GIT_TOKEN"} & env.keys() and "PATH" in env
    argv, env = BenchRunner(device="cuda:1", quick=True).command(Path("/r"))
    assert argv[-3:] == ["--quick", "--device", "cuda"] and env["CUDA_VISIBLE_DEVICES"] == "1"
