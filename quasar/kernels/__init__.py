"""QuasarAttention, the op the subnet competes on: its definition, the PyTorch and GPU paths, the layer.

* ``naive_quasar``: the definition (token-by-token recurrence, fp32/fp64), the judge on small shapes.
* ``chunk_quasar_torch``: the chunked PyTorch path, differentiable, any device.
* ``chunk_quasar``: the baseline every submission is timed against. CUDA tensors go to the Triton
  kernel in ``quasar.kernels.fast`` when Triton and that package are importable; everything else goes
  to ``chunk_quasar_torch``.
* ``quasar_alpha``: the key-dependent step size.
* ``QuasarAttention``: the nn.Module around the op (imported on first use).

Imports torch alone; Triton and the fast kernels load only when a CUDA tensor first asks for them.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from typing import TYPE_CHECKING, Any

import torch

from .alpha import quasar_alpha
from .chunked import chunk_quasar_torch
from .reference import naive_quasar

if TYPE_CHECKING:
    from .layer import QuasarAttention

__all__ = ["QuasarAttention", "chunk_quasar", "chunk_quasar_torch", "naive_quasar", "quasar_alpha"]


@cache
def _fast_kernel() -> Any | None:
    """The Triton ``chunk_quasar`` when Triton and ``quasar.kernels.fast`` exist, else None.

    A fast package that exists but fails to import raises: a broken baseline must be loud, not
    silently replaced by the slow path.
    """
    if importlib.util.find_spec("triton") is None or importlib.util.find_spec(f"{__name__}.fast") is None:
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
    """The baseline QuasarAttention op (DESIGN §2): ``(o [B,T,H,V] in q's dtype, final_state fp32 or None)``."""
    if q.is_cuda:
        fast = _fast_kernel()
        if fast is not None:
            return fast(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
    return chunk_quasar_torch(q, k, v, beta, initial_state, output_final_state, cu_seqlens)


def __getattr__(name: str) -> Any:
    # The layer pulls in torch.nn; the op alone should not.
    if name == "QuasarAttention":
        from .layer import QuasarAttention

        return QuasarAttention
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
