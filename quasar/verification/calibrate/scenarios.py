"""Calibration scenarios: what each one serves in answer to a challenge (honest, dishonest, or shown for
information), and the default list `quasar verify calibrate` runs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from quasar.inference.encoding import encode_logits
from quasar.inference.generate import greedy_generate
from quasar.inference.model import DTYPES, LoadedModel
from quasar.verification.calibrate.served import add_weight_noise, clone_model, quantize_int8, reinitialised
from quasar.verification.challenge import Challenge, make_challenge
from quasar.verification.verifier import MinerAnswer

AnswerFn = Callable[[Challenge], MinerAnswer]


@dataclass
class Scenario:
    name: str
    honest: bool | None  # None: shown for information (another precision than declared)
    declared: str
    build: Callable[[], AnswerFn]
    note: str = ""


def _answer_from(
    model: Any, challenge: Challenge, *, batch_prompts: list[list[int]] | None = None
) -> tuple[list[int], dict[int, torch.Tensor], float, float]:
    rows = [challenge.input_ids] + (batch_prompts or [])
    ids = torch.tensor(rows, dtype=torch.long)
    wanted = set(challenge.logits_positions) | {p + 1 for p in challenge.logits_positions}
    gen = greedy_generate(model, ids, challenge.max_new_tokens, wanted)
    logits = {p: t[0] for p, t in gen.logits.items()}
    return gen.output_ids[0], logits, gen.prefill_ms, gen.decode_ms


def serving(model: Any, *, batch: int = 1, allowed_ids: list[int] | None = None) -> AnswerFn:
    """An honest server of ``model`` (optionally batching the challenge with other prompts)."""

    def answer(challenge: Challenge) -> MinerAnswer:
        others = None
        if batch > 1:
            assert allowed_ids is not None
            others = [
                make_challenge(
                    f"{challenge.seed}/batch{i}",
                    allowed_ids,
                    prompt_tokens=len(challenge.input_ids),
                    max_new_tokens=1,
                    checked_positions=0,
                ).input_ids
                for i in range(1, batch)
            ]
        out, logits, prefill, decode = _answer_from(model, challenge, batch_prompts=others)
        sent = {str(p): encode_logits(logits[p].numpy()) for p in challenge.logits_positions if p < len(out)}
        return MinerAnswer(out, sent, prefill, decode)

    return answer


def shifting(model: Any) -> AnswerFn:
    """Honest tokens, but the logits of position p+1 sent as position p's (an off-by-one server)."""

    def answer(challenge: Challenge) -> MinerAnswer:
        out, logits, prefill, decode = _answer_from(model, challenge)
        sent = {
            str(p): encode_logits(logits.get(p + 1, logits[p]).numpy()) for p in challenge.logits_positions
        }
        return MinerAnswer(out, sent, prefill, decode)

    return answer


def padding(model: Any, vocab_size: int) -> AnswerFn:
    """Generates half the tokens, pads the rest with made-up ids (saves half the decode time)."""

    def answer(challenge: Challenge) -> MinerAnswer:
        half = max(1, challenge.max_new_tokens // 2)
        short = Challenge(challenge.seed, challenge.input_ids, half, challenge.logits_positions)
        out, logits, prefill, decode = _answer_from(model, short)
        filler = make_challenge(
            challenge.seed + "/pad",
            list(range(vocab_size)),
            prompt_tokens=challenge.max_new_tokens - half,
            max_new_tokens=1,
            checked_positions=0,
        ).input_ids
        last = logits[max(logits)] if logits else torch.zeros(vocab_size)
        sent = {str(p): encode_logits(logits.get(p, last).numpy()) for p in challenge.logits_positions}
        return MinerAnswer(out + filler, sent, prefill, decode)

    return answer


def default_scenarios(
    reference: LoadedModel,
    *,
    other_seed: int = 1,
    noise_scales: Iterable[float] = (0.001, 0.01, 0.1),
    declared_dtypes: Iterable[str] = ("float32", "bfloat16"),
) -> list[Scenario]:
    base = reference.model
    allowed = reference.token_ids_for_prompts()
    vocab = reference.vocab_size
    scenarios: list[Scenario] = []
    for dtype_name in declared_dtypes:
        dtype = DTYPES[dtype_name]
        short = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}[dtype_name]
        scenarios += [
            Scenario(
                f"same model {short}, single", True, dtype_name, lambda d=dtype: serving(clone_model(base, d))
            ),
            Scenario(
                f"same model {short}, batch 4",
                True,
                dtype_name,
                lambda d=dtype: serving(clone_model(base, d), batch=4, allowed_ids=allowed),
            ),
            Scenario(
                f"same model {short}, eager attention",
                True,
                dtype_name,
                lambda d=dtype: serving(clone_model(base, d, attn="eager")),
            ),
            Scenario(
                f"other seed, {short}",
                False,
                dtype_name,
                lambda d=dtype: serving(reinitialised(base, other_seed).to(d)),
            ),
        ]
        for scale in noise_scales:
            scenarios.append(
                Scenario(
                    f"noise {scale * 100:g}%, {short}",
                    False,
                    dtype_name,
                    lambda d=dtype, s=scale: serving(
                        add_weight_noise(clone_model(base, torch.float32), s, 1234).to(d)
                    ),
                )
            )
        scenarios += [
            Scenario(
                f"int8 weights, {short}",
                False,
                dtype_name,
                lambda d=dtype: serving(quantize_int8(clone_model(base, torch.float32)).to(d)),
            ),
            Scenario(
                f"shifted positions, {short}",
                False,
                dtype_name,
                lambda d=dtype: shifting(clone_model(base, d)),
            ),
            Scenario(
                f"padded tokens, {short}",
                False,
                dtype_name,
                lambda d=dtype: padding(clone_model(base, d), vocab),
            ),
        ]
    if "float32" in declared_dtypes:
        scenarios.append(
            Scenario(
                "serves bf16, declares fp32",
                None,
                "float32",
                lambda: serving(clone_model(base, torch.bfloat16)),
                "another precision than declared",
            )
        )
        scenarios.append(
            Scenario(
                "serves fp16, declares fp32",
                None,
                "float32",
                lambda: serving(clone_model(base, torch.float16)),
                "another precision than declared",
            )
        )
    if "bfloat16" in declared_dtypes:
        scenarios.append(
            Scenario(
                "serves fp16, declares bf16",
                None,
                "bfloat16",
                lambda: serving(clone_model(base, torch.float16)),
                "another precision than declared (more precise: passes)",
            )
        )
    return scenarios
