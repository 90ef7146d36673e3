"""Sequence parallelism for the state pass: split each sequence into segments and scan their maps.

Chunk by chunk the state moves by an affine map, ``h <- (I - K_c^T w_c) h + K_c^T u_c``. A segment of
``L`` chunks therefore moves it by ``h_out = M h_in + N`` with

    M = prod_c (I - K_c^T w_c)    [K, K]        N = the segment's end state when it starts from 0   [K, V]

Both come from one recurrence on the augmented state ``X = [M | N]``, started at ``[I | 0]``: each
column block of X is independent, so one program per (column block, segment, head) runs ``L`` chunks.
A short scan per sequence and head then gives every segment's true starting state, and the output
kernel recomputes each segment from there, all segments at once. Only the scan is sequential over
the sequence, and it takes ``T / (64 L)`` steps instead of ``T / 64``.

Also here: the plan (which segment covers which chunks, for equal-length or packed sequences).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import torch
import triton
import triton.language as tl

from .config import CHUNK_SIZE, block_size, dot_precision, launch
from .tuning import DEFAULTS, Settings, choices, settings_for


@dataclass(frozen=True)
class SegmentPlan:
    """Which chunks each program works on; built on the host once per call."""

    chunks_per_segment: int
    num_segments: int
    #: Equal-length sequences: segments of sequence n are n * segments_per_seq + (0 .. segments_per_seq-1).
    segments_per_seq: int
    #: Total chunks over all sequences (the WY kernel's grid).
    num_chunks: int
    #: True when some sequence has more than one segment (then maps and the scan run).
    split: bool
    #: Packed sequences only: (sequence, chunk) per chunk, (sequence, segment) per segment, and each
    #: sequence's first segment (``[N + 1]``).
    chunk_indices: torch.Tensor | None = None
    segment_indices: torch.Tensor | None = None
    segment_offsets: torch.Tensor | None = None


@cache
def _num_sms(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def num_sms(device: torch.device) -> int:
    """Multiprocessors of a CUDA device; a typical count elsewhere (the interpreter)."""
    if device.type == "cuda":
        return _num_sms(device.index if device.index is not None else torch.cuda.current_device())
    return 132


def choose_segment_chunks(total_chunks: int, heads: int, sms: int, settings: Settings = DEFAULTS) -> int:
    """Chunks per segment for about ``programs_per_sm`` segment programs per multiprocessor, and at
    least ``min_segment_chunks`` (``tuning``)."""
    programs = settings.programs_per_sm * sms
    return max(settings.min_segment_chunks, math.ceil(total_chunks * heads / programs))


def plan_segments(
    batch: int,
    seq_len: int,
    bounds: list[tuple[int, int]] | None,
    chunks_per_segment: int,
    device: torch.device,
) -> SegmentPlan:
    """Cut every sequence into segments of ``chunks_per_segment`` chunks (the last may be shorter)."""
    L = max(1, chunks_per_segment)
    if bounds is None:
        nt = triton.cdiv(seq_len, CHUNK_SIZE)
        per_seq = max(1, triton.cdiv(nt, L))
        return SegmentPlan(L, batch * per_seq, per_seq, batch * nt, per_seq > 1)
    chunk_rows: list[tuple[int, int]] = []
    segment_rows: list[tuple[int, int]] = []
    offsets = [0]
    for n, (start, end) in enumerate(bounds):
        nt = triton.cdiv(end - start, CHUNK_SIZE)
        chunk_rows += [(n, i) for i in range(nt)]
        # An empty sequence still gets one (empty) segment: it passes initial_state to final_state.
        segment_rows += [(n, s) for s in range(max(1, triton.cdiv(nt, L)))]
        offsets.append(len(segment_rows))

    def table(rows: list, width: int) -> torch.Tensor:
        return torch.tensor(rows, dtype=torch.int32).reshape(-1, width).to(device, non_blocking=True)

    return SegmentPlan(
        chunks_per_segment=L,
        num_segments=len(segment_rows),
        segments_per_seq=0,
        num_chunks=len(chunk_rows),
        split=len(segment_rows) > len(bounds),
        chunk_indices=table(chunk_rows, 2),
        segment_indices=table(segment_rows, 2),
        segment_offsets=table(offsets, 1).reshape(-1),
    )


@triton.jit
def segment_bounds(i_s, cu_seqlens, segment_indices, T, NSEG_PER, L, BT: tl.constexpr, IS_VARLEN: tl.constexpr):
    """(sequence, first token, length, first chunk, end chunk, chunks in the sequence) of segment i_s."""
    if IS_VARLEN:
        i_n = tl.load(segment_indices + i_s * 2).to(tl.int32)
        i_seg = tl.load(segment_indices + i_s * 2 + 1).to(tl.int32)
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        T = (tl.load(cu_seqlens + i_n + 1).to(tl.int64) - bos).to(tl.int32)
    else:
        i_n = i_s // NSEG_PER
        i_seg = i_s % NSEG_PER
        bos = i_n.to(tl.int64) * T
    NT = tl.cdiv(T, BT)
    c0 = i_seg * L
    c1 = tl.minimum(c0 + L, NT)
    return i_n, bos, T, c0, c1, NT


# Warps and stages come from the settings (tuning.py): 1 to 3 stages of the per-chunk loads, 3 hid
# latency best for bf16 at K=64, fp32 at K=128 only fits 1.
@triton.jit(do_not_specialize=["T", "NSEG_PER", "L"])
def quasar_fwd_segment_map_kernel(
    k,
    w,
    u,
    seg_m,
    seg_n,
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
    BC: tl.constexpr,
    PRECISION: tl.constexpr,
    IS_VARLEN: tl.constexpr,
):
    i_c, i_s, i_h = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_n, bos, T, c0, c1, NT = segment_bounds(i_s, cu_seqlens, segment_indices, T, NSEG_PER, L, BT, IS_VARLEN)
    if c1 >= NT:
        # A sequence's last segment: its map would only give the final state, which the output
        # kernel produces anyway.
        return
    NMC: tl.constexpr = (K + BC - 1) // BC
    # Column blocks [0, NMC) hold M (start: identity, no u); the rest hold N (start: zero).
    is_map = i_c < NMC
    is_offset = i_c >= NMC
    col0 = tl.where(is_map, i_c * BC, (i_c - NMC) * BC)
    rows = tl.arange(0, BK)
    cols = col0 + tl.arange(0, BC)
    b_x = tl.where((rows[:, None] == cols[None, :]) & is_map, 1.0, 0.0)

    p_kb = k + (bos * H + i_h) * K
    p_wb = w + (bos * H + i_h) * K
    p_ub = u + (bos * H + i_h) * V
    for i_t in range(c0, c1):
        p_k = tl.make_block_ptr(p_kb, (T, K), (H * K, 1), (i_t * BT, 0), (BT, BK), (1, 0))
        p_w = tl.make_block_ptr(p_wb, (T, K), (H * K, 1), (i_t * BT, 0), (BT, BK), (1, 0))
        b_k = tl.load(p_k, boundary_check=(0, 1), padding_option="zero")
        b_w = tl.load(p_w, boundary_check=(0, 1), padding_option="zero")
        o_t = i_t * BT + tl.arange(0, BT)
        p_u = p_ub + o_t.to(tl.int64)[:, None] * (H * V) + cols[None, :]
        # The map's columns read no u: the mask keeps those loads off the memory bus entirely.
        m_u = (o_t < T)[:, None] & (cols < V)[None, :] & is_offset
        b_d = tl.load(p_u, mask=m_u, other=0.0).to(tl.float32) - tl.dot(
            b_w, b_x.to(b_w.dtype), input_precision=PRECISION
        )
        b_x += tl.dot(tl.trans(b_k), b_d.to(b_k.dtype), input_precision=PRECISION)

    base = (i_s * H + i_h).to(tl.int64) * K
    p_m = seg_m + (base + rows[:, None]) * K + cols[None, :]
    tl.store(p_m, b_x, mask=(rows < K)[:, None] & (cols < K)[None, :] & is_map)
    p_n = seg_n + (base + rows[:, None]) * V + cols[None, :]
    tl.store(p_n, b_x, mask=(rows < K)[:, None] & (cols < V)[None, :] & is_offset)


@triton.jit(do_not_specialize=["NSEG_PER"])
def quasar_fwd_segment_scan_kernel(
    seg_m,
    seg_n,
    seg_h,
    h0,
    segment_offsets,
    NSEG_PER,
    H: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    USE_INITIAL_STATE: tl.constexpr,
    IS_VARLEN: tl.constexpr,
):
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_n, i_h = i_nh // H, i_nh % H
    if IS_VARLEN:
        s0 = tl.load(segment_offsets + i_n).to(tl.int32)
        s1 = tl.load(segment_offsets + i_n + 1).to(tl.int32)
    else:
        s0 = i_n * NSEG_PER
        s1 = s0 + NSEG_PER
    rows = tl.arange(0, BK)
    cols = i_v * BV + tl.arange(0, BV)
    m_h = (rows < K)[:, None] & (cols < V)[None, :]
    m_m = (rows < K)[:, None] & (rows < K)[None, :]
    if USE_INITIAL_STATE:
        b_h = tl.load(h0 + ((i_n * H + i_h).to(tl.int64) * K + rows[:, None]) * V + cols[None, :], mask=m_h, other=0.0)
    else:
        b_h = tl.zeros([BK, BV], dtype=tl.float32)
    for i_s in range(s0, s1 - 1):
        base = (i_s * H + i_h).to(tl.int64) * K
        tl.store(seg_h + (base + rows[:, None]) * V + cols[None, :], b_h, mask=m_h)
        b_m = tl.load(seg_m + (base + rows[:, None]) * K + rows[None, :], mask=m_m, other=0.0)
        b_n = tl.load(seg_n + (base + rows[:, None]) * V + cols[None, :], mask=m_h, other=0.0)
        # The state is carried in fp32 across the whole sequence: 3xTF32 keeps that product near fp32.
        b_h = tl.dot(b_m, b_h, input_precision="tf32x3") + b_n
    base = ((s1 - 1) * H + i_h).to(tl.int64) * K
    tl.store(seg_h + (base + rows[:, None]) * V + cols[None, :], b_h, mask=m_h)


def segment_start_states(
    k: torch.Tensor,
    w: torch.Tensor,
    u: torch.Tensor,
    initial_state: torch.Tensor | None,
    cu_seqlens: torch.Tensor | None,
    plan: SegmentPlan,
    num_states: int,
    settings: Settings | None = None,
) -> torch.Tensor:
    """The state every segment starts from, ``[num_segments, H, K, V]`` fp32.

    ``settings``: the launch settings (``tuning``); None reads them for k's device.
    """
    B, T, H, K = k.shape
    V = u.shape[-1]
    BK = block_size(K)
    BC = min(64, block_size(min(K, V)))
    settings = settings or settings_for(k.device)
    seg_m = k.new_empty(plan.num_segments, H, K, K, dtype=torch.float32)
    seg_n = k.new_empty(plan.num_segments, H, K, V, dtype=torch.float32)
    grid = (triton.cdiv(K, BC) + triton.cdiv(V, BC), plan.num_segments, H)
    launch(
        quasar_fwd_segment_map_kernel, grid, choices("map_num_warps", settings.map_num_warps),
        choices("map_num_stages", settings.map_num_stages),
        k, w, u, seg_m, seg_n, cu_seqlens, plan.segment_indices, T, plan.segments_per_seq, plan.chunks_per_segment,
        H=H, K=K, V=V, BT=CHUNK_SIZE, BK=BK, BC=BC, PRECISION=dot_precision(k.dtype), IS_VARLEN=cu_seqlens is not None,
    )
    seg_h = torch.empty_like(seg_n)
    BV = min(64, block_size(V))
    launch(
        quasar_fwd_segment_scan_kernel, (triton.cdiv(V, BV), num_states * H),
        choices("scan_num_warps", settings.scan_num_warps), choices("scan_num_stages", settings.scan_num_stages),
        seg_m, seg_n, seg_h, initial_state, plan.segment_offsets, plan.segments_per_seq,
        H=H, K=K, V=V, BK=BK, BV=BV, USE_INITIAL_STATE=initial_state is not None,
        IS_VARLEN=cu_seqlens is not None,
    )
    return seg_h
