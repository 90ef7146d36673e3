"""`/validators`: who is at work, the shown round's job queue, leases, results and their sandboxes."""

from __future__ import annotations

from quasar.reasons import REASON_OK
from validator_api.dashboard.frame import _frame, _meta
from validator_api.dashboard.parts import (
    _ago,
    _badge,
    _duration,
    _e,
    _hotkey,
    _miner,
    _muted,
    _reason,
    _round_link,
    _stats,
    _table,
    _x,
)
from validator_api.services.dashboard_queries import (
    ValidatorsData,
)


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
