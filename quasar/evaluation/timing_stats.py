"""The statistics of a timed comparison: speed-up as a ratio of medians, with a bootstrap interval.

The baseline and the submission are timed in alternating batches on the same inputs (``pairs``: one
baseline batch time and one submission batch time each, per call). Drift and warm-up hit both sides
of a pair alike, so the interval comes from resampling whole pairs. Pure Python: the parent runs it.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

#: Resamples of the paired bootstrap; enough for the 2.5% and 97.5% points to settle at 1e-3.
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class SpeedupEstimate:
    speedup: float
    ci_low: float
    ci_high: float
    baseline_ms: float
    median_ms: float
    pairs: int

    def decided(self, threshold: float) -> bool:
        """Whether the 95% interval lies wholly on one side of ``threshold`` (e.g. 1 + WIN_MARGIN)."""
        return self.ci_low >= threshold or self.ci_high < threshold


def _ratio(pairs: Sequence[tuple[float, float]]) -> float:
    base = statistics.median(b for b, _ in pairs)
    sub = statistics.median(s for _, s in pairs)
    return base / sub if sub > 0 else float("inf")


def estimate(pairs: Sequence[tuple[float, float]], *, seed: int = 0) -> SpeedupEstimate:
    """Median baseline time over median submission time, and its paired-bootstrap 95% interval."""
    if len(pairs) < 2:
        raise ValueError("a speed-up interval needs at least two pairs of batches")
    rng = random.Random(seed)
    n = len(pairs)
    ratios = sorted(_ratio([pairs[rng.randrange(n)] for _ in range(n)]) for _ in range(BOOTSTRAP_RESAMPLES))
    low = ratios[int(0.025 * BOOTSTRAP_RESAMPLES)]
    high = ratios[int(0.975 * BOOTSTRAP_RESAMPLES) - 1]
    return SpeedupEstimate(
        speedup=_ratio(pairs), ci_low=low, ci_high=high,
        baseline_ms=statistics.median(b for b, _ in pairs), median_ms=statistics.median(s for _, s in pairs),
        pairs=n,
    )  # fmt: skip
