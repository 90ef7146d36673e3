"""The dashboard's chart: the best correct speed-up per round over its own baseline, as inline SVG."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

from quasar.schemas import RoundBest
from validator_api.dashboard.parts import (
    _e,
    _ms,
    _short,
    _x,
)


def _nice_max(value: float) -> float:
    if not value > 0:  # also NaN
        return 1.0
    # A validator may report any finite time, up to 1.8e308 ms: the axis tops out at the largest float.
    if value >= sys.float_info.max / 10:
        return sys.float_info.max
    exponent = math.floor(math.log10(value))
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        top = step * 10.0**exponent
        if top >= value:
            return top
    return 10.0 ** (exponent + 1)


def _round_speedup(h: RoundBest) -> float | None:
    """The round's best correct speed-up over its own baseline; None: no correct timed result."""
    value = h.best_speedup
    if value is None and h.best_ms and h.baseline_ms:
        try:
            value = h.baseline_ms / h.best_ms
        except (OverflowError, ZeroDivisionError):
            value = None
    return value if value is not None and math.isfinite(value) and value > 0 else None


def chart_svg(history: Sequence[RoundBest]) -> str:
    """The best correct speed-up per round (each over its own round's baseline) as inline SVG.

    Every round gets its place on the x axis; a round without a correct timed result is a gap (a
    shaded band), and the line breaks there rather than joining its neighbours across it. Speed-ups,
    not times, because baselines differ between rounds (validators' GPUs, inputs) and only the ratio
    to the same round's baseline is comparable.
    """
    values = [(h, _round_speedup(h)) for h in history]
    if all(v is None for _, v in values):
        return '<p class="muted empty" id="chart-empty">No timed results yet: the chart fills in as rounds are scored.</p>'
    width, height, left, right, top, bottom = 640, 236, 48, 16, 12, 32
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(max(v for _, v in values if v is not None), 1.0)
    y_max = _nice_max(min(peak * 1.1, sys.float_info.max))
    n = len(values)
    step = plot_w / max(n, 1)

    def x(i: int) -> float:
        return left + (plot_w / 2 if n == 1 else plot_w * i / (n - 1))

    def y(v: float) -> float:
        return top + plot_h * (1 - min(v, y_max) / y_max)

    out = [
        f'<svg id="chart" viewBox="0 0 {width} {height}" role="img" aria-labelledby="chart-title" '
        'preserveAspectRatio="xMidYMid meet"><title id="chart-title">Best speed-up per round over its baseline</title>'
    ]
    for k in range(5):
        v = y_max * (k / 4)  # not y_max * k: that overflows near the largest float
        out.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>'
            f'<text class="axis" x="{left - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.3g}×</text>'
        )
    for i, (h, v) in enumerate(values):
        if v is None:
            band = min(step * 0.7, 28.0)
            out.append(
                f'<g class="gap" data-round-id="{h.round_id}"><rect class="gap-band" x="{x(i) - band / 2:.1f}" '
                f'y="{top}" width="{band:.1f}" height="{plot_h}"/>'
                f"<title>round #{h.round_id}: no correct timed result</title></g>"
            )
    # The baseline of every round is 1× by definition.
    out.append(
        f'<line class="line baseline" x1="{left}" x2="{width - right}" y1="{y(1.0):.1f}" y2="{y(1.0):.1f}"/>'
    )
    label_every = max(1, math.ceil(n / 10))
    for i, (h, _) in enumerate(values):
        if i % label_every == 0 or i == n - 1:
            out.append(
                f'<text class="axis" x="{x(i):.1f}" y="{height - 4}" text-anchor="middle">#{h.round_id}</text>'
            )
    segment: list[tuple[float, float]] = []
    for i, (_, v) in enumerate([*values, (None, None)]):  # a sentinel gap ends the last segment
        if v is not None:
            segment.append((x(i), y(v)))
            continue
        if len(segment) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in segment)
            out.append(f'<polyline class="line best" points="{path}"/>')
        segment = []
    for i, (h, v) in enumerate(values):
        if v is None:
            continue
        who = f" by {_short(h.best_hotkey)}" if h.best_hotkey else ""
        times = f" ({_ms(h.best_ms)} against {_ms(h.baseline_ms)})" if h.best_ms and h.baseline_ms else ""
        out.append(
            f'<a href="/?round_id={h.round_id}"><circle class="dot best" data-round-id="{h.round_id}" '
            f'cx="{x(i):.1f}" cy="{y(v):.1f}" r="4.5">'
            f"<title>round #{h.round_id}: best {_e(_x(v))}{_e(who)}{_e(times)}</title></circle></a>"
        )
    out.append("</svg>")
    legend = (
        '<div class="legend"><span><i class="key best"></i>best correct speed-up</span>'
        '<span><i class="key baseline"></i>the round\'s baseline (1×)</span>'
        '<span><i class="key gap"></i>no timed result</span><span class="muted">higher is faster</span></div>'
    )
    return "".join(out) + legend
