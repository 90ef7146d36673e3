"""Calibration: how far honest servers land from the reference, and how far dishonest ones do.

`quasar verify calibrate` (and `scripts/gpu_calibrate.py` on a GPU) runs every scenario below on
the same challenges, in-process — the same generation code the server runs, the same verifier, the
same wire encoding — and prints, per scenario, the worst value of each statistic and how many
challenges passed the current thresholds. Thresholds are then set as a margin over the honest
spread (:func:`suggest_thresholds`), and the table shows whether every dishonest scenario stays out.

Honest scenarios (must pass): the reference weights served in the declared dtype, one request at a
time, batched with other prompts (other matmul shapes), and with the other attention kernel
(eager vs SDPA). Dishonest ones (must fail): another model of the same architecture (another seed),
Gaussian noise on every weight at 0.1 %, 1 % and 10 % of the tensor's RMS, int8-quantized weights,
logits sent for shifted positions, and answers padded with made-up tokens. Serving a lower precision
than declared (bf16 while claiming fp32) is shown for information.

torch + transformers + numpy only: the GPU machine has nothing else.
"""

from __future__ import annotations

import copy
import gc
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from quasar.inference.encoding import encode_logits
from quasar.inference.generate import greedy_generate
from quasar.inference.model import DTYPES, LoadedModel
from quasar.verification.challenge import Challenge, make_challenge
from quasar.verification.thresholds import DEFAULT_THRESHOLDS, Thresholds
from quasar.verification.verifier import ChallengeSpec, Measurement, MinerAnswer, Verifier

# ---------------------------------------------------------------------------------------------
# Building the served models


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


# ---------------------------------------------------------------------------------------------
# Scenarios


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


# ---------------------------------------------------------------------------------------------
# Running


# Statistic -> how to take the worst over challenges.
WORST: dict[str, Callable[[float, float], float]] = {
    "tokens_differ": max,
    "token_max_gap": max,
    "centred_cosine_mean": min,
    "kl_mean": max,
    "topk_agreement_mean": min,
    "raw_cosine_min": min,
    "max_abs_diff": max,
}


@dataclass
class ScenarioOutcome:
    name: str
    honest: bool | None
    declared: str
    measurements: list[Measurement] = field(default_factory=list, repr=False)
    runs: int = 0
    passes: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    worst: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    verify_ms: float = 0.0  # mean reference replay time per check (the validator's cost per miner)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "honest": self.honest,
            "declared": self.declared,
            "runs": self.runs,
            "passes": self.passes,
            "reasons": self.reasons,
            "worst": self.worst,
            "seconds": round(self.seconds, 3),
            "verify_ms": round(self.verify_ms, 3),
            "note": self.note,
        }


def run_calibration(
    reference: LoadedModel,
    scenarios: list[Scenario],
    *,
    challenges: int = 8,
    spec: ChallengeSpec | None = None,
    thresholds: dict[str, Thresholds] | None = None,
    seed_prefix: str = "calibrate",
    progress: Callable[[str], None] | None = None,
) -> list[ScenarioOutcome]:
    """Run every scenario on the same ``challenges`` challenges; collect the worst statistics and the
    verdicts under ``thresholds`` (the defaults when not given)."""
    verifier = Verifier(reference, thresholds or DEFAULT_THRESHOLDS, spec=spec or ChallengeSpec())
    planned = [verifier.challenge(f"{seed_prefix}-{i}") for i in range(challenges)]
    outcomes = []
    for scenario in scenarios:
        started = time.perf_counter()
        answer_fn = scenario.build()
        outcome = ScenarioOutcome(scenario.name, scenario.honest, scenario.declared, note=scenario.note)
        for challenge in planned:
            outcome.measurements.append(verifier.measure(challenge, answer_fn(challenge)))
        outcome.seconds = time.perf_counter() - started
        replays = [m.metrics["reference_ms"] for m in outcome.measurements if "reference_ms" in m.metrics]
        outcome.verify_ms = sum(replays) / max(1, len(replays))
        for m in outcome.measurements:
            for key, pick in WORST.items():
                if key in m.metrics:
                    value = float(m.metrics[key])
                    outcome.worst[key] = pick(outcome.worst.get(key, value), value)
        judge([outcome], verifier)
        outcomes.append(outcome)
        if progress:
            progress(format_row(outcome))
        del answer_fn
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return outcomes


def judge(outcomes: list[ScenarioOutcome], verifier: Verifier) -> None:
    """(Re)compute the verdicts of every measurement under the verifier's thresholds."""
    for outcome in outcomes:
        limits = verifier.thresholds[outcome.declared]
        outcome.runs = len(outcome.measurements)
        outcome.passes = 0
        outcome.reasons = {}
        for m in outcome.measurements:
            result = verifier.judge(m, limits, outcome.declared)
            outcome.passes += result.passed
            outcome.reasons[result.reason] = outcome.reasons.get(result.reason, 0) + 1


# ---------------------------------------------------------------------------------------------
# Thresholds from the honest spread

# Distances (1 − cosine, KL) are set this many times above the largest honest value, and never
# tighter than the floor: the floor covers what the calibration cannot see (other GPUs, kernels,
# library versions). The gap tolerance follows the same rule on the largest honest near-tie gap.
MARGIN = 3.0
GAP_MARGIN = 2.0
TOPK_SLACK = 0.05
FLOORS = {
    "float32": {"cosine_distance": 1e-5, "kl": 1e-4, "gap": 1e-2},
    "bfloat16": {"cosine_distance": 1e-4, "kl": 1e-3, "gap": 0.05},
    "float16": {"cosine_distance": 1e-4, "kl": 1e-3, "gap": 0.05},
}


def suggest_thresholds(outcomes: list[ScenarioOutcome], *, margin: float = MARGIN) -> dict[str, Thresholds]:
    """Per declared dtype: a margin over the worst honest value of each statistic."""
    suggested: dict[str, Thresholds] = {}
    for dtype in sorted({o.declared for o in outcomes if o.honest}):
        honest = [o for o in outcomes if o.honest and o.declared == dtype and o.worst]
        if not honest:
            continue
        floors = FLOORS.get(dtype, FLOORS["bfloat16"])
        cos_dist = max(1.0 - o.worst.get("centred_cosine_mean", 1.0) for o in honest)
        kl = max(o.worst.get("kl_mean", 0.0) for o in honest)
        gap = max(o.worst.get("token_max_gap", 0.0) for o in honest)
        topk = min(o.worst.get("topk_agreement_mean", 1.0) for o in honest)
        suggested[dtype] = Thresholds(
            # a near tie the honest runs flipped at, with room for one more rounding step
            token_gap_tolerance=float(f"{max(gap * GAP_MARGIN, floors['gap']):.3g}"),
            max_token_mismatches=0,
            min_centred_cosine=float(f"{1.0 - max(cos_dist * margin, floors['cosine_distance']):.8g}"),
            max_kl=float(f"{max(kl * margin, floors['kl']):.3g}"),
            # top-k overlap is a fraction; allow a little more swapping than the honest runs showed
            min_topk_agreement=round(max(0.0, min(topk, 1.0) - TOPK_SLACK), 3),
        )
    return suggested


# ---------------------------------------------------------------------------------------------
# Printing

HEADER = (
    f"{'scenario':34} {'decl':5} {'kind':9} {'pass':>6} {'tok≠':>4} {'max gap':>8} {'1-cos(c)':>9} "
    f"{'KL':>9} {'top10':>6} {'raw cos':>9} {'max|Δ|':>8} {'verify':>8}  reasons"
)


def format_row(o: ScenarioOutcome) -> str:
    w = o.worst
    kind = {True: "honest", False: "DISHONEST", None: "info"}[o.honest]
    decl = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(o.declared, o.declared)
    reasons = ",".join(f"{k}:{v}" for k, v in sorted(o.reasons.items()))

    def num(key: str, fmt: str, transform: Callable[[float], float] = lambda x: x) -> str:
        return format(transform(w[key]), fmt) if key in w else "-"

    return (
        f"{o.name[:34]:34} {decl:5} {kind:9} {o.passes:>2}/{o.runs:<3} {num('tokens_differ', '4.0f')} "
        f"{num('token_max_gap', '8.3g')} {num('centred_cosine_mean', '9.2e', lambda x: 1 - x)} "
        f"{num('kl_mean', '9.2e')} {num('topk_agreement_mean', '6.3f')} "
        f"{num('raw_cosine_min', '9.6f')} {num('max_abs_diff', '8.3g')} {o.verify_ms:7.1f}ms  {reasons}"
    )


def format_table(outcomes: list[ScenarioOutcome]) -> str:
    return "\n".join([HEADER, *(format_row(o) for o in outcomes)])


def misclassified(outcomes: list[ScenarioOutcome]) -> list[str]:
    """Scenarios on the wrong side: an honest one that failed any run, a dishonest one that passed any."""
    bad = []
    for o in outcomes:
        if o.honest is True and o.passes < o.runs:
            bad.append(f"honest '{o.name}' failed {o.runs - o.passes}/{o.runs}")
        if o.honest is False and o.passes > 0:
            bad.append(f"dishonest '{o.name}' passed {o.passes}/{o.runs}")
    return bad
