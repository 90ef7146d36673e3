"""The owner's dashboard as HTML: `/` (a round), `/miners/{hotkey}`, `/validators`, and error pages.

Each `render_*` turns the plain data read by `validator_api.services.dashboard_queries` into one
self-contained HTML page: inline CSS, an inline SVG chart drawn on the server, and a few lines of
JavaScript (countdown, refresh) allowed by a per-response CSP nonce. Nothing is loaded from anywhere
else (no CDN, no web fonts), and this module runs no query of its own.

Every string that a miner or validator controls (hotkeys, repository URLs, reasons, sandboxes, logit
checks, details) goes through `_e` (html.escape with quotes) before it reaches the page, only http(s)
URLs become links, and a hotkey in a link is percent-encoded first.
"""

from __future__ import annotations

import html
import math
import sys
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import quote, urlsplit

from quasar.reasons import REASON_OK, describe, describe_logit
from quasar.schemas import RoundBest
from validator_api.services.dashboard_queries import (
    CHART_ROUNDS,
    DashboardData,
    MinerData,
    MinerSubmission,
    Row,
    ValidatorsData,
    WeightsView,
)

__all__ = [
    "CHART_ROUNDS",
    "DashboardData",
    "Row",
    "chart_svg",
    "render",
    "render_error",
    "render_miner",
    "render_validators",
]


# --- small pieces -------------------------------------------------------------------------------
def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _short(hotkey: str) -> str:
    return hotkey if len(hotkey) <= 12 else f"{hotkey[:5]}…{hotkey[-5:]}"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3g} ms" if value < 100 else f"{value:.0f} ms"


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%".replace(".0%", "%")


def _ago(now: datetime, then: datetime | None) -> str:
    if then is None:
        return '<span class="muted">never</span>'
    return f'<span title="{_e(then.isoformat(timespec="seconds"))}">{_e(_duration((now - then).total_seconds()))} ago</span>'


def _muted(text: str = "—") -> str:
    return f'<span class="muted">{_e(text)}</span>'


def _check(value: bool | None, *, off: bool = False) -> str:
    if off:
        return '<span class="muted" title="logit verification is off">off</span>'
    if value is None:
        return '<span class="muted" title="not checked yet">—</span>'
    return (
        '<span class="ok" title="passed">✓</span>' if value else '<span class="bad" title="failed">✗</span>'
    )


def _badge(status: str) -> str:
    return f'<span class="badge s-{_e(status)}">{_e(status)}</span>'


def _miner(hotkey: str | None, *, full: bool = False) -> str:
    """A hotkey linking to its miner page (percent-encoded in the path, escaped in the attribute)."""
    if not hotkey:
        return _muted()
    label = hotkey if full else _short(hotkey)
    return f'<a class="mono" href="/miners/{_e(quote(hotkey, safe=""))}" title="{_e(hotkey)}">{_e(label)}</a>'


def _hotkey(hotkey: str | None) -> str:
    """A hotkey shown, not linked (validators have no page of their own)."""
    if not hotkey:
        return _muted()
    return f'<span class="mono" title="{_e(hotkey)}">{_e(_short(hotkey))}</span>'


def _round_link(round_id: int) -> str:
    return f'<a href="/?round_id={int(round_id)}">#{int(round_id)}</a>'


def _reason(code: str | None, *, logit: bool = False) -> str:
    """A reason code and its sentence from quasar.reasons (an unknown code is shown as it is)."""
    if not code:
        return ""
    words = describe_logit(code) if logit else describe(code)
    sentence = f' <span class="words">{_e(words)}</span>' if words != code else ""
    return f'<code class="code">{_e(code)}</code>{sentence}'


def _interval(low: float | None, high: float | None, inconclusive: bool | None) -> str:
    if low is None or high is None:
        return ""
    # The 95% interval; an inconclusive one never counts, and says so.
    text = f"{low:.2f}–{high:.2f}" + (", inconclusive" if inconclusive else "")
    return f'<span class="ci" title="95% interval">{_e(text)}</span>'


def _safe_link(url: str | None, sha: str | None) -> str:
    if not url:
        return '<span class="muted">—</span>'
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced IPv6 bracket: show it, never link it
        return f'<span class="mono">{_e(url)}</span>'
    label = _e("/".join(parts.path.strip("/").split("/")[-2:]) or parts.netloc or url)
    if sha:
        label += f"@{_e(sha[:8])}"
    # Only plain web links become clickable: a javascript: or data: URL stays inert text.
    if parts.scheme in ("http", "https") and parts.netloc:
        return f'<a href="{_e(url)}" rel="nofollow noopener noreferrer" target="_blank">{label}</a>'
    return f'<span title="{_e(url)}">{label}</span>'


def _stats(stats: Sequence[tuple[str, str]]) -> str:
    cells = "".join(
        f'<div class="stat"><div class="label">{k}</div><div class="value">{v}</div></div>' for k, v in stats
    )
    return f'<div class="stats">{cells}</div>'


def _table(table_id: str, head: str, rows: Sequence[str], empty: str, columns: int) -> str:
    body = "".join(rows) or f'<tr><td colspan="{columns}" class="muted empty">{_e(empty)}</td></tr>'
    return (
        f'<div class="table-wrap"><table id="{table_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


# --- `/`: the round -------------------------------------------------------------------------------
def _round_picker(data: DashboardData) -> str:
    rnd = data.round
    if rnd is None or not data.history:
        return ""
    links = []  # newest first, left to right
    if data.next_round_id is not None:
        links.append(f'<a class="pill" rel="next" href="/?round_id={data.next_round_id}">‹ newer</a>')
    for h in reversed(data.history):
        cls = "pill on" if h.round_id == rnd.id else "pill"
        links.append(f'<a class="{cls}" href="/?round_id={h.round_id}">#{h.round_id}</a>')
    if data.previous_round_id is not None:
        links.append(f'<a class="pill" rel="prev" href="/?round_id={data.previous_round_id}">older ›</a>')
    if data.picked and data.current_round_id is not None and rnd.id != data.current_round_id:
        links.append(f'<a class="pill now" href="/">current: #{data.current_round_id}</a>')
    return f'<nav class="rounds" id="round-picker" aria-label="rounds">{"".join(links)}</nav>'


def _round_section(data: DashboardData) -> str:
    rnd = data.round
    if rnd is None:
        return '<section class="card"><h2>Round</h2><p class="muted">No round yet.</p></section>'
    stats: list[tuple[str, str]] = [("Status", _badge(rnd.status))]
    seconds_left: float | None = None
    if rnd.status == "open" and data.block is not None:
        blocks_left = max(0, rnd.end_block - data.block)
        seconds_left = blocks_left * data.block_time_seconds
        stats.append(("Time left", f'<span id="time-left">{_e(_duration(seconds_left))}</span>'))
        stats.append(("Blocks left", _e(f"{blocks_left:,}")))
    elif rnd.status == "open":
        stats.append(("Time left", '<span class="muted">chain unavailable</span>'))
    stats.append(("Blocks", _e(f"{rnd.start_block:,} → {rnd.end_block:,}")))
    stats.append(("Baseline", _e(_ms(rnd.baseline_ms))))
    stats.append(("Submissions", _e(str(len(data.rows)))))
    best = max((r.speedup for r in data.rows if r.counted and r.speedup is not None), default=None)
    stats.append(("Best speed-up", _e(_x(best)) if best is not None else _muted()))
    if rnd.winner_hotkey:
        stats.append(("Winner", f'<span id="winner">{_miner(rnd.winner_hotkey)}</span>'))
    elif rnd.status == "finalized":
        stats.append(("Winner", '<span id="winner" class="muted">nobody: all weight burned</span>'))
    countdown = f' data-seconds-left="{seconds_left:.0f}"' if seconds_left is not None else ""
    past = (
        ' <span class="muted">(a past round)</span>'
        if data.picked and rnd.id != data.current_round_id
        else ""
    )
    return (
        f'<section class="card" id="round" data-round-id="{rnd.id}"{countdown}>'
        f'<h2>Round <span class="accent">#{rnd.id}</span>{past}</h2>{_stats(stats)}{_round_picker(data)}</section>'
    )


def _leaderboard_section(data: DashboardData) -> str:
    head = (
        "<tr><th>#</th><th>Miner</th><th class='num'>Speed-up</th><th class='num wide'>Median</th>"
        "<th class='c'><span class='full'>Correct</span><span class='abbr'>OK</span></th>"
        "<th class='c'><span class='full'>Verified</span><span class='abbr'>Logits</span></th>"
        "<th>Status</th><th class='wide'>Kernel</th></tr>"
    )
    if not data.rows:
        body = '<tr><td colspan="8" class="muted empty">No submissions in this round yet.</td></tr>'
    else:
        parts = []
        for row in data.rows:
            rank = str(row.rank) if row.rank is not None else "–"
            interval = _interval(row.speedup_ci_low, row.speedup_ci_high, row.inconclusive)
            status = _badge(row.status)
            if row.reason and row.reason != REASON_OK:
                status += f' <span class="reason">{_e(row.reason)}</span>'
            if row.sandbox:
                # Where the verdict was reached (validator-reported), e.g. "bwrap, cgroup v2, uid 65534".
                status += f' <span class="sandbox" title="sandbox">{_e(row.sandbox)}</span>'
            parts.append(
                f'<tr class="{"counted" if row.counted else "uncounted"}" data-submission-id="{row.submission_id}">'
                f'<td class="rank">{_e(rank)}</td><td>{_miner(row.hotkey)}</td>'
                f'<td class="num strong">{_e(_x(row.speedup))}{interval}</td><td class="num wide">{_e(_ms(row.median_ms))}</td>'
                f'<td class="c">{_check(row.correct)}</td>'
                f'<td class="c">{_check(row.verified, off=not data.logit_verification)}</td>'
                f"<td>{status}</td><td class='wide'>{_safe_link(row.repo_url, row.commit_sha)}</td></tr>"
            )
        body = "".join(parts)
    title = f"Leaderboard · round #{data.round.id}" if data.round else "Leaderboard"
    return (
        f'<section class="card"><h2>{_e(title)}</h2><div class="table-wrap">'
        f'<table id="leaderboard"><thead>{head}</thead><tbody>{body}</tbody></table></div>'
        '<p class="note">Ranked rows count for weights: correct, verified and faster than the baseline '
        "by the margin. Speed-ups are measured by validators, never reported by miners.</p></section>"
    )


def _rejected_section(data: DashboardData) -> str:
    if data.round is None:
        return ""
    rows = [
        f'<tr data-rejected-id="{r.submission_id}"><td>{_miner(r.hotkey)}</td><td>{_badge(r.status)}</td>'
        f'<td class="why">{_reason(r.reason)}</td></tr>'
        for r in data.rows
        if r.rejected
    ]
    head = "<th>Miner</th><th>Status</th><th>Reason</th>"
    return (
        f'<section class="card" id="rejected-card"><h2>Rejected · round #{data.round.id}</h2>'
        f"{_table('rejected', head, rows, 'Nothing rejected in this round.', 3)}</section>"
    )


def _weights_section(view: WeightsView | None) -> str:
    if view is None:
        return ""
    if view.round_id is None:
        title = "Weights now"
        source = "No round has been finalized yet: every validator sets all weight on the burn uid."
    elif view.current:
        title = f"Weights now · from round #{view.round_id}"
        source = f"Fixed when round {_round_link(view.round_id)} was finalized"
    else:
        title = f"Weights of round #{view.round_id}"
        now = f" (now: round {_round_link(view.current_round_id)}'s)" if view.current_round_id else ""
        source = f"Set after round {_round_link(view.round_id)} was finalized{now}"
    if view.finalized_block is not None:
        source += f", at block {view.finalized_block:,}"
    if view.round_id is not None:
        source += (
            ". These are what GET /v1/weights tells every validator to set; the API does not read "
            "weights back from the chain."
        )
    places: dict[str, list[int]] = {}
    for p in view.split:
        if p.hotkey and p.burned is None:
            places.setdefault(p.hotkey, []).append(p.place)
    share_rows = []
    for s in sorted(view.shares, key=lambda s: (-s.weight, s.uid)):
        if s.burn:
            role = '<span class="burn">burn uid</span>'
        else:
            won = places.get(s.hotkey or "", [])
            role = ", ".join(f"place {p}" for p in won) if won else ""
        # An SVG bar: its width is an attribute, where a style attribute would need 'unsafe-inline'.
        width = max(0.0, min(100.0, s.weight * 100))
        bar = (
            f'<svg class="bar" viewBox="0 0 100 8" preserveAspectRatio="none" aria-hidden="true">'
            f'<rect class="track" width="100" height="8"/><rect class="{"burnfill" if s.burn else "fill"}" '
            f'width="{width:.1f}" height="8"/></svg>'
        )
        who = _hotkey(s.hotkey) if s.burn else _miner(s.hotkey)
        share_rows.append(
            f'<tr data-uid="{s.uid}"><td class="num">{s.uid}</td><td>{who}</td>'
            f'<td class="num strong">{_e(_pct(s.weight))}</td><td class="wide">{bar}</td><td>{role}</td></tr>'
        )
    split_rows = []
    for p in view.split:
        who = _miner(p.hotkey) if p.hotkey else _muted("nobody")
        uid = str(p.uid) if p.uid is not None else "—"
        to = (
            f'<span class="ok">paid to uid {p.uid}</span>'
            if p.burned is None
            else f'<span class="burn">burned: {_e(p.burned)}</span>'
        )
        split_rows.append(
            f'<tr data-place="{p.place}"><td class="num">{p.place}</td><td class="num">{_e(_pct(p.share))}</td>'
            f'<td>{who}</td><td class="num wide">{_e(uid)}</td><td class="num">{_e(_x(p.speedup))}</td>'
            f'<td class="wrap">{to}</td></tr>'
        )
    split_title = f"Split of round #{view.round_id}" if view.round_id is not None else "Split (WEIGHT_SPLIT)"
    stats = _stats(
        [
            ("Burn share", f'<span id="burn-share">{_e(_pct(view.burn_share))}</span>'),
            ("Burn uid", _e(str(view.burn_uid))),
            ("Paid places", _e(f"{sum(p.burned is None for p in view.split)} of {len(view.split)}")),
        ]
    )
    return (
        f'<section class="card" id="weights-card" data-weights-round="{view.round_id or ""}"><h2>{_e(title)}</h2>'
        f'{stats}<p class="note">{source}</p>'
        + _table(
            "weights",
            "<th class='num'>uid</th><th>Hotkey</th><th class='num'>Weight</th><th class='wide'></th><th>For</th>",
            share_rows, "No weights.", 5,
        )
        + f"<h3>{_e(split_title)}</h3>"
        + _table(
            "split",
            "<th class='num'>Place</th><th class='num'>Share</th><th>Miner</th><th class='num wide'>uid</th>"
            "<th class='num'>Speed-up</th><th>Went to</th>",
            split_rows, "WEIGHT_SPLIT is empty.", 6,
        )
        + "</section>"
    )  # fmt: skip


# --- the chart --------------------------------------------------------------------------------------
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


# --- the page frame ---------------------------------------------------------------------------------
_CSS = """
:root{--bg:#0b1020;--card:#141a2e;--line:#252d48;--text:#e6e9f2;--muted:#8b93ad;--accent:#7aa2ff;
--ok:#3ecf8e;--bad:#ff6b6b;--warn:#f5b84b}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--text);
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:.4rem 1rem;padding:1.1rem 1.25rem;
border-bottom:1px solid var(--line)}
header h1{margin:0;font-size:1.3rem;letter-spacing:.04em}header h1 a{color:var(--text)}
header .meta{color:var(--muted);font-size:.9rem}
header nav{margin-left:auto;display:flex;gap:.9rem;font-size:.92rem}
header nav a.on{color:var(--text);font-weight:600}
main{max-width:1100px;margin:0 auto;padding:1rem;display:grid;gap:1rem;grid-template-columns:minmax(0,1fr)}
@media(min-width:900px){main{grid-template-columns:minmax(0,1fr) minmax(0,1.35fr)}
.span{grid-column:1/-1}}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:1rem 1.1rem;min-width:0}
.card h2{margin:0 0 .75rem;font-size:1rem;color:var(--muted);font-weight:600;text-transform:uppercase;
letter-spacing:.06em}
.card h3{margin:1rem 0 .4rem;font-size:.85rem;color:var(--muted);font-weight:600;text-transform:uppercase;
letter-spacing:.05em}
.accent{color:var(--accent)}
.stats{display:grid;grid-template-columns:repeat(auto-fill,minmax(130px,1fr));gap:.75rem}
.stat .label{color:var(--muted);font-size:.78rem;text-transform:uppercase;letter-spacing:.05em}
.stat .value{font-size:1.15rem;font-weight:600;overflow-wrap:anywhere}
.table-wrap{overflow-x:auto}
table{width:100%;border-collapse:collapse;font-size:.92rem}
th,td{padding:.5rem .55rem;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}
td.why,td.long{white-space:normal;min-width:10rem}td.long{overflow-wrap:anywhere}
th{color:var(--muted);font-weight:600;font-size:.78rem;text-transform:uppercase;letter-spacing:.04em}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.c,th.c{text-align:center}
tr.counted td.rank{color:var(--accent);font-weight:700}
tr.uncounted td{color:#b8bfd4}
.strong{font-weight:700}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.86rem}
.ok{color:var(--ok);font-weight:700}.bad{color:var(--bad);font-weight:700}.muted{color:var(--muted)}
.warn{color:var(--warn);font-weight:700}.burn{color:var(--warn)}
.empty{text-align:center;padding:1.2rem}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:999px;font-size:.78rem;background:#2a3352}
.ci{display:block;font-weight:400;font-size:.8em;color:var(--muted)}
.s-scored,.s-open,.s-pass,.s-working{background:rgba(62,207,142,.15);color:var(--ok)}
.s-rejected,.s-expired,.s-fail,.s-duplicate{background:rgba(255,107,107,.15);color:var(--bad)}
.s-evaluating,.s-revealed,.s-committed,.s-error,.s-recent{background:rgba(245,184,75,.15);color:var(--warn)}
.reason{color:var(--muted);font-size:.8rem}
.sandbox{display:block;color:var(--muted);font-size:.72rem}
code.code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.82rem;
background:#1d2540;border-radius:4px;padding:.05rem .3rem}
.words{color:var(--muted);font-size:.82rem}
.detail{display:block;color:var(--muted);font-size:.75rem;white-space:normal;overflow-wrap:anywhere;max-width:28rem}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
.note{color:var(--muted);font-size:.8rem;margin:.75rem 0 0}
.rounds{display:flex;flex-wrap:wrap;gap:.35rem;margin-top:.9rem}
.pill{display:inline-block;padding:.1rem .55rem;border:1px solid var(--line);border-radius:999px;font-size:.8rem}
.pill.on{background:var(--accent);color:var(--bg);border-color:var(--accent)}
.pill.now{border-color:var(--accent)}
svg{width:100%;height:auto;display:block}
svg.bar{display:inline-block;width:120px;height:8px;border-radius:4px;vertical-align:middle}
.bar .track{fill:var(--line)}.bar .fill{fill:var(--accent)}.bar .burnfill{fill:var(--warn)}
.sandbox-line{display:block}
.grid{stroke:var(--line);stroke-width:1}.axis{fill:var(--muted);font-size:11px}
.line{fill:none;stroke-width:2.5;stroke-linejoin:round}.line.best{stroke:var(--accent)}
.line.baseline{stroke:var(--muted);stroke-dasharray:5 5;stroke-width:1.5}
.gap-band{fill:var(--line);opacity:.55}
.dot.best{fill:var(--accent);stroke:var(--card);stroke-width:2}
.legend{display:flex;flex-wrap:wrap;gap:1rem;font-size:.82rem;margin-top:.5rem}
.key{display:inline-block;width:18px;height:3px;vertical-align:middle;margin-right:.35rem;border-radius:2px}
.key.best{background:var(--accent)}.key.baseline{background:var(--muted)}.key.gap{background:var(--line);height:10px}
.full-hotkey{overflow-wrap:anywhere;font-size:.95rem}
footer{color:var(--muted);font-size:.8rem;text-align:center;padding:1rem 1rem 2rem}
.abbr{display:none}
@media(max-width:600px){.wide,.full,.reason,.sandbox{display:none}.abbr{display:inline}header{padding:.9rem 1rem}
header nav{margin-left:0}main{padding:.6rem}.card{padding:.85rem .7rem}th,td{padding:.45rem .3rem}
table{font-size:.86rem}th{font-size:.7rem;letter-spacing:0}.mono{font-size:.8rem}.axis{font-size:20px}
td.why,td.long{min-width:9rem}td.wrap{white-space:normal}}
"""

# Counts the round's time left down every second and reloads the page every REFRESH seconds so it
# stays current without a client-side data layer; a page of a finalized round, or ?refresh=0, is not.
_JS = """
(function(){var REFRESH=30;var el=document.getElementById('round');
var out=document.getElementById('time-left');var left=el&&el.dataset.secondsLeft;
if(out&&left){left=parseInt(left,10);var t0=Date.now();
function pad(n){return(n<10?'0':'')+n}
function fmt(s){s=Math.max(0,s);var d=Math.floor(s/86400),h=Math.floor(s%86400/3600),
m=Math.floor(s%3600/60),x=s%60;return d?d+'d '+h+'h '+m+'m':h?h+'h '+pad(m)+'m':m+'m '+pad(x)+'s'}
setInterval(function(){out.textContent=fmt(left-Math.floor((Date.now()-t0)/1000))},1000)}
if(document.body.dataset.refresh==='1'&&!/[?&]refresh=0/.test(location.search)){
setTimeout(function(){location.reload()},REFRESH*1000)}})();
"""


def _frame(
    *, title: str, meta: str, content: str, nonce: str, version: str, active: str = "", refresh: bool = True
) -> str:
    def tab(href: str, name: str, label: str) -> str:
        on = ' class="on" aria-current="page"' if active == name else ""
        return f'<a href="{href}"{on}>{label}</a>'

    nav = f'<nav aria-label="pages">{tab("/", "round", "Rounds")}{tab("/validators", "validators", "Validators")}</nav>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta name="color-scheme" content="dark"><title>{_e(title)}</title>'
        f'<style nonce="{_e(nonce)}">{_CSS}</style></head><body data-refresh="{1 if refresh else 0}">'
        f'<header><h1><a href="/">QUASAR</a></h1><span class="meta">{meta}</span>{nav}</header><main>'
        f"{content}"
        "</main><footer>QUASAR Validator API "
        f'{_e(version)} · <a href="/docs">API docs</a> · <a href="/v1/history">history JSON</a> · '
        '<a href="/metrics">metrics</a></footer>'
        f'<script nonce="{_e(nonce)}">{_JS}</script></body></html>'
    )


def _meta(network: str, netuid: int, block: int | None = None, *, with_block: bool = False) -> str:
    meta = f"{_e(network)} · netuid {int(netuid)}"
    if with_block:
        meta += " · " + _e(f"block {block:,}" if block is not None else "chain unavailable")
    return meta


def render(data: DashboardData, *, nonce: str, version: str) -> str:
    """`/` and `/?round_id=N`: the round, the chart, its leaderboard, the weights and what was rejected."""
    rnd = data.round
    # A finalized round no longer changes: its page is not reloaded.
    refresh = rnd is None or rnd.status == "open" or not data.picked
    title = "QUASAR subnet" + (f" · round #{rnd.id}" if rnd is not None and data.picked else "")
    content = (
        f"{_round_section(data)}"
        f'<section class="card" id="chart-card"><h2>Best speed-up per round</h2>{chart_svg(data.history)}</section>'
        f'<div id="leaderboard-card" class="span">{_leaderboard_section(data)}</div>'
        f"{_rejected_section(data)}{_weights_section(data.weights)}"
    )
    return _frame(
        title=title, meta=_meta(data.network, data.netuid, data.block, with_block=True), content=content,
        nonce=nonce, version=version, active="round", refresh=refresh,
    )  # fmt: skip


# --- `/miners/{hotkey}` -------------------------------------------------------------------------------
def _logit_cell(verdict: str | None, reason: str | None, metrics: dict[str, float], *, off: bool) -> str:
    if off and verdict is None:
        return '<span class="muted" title="logit verification is off">off</span>'
    if verdict is None:
        return _muted("not checked")
    out = _badge(verdict)
    if reason and reason != REASON_OK:
        out += " " + _reason(reason, logit=True)
    if metrics:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())[:6])
        out += f'<span class="detail">{_e(shown)}</span>'
    return out


def _submission_row(sub: MinerSubmission, *, logit_on: bool) -> str:
    status = _badge(sub.status)
    if sub.reason and sub.reason != REASON_OK:
        status += " " + _reason(sub.reason)
    if sub.duplicate_of:
        status += f' <span class="words">of submission {int(sub.duplicate_of)}</span>'
    counted = (
        '<span class="ok" title="won the round">won</span>'
        if sub.won
        else ('<span class="ok">✓</span>' if sub.counted else _muted())
    )
    return (
        f'<tr data-submission-id="{sub.id}"><td>{_round_link(sub.round_id)} '
        f'<span class="muted">{_e(sub.round_status)}</span></td><td class="num">{sub.id}</td>'
        f'<td class="why">{status}</td><td class="num strong">{_e(_x(sub.score))}'
        f"{_interval(sub.score_ci_low, sub.score_ci_high, sub.inconclusive)}</td>"
        f'<td class="num wide">{_e(_ms(sub.median_ms))}</td><td class="c">{_check(sub.correct)}</td>'
        f'<td class="c">{_check(sub.verified, off=not logit_on)}</td><td class="c">{counted}</td>'
        f'<td class="num wide">{sub.evaluations}</td>'
        f'<td class="wide long">{_safe_link(sub.repo_url, sub.commit_sha)}</td></tr>'
    )


def render_miner(data: MinerData, *, nonce: str, version: str) -> str:
    """`/miners/{hotkey}`: one hotkey's submissions across rounds and every validator's result on them."""
    registered = (
        _muted("chain unavailable")
        if data.registered is None
        else ('<span class="ok">yes</span>' if data.registered else '<span class="bad">no</span>')
    )
    won = " ".join(_round_link(r) for r in data.rounds_won[:20]) or _muted("none")
    shown = len(data.submissions)
    stats = _stats(
        [
            ("uid", _e(str(data.uid)) if data.uid is not None else _muted()),
            ("Registered", registered),
            ("Submissions", _e(f"{data.total}" + (f" (newest {shown} shown)" if shown < data.total else ""))),
            ("Rounds won", won),
        ]
    )
    head = (
        "<th>Round</th><th class='num'>#</th><th>Verdict</th><th class='num'>Speed-up</th>"
        "<th class='num wide'>Median</th><th class='c'>OK</th><th class='c'>Logits</th><th class='c'>Counted</th>"
        "<th class='num wide'>Judged</th><th class='wide'>Kernel</th>"
    )
    subs = [_submission_row(s, logit_on=data.logit_verification) for s in data.submissions]
    results = []
    for sub in data.submissions:
        for r in sub.results:
            verdict = _badge(r.verdict) + (" " + _reason(r.reason) if r.reason != REASON_OK else "")
            if r.detail:
                verdict += f'<span class="detail">{_e(r.detail[:300])}</span>'
            outlier = ' <span class="warn" title="disagrees with the other validators">outlier</span>'
            times = f"{_ms(r.median_ms)} / {_ms(r.baseline_ms)}" if r.median_ms or r.baseline_ms else "—"
            results.append(
                f'<tr data-result-of="{sub.id}"><td class="num">{sub.id}</td><td>{_round_link(sub.round_id)}</td>'
                f"<td>{_hotkey(r.validator_hotkey)}{outlier if r.outlier else ''}</td>"
                f'<td class="num wide">{r.attempt}</td><td class="why">{verdict}</td>'
                f'<td class="num strong">{_e(_x(r.speedup))}{_interval(r.speedup_ci_low, r.speedup_ci_high, r.inconclusive)}</td>'
                f'<td class="num wide">{_e(times)}</td>'
                f'<td class="why">{_logit_cell(r.logit_verdict, r.logit_reason, r.logit_metrics, off=not data.logit_verification)}</td>'
                f'<td class="wide long">{_e(r.sandbox) if r.sandbox else _muted()}</td></tr>'
            )
    rhead = (
        "<th class='num'>Sub</th><th>Round</th><th>Validator</th><th class='num wide'>Try</th><th>Verdict</th>"
        "<th class='num'>Speed-up</th><th class='num wide'>Median / baseline</th><th>Logit check</th>"
        "<th class='wide'>Sandbox</th>"
    )
    content = (
        f'<section class="card span" id="miner" data-hotkey="{_e(data.hotkey)}"><h2>Miner</h2>'
        f'<p class="mono full-hotkey">{_e(data.hotkey)}</p>{stats}</section>'
        f'<section class="card span" id="submissions-card"><h2>Submissions</h2>'
        f"{_table('submissions', head, subs, 'No submissions yet.', 10)}"
        '<p class="note">Speed-ups are the lower median over the validators\' results; the range under one is '
        "its 95% interval. Counted: it earned a share in its round (correct, verified, past the margin).</p></section>"
        f'<section class="card span" id="results-card"><h2>Validators\' results</h2>'
        f"{_table('results', rhead, results, 'No results yet.', 9)}</section>"
    )
    return _frame(
        title=f"QUASAR · miner {_short(data.hotkey)}", meta=_meta(data.network, data.netuid), content=content,
        nonce=nonce, version=version,
    )  # fmt: skip


# --- `/validators` --------------------------------------------------------------------------------------
def render_validators(data: ValidatorsData, *, nonce: str, version: str) -> str:
    """`/validators`: who is at work, the shown round's job queue, leases, results and their sandboxes."""
    now = data.now
    q = data.queue
    if q is None:
        queue = '<p class="muted">No round yet: nothing is queued.</p>'
        queue_title = "Jobs"
    else:
        queue_title = f"Jobs · round #{q.round_id}"
        queue = _stats(
            [
                ("Queued", f'<span id="q-queued">{q.queued}</span>'),
                ("Leased", f'<span id="q-leased">{q.leased}</span>'),
                ("Lapsed", f'<span id="q-lapsed" class="{"warn" if q.lapsed else ""}">{q.lapsed}</span>'),
                ("Retried", f'<span id="q-retried">{q.retried}</span>'),
                ("Done", f'<span id="q-done">{q.done}</span>'),
                ("Round", f"{_round_link(q.round_id)} {_badge(q.round_status)}"),
            ]
        )
        queue += (
            '<p class="note">Leased: held by a validator whose lease is live; lapsed: its lease ran out, so any '
            f"other validator may take it. Retried: past its first attempt. A lease lasts {data.lease_seconds} s "
            "and each heartbeat extends it.</p>"
        )
    active = sum(v.active for v in data.validators)
    chain = "" if data.chain_ok else ' <span class="warn">chain unavailable: registrations unknown</span>'
    vrows = []
    for v in data.validators:
        registered = (
            _muted("?")
            if v.permitted is None
            else (
                '<span class="ok">✓</span>'
                if v.permitted
                else '<span class="bad" title="no validator role now">✗</span>'
            )
        )
        oldest = (
            f' <span class="ci">oldest {_e(_duration(v.oldest_lease_seconds))}</span>'
            if v.oldest_lease_seconds is not None
            else ""
        )
        boxes = "".join(
            f'<span class="sandbox-line">{_e(s) if s else _muted("(none reported)")} <span class="muted">×{n}</span></span>'
            for s, n in v.sandboxes
        )
        last = max((t for t in (v.last_claim, v.last_result) if t is not None), default=None)
        vrows.append(
            f'<tr data-validator="{_e(v.hotkey)}" data-state="{_e(v.state)}"><td>{_hotkey(v.hotkey)}</td>'
            f'<td class="num wide">{v.uid if v.uid is not None else "—"}</td><td class="c wide">{registered}</td>'
            f"<td>{_badge(v.state)}</td><td class='num'>{v.leased}{oldest}</td>"
            f'<td class="num"><span class="ok">{v.passes}</span> / <span class="bad">{v.fails}</span> / '
            f'<span class="warn">{v.errors}</span></td><td class="num wide">{v.outliers or "—"}</td>'
            f'<td class="num wide">{v.in_round}</td><td>{_ago(now, last)}</td><td class="long">{boxes or _muted()}</td></tr>'
        )
    vhead = (
        "<th>Validator</th><th class='num wide'>uid</th><th class='c wide'>Role</th><th>State</th><th class='num'>Leases</th>"
        "<th class='num'>Pass / fail / error</th><th class='num wide'>Outliers</th><th class='num wide'>This round</th>"
        "<th>Last seen</th><th>Sandboxes</th>"
    )
    lrows = []
    for lease in data.leases:
        expires = lease.expires_in_seconds
        if expires is None:
            left = _muted()
        elif expires >= 0:
            left = f"in {_e(_duration(expires))}"
        else:
            left = f'<span class="warn">lapsed {_e(_duration(-expires))} ago</span>'
        age = _e(_duration(lease.age_seconds)) if lease.age_seconds is not None else "—"
        lrows.append(
            f'<tr data-job-id="{lease.job_id}"><td class="num">{lease.job_id}</td><td class="num wide">{lease.submission_id}</td>'
            f"<td>{_round_link(lease.round_id)}</td><td>{_miner(lease.miner_hotkey)}</td>"
            f'<td>{_hotkey(lease.validator_hotkey)}</td><td class="num wide">{lease.attempt}</td>'
            f'<td class="num lease-age">{age}</td><td>{left}</td></tr>'
        )
    lhead = (
        "<th class='num'>Job</th><th class='num wide'>Sub</th><th>Round</th><th>Miner</th><th>Validator</th>"
        "<th class='num wide'>Try</th><th class='num'>Age</th><th>Expires</th>"
    )
    more = (
        f'<p class="note">Oldest {len(data.leases)} of {data.leases_total} leases shown.</p>'
        if data.leases_total > len(data.leases)
        else ""
    )
    rrows = []
    for r in data.recent:
        verdict = _badge(r.verdict) + (" " + _reason(r.reason) if r.reason != REASON_OK else "")
        outlier = ' <span class="warn">outlier</span>' if r.outlier else ""
        rrows.append(
            f'<tr data-result-id="{r.id}"><td>{_ago(now, r.created_at)}</td><td>{_hotkey(r.validator_hotkey)}{outlier}</td>'
            f'<td class="wide">{_miner(r.miner_hotkey)}</td><td>{_round_link(r.round_id)} '
            f'<span class="muted wide">sub {r.submission_id}, try {r.attempt}</span></td>'
            f'<td class="why">{verdict}</td><td class="num">{_e(_x(r.speedup))}</td>'
            f'<td class="long result-sandbox">{_e(r.sandbox) if r.sandbox else _muted("(none reported)")}</td></tr>'
        )
    rhead = (
        "<th>When</th><th>Validator</th><th class='wide'>Miner</th><th>Round</th><th>Verdict</th><th class='num'>Speed-up</th>"
        "<th>Sandbox</th>"
    )
    content = (
        f'<section class="card" id="queue"><h2>{_e(queue_title)}</h2>{queue}</section>'
        f'<section class="card" id="active"><h2>Validators</h2>'
        + _stats(
            [
                ("Active", f'<span id="v-active">{active}</span>'),
                ("Known", _e(str(len(data.validators)))),
                ("Leases held", _e(str(data.leases_total))),
            ]
        )
        + f'<p class="note">Active: holds a live lease, or claimed or reported within the last '
        f"{_e(_duration(data.active_seconds))}.{chain}</p></section>"
        f'<section class="card span"><h2>Per validator</h2>{_table("validators", vhead, vrows, "No validator known yet.", 10)}</section>'
        f'<section class="card span"><h2>Leases</h2>{_table("leases", lhead, lrows, "No job is leased.", 8)}{more}</section>'
        f'<section class="card span"><h2>Recent results</h2>{_table("recent-results", rhead, rrows, "No results yet.", 7)}</section>'
    )
    return _frame(
        title="QUASAR · validators", meta=_meta(data.network, data.netuid), content=content, nonce=nonce,
        version=version, active="validators",
    )  # fmt: skip


# --- errors --------------------------------------------------------------------------------------------
def render_error(status: int, title: str, message: str, *, nonce: str, version: str) -> str:
    """A 400 or 404 page in the dashboard's frame; `message` may hold what the visitor typed: escaped."""
    content = (
        f'<section class="card span" id="error" data-status="{int(status)}"><h2>{int(status)} · {_e(title)}</h2>'
        f'<p>{_e(message)}</p><p><a href="/">Back to the current round</a> · <a href="/validators">validators</a>'
        "</p></section>"
    )
    return _frame(
        title=f"QUASAR · {int(status)} {title}", meta="", content=content, nonce=nonce, version=version,
        refresh=False,
    )  # fmt: skip
