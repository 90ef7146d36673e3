"""Thresholds from a calibration: per declared dtype, a margin over the worst honest value of each statistic."""

from __future__ import annotations

from quasar.verification.calibrate.outcomes import ScenarioOutcome
from quasar.verification.thresholds import Thresholds

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
