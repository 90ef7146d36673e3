"""The chunked PyTorch path (``chunk_quasar_torch``) and the CPU dispatch against the definition:
outputs, final states and gradients."""

from __future__ import annotations

import pytest
import torch

from quasar.bench.check import assert_rel_close
from quasar.kernels import chunk_quasar, chunk_quasar_torch, naive_quasar


def _inputs(batch, seq_len, heads, key_dim, value_dim, dtype, *, states=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, seq_len, heads, key_dim, generator=gen, dtype=dtype)
    # Unnormalised keys with varied norms, so alpha varies from token to token.
    scale = 0.2 + 2.5 * torch.rand(batch, seq_len, heads, 1, generator=gen, dtype=dtype)
    k = torch.randn(batch, seq_len, heads, key_dim, generator=gen, dtype=dtype) * scale / key_dim**0.5
    v = torch.randn(batch, seq_len, heads, value_dim, generator=gen, dtype=dtype)
    beta = 0.5 + 1.5 * torch.rand(heads, generator=gen, dtype=dtype)
    h0 = (
        None if states is None else torch.randn(states, heads, key_dim, value_dim, generator=gen, dtype=dtype)
    )
    return q, k, v, beta, h0


# (B, T, H, K, V, chunk_size, initial_state)
SHAPES = [
    (1, 64, 2, 8, 8, 64, False),
    (2, 100, 2, 16, 8, 64, True),  # T not a multiple of the chunk
    (3, 257, 2, 8, 16, 32, True),
    (1, 5, 3, 4, 4, 16, False),  # shorter than one chunk
    (2, 130, 1, 16, 16, 128, True),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("batch", "seq_len", "heads", "key_dim", "value_dim", "chunk", "with_state"), SHAPES)
def test_matches_reference(batch, seq_len, heads, key_dim, value_dim, chunk, with_state, dtype) -> None:
    q, k, v, beta, h0 = _inputs(
        batch, seq_len, heads, key_dim, value_dim, dtype, states=batch if with_state else None
    )
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    o_ref, s_ref = naive_quasar(q, k, v, beta, h0, True)
    o, s = chunk_quasar_torch(q, k, v, beta, h0, True, chunk_size=chunk)
    assert o.dtype == dtype
    assert_rel_close(o, o_ref, tol, "o")
    assert_rel_close(s, s_ref, tol, "final_state")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_packed_uneven_sequences(dtype) -> None:
    lengths = [1, 70, 0, 129, 64, 33]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    q, k, v, beta, h0 = _inputs(1, sum(lengths), 2, 16, 8, dtype, states=len(lengths), seed=3)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    o_ref, s_ref = naive_quasar(q, k, v, beta, h0, True, cu)
    o, s = chunk_quasar_torch(q, k, v, beta, h0, True, cu, chunk_size=32)
    assert_rel_close(o, o_ref, tol, "o")
    assert_rel_close(s, s_ref, tol, "final_state")
    assert chunk_quasar_torch(q, k, v, beta, None, False, cu)[1] is None


def test_long_sequence_past_2048() -> None:
    q, k, v, beta, h0 = _inputs(1, 2500, 2, 16, 16, torch.float32, states=1, seed=4)
    o_ref, s_ref = naive_quasar(q, k, v, beta, h0, True)
    o, s = chunk_quasar_torch(q, k, v, beta, h0, True)
    assert_rel_close(o, o_ref, 1e-5, "o")
    assert_rel_close(s, s_ref, 1e-5, "final_state")


def test_low_precision_inputs_keep_their_dtype() -> None:
    q, k, v, beta, _ = _inputs(2, 90, 2, 16, 16, torch.float32, seed=5)
    q16, k16, v16 = q.half(), k.half(), v.half()
    o, s = chunk_quasar_torch(q16, k16, v16, beta, None, True)
    o_ref, _ = naive_quasar(q16.float(), k16.float(), v16.float(), beta)
    assert o.dtype == torch.float16 and s.dtype == torch.float32
    assert_rel_close(o, o_ref, 1e-3, "o")


def test_dispatch_on_cpu_is_the_chunked_path() -> None:
    q, k, v, beta, h0 = _inputs(2, 77, 2, 8, 8, torch.float32, states=2, seed=6)
    o, s = chunk_quasar(q, k, v, beta, h0, True)
    o_t, s_t = chunk_quasar_torch(q, k, v, beta, h0, True)
    torch.testing.assert_close(o, o_t)
    torch.testing.assert_close(s, s_t)


def test_rejects_bad_chunk_size() -> None:
    q, k, v, beta, _ = _inputs(1, 8, 1, 4, 4, torch.float32)
    with pytest.raises(ValueError, match="chunk_size"):
        chunk_quasar_torch(q, k, v, beta, chunk_size=0)


@pytest.mark.parametrize("packed", [False, True])
def test_gradients_match_autograd_through_reference(packed: bool) -> None:
    if packed:
        cu = torch.tensor([0, 9, 39, 40])  # lengths 9, 30, 1
        q, k, v, beta, h0 = _inputs(1, 40, 2, 8, 4, torch.float64, states=3, seed=7)
    else:
        cu = None
        q, k, v, beta, h0 = _inputs(2, 37, 2, 8, 4, torch.float64, states=2, seed=8)
    leaves = [x.clone().requires_grad_() for x in (q, k, v, beta, h0)]
    gen = torch.Generator().manual_seed(9)
    o_weight = torch.randn(q.shape[:3] + v.shape[-1:], generator=gen, dtype=torch.float64)
    s_weight = torch.randn(h0.shape, generator=gen, dtype=torch.float64)

    def grads(fn, **kwargs):
        o, s = fn(*leaves, True, cu, **kwargs)
        loss = (o * o_weight).sum() + (s * s_weight).sum()
        return torch.autograd.grad(loss, leaves)

    expected = grads(naive_quasar)
    actual = grads(chunk_quasar_torch, chunk_size=16)
    for name, g, g_ref in zip(("q", "k", "v", "beta", "initial_state"), actual, expected, strict=True):
        assert_rel_close(g, g_ref, 1e-9, f"d{name}")
        assert float(g_ref.abs().max()) > 0, f"d{name} is zero: the test would prove nothing"
