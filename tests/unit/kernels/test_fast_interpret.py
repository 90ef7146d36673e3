"""The fast Triton kernels (``quasar.kernels.fast``) on the CPU, under Triton's interpreter.

The interpreter must be switched on before Triton is imported, and it must not leak into other tests,
so the cases run in one child process (this file run as a script) and each test checks its line of the
child's JSON report. Shapes are tiny (the interpreter runs every program in Python) but cover every
path: several segments per sequence (maps and scan), one segment, T not a multiple of 64, B > 1,
initial and final state, packed sequences with an empty one, K != V, fp16, and the backward.
fp16/fp32 only: the interpreter gets bf16 ``tl.dot`` wrong (a known Triton limitation).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]

# Interpreter arithmetic is plain fp32 (no TF32), so fp32 cases are held far tighter than DESIGN's 2e-3.
TOLERANCE = {"float32": 1e-4, "float16": 1e-2}

# name: (B, T, H, K, V, dtype, packed lengths or None, initial_state, segment_chunks or None)
CASES: dict[str, tuple] = {
    "segments_of_1_chunk": (2, 200, 2, 16, 32, "float32", None, True, 1),
    "segments_of_2_chunks": (1, 300, 2, 16, 32, "float32", None, True, 2),
    "one_segment": (2, 130, 2, 32, 16, "float32", None, True, None),
    "no_initial_state": (1, 150, 2, 16, 16, "float32", None, False, 1),
    "k_wider_than_v": (1, 200, 1, 32, 16, "float32", None, True, 1),
    "fp16": (1, 200, 2, 16, 32, "float16", None, True, 1),
    "packed_segments": (1, 0, 2, 16, 32, "float32", [70, 0, 130, 133], True, 1),
    "packed_one_segment": (1, 0, 2, 16, 32, "float32", [70, 0, 130, 133], False, None),
}


def _shim_numpy_index() -> None:
    """Triton 3.6's interpreter turns 1-element arrays into loop bounds with int(), which NumPy >= 2.4
    refuses (triton-lang/triton#9171, fixed upstream after 3.6); take the element explicitly instead."""
    import numpy as np
    from triton.runtime import interpreter

    patch = interpreter._patch_lang_tensor

    def patched(tensor, scope):
        patch(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(np.asarray(self.handle.data).reshape(-1)[0]))

    interpreter._patch_lang_tensor = patched


def _rel(x, ref) -> float:
    x, ref = x.double(), ref.double()
    if not bool(x.isfinite().all()):
        return float("inf")
    return float((x - ref).norm() / ref.norm().clamp_min(1e-30))


def _run_cases() -> dict[str, dict[str, float]]:
    import torch

    _shim_numpy_index()
    from quasar.kernels.fast import chunk_quasar, quasar_fwd
    from quasar.kernels.reference import naive_quasar

    torch.manual_seed(0)
    report: dict[str, dict[str, float]] = {}
    for name, (B, T, H, K, V, dtype_name, lengths, use_h0, segment_chunks) in CASES.items():
        dtype = getattr(torch, dtype_name)
        cu_seqlens, bounds = None, None
        if lengths is not None:
            offsets = [0]
            for n in lengths:
                offsets.append(offsets[-1] + n)
            T = offsets[-1]
            cu_seqlens = torch.tensor(offsets, dtype=torch.int32)
            bounds = list(zip(offsets, offsets[1:], strict=False))
        N = B if lengths is None else len(lengths)
        q = torch.randn(B, T, H, K).to(dtype)
        k = torch.randn(B, T, H, K).to(dtype)
        v = torch.randn(B, T, H, V).to(dtype)
        beta = torch.rand(H) + 0.5
        h0 = torch.randn(N, H, K, V) if use_h0 else None
        o, ht = quasar_fwd(q, k, v, beta, h0, True, cu_seqlens, bounds, segment_chunks=segment_chunks)
        ref_o, ref_ht = naive_quasar(q.double(), k.double(), v.double(), beta.double(),
                                     h0.double() if h0 is not None else None, True, cu_seqlens)
        report[name] = {"o": _rel(o, ref_o), "final_state": _rel(ht, ref_ht), "tolerance": TOLERANCE[dtype_name]}

    # Backward through the public op (Triton forward, autograd backward) against autograd through the
    # definition in fp64.
    B, T, H, K, V = 2, 80, 2, 16, 32
    # ||k||^2 ~ 1 keeps alpha off saturation, where dbeta ~ exp(-beta ||k||^2) is pure rounding noise.
    leaves = [torch.randn(B, T, H, K), torch.randn(B, T, H, K) * K**-0.5, torch.randn(B, T, H, V),
              torch.rand(H) + 0.5, torch.randn(B, H, K, V)]
    do, dht = torch.randn(B, T, H, V), torch.randn(B, H, K, V)
    grads = []
    for fn, cast in ((chunk_quasar, lambda x: x), (naive_quasar, lambda x: x.double())):
        xs = [cast(x).detach().requires_grad_() for x in leaves]
        o, ht = fn(*xs, output_final_state=True)
        torch.autograd.backward([o, ht], [cast(do), cast(dht)])
        grads.append([x.grad for x in xs])
    report["backward"] = {
        name: _rel(got, ref) for name, got, ref in zip(("dq", "dk", "dv", "dbeta", "dh0"), *grads, strict=True)
    }
    report["backward"]["tolerance"] = 1e-4
    return report


@cache
def _report() -> dict[str, dict[str, float]]:
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, __file__], env=env, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", [*CASES, "backward"])
def test_fast_kernels_match_reference_under_interpreter(case: str) -> None:
    result = dict(_report()[case])
    tolerance = result.pop("tolerance")
    for quantity, error in result.items():
        assert error < tolerance, f"{case}: {quantity} relative error {error:.2e} >= {tolerance:.0e}"


if __name__ == "__main__":
    print(json.dumps(_run_cases()))
