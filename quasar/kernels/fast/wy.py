"""Triton kernel: the step size alpha and the WY form of each 64-token chunk, in one pass.

For a chunk with keys ``K_c``, values ``V_c`` and step sizes ``a`` (alpha of DESIGN §2, computed here
from the keys so that it is part of the timed op and never touches memory)::

    A = tril(diag(a) K_c K_c^T, -1)          (strictly lower, 64 x 64)
    w = (I + A)^-1 diag(a) K_c               u = (I + A)^-1 diag(a) V_c

so that a chunk that starts from state ``h`` adds ``K_c^T (u - w h)`` to it. ``(I + A)`` is unit lower
triangular. Its four 16 x 16 diagonal blocks are inverted together by forward substitution in
registers (16 steps on one [4, 16, 16] tensor); two doubling steps (16 -> 32 -> 64) add the
off-diagonal blocks with full-tile matrix products, so the whole chunk is seven 64-wide products.
The inverse stays in fp32 until it multiplies ``diag(a) K`` and ``diag(a) V``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .config import CHUNK_SIZE, block_size, dot_precision, launch
from .tuning import Settings, choices, settings_for


@triton.jit
def _alpha(b_k, beta):
    """alpha for each row of a key tile, in fp32; 1 - exp(-x) by its series where it would cancel."""
    b_kf = b_k.to(tl.float32)
    lam = tl.sum(b_kf * b_kf, 1)
    x = beta * lam
    one_minus_exp = tl.where(x < 1e-3, x * (1.0 - x * (0.5 - x / 6.0)), 1.0 - tl.exp(-x))
    # 1e-8 is part of the op's definition (DESIGN §2): it keeps alpha finite (zero) for a zero key.
    return one_minus_exp / (lam + 1e-8)


@triton.jit
def _inverse_of_diagonal_blocks(a, BT: tl.constexpr, BS: tl.constexpr):
    """(I + a)^-1 restricted to the BS x BS diagonal blocks, for a strictly lower BT x BT fp32 tile.

    The BT / BS diagonal blocks are gathered into one [NB, BS, BS] tensor and solved together by
    forward substitution (BS steps), then put back on the diagonal of a [BT, BT] tile.
    """
    NB: tl.constexpr = BT // BS
    rows = tl.arange(0, BT)
    same_block = (rows[:, None] // BS) == (rows[None, :] // BS)
    # [BT, BT] -> [NB, BS, NB, BS]: off-diagonal blocks are masked to 0, so summing over the block
    # column index picks each row block's diagonal block.
    blocks = tl.sum(tl.reshape(tl.where(same_block, a, 0.0), (NB, BS, NB, BS)), 2)
    r = tl.arange(0, BS)
    inv = -blocks
    # Row i of the strictly lower part of the inverse is -a_i - sum_{j<i} a_ij inv_j; rows j < i are final.
    for i in range(1, BS):
        is_row = (r == i)[None, :, None]
        row = tl.sum(tl.where(is_row, inv, 0.0), 1)
        row = row + tl.sum(row[:, :, None] * inv, 1) * (r < i)[None, :]
        inv = tl.where(is_row, row[:, None, :], inv)
    b = tl.arange(0, NB)
    on_diagonal = (b[:, None, None, None] == b[None, None, :, None])
    full = tl.reshape(tl.where(on_diagonal, inv[:, :, None, :], 0.0), (BT, BT))
    return full + (rows[:, None] == rows[None, :]).to(tl.float32)


@triton.jit(do_not_specialize=["T"])
def quasar_fwd_wy_kernel(
    k,
    v,
    beta,
    w,
    u,
    cu_seqlens,
    chunk_indices,
    T,
    H: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BT: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    PRECISION: tl.constexpr,
    IS_VARLEN: tl.constexpr,
):
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    if IS_VARLEN:
        i_n = tl.load(chunk_indices + i_t * 2).to(tl.int32)
        i_t = tl.load(chunk_indices + i_t * 2 + 1).to(tl.int32)
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        T = (tl.load(cu_seqlens + i_n + 1).to(tl.int64) - bos).to(tl.int32)
    else:
        bos = i_b.to(tl.int64) * T
    b_beta = tl.load(beta + i_h).to(tl.float32)

    p_k = tl.make_block_ptr(k + (bos * H + i_h) * K, (T, K), (H * K, 1), (i_t * BT, 0), (BT, BK), (1, 0))
    p_v = tl.make_block_ptr(v + (bos * H + i_h) * V, (T, V), (H * V, 1), (i_t * BT, 0), (BT, BV), (1, 0))
    # Rows past the sequence's end load as zeros: their alpha is 0, so they change nothing.
    b_k = tl.load(p_k, boundary_check=(0, 1), padding_option="zero")
    b_v = tl.load(p_v, boundary_check=(0, 1), padding_option="zero")
    b_a = _alpha(b_k, b_beta)

    rows = tl.arange(0, BT)
    b_A = b_a[:, None] * tl.dot(b_k, tl.trans(b_k), input_precision=PRECISION)
    b_A = tl.where(rows[:, None] > rows[None, :], b_A, 0.0)
    # (I + A)^-1 by doubling: exact inverses of the 16-token diagonal blocks, then blocks of 32 and 64.
    # For [[P, 0], [X, Q]] = block-diagonal inverses and A's block L21 below them, the inverse's lower
    # block is -Q L21 P, i.e. T <- T - T (A restricted to those blocks) T.
    b_T = _inverse_of_diagonal_blocks(b_A, BT, 16)
    below16 = ((rows[:, None] // 16) == (rows[None, :] // 16) + 1) & ((rows[:, None] // 32) == (rows[None, :] // 32))
    b_T -= tl.dot(tl.dot(b_T, tl.where(below16, b_A, 0.0), input_precision=PRECISION), b_T, input_precision=PRECISION)
    below32 = (rows[:, None] >= 32) & (rows[None, :] < 32)
    b_T -= tl.dot(tl.dot(b_T, tl.where(below32, b_A, 0.0), input_precision=PRECISION), b_T, input_precision=PRECISION)

    # w = T diag(a) K, u = T diag(a) V: operands in the inputs' dtype, as the state pass will read them.
    b_Tc = b_T.to(b_k.dtype)
    b_w = tl.dot(b_Tc, (b_a[:, None] * b_k.to(tl.float32)).to(b_k.dtype), input_precision=PRECISION)
    b_u = tl.dot(b_Tc, (b_a[:, None] * b_v.to(tl.float32)).to(b_v.dtype), input_precision=PRECISION)
    p_w = tl.make_block_ptr(w + (bos * H + i_h) * K, (T, K), (H * K, 1), (i_t * BT, 0), (BT, BK), (1, 0))
    p_u = tl.make_block_ptr(u + (bos * H + i_h) * V, (T, V), (H * V, 1), (i_t * BT, 0), (BT, BV), (1, 0))
    tl.store(p_w, b_w.to(p_w.dtype.element_ty), boundary_check=(0, 1))
    tl.store(p_u, b_u.to(p_u.dtype.element_ty), boundary_check=(0, 1))


def quasar_fwd_wy(
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    cu_seqlens: torch.Tensor | None,
    chunk_indices: torch.Tensor | None,
    num_chunks: int,
    settings: Settings | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w [B,T,H,K], u [B,T,H,V])`` in k's dtype; ``num_chunks`` counts chunks over all sequences.

    ``settings``: the launch settings (``tuning``); None reads them for k's device.
    """
    B, T, H, K = k.shape
    V = v.shape[-1]
    w = torch.empty_like(k)
    u = torch.empty_like(v)
    if num_chunks == 0:
        return w, u
    settings = settings or settings_for(k.device)
    grid = (num_chunks, B * H)
    # One stage: the kernel loads its chunk once, there is no loop over memory to pipeline.
    launch(
        quasar_fwd_wy_kernel,
        grid,
        choices("wy_num_warps", settings.wy_num_warps),
        (1,),
        k,
        v,
        beta,
        w,
        u,
        cu_seqlens,
        chunk_indices,
        T,
        H=H,
        K=K,
        V=V,
        BT=CHUNK_SIZE,
        BK=block_size(K),
        BV=block_size(V),
        PRECISION=dot_precision(k.dtype),
        IS_VARLEN=cu_seqlens is not None,
    )
    return w, u
