"""Constants shared by the fast QuasarAttention kernels, and how a kernel is launched with its warps and stages."""

from __future__ import annotations

import os
from functools import cache

import triton
from triton.runtime.errors import OutOfResources

#: Tokens per chunk: the WY solve works on four 16-token blocks, and 64 keeps every tile a tensor-core shape.
CHUNK_SIZE = 64

#: True when Triton runs kernels on the CPU interpreter (tests); autotuning needs a GPU timer there.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


#: Narrowest tile over K or V; narrower heads are zero-padded up to it. With 16- or 32-wide tiles,
#: Triton 3.6 on an H100 compiled kernels that hit illegal shared-memory addresses (K=64 with V=32,
#: K=16 or 32 with V=16, ...) or returned wrong results (K=16 with V=32 or 64, K=64 with V=16);
#: every K, V in 16..128 is right with 64 (docs/benchmarks.md). The padding costs nothing at 64 and up.
MIN_BLOCK = 64
#: Widest head the kernels take: K or V = 256 did not run on an H100 (docs/benchmarks.md).
MAX_HEAD_DIM = 128


def block_size(n: int) -> int:
    """The tile width that covers ``n`` (K or V): a power of two, at least MIN_BLOCK."""
    return max(MIN_BLOCK, triton.next_power_of_2(n))


def autotune_configs(num_warps: tuple[int, ...], num_stages: tuple[int, ...]) -> list[triton.Config]:
    """Every (warps, stages) pair on a GPU; one config under the interpreter, which cannot time."""
    if INTERPRET:
        return [triton.Config({}, num_warps=num_warps[0], num_stages=num_stages[0])]
    return [triton.Config({}, num_warps=w, num_stages=s) for w in num_warps for s in num_stages]


#: What the autotuner's pick depends on, for every autotuned kernel here.
AUTOTUNE_KEY = ["H", "K", "V", "PRECISION"]


@cache
def _autotuned(kernel: triton.JITFunction, num_warps: tuple[int, ...], num_stages: tuple[int, ...]):
    return triton.autotune(configs=autotune_configs(num_warps, num_stages), key=AUTOTUNE_KEY)(kernel)


def launch(kernel: triton.JITFunction, grid: tuple[int, ...], num_warps: tuple[int, ...],
           num_stages: tuple[int, ...], *args, **kwargs) -> None:  # fmt: skip
    """Run ``kernel`` with the one (warps, stages) pair given, or the autotuner's pick among several.

    The pairs come from the settings (``tuning.choices``). A setting is tuned at one shape but applies
    to all: where its stages do not fit in shared memory (fp32 at K=128 fits one), the launch falls
    back to one stage, as the autotuner would skip that configuration.
    """
    if len(num_warps) > 1 or len(num_stages) > 1:
        _autotuned(kernel, num_warps, num_stages)[grid](*args, **kwargs)
        return
    try:
        kernel[grid](*args, **kwargs, num_warps=num_warps[0], num_stages=num_stages[0])
    except OutOfResources:
        if num_stages[0] == 1:
            raise
        kernel[grid](*args, **kwargs, num_warps=num_warps[0], num_stages=1)


def dot_precision(dtype) -> str:
    """Matrix-unit precision for fp32 operands: 3xTF32 for fp32 inputs (DESIGN's 2e-3 tolerance is
    too tight for one TF32 pass over a long recurrence), plain TF32 for the fp32 intermediates of
    bf16/fp16 inputs, whose own rounding dominates."""
    import torch

    return "tf32x3" if dtype == torch.float32 else "tf32"
