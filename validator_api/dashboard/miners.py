"""`/miners/{hotkey}`: one hotkey's submissions across rounds and every validator's result on them."""

from __future__ import annotations

from quasar.reasons import REASON_OK
from validator_api.dashboard.frame import _frame, _meta
from validator_api.dashboard.parts import (
    _badge,
    _check,
    _e,
    _hotkey,
    _interval,
    _ms,
    _muted,
    _reason,
    _round_link,
    _safe_link,
    _short,
    _stats,
    _table,
    _x,
)
from validator_api.services.dashboard_queries import (
    MinerData,
    MinerSubmission,
)


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
