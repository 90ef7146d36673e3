"""QuasarAttention, the op the subnet competes on: its definition, the PyTorch and GPU paths, the layer.

* ``naive_quasar``: the definition (token-by-token recurrence, fp32/fp64), the judge on small shapes.
* ``chunk_quasar_torch``: the chunked PyTorch path, differentiable, any device.
* ``chunk_quasar``: the baseline every submission is timed against (``dispatch``: CUDA tensors go to
  the Triton kernel in ``quasar.kernels.fast`` when Triton and that package are importable;
  everything else goes to ``chunk_quasar_torch``).
* ``quasar_alpha``: the key-dependent step size.
* ``QuasarAttention``: the nn.Module around the op (imported on first use).

Imports torch alone; Triton and the fast kernels load only when a CUDA tensor first asks for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .alpha import quasar_alpha
from .chunked import chunk_quasar_torch
from .dispatch import chunk_quasar
from .reference import naive_quasar

if TYPE_CHECKING:
    from .layer import QuasarAttention

__all__ = ["QuasarAttention", "chunk_quasar", "chunk_quasar_torch", "naive_quasar", "quasar_alpha"]


def __getattr__(name: str) -> Any:
    # The layer pulls in torch.nn; the op alone should not.
    if name == "QuasarAttention":
        from .layer import QuasarAttention

        return QuasarAttention
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
