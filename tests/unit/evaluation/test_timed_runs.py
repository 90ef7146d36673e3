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
    # The stricter interval an early stop needs holds the reported one (same resamples).
    data = pairs(12, 1.1)
    wide, narrow = estimate(data, seed=4, level=0.99), estimate(data, seed=4)
    assert wide.ci_low <= narrow.ci_low <= narrow.ci_high <= wide.ci_high
    assert wide.ci_high - wide.ci_low > narrow.ci_high - narrow.ci_low
    with pytest.raises(ValueError):
        estimate(data, level=1.0)


def test_an_exported_kernel_cache_is_merged_entry_by_entry(tmp_path: Path) -> None:
    from quasar.evaluation.kernel_cache import merge_cache

    exported, cache = tmp_path / "exported", tmp_path / "cache"
    for name, text in (("aaa", "new"), ("bbb", "new")):
        (exported / name).mkdir(parents=True)
        (exported / name / "kernel.cubin").write_text(text)
    (cache / "aaa").mkdir(parents=True)
    (cache / "aaa" / "kernel.cubin").write_text("kept")
    merge_cache(exported, cache)
    # An entry already there is never replaced; a new one arrives whole; nothing is left aside.
    assert (cache / "aaa" / "kernel.cubin").read_text() == "kept"
    assert (cache / "bbb" / "kernel.cubin").read_text() == "new"
    assert sorted(p.name for p in cache.iterdir()) == ["aaa", "bbb"]


def _comparison(plan: object | None = None):  # noqa: ANN202 - the class under test
    from quasar.evaluation.timed_runs import ComparisonPlan, TimedComparison

    def no_worker(*_args: object, **_kwargs: object) -> dict[str, object]:
        raise AssertionError("these parts talk to no worker")

    return TimedComparison(SPEC, plan or ComparisonPlan(), 1.01, no_worker)


def test_every_call_is_screened_against_the_baselines_output() -> None:
    from quasar.evaluation.channel import Stop

    comparison = _comparison()
    try:
        gen = torch.Generator().manual_seed(0)
        for slot in range(comparison.plan.slots):
            expected = torch.randn(SPEC.batch, SPEC.seq_len, SPEC.heads, SPEC.value_dim, generator=gen)
            comparison.snapshots["baseline"][slot].copy_(expected)
            # Honest: a little rounding apart.
            comparison.snapshots["entry"][slot].copy_(expected * (1 + 1e-4))
        comparison._screen(first_run=8)
        # One call of four wrong on one head only: the screen names that call.
        comparison.snapshots["entry"][2][..., 1, :] = 0
        with pytest.raises(Stop) as caught:
            comparison._screen(first_run=8)
        assert caught.value.verdict == "fail" and "timed run 10" in caught.value.detail
    finally:
        comparison.close()


def test_kept_calls_are_judged_against_the_fp32_reference() -> None:
    from quasar.bench.cases import make_inputs, reference_outputs

    comparison = _comparison()
    try:
        honest, _ = reference_outputs(SPEC, make_inputs(SPEC, 11, "cpu"))
        comparison._kept[9] = (12, honest.to(SPEC.dtype))  # right values, for other inputs
        comparison._kept[5] = (11, honest.to(SPEC.dtype))
        results = comparison.judge_samples()
        assert [r.name for r in results] == ["timed_run_5", "timed_run_9"]
        assert results[0].passed and results[0].rel_error is not None and results[0].rel_error < 1e-3
        assert not results[1].passed and results[1].reason == "incorrect_output"
        assert comparison._kept == {}
    finally:
        comparison.close()


def test_checked_calls_reach_the_minimum_even_at_probability_zero() -> None:
    from quasar.evaluation.timed_runs import ComparisonPlan

    plan = ComparisonPlan(min_pairs=8, check_probability=0.0, extra_check_probability=0.0, min_samples=2)
    comparison = _comparison(plan)
    try:
        chosen = [comparison._slots_to_check(pair, 0) for pair in range(8)]
        # The last pairs before min_pairs are checked when nothing was: one random call each.
        assert [len(c) for c in chosen] == [0] * 6 + [1, 1]
        assert all(0 <= slot < plan.slots for c in chosen for slot in c)
    finally:
        comparison.close()
    # At probability 1, every pair has exactly one call checked.
    always = _comparison(ComparisonPlan(check_probability=1.0, extra_check_probability=0.0))
    try:
        assert all(len(always._slots_to_check(p, 5)) == 1 for p in range(20))
    finally:
        always.close()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA driver memory needs a GPU")
def test_device_memory_crosses_the_sandbox(tmp_path: Path) -> None:
    device = torch.device("cuda", 0)
    arena = Arena.create(LAYOUT, 2, device)
    try:
        q = arena.inputs(1)[0]
        q.copy_(torch.arange(q.numel(), device=device).view(q.shape).to(q.dtype))
        torch.cuda.synchronize()
        code = (
            "import sys, torch\n"
            "from quasar.bench.cases import CaseSpec\n"
            "from quasar.evaluation.arena import Arena, slot_layout\n"
            "torch.zeros(1, device='cuda')\n"
            "spec = CaseSpec('slot', 1, 64, 2, 8, 8, torch.float16)\n"
            "a = Arena.attach(int(sys.argv[1]), slot_layout(spec), 2, torch.device('cuda'))\n"
            "a.output(1).copy_(a.inputs(1)[0] * 2)\n"
            "torch.cuda.synchronize()\n"
        )
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        box = Sandbox(SandboxLimits(wall_s=120, memory_bytes=16 * 2**30, max_pids=256), gpu_index=0)
        process = box.start(
            [sys.executable, "-I", "-c", code, str(arena.fd)], scratch=scratch, pass_fds=(arena.fd,)
        )
        result = process.finish()
        assert result.returncode == 0, result.output.decode(errors="replace")[-2000:]
        assert torch.equal(arena.output(1), q * 2)
    finally:
        arena.close()


def test_reported_outputs_are_read_only_from_their_allowed_places() -> None:
    """The parent reads an output only where outputs may lie (a slot's ``o`` field; on GPU the pool
    area), and never two calls' outputs from the same memory: a patched worker cannot point the
    parent at its inputs or answer every call with one buffer."""
    from quasar.evaluation.channel import Stop

    comparison = _comparison()
    slots = comparison.plan.slots
    arena = comparison.arenas["entry"]
    try:
        for slot in range(slots):
            arena.output(slot).fill_(slot + 1)
        good = [arena.output_offset(slot) for slot in range(slots)]
        comparison._snapshot("entry", {"outputs": good}, slots)
        assert [float(s[0, 0, 0, 0]) for s in comparison.snapshots["entry"]] == [1.0, 2.0, 3.0, 4.0]

        q_field = next(f for f in LAYOUT[0] if f.name == "q")
        bad_replies = {
            "an input": ([q_field.offset, *good[1:]], "protocol_violation"),
            "inside a slot's output": ([good[0] + 2, *good[1:]], "protocol_violation"),
            "past the end": ([LAYOUT[1] * slots, *good[1:]], "protocol_violation"),
            "not an integer": ([float(good[0]), *good[1:]], "protocol_violation"),
            "too few": (good[:-1], "protocol_violation"),
            "one buffer twice": ([good[0], good[0], *good[2:]], "aliased_output"),
        }
        for what, (offsets, reason) in bad_replies.items():
            with pytest.raises(Stop) as caught:
                comparison._snapshot("entry", {"outputs": offsets}, slots)
            assert (caught.value.verdict, caught.value.reason) == ("fail", reason), what
        # The same report from the trusted baseline's worker is the validator's own trouble.
        with pytest.raises(Stop) as caught:
            comparison._snapshot("baseline", {"outputs": good[:-1]}, slots)
        assert (caught.value.verdict, caught.value.reason) == ("error", "harness_error")
    finally:
        comparison.close()


def test_first_fit_reuses_and_coalesces_what_is_freed() -> None:
    from quasar.evaluation.output_pool import ALIGN, FirstFit

    spans = FirstFit(8 * ALIGN)
    a, b, c = spans.alloc(ALIGN), spans.alloc(2 * ALIGN - 7), spans.alloc(ALIGN)
    assert (a, b, c) == (0, ALIGN, 3 * ALIGN) and spans.used_bytes == 4 * ALIGN
    assert spans.alloc(5 * ALIGN) is None, "only four blocks are left"
    assert spans.free(b) and not spans.free(b), "a span is freed once"
    assert spans.alloc(2 * ALIGN) == ALIGN, "the first hole that fits"
    for offset in (a, ALIGN, c):
        spans.free(offset)
    assert spans.used_bytes == 0 and spans.alloc(8 * ALIGN) == 0, "every hole merged back into one"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="a CUDA memory pool needs a GPU")
def test_timed_calls_allocate_in_the_shared_pool_area() -> None:
    """What a kernel allocates while the pool serves lies in the parent's memory, where the parent
    reads it without a copy; what does not fit still runs (outside the area, to be copied)."""
    from quasar.evaluation.arena import pool_bytes
    from quasar.evaluation.output_pool import OutputPool

    device = torch.device("cuda", 0)
    arena = Arena.create(LAYOUT, 2, device, pool_bytes(LAYOUT, 2))
    o = None
    try:
        pool = OutputPool(arena.pool_address, arena.pool_bytes, device)
        with torch.no_grad(), pool.serving():
            o = torch.full(
                (SPEC.batch, SPEC.seq_len, SPEC.heads, SPEC.value_dim), 3.0, dtype=SPEC.dtype, device=device
            )
            too_big = torch.empty(2 * arena.pool_bytes, dtype=torch.uint8, device=device)
        torch.cuda.synchronize()
        offset = pool.offset_of(o)
        assert offset is not None and pool.offset_of(too_big) is None and pool.overflow
        assert torch.equal(arena.output_at(arena.pool_offset + offset), o)
        outside = torch.empty_like(o)
        assert pool.offset_of(outside) is None and pool.offset_of(o[..., :4]) is None
        del too_big
        torch.cuda.empty_cache()
    finally:
        del o
        arena.close()
