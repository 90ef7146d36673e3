"""``QuasarAttention`` on CPU: shapes, training (forward and backward), causality, packed sequences."""

from __future__ import annotations

import torch

from quasar.bench.check import assert_rel_close
from quasar.kernels import QuasarAttention, naive_quasar


def _layer(**kwargs) -> QuasarAttention:
    torch.manual_seed(0)
    return QuasarAttention(hidden_size=64, num_heads=4, **kwargs)


def test_forward_backward() -> None:
    layer = _layer()
    x = torch.randn(2, 50, 64, requires_grad=True)
    out, state = layer(x, output_final_state=True)
    assert out.shape == (2, 50, 64)
    assert state.shape == (2, 4, 16, 16) and state.dtype == torch.float32
    (out.square().mean() + state.square().mean()).backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())
    for name, parameter in layer.named_parameters():
        assert parameter.grad is not None, name
        assert bool(torch.isfinite(parameter.grad).all()), name
        assert float(parameter.grad.abs().max()) > 0, f"{name} gets no gradient"


def test_is_causal() -> None:
    layer = _layer()
    x = torch.randn(1, 40, 64)
    changed = x.clone()
    changed[:, 25:] += torch.randn(1, 15, 64)
    with torch.no_grad():
        a, _ = layer(x)
        b, _ = layer(changed)
    torch.testing.assert_close(a[:, :25], b[:, :25])
    assert not torch.allclose(a[:, 25:], b[:, 25:])


def test_packed_sequences_do_not_see_each_other() -> None:
    layer = _layer()
    lengths = [7, 20, 13]
    x = torch.randn(1, sum(lengths), 64)
    cu = torch.tensor([0, 7, 27, 40])
    with torch.no_grad():
        packed, states = layer(x, cu_seqlens=cu, output_final_state=True)
        for i, (start, end) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True)):
            alone, state = layer(x[:, start:end], output_final_state=True)
            assert_rel_close(packed[:, start:end], alone, 1e-5, f"sequence {i}")
            assert_rel_close(states[i : i + 1], state, 1e-5, f"state {i}")


def test_runs_any_op_with_the_signature() -> None:
    x = torch.randn(1, 30, 64)
    with torch.no_grad():
        default, _ = _layer()(x)
        naive, _ = _layer(op=naive_quasar)(x)
    assert_rel_close(default, naive, 1e-5, "layer output")


def test_beta_is_positive_fp32() -> None:
    layer = _layer()
    with torch.no_grad():
        layer.beta_param.fill_(-20.0)
    assert layer.beta.dtype == torch.float32 and bool((layer.beta > 0).all())
