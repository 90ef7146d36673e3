"""Greedy generation that keeps the logits behind chosen tokens, and teacher-forced replay.

Position ``i`` of a generation is the ``i``-th new token; its logits are the scores the model
produced *before* choosing it (the row whose argmax is ``output_ids[i]``). The server, the verifier
and the calibration all use this module, so "position" means the same thing everywhere.

Needs torch only.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Generation:
    """What one greedy run produced, for row 0 of the batch and (optionally) every row."""

    output_ids: list[list[int]]  # per batch row
    logits: dict[int, torch.Tensor] = field(default_factory=dict)  # position -> [B, V] float32, CPU
    prefill_ms: float = 0.0
    decode_ms: float = 0.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cache_of(model: Any, out: Any) -> tuple[str, Any]:
    """The KV cache of a forward's output and the keyword to pass it back with.

    transformers renamed ``past_key_values`` to ``cache`` in 5.x; support both so the same code runs
    on the CPU test machines and the GPU machine, whichever release each has.
    """
    cache = getattr(out, "cache", None)
    if cache is not None:
        return "cache", cache
    return "past_key_values", out.past_key_values


@torch.inference_mode()
def greedy_generate(
    model: Any,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    capture: Iterable[int] = (),
    *,
    eos_token_id: int | None = None,
    stop_at_eos: bool = False,
) -> Generation:
    """Greedy decoding of ``input_ids`` ([B, L], all rows the same length) with a KV cache.

    Logits are kept for the positions in ``capture``. With ``stop_at_eos`` a batch of one stops
    after emitting ``eos_token_id``; batches always run to ``max_new_tokens``.
    """
    device = next(model.parameters()).device
    wanted = set(capture)
    ids = input_ids.to(device)
    batch = ids.shape[0]
    start = time.perf_counter()
    # logits_to_keep=1: the prompt's other positions' logits are never needed (and at a 150k vocab
    # would cost gigabytes for long prompts).
    out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
    _sync(device)
    prefill_done = time.perf_counter()
    logits = out.logits[:, -1, :]
    cache_arg, past = _cache_of(model, out)
    steps: list[torch.Tensor] = []
    kept: dict[int, torch.Tensor] = {}
    for position in range(max_new_tokens):
        scores = logits.float()
        token = scores.argmax(dim=-1)
        if position in wanted:
            kept[position] = scores.cpu()
        steps.append(token)
        if position == max_new_tokens - 1:
            break
        if stop_at_eos and batch == 1 and eos_token_id is not None and int(token[0]) == eos_token_id:
            break
        out = model(input_ids=token[:, None], use_cache=True, logits_to_keep=1, **{cache_arg: past})
        logits = out.logits[:, -1, :]
        _, past = _cache_of(model, out)
    _sync(device)
    end = time.perf_counter()
    tokens = torch.stack(steps, dim=1).cpu().tolist() if steps else [[] for _ in range(batch)]
    return Generation(
        output_ids=tokens,
        logits=kept,
        prefill_ms=(prefill_done - start) * 1000.0,
        decode_ms=(end - prefill_done) * 1000.0,
    )


@torch.inference_mode()
def teacher_forced_logits(model: Any, prompt_ids: list[int], output_ids: list[int]) -> torch.Tensor:
    """The model's logits at every generated position, given the prompt and the tokens actually sent.

    Returns [len(output_ids), V] float32 on the CPU: row ``i`` is what the model scores before
    token ``i`` — the row a greedy server takes the argmax of.
    """
    if not output_ids:
        return torch.empty(0, 0)
    device = next(model.parameters()).device
    # The last output token only needs to be scored, not fed: feed prompt + output[:-1].
    sequence = torch.tensor([prompt_ids + output_ids[:-1]], dtype=torch.long, device=device)
    out = model(input_ids=sequence, use_cache=False, logits_to_keep=len(output_ids))
    return out.logits[0].float().cpu()
