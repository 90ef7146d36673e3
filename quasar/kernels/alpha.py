"""The key-dependent step size of QuasarAttention, the one place its formula lives in PyTorch.

    lam_t   = ||k_t||^2
    alpha_t = (1 - exp(-beta_h * lam_t)) / (lam_t + 1e-8)

alpha_t * lam_t lies in [0, 1), which is what keeps the delta-rule recurrence stable for any k.
This file is copied verbatim into miners' repositories (``fla/ops/quasar/``): it imports torch only.
"""

from __future__ import annotations

import torch

#: Keeps alpha finite for an all-zero key; part of the op's definition (DESIGN §2).
ALPHA_EPS = 1e-8


def quasar_alpha(k: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Step size per token and head.

    Args:
        k: keys ``[B, T, H, K]`` in any floating dtype.
        beta: per-head rate ``[H]``, positive.

    Returns:
        alpha ``[B, T, H]`` in fp32 (fp64 when ``k`` is fp64), differentiable in ``k`` and ``beta``.
    """
    if k.dim() != 4:
        raise ValueError(f"k must be [B, T, H, K], got shape {tuple(k.shape)}")
    if beta.shape != (k.shape[2],):
        raise ValueError(f"beta must be [H] = [{k.shape[2]}], got shape {tuple(beta.shape)}")
    compute = torch.float64 if k.dtype == torch.float64 else torch.float32
    lam = k.to(compute).square().sum(-1)
    # -expm1(-x) is 1 - exp(-x) without cancellation when beta * lam is small.
    return -torch.expm1(-beta.to(device=k.device, dtype=compute) * lam) / (lam + ALPHA_EPS)
