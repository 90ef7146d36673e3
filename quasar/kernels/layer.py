"""``QuasarAttention``: the attention layer around the op, with the original subnet's layer surface.

hidden -> q, k, v projections -> short causal depthwise conv + SiLU -> chunk_quasar with a per-head
beta = softplus(parameter) -> RMS norm per head gated by SiLU(g projection) -> output projection.
The original subnet's layer benchmark (d=512, 8 heads x 64, T=100,000) runs on it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

QuasarOp = Callable[..., tuple[torch.Tensor, torch.Tensor | None]]


def _causal_depthwise_conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x [B, T, C]`` through a causal depthwise conv (``weight [C, 1, W]``), then SiLU."""
    width = weight.shape[-1]
    y = F.conv1d(F.pad(x.transpose(1, 2), (width - 1, 0)), weight, groups=x.shape[-1])
    # Contiguous [B, T, C], so the op sees the [B, T, H, K] memory layout kernels are written for.
    return F.silu(y.transpose(1, 2).contiguous())


class QuasarAttention(nn.Module):
    """QuasarAttention layer over ``[B, T, hidden_size]`` activations.

    Args:
        hidden_size: model width D.
        num_heads: H.
        head_dim: per-head key/value width (default ``hidden_size // num_heads``).
        conv_size: width of the short causal convolution on q, k and v.
        norm_eps: epsilon of the gated RMS norm.
        op: the attention op (``chunk_quasar``'s signature); defaults to ``quasar.kernels.chunk_quasar``
            so the layer can also be run on a submitted kernel.
    """

    def __init__(
        self,
        hidden_size: int = 512,
        num_heads: int = 8,
        head_dim: int | None = None,
        conv_size: int = 4,
        norm_eps: float = 1e-5,
        op: QuasarOp | None = None,
    ) -> None:
        super().__init__()
        if head_dim is None:
            if hidden_size % num_heads:
                raise ValueError(
                    f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}; pass head_dim"
                )
            head_dim = hidden_size // num_heads
        self.hidden_size, self.num_heads, self.head_dim = hidden_size, num_heads, head_dim
        self.norm_eps = norm_eps
        inner = num_heads * head_dim
        self.q_proj = nn.Linear(hidden_size, inner, bias=False)
        self.k_proj = nn.Linear(hidden_size, inner, bias=False)
        self.v_proj = nn.Linear(hidden_size, inner, bias=False)
        self.g_proj = nn.Linear(hidden_size, inner, bias=False)
        self.o_proj = nn.Linear(inner, hidden_size, bias=False)
        self.q_conv = nn.Conv1d(inner, inner, conv_size, groups=inner, bias=False)
        self.k_conv = nn.Conv1d(inner, inner, conv_size, groups=inner, bias=False)
        self.v_conv = nn.Conv1d(inner, inner, conv_size, groups=inner, bias=False)
        # beta = softplus(beta_param) > 0 for every head; softplus(1) ~ 1.31.
        self.beta_param = nn.Parameter(torch.ones(num_heads))
        self.o_norm_weight = nn.Parameter(torch.ones(head_dim))
        self._op = op

    @property
    def beta(self) -> torch.Tensor:
        """Per-head rate ``[H]`` in fp32, as the op requires."""
        return F.softplus(self.beta_param.float())

    def _conv(self, x: torch.Tensor, conv: nn.Conv1d, bounds: list[tuple[int, int]] | None) -> torch.Tensor:
        if bounds is None:
            return _causal_depthwise_conv(x, conv.weight)
        # Packed sequences: the convolution must not see the previous sequence's tokens.
        return torch.cat([_causal_depthwise_conv(x[:, a:b], conv.weight) for a, b in bounds], dim=1)

    def forward(
        self,
        hidden_states: torch.Tensor,
        cu_seqlens: torch.Tensor | None = None,
        initial_state: torch.Tensor | None = None,
        output_final_state: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``hidden_states [B, T, D]`` -> ``(output [B, T, D], final_state [N, H, K, V] fp32 or None)``."""
        if hidden_states.dim() != 3 or hidden_states.shape[-1] != self.hidden_size:
            raise ValueError(
                f"hidden_states must be [B, T, {self.hidden_size}], got {tuple(hidden_states.shape)}"
            )
        batch, seq_len, _ = hidden_states.shape
        bounds = None
        if cu_seqlens is not None:
            offsets = [int(x) for x in cu_seqlens.tolist()]
            bounds = list(zip(offsets, offsets[1:], strict=False))
        heads, dim = self.num_heads, self.head_dim
        q = self._conv(self.q_proj(hidden_states), self.q_conv, bounds).view(batch, seq_len, heads, dim)
        k = self._conv(self.k_proj(hidden_states), self.k_conv, bounds).view(batch, seq_len, heads, dim)
        v = self._conv(self.v_proj(hidden_states), self.v_conv, bounds).view(batch, seq_len, heads, dim)

        op = self._op
        if op is None:
            from . import chunk_quasar as op
        o, final_state = op(q, k, v, self.beta, initial_state, output_final_state, cu_seqlens)

        gate = self.g_proj(hidden_states).view(batch, seq_len, heads, dim)
        o32 = o.float()
        normed = (
            o32
            * torch.rsqrt(o32.square().mean(-1, keepdim=True) + self.norm_eps)
            * self.o_norm_weight.float()
        )
        gated = (normed * F.silu(gate.float())).to(hidden_states.dtype)
        return self.o_proj(gated.reshape(batch, seq_len, heads * dim)), final_state
