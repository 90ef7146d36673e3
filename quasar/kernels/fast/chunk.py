"""``chunk_quasar``: the fast baseline QuasarAttention op (DESIGN §2), forward in Triton.

Forward, three stages (four launches):

1. ``wy.py``: per 64-token chunk, alpha from the keys and the WY form ``w``, ``u`` (one pass over k, v).
2. ``segments.py``: when a sequence is long enough, per segment of L chunks the affine state map
   ``h_out = M h_in + N``, then a short scan over segments for each segment's start state.
3. ``output.py``: every segment runs its chunks from that state and writes ``o`` (and the final state).

Backward: gradients for q, k, v, beta and initial_state come from autograd through the chunked PyTorch
path (``quasar.kernels.chunked.chunk_quasar_torch``), recomputed from the saved inputs in fp32. It is
exact to the definition and memory-safe, but it runs at PyTorch speed, not Triton's.
"""

from __future__ import annotations

import torch
import triton

from ..chunked import chunk_quasar_torch
from ..reference import validate_inputs
from .config import CHUNK_SIZE, MAX_HEAD_DIM
from .output import quasar_fwd_output
from .segments import choose_segment_chunks, num_sms, plan_segments, segment_start_states
from .tuning import Settings, choices, settings_for
from .wy import quasar_fwd_wy


def _segment_chunks(
    B: int, T: int, H: int, bounds: list[tuple[int, int]] | None, device: torch.device, settings: Settings
) -> int:
    total_chunks = (
        B * triton.cdiv(T, CHUNK_SIZE) if bounds is None else sum(triton.cdiv(e - s, CHUNK_SIZE) for s, e in bounds)
    )
    return choose_segment_chunks(total_chunks, H, num_sms(device), settings)


def launch_settings(
    B: int, T: int, H: int, bounds: list[tuple[int, int]] | None, device: torch.device, settings: Settings
) -> dict[str, object]:
    """What ``quasar_fwd`` launches for inputs of this shape under ``settings``: the segment length and
    each kernel's (warps, stages) choices (several: autotuned). Settings with equal answers run the
    same kernels the same way, so a tuner times only one of them."""
    L = _segment_chunks(B, T, H, bounds, device, settings)
    launched: dict[str, object] = {
        "wy": [choices("wy_num_warps", settings.wy_num_warps), (1,)],
        "output": [choices("output_num_warps", settings.output_num_warps),
                   choices("output_num_stages", settings.output_num_stages)],
    }  # fmt: skip
    if plan_segments(B, T, bounds, L, torch.device("cpu")).split:
        launched["chunks_per_segment"] = L
        launched["map"] = [choices("map_num_warps", settings.map_num_warps),
                           choices("map_num_stages", settings.map_num_stages)]  # fmt: skip
        launched["scan"] = [choices("scan_num_warps", settings.scan_num_warps),
                            choices("scan_num_stages", settings.scan_num_stages)]  # fmt: skip
    return launched


def quasar_fwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    initial_state: torch.Tensor | None,
    output_final_state: bool,
    cu_seqlens: torch.Tensor | None,
    bounds: list[tuple[int, int]] | None,
    segment_chunks: int | None = None,
    settings: Settings | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The Triton forward on validated, contiguous inputs.

    ``settings``: the launch settings (``tuning``); None reads them for q's device (the tuned table,
    else the defaults). ``segment_chunks`` overrides the segment length they give.
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    if not (16 <= K <= MAX_HEAD_DIM and 16 <= V <= MAX_HEAD_DIM):
        raise ValueError(
            f"the fast kernel takes head sizes 16 <= K, V <= {MAX_HEAD_DIM}, got K={K}, V={V}; "
            "quasar.kernels.chunk_quasar_torch computes any size (at PyTorch speed)"
        )
    num_states = B if bounds is None else len(bounds)
    settings = settings or settings_for(q.device)
    if segment_chunks is None:
        segment_chunks = _segment_chunks(B, T, H, bounds, q.device, settings)
    plan = plan_segments(B, T, bounds, segment_chunks, q.device)

    w, u = quasar_fwd_wy(k, v, beta, cu_seqlens, plan.chunk_indices, plan.num_chunks, settings)
    if plan.split:
        h_in = segment_start_states(k, w, u, initial_state, cu_seqlens, plan, num_states, settings)
    else:
        # One segment per sequence: segment index == sequence index, so initial_state is h_in as is.
        h_in = initial_state
    return quasar_fwd_output(q, k, w, u, h_in, cu_seqlens, plan, num_states, output_final_state, settings)


class ChunkQuasarFunction(torch.autograd.Function):
    """Triton forward; backward by autograd through the chunked PyTorch path (see module docstring)."""

    @staticmethod
    def forward(
        ctx,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        beta: torch.Tensor,
        initial_state: torch.Tensor | None,
        output_final_state: bool,
        cu_seqlens: torch.Tensor | None,
        bounds: list[tuple[int, int]] | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        o, ht = quasar_fwd(q, k, v, beta, initial_state, output_final_state, cu_seqlens, bounds)
        ctx.save_for_backward(q, k, v, beta, initial_state, cu_seqlens)
        ctx.output_final_state = output_final_state
        return o, ht

    @staticmethod
    def backward(ctx, do: torch.Tensor, dht: torch.Tensor | None):
        q, k, v, beta, initial_state, cu_seqlens = ctx.saved_tensors
        inputs = [x.detach().requires_grad_() for x in (q, k, v, beta)]
        h0 = initial_state.detach().requires_grad_() if initial_state is not None else None
        with torch.enable_grad():
            o, ht = chunk_quasar_torch(*inputs, h0, ctx.output_final_state, cu_seqlens)
            outputs, grads = [o], [do]
            if ht is not None and dht is not None:
                outputs.append(ht)
                grads.append(dht)
            wrt = inputs + ([h0] if h0 is not None else [])
            dq, dk, dv, dbeta, *dh0 = torch.autograd.grad(outputs, wrt, grads, allow_unused=True)
        return dq, dk, dv, dbeta, (dh0[0] if dh0 else None), None, None, None


def chunk_quasar(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """QuasarAttention (DESIGN §2) on the GPU.

    Args:
        q, k: ``[B, T, H, K]``; v: ``[B, T, H, V]``, 16 <= K, V <= 128; bf16, fp16 or fp32 (fp32 products
            use TF32).
        beta: ``[H]``, > 0.
        initial_state: ``[N, H, K, V]`` or None; N = B, or the number of sequences in cu_seqlens.
        output_final_state: also return the state after each sequence's last token.
        cu_seqlens: ``[N+1]`` offsets of packed variable-length sequences (then B == 1).

    Returns:
        ``(o [B, T, H, V] in q's dtype, final_state [N, H, K, V] fp32 or None)``.
    """
    bounds = validate_inputs(q, k, v, beta, initial_state, cu_seqlens)
    if initial_state is not None:
        initial_state = initial_state.to(torch.float32).contiguous()
    return ChunkQuasarFunction.apply(
        q.contiguous(), k.contiguous(), v.contiguous(), beta.to(device=q.device, dtype=torch.float32).contiguous(),
        initial_state, output_final_state, cu_seqlens, bounds,
    )
