"""The statistics of a timed comparison: speed-up as a ratio of medians, with a bootstrap interval.

The baseline and the submission are timed in alternating batches on the same inputs (``pairs``: one
baseline batch time and one submission batch time each, per call). Drift and warm-up hit both sides
of a pair alike, so the interval comes from resampling whole pairs. Pure Python: the parent runs it.

The comparison looks at its interval after every pair and stops once it is decided; each look is
another chance for noise to decide a tie. So a look before the last one decides only at the
stricter ``EARLY_STOP_LEVEL``, and the last at 95% (the interval reported is always the 95% one).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

#: Resamples of the paired bootstrap; enough for the 2.5% and 97.5% points to settle at 1e-3.
BOOTSTRAP_RESAMPLES = 2000
#: The interval reported, and the one the last look decides with.
REPORTED_LEVEL = 0.95
#: The interval a look before the last must clear to stop measuring (seen on 2 shared cores: at 95%,
#: the template against itself was once called 0.78x [0.72, 0.91] after six pairs).
EARLY_STOP_LEVEL = 0.99


@dataclass(frozen=True)
class SpeedupEstimate:
    speedup: float
    ci_low: float
    ci_high: float
    baseline_ms: float
    median_ms: float
    pairs: int

    def decided(self, threshold: float) -> bool:
        """Whether the interval lies wholly on one side of ``threshold`` (e.g. 1 + WIN_MARGIN)."""
        return self.ci_low >= threshold or self.ci_high < threshold


def _ratio(pairs: Sequence[tuple[float, float]]) -> float:
    base = statistics.median(b for b, _ in pairs)
    sub = statistics.median(s for _, s in pairs)
    return base / sub if sub > 0 else float("inf")


def estimate(
    pairs: Sequence[tuple[float, float]], *, seed: int = 0, level: float = REPORTED_LEVEL
) -> SpeedupEstimate:
    """Median baseline time over median submission time, and its paired-bootstrap interval at
    ``level`` (the same seed gives nested intervals at different levels)."""
    if len(pairs) < 2:
        raise ValueError("a speed-up interval needs at least two pairs of batches")
    if not 0.5 < level < 1:
        raise ValueError(f"an interval's level is between 0.5 and 1, not {level}")
    rng = random.Random(seed)
    n = len(pairs)
    ratios = sorted(_ratio([pairs[rng.randrange(n)] for _ in range(n)]) for _ in range(BOOTSTRAP_RESAMPLES))
    tail = (1 - level) / 2
    low = ratios[int(tail * BOOTSTRAP_RESAMPLES)]
    high = ratios[int((1 - tail) * BOOTSTRAP_RESAMPLES) - 1]
    return SpeedupEstimate(
        speedup=_ratio(pairs), ci_low=low, ci_high=high,
        baseline_ms=statistics.median(b for b, _ in pairs), median_ms=statistics.median(s for _, s in pairs),
        pairs=n,
    )  # fmt: skip
