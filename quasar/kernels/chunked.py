"""QuasarAttention in chunks, in plain differentiable PyTorch: the readable fast path.

Within a chunk of C tokens starting from state ``h``, the updates ``d_t = alpha_t (v_t - S_{t-1}^T k_t)``
satisfy a unit lower-triangular system (the WY/UT form of the delta rule)::

    (I + tril(diag(alpha) K K^T, -1)) d = diag(alpha) (V - K h)
    A = (I + tril(diag(alpha) K K^T, -1))^-1 diag(alpha),   w = A K,   u = A V,   d = u - w h

so the whole chunk is a few matrix products, and only the state is carried from chunk to chunk::

    o = Q h + tril(Q K^T) d          h <- h + K^T d

Every step is an ordinary autograd op, so gradients for q, k, v and beta come for free. It runs on any
device; on GPU it doubles as the trusted fp32 reference at shapes where the token loop is too slow.
This file is copied verbatim into miners' repositories (``fla/ops/quasar/``): it imports torch and its
sibling modules only.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .reference import apply_per_sequence

DEFAULT_CHUNK_SIZE = 64


def _chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    alpha: torch.Tensor,
    state: torch.Tensor,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked recurrence over ``[B, T, H, *]`` inputs from ``state [B, H, K, V]``; all in one dtype."""
    batch, seq_len, heads, _ = q.shape
    value_dim = v.shape[-1]
    if seq_len == 0:
        return v.new_zeros(v.shape), state
    num_chunks = -(-seq_len // chunk_size)
    pad = num_chunks * chunk_size - seq_len

    def to_chunks(x: torch.Tensor) -> torch.Tensor:
        # [B, T, H, D] -> [B, H, n, C, D]: the time axis is moved next to the features *before* it is
        # split, so each chunk holds consecutive tokens of one head. Zero padding (k = 0, alpha = 0)
        # leaves both the outputs of real tokens and the state unchanged.
        x = F.pad(x.transpose(1, 2), (0, 0, 0, pad))
        return x.reshape(batch, heads, num_chunks, chunk_size, x.shape[-1])

    qc, kc, vc = to_chunks(q), to_chunks(k), to_chunks(v)
    ac = F.pad(alpha.transpose(1, 2), (0, pad)).reshape(batch, heads, num_chunks, chunk_size)

    strictly_lower = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril(-1)
    lower = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()
    eye = torch.eye(chunk_size, dtype=q.dtype, device=q.device)

    gram = ac.unsqueeze(-1) * (kc @ kc.transpose(-1, -2))
    system = eye + gram.masked_fill(~strictly_lower, 0)
    # A = system^-1 diag(alpha): a triangular solve, never an explicit inverse.
    a_mat = torch.linalg.solve_triangular(system, torch.diag_embed(ac), upper=False, unitriangular=True)
    w, u = a_mat @ kc, a_mat @ vc
    attn = (qc @ kc.transpose(-1, -2)).masked_fill(~lower, 0)

    outputs = []
    for i in range(num_chunks):
        delta = u[:, :, i] - w[:, :, i] @ state
        outputs.append(qc[:, :, i] @ state + attn[:, :, i] @ delta)
        state = state + kc[:, :, i].transpose(-1, -2) @ delta
    o = torch.stack(outputs, dim=2).reshape(batch, heads, num_chunks * chunk_size, value_dim)
    return o[:, :, :seq_len].transpose(1, 2), state


def chunk_quasar_torch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """QuasarAttention by chunks, with ``chunk_quasar``'s signature and return convention.

    Args:
        q, k: ``[B, T, H, K]``; v: ``[B, T, H, V]``; beta: ``[H]`` (> 0).
        initial_state: ``[N, H, K, V]`` or None; N = B, or the number of sequences in cu_seqlens.
        output_final_state: return the state after the last token of every sequence.
        cu_seqlens: ``[N+1]`` offsets of packed variable-length sequences (requires B == 1).
        chunk_size: tokens per chunk; any T works (the last chunk is padded).

    Returns:
        ``(o, final_state)``: o ``[B, T, H, V]`` in q's dtype; final_state ``[N, H, K, V]`` in fp32
        (fp64 for fp64 inputs) or None. Computed in fp32, or fp64 when the inputs are fp64.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of tokens, got {chunk_size}")
    core = functools.partial(_chunked, chunk_size=chunk_size)
    return apply_per_sequence(core, q, k, v, beta, initial_state, output_final_state, cu_seqlens)
