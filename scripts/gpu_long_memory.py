"""On a GPU: does the fast baseline pass every correctness case, slice by slice, and do approximate
kernels built on it fail? One run, one JSON line per measurement.

For every CUDA correctness case (``quasar.bench.cases``) and two seeds: the fast Triton kernel's
relative L2 error overall and on its worst (sequence, head) slice, and the seconds spent drawing the
inputs, computing the fp32 reference and running the kernel. Then approximate kernels wrapped around
the same fast kernel (a restart window with a warm-up prefix, a decayed or dropped initial state) on
the long-memory benchmark-shape cases, judged by the evaluation's own ``check_result``.

Usage: ``PYTHONUNBUFFERED=1 python scripts/gpu_long_memory.py [--out FILE]`` (default
``$OUT/long_memory.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quasar.bench.cases import case_seed, correctness_cases, make_inputs, reference_outputs  # noqa: E402
from quasar.bench.check import check_result, tolerance_for  # noqa: E402
from quasar.kernels.fast import chunk_quasar  # noqa: E402

Kernel = Callable[..., tuple[torch.Tensor, torch.Tensor | None]]


def windowed(base: Kernel, window: int, warmup: int) -> Kernel:
    """Each window restarts from a state rebuilt from zero over the ``warmup`` tokens before it."""

    def kernel(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
        t = q.shape[1]
        if cu_seqlens is not None or t <= window:
            return base(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
        outs, state, last = [], initial_state, None
        for s in range(0, t, window):
            e = min(s + window, t)
            if s > 0:
                w0 = max(0, s - warmup)
                state = base(q[:, w0:s], k[:, w0:s], v[:, w0:s], beta, None, True)[1]
            o, last = base(q[:, s:e], k[:, s:e], v[:, s:e], beta, state, True)
            outs.append(o)
        return torch.cat(outs, dim=1), (last if output_final_state else None)

    return kernel


def faded_initial_state(base: Kernel, tokens: float) -> Kernel:
    """The initial state's share of the output (it is linear in it) fades over ``tokens``."""

    def kernel(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
        if initial_state is None or cu_seqlens is not None:
            return base(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
        o1, f1 = base(q, k, v, beta, initial_state, True)
        o0, f0 = base(q, k, v, beta, None, True)
        fade = torch.exp(-torch.arange(q.shape[1], device=q.device) / tokens).view(1, -1, 1, 1)
        o = (o0.float() + fade * (o1.float() - o0.float())).to(o1.dtype)
        final = f0 + float(torch.exp(torch.tensor(-q.shape[1] / tokens))) * (f1 - f0)
        return o, (final if output_final_state else None)

    return kernel


def dropped_initial_state(base: Kernel, after: int) -> Kernel:
    """Exact for ``after`` tokens, then as if the sequence had started from zero."""

    def kernel(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
        if initial_state is None or cu_seqlens is not None:
            return base(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
        o = base(q, k, v, beta, initial_state, False)[0].clone()
        o0, f0 = base(q, k, v, beta, None, True)
        o[:, after:] = o0[:, after:]
        return o, (f0 if output_final_state else None)

    return kernel


def seconds(fn: Callable[..., object], *args: object, **kwargs: object) -> tuple[Any, float]:
    """``fn(*args, **kwargs)`` and the seconds it took, the GPU's work included."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    value = fn(*args, **kwargs)
    torch.cuda.synchronize()
    return value, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "long_memory.jsonl"))
    args = parser.parse_args()
    out = open(args.out, "w")  # noqa: SIM115 - one file for the whole run

    def emit(**row: object) -> None:
        out.write(json.dumps(row) + "\n")
        out.flush()
        print(json.dumps(row), flush=True)

    device = torch.device("cuda", torch.cuda.current_device())
    emit(kind="device", name=torch.cuda.get_device_name(), torch=torch.__version__)
    approximations = {
        "window_8192_warmup_2048": windowed(chunk_quasar, 8192, 2048),
        "window_32768_warmup_4096": windowed(chunk_quasar, 32_768, 4096),
        "initial_state_fades_over_1M_tokens": faded_initial_state(chunk_quasar, 1e6),
        "initial_state_dropped_after_10000": dropped_initial_state(chunk_quasar, 10_000),
    }
    for index, spec in enumerate(correctness_cases("cuda", quick=False)):
        for seed in (1, 2):
            inputs, t_inputs = seconds(make_inputs, spec, case_seed(seed, index), device)
            (expected_o, expected_final), t_ref = seconds(reference_outputs, spec, inputs)
            tol = tolerance_for(spec.dtype)
            kernels = {"fast": chunk_quasar}
            if spec.keys in ("low_rank", "tiny") and spec.seqlens is None:
                kernels.update(approximations)
            for name, kernel in kernels.items():
                with torch.no_grad():
                    result, t_kernel = seconds(kernel, *inputs.args())
                outcome, t_check = seconds(
                    check_result, result, expected_o=expected_o, expected_final=expected_final,
                    out_dtype=spec.dtype, device=device, tolerance=tol, bounds=spec.bounds,
                )  # fmt: skip
                emit(
                    kind="case", case=spec.name, shape=spec.shape_dict(), seed=seed, kernel=name,
                    passed=outcome.passed, reason=outcome.reason, rel_error=outcome.rel_error,
                    final_state_rel_error=outcome.final_state_rel_error,
                    worst_slice_rel_error=outcome.worst_slice_rel_error, detail=outcome.detail,
                    tolerance=tol, inputs_s=t_inputs, reference_s=t_ref, kernel_s=t_kernel,
                    check_s=t_check,
                )  # fmt: skip
                del result
            del inputs, expected_o, expected_final
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
