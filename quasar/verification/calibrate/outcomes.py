"""A calibration scenario's outcome: its worst statistics and verdicts, the table row it prints as, and
whether it landed on the wrong side of the thresholds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from quasar.verification.verifier import Measurement


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
