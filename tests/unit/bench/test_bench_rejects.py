"""The bench rejects broken kernels, each for the right reason, and passes an honest one.

Each broken kernel is a small module written into a temporary repository and loaded the way a
submission is (``module:function`` from ``--repo``). Most are "almost right": they call the honest
chunked path but make exactly one known mistake.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from quasar.bench import run_bench
from quasar.bench.schema import VERDICT_FAIL, VERDICT_PASS
from quasar.reasons import (
    REASON_ALIASED_OUTPUT,
    REASON_ENTRY_POINT,
    REASON_INCORRECT_OUTPUT,
    REASON_KERNEL_EXCEPTION,
    REASON_NAN_OR_INF,
    REASON_WRONG_SHAPE,
)

HEADER = """
import torch
from quasar.kernels import chunk_quasar_torch

"""

BAD_KERNELS = {
    # The public fork's mistake: [B, T, H, K] memory taken as [B, H, T, K] before chunking.
    "bad_reshape": """
def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    B, T, H, K = q.shape
    V = v.shape[-1]
    q, k, v = (x.reshape(B, H, T, x.shape[-1]).transpose(1, 2) for x in (q, k, v))
    o, state = chunk_quasar_torch(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
    return o.transpose(1, 2).reshape(B, T, H, V), state
""",
    "ignores_initial_state": """
def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    return chunk_quasar_torch(q, k, v, beta, None, output_final_state, cu_seqlens)
""",
    # Treats the packed batch as one sequence (and hands every sequence the same final state).
    "ignores_cu_seqlens": """
def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    if cu_seqlens is None:
        return chunk_quasar_torch(q, k, v, beta, initial_state, output_final_state)
    n = cu_seqlens.numel() - 1
    h0 = None if initial_state is None else initial_state[:1]
    o, state = chunk_quasar_torch(q, k, v, beta, h0, output_final_state)
    return o, (state.expand(n, -1, -1, -1).contiguous() if state is not None else None)
""",
    "returns_zeros": """
def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    B, T, H, K = q.shape
    n = B if cu_seqlens is None else cu_seqlens.numel() - 1
    o = torch.zeros(B, T, H, v.shape[-1], dtype=q.dtype)
    state = torch.zeros(n, H, K, v.shape[-1]) if output_final_state else None
    return o, state
""",
    "returns_nan": """
def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    o, state = chunk_quasar_torch(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
    return torch.full_like(o, float("nan")), state
""",
    # Right only while T <= 2048: everything past it is left at zero.
    "short_sequences_only": """
def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    o, state = chunk_quasar_torch(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
    o = o.clone()
    o[:, 2048:] = 0
    return o, state
""",
    "returns_its_input": """
def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    o, state = chunk_quasar_torch(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
    v.copy_(o)
    return v, state
""",
    "heads_first_output": """
def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    o, state = chunk_quasar_torch(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
    return o.transpose(1, 2).contiguous(), state
""",
    "raises": """
def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    raise RuntimeError("no kernel for this GPU")
""",
    "honest": """
def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    return chunk_quasar_torch(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
""",
}


@pytest.fixture(scope="module")
def kernel_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("kernels")
    for name, body in BAD_KERNELS.items():
        (repo / f"{name}.py").write_text(HEADER + textwrap.dedent(body))
    return repo


def _bench(repo: Path, module: str):
    return run_bench(
        f"{module}:chunk_quasar", repo_path=repo, device="cpu", seed=1234, json_mode=True,
        include_layer=False, baseline=False, quick=True,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("module", "reason", "failing_case"),
    [
        ("bad_reshape", REASON_INCORRECT_OUTPUT, "bench_shape_scaled"),
        ("ignores_initial_state", REASON_INCORRECT_OUTPUT, "initial_state"),
        ("ignores_cu_seqlens", REASON_INCORRECT_OUTPUT, "varlen"),
        ("returns_zeros", REASON_INCORRECT_OUTPUT, "bench_shape_scaled"),
        ("returns_nan", REASON_NAN_OR_INF, "bench_shape_scaled"),
        ("short_sequences_only", REASON_INCORRECT_OUTPUT, "bench_shape_scaled"),
        ("returns_its_input", REASON_ALIASED_OUTPUT, "bench_shape_scaled"),
        ("heads_first_output", REASON_WRONG_SHAPE, "bench_shape_scaled"),
        ("raises", REASON_KERNEL_EXCEPTION, "bench_shape_scaled"),
    ],
)
def test_rejects_broken_kernel(kernel_repo: Path, module: str, reason: str, failing_case: str) -> None:
    report = _bench(kernel_repo, module)
    assert report.verdict == VERDICT_FAIL, report.to_dict()
    assert report.reason == reason, report.detail
    assert report.cases[-1].name == failing_case and not report.cases[-1].passed
    assert all(case.passed for case in report.cases[:-1])
    assert report.timing is None, "a failing kernel is never timed"


def test_passes_honest_kernel(kernel_repo: Path) -> None:
    report = _bench(kernel_repo, "honest")
    assert report.verdict == VERDICT_PASS, report.detail
    assert report.cases and all(case.passed for case in report.cases)
    assert report.max_rel_error is not None and report.max_rel_error < 1e-2
    assert report.timing is not None and report.timing.median_ms > 0


def test_missing_entry_point_fails_clearly(kernel_repo: Path) -> None:
    report = _bench(kernel_repo, "no_such_module")
    assert report.verdict == VERDICT_FAIL and report.reason == REASON_ENTRY_POINT
    assert "no_such_module" in report.detail and "--repo" in report.detail
    report = run_bench("honest:missing_fn", repo_path=kernel_repo, device="cpu", include_layer=False)
    assert report.reason == REASON_ENTRY_POINT and "missing_fn" in report.detail
