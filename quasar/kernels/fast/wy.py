"""Triton kernel: the step size alpha and the WY form of each 64-token chunk, in one pass.

For a chunk with keys ``K_c``, values ``V_c`` and step sizes ``a`` (alpha of DESIGN §2, computed here
from the keys so that it is part of the timed op and never touches memory)::

    A = tril(diag(a) K_c K_c^T, -1)          (strictly lower, 64 x 64)
    w = (I + A)^-1 diag(a) K_c               u = (I + A)^-1 diag(a) V_c

so that a chunk that starts from state ``h`` adds ``K_c^T (u - w h)`` to it. ``(I + A)`` is unit lower
triangular; it is solved by block forward substitution over four 16-token blocks: each diagonal
block is inverted row by row in registers (16 cheap steps), the off-diagonal blocks enter as small
matrix products. All of it stays in fp32 until ``w`` and ``u`` are stored in the inputs' dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .config import CHUNK_SIZE, autotune_configs


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
def _unit_lower_inverse16(a):
    """(I + a)^-1 for a strictly lower-triangular 16 x 16 fp32 tile, by forward substitution."""
    rows = tl.arange(0, 16)
    inv = -a
    # Row i of the inverse's strictly lower part is -a_i - sum_{j<i} a_ij inv_j; rows j < i are final.
    for i in range(1, 16):
        is_row = rows == i
        row = tl.sum(tl.where(is_row[:, None], inv, 0.0), 0)
        row = row + tl.sum(row[:, None] * inv, 0) * (rows < i)
        inv = tl.where(is_row[:, None], row[None, :], inv)
    return inv + (rows[:, None] == rows[None, :]).to(tl.float32)


@triton.jit
def _gram(b_ki, b_kj, a_i):
    """diag(a_i) K_i K_j^T for two 16-token key tiles, fp32."""
    return a_i[:, None] * tl.dot(b_ki, tl.trans(b_kj))


@triton.autotune(configs=autotune_configs(num_warps=(4, 8), num_stages=(1,)), key=["H", "K", "V"])
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
    BS: tl.constexpr = BT // 4
    t0 = i_t * BT

    p_k = k + (bos * H + i_h) * K
    p_v = v + (bos * H + i_h) * V
    p_w = w + (bos * H + i_h) * K
    p_u = u + (bos * H + i_h) * V
    p_k1 = tl.make_block_ptr(p_k, (T, K), (H * K, 1), (t0, 0), (BS, BK), (1, 0))
    p_k2 = tl.make_block_ptr(p_k, (T, K), (H * K, 1), (t0 + BS, 0), (BS, BK), (1, 0))
    p_k3 = tl.make_block_ptr(p_k, (T, K), (H * K, 1), (t0 + 2 * BS, 0), (BS, BK), (1, 0))
    p_k4 = tl.make_block_ptr(p_k, (T, K), (H * K, 1), (t0 + 3 * BS, 0), (BS, BK), (1, 0))
    # Rows past the sequence's end load as zeros: their alpha is 0, so they change nothing.
    b_k1 = tl.load(p_k1, boundary_check=(0, 1), padding_option="zero")
    b_k2 = tl.load(p_k2, boundary_check=(0, 1), padding_option="zero")
    b_k3 = tl.load(p_k3, boundary_check=(0, 1), padding_option="zero")
    b_k4 = tl.load(p_k4, boundary_check=(0, 1), padding_option="zero")
    b_a1 = _alpha(b_k1, b_beta)
    b_a2 = _alpha(b_k2, b_beta)
    b_a3 = _alpha(b_k3, b_beta)
    b_a4 = _alpha(b_k4, b_beta)

    rows = tl.arange(0, BS)
    strictly_lower = rows[:, None] > rows[None, :]
    b_d1 = _unit_lower_inverse16(tl.where(strictly_lower, _gram(b_k1, b_k1, b_a1), 0.0))
    b_d2 = _unit_lower_inverse16(tl.where(strictly_lower, _gram(b_k2, b_k2, b_a2), 0.0))
    b_d3 = _unit_lower_inverse16(tl.where(strictly_lower, _gram(b_k3, b_k3, b_a3), 0.0))
    b_d4 = _unit_lower_inverse16(tl.where(strictly_lower, _gram(b_k4, b_k4, b_a4), 0.0))
    b_a21 = _gram(b_k2, b_k1, b_a2)
    b_a31 = _gram(b_k3, b_k1, b_a3)
    b_a32 = _gram(b_k3, b_k2, b_a3)
    b_a41 = _gram(b_k4, b_k1, b_a4)
    b_a42 = _gram(b_k4, b_k2, b_a4)
    b_a43 = _gram(b_k4, b_k3, b_a4)

    # w = (I + A)^-1 diag(a) K, block row by block row.
    b_w1 = tl.dot(b_d1, b_a1[:, None] * b_k1.to(tl.float32))
    b_w2 = tl.dot(b_d2, b_a2[:, None] * b_k2.to(tl.float32) - tl.dot(b_a21, b_w1))
    b_w3 = tl.dot(b_d3, b_a3[:, None] * b_k3.to(tl.float32) - tl.dot(b_a31, b_w1) - tl.dot(b_a32, b_w2))
    b_w4 = tl.dot(
        b_d4,
        b_a4[:, None] * b_k4.to(tl.float32) - tl.dot(b_a41, b_w1) - tl.dot(b_a42, b_w2) - tl.dot(b_a43, b_w3),
    )
    tl.store(
        tl.make_block_ptr(p_w, (T, K), (H * K, 1), (t0, 0), (BS, BK), (1, 0)),
        b_w1.to(w.dtype.element_ty),
        boundary_check=(0, 1),
    )
    tl.store(
        tl.make_block_ptr(p_w, (T, K), (H * K, 1), (t0 + BS, 0), (BS, BK), (1, 0)),
        b_w2.to(w.dtype.element_ty),
        boundary_check=(0, 1),
    )
    tl.store(
        tl.make_block_ptr(p_w, (T, K), (H * K, 1), (t0 + 2 * BS, 0), (BS, BK), (1, 0)),
        b_w3.to(w.dtype.element_ty),
        boundary_check=(0, 1),
    )
    tl.store(
        tl.make_block_ptr(p_w, (T, K), (H * K, 1), (t0 + 3 * BS, 0), (BS, BK), (1, 0)),
        b_w4.to(w.dtype.element_ty),
        boundary_check=(0, 1),
    )

    # u = (I + A)^-1 diag(a) V, the same substitution with the values on the right.
    p_v1 = tl.make_block_ptr(p_v, (T, V), (H * V, 1), (t0, 0), (BS, BV), (1, 0))
    p_v2 = tl.make_block_ptr(p_v, (T, V), (H * V, 1), (t0 + BS, 0), (BS, BV), (1, 0))
    p_v3 = tl.make_block_ptr(p_v, (T, V), (H * V, 1), (t0 + 2 * BS, 0), (BS, BV), (1, 0))
    p_v4 = tl.make_block_ptr(p_v, (T, V), (H * V, 1), (t0 + 3 * BS, 0), (BS, BV), (1, 0))
    b_v1 = tl.load(p_v1, boundary_check=(0, 1), padding_option="zero").to(tl.float32)
    b_v2 = tl.load(p_v2, boundary_check=(0, 1), padding_option="zero").to(tl.float32)
    b_v3 = tl.load(p_v3, boundary_check=(0, 1), padding_option="zero").to(tl.float32)
    b_v4 = tl.load(p_v4, boundary_check=(0, 1), padding_option="zero").to(tl.float32)
    b_u1 = tl.dot(b_d1, b_a1[:, None] * b_v1)
    b_u2 = tl.dot(b_d2, b_a2[:, None] * b_v2 - tl.dot(b_a21, b_u1))
    b_u3 = tl.dot(b_d3, b_a3[:, None] * b_v3 - tl.dot(b_a31, b_u1) - tl.dot(b_a32, b_u2))
    b_u4 = tl.dot(
        b_d4,
        b_a4[:, None] * b_v4 - tl.dot(b_a41, b_u1) - tl.dot(b_a42, b_u2) - tl.dot(b_a43, b_u3),
    )
    tl.store(
        tl.make_block_ptr(p_u, (T, V), (H * V, 1), (t0, 0), (BS, BV), (1, 0)),
        b_u1.to(u.dtype.element_ty),
        boundary_check=(0, 1),
    )
    tl.store(
        tl.make_block_ptr(p_u, (T, V), (H * V, 1), (t0 + BS, 0), (BS, BV), (1, 0)),
        b_u2.to(u.dtype.element_ty),
        boundary_check=(0, 1),
    )
    tl.store(
        tl.make_block_ptr(p_u, (T, V), (H * V, 1), (t0 + 2 * BS, 0), (BS, BV), (1, 0)),
        b_u3.to(u.dtype.element_ty),
        boundary_check=(0, 1),
    )
    tl.store(
        tl.make_block_ptr(p_u, (T, V), (H * V, 1), (t0 + 3 * BS, 0), (BS, BV), (1, 0)),
        b_u4.to(u.dtype.element_ty),
        boundary_check=(0, 1),
    )


def quasar_fwd_wy(
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    cu_seqlens: torch.Tensor | None,
    chunk_indices: torch.Tensor | None,
    num_chunks: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w [B,T,H,K], u [B,T,H,V])`` in k's dtype; ``num_chunks`` counts chunks over all sequences."""
    B, T, H, K = k.shape
    V = v.shape[-1]
    w = torch.empty_like(k)
    u = torch.empty_like(v)
    if num_chunks == 0:
        return w, u
    grid = (num_chunks, B * H)
    quasar_fwd_wy_kernel[grid](
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
        BK=triton.next_power_of_2(K),
        BV=triton.next_power_of_2(V),
        IS_VARLEN=cu_seqlens is not None,
    )
    return w, u
