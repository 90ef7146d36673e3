"""Which implementation ``chunk_quasar`` runs: the Triton kernels in ``fast/`` for CUDA tensors when
Triton and that package are importable, the chunked PyTorch path everywhere else.

The one copy of the dispatcher: the subnet's baseline imports it from ``quasar.kernels``, and
``quasar kernel init`` copies this file verbatim into a miner's ``fla/ops/quasar/``. Imports torch
alone; Triton and the fast kernels load only when a CUDA tensor first asks for them.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from typing import Any

import torch

from .chunked import chunk_quasar_torch


@cache
def _fast_kernel() -> Any | None:
    """The Triton ``chunk_quasar`` when Triton and the ``fast`` package beside this file exist, else
    None. A fast package that exists but fails to import raises: a broken kernel must be loud, not
    silently replaced by the slow path."""
    if importlib.util.find_spec("triton") is None or importlib.util.find_spec(f"{__package__}.fast") is None:
        return None
    from .fast import chunk_quasar as fast_chunk_quasar

    return fast_chunk_quasar


def chunk_quasar(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """QuasarAttention (DESIGN §2): ``(o [B, T, H, V] in q's dtype, final_state [N, H, K, V] fp32 or None)``."""
    if q.is_cuda:
        fast = _fast_kernel()
        if fast is not None:
            return fast(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
    return chunk_quasar_torch(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
