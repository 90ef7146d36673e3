"""Triton kernel: run each segment's chunks from its start state and write the output as it goes.

Per chunk, from state ``h`` (fp32, in registers for the whole segment)::

    d = u - w h                       the chunk's corrections, alpha_t (v_t - S_{t-1}^T k_t)
    o = q h + tril(q K^T) d           inclusive mask: o_t reads S_t, which already holds token t
    h <- h + K^T d

The state pass and the output share one program, so neither the per-chunk states nor ``d`` ever go to
memory. That is affordable because the segments (``segments.py``) give the grid enough programs; with
one segment per sequence this is a plain fused chunk loop.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .config import CHUNK_SIZE, block_size, dot_precision, launch
from .segments import SegmentPlan, segment_bounds
from .tuning import Settings, choices, settings_for


# Warps and stages come from the settings (tuning.py): 1 to 3 stages of the per-chunk loads, 3 hid
# latency best for bf16 at K=64, fp32 at K=128 only fits 1.
@triton.jit(do_not_specialize=["T", "NSEG_PER", "L"])
def quasar_fwd_output_kernel(
    q,
    k,
    w,
    u,
    o,
    h_in,
    ht,
    cu_seqlens,
    segment_indices,
    T,
    NSEG_PER,
    L,
    H: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BT: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    PRECISION: tl.constexpr,
    USE_H_IN: tl.constexpr,
    STORE_FINAL_STATE: tl.constexpr,
    IS_VARLEN: tl.constexpr,
):
    i_v, i_s, i_h = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_n, bos, T, c0, c1, NT = segment_bounds(i_s, cu_seqlens, segment_indices, T, NSEG_PER, L, BT, IS_VARLEN)
    rows = tl.arange(0, BK)
    cols = i_v * BV + tl.arange(0, BV)
    m_h = (rows < K)[:, None] & (cols < V)[None, :]
    if USE_H_IN:
        p_h0 = h_in + ((i_s * H + i_h).to(tl.int64) * K + rows[:, None]) * V + cols[None, :]
        b_h = tl.load(p_h0, mask=m_h, other=0.0)
    else:
        b_h = tl.zeros([BK, BV], dtype=tl.float32)

    o_i = tl.arange(0, BT)
    causal = o_i[:, None] >= o_i[None, :]
    p_qb = q + (bos * H + i_h) * K
    p_kb = k + (bos * H + i_h) * K
    p_wb = w + (bos * H + i_h) * K
    p_ub = u + (bos * H + i_h) * V
    p_ob = o + (bos * H + i_h) * V
    for i_t in range(c0, c1):
        p_q = tl.make_block_ptr(p_qb, (T, K), (H * K, 1), (i_t * BT, 0), (BT, BK), (1, 0))
        p_k = tl.make_block_ptr(p_kb, (T, K), (H * K, 1), (i_t * BT, 0), (BT, BK), (1, 0))
        p_w = tl.make_block_ptr(p_wb, (T, K), (H * K, 1), (i_t * BT, 0), (BT, BK), (1, 0))
        p_u = tl.make_block_ptr(p_ub, (T, V), (H * V, 1), (i_t * BT, i_v * BV), (BT, BV), (1, 0))
        p_o = tl.make_block_ptr(p_ob, (T, V), (H * V, 1), (i_t * BT, i_v * BV), (BT, BV), (1, 0))
        b_q = tl.load(p_q, boundary_check=(0, 1), padding_option="zero")
        b_k = tl.load(p_k, boundary_check=(0, 1), padding_option="zero")
        b_w = tl.load(p_w, boundary_check=(0, 1), padding_option="zero")
        b_u = tl.load(p_u, boundary_check=(0, 1), padding_option="zero")
        # Matrix-unit operands in the inputs' dtype, accumulation and the carried state in fp32.
        b_hc = b_h.to(b_k.dtype)
        b_d = (b_u.to(tl.float32) - tl.dot(b_w, b_hc, input_precision=PRECISION)).to(b_k.dtype)
        b_s = tl.where(causal, tl.dot(b_q, tl.trans(b_k), input_precision=PRECISION), 0.0)
        b_o = tl.dot(b_s.to(b_k.dtype), b_d, acc=tl.dot(b_q, b_hc, input_precision=PRECISION),
                     input_precision=PRECISION)
        tl.store(p_o, b_o.to(p_o.dtype.element_ty), boundary_check=(0, 1))
        b_h += tl.dot(tl.trans(b_k), b_d, input_precision=PRECISION)

    if STORE_FINAL_STATE:
        # Only a sequence's last segment ends at its final state.
        p_ht = ht + ((i_n * H + i_h).to(tl.int64) * K + rows[:, None]) * V + cols[None, :]
        tl.store(p_ht, b_h, mask=m_h & (c1 == NT))


def quasar_fwd_output(
    q: torch.Tensor,
    k: torch.Tensor,
    w: torch.Tensor,
    u: torch.Tensor,
    h_in: torch.Tensor | None,
    cu_seqlens: torch.Tensor | None,
    plan: SegmentPlan,
    num_states: int,
    output_final_state: bool,
    settings: Settings | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(o [B,T,H,V] in q's dtype, final state [N,H,K,V] fp32 or None)``; h_in: ``[segments,H,K,V]``.

    ``settings``: the launch settings (``tuning``); None reads them for q's device.
    """
    B, T, H, K = q.shape
    V = u.shape[-1]
    BV = min(64, block_size(V))
    o = q.new_empty(B, T, H, V)
    ht = q.new_empty(num_states, H, K, V, dtype=torch.float32) if output_final_state else None
    settings = settings or settings_for(q.device)
    grid = (triton.cdiv(V, BV), plan.num_segments, H)
    launch(
        quasar_fwd_output_kernel, grid, choices("output_num_warps", settings.output_num_warps),
        choices("output_num_stages", settings.output_num_stages),
        q, k, w, u, o, h_in, ht, cu_seqlens, plan.segment_indices, T, plan.segments_per_seq,
        plan.chunks_per_segment, H=H, K=K, V=V, BT=CHUNK_SIZE, BK=block_size(K), BV=BV,
        PRECISION=dot_precision(q.dtype), USE_H_IN=h_in is not None, STORE_FINAL_STATE=output_final_state,
        IS_VARLEN=cu_seqlens is not None,
    )
    return o, ht
