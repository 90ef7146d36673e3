"""The fast Triton ``chunk_quasar`` on a GPU, against the definition, with DESIGN §2's tolerances.

Covers bf16/fp16/fp32, several segments per sequence and one, T not a multiple of 64, B > 1, initial
and final state, packed sequences (with an empty one), every head size from 16 to 128, a sequence past
2,048 tokens, freshly poisoned memory, and the backward. Skipped where no CUDA device is present.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="the fast Triton kernels need a CUDA device"),
]

TOLERANCE = {torch.bfloat16: 1e-2, torch.float16: 1e-2, torch.float32: 2e-3}


def _rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    assert bool(torch.isfinite(x).all()), "NaN/Inf in output"
    x, ref = x.double(), ref.double()
    return float((x - ref).norm() / ref.norm())


def _inputs(B, T, H, K, V, dtype, n_states, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(B, T, H, K, device="cuda", generator=g).to(dtype)
    k = torch.randn(B, T, H, K, device="cuda", generator=g).to(dtype)
    v = torch.randn(B, T, H, V, device="cuda", generator=g).to(dtype)
    beta = torch.rand(H, device="cuda", generator=g) + 0.5
    h0 = torch.randn(n_states, H, K, V, device="cuda", generator=g)
    return q, k, v, beta, h0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize(
    ("B", "T", "H", "K", "V", "lengths", "segment_chunks"),
    [
        (1, 4096, 4, 64, 64, None, None),
        (2, 2500, 4, 64, 64, None, 2),
        (2, 2500, 4, 64, 64, None, 1000),
        (1, 3000, 2, 128, 128, None, 4),
        (1, 3000, 2, 128, 64, None, 4),
        # The bench's odd_t_long case: a 32-wide value block hit an illegal memory access on an H100.
        (1, 4099, 8, 64, 32, None, None),
        (1, 0, 4, 64, 64, [1000, 0, 2500, 277, 64], 2),
        (1, 0, 4, 64, 64, [1000, 0, 2500, 277, 64], None),
    ],
)
def test_forward_matches_reference(dtype, B, T, H, K, V, lengths, segment_chunks) -> None:
    from quasar.kernels.fast import chunk_quasar, quasar_fwd
    from quasar.kernels.reference import naive_quasar

    cu, bounds = None, None
    if lengths is not None:
        offsets = [0]
        for n in lengths:
            offsets.append(offsets[-1] + n)
        T = offsets[-1]
        cu = torch.tensor(offsets, dtype=torch.int32, device="cuda")
        bounds = list(zip(offsets, offsets[1:], strict=False))
    q, k, v, beta, h0 = _inputs(B, T, H, K, V, dtype, B if lengths is None else len(lengths), seed=T + K)
    # Leave NaN in the allocator's cache so an unwritten output element cannot pass.
    poison = torch.full((B, T, H, V), float("nan"), dtype=dtype, device="cuda")
    del poison
    if segment_chunks is None:
        o, ht = chunk_quasar(q, k, v, beta, h0, True, cu)
    else:
        o, ht = quasar_fwd(q, k, v, beta, h0, True, cu, bounds, segment_chunks=segment_chunks)
    ref_o, ref_ht = naive_quasar(q.float(), k.float(), v.float(), beta, h0, True, cu)
    assert o.dtype == dtype and ht.dtype == torch.float32
    assert _rel(o, ref_o) < TOLERANCE[dtype]
    assert _rel(ht, ref_ht) < TOLERANCE[dtype]


# With tiles narrower than 64, Triton 3.6 on an H100 faulted or was wrong at several of these sizes
# (config.MIN_BLOCK): every supported head size, three segments per sequence.
@pytest.mark.parametrize("V", [16, 32, 64, 128])
@pytest.mark.parametrize("K", [16, 32, 64, 128])
def test_every_head_size(K, V) -> None:
    from quasar.kernels.fast import chunk_quasar
    from quasar.kernels.reference import naive_quasar

    q, k, v, beta, h0 = _inputs(1, 1500, 2, K, V, torch.float16, 1, seed=K * 1000 + V)
    q, k = (q.float() * K**-0.5).half(), (k.float() * K**-0.5).half()
    o, ht = chunk_quasar(q, k, v, beta, h0, True)
    ref_o, ref_ht = naive_quasar(q.float(), k.float(), v.float(), beta, h0, True)
    assert _rel(o, ref_o) < TOLERANCE[torch.float16]
    assert _rel(ht, ref_ht) < TOLERANCE[torch.float16]


def test_head_sizes_past_128_are_refused_with_a_way_out() -> None:
    from quasar.kernels.fast import chunk_quasar

    q, k, v, beta, _ = _inputs(1, 64, 1, 256, 64, torch.float16, 1, seed=0)
    with pytest.raises(ValueError, match="chunk_quasar_torch"):
        chunk_quasar(q, k, v, beta)


# Keys are scaled to ||k||^2 ~ 1. With unit-variance keys beta * ||k||^2 ~ K saturates alpha at
# 1/||k||^2, so d alpha / d beta = exp(-beta ||k||^2) ~ 1e-14 and dbeta is rounding noise in any
# fp32 path (fp32 vs fp64 differed by up to 250% there, on CPU and GPU alike); at ||k||^2 ~ 1 every
# gradient, dbeta included, agrees to ~1e-6.
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-3), (torch.bfloat16, 1e-2)])
def test_backward_matches_autograd_through_reference(dtype, tolerance) -> None:
    from quasar.kernels.fast import chunk_quasar
    from quasar.kernels.reference import naive_quasar

    B, T, H, K, V = 2, 300, 2, 32, 32
    q, k, v, beta, h0 = _inputs(B, T, H, K, V, dtype, B, seed=11)
    k = (k.float() * K**-0.5).to(dtype)
    do = torch.randn(B, T, H, V, device="cuda")
    dht = torch.randn(B, H, K, V, device="cuda")
    grads = []
    for fn, cast in ((chunk_quasar, lambda x: x), (naive_quasar, lambda x: x.double())):
        xs = [cast(x).detach().requires_grad_() for x in (q, k, v, beta, h0)]
        o, ht = fn(*xs, output_final_state=True)
        torch.autograd.backward([o, ht], [do.to(o.dtype), dht.to(ht.dtype)])
        grads.append([x.grad for x in xs])
    for name, got, ref in zip(("dq", "dk", "dv", "dbeta", "dh0"), *grads, strict=True):
        assert _rel(got, ref) < tolerance, name
