"""The models a calibration serves: the reference cloned into another dtype or attention kernel, with
noise on its weights, int8-quantized, or another model of the same architecture (torch only)."""

from __future__ import annotations

import copy
from typing import Any

import torch


def clone_model(model: Any, dtype: torch.dtype, attn: str | None = None) -> Any:
    twin = copy.deepcopy(model).to(dtype)
    if attn:
        setter = getattr(twin, "set_attn_implementation", None)
        if callable(setter):
            setter(attn)
        else:  # older transformers
            twin.config._attn_implementation = attn
    return twin.eval()


@torch.no_grad()
def add_weight_noise(model: Any, scale: float, seed: int) -> Any:
    """Add N(0, (scale · RMS(W))²) to every floating parameter W (RMS, so norms' ones move too)."""
    generators: dict[torch.device, torch.Generator] = {}
    for param in model.parameters():
        if not param.is_floating_point():
            continue
        # Draw on the parameter's own device: a 0.5B model's noise drawn on the CPU takes seconds.
        if param.device not in generators:
            generators[param.device] = torch.Generator(device=param.device).manual_seed(seed)
        rms = param.float().pow(2).mean().sqrt()
        noise = torch.randn(param.shape, generator=generators[param.device], device=param.device) * (
            scale * rms
        )
        param.add_(noise.to(param.dtype))
    return model


@torch.no_grad()
def quantize_int8(model: Any) -> Any:
    """Round every matrix to symmetric per-row int8 and back (weight-only int8 serving)."""
    for param in model.parameters():
        if param.ndim != 2 or not param.is_floating_point():
            continue
        w = param.float()
        step = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
        param.copy_(((w / step).round().clamp(-127, 127) * step).to(param.dtype))
    return model


def reinitialised(model: Any, seed: int) -> Any:
    """A model of the same architecture and config with fresh random weights (another model)."""
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        twin = type(model)(copy.deepcopy(model.config))
    finally:
        torch.random.set_rng_state(state)
    return twin.to(next(model.parameters()).device).eval()
