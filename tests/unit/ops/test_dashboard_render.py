"""The dashboard HTML escapes every miner- or validator-controlled string and links only http(s)."""

from __future__ import annotations

import re
from types import SimpleNamespace

from quasar.schemas import RoundBest
from validator_api.dashboard import DashboardData, Row, chart_svg, render

EVIL = "\"'><script>alert(1)</script><img src=x onerror=alert(2)>&"


def _row(**overrides: object) -> Row:
    values: dict = dict(
        rank=1, submission_id=1, hotkey=EVIL, status="scored", speedup=2.0, median_ms=1.5, correct=True,
        verified=True, counted=True, reason=EVIL, sandbox=EVIL, repo_url="javascript:alert(3)//" + EVIL,
        commit_sha=EVIL,
    )  # fmt: skip
    values.update(overrides)
    return Row(**values)


def _page() -> str:
    rnd = SimpleNamespace(
        id=7, status="open", start_block=0, end_block=100, baseline_ms=3.0, winner_hotkey=EVIL
    )
    history = [
        RoundBest(
            round_id=7,
            status="open",
            start_block=0,
            end_block=100,
            baseline_ms=3.0,
            best_ms=1.5,
            best_hotkey=EVIL,
            best_speedup=2.0,
            submissions=2,
            winner_hotkey=EVIL,
        )
    ]
    data = DashboardData(
        network=EVIL, netuid=1, block=50, block_time_seconds=12.0, round=rnd,  # type: ignore[arg-type]
        rows=[_row(), _row(submission_id=2, rank=None, counted=False, repo_url="https://github.com/a/b" + EVIL)],
        history=history,
    )  # fmt: skip
    return render(data, nonce="n0nce", version=EVIL)


def test_hostile_strings_are_escaped_everywhere() -> None:
    page = _page()
    assert "<script>alert" not in page and "<img" not in page  # only as escaped text
    assert page.count("<script") == 1 and '<script nonce="n0nce">' in page
    # Every attribute value is quoted and free of raw quotes from the data.
    for value in re.findall(r"=\"([^\"]*)\"", page):
        assert "<" not in value and ">" not in value
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_only_http_links_are_clickable() -> None:
    page = _page()
    assert 'href="javascript:' not in page
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert all(h.startswith(("/", "https://")) for h in hrefs), hrefs
    assert any(h.startswith("https://github.com/a/b&quot;&#x27;&gt;&lt;script&gt;") for h in hrefs)


def test_chart_is_empty_text_without_timed_rounds_and_svg_with_them() -> None:
    assert 'id="chart-empty"' in chart_svg([])
    svg = chart_svg(
        [
            RoundBest(
                round_id=i,
                status="finalized",
                start_block=0,
                end_block=1,
                baseline_ms=10.0,
                best_ms=10.0 / i,
                best_speedup=float(i),
                submissions=1,
            )
            for i in range(1, 4)
        ]
    )
    assert svg.startswith('<svg id="chart"') and svg.count('class="dot best"') == 3


def test_chart_draws_absurd_but_finite_times() -> None:
    # A validator may report any finite time; the axis must not overflow (it did: 500 on `/`).
    history = [
        RoundBest(
            round_id=1, status="finalized", start_block=0, end_block=1, baseline_ms=1.7e308, best_ms=1.0
        ),
        RoundBest(round_id=2, status="finalized", start_block=1, end_block=2, baseline_ms=2.0, best_ms=1e308),
    ]
    svg = chart_svg(history)
    assert "<svg" in svg and "inf" not in svg and "nan" not in svg
