"""Running a calibration: every scenario on the same challenges, each measured and judged by the verifier."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import torch

from quasar.inference.model import LoadedModel
from quasar.verification.calibrate.outcomes import ScenarioOutcome, format_row
from quasar.verification.calibrate.scenarios import Scenario
from quasar.verification.thresholds import DEFAULT_THRESHOLDS, Thresholds
from quasar.verification.verifier import ChallengeSpec, Verifier

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
