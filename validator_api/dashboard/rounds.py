"""`/` and `/?round_id=N`: the round, the chart, its leaderboard, the weights and what was rejected."""

from __future__ import annotations

from quasar.reasons import REASON_OK
from validator_api.dashboard.chart import chart_svg
from validator_api.dashboard.frame import _frame, _meta
from validator_api.dashboard.parts import (
    _badge,
    _check,
    _duration,
    _e,
    _hotkey,
    _interval,
    _miner,
    _ms,
    _muted,
    _pct,
    _reason,
    _round_link,
    _safe_link,
    _stats,
    _table,
    _x,
)
from validator_api.services.dashboard_queries import (
    DashboardData,
    WeightsView,
)


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
