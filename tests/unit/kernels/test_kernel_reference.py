"""The definition (``naive_quasar``) against a per-token formula written out independently, its
validation of the contract, and its dtype conventions."""

from __future__ import annotations

import math

import pytest
import torch

from quasar.bench.check import assert_rel_close
from quasar.kernels import naive_quasar, quasar_alpha


def _per_token_scalar(q, k, v, beta, state):
    """DESIGN §2 with Python floats, one head, one sequence: lists of lists, no tensors."""
    key_dim, value_dim = len(state), len(state[0])
    outputs = []
    for q_t, k_t, v_t in zip(q, k, v, strict=True):
        lam = sum(x * x for x in k_t)
        alpha = (1.0 - math.exp(-beta * lam)) / (lam + 1e-8)
        error = [v_t[j] - sum(state[i][j] * k_t[i] for i in range(key_dim)) for j in range(value_dim)]
        state = [[state[i][j] + alpha * k_t[i] * error[j] for j in range(value_dim)] for i in range(key_dim)]
        outputs.append([sum(state[i][j] * q_t[i] for i in range(key_dim)) for j in range(value_dim)])
    return outputs, state


def test_matches_independent_per_token_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    batch, seq_len, heads, key_dim, value_dim = 2, 6, 2, 3, 2
    q = torch.randn(batch, seq_len, heads, key_dim, generator=gen, dtype=torch.float64)
    k = torch.randn(batch, seq_len, heads, key_dim, generator=gen, dtype=torch.float64)
    v = torch.randn(batch, seq_len, heads, value_dim, generator=gen, dtype=torch.float64)
    beta = torch.tensor([0.7, 1.9], dtype=torch.float64)
    h0 = torch.randn(batch, heads, key_dim, value_dim, generator=gen, dtype=torch.float64)

    o, final = naive_quasar(q, k, v, beta, initial_state=h0, output_final_state=True)

    for b in range(batch):
        for h in range(heads):
            expected_o, expected_state = _per_token_scalar(
                q[b, :, h].tolist(),
                k[b, :, h].tolist(),
                v[b, :, h].tolist(),
                float(beta[h]),
                h0[b, h].tolist(),
            )
            torch.testing.assert_close(o[b, :, h], torch.tensor(expected_o, dtype=torch.float64))
            torch.testing.assert_close(final[b, h], torch.tensor(expected_state, dtype=torch.float64))


def test_alpha_keeps_the_step_below_one() -> None:
    k = torch.randn(2, 50, 3, 8) * torch.logspace(-3, 1, 50).view(1, 50, 1, 1)
    alpha = quasar_alpha(k, torch.tensor([0.1, 1.0, 10.0]))
    lam = k.square().sum(-1)
    step = alpha * lam
    assert alpha.dtype == torch.float32 and alpha.shape == (2, 50, 3)
    # Below 1 in exact arithmetic; fp32 rounds exp(-x) to 0 for large x, so at most 1 here.
    assert bool((step >= 0).all()) and bool((step <= 1).all())
    # Small keys: 1 - exp(-beta * lam) must not cancel in fp32 (alpha -> beta * lam / (lam + eps)).
    lam_small = 4 * 1e-3**2
    tiny = quasar_alpha(torch.full((1, 1, 1, 4), 1e-3), torch.tensor([0.5]))
    assert abs(float(tiny) - 0.5 * lam_small / (lam_small + 1e-8)) < 1e-4


def test_packed_sequences_equal_separate_runs() -> None:
    gen = torch.Generator().manual_seed(1)
    lengths = [5, 0, 1, 17]
    seq_len, heads, key_dim, value_dim = sum(lengths), 2, 4, 3
    q = torch.randn(1, seq_len, heads, key_dim, generator=gen)
    k = torch.randn(1, seq_len, heads, key_dim, generator=gen)
    v = torch.randn(1, seq_len, heads, value_dim, generator=gen)
    beta = torch.tensor([0.5, 1.5])
    h0 = torch.randn(len(lengths), heads, key_dim, value_dim, generator=gen)
    cu = torch.tensor([0, 5, 5, 6, 23])

    o, final = naive_quasar(q, k, v, beta, h0, True, cu)

    for i, (start, end) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True)):
        o_i, f_i = naive_quasar(q[:, start:end], k[:, start:end], v[:, start:end], beta, h0[i : i + 1], True)
        if end > start:
            assert_rel_close(o[:, start:end], o_i, 1e-6, f"sequence {i}")
        torch.testing.assert_close(final[i : i + 1], f_i)
    # The empty sequence hands its initial state straight back.
    torch.testing.assert_close(final[1], h0[1])


def test_dtype_conventions() -> None:
    q = torch.randn(1, 9, 2, 4, dtype=torch.float16)
    v = torch.randn(1, 9, 2, 5, dtype=torch.float16)
    o, final = naive_quasar(q, q, v, torch.ones(2), output_final_state=True)
    assert o.dtype == torch.float16 and o.shape == (1, 9, 2, 5)
    assert final.dtype == torch.float32 and final.shape == (1, 2, 4, 5)
    assert naive_quasar(q, q, v, torch.ones(2))[1] is None
    o64, f64 = naive_quasar(q.double(), q.double(), v.double(), torch.ones(2), output_final_state=True)
    assert o64.dtype == torch.float64 and f64.dtype == torch.float64


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"k": torch.randn(1, 8, 2, 3)}, "k must have q's shape"),
        ({"v": torch.randn(1, 7, 2, 5)}, "v must be"),
        ({"q": torch.randn(8, 2, 4), "k": torch.randn(8, 2, 4)}, "q must be"),
        ({"beta": torch.ones(1, 2)}, "beta must be"),
        ({"v": torch.randn(1, 8, 2, 5, dtype=torch.float64)}, "share one dtype"),
        ({"cu_seqlens": torch.tensor([0, 3, 7])}, "end at T=8"),
        ({"cu_seqlens": torch.tensor([0.0, 8.0])}, "int32 or int64"),
        ({"cu_seqlens": torch.tensor([0, 5, 3, 8])}, "non-decreasing"),
        ({"initial_state": torch.zeros(2, 2, 4, 5)}, "initial_state must be"),
        (
            {"initial_state": torch.zeros(1, 2, 4, 5), "cu_seqlens": torch.tensor([0, 3, 8])},
            "initial_state must be",
        ),
    ],
)
def test_rejects_inputs_that_break_the_contract(change: dict, message: str) -> None:
    args = {
        "q": torch.randn(1, 8, 2, 4),
        "k": torch.randn(1, 8, 2, 4),
        "v": torch.randn(1, 8, 2, 5),
        "beta": torch.ones(2),
        "initial_state": None,
        "cu_seqlens": None,
    }
    args.update(change)
    with pytest.raises(ValueError, match=message):
        naive_quasar(**args)


def test_cu_seqlens_requires_batch_of_one() -> None:
    q = torch.randn(2, 8, 2, 4)
    with pytest.raises(ValueError, match="B must be 1"):
        naive_quasar(q, q, q, torch.ones(2), cu_seqlens=torch.tensor([0, 3, 8]))
