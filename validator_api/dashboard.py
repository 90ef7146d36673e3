"""The dashboard's data and HTML: current round, leaderboard and the best time per round.

`gather(...)` reads what the page shows from the database (one round's leaderboard, the last
rounds' best times); `render(...)` turns it into one self-contained HTML page: inline CSS, an inline
SVG chart drawn on the server, and a few lines of JavaScript (countdown, refresh) allowed by a
per-response CSP nonce. Nothing is loaded from anywhere else (no CDN, no web fonts).

Every string that a miner or validator controls (hotkeys, repository URLs, reasons) goes through
`_e` (html.escape with quotes) before it reaches the page, and only http(s) URLs become links.
"""

from __future__ import annotations

import html
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from quasar.config import Settings
from quasar.reasons import REASON_OK
from quasar.schemas import RoundBest
from validator_api import models
from validator_api.services.rounds import shown_round
from validator_api.services.scoring import leaderboard_entries, round_validators

#: Rounds the chart shows (the newest ones).
CHART_ROUNDS = 30


@dataclass(frozen=True)
class Row:
    rank: int | None
    submission_id: int
    hotkey: str
    status: str
    speedup: float | None
    median_ms: float | None
    correct: bool | None
    verified: bool | None
    counted: bool
    reason: str | None
    sandbox: str | None
    repo_url: str | None
    commit_sha: str | None
    speedup_ci_low: float | None = None
    speedup_ci_high: float | None = None
    inconclusive: bool | None = None


@dataclass
class DashboardData:
    network: str
    netuid: int
    block: int | None
    block_time_seconds: float
    round: models.Round | None = None
    rows: list[Row] = field(default_factory=list)
    history: list[RoundBest] = field(default_factory=list)
    logit_verification: bool = True


def round_history(session: Session, limit: int = CHART_ROUNDS) -> list[RoundBest]:
    """The newest `limit` rounds, oldest first, each with its best correct median time."""
    rounds = list(session.scalars(select(models.Round).order_by(models.Round.id.desc()).limit(limit)))
    if not rounds:
        return []
    subs = session.scalars(
        select(models.Submission).where(models.Submission.round_id.in_([r.id for r in rounds]))
    ).all()
    by_round: dict[int, list[models.Submission]] = {}
    for sub in subs:
        by_round.setdefault(sub.round_id, []).append(sub)
    out = []
    for rnd in reversed(rounds):
        mine = by_round.get(rnd.id, [])
        timed = [s for s in mine if s.correct and s.median_ms is not None and s.status == "scored"]
        best = min(timed, key=lambda s: (s.median_ms, s.commit_block, s.id), default=None)
        out.append(
            RoundBest(
                round_id=rnd.id,
                status=rnd.status,
                start_block=rnd.start_block,
                end_block=rnd.end_block,
                baseline_ms=rnd.baseline_ms,
                best_ms=best.median_ms if best else None,
                best_hotkey=best.hotkey if best else None,
                best_speedup=best.score if best else None,
                submissions=len(mine),
                winner_hotkey=rnd.winner_hotkey,
            )
        )
    return out


def gather(session: Session, settings: Settings, block: int | None) -> DashboardData:
    data = DashboardData(
        network=settings.subtensor_network,
        netuid=settings.netuid,
        block=block,
        block_time_seconds=float(settings.block_time_seconds or 12.0),
        logit_verification=settings.enable_logit_verification,
    )
    rnd = shown_round(session)
    data.round = rnd
    if rnd is not None:
        subs = session.scalars(select(models.Submission).where(models.Submission.round_id == rnd.id)).all()
        by_id = {s.id: s for s in subs}
        for entry in leaderboard_entries(subs, settings, round_validators(session, rnd.id)):
            sub = by_id[entry.submission_id]
            data.rows.append(
                Row(
                    rank=entry.rank,
                    submission_id=entry.submission_id,
                    hotkey=entry.hotkey,
                    status=entry.status,
                    speedup=entry.score,
                    median_ms=entry.median_ms,
                    correct=entry.correct,
                    verified=entry.verified,
                    counted=entry.counted,
                    reason=entry.reason,
                    sandbox=entry.sandbox,
                    repo_url=sub.repo_url,
                    commit_sha=sub.commit_sha,
                    speedup_ci_low=entry.score_ci_low,
                    speedup_ci_high=entry.score_ci_high,
                    inconclusive=entry.inconclusive,
                )
            )
    data.history = round_history(session)
    return data


# --- HTML ---------------------------------------------------------------------------------------
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


def _check(value: bool | None, *, off: bool = False) -> str:
    if off:
        return '<span class="muted" title="logit verification is off">off</span>'
    if value is None:
        return '<span class="muted" title="not checked yet">—</span>'
    return (
        '<span class="ok" title="passed">✓</span>' if value else '<span class="bad" title="failed">✗</span>'
    )


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


def _round_section(data: DashboardData) -> str:
    rnd = data.round
    if rnd is None:
        return '<section class="card"><h2>Round</h2><p class="muted">No round yet.</p></section>'
    stats: list[tuple[str, str]] = [
        ("Status", f'<span class="badge s-{_e(rnd.status)}">{_e(rnd.status)}</span>')
    ]
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
    stats.append(
        ("Best speed-up", _e(f"{best:.2f}×") if best is not None else '<span class="muted">—</span>')
    )
    if rnd.winner_hotkey:
        stats.append(
            (
                "Winner",
                f'<span class="mono" title="{_e(rnd.winner_hotkey)}">{_e(_short(rnd.winner_hotkey))}</span>',
            )
        )
    cells = "".join(
        f'<div class="stat"><div class="label">{k}</div><div class="value">{v}</div></div>' for k, v in stats
    )
    countdown = f' data-seconds-left="{seconds_left:.0f}"' if seconds_left is not None else ""
    return (
        f'<section class="card" id="round" data-round-id="{rnd.id}"{countdown}>'
        f'<h2>Round <span class="accent">#{rnd.id}</span></h2><div class="stats">{cells}</div></section>'
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
            speed = f"{row.speedup:.2f}×" if row.speedup is not None else "—"
            interval = ""
            if row.speedup_ci_low is not None and row.speedup_ci_high is not None:
                # The 95% interval; an inconclusive one never counts, and says so.
                interval = f"{row.speedup_ci_low:.2f}–{row.speedup_ci_high:.2f}"
                interval += ", inconclusive" if row.inconclusive else ""
                interval = f'<span class="ci" title="95% interval">{_e(interval)}</span>'
            status = f'<span class="badge s-{_e(row.status)}">{_e(row.status)}</span>'
            if row.reason and row.reason != REASON_OK:
                status += f' <span class="reason">{_e(row.reason)}</span>'
            if row.sandbox:
                # Where the verdict was reached (validator-reported), e.g. "bwrap, cgroup v2, uid 65534".
                status += f' <span class="sandbox" title="sandbox">{_e(row.sandbox)}</span>'
            parts.append(
                f'<tr class="{"counted" if row.counted else "uncounted"}" data-submission-id="{row.submission_id}">'
                f'<td class="rank">{_e(rank)}</td>'
                f'<td class="mono" title="{_e(row.hotkey)}">{_e(_short(row.hotkey))}</td>'
                f'<td class="num strong">{_e(speed)}{interval}</td><td class="num wide">{_e(_ms(row.median_ms))}</td>'
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


def chart_svg(history: Sequence[RoundBest]) -> str:
    """A line chart of the best correct time (and the baseline) per round, as inline SVG."""
    points = [h for h in history if h.best_ms is not None or h.baseline_ms is not None]
    if not points:
        return '<p class="muted empty" id="chart-empty">No timed results yet: the chart fills in as rounds are scored.</p>'
    width, height, left, right, top, bottom = 640, 236, 44, 16, 12, 32
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(max(h.best_ms or 0, h.baseline_ms or 0) for h in points)
    y_max = _nice_max(min(peak * 1.05, sys.float_info.max))
    n = len(points)

    def x(i: int) -> float:
        return left + (plot_w / 2 if n == 1 else plot_w * i / (n - 1))

    def y(v: float) -> float:
        return top + plot_h * (1 - v / y_max)

    out = [
        f'<svg id="chart" viewBox="0 0 {width} {height}" role="img" aria-labelledby="chart-title" '
        'preserveAspectRatio="xMidYMid meet"><title id="chart-title">Best correct time per round (ms)</title>'
    ]
    for k in range(5):
        v = y_max * (k / 4)  # not y_max * k: that overflows near the largest float
        out.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>'
            f'<text class="axis" x="{left - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.3g}</text>'
        )
    label_every = max(1, math.ceil(n / 10))
    for i, h in enumerate(points):
        if i % label_every == 0 or i == n - 1:
            out.append(
                f'<text class="axis" x="{x(i):.1f}" y="{height - 4}" text-anchor="middle">#{h.round_id}</text>'
            )
    for cls, attr in (("baseline", "baseline_ms"), ("best", "best_ms")):
        coords = [(x(i), y(getattr(h, attr))) for i, h in enumerate(points) if getattr(h, attr) is not None]
        if len(coords) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in coords)
            out.append(f'<polyline class="line {cls}" points="{path}"/>')
    for i, h in enumerate(points):
        if h.baseline_ms is not None:
            out.append(
                f'<circle class="dot baseline" cx="{x(i):.1f}" cy="{y(h.baseline_ms):.1f}" r="3">'
                f"<title>round #{h.round_id}: baseline {_e(_ms(h.baseline_ms))}</title></circle>"
            )
        if h.best_ms is not None:
            who = f" by {_short(h.best_hotkey)}" if h.best_hotkey else ""
            out.append(
                f'<circle class="dot best" data-round-id="{h.round_id}" cx="{x(i):.1f}" cy="{y(h.best_ms):.1f}" r="4.5">'
                f"<title>round #{h.round_id}: best {_e(_ms(h.best_ms))}{_e(who)}</title></circle>"
            )
    out.append("</svg>")
    legend = (
        '<div class="legend"><span><i class="key best"></i>best correct time</span>'
        '<span><i class="key baseline"></i>baseline</span><span class="muted">ms, lower is faster</span></div>'
    )
    return "".join(out) + legend


_CSS = """
:root{--bg:#0b1020;--card:#141a2e;--line:#252d48;--text:#e6e9f2;--muted:#8b93ad;--accent:#7aa2ff;
--ok:#3ecf8e;--bad:#ff6b6b;--warn:#f5b84b}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--text);
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:.4rem 1rem;padding:1.1rem 1.25rem;
border-bottom:1px solid var(--line)}
header h1{margin:0;font-size:1.3rem;letter-spacing:.04em}
header .meta{color:var(--muted);font-size:.9rem}
main{max-width:1100px;margin:0 auto;padding:1rem;display:grid;gap:1rem;grid-template-columns:minmax(0,1fr)}
@media(min-width:900px){main{grid-template-columns:minmax(0,1fr) minmax(0,1.35fr)}
#leaderboard-card{grid-column:1/-1}}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:1rem 1.1rem;min-width:0}
.card h2{margin:0 0 .75rem;font-size:1rem;color:var(--muted);font-weight:600;text-transform:uppercase;
letter-spacing:.06em}
.accent{color:var(--accent)}
.stats{display:grid;grid-template-columns:repeat(auto-fill,minmax(130px,1fr));gap:.75rem}
.stat .label{color:var(--muted);font-size:.78rem;text-transform:uppercase;letter-spacing:.05em}
.stat .value{font-size:1.15rem;font-weight:600;overflow-wrap:anywhere}
.table-wrap{overflow-x:auto}
table{width:100%;border-collapse:collapse;font-size:.92rem}
th,td{padding:.5rem .55rem;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}
th{color:var(--muted);font-weight:600;font-size:.78rem;text-transform:uppercase;letter-spacing:.04em}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.c,th.c{text-align:center}
tr.counted td.rank{color:var(--accent);font-weight:700}
tr.uncounted td{color:#b8bfd4}
.strong{font-weight:700}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.86rem}
.ok{color:var(--ok);font-weight:700}.bad{color:var(--bad);font-weight:700}.muted{color:var(--muted)}
.empty{text-align:center;padding:1.2rem}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:999px;font-size:.78rem;background:#2a3352}
.ci{display:block;font-weight:400;font-size:.8em;color:var(--muted)}
.s-scored,.s-open{background:rgba(62,207,142,.15);color:var(--ok)}
.s-rejected,.s-expired{background:rgba(255,107,107,.15);color:var(--bad)}
.s-evaluating,.s-revealed,.s-committed{background:rgba(245,184,75,.15);color:var(--warn)}
.reason{color:var(--muted);font-size:.8rem}
.sandbox{display:block;color:var(--muted);font-size:.72rem}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
.note{color:var(--muted);font-size:.8rem;margin:.75rem 0 0}
svg{width:100%;height:auto;display:block}
.grid{stroke:var(--line);stroke-width:1}.axis{fill:var(--muted);font-size:11px}
.line{fill:none;stroke-width:2.5;stroke-linejoin:round}.line.best{stroke:var(--accent)}
.line.baseline{stroke:var(--muted);stroke-dasharray:5 5;stroke-width:1.5}
.dot.best{fill:var(--accent);stroke:var(--card);stroke-width:2}.dot.baseline{fill:var(--muted)}
.legend{display:flex;flex-wrap:wrap;gap:1rem;font-size:.82rem;margin-top:.5rem}
.key{display:inline-block;width:18px;height:3px;vertical-align:middle;margin-right:.35rem;border-radius:2px}
.key.best{background:var(--accent)}.key.baseline{background:var(--muted)}
footer{color:var(--muted);font-size:.8rem;text-align:center;padding:1rem 1rem 2rem}
.abbr{display:none}
@media(max-width:600px){.wide,.full,.reason,.sandbox{display:none}.abbr{display:inline}header{padding:.9rem 1rem}
main{padding:.6rem}.card{padding:.85rem .7rem}th,td{padding:.45rem .3rem}table{font-size:.86rem}
th{font-size:.7rem;letter-spacing:0}.mono{font-size:.8rem}.axis{font-size:20px}}
"""

# Counts the round's time left down every second and reloads the page every REFRESH seconds so the
# leaderboard stays current without a client-side data layer.
_JS = """
(function(){var REFRESH=30;var el=document.getElementById('round');
var out=document.getElementById('time-left');var left=el&&el.dataset.secondsLeft;
if(out&&left){left=parseInt(left,10);var t0=Date.now();
function pad(n){return(n<10?'0':'')+n}
function fmt(s){s=Math.max(0,s);var d=Math.floor(s/86400),h=Math.floor(s%86400/3600),
m=Math.floor(s%3600/60),x=s%60;return d?d+'d '+h+'h '+m+'m':h?h+'h '+pad(m)+'m':m+'m '+pad(x)+'s'}
setInterval(function(){out.textContent=fmt(left-Math.floor((Date.now()-t0)/1000))},1000)}
if(!/[?&]refresh=0/.test(location.search)){setTimeout(function(){location.reload()},REFRESH*1000)}})();
"""


def render(data: DashboardData, *, nonce: str, version: str) -> str:
    block = f"block {data.block:,}" if data.block is not None else "chain unavailable"
    meta = f"{_e(data.network)} · netuid {data.netuid} · {_e(block)}"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="color-scheme" content="dark"><title>QUASAR subnet</title>'
        f'<style nonce="{_e(nonce)}">{_CSS}</style></head><body>'
        f'<header><h1>QUASAR</h1><span class="meta">{meta}</span></header><main>'
        f"{_round_section(data)}"
        f'<section class="card" id="chart-card"><h2>Best time per round</h2>{chart_svg(data.history)}</section>'
        f'<div id="leaderboard-card">{_leaderboard_section(data)}</div>'
        "</main><footer>QUASAR Validator API "
        f'{_e(version)} · <a href="/docs">API docs</a> · <a href="/v1/history">history JSON</a> · '
        '<a href="/metrics">metrics</a></footer>'
        f'<script nonce="{_e(nonce)}">{_JS}</script></body></html>'
    )
