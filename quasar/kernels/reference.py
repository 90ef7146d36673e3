"""The definition of QuasarAttention: the naive token-by-token recurrence (DESIGN §2).

For each sequence and head, with state ``S [K, V]`` starting at ``initial_state`` (zeros if none)::

    S_t = S_{t-1} + alpha_t * k_t (v_t - S_{t-1}^T k_t)^T
    o_t = S_t^T q_t

It is the judge every faster path is checked against, so it is written for clarity, not speed: it loops
over time and is vectorised over batch and heads only. It also owns the input validation that every
PyTorch path of the op shares. This file is copied verbatim into miners' repositories
(``fla/ops/quasar/``): it imports torch and its sibling modules only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .alpha import quasar_alpha


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The precision the PyTorch paths compute in: fp64 for fp64 inputs, fp32 for everything else."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def validate_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
) -> list[tuple[int, int]] | None:
    """Check the ``chunk_quasar`` contract and raise ``ValueError`` saying what is wrong.

    Returns the ``(start, end)`` token range of every packed sequence when ``cu_seqlens`` is given,
    else ``None``.
    """
    for name, x in (("q", q), ("k", k), ("v", v), ("beta", beta)):
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if q.dim() != 4:
        raise ValueError(f"q must be [B, T, H, K], got shape {tuple(q.shape)}")
    if k.shape != q.shape:
        raise ValueError(f"k must have q's shape {tuple(q.shape)} ([B, T, H, K]), got {tuple(k.shape)}")
    if v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"v must be [B, T, H, V] with q's B, T, H {tuple(q.shape[:3])}, got {tuple(v.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k and v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k and v must be on one device, got {q.device}, {k.device}, {v.device}")
    batch, seq_len, heads, key_dim = q.shape
    value_dim = v.shape[-1]
    if beta.shape != (heads,):
        raise ValueError(f"beta must be [H] = [{heads}] (one rate per head), got shape {tuple(beta.shape)}")

    bounds: list[tuple[int, int]] | None = None
    num_states = batch
    if cu_seqlens is not None:
        if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
            raise ValueError("cu_seqlens must be a 1-D tensor [N+1] of sequence offsets starting at 0")
        if cu_seqlens.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"cu_seqlens must be int32 or int64, got {cu_seqlens.dtype}")
        if batch != 1:
            raise ValueError(f"cu_seqlens packs sequences along T, so B must be 1; got B={batch}")
        offsets = [int(x) for x in cu_seqlens.tolist()]
        if offsets[0] != 0 or offsets[-1] != seq_len:
            raise ValueError(
                f"cu_seqlens must start at 0 and end at T={seq_len}, got {offsets[0]}..{offsets[-1]}"
            )
        if any(b < a for a, b in zip(offsets, offsets[1:], strict=False)):
            raise ValueError("cu_seqlens must be non-decreasing")
        bounds = list(zip(offsets, offsets[1:], strict=False))
        num_states = len(bounds)

    if initial_state is not None:
        expected = (num_states, heads, key_dim, value_dim)
        if not isinstance(initial_state, torch.Tensor) or tuple(initial_state.shape) != expected:
            got = (
                tuple(initial_state.shape) if isinstance(initial_state, torch.Tensor) else type(initial_state)
            )
            raise ValueError(
                f"initial_state must be [N, H, K, V] = {list(expected)} "
                f"(N = {'number of sequences in cu_seqlens' if bounds is not None else 'B'}), got {got}"
            )
    return bounds


def _recurrence(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, alpha: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the recurrence over ``[B, T, H, *]`` inputs from ``state [B, H, K, V]``; all in one dtype."""
    outputs = []
    for t in range(q.shape[1]):
        q_t, k_t, v_t, a_t = q[:, t], k[:, t], v[:, t], alpha[:, t]
        # Prediction of v_t by the current state, then a step of size alpha_t towards v_t.
        predicted = (k_t.unsqueeze(-2) @ state).squeeze(-2)
        state = state + (a_t.unsqueeze(-1) * k_t).unsqueeze(-1) * (v_t - predicted).unsqueeze(-2)
        outputs.append((q_t.unsqueeze(-2) @ state).squeeze(-2))
    if not outputs:
        return v.new_zeros(v.shape), state
    return torch.stack(outputs, dim=1), state


def naive_quasar(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """QuasarAttention by its definition, with exactly ``chunk_quasar``'s signature.

    Args:
        q, k: ``[B, T, H, K]``; v: ``[B, T, H, V]``; beta: ``[H]`` (> 0).
        initial_state: ``[N, H, K, V]`` or None (zeros); N = B, or the number of sequences in cu_seqlens.
        output_final_state: return the state after the last token of every sequence.
        cu_seqlens: ``[N+1]`` offsets of packed variable-length sequences (requires B == 1).

    Returns:
        ``(o, final_state)``: o ``[B, T, H, V]`` in q's dtype; final_state ``[N, H, K, V]`` in fp32
        (fp64 for fp64 inputs) or None. Computed in fp32, or fp64 when the inputs are fp64.
    """
    return apply_per_sequence(_recurrence, q, k, v, beta, initial_state, output_final_state, cu_seqlens)


#: ``core(q, k, v, alpha, states) -> (o, final_states)`` on equal-length sequences in the compute dtype.
Core = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]
]


def apply_per_sequence(
    core: Core,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    initial_state: torch.Tensor | None,
    output_final_state: bool,
    cu_seqlens: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The ``chunk_quasar`` contract around a core: checks, compute dtype, alpha, initial states, and
    packed sequences run one at a time, each from its own state. Shared by every PyTorch path."""
    bounds = validate_inputs(q, k, v, beta, initial_state, cu_seqlens)
    dtype = compute_dtype(q.dtype)
    batch, _, heads, key_dim = q.shape
    value_dim = v.shape[-1]
    qc, kc, vc = q.to(dtype), k.to(dtype), v.to(dtype)
    alpha = quasar_alpha(k, beta).to(dtype)
    num_states = batch if bounds is None else len(bounds)
    if initial_state is None:
        states = qc.new_zeros(num_states, heads, key_dim, value_dim)
    else:
        states = initial_state.to(device=q.device, dtype=dtype)

    if bounds is None:
        o, final = core(qc, kc, vc, alpha, states)
    else:
        pieces, finals = [], []
        for i, (start, end) in enumerate(bounds):
            o_i, h_i = core(
                qc[:, start:end], kc[:, start:end], vc[:, start:end], alpha[:, start:end], states[i : i + 1]
            )
            pieces.append(o_i)
            finals.append(h_i)
        o, final = torch.cat(pieces, dim=1), torch.cat(finals, dim=0)
    return o.to(q.dtype), (final if output_final_state else None)
