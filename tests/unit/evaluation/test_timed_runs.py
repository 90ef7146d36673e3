"""Trusted timing's parts: the shared buffers across the sandbox, and the speed-up's interval."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch

from quasar.bench.cases import CaseSpec
from quasar.evaluation.arena import Arena, slot_layout
from quasar.evaluation.sandbox import Sandbox, SandboxLimits, SandboxUnavailable, detect
from quasar.evaluation.timing_stats import estimate

SPEC = CaseSpec("slot", 1, 64, 2, 8, 8, torch.float16)
LAYOUT = slot_layout(SPEC)


def test_layout_is_aligned_and_sized() -> None:
    fields, slot_bytes = LAYOUT
    assert [f.name for f in fields] == ["q", "k", "v", "beta", "o"]
    assert all(f.offset % 64 == 0 for f in fields) and slot_bytes >= sum(f.nbytes for f in fields)


def test_the_memory_cannot_be_resized_by_the_other_side() -> None:
    import os

    arena = Arena.create(LAYOUT, 2)
    try:
        with pytest.raises(PermissionError):
            os.ftruncate(arena.fd, 1)
        with pytest.raises(PermissionError):
            os.ftruncate(arena.fd, 10 * 2**20)
    finally:
        arena.close()


def test_a_sandboxed_process_reads_inputs_and_writes_outputs(tmp_path: Path) -> None:
    try:
        detect()
    except SandboxUnavailable as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"no sandbox on this machine: {exc}")
    arena = Arena.create(LAYOUT, 2)
    try:
        q, k, v, beta = arena.inputs(1)
        q.copy_(torch.arange(q.numel()).view(q.shape).to(q.dtype))
        code = (
            "import sys, torch\n"
            "from quasar.bench.cases import CaseSpec\n"
            "from quasar.evaluation.arena import Arena, slot_layout\n"
            "spec = CaseSpec('slot', 1, 64, 2, 8, 8, torch.float16)\n"
            "a = Arena.attach(int(sys.argv[1]), slot_layout(spec), 2)\n"
            "q = a.inputs(1)[0]\n"
            "a.output(1).copy_(q * 2)\n"
        )
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        box = Sandbox(SandboxLimits(wall_s=60, memory_bytes=2048 * 2**20, max_pids=64))
        process = box.start(
            [sys.executable, "-I", "-c", code, str(arena.fd)], scratch=scratch, pass_fds=(arena.fd,)
        )
        result = process.finish()
        assert result.returncode == 0, result.output.decode(errors="replace")[-2000:]
        assert torch.equal(arena.output(1), q * 2)
        assert not arena.output(0).any(), "the other slot was left alone"
    finally:
        arena.close()


def test_interval_holds_the_true_ratio_and_narrows_with_pairs() -> None:
    rng = random.Random(1)

    def pairs(n: int, ratio: float) -> list[tuple[float, float]]:
        out = []
        for _ in range(n):
            drift = rng.uniform(0.8, 1.2)  # shared by both sides of a pair
            base = 10.0 * drift * rng.uniform(0.95, 1.05)
            out.append((base, 10.0 / ratio * drift * rng.uniform(0.95, 1.05)))
        return out

    few, many = estimate(pairs(8, 1.5), seed=2), estimate(pairs(64, 1.5), seed=2)
    for est in (few, many):
        assert est.ci_low <= est.speedup <= est.ci_high
        assert est.ci_low < 1.5 * 1.1 and est.ci_high > 1.5 / 1.1
    assert many.ci_high - many.ci_low < few.ci_high - few.ci_low
    assert many.decided(1.01) and many.ci_low > 1.01
    tie = estimate(pairs(16, 1.0), seed=3)
    assert tie.ci_low <= 1.0 <= tie.ci_high
    with pytest.raises(ValueError):
        estimate([(1.0, 1.0)])
